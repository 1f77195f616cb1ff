package autodiff

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

func init() {
	register("", 1, gradSoftmax, "Softmax")
	register("", 1, gradLogSoftmax, "LogSoftmax")
	register("", 17, gradLayerNorm, "LayerNormalization")
	register("", 1, gradBatchNorm, "BatchNormalization")
}

// softmaxFrame gives the tensors and axis a (log-)softmax rule works on:
// from opset 13 the node's own axis; before, the coerced 2-D view
// (flattened at axis, default 1) with axis 1, reshaped back at the end.
func (c *bctx) softmaxFrame() (y, dy string, axis int64, back func(string) string, err error) {
	x, y, dy := c.in(0), c.out(0), c.dy[0]
	r, err := c.rank(x)
	if err != nil {
		return "", "", 0, nil, err
	}
	if c.opset >= 13 {
		axis, err = normAxis(onnxio.AttrInt(c.n, "axis", -1), r)
		return y, dy, axis, func(g string) string { return g }, err
	}
	a := onnxio.AttrInt(c.n, "axis", 1)
	if a < 0 {
		a += int64(r)
	}
	fy := c.op("Flatten", []string{y}, attrInt("axis", a))
	fdy := c.op("Flatten", []string{dy}, attrInt("axis", a))
	return fy, fdy, 1, func(g string) string { return c.reshapeLike(g, x) }, nil
}

// gradSoftmax: dX = Y (dY - sum(dY Y)) along the axis.
func gradSoftmax(c *bctx) ([]string, error) {
	if c.dy[0] == "" || !c.needs(0) {
		return nil, nil
	}
	y, dy, axis, back, err := c.softmaxFrame()
	if err != nil {
		return nil, err
	}
	s := c.reduceSum(c.mul(dy, y), []int64{axis}, true)
	return []string{back(c.mul(y, c.sub(dy, s)))}, nil
}

// gradLogSoftmax: dX = dY - exp(Y) sum(dY) along the axis.
func gradLogSoftmax(c *bctx) ([]string, error) {
	if c.dy[0] == "" || !c.needs(0) {
		return nil, nil
	}
	y, dy, axis, back, err := c.softmaxFrame()
	if err != nil {
		return nil, err
	}
	s := c.reduceSum(dy, []int64{axis}, true)
	return []string{back(c.sub(dy, c.mul(c.op("Exp", []string{y}), s)))}, nil
}

// gradLayerNorm recomputes the normalised input x^ = (x - mu) r, r =
// 1/sqrt(var + eps), over the axes from axis on; then with g = dY scale:
// dX = r (g - mean(g) - x^ mean(g x^)), dScale = sum(dY x^), dB = sum(dY).
func gradLayerNorm(c *bctx) ([]string, error) {
	for k := 1; k < len(c.dy); k++ {
		if c.dy[k] != "" {
			return nil, fmt.Errorf("gradient flows into the Mean or InvStdDev output")
		}
	}
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	x, scale, bias := c.in(0), c.in(1), c.in(2)
	r, err := c.rank(x)
	if err != nil {
		return nil, err
	}
	axis, err := normAxis(onnxio.AttrInt(c.n, "axis", -1), r)
	if err != nil {
		return nil, err
	}
	eps := float64(onnxio.AttrFloat(c.n, "epsilon", 1e-5))
	dt := c.ftype()
	var axes []int64
	for k := axis; k < int64(r); k++ {
		axes = append(axes, k)
	}
	mu := c.reduceMean(x, axes, true)
	xc := c.sub(x, mu)
	v := c.reduceMean(c.mul(xc, xc), axes, true)
	inv := c.op("Reciprocal", []string{c.op("Sqrt", []string{c.add(v, c.scalar(dt, eps))})})
	xh := c.mul(xc, inv)
	res := make([]string, 3)
	if c.needs(0) {
		g := c.mul(dy, scale)
		m1 := c.reduceMean(g, axes, true)
		m2 := c.reduceMean(c.mul(g, xh), axes, true)
		res[0] = c.mul(inv, c.sub(c.sub(g, m1), c.mul(xh, m2)))
	}
	yd, err := c.dimsOf(c.out(0))
	if err != nil {
		return nil, err
	}
	if c.needs(1) {
		if res[1], err = c.sumTo(c.mul(dy, xh), yd, scale); err != nil {
			return nil, err
		}
	}
	if bias != "" && c.needs(2) {
		if res[2], err = c.sumTo(dy, yd, bias); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// gradBatchNorm treats BatchNormalization in inference mode as the affine
// map Y = scale (X - mean) r + B, r = 1/sqrt(var + eps), with the running
// statistics constant.
func gradBatchNorm(c *bctx) ([]string, error) {
	if onnxio.AttrInt(c.n, "training_mode", 0) != 0 {
		return nil, fmt.Errorf("training_mode=1: export the model in eval mode")
	}
	for k := 1; k < len(c.dy); k++ {
		if c.dy[k] != "" {
			return nil, fmt.Errorf("gradient flows into a running-statistics output")
		}
	}
	if c.needs(3) || c.needs(4) {
		// Running statistics computed at run time: not supported, and
		// constant ones never get here.
		return nil, fmt.Errorf("the running mean and variance must be constants")
	}
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	if bb, ok := c.bnBatch[c.out(0)]; ok {
		return c.gradBatchNormBatch(bb)
	}
	x, scale, mean, variance := c.in(0), c.in(1), c.in(3), c.in(4)
	r, err := c.rank(x)
	if err != nil {
		return nil, err
	}
	eps := float64(onnxio.AttrFloat(c.n, "epsilon", 1e-5))
	dt := c.ftype()
	// Per-channel vectors broadcast against [N, C, spatial...].
	bshape := []int64{-1}
	for k := 2; k < r; k++ {
		bshape = append(bshape, 1)
	}
	col := func(v string) string {
		if r <= 2 {
			return v
		}
		return c.reshape(v, c.ints(bshape...))
	}
	inv := c.op("Reciprocal", []string{c.op("Sqrt", []string{c.add(variance, c.scalar(dt, eps))})})
	axes := []int64{0}
	for k := 2; k < r; k++ {
		axes = append(axes, int64(k))
	}
	res := make([]string, 5)
	if c.needs(0) {
		res[0] = c.mul(dy, col(c.mul(scale, inv)))
	}
	if c.needs(1) {
		xh := c.mul(c.sub(x, col(mean)), col(inv))
		res[1] = c.reduceSum(c.mul(dy, xh), axes, false)
	}
	if c.needs(2) {
		res[2] = c.reduceSum(dy, axes, false)
	}
	return res, nil
}
