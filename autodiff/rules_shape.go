package autodiff

import (
	"fmt"
	"sort"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

func init() {
	register("", 1, gradReshapeBack, "Reshape", "Flatten", "Squeeze", "Unsqueeze")
	register("", 1, gradTranspose, "Transpose")
	register("", 4, gradConcat, "Concat")
	register("", 2, gradSplit, "Split")
	register("", 1, gradSlice, "Slice")
	register("", 1, gradGather, "Gather")
	register("", 1, gradReduceSum, "ReduceSum")
	register("", 1, gradReduceMean, "ReduceMean")
}

// gradReshapeBack: ops that only change the shape give dY the input's shape.
func gradReshapeBack(c *bctx) ([]string, error) {
	if c.dy[0] == "" || !c.needs(0) {
		return nil, nil
	}
	return []string{c.reshapeLike(c.dy[0], c.in(0))}, nil
}

func gradTranspose(c *bctx) ([]string, error) {
	if c.dy[0] == "" || !c.needs(0) {
		return nil, nil
	}
	perm := onnxio.AttrInts(c.n, "perm")
	if perm == nil {
		r, err := c.rank(c.in(0))
		if err != nil {
			return nil, err
		}
		for k := r - 1; k >= 0; k-- {
			perm = append(perm, int64(k))
		}
	}
	inv := make([]int64, len(perm))
	for k, p := range perm {
		inv[p] = int64(k)
	}
	return []string{c.transpose(c.dy[0], inv)}, nil
}

// normAxis turns a possibly negative axis into [0, r).
func normAxis(a int64, r int) (int64, error) {
	if a < 0 {
		a += int64(r)
	}
	if a < 0 || a >= int64(r) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", a, r)
	}
	return a, nil
}

// gradConcat slices dY back into the inputs' parts along the axis.
func gradConcat(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	r, err := c.rank(c.out(0))
	if err != nil {
		return nil, err
	}
	axis, err := normAxis(onnxio.AttrInt(c.n, "axis", 0), r)
	if err != nil {
		return nil, err
	}
	res := make([]string, len(c.n.Input))
	off := int64(0)
	for k, in := range c.n.Input {
		d, err := c.staticDims(in, int(axis))
		if err != nil {
			return nil, err
		}
		if c.needs(k) {
			res[k] = c.slice(dy, []int64{off}, []int64{off + d[axis]}, []int64{axis})
		}
		off += d[axis]
	}
	return res, nil
}

// gradSplit concatenates the outputs' gradients, zeros for outputs that
// get none.
func gradSplit(c *bctx) ([]string, error) {
	if !c.needs(0) {
		return nil, nil
	}
	r, err := c.rank(c.in(0))
	if err != nil {
		return nil, err
	}
	axis, err := normAxis(onnxio.AttrInt(c.n, "axis", 0), r)
	if err != nil {
		return nil, err
	}
	parts := make([]string, len(c.n.Output))
	anyGrad := false
	for k, o := range c.n.Output {
		if c.dy[k] != "" {
			parts[k], anyGrad = c.dy[k], true
		} else {
			parts[k] = c.zerosLike(o, c.ftype())
		}
	}
	if !anyGrad {
		return nil, nil
	}
	return []string{c.op("Concat", parts, attrInt("axis", axis))}, nil
}

// gradSlice pads dY with zeros back to the input's shape. Steps other
// than 1 are not supported.
func gradSlice(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" || !c.needs(0) {
		return nil, nil
	}
	x := c.in(0)
	xd, err := c.dimsOf(x)
	if err != nil {
		return nil, err
	}
	r := len(xd)
	var starts, ends, axes, steps []int64
	if c.opset < 10 {
		starts, ends, axes = onnxio.AttrInts(c.n, "starts"), onnxio.AttrInts(c.n, "ends"), onnxio.AttrInts(c.n, "axes")
	} else {
		var ok bool
		get := func(k int) []int64 {
			if c.in(k) == "" {
				return nil
			}
			v, good := c.values(c.in(k))
			ok = ok && good
			return v
		}
		ok = true
		starts, ends, axes, steps = get(1), get(2), get(3), get(4)
		if !ok {
			return nil, fmt.Errorf("the slice bounds are not known statically")
		}
	}
	if axes == nil {
		for k := range starts {
			axes = append(axes, int64(k))
		}
	}
	pads := make([]int64, 2*r)
	for k, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		step := int64(1)
		if steps != nil {
			step = steps[k]
		}
		if step != 1 {
			return nil, fmt.Errorf("slices with step %d are not supported", step)
		}
		if xd[ax] < 0 {
			return nil, fmt.Errorf("axis %d of %q has no static size", ax, x)
		}
		s, e, _ := onnxio.SliceBounds(starts[k], ends[k], step, xd[ax])
		if e < s {
			e = s
		}
		pads[ax], pads[int(ax)+r] = s, xd[ax]-e
	}
	return []string{c.pad(dy, pads)}, nil
}

