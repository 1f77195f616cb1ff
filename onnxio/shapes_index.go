package onnxio

import "github.com/onnx-cria/onnx-cria/onnxio/onnxpb"

func init() {
	shapeRules.Add("", 1, (*inferer).inferConcat, "Concat")
	shapeRules.Add("", 1, (*inferer).inferSplit, "Split")
	shapeRules.Add("", 1, (*inferer).inferSlice, "Slice")
	shapeRules.Add("", 1, (*inferer).inferGather, "Gather")
	shapeRules.Add("", 1, (*inferer).inferPad, "Pad")
	// Data-dependent ops whose output has the shape of one input.
	shapeRules.Add("", 11, shapeOfInput(1), "GatherElements")
	shapeRules.Add("", 11, shapeOfInput(0), "ScatterElements", "ScatterND")
}

// shapeOfInput gives output 0 the shape of input k and the type of input 0.
func shapeOfInput(k int) shapeRule {
	return func(s *inferer, n *onnxpb.NodeProto, i int) {
		if x, ok := s.in(n, k); ok {
			s.set(n, 0, clone(x), s.dt(n, 0))
		}
	}
}

func (s *inferer) inferConcat(n *onnxpb.NodeProto, i int) {
	var out []int64
	axis := AttrInt(n, "axis", 0)
	var vals []int64
	allVals := true
	for k := range n.Input {
		x, ok := s.in(n, k)
		if !ok {
			s.set(n, 0, nil, s.dt(n, 0))
			return
		}
		if v, ok := s.val(n, k); ok && allVals {
			vals = append(vals, v...)
		} else {
			allVals = false
		}
		a := axis
		if a < 0 {
			a += int64(len(x))
		}
		if a < 0 || a >= int64(len(x)) {
			s.fail(n, i, n.Input[k], "axis %d out of range for rank %d", axis, len(x))
			return
		}
		if k == 0 {
			out = clone(x)
			continue
		}
		if len(x) != len(out) {
			s.fail(n, i, n.Input[k], "rank %d differs from %d", len(x), len(out))
			return
		}
		for d := range x {
			if int64(d) == a {
				if out[d] < 0 || x[d] < 0 {
					out[d] = -1
				} else {
					out[d] += x[d]
				}
			} else if out[d] >= 0 && x[d] >= 0 && out[d] != x[d] {
				s.fail(n, i, n.Input[k], "shape %v does not match %v off the concat axis %d", x, out, axis)
				return
			} else if out[d] < 0 {
				out[d] = x[d]
			}
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
	if allVals {
		s.setVal(n, 0, vals)
	}
}

// axis returns n's axis attribute (default 0) as an axis of its input of
// rank r, counting a negative one from the end, or reports it out of range.
func (s *inferer) axis(n *onnxpb.NodeProto, i, r int) (int64, bool) {
	axis := AttrInt(n, "axis", 0)
	if axis < 0 {
		axis += int64(r)
	}
	if axis < 0 || axis >= int64(r) {
		s.fail(n, i, n.Input[0], "axis %d out of range for rank %d", AttrInt(n, "axis", 0), r)
		return 0, false
	}
	return axis, true
}

func (s *inferer) inferSplit(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	axis, ok := s.axis(n, i, len(x))
	if !ok {
		return
	}
	split := AttrInts(n, "split")
	splitKnown := true
	if s.opset >= 13 && len(n.Input) > 1 && n.Input[1] != "" {
		split, splitKnown = s.val(n, 1)
		for _, v := range split {
			if v == Unknown {
				splitKnown = false
			}
		}
	}
	nout := len(n.Output)
	if !splitKnown {
		// Sizes computed at run time: only the split axis is unknown.
		for k := 0; k < nout; k++ {
			out := clone(x)
			out[axis] = -1
			s.set(n, k, out, s.dt(n, 0))
		}
		return
	}
	if split == nil && x[axis] >= 0 {
		ns := AttrInt(n, "num_outputs", int64(nout))
		if ns <= 0 {
			s.fail(n, i, n.Input[0], "split into %d outputs", ns)
			return
		}
		chunk := (x[axis] + ns - 1) / ns
		for k := 0; k < nout; k++ {
			split = append(split, min(chunk, x[axis]-int64(k)*chunk))
		}
	}
	for k := 0; k < nout; k++ {
		out := clone(x)
		if k < len(split) {
			out[axis] = split[k]
		} else {
			out[axis] = -1
		}
		s.set(n, k, out, s.dt(n, 0))
	}
	if split != nil && x[axis] >= 0 {
		var sum int64
		for _, v := range split {
			sum += v
		}
		if sum != x[axis] {
			s.fail(n, i, n.Input[0], "split %v does not add up to %d", split, x[axis])
		}
	}
}

func (s *inferer) inferSlice(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	starts, ok1 := s.val(n, 1)
	ends, ok2 := s.val(n, 2)
	if len(n.Input) < 3 { // opset < 10: attributes
		starts, ends = AttrInts(n, "starts"), AttrInts(n, "ends")
		ok1, ok2 = starts != nil, ends != nil
	}
	axes, ok3 := s.val(n, 3)
	if len(n.Input) < 3 {
		axes, ok3 = AttrInts(n, "axes"), AttrInts(n, "axes") != nil
	}
	present := func(k int) bool { return k < len(n.Input) && n.Input[k] != "" }
	if !ok1 || !ok2 || len(starts) != len(ends) || (!ok3 && present(3)) {
		// Which axes change, or by how much, is only known at run time.
		out := make([]int64, len(x))
		for k := range out {
			out[k] = -1
		}
		s.set(n, 0, out, s.dt(n, 0))
		return
	}
	if !ok3 {
		axes = make([]int64, len(starts))
		for k := range axes {
			axes[k] = int64(k)
		}
	}
	steps, ok4 := s.val(n, 4)
	if !ok4 {
		// Absent steps are 1; steps known only at run time are Unknown.
		fill := int64(1)
		if present(4) {
			fill = Unknown
		}
		steps = make([]int64, len(starts))
		for k := range steps {
			steps[k] = fill
		}
	}
	out := clone(x)
	r := int64(len(x))
	first, stride := make([]int64, r), make([]int64, r) // per axis, for values
	for k := range stride {
		stride[k] = 1
	}
	for k := range starts {
		if k >= len(axes) || k >= len(steps) {
			return
		}
		a := axes[k]
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r {
			s.fail(n, i, n.Input[0], "slice axis %d out of range", axes[k])
			return
		}
		dim := x[a]
		if dim < 0 || starts[k] == Unknown || ends[k] == Unknown || steps[k] == Unknown || steps[k] == 0 {
			out[a] = -1
			continue
		}
		out[a] = sliceLen(starts[k], ends[k], steps[k], dim)
		first[a], _, stride[a] = SliceBounds(starts[k], ends[k], steps[k], dim)
	}
	s.set(n, 0, out, s.dt(n, 0))
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, stridedValues(v, x, out, func(a int, j int64) int64 { return first[a] + j*stride[a] }))
	}
}

