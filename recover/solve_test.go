package recover

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// The kernel (dual) form kept for few rows gives the same ridge solution,
// bias included, as the normal equations (primal form).
func TestDualSolveMatchesPrimal(t *testing.T) {
	needORT(t)
	p, err := newProducts(testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer p.destroy()
	r := rand.New(rand.NewPCG(4, 5))
	for _, bias := range []bool{true, false} {
		const rows, nf, n = 40, 100, 3
		d := nf
		if bias {
			d++
		}
		x := make([]float32, rows*d)
		y := make([]float32, rows*n)
		for i := 0; i < rows; i++ {
			for f := 0; f < nf; f++ {
				x[i*d+f] = float32(r.NormFloat64() + 0.5)
			}
			if bias {
				x[i*d+nf] = 1
			}
			for j := range n {
				y[i*n+j] = float32(r.NormFloat64() + 2)
			}
		}
		var ws [2][]float64
		var sses [2][]float64
		var yy float64
		for _, v := range y {
			yy += float64(v) * float64(v)
		}
		for k, dual := range []bool{false, true} {
			e := newNormal(d, n, 1, bias, []int{0}, make([]float32, d*n), p)
			e.dual = dual // both forms on the same rows
			for i := 0; i < rows; i++ {
				k, err := e.row(0)
				if err != nil {
					t.Fatal(err)
				}
				fx, fy := e.xy(0, k)
				copy(fx, x[i*d:(i+1)*d])
				copy(fy, y[i*n:(i+1)*n])
			}
			// A ridge large enough for the comparison to test the algebra,
			// not float32 rounding in X^T X.
			sse, err := e.solve(0.1, 1, 1)
			if err != nil {
				t.Fatal(err)
			}
			ws[k], sses[k] = e.w64, sse
		}
		var diff, norm float64
		for i := range ws[0] {
			diff = math.Max(diff, math.Abs(ws[0][i]-ws[1][i]))
			norm = math.Max(norm, math.Abs(ws[0][i]))
		}
		t.Logf("bias %v: max |W| %.3g, max difference %.3g; squared errors %.4g / %.4g", bias, norm, diff, sses[0][0], sses[1][0])
		if diff > 1e-3*norm {
			t.Errorf("bias %v: the two forms differ by %.3g (max |W| %.3g)", bias, diff, norm)
		}
		for j := range sses[0] {
			if math.Abs(sses[0][j]-sses[1][j]) > 1e-5*yy {
				t.Errorf("bias %v, output %d: squared error %.6g (primal) and %.6g (dual)", bias, j, sses[0][j], sses[1][j])
			}
		}
	}
}

// A model run in stages, each from the tensors the last one left, gives
// the tensors one session of the whole model gives.
func TestStagesMatchOneSession(t *testing.T) {
	needORT(t)
	m, err := onnxio.Load("../testdata/models/llama/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	calib, err := dataset.Load("../testdata/data/llama_calib.npz")
	if err != nil {
		t.Fatal(err)
	}
	if calib, err = calib.Subset(6, 1); err != nil {
		t.Fatal(err)
	}
	// The inputs of a few projections, in graph order, and the logits.
	var want []string
	for _, n := range m.Graph().GetNode() {
		switch n.GetName() {
		case "/layers.0/self_attn/q_proj/MatMul", "/layers.1/mlp/down_proj/MatMul", "/layers.3/self_attn/o_proj/MatMul", "/lm_head/MatMul":
			want = append(want, n.Input[0])
		}
	}
	want = append(want, m.Graph().Output[0].GetName())
	if len(want) != 5 {
		t.Fatalf("found %d of the tensors", len(want))
	}
	bound, err := autodiff.BindData(m, calib, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	batches, err := makeBatches(bound, 0, bound.N, 4) // two batches, the last short
	if err != nil {
		t.Fatal(err)
	}
	s := newStager(m, "the model", batches, want, testRT)
	got := make([]map[string]ort.Tensor, len(batches))
	for i := range got {
		got[i] = map[string]ort.Tensor{}
	}
	for _, w := range want {
		st, err := s.next([]string{w})
		if err != nil {
			t.Fatal(err)
		}
		for b := range batches {
			res, err := st.run(b)
			if err != nil {
				t.Fatal(err)
			}
			got[b][w] = res[w]
		}
		t.Logf("stage for %s: %d nodes, %d inputs kept from before, %d outputs", w, len(st.nodes), len(st.ins), len(st.outs))
		st.finish()
	}
	whole, err := ort.NewSessionForModel(m, want[:len(want)-1], testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Destroy()
	for b, bt := range batches {
		outs, err := whole.Run(bt.feed...)
		if err != nil {
			t.Fatal(err)
		}
		ref := map[string][]float32{want[len(want)-1]: outs[0].Data.([]float32)}
		for k, w := range want[:len(want)-1] {
			ref[w] = outs[1+k].Data.([]float32)
		}
		for _, w := range want {
			a, r := got[b][w].Data.([]float32), ref[w]
			if len(a) != len(r) {
				t.Fatalf("batch %d, %s: %d values, want %d", b, w, len(a), len(r))
			}
			var worst float64
			for i := range a {
				worst = math.Max(worst, math.Abs(float64(a[i]-r[i]))/(1+math.Abs(float64(r[i]))))
			}
			if worst > 1e-4 {
				t.Errorf("batch %d, %s: differs by up to %.3g", b, w, worst)
			}
		}
	}
}

// The blocked factorisation and solve (updates in ONNX Runtime's float64
// GEMM) agree with gonum's unblocked ones.
func TestBlockedCholesky(t *testing.T) {
	needORT(t)
	p, err := newProducts(testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer p.destroy()
	r := rand.New(rand.NewPCG(8, 9))
	const n, k, rhs = 700, 900, 5 // n > blockMin: three blocks, the last short
	x := make([]float64, k*n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	a := make([]float64, n*n)
	blas64.Gemm(blas.Trans, blas.NoTrans, 1, blas64.General{Rows: k, Cols: n, Stride: n, Data: x},
		blas64.General{Rows: k, Cols: n, Stride: n, Data: x}, 0, blas64.General{Rows: n, Cols: n, Stride: n, Data: a})
	c := make([]float64, n*rhs)
	for i := range c {
		c[i] = r.NormFloat64()
	}
	ref, w := append([]float64(nil), a...), append([]float64(nil), c...)
	lower := append([]float64(nil), a...)
	u, ok, err := p.potrf(a, n)
	if err != nil || !ok {
		t.Fatalf("blocked factorisation: %v %v", ok, err)
	}
	if err := p.potrs(u, w, rhs); err != nil {
		t.Fatal(err)
	}
	ru, ok := lapack64.Potrf(blas64.Symmetric{N: n, Stride: n, Data: ref, Uplo: blas.Upper})
	if !ok {
		t.Fatal("gonum's factorisation failed")
	}
	lapack64.Potrs(ru, blas64.General{Rows: n, Cols: rhs, Stride: rhs, Data: c})
	var worst, scale float64
	for i := range w {
		worst = math.Max(worst, math.Abs(w[i]-c[i]))
		scale = math.Max(scale, math.Abs(c[i]))
	}
	t.Logf("max |W| %.3g, max difference %.3g", scale, worst)
	if worst > 1e-9*scale {
		t.Errorf("blocked and gonum solutions differ by %.3g (max |W| %.3g)", worst, scale)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			if a[i*n+j] != lower[i*n+j] {
				t.Fatalf("the strict lower triangle changed at (%d, %d)", i, j)
			}
		}
	}
}
