package recover

import (
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
)

// products computes in ONNX Runtime what a block of regression rows adds
// to the normal equations: X^T X and X^T Y, and the squared residual of
// given weights per output; or, for held-out rows, the residuals
// themselves. It works on G independent problems at once
// (X [G, R, D], Y [G, R, N], W [G, D, N]). Its single-precision GEMM is
// tens of times faster than a pure-Go one; each block's sums are carried
// on in float64.
type products struct {
	gram  *ort.Session // X, Y, W -> X^T X, X^T Y, residual
	resid *ort.Session // X, Y, W -> X W - Y
	mm    *ort.Session // A [P, Q], B [Q, R] -> A B
	dmm   *ort.Session // the same in float64
}

func newProducts(cfg ort.Config) (*products, error) {
	cfg.ShortLived, cfg.NoSpin = true, true
	build := func(withGram bool) (*ort.Session, error) {
		str := func(s string) *string { return &s }
		node := func(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
			return &onnxpb.NodeProto{OpType: str(op), Name: str(out), Input: in, Output: []string{out}, Attribute: attrs}
		}
		ints := func(name string, v ...int64) *onnxpb.AttributeProto {
			return &onnxpb.AttributeProto{Name: str(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
		}
		sym := func(a, b, c string) []onnxio.Dim { return []onnxio.Dim{{Param: a}, {Param: b}, {Param: c}} }
		g := &onnxpb.GraphProto{Name: str("lsq_products")}
		g.Input = []*onnxpb.ValueInfoProto{
			onnxio.NewValueInfo("X", onnxio.Float, sym("G", "R", "D")),
			onnxio.NewValueInfo("Y", onnxio.Float, sym("G", "R", "N")),
			onnxio.NewValueInfo("W", onnxio.Float, sym("G", "D", "N")),
		}
		if withGram {
			g.Node = append(g.Node,
				node("Transpose", []string{"X"}, "Xt", ints("perm", 0, 2, 1)),
				node("MatMul", []string{"Xt", "X"}, "XtX"),
				node("MatMul", []string{"Xt", "Y"}, "XtY"))
			g.Output = append(g.Output,
				onnxio.NewValueInfo("XtX", onnxio.Float, sym("G", "D", "D")),
				onnxio.NewValueInfo("XtY", onnxio.Float, sym("G", "D", "N")))
		}
		g.Node = append(g.Node,
			node("MatMul", []string{"X", "W"}, "P"),
			node("Sub", []string{"P", "Y"}, "E"))
		if withGram {
			g.Node = append(g.Node, node("ReduceSumSquare", []string{"E"}, "SSE", ints("axes", 1),
				&onnxpb.AttributeProto{Name: str("keepdims"), Type: onnxpb.AttributeProto_INT.Enum(), I: new(int64)}))
			g.Output = append(g.Output, onnxio.NewValueInfo("SSE", onnxio.Float, []onnxio.Dim{{Param: "G"}, {Param: "N"}}))
		} else {
			g.Output = append(g.Output, onnxio.NewValueInfo("E", onnxio.Float, sym("G", "R", "N")))
		}
		ir, opset := int64(8), int64(13)
		m := &onnxio.Model{Proto: &onnxpb.ModelProto{IrVersion: &ir, Graph: g,
			OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: str(""), Version: &opset}}}}
		return ort.NewSessionForModel(m, nil, cfg)
	}
	gram, err := build(true)
	if err != nil {
		return nil, err
	}
	resid, err := build(false)
	if err != nil {
		gram.Destroy()
		return nil, err
	}
	mm, err := matMulSession(cfg)
	if err != nil {
		gram.Destroy()
		resid.Destroy()
		return nil, err
	}
	dmm, err := dgemmSession(cfg)
	if err != nil {
		gram.Destroy()
		resid.Destroy()
		mm.Destroy()
		return nil, err
	}
	return &products{gram: gram, resid: resid, mm: mm, dmm: dmm}, nil
}

