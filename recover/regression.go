package recover

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"gonum.org/v1/gonum/mat"
)

// refitter carries the state of one LSQ call across its passes.
type refitter struct {
	o       *LSQOptions
	cur     *onnxio.Model
	cs, os  *stager // the pruned model being refit, the original
	p       *products
	nFit    int // batches solved on; the rest are held out
	fitRows int // calibration samples in those batches
	heldOut int // calibration samples held out
}

// regression is one least-squares problem: layers that read the same
// input the same way (q, k and v; a block's 1x1 branches) share its
// normal equations, their outputs side by side.
type regression struct {
	layers []*lsqLayer
	cols   []int // first output column of each layer
	eq     *normal
	rng    *rand.Rand
	q      float64 // the share of positions kept, set on the first batch
}

// regressionKey says which layers can share normal equations: same input,
// same features (bias or not, the same convolution geometry), no groups.
func regressionKey(l *lsqLayer) string {
	if l.groups != 1 {
		return fmt.Sprintf("own %d", l.index)
	}
	if l.op != "Conv" {
		return fmt.Sprintf("dense %q %v", l.input, l.hasBias())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "conv %q %v %v", l.input, l.hasBias(), l.kernels)
	for _, a := range []string{"strides", "pads", "dilations"} {
		fmt.Fprintf(&b, " %s%v", a, onnxio.AttrInts(l.node, a))
	}
	fmt.Fprintf(&b, " %s", onnxio.AttrString(l.node, "auto_pad", "NOTSET"))
	return b.String()
}

// regressions groups a pass's layers and sets up their equations with the
// layers' current weights.
func (r *refitter) regressions(wave []*lsqLayer) ([]*regression, error) {
	var regs []*regression
	byKey := map[string]*regression{}
	for _, l := range wave {
		k := regressionKey(l)
		g, ok := byKey[k]
		if !ok {
			g = &regression{rng: rand.New(rand.NewPCG(uint64(r.o.Seed), uint64(l.index))), q: -1}
			byKey[k] = g
			regs = append(regs, g)
		}
		g.layers = append(g.layers, l)
	}
	for _, g := range regs {
		l0 := g.layers[0]
		n := 0
		for _, l := range g.layers {
			g.cols = append(g.cols, n)
			n += l.outW / l.groups
		}
		d := l0.inW
		if l0.hasBias() {
			d++
		}
		w := make([]float32, l0.groups*d*n)
		for li, l := range g.layers {
			old, err := layerWeights(r.cur, l)
			if err != nil {
				return nil, err
			}
			for k, m := range old {
				rows, cols := m.Dims()
				for i := 0; i < rows; i++ {
					for j := 0; j < cols; j++ {
						w[(k*d+i)*n+g.cols[li]+j] = float32(m.At(i, j))
					}
				}
			}
		}
		g.eq = newNormal(d, n, l0.groups, l0.hasBias(), g.cols, w, r.p)
	}
	return regs, nil
}

// wave refits one pass's layers and writes the weights kept into cur.
func (r *refitter) wave(wave []*lsqLayer) ([]LayerFit, error) {
	regs, err := r.regressions(wave)
	if err != nil {
		return nil, err
	}
	var xs, ys []string
	for _, l := range wave {
		xs, ys = append(xs, l.input), append(ys, l.target)
	}
	cst, err := r.cs.next(xs)
	if err != nil {
		return nil, err
	}
	defer cst.finish()
	ost, err := r.os.next(ys)
	if err != nil {
		return nil, err
	}
	defer ost.finish()
	sse := make([][]float64, len(regs))
	solve := func() error {
		for i, g := range regs {
			if sse[i], err = g.eq.solve(r.o.Ridge, uint64(g.layers[0].index), r.heldOut); err != nil {
				return fmt.Errorf("least squares for %s (%s): %w", g.layers[0].label, g.layers[0].op, err)
			}
		}
		return nil
	}
	for b := range r.cs.batches {
		if b == r.nFit {
			if err := solve(); err != nil {
				return nil, err
			}
		}
		xm, err := cst.run(b)
		if err != nil {
			return nil, err
		}
		ym, err := ost.run(b)
		if err != nil {
			return nil, err
		}
		bt := r.cs.batches[b]
		first := bt.Start
		if b >= r.nFit {
			first -= r.fitRows
		}
		for _, g := range regs {
			if err := g.add(xm, ym, first, bt.Len(), r.fitRows, r.o.MaxRows); err != nil {
				return nil, fmt.Errorf("least squares for %s (%s): %w", g.layers[0].label, g.layers[0].op, err)
			}
		}
	}
	if r.nFit == len(r.cs.batches) {
		if err := solve(); err != nil {
			return nil, err
		}
	}
	var fits []LayerFit
	for i, g := range regs {
		if err := g.eq.flush(); err != nil {
			return nil, err
		}
		for li, l := range g.layers {
			fit := g.report(li, sse[i])
			if fit.Applied {
				if err := setLayerWeights(r.cur, l, g.weights(li)); err != nil {
					return nil, err
				}
			}
			fits = append(fits, fit)
		}
	}
	return fits, nil
}

