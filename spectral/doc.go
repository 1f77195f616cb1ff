// Package spectral scores neurons by spectral structural importance.
package spectral