// matMulSession multiplies two float32 matrices.
func matMulSession(cfg ort.Config) (*ort.Session, error) {
	str := func(s string) *string { return &s }
	g := &onnxpb.GraphProto{Name: str("lsq_matmul"),
		Node: []*onnxpb.NodeProto{{OpType: str("MatMul"), Name: str("C"), Input: []string{"A", "B"}, Output: []string{"C"}}},
		Input: []*onnxpb.ValueInfoProto{
			onnxio.NewValueInfo("A", onnxio.Float, []onnxio.Dim{{Param: "P"}, {Param: "Q"}}),
			onnxio.NewValueInfo("B", onnxio.Float, []onnxio.Dim{{Param: "Q"}, {Param: "R"}}),
		},
		Output: []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("C", onnxio.Float, []onnxio.Dim{{Param: "P"}, {Param: "R"}})},
	}
	ir, opset := int64(8), int64(13)
	m := &onnxio.Model{Proto: &onnxpb.ModelProto{IrVersion: &ir, Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: str(""), Version: &opset}}}}
	return ort.NewSessionForModel(m, nil, cfg)
}

// matMul is a [p, q] times b [q, r] in ONNX Runtime, in float32.
func (p *products) matMul(a, b []float32, rows, inner, cols int) ([]float32, error) {
	out, err := p.mm.Run(
		ort.Tensor{Name: "A", Shape: []int64{int64(rows), int64(inner)}, Data: a},
		ort.Tensor{Name: "B", Shape: []int64{int64(inner), int64(cols)}, Data: b})
	if err != nil {
		return nil, err
	}
	return out[0].Data.([]float32), nil
}

func (p *products) destroy() {
	p.gram.Destroy()
	p.resid.Destroy()
	p.mm.Destroy()
	p.dmm.Destroy()
}

// normal accumulates the normal equations of G independent regressions
// with D features (the bias column included) and N outputs each, over
// blocks of rows; after solve it scores held-out rows. What it holds is
// the equations themselves (X^T X, D x D, and X^T Y, D x N, per group, in
// float64), the current and refit weights (D x N, float32) and one block
// of pending rows.
type normal struct {
	d, n, groups int
	bias         bool // the last feature is the constant 1, not penalised
	g, c         [][]float64
	yy, sseOld   []float64 // per group and output (g*n + j), training rows
	rows         int       // training rows per group
	held         bool      // scoring held-out rows (after solve)
	hOld, hNew   []float64 // held-out squared residuals per group and output
	hyy          []float64
	hRows        int
	// Held-out squared residuals per sample, for each set of output
	// columns (one per layer): part[k] is the first column of part k.
	part       []int
	sOld, sNew [][]float64 // [part][sample]
	owner      []int       // sample of each pending row
	wOld, wNew []float32   // [G, D, N]
	w64        []float64   // wNew in full precision
	x, y       []float32   // pending rows, [G, cap, D] and [G, cap, N]
	nb, cap    int
	p          *products
	lambda     float64
	ridgeShare float64 // estimated share of input directions the ridge outweighs
	// dual: fewer rows than half the features, so the rows themselves
	// (xs, ys per group) are kept instead of X^T X, and the problem is
	// solved through the rows' kernel matrix X X^T.
	dual   bool
	xs, ys [][]float32
}

func newNormal(d, n, groups int, bias bool, part []int, wOld []float32, p *products) *normal {
	cap := max(64, min(4096, (1<<22)/(groups*(d+n))))
	e := &normal{d: d, n: n, groups: groups, bias: bias, part: part, wOld: wOld, p: p, cap: cap,
		yy: make([]float64, groups*n), sseOld: make([]float64, groups*n),
		x: make([]float32, groups*cap*d), y: make([]float32, groups*cap*n), owner: make([]int, cap)}
	return e
}

// expect tells the equations how many rows will be solved on, before the
// first: with fewer than half as many rows as features they keep the rows.
func (e *normal) expect(rows int) {
	e.dual = e.rows == 0 && 2*rows <= e.d
}

// row reserves the next row of the block for a row of the given
// calibration sample (counted from the first held-out one when scoring)
// and returns its index.
func (e *normal) row(sample int) (int, error) {
	if e.nb == e.cap {
		if err := e.flush(); err != nil {
			return 0, err
		}
	}
	e.owner[e.nb] = sample
	e.nb++
	return e.nb - 1, nil
}

