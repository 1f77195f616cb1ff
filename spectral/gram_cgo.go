//go:build cgo

package spectral

/*
#cgo CFLAGS: -O3
#include "gram.h"
*/
import "C"

import "unsafe"

// cgo is confined to this file: one call per Gram tile keeps its overhead
// negligible next to the m*mr*nc multiply-adds of the tile.

var bestKernel = kernelName(int(C.gram_best_isa()))

func kernelName(isa int) string {
	switch isa {
	case 2:
		return "avx512"
	case 1:
		return "avx2"
	}
	return "c-generic"
}

func kernelISA(name string) C.int {
	switch name {
	case "avx512":
		return 2
	case "avx2":
		return 1
	}
	return 0
}

// availableKernels lists the kernels this machine can run, best first.
func availableKernels() []string {
	switch bestKernel {
	case "avx512":
		return []string{"avx512", "avx2", "c-generic", "go"}
	case "avx2":
		return []string{"avx2", "c-generic", "go"}
	}
	return []string{"c-generic", "go"}
}

// gramTile computes c[r*ldc+j] = <col(a, i0+r), col(b, j0+j)> for r < mr,
// j < nc, on panel-packed float32 matrices with m rows.
func gramTile(kernel string, a, b []float32, m, i0, mr, j0, nc int, c []float32, ldc int) {
	if kernel == "go" {
		gramTileGo(a, b, m, i0, mr, j0, nc, c, ldc)
		return
	}
	_ = a[(i0+mr+panel-1)/panel*m*panel-1]
	_ = b[(j0+nc+panel-1)/panel*m*panel-1]
	_ = c[(mr-1)*ldc+nc-1]
	C.gram_tile((*C.float)(unsafe.Pointer(&a[0])), (*C.float)(unsafe.Pointer(&b[0])),
		C.int(m), C.int(i0), C.int(mr), C.int(j0), C.int(nc),
		(*C.float)(unsafe.Pointer(&c[0])), C.int(ldc), kernelISA(kernel))
}

// sqDistBatch sets out[j] = SquaredDistance(a, xt[idx[j]*m:]) with the C
// kernel; it reports false when the CPU lacks AVX2.
func sqDistBatch(a, xt []float64, m int, idx []int32, out []float64) bool {
	if len(idx) == 0 {
		return true
	}
	_ = out[len(idx)-1]
	return C.sqdist_batch((*C.double)(unsafe.Pointer(&a[0])), (*C.double)(unsafe.Pointer(&xt[0])),
		C.int(m), (*C.int)(unsafe.Pointer(&idx[0])), C.int(len(idx)),
		(*C.double)(unsafe.Pointer(&out[0]))) != 0
}
