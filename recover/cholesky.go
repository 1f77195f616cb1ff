package recover

import (
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// Large systems are factored and solved by blocks: gonum works on the
// blocks of the diagonal and ONNX Runtime's double-precision GEMM does the
// updates, which hold nearly all the arithmetic (gonum's pure-Go GEMM runs
// at about a tenth of its speed). Below blockMin unknowns gonum does it all.
const (
	block    = 256
	blockMin = 512
)

// dgemmSession multiplies two float64 matrices.
func dgemmSession(cfg ort.Config) (*ort.Session, error) {
	str := func(s string) *string { return &s }
	g := &onnxpb.GraphProto{Name: str("lsq_dgemm"),
		Node: []*onnxpb.NodeProto{{OpType: str("MatMul"), Name: str("C"), Input: []string{"A", "B"}, Output: []string{"C"}}},
		Input: []*onnxpb.ValueInfoProto{
			onnxio.NewValueInfo("A", onnxio.Double, []onnxio.Dim{{Param: "P"}, {Param: "Q"}}),
			onnxio.NewValueInfo("B", onnxio.Double, []onnxio.Dim{{Param: "Q"}, {Param: "R"}}),
		},
		Output: []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("C", onnxio.Double, []onnxio.Dim{{Param: "P"}, {Param: "R"}})},
	}
	ir, opset := int64(8), int64(13)
	m := &onnxio.Model{Proto: &onnxpb.ModelProto{IrVersion: &ir, Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: str(""), Version: &opset}}}}
	return ort.NewSessionForModel(m, nil, cfg)
}

// dgemm is a [p, q] times b [q, r] in float64.
func (p *products) dgemm(a, b []float64, rows, inner, cols int) ([]float64, error) {
	out, err := p.dmm.Run(
		ort.Tensor{Name: "A", Shape: []int64{int64(rows), int64(inner)}, Data: a},
		ort.Tensor{Name: "B", Shape: []int64{int64(inner), int64(cols)}, Data: b})
	if err != nil {
		return nil, err
	}
	return out[0].Data.([]float64), nil
}

// potrf factors the symmetric positive definite n x n matrix in a
// (row-major, upper triangle used) into U^T U, in place in the upper
// triangle; the strict lower triangle is left as it was. ok is false when
// the matrix is not positive definite.
func (p *products) potrf(a []float64, n int) (u blas64.Triangular, ok bool, err error) {
	u = blas64.Triangular{N: n, Stride: n, Data: a, Uplo: blas.Upper, Diag: blas.NonUnit}
	if n < blockMin || p.dmm == nil {
		_, ok = lapack64.Potrf(blas64.Symmetric{N: n, Stride: n, Data: a, Uplo: blas.Upper})
		return u, ok, nil
	}
	for j0 := 0; j0 < n; j0 += block {
		j1 := min(j0+block, n)
		b, m := j1-j0, n-j1
		diag := blas64.Symmetric{N: b, Stride: n, Data: a[j0*n+j0:], Uplo: blas.Upper}
		if _, ok := lapack64.Potrf(diag); !ok {
			return u, false, nil
		}
		if m == 0 {
			break
		}
		// The panel to the right: U_jj^-T A[j, j+1:].
		ujj := blas64.Triangular{N: b, Stride: n, Data: a[j0*n+j0:], Uplo: blas.Upper, Diag: blas.NonUnit}
		panel := blas64.General{Rows: b, Cols: m, Stride: n, Data: a[j0*n+j1:]}
		blas64.Trsm(blas.Left, blas.Trans, 1, ujj, panel)
		// The trailing matrix loses panel^T panel (its upper triangle only).
		pt := make([]float64, m*b)
		pm := make([]float64, b*m)
		for i := 0; i < b; i++ {
			for k := 0; k < m; k++ {
				v := a[(j0+i)*n+j1+k]
				pm[i*m+k], pt[k*b+i] = v, v
			}
		}
		s, err := p.dgemm(pt, pm, m, b, m)
		if err != nil {
			return u, false, err
		}
		for i := 0; i < m; i++ {
			row := a[(j1+i)*n+j1:]
			for k := i; k < m; k++ {
				row[k] -= s[i*m+k]
			}
		}
	}
	return u, true, nil
}

// potrs solves U^T U W = C for the n x r matrix c in place, U from potrf.
func (p *products) potrs(u blas64.Triangular, c []float64, r int) error {
	n := u.N
	if n < blockMin || p.dmm == nil {
		lapack64.Potrs(u, blas64.General{Rows: n, Cols: r, Stride: r, Data: c})
		return nil
	}
	a := u.Data
	tri := func(j0, j1 int) blas64.Triangular {
		return blas64.Triangular{N: j1 - j0, Stride: n, Data: a[j0*n+j0:], Uplo: blas.Upper, Diag: blas.NonUnit}
	}
	// U^T Z = C, top to bottom; each solved block updates the rows below.
	for j0 := 0; j0 < n; j0 += block {
		j1 := min(j0+block, n)
		zj := blas64.General{Rows: j1 - j0, Cols: r, Stride: r, Data: c[j0*r:]}
		blas64.Trsm(blas.Left, blas.Trans, 1, tri(j0, j1), zj)
		if j1 == n {
			break
		}
		m := n - j1
		pt := make([]float64, m*(j1-j0)) // U[j, j+1:]^T
		for i := j0; i < j1; i++ {
			for k := 0; k < m; k++ {
				pt[k*(j1-j0)+i-j0] = a[i*n+j1+k]
			}
		}
		upd, err := p.dgemm(pt, c[j0*r:j1*r], m, j1-j0, r)
		if err != nil {
			return err
		}
		for i, v := range upd {
			c[j1*r+i] -= v
		}
	}
	// U W = Z, bottom to top; each block first loses what the solved rows
	// below contribute.
	last := (n - 1) / block * block
	for j0 := last; j0 >= 0; j0 -= block {
		j1 := min(j0+block, n)
		if j1 < n {
			m := n - j1
			pm := make([]float64, (j1-j0)*m) // U[j, j+1:]
			for i := j0; i < j1; i++ {
				copy(pm[(i-j0)*m:(i-j0+1)*m], a[i*n+j1:i*n+n])
			}
			upd, err := p.dgemm(pm, c[j1*r:], j1-j0, m, r)
			if err != nil {
				return err
			}
			for i, v := range upd {
				c[j0*r+i] -= v
			}
		}
		wj := blas64.General{Rows: j1 - j0, Cols: r, Stride: r, Data: c[j0*r:]}
		blas64.Trsm(blas.Left, blas.NoTrans, 1, tri(j0, j1), wj)
	}
	return nil
}
