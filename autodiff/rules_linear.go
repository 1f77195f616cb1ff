package autodiff

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

type attrT = onnxpb.AttributeProto

func init() {
	register("", 1, gradGemm, "Gemm")
	register("", 1, gradMatMul, "MatMul")
	register("", 1, gradConv, "Conv")
	register("", 1, gradMaxPool, "MaxPool")
	register("", 1, gradAveragePool, "AveragePool")
	register("", 1, gradGlobalAveragePool, "GlobalAveragePool")
}

// gradGemm: Y = alpha op(A) op(B) + beta C, each gradient one Gemm.
func gradGemm(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	alpha := onnxio.AttrFloat(c.n, "alpha", 1)
	beta := float64(onnxio.AttrFloat(c.n, "beta", 1))
	ta := onnxio.AttrInt(c.n, "transA", 0)
	tb := onnxio.AttrInt(c.n, "transB", 0)
	a, bm := c.in(0), c.in(1)
	res := make([]string, 3)
	gemm := func(x, y string, tx, ty int64) string {
		return c.op("Gemm", []string{x, y}, attrFloat("alpha", alpha), attrInt("transA", tx), attrInt("transB", ty))
	}
	if c.needs(0) {
		if ta == 0 {
			res[0] = gemm(dy, bm, 0, 1-tb) // dY op(B)^T
		} else {
			res[0] = gemm(bm, dy, tb, 1) // op(B) dY^T
		}
	}
	if c.needs(1) {
		if tb == 0 {
			res[1] = gemm(a, dy, 1-ta, 0) // op(A)^T dY
		} else {
			res[1] = gemm(dy, a, 1, ta) // dY^T op(A)
		}
	}
	if c.needs(2) {
		g := dy
		if beta != 1 {
			g = c.mul(dy, c.scalar(c.ftype(), beta))
		}
		var err error
		if res[2], err = c.sumToIn(g, 2); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// swapLast is the permutation that swaps the last two of r axes.
func swapLast(r int) []int64 {
	p := make([]int64, r)
	for k := range p {
		p[k] = int64(k)
	}
	p[r-1], p[r-2] = p[r-2], p[r-1]
	return p
}

// gradMatMul handles numpy semantics: 1-D operands are promoted (and the
// gradient reshaped back), batch axes broadcast and are summed back. A 2-D
// right operand (a weight) gets its gradient from a single Gemm over all
// rows.
func gradMatMul(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	a, bm := c.in(0), c.in(1)
	ad, err := c.dimsOf(a)
	if err != nil {
		return nil, err
	}
	bd, err := c.dimsOf(bm)
	if err != nil {
		return nil, err
	}
	yd, err := c.dimsOf(c.out(0))
	if err != nil {
		return nil, err
	}
	// Promote 1-D operands as numpy does (B first, so that two vectors
	// become [1,K] x [K,1]), with dY to match.
	a2, b2, dy2 := a, bm, dy
	ad2, bd2, yd2 := ad, bd, yd
	if len(bd) == 1 {
		b2 = c.unsqueeze(bm, []int64{1})
		bd2 = []int64{bd[0], 1}
		dy2 = c.unsqueeze(dy2, []int64{int64(len(yd2))})
		yd2 = insertAxis(yd2, len(yd2), 1)
	}
	if len(ad) == 1 {
		a2 = c.unsqueeze(a, []int64{0})
		ad2 = []int64{1, ad[0]}
		dy2 = c.unsqueeze(dy2, []int64{int64(len(yd2)) - 1})
		yd2 = insertAxis(yd2, len(yd2)-1, 1)
	}
	res := make([]string, 2)
	if c.needs(0) {
		bt := c.transpose(b2, swapLast(len(bd2)))
		g := c.op("MatMul", []string{dy2, bt})
		gd := append(append([]int64{}, yd2[:len(yd2)-1]...), ad2[len(ad2)-1])
		if res[0], err = c.sumToDims(g, gd, ad2, a); err != nil {
			return nil, err
		}
		if len(ad) == 1 {
			res[0] = c.reshapeLike(res[0], a)
		}
	}
	if c.needs(1) {
		if len(bd2) == 2 && bd2[0] > 0 && bd2[1] > 0 {
			k, n := bd2[0], bd2[1]
			af := c.reshape(a2, c.ints(-1, k))
			gf := c.reshape(dy2, c.ints(-1, n))
			res[1] = c.op("Gemm", []string{af, gf}, attrInt("transA", 1))
			if len(bd) == 1 {
				res[1] = c.reshapeLike(res[1], bm)
			}
		} else {
			at := c.transpose(a2, swapLast(len(ad2)))
			g := c.op("MatMul", []string{at, dy2})
			gd := append(append([]int64{}, yd2[:len(yd2)-2]...), ad2[len(ad2)-1], yd2[len(yd2)-1])
			if res[1], err = c.sumToDims(g, gd, bd2, bm); err != nil {
				return nil, err
			}
			if len(bd) == 1 {
				res[1] = c.reshapeLike(res[1], bm)
			}
		}
	}
	return res, nil
}

// insertAxis returns d with a size-v axis inserted at position at.
func insertAxis(d []int64, at int, v int64) []int64 {
	out := append([]int64{}, d[:at]...)
	out = append(out, v)
	return append(out, d[at:]...)
}

// geometry resolves auto_pad and defaults from static spatial sizes.
func (c *bctx) geometry(x string, kernel []int64, dilate bool) (*onnxio.Geometry, error) {
	xd, err := c.dimsOf(x)
	if err != nil {
		return nil, err
	}
	return onnxio.ConvGeometry(c.n, x, xd, kernel, dilate)
}

// gradConv: dX is a ConvTranspose with the same weights and geometry; dW
// is a Conv of the input with dY, batch and channel axes swapped (the
// forward stride becomes the dilation and vice versa), grouped per conv
// group; dB sums dY over batch and space.
func gradConv(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	x, w := c.in(0), c.in(1)
	wd, err := c.staticDims(w, 0, 1)
	if err != nil {
		return nil, err
	}
	kernel := onnxio.AttrInts(c.n, "kernel_shape")
	if kernel == nil {
		kernel = wd[2:]
	}
	for _, k := range kernel {
		if k < 0 {
			return nil, fmt.Errorf("kernel shape %v is not static", kernel)
		}
	}
	geo, err := c.geometry(x, kernel, true)
	if err != nil {
		return nil, err
	}
	group := onnxio.AttrInt(c.n, "group", 1)
	ns := len(kernel)
	res := make([]string, 3)
	if c.needs(0) {
		res[0] = c.op("ConvTranspose", []string{dy, w},
			attrInts("kernel_shape", kernel), attrInts("strides", geo.Strides), attrInts("dilations", geo.Dilations),
			attrInts("pads", geo.Pads()), attrInts("output_padding", geo.OutputPadding()), attrInt("group", group))
	}
	if c.needs(1) {
		res[1] = c.convWeightGradPatches(x, dy, wd, kernel, geo, group)
	}
	if c.needs(1) && res[1] == "" {
		m, cg := wd[0], wd[1]
		og := m / group
		spatialX := geo.In
		spatialY := geo.Out
		var xs, ws string
		if group == 1 {
			perm := []int64{1, 0}
			for k := 0; k < ns; k++ {
				perm = append(perm, int64(k+2))
			}
			xs = c.transpose(x, perm)  // [C, N, ...]
			ws = c.transpose(dy, perm) // [M, N, ...]
		} else {
			// x [N, G*Cg, ...] -> [Cg, G*N, ...]; dY [N, G*Og, ...] -> [G*Og, N, ...].
			xr := c.reshape(x, c.ints(append([]int64{-1, group, cg}, spatialX...)...))
			perm := []int64{2, 1, 0}
			for k := 0; k < ns; k++ {
				perm = append(perm, int64(k+3))
			}
			xs = c.reshape(c.transpose(xr, perm), c.ints(append([]int64{cg, -1}, spatialX...)...))
			yr := c.reshape(dy, c.ints(append([]int64{-1, group, og}, spatialY...)...))
			perm = []int64{1, 2, 0}
			for k := 0; k < ns; k++ {
				perm = append(perm, int64(k+3))
			}
			ws = c.reshape(c.transpose(yr, perm), c.ints(append([]int64{m, -1}, spatialY...)...))
		}
		gw := c.op("Conv", []string{xs, ws},
			attrInts("kernel_shape", spatialY), attrInts("strides", geo.Dilations), attrInts("dilations", geo.Strides),
			attrInts("pads", geo.Pads()), attrInt("group", group)) // [Cg, M, k'...], k' >= k
		starts, ends, axes := make([]int64, ns), make([]int64, ns), make([]int64, ns)
		trim := false
		for k := 0; k < ns; k++ {
			ek := (spatialY[k]-1)*geo.Strides[k] + 1
			full := (spatialX[k]+geo.PadsBegin[k]+geo.PadsEnd[k]-ek)/geo.Dilations[k] + 1
			if full != kernel[k] {
				trim = true
			}
			ends[k], axes[k] = kernel[k], int64(k+2)
		}
		if trim {
			gw = c.slice(gw, starts, ends, axes)
		}
		perm := []int64{1, 0}
		for k := 0; k < ns; k++ {
			perm = append(perm, int64(k+2))
		}
		res[1] = c.transpose(gw, perm)
	}
	if c.needs(2) {
		axes := []int64{0}
		for k := 0; k < ns; k++ {
			axes = append(axes, int64(k+2))
		}
		res[2] = c.reduceSum(dy, axes, false)
	}
	return res, nil
}

// gradMaxPool: windows that tile the input get maxPoolTiled's gradient.
// Otherwise dY goes to the arg-max positions that the forward node's
// Indices output names (added to the node if it lacks one). The indices
// are flat positions in X, so one ScatterElements over the flattened X
// does it; overlapping windows can pick a position twice, which needs
// reduction "add" (opset 16).
func gradMaxPool(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" || !c.needs(0) {
		return nil, nil
	}
	if len(c.n.Output) > 1 && c.dy[1] != "" {
		return nil, fmt.Errorf("gradient flows into the Indices output")
	}
	if onnxio.AttrInt(c.n, "storage_order", 0) != 0 {
		return nil, fmt.Errorf("storage_order=1 is not supported")
	}
	kernel := onnxio.AttrInts(c.n, "kernel_shape")
	geo, err := c.geometry(c.in(0), kernel, true)
	if err != nil {
		return nil, err
	}
	if len(c.n.Output) < 2 || c.n.Output[1] == "" {
		if g, ok := c.maxPoolTiled(dy, kernel, geo); ok {
			return []string{g}, nil
		}
		idx := c.fresh("indices")
		c.n.Output = append(c.n.Output[:1], idx)
	}
	overlap := false
	for k := range kernel {
		if (kernel[k]-1)*geo.Dilations[k]+1 > geo.Strides[k] {
			overlap = true
		}
	}
	idx := c.n.Output[1]
	x, dt := c.in(0), c.ftype()
	flatIdx := c.reshape(idx, c.ints(-1))
	flatDy := c.reshape(dy, c.ints(-1))
	zeros := c.zeros(c.reshape(c.op("Size", []string{x}), c.ints(1)), dt)
	var attrs = []*attrT{attrInt("axis", 0)}
	if overlap {
		if c.opset < 16 {
			return nil, fmt.Errorf("overlapping windows need ScatterElements with reduction=add (opset 16); the model has opset %d", c.opset)
		}
		attrs = append(attrs, attrString("reduction", "add"))
	}
	g := c.op("ScatterElements", []string{zeros, flatIdx, flatDy}, attrs...)
	return []string{c.reshapeLike(g, x)}, nil
}

// gradAveragePool spreads dY over each window with a depthwise
// ConvTranspose whose kernel is all ones, after dividing dY by each
// window's divisor.
func gradAveragePool(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" || !c.needs(0) {
		return nil, nil
	}
	x, dt := c.in(0), c.ftype()
	xd, err := c.staticDims(x, 1)
	if err != nil {
		return nil, err
	}
	kernel := onnxio.AttrInts(c.n, "kernel_shape")
	geo, err := c.geometry(x, kernel, true)
	if err != nil {
		return nil, err
	}
	for _, d := range geo.Dilations {
		if d != 1 {
			return nil, fmt.Errorf("dilations are not supported")
		}
	}
	ch := xd[1]
	area := int64(1)
	for _, k := range kernel {
		area *= k
	}
	padded := false
	for k := range kernel {
		padded = padded || geo.PadsBegin[k] != 0 || geo.PadsEnd[k] != 0
	}
	var scaled string
	if onnxio.AttrInt(c.n, "count_include_pad", 0) != 0 || !padded {
		scaled = c.mul(dy, c.scalar(dt, 1/float64(area)))
	} else {
		// The divisor is the number of non-padding positions in each window:
		// an inclusive average pool of ones gives it divided by the area.
		ones := make([]float64, onnxio.NumElements(geo.In))
		for k := range ones {
			ones[k] = 1
		}
		shape := append([]int64{1, 1}, geo.In...)
		frac := c.op("AveragePool", []string{c.floats(dt, shape, ones)},
			attrInts("kernel_shape", kernel), attrInts("strides", geo.Strides), attrInts("pads", geo.Pads()),
			attrInt("count_include_pad", 1))
		scaled = c.div(dy, c.mul(frac, c.scalar(dt, float64(area))))
	}
	wdims := append([]int64{ch, 1}, kernel...)
	ones := make([]float64, onnxio.NumElements(wdims))
	for k := range ones {
		ones[k] = 1
	}
	g := c.op("ConvTranspose", []string{scaled, c.floats(dt, wdims, ones)},
		attrInts("kernel_shape", kernel), attrInts("strides", geo.Strides), attrInts("pads", geo.Pads()),
		attrInts("output_padding", geo.OutputPadding()), attrInt("group", ch))
	return []string{g}, nil
}

