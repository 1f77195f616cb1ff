//go:build !cgo

package spectral

const bestKernel = "go"

func availableKernels() []string { return []string{"go"} }

func gramTile(kernel string, a, b []float32, m, i0, mr, j0, nc int, c []float32, ldc int) {
	gramTileGo(a, b, m, i0, mr, j0, nc, c, ldc)
}

func sqDistBatch(a, xt []float64, m int, idx []int32, out []float64) bool { return false }
