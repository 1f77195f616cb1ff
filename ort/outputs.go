package ort

import (
	"fmt"
	"strconv"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// outPlan says where a requested output comes from among ORT's outputs.
type outPlan struct {
	info   Info
	ort    int  // index into the names asked of ORT
	widen  bool // float16/bfloat16 fetched as float32 through an added Cast
	shared bool // an earlier request has the same ort index: copy the data
}

// ortOut is one output asked of ORT.
type ortOut struct {
	name   string
	dtype  onnxio.DataType
	scalar bool // known rank 0: preallocated, see newScalarOutput
}

// planOutputs decides how to obtain each requested tensor. ORT returns only
// declared graph outputs, so a hidden tensor is appended to graph.output of
// a copy of m that shares its nodes and tensors; m itself is never changed. float16 and bfloat16 tensors are
// fetched through a Cast to float32 (exact), because the binding cannot
// copy 16-bit float outputs. edited is nil when m can be used as it is.
func planOutputs(m *onnxio.Model, requested []string) (plans []outPlan, outs []ortOut, edited *onnxio.Model, err error) {
	g := m.Graph()
	declared := map[string]*onnxpb.ValueInfoProto{}
	for _, v := range g.GetOutput() {
		declared[v.GetName()] = v
	}
	names := map[string]bool{}
	for _, v := range g.GetInput() {
		names[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		names[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				names[o] = true
			}
		}
	}
	var shapes *onnxio.Shapes
	valueInfo := func(name string) *onnxpb.ValueInfoProto {
		for _, v := range g.GetValueInfo() {
			if v.GetName() == name {
				return v
			}
		}
		return nil
	}
	edit := func() *onnxpb.GraphProto {
		if edited == nil {
			edited = m.Derive()
		}
		return edited.Graph()
	}
	seen := map[string]int{} // requested name -> index into plans

	var errs onnxio.ErrorList
	for _, name := range requested {
		if k, ok := seen[name]; ok {
			p := plans[k]
			p.shared = true
			plans = append(plans, p)
			continue
		}
		var info Info
		hidden := false
		if v, ok := declared[name]; ok {
			dt, shape, ok := onnxio.TensorType(v)
			if !ok {
				errs.Add(&onnxio.Error{Tensor: name, Msg: "graph output is not a tensor"})
				continue
			}
			info = Info{Name: name, DType: dt}
			if shape != nil {
				info.Shape = onnxio.StaticDims(shape)
			}
		} else {
			if !names[name] {
				errs.Add(&onnxio.Error{Tensor: name, Msg: "no such tensor in the main graph (not a graph input, initializer or node output)"})
				continue
			}
			hidden = true
			if shapes == nil {
				shapes = onnxio.InferShapes(m, true)
			}
			info = Info{Name: name, DType: shapes.DTypes[name]}
			if d, ok := shapes.Dims[name]; ok {
				info.Shape = append([]int64{}, d...)
			}
			if v := valueInfo(name); v != nil {
				dt, shape, ok := onnxio.TensorType(v)
				if ok && info.DType == onnxio.Undefined {
					info.DType = dt
				}
				if ok && info.Shape == nil && shape != nil {
					info.Shape = onnxio.StaticDims(shape)
				}
			}
			if info.DType == onnxio.Undefined {
				errs.Add(&onnxio.Error{Tensor: name, Msg: "cannot determine its element type: shape inference gives none and the graph has no value_info for it"})
				continue
			}
		}
		if !supported(info.DType) {
			errs.Add(&onnxio.Error{Tensor: name, Msg: fmt.Sprintf("element type %s cannot be returned to Go", info.DType)})
			continue
		}
		p := outPlan{info: info, ort: len(outs)}
		o := ortOut{name: name, dtype: info.DType, scalar: info.Shape != nil && len(info.Shape) == 0}
		switch {
		case isHalf(info.DType):
			if m.Opset("") < 6 {
				errs.Add(&onnxio.Error{Tensor: name, Msg: fmt.Sprintf("a %s output needs opset 6 or later (for Cast), the model imports %d", info.DType, m.Opset(""))})
				continue
			}
			eg := edit()
			o.name = freshName(names, name+"__cria_float")
			o.dtype = onnxio.Float
			cast := &onnxpb.NodeProto{Name: ptr(o.name), OpType: ptr("Cast"), Input: []string{name}, Output: []string{o.name}}
			onnxio.SetAttrInt(cast, "to", int64(onnxio.Float))
			eg.Node = append(eg.Node, cast)
			eg.Output = append(eg.Output, typeOnly(o.name, onnxio.Float))
			p.widen = true
		case hidden:
			eg := edit()
			eg.Output = append(eg.Output, typeOnly(name, info.DType))
		}
		seen[name] = len(plans)
		plans = append(plans, p)
		outs = append(outs, o)
	}
	if err := errs.Err(); err != nil {
		return nil, nil, nil, err
	}
	return plans, outs, edited, nil
}

// typeOnly declares a graph output with its element type but no shape, so
// that ORT's own shape inference decides the shape.
func typeOnly(name string, dt onnxio.DataType) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{
		Name: ptr(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: ptr(int32(dt))},
		}},
	}
}

// freshName returns base, or base with a number appended, unused in names,
// and records it.
func freshName(names map[string]bool, base string) string {
	n := base
	for i := 2; names[n]; i++ {
		n = base + strconv.Itoa(i)
	}
	names[n] = true
	return n
}

func ptr[T any](v T) *T { return &v }