// stridedValues picks elements of v (a row-major tensor of dims x) into a
// tensor of dims out, whose element j along axis a comes from element
// src(a, j) of x along the axis it maps to (the same axis, or perm[a] when
// perm is given). It returns nil when the sizes are not all known or do not
// match the values, or the result is too large to track.
func stridedValues(v, x, out []int64, src func(a int, j int64) int64, perm ...int64) []int64 {
	total := NumElements(out)
	if total < 0 || total > maxValueElems || NumElements(x) != int64(len(v)) || len(out) != len(x) {
		return nil
	}
	xstride := make([]int64, len(x))
	acc := int64(1)
	for a := len(x) - 1; a >= 0; a-- {
		xstride[a] = acc
		acc *= x[a]
	}
	res := make([]int64, 0, total)
	idx := make([]int64, len(out))
	for k := int64(0); k < total; k++ {
		flat := int64(0)
		for a, j := range idx {
			from := a
			if perm != nil {
				from = int(perm[a])
			}
			sj := src(a, j)
			if sj < 0 || sj >= x[from] {
				return nil
			}
			flat += sj * xstride[from]
		}
		res = append(res, v[flat])
		for a := len(idx) - 1; a >= 0; a-- { // next index, row-major
			if idx[a]++; idx[a] < out[a] {
				break
			}
			idx[a] = 0
		}
	}
	return res
}

// SliceBounds clamps Slice's start and end for a dimension of size dim, the
// way the ONNX Slice operator does.
func SliceBounds(start, end, step, dim int64) (int64, int64, int64) {
	if start < 0 {
		start += dim
	}
	if end < 0 {
		end += dim
	}
	if step > 0 {
		start = max(0, min(start, dim))
		end = max(0, min(end, dim))
	} else {
		start = max(-1, min(start, dim-1))
		end = max(-1, min(end, dim-1))
	}
	return start, end, step
}

func sliceLen(start, end, step, dim int64) int64 {
	st, en, sp := SliceBounds(start, end, step, dim)
	// Written so that no step, however large, overflows: the bounds are
	// within [-1, dim], the step is not.
	if sp > 0 {
		if en <= st {
			return 0
		}
		return 1 + (en-st-1)/sp
	}
	if st <= en {
		return 0
	}
	if sp < en-st { // also covers math.MinInt64, whose negation overflows
		return 1
	}
	return 1 + (st-en-1)/-sp
}

func (s *inferer) inferGather(n *onnxpb.NodeProto, i int) {
	x, idx, ok := s.in2(n)
	if !ok {
		return
	}
	axis, ok := s.axis(n, i, len(x))
	if !ok {
		return
	}
	out := append(append(clone(x[:axis]), idx...), x[axis+1:]...)
	s.set(n, 0, out, s.dt(n, 0))
	xv, ok1 := s.val(n, 0)
	iv, ok2 := s.val(n, 1)
	if ok1 && ok2 && len(x) == 1 && x[0] >= 0 && int64(len(xv)) == x[0] {
		res := make([]int64, len(iv))
		for k, j := range iv {
			if j < 0 {
				j += x[0]
			}
			if j < 0 || j >= x[0] {
				s.fail(n, i, n.Input[1], "index %d out of range for %d", iv[k], x[0])
				return
			}
			res[k] = xv[j]
		}
		s.setVal(n, 0, res)
	}
}

func (s *inferer) inferPad(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	pads := AttrInts(n, "pads")
	known := true
	if s.opset >= 11 {
		pads, known = s.val(n, 1)
	}
	if !known || (len(n.Input) > 3 && n.Input[3] != "") {
		// Pads computed at run time, or an axes input (rare): the rank
		// stays, the sizes are unknown.
		out := make([]int64, len(x))
		for k := range out {
			out[k] = -1
		}
		s.set(n, 0, out, s.dt(n, 0))
		return
	}
	r := len(x)
	if len(pads) != 2*r {
		s.fail(n, i, n.Input[0], "pads %v do not fit rank %d", pads, r)
		return
	}
	out := clone(x)
	for k := 0; k < r; k++ {
		if out[k] >= 0 && pads[k] != Unknown && pads[k+r] != Unknown {
			out[k] += pads[k] + pads[k+r]
		} else {
			out[k] = -1
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
}