// add takes the sampled rows of one batch of n calibration samples, the
// first of them numbered first: the input from the pruned model (xm) and
// the targets from the original (ym). samples is the number of samples
// solved on.
func (g *regression) add(xm, ym map[string]ort.Tensor, first, n, samples, maxRows int) error {
	l0 := g.layers[0]
	x := xm[l0.input]
	xv, ok := x.Data.([]float32)
	if !ok {
		return fmt.Errorf("least squares needs float32 tensors, input %q is %s", l0.input, x.DType)
	}
	ys := make([][]float32, len(g.layers))
	yts := make([]ort.Tensor, len(g.layers))
	for li, l := range g.layers {
		yts[li] = ym[l.target]
		if ys[li], ok = yts[li].Data.([]float32); !ok {
			return fmt.Errorf("least squares needs float32 tensors, target %q is %s", l.target, yts[li].DType)
		}
	}
	if l0.op == "Conv" {
		return g.convRows(x, xv, yts, ys, first, samples, maxRows)
	}
	d0 := l0.inW
	if len(x.Shape) < 1 || x.Shape[len(x.Shape)-1] != int64(d0) {
		return fmt.Errorf("input %q has shape %v, want %d features", l0.input, x.Shape, d0)
	}
	rows := len(xv) / d0
	yw := make([]int, len(g.layers))
	for li, l := range g.layers {
		if rows == 0 || len(ys[li])%rows != 0 || len(ys[li])/rows <= l.keep[len(l.keep)-1] {
			return fmt.Errorf("target %q has shape %v, which does not match %d rows of %d outputs", l.target, yts[li].Shape, rows, len(l.keep))
		}
		yw[li] = len(ys[li]) / rows
	}
	perSample := max(rows/max(n, 1), 1)
	if g.q < 0 {
		g.q = math.Min(1, float64(maxRows)/float64(perSample*samples))
		g.eq.expect(int(g.q * float64(perSample*samples)))
	}
	bias := g.eq.bias
	for row := 0; row < rows; row++ {
		if g.q < 1 && g.rng.Float64() >= g.q {
			continue
		}
		k, err := g.eq.row(first + min(row/perSample, n-1))
		if err != nil {
			return err
		}
		fx, fy := g.eq.xy(0, k)
		copy(fx, xv[row*d0:(row+1)*d0])
		if bias {
			fx[d0] = 1
		}
		for li, l := range g.layers {
			y, c := ys[li][row*yw[li]:], g.cols[li]
			for j, u := range l.keep {
				fy[c+j] = y[u]
			}
		}
	}
	return nil
}

