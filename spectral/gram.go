package spectral

// panel is the number of float32 columns packed side by side (GRAM_PANEL in
// gram.h): element (k, p) of a packed m-row matrix is at
// (p/panel*m+k)*panel + p%panel.
const panel = 32

// packIndex returns the offset of element (k, p) in a panel-packed matrix.
func packIndex(m, k, p int) int { return (p/panel*m+k)*panel + p%panel }

// gramTileGo is the pure-Go kernel (no cgo, or for tests): 4 x 4 blocks,
// each entry a sequential float32 sum over k like the C kernels.
func gramTileGo(a, b []float32, m, i0, mr, j0, nc int, c []float32, ldc int) {
	for r := 0; r < mr; r += 4 {
		ab := (i0+r)/panel*m*panel + (i0+r)%panel
		for j := 0; j < nc; j += 4 {
			bb := (j0+j)/panel*m*panel + (j0+j)%panel
			var c00, c01, c02, c03, c10, c11, c12, c13 float32
			var c20, c21, c22, c23, c30, c31, c32, c33 float32
			for k := 0; k < m; k++ {
				ak := a[ab+k*panel : ab+k*panel+4 : ab+k*panel+4]
				bk := b[bb+k*panel : bb+k*panel+4 : bb+k*panel+4]
				a0, a1, a2, a3 := ak[0], ak[1], ak[2], ak[3]
				b0, b1, b2, b3 := bk[0], bk[1], bk[2], bk[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
				c20 += a2 * b0
				c21 += a2 * b1
				c22 += a2 * b2
				c23 += a2 * b3
				c30 += a3 * b0
				c31 += a3 * b1
				c32 += a3 * b2
				c33 += a3 * b3
			}
			o := r*ldc + j
			c[o], c[o+1], c[o+2], c[o+3] = c00, c01, c02, c03
			o += ldc
			c[o], c[o+1], c[o+2], c[o+3] = c10, c11, c12, c13
			o += ldc
			c[o], c[o+1], c[o+2], c[o+3] = c20, c21, c22, c23
			o += ldc
			c[o], c[o+1], c[o+2], c[o+3] = c30, c31, c32, c33
		}
	}
}
