//go:build race

package spectral

// The race detector slows numeric loops ~10x: tests use smaller sizes.
const raceEnabled = true