// convRows adds im2col rows of sampled output positions.
func (g *regression) convRows(x ort.Tensor, xv []float32, yts []ort.Tensor, ys [][]float32, first, samples, maxRows int) error {
	l0 := g.layers[0]
	xd := append([]int64{}, x.Shape...)
	kernel := append([]int64{}, l0.kernels...)
	yds := make([][]int64, len(yts))
	for li, y := range yts {
		yds[li] = append([]int64{}, y.Shape...)
	}
	if len(xd) == 3 { // 1-D: treat as height 1
		xd = []int64{xd[0], xd[1], 1, xd[2]}
		for li, yd := range yds {
			if len(yd) == 3 {
				yds[li] = []int64{yd[0], yd[1], 1, yd[2]}
			}
		}
		kernel = []int64{1, kernel[0]}
	}
	if len(xd) != 4 {
		return fmt.Errorf("only 1-D and 2-D convolutions are refit (input shape %v)", x.Shape)
	}
	geo, err := onnxio.ConvGeometry(l0.node, l0.input, x.Shape, l0.kernels, true)
	if err != nil {
		return err
	}
	pb, st, dl := geo.PadsBegin, geo.Strides, geo.Dilations
	if len(pb) == 1 {
		pb, st, dl = []int64{0, pb[0]}, []int64{1, st[0]}, []int64{1, dl[0]}
	}
	N, C, H, W := int(xd[0]), int(xd[1]), int(xd[2]), int(xd[3])
	yd := yds[0]
	if len(yd) != 4 {
		return fmt.Errorf("output %q has shape %v", l0.target, yts[0].Shape)
	}
	OH, OW := int(yd[2]), int(yd[3])
	for li, d := range yds {
		if len(d) != 4 || int(d[0]) != N || int(d[2]) != OH || int(d[3]) != OW || int(d[1]) <= g.layers[li].keep[len(g.layers[li].keep)-1] {
			return fmt.Errorf("output %q has shape %v, input %v", g.layers[li].target, yts[li].Shape, x.Shape)
		}
	}
	kh, kw := int(kernel[0]), int(kernel[1])
	G := l0.groups
	cg := C / G
	if cg*kh*kw != l0.inW {
		return fmt.Errorf("input has %d channels in %d groups, the weight wants %d features per group", C, G, l0.inW)
	}
	og := l0.outW / G
	if g.q < 0 {
		g.q = math.Min(1, float64(maxRows)/float64(max(OH*OW*samples, 1)))
		g.eq.expect(int(g.q * float64(OH*OW*samples)))
	}
	bias := g.eq.bias
	for b := 0; b < N; b++ {
		for oh := 0; oh < OH; oh++ {
			for ow := 0; ow < OW; ow++ {
				if g.q < 1 && g.rng.Float64() >= g.q {
					continue
				}
				r, err := g.eq.row(first + b)
				if err != nil {
					return err
				}
				for k := 0; k < G; k++ {
					fx, fy := g.eq.xy(k, r)
					f := 0
					h0, w0 := oh*int(st[0])-int(pb[0]), ow*int(st[1])-int(pb[1])
					// A window inside the input with unit column dilation
					// is kh runs of kw contiguous values per channel.
					inside := dl[1] == 1 && h0 >= 0 && w0 >= 0 && h0+(kh-1)*int(dl[0]) < H && w0+kw <= W
					for c := k * cg; c < (k+1)*cg; c++ {
						base := (b*C + c) * H * W
						for i := 0; i < kh; i++ {
							h := h0 + i*int(dl[0])
							if inside {
								copy(fx[f:f+kw], xv[base+h*W+w0:])
								f += kw
								continue
							}
							for j := 0; j < kw; j++ {
								w := w0 + j*int(dl[1])
								if h >= 0 && h < H && w >= 0 && w < W {
									fx[f] = xv[base+h*W+w]
								} else {
									fx[f] = 0
								}
								f++
							}
						}
					}
					if bias {
						fx[f] = 1
					}
					for li, l := range g.layers {
						M := int(yds[li][1])
						if G > 1 {
							for j := 0; j < og; j++ {
								fy[j] = ys[li][((b*M+l.keep[k*og+j])*OH+oh)*OW+ow]
							}
							continue
						}
						for j, u := range l.keep {
							fy[g.cols[li]+j] = ys[li][((b*M+u)*OH+oh)*OW+ow]
						}
					}
				}
			}
		}
	}
	return nil
}