// xy returns the feature and target buffers of row r of group k.
func (e *normal) xy(k, r int) (x, y []float32) {
	x = e.x[(k*e.cap+r)*e.d : (k*e.cap+r+1)*e.d]
	y = e.y[(k*e.cap+r)*e.n : (k*e.cap+r+1)*e.n]
	return x, y
}

// flush sends the pending rows through ORT.
func (e *normal) flush() error {
	if e.nb == 0 {
		return nil
	}
	nb, G, d, n := e.nb, e.groups, e.d, e.n
	x, y := e.x[:G*nb*d], e.y[:G*nb*n]
	if G > 1 && nb < e.cap { // close the gaps between groups
		x, y = make([]float32, G*nb*d), make([]float32, G*nb*n)
		for k := 0; k < G; k++ {
			copy(x[k*nb*d:(k+1)*nb*d], e.x[k*e.cap*d:])
			copy(y[k*nb*n:(k+1)*nb*n], e.y[k*e.cap*n:])
		}
	}
	yy := e.yy
	if e.held {
		yy = e.hyy
	}
	for k := 0; k < G; k++ {
		for j, v := range y[k*nb*n : (k+1)*nb*n] {
			yy[k*n+j%n] += float64(v) * float64(v)
		}
	}
	X := ort.Tensor{Name: "X", Shape: []int64{int64(G), int64(nb), int64(d)}, Data: x}
	Y := ort.Tensor{Name: "Y", Shape: []int64{int64(G), int64(nb), int64(n)}, Data: y}
	W := func(w []float32) ort.Tensor {
		return ort.Tensor{Name: "W", Shape: []int64{int64(G), int64(d), int64(n)}, Data: w}
	}
	e.nb = 0
	if e.held {
		e.hRows += nb
		for _, w := range []struct {
			w      []float32
			sum    []float64
			sample [][]float64
		}{{e.wOld, e.hOld, e.sOld}, {e.wNew, e.hNew, e.sNew}} {
			out, err := e.p.resid.Run(X, Y, W(w.w))
			if err != nil {
				return err
			}
			e.score(out[0].Data.([]float32), nb, w.sum, w.sample)
		}
		return nil
	}
	e.rows += nb
	if e.dual {
		out, err := e.p.resid.Run(X, Y, W(e.wOld))
		if err != nil {
			return err
		}
		for i, v := range out[0].Data.([]float32) {
			k, j := i/(nb*n), i%n
			e.sseOld[k*n+j] += float64(v) * float64(v)
		}
		if e.xs == nil {
			e.xs, e.ys = make([][]float32, G), make([][]float32, G)
		}
		for k := 0; k < G; k++ {
			e.xs[k] = append(e.xs[k], x[k*nb*d:(k+1)*nb*d]...)
			e.ys[k] = append(e.ys[k], y[k*nb*n:(k+1)*nb*n]...)
		}
		return nil
	}
	if e.g == nil {
		e.g, e.c = make([][]float64, G), make([][]float64, G)
		for k := range e.g {
			e.g[k], e.c[k] = make([]float64, d*d), make([]float64, d*n)
		}
	}
	out, err := e.p.gram.Run(X, Y, W(e.wOld))
	if err != nil {
		return err
	}
	xtx, xty := out[0].Data.([]float32), out[1].Data.([]float32)
	for k := 0; k < G; k++ {
		addTo(e.g[k], xtx[k*d*d:(k+1)*d*d])
		addTo(e.c[k], xty[k*d*n:(k+1)*d*n])
	}
	addTo(e.sseOld, out[2].Data.([]float32))
	return nil
}

// score adds the squares of residuals r [G, nb, N] per output and per
// sample and part.
func (e *normal) score(r []float32, nb int, sum []float64, sample [][]float64) {
	n := e.n
	for k := 0; k < e.groups; k++ {
		for i := 0; i < nb; i++ {
			s := e.owner[i]
			p := 0
			for j, v := range r[(k*nb+i)*n : (k*nb+i+1)*n] {
				for p+1 < len(e.part) && j >= e.part[p+1] {
					p++
				}
				sq := float64(v) * float64(v)
				sum[k*n+j] += sq
				sample[p][s] += sq
			}
		}
	}
}

func addTo(dst []float64, src []float32) {
	for i, v := range src {
		dst[i] += float64(v)
	}
}
