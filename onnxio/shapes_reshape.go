package onnxio

import "github.com/onnx-cria/onnx-cria/onnxio/onnxpb"

func init() {
	shapeRules.Add("", 1, (*inferer).inferFlatten, "Flatten")
	shapeRules.Add("", 1, (*inferer).inferReshape, "Reshape")
	shapeRules.Add("", 1, (*inferer).inferTranspose, "Transpose")
	shapeRules.Add("", 1, (*inferer).inferUnsqueeze, "Unsqueeze")
	shapeRules.Add("", 1, (*inferer).inferSqueeze, "Squeeze")
	shapeRules.Add("", 8, (*inferer).inferExpand, "Expand")
	shapeRules.Add("", 1, (*inferer).inferTile, "Tile")
}

func (s *inferer) inferFlatten(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	axis := AttrInt(n, "axis", 1)
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis > int64(len(x)) {
		s.fail(n, i, n.Input[0], "axis %d out of range for rank %d", AttrInt(n, "axis", 1), len(x))
		return
	}
	s.set(n, 0, []int64{NumElements(x[:axis]), NumElements(x[axis:])}, s.dt(n, 0))
}

func (s *inferer) inferReshape(n *onnxpb.NodeProto, i int) {
	x, okx := s.in(n, 0)
	v, okv := s.val(n, 1)
	dt := s.dt(n, 0)
	if !okv {
		// The output rank is the shape's length; sh comes from declared
		// dims, so bound it before allocating (no real tensor has
		// thousands of dimensions).
		if sh, ok := s.in(n, 1); ok && len(sh) == 1 && sh[0] >= 0 && sh[0] <= maxValueElems {
			out := make([]int64, sh[0])
			for k := range out {
				out[k] = -1
			}
			s.set(n, 0, out, dt)
		}
		return
	}
	allowZero := AttrInt(n, "allowzero", 0) == 1
	out := make([]int64, len(v))
	infer := -1
	for k, d := range v {
		switch {
		case d == Unknown:
			out[k] = -1
		case d == 0 && !allowZero:
			if okx && k < len(x) {
				out[k] = x[k]
			} else {
				out[k] = -1
			}
		case d == -1:
			if infer >= 0 {
				s.fail(n, i, n.Input[1], "shape %v has more than one -1", v)
				return
			}
			infer = k
			out[k] = -1
		case d < 0:
			s.fail(n, i, n.Input[1], "invalid shape %v", v)
			return
		default:
			out[k] = d
		}
	}
	if okx {
		total := NumElements(x)
		if infer >= 0 {
			rest := int64(1)
			for k, d := range out {
				if k != infer {
					if d < 0 {
						rest = -1
						break
					}
					rest *= d
				}
			}
			if total >= 0 && rest > 0 {
				if total%rest != 0 {
					s.fail(n, i, n.Input[1], "cannot reshape %v to %v", x, v)
					return
				}
				out[infer] = total / rest
			}
		} else if p := NumElements(out); total >= 0 && p >= 0 && p != total {
			s.fail(n, i, n.Input[1], "cannot reshape %v (%d elements) to %v", x, total, v)
			return
		}
	}
	s.set(n, 0, out, dt)
	if xv, ok := s.val(n, 0); ok {
		s.setVal(n, 0, xv)
	}
}

func (s *inferer) axesOf(n *onnxpb.NodeProto, since int64) ([]int64, bool) {
	if s.opset >= since {
		if len(n.Input) > 1 && n.Input[1] != "" {
			return s.val(n, 1)
		}
		return nil, true
	}
	return AttrInts(n, "axes"), true
}

func (s *inferer) inferUnsqueeze(n *onnxpb.NodeProto, i int) {
	x, okx := s.in(n, 0)
	axes, oka := s.axesOf(n, 13)
	if !okx || !oka {
		return
	}
	r := int64(len(x) + len(axes))
	ins := map[int64]bool{}
	for _, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r || ins[a] {
			s.fail(n, i, n.Input[0], "bad axes %v for rank %d", axes, len(x))
			return
		}
		ins[a] = true
	}
	out := make([]int64, 0, r)
	j := 0
	for k := int64(0); k < r; k++ {
		if ins[k] {
			out = append(out, 1)
		} else {
			out = append(out, x[j])
			j++
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, v)
	}
}

func (s *inferer) inferSqueeze(n *onnxpb.NodeProto, i int) {
	x, okx := s.in(n, 0)
	axes, oka := s.axesOf(n, 13)
	if !okx || !oka {
		return
	}
	drop := map[int64]bool{}
	if len(axes) == 0 {
		for k, d := range x {
			if d == 1 {
				drop[int64(k)] = true
			} else if d < 0 {
				return // cannot tell which dims go
			}
		}
	}
	for _, a := range axes {
		if a < 0 {
			a += int64(len(x))
		}
		if a < 0 || a >= int64(len(x)) || (x[a] >= 0 && x[a] != 1) {
			s.fail(n, i, n.Input[0], "cannot squeeze axes %v of %v", axes, x)
			return
		}
		drop[a] = true
	}
	var out []int64
	for k, d := range x {
		if !drop[int64(k)] {
			out = append(out, d)
		}
	}
	if out == nil {
		out = []int64{}
	}
	s.set(n, 0, out, s.dt(n, 0))
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, v)
	}
}

func (s *inferer) inferTranspose(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	perm := AttrInts(n, "perm")
	if perm == nil {
		for k := len(x) - 1; k >= 0; k-- {
			perm = append(perm, int64(k))
		}
	}
	if len(perm) != len(x) {
		s.fail(n, i, n.Input[0], "perm %v does not match rank %d", perm, len(x))
		return
	}
	out := make([]int64, len(x))
	for k, p := range perm {
		if p < 0 || p >= int64(len(x)) {
			s.fail(n, i, n.Input[0], "perm %v out of range", perm)
			return
		}
		out[k] = x[p]
	}
	s.set(n, 0, out, s.dt(n, 0))
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, stridedValues(v, x, out, func(_ int, j int64) int64 { return j }, perm...))
	}
}

func (s *inferer) inferExpand(n *onnxpb.NodeProto, i int) {
	x, ok1 := s.in(n, 0)
	v, ok2 := s.val(n, 1)
	if !ok1 || !ok2 {
		s.set(n, 0, nil, s.dt(n, 0))
		return
	}
	out, err := broadcast(x, valueDims(v))
	if err != nil {
		s.fail(n, i, n.Input[0], "%v", err)
		return
	}
	s.set(n, 0, out, s.dt(n, 0))
}

func (s *inferer) inferTile(n *onnxpb.NodeProto, i int) {
	x, ok1 := s.in(n, 0)
	r, ok2 := s.val(n, 1)
	if !ok1 || !ok2 || len(r) != len(x) {
		return
	}
	out := make([]int64, len(x))
	for k := range x {
		if x[k] < 0 || r[k] == Unknown {
			out[k] = -1
		} else {
			out[k] = x[k] * r[k]
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
}