// gradGather scatters dY back into the rows it was gathered from, adding
// where an index repeats (embeddings): ScatterND with reduction "add" from
// opset 16, a one-hot matrix product before.
func gradGather(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" || !c.needs(0) {
		return nil, nil
	}
	data, idx := c.in(0), c.in(1)
	dd, err := c.dimsOf(data)
	if err != nil {
		return nil, err
	}
	for k, d := range dd {
		if d < 0 {
			return nil, fmt.Errorf("axis %d of %q has no static size (shape %v)", k, data, dd)
		}
	}
	r := len(dd)
	axis, err := normAxis(onnxio.AttrInt(c.n, "axis", 0), r)
	if err != nil {
		return nil, err
	}
	q, err := c.rank(idx)
	if err != nil {
		return nil, err
	}
	dt := c.ftype()
	// Move the gathered axis (and dY's index axes) to the front.
	moved := append([]int64{dd[axis]}, dd[:axis]...)
	moved = append(moved, dd[axis+1:]...)
	g := dy
	if axis != 0 && q > 0 {
		var perm []int64
		for k := int64(0); k < int64(q); k++ {
			perm = append(perm, axis+k)
		}
		for k := int64(0); k < axis; k++ {
			perm = append(perm, k)
		}
		for k := axis + int64(q); k < int64(r-1+q); k++ {
			perm = append(perm, k)
		}
		g = c.transpose(g, perm)
	}
	rest := moved[1:]
	upd := c.reshape(g, c.ints(append([]int64{-1}, rest...)...))
	ind := c.reshape(idx, c.ints(-1, 1))
	if c.dtype(idx) != onnxio.Int64 {
		ind = c.cast(ind, onnxio.Int64)
	}
	ind = c.where(c.op("Less", []string{ind, c.int0(0)}), c.add(ind, c.int0(dd[axis])), ind)
	var out string
	if c.opset >= 16 {
		out = c.op("ScatterND", []string{c.zeros(c.ints(moved...), dt), ind, upd}, attrString("reduction", "add"))
	} else {
		oh := c.oneHot(c.reshape(ind, c.ints(-1)), dd[axis], dt) // [M, V]
		flat := c.reshape(upd, c.ints(func() []int64 {
			if len(rest) == 0 {
				return []int64{-1, 1}
			}
			return []int64{-1, onnxio.NumElements(rest)}
		}()...))
		out = c.reshape(c.op("Gemm", []string{oh, flat}, attrInt("transA", 1)), c.ints(moved...))
	}
	if axis != 0 {
		perm := make([]int64, r)
		for k := 0; k < r; k++ {
			switch {
			case int64(k) < axis:
				perm[k] = int64(k + 1)
			case int64(k) == axis:
				perm[k] = 0
			default:
				perm[k] = int64(k)
			}
		}
		out = c.transpose(out, perm)
	}
	return []string{out}, nil
}

// reduceAxes returns the normalised, sorted axes a Reduce node reduces
// (nil: all axes) and whether it is a no-op.
func (c *bctx) reduceAxes(since int64) (axes []int64, noop bool, err error) {
	r, err := c.rank(c.in(0))
	if err != nil {
		return nil, false, err
	}
	if c.opset >= since {
		if c.in(1) != "" {
			v, ok := c.values(c.in(1))
			if !ok {
				return nil, false, fmt.Errorf("the reduction axes are not known statically")
			}
			axes = v
		}
		if len(axes) == 0 && onnxio.AttrInt(c.n, "noop_with_empty_axes", 0) != 0 {
			return nil, true, nil
		}
	} else {
		axes = onnxio.AttrInts(c.n, "axes")
	}
	if len(axes) == 0 {
		for k := 0; k < r; k++ {
			axes = append(axes, int64(k))
		}
	}
	out := make([]int64, len(axes))
	for k, a := range axes {
		if out[k], err = normAxis(a, r); err != nil {
			return nil, false, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, false, nil
}

func gradReduceSum(c *bctx) ([]string, error) { return gradReduce(c, 13, false) }

func gradReduceMean(c *bctx) ([]string, error) { return gradReduce(c, 18, true) }

func gradReduce(c *bctx, since int64, mean bool) ([]string, error) {
	dy := c.dy[0]
	if dy == "" || !c.needs(0) {
		return nil, nil
	}
	axes, noop, err := c.reduceAxes(since)
	if err != nil {
		return nil, err
	}
	if noop {
		return []string{dy}, nil
	}
	if onnxio.AttrInt(c.n, "keepdims", 1) == 0 {
		dy = c.unsqueeze(dy, axes)
	}
	if mean {
		return []string{c.meanBack(dy, c.in(0), c.out(0))}, nil
	}
	return []string{c.expandLike(dy, c.in(0))}, nil
}