func gradGlobalAveragePool(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" || !c.needs(0) {
		return nil, nil
	}
	return []string{c.meanBack(dy, c.in(0), c.out(0))}, nil
}

// meanBack is the gradient of a mean that reduced x to y, with dY already
// of a shape that broadcasts to x: dY expanded and divided by the number of
// elements averaged, |x|/|y|, computed at run time.
func (c *bctx) meanBack(dy, x, y string) string {
	dt := c.ftype()
	// Scaled before it is expanded: one pass over x's size instead of three.
	scaled := c.mul(dy, c.div(c.sizeAs(y, dt), c.sizeAs(x, dt)))
	return c.expandLike(scaled, x)
}

// maxPoolTiled is MaxPool's gradient without the Indices output, for
// windows that tile the input exactly (kernel equal to stride, no padding,
// no dilation); ok is false for other geometries. ONNX Runtime computes
// MaxPool about 20x slower when it also has to write the indices, and the
// scatter back costs as much again. Each window's dY is shared equally
// among the positions that equal its maximum: ties (after ReLU, or in flat
// image regions) split the gradient instead of repeating it, so each
// window's gradient still sums to dY (a subgradient). Both upsamplings are
// nearest-neighbour Resizes, which ORT runs at memory speed.
func (c *bctx) maxPoolTiled(dy string, kernel []int64, geo *onnxio.Geometry) (string, bool) {
	dt := c.ftype()
	// Resize's scales input dates from opset 11; ORT's CPU provider has no
	// double kernels for this chain (other float types keep the Indices).
	if c.opset < 11 || dt != onnxio.Float {
		return "", false
	}
	area := int64(1)
	scales := []float64{1, 1}
	for k := range kernel {
		if kernel[k] != geo.Strides[k] || geo.Dilations[k] != 1 || geo.PadsBegin[k] != 0 || geo.PadsEnd[k] != 0 || geo.In[k] != geo.Out[k]*kernel[k] {
			return "", false
		}
		area *= kernel[k]
		scales = append(scales, float64(kernel[k]))
	}
	sc := c.floats(onnxio.Float, []int64{int64(len(scales))}, scales)
	roi := "" // optional from opset 13
	if c.opset < 13 {
		roi = c.floats(dt, []int64{0}, nil)
	}
	up := func(t string) string {
		return c.op("Resize", []string{t, roi, sc}, attrString("mode", "nearest"),
			attrString("coordinate_transformation_mode", "asymmetric"), attrString("nearest_mode", "floor"))
	}
	x, y := c.in(0), c.out(0)
	// A Relu in front whose gradient comes only from here is folded in: a
	// maximum y > 0 of the Relu's output is one of its input too, so the
	// mask compares the Relu's input with y, and windows whose maximum is
	// 0 (which the Relu's gradient zeroes) get no gradient. That saves the
	// Relu's full-size mask and product (relu.premasked lets its rule pass
	// the gradient through).
	relu := c.foldableRelu(x)
	if relu != "" {
		x = relu
		dy = c.masked(c.op("Greater", []string{y, c.scalar(dt, 0)}), dy, dt)
	}
	// y upsampled through a one-channel view: ONNX Runtime would run the
	// Resize of the pooling's output in its blocked layout, whose change
	// back to the plain one costs more than the upsampling.
	one := append([]int64{-1, 1}, geo.Out...)
	uy := c.reshapeLike(up(c.reshape(y, c.ints(one...))), x)
	mask := c.cast(c.op("Equal", []string{x, uy}), dt)
	// The average of the mask over a window is its number of ties / area.
	frac := c.op("AveragePool", []string{mask}, attrInts("kernel_shape", kernel), attrInts("strides", kernel))
	if relu != "" {
		// Windows of a zero maximum may have no tie at all: keep 0/0 out.
		frac = c.op("Max", []string{frac, c.scalar(dt, 1/float64(area))})
	}
	share := c.div(c.mul(dy, c.scalar(dt, 1/float64(area))), frac)
	g := c.mul(mask, up(share))
	if relu != "" {
		if c.premasked == nil {
			c.premasked = map[string]string{}
		}
		c.premasked[g] = c.in(0)
	}
	return g, true
}

// foldableRelu returns the input of the Relu that produces x when x's
// gradient is the pooling's alone (one consumer, not a graph output, no
// gradient of its own requested), else "".
func (c *bctx) foldableRelu(x string) string {
	i, ok := c.ix.Producer[x]
	if !ok || len(c.ix.Consumers[x]) != 1 || c.wrt[x] {
		return ""
	}
	if _, out := c.ix.Outputs[x]; out {
		return ""
	}
	n := c.g.Node[i]
	if n.GetOpType() != "Relu" || n.GetDomain() != "" || len(n.Input) != 1 || c.dtype(n.Input[0]) != c.dtype(x) {
		return ""
	}
	return n.Input[0]
}