// report sums layer li's errors and decides whether its refit is kept:
// only if it lowers the error on the held-out rows and, when it is
// underdetermined or ill-conditioned, if it lowers it on significantly
// more held-out samples than it raises it (a one-sided sign test at 5%,
// which needs at least five held-out samples).
func (g *regression) report(li int, sse []float64) LayerFit {
	l, e := g.layers[li], g.eq
	fit := LayerFit{Node: l.label, Op: l.op, Weight: l.weight, Inputs: l.inW, Outputs: l.outW, Bias: l.hasBias(), Rows: e.rows, HeldOutRows: e.hRows}
	per := l.outW / l.groups
	var before, after, yy, hOld, hNew, hyy float64
	for k := 0; k < e.groups; k++ {
		for j := g.cols[li]; j < g.cols[li]+per; j++ {
			i := k*e.n + j
			before, after, yy = before+e.sseOld[i], after+sse[i], yy+e.yy[i]
			hOld, hNew, hyy = hOld+e.hOld[i], hNew+e.hNew[i], hyy+e.hyy[i]
		}
	}
	if yy > 0 {
		fit.Before, fit.After = before/yy, after/yy
	}
	if hyy > 0 {
		fit.HeldOutBefore, fit.HeldOutAfter = hOld/hyy, hNew/hyy
	}
	var why []string
	switch {
	case e.rows < e.d:
		fit.Flag = "underdetermined"
		why = append(why, fmt.Sprintf("underdetermined: %s for %d unknowns per output, so the data do not fix the weights and the ridge decides them", plural(e.rows, "regression row"), e.d))
	case e.ridgeShare > 0.5:
		fit.Flag = "ill-conditioned"
		why = append(why, fmt.Sprintf("ill-conditioned: the ridge outweighs the data in about %.0f%% of the %d input directions", 100*e.ridgeShare, l.inW))
	}
	better, worse := 0, 0
	for s := range e.sOld[li] {
		switch {
		case e.sNew[li][s] < e.sOld[li][s]:
			better++
		case e.sNew[li][s] > e.sOld[li][s]:
			worse++
		}
	}
	p := signTest(better, worse)
	fit.Applied = e.rows > 0 && e.hRows > 0 && hNew < hOld && (fit.Flag == "" || p <= 0.05)
	samples := fmt.Sprintf("%s (%s)", plural(len(e.sOld[li]), "held-out sample"), plural(e.hRows, "row"))
	switch {
	case e.hRows == 0:
		why = append(why, "no calibration rows were left to hold out (at least 2 are needed), so the refit could not be checked and the old weights were kept")
	case hNew >= hOld:
		why = append(why, fmt.Sprintf("on %s the refit raised the error (%.4g -> %.4g), so the old weights were kept", samples, fit.HeldOutBefore, fit.HeldOutAfter))
	case !fit.Applied:
		why = append(why, fmt.Sprintf("on %s it lowered the error (%.4g -> %.4g) but not consistently enough to trust (lower on %s, higher on %d), so the old weights were kept", samples, fit.HeldOutBefore, fit.HeldOutAfter, plural(better, "sample"), worse))
	case fit.Flag != "":
		why = append(why, fmt.Sprintf("it lowered the error on %s (%.4g -> %.4g; lower on %s, higher on %d), so it was kept", samples, fit.HeldOutBefore, fit.HeldOutAfter, plural(better, "sample"), worse))
	}
	if fit.Flag != "" || !fit.Applied {
		fit.Warning = strings.Join(why, "; ")
	}
	return fit
}

// plural is "1 row" or "n rows".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// signTest is the one-sided p-value of at least better successes in
// better+worse fair coin flips.
func signTest(better, worse int) float64 {
	n := better + worse
	if n == 0 {
		return 1
	}
	var p float64
	for k := better; k <= n; k++ {
		// C(n, k) / 2^n through logs, exact enough for a threshold.
		lg, _ := math.Lgamma(float64(n + 1))
		lk, _ := math.Lgamma(float64(k + 1))
		lnk, _ := math.Lgamma(float64(n - k + 1))
		p += math.Exp(lg - lk - lnk - float64(n)*math.Ln2)
	}
	return p
}

// weights returns layer li's refit weights per group in the layout
// setLayerWeights takes.
func (g *regression) weights(li int) []*mat.Dense {
	l, e := g.layers[li], g.eq
	per := l.outW / l.groups
	out := make([]*mat.Dense, e.groups)
	for k := range out {
		m := mat.NewDense(e.d, per, nil)
		for i := 0; i < e.d; i++ {
			for j := 0; j < per; j++ {
				m.Set(i, j, e.w64[(k*e.d+i)*e.n+g.cols[li]+j])
			}
		}
		out[k] = m
	}
	return out
}
