//go:build race

package rewrite

func init() { raceDetector = true }
