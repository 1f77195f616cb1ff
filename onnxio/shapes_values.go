package onnxio

import (
	"math"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// The sources of shape arithmetic: constants, and the shapes and sizes of
// tensors, whose known values the other rules fold.

func init() {
	shapeRules.Add("", 1, (*inferer).inferConstant, "Constant")
	shapeRules.Add("", 1, (*inferer).inferShape, "Shape")
	shapeRules.Add("", 1, (*inferer).inferSize, "Size")
	shapeRules.Add("", 9, (*inferer).inferConstantOfShape, "ConstantOfShape")
	shapeRules.Add("", 11, (*inferer).inferRange, "Range")
}

func (s *inferer) inferConstant(n *onnxpb.NodeProto, i int) {
	if t := ConstantValue(n); t != nil && len(n.Output) > 0 {
		s.setConst(s.m, n.Output[0], t)
	}
}

func (s *inferer) inferShape(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok {
		s.set(n, 0, []int64{-1}, Int64)
		return
	}
	start, end := AttrInt(n, "start", 0), AttrInt(n, "end", int64(len(x)))
	start, end = clampRange(start, end, int64(len(x)))
	v := make([]int64, 0, end-start)
	for _, d := range x[start:end] {
		if d < 0 {
			d = Unknown
		}
		v = append(v, d)
	}
	s.set(n, 0, []int64{int64(len(v))}, Int64)
	s.setVal(n, 0, v)
}

func (s *inferer) inferSize(n *onnxpb.NodeProto, i int) {
	s.set(n, 0, []int64{}, Int64)
}

func (s *inferer) inferConstantOfShape(n *onnxpb.NodeProto, i int) {
	v, ok := s.val(n, 0)
	dt := Float
	if a := Attr(n, "value"); a != nil && a.T != nil {
		dt = DataType(a.T.GetDataType())
	}
	if !ok {
		s.set(n, 0, nil, dt)
		return
	}
	dims := valueDims(v)
	s.set(n, 0, dims, dt)
	if !dt.IsInt() || len(n.Output) == 0 {
		return
	}
	if total := NumElements(dims); total >= 0 && total <= maxValueElems {
		fill := int64(0)
		if a := Attr(n, "value"); a != nil && a.T != nil {
			if iv, err := s.m.Int64s(a.T); err == nil && len(iv) == 1 {
				fill = iv[0]
			}
		}
		vals := make([]int64, total)
		for k := range vals {
			vals[k] = fill
		}
		s.setVal(n, 0, vals)
	}
}

func (s *inferer) inferRange(n *onnxpb.NodeProto, i int) {
	start, ok1 := s.val(n, 0)
	limit, ok2 := s.val(n, 1)
	delta, ok3 := s.val(n, 2)
	if !ok1 || !ok2 || !ok3 || len(start) != 1 || len(limit) != 1 || len(delta) != 1 ||
		start[0] == Unknown || limit[0] == Unknown || delta[0] == Unknown || delta[0] == 0 {
		s.set(n, 0, []int64{-1}, s.dt(n, 0))
		return
	}
	cnt := int64(math.Ceil(float64(limit[0]-start[0]) / float64(delta[0])))
	if cnt < 0 {
		cnt = 0
	}
	s.set(n, 0, []int64{cnt}, s.dt(n, 0))
	if cnt <= maxValueElems {
		vals := make([]int64, cnt)
		for k := range vals {
			vals[k] = start[0] + int64(k)*delta[0]
		}
		s.setVal(n, 0, vals)
	}
}
