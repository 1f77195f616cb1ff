package onnxio

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// The newest versions of the ONNX format that onnx-cria supports: those
// that ONNX Runtime 1.30.0, the version it is built and tested with, loads.
// That ORT refuses a model with a newer IR version or operator set, so a
// model that claims one cannot be run.
const (
	MaxIRVersion = 13
	versionsOf   = "1.30"
)

// MaxOpset is the newest version of each operator set domain ONNX Runtime
// 1.30 knows ("" is the default ai.onnx domain). Domains not listed are
// custom ones, whose versions are not checked.
var MaxOpset = map[string]int64{
	"":                         26,
	"ai.onnx.ml":               5,
	"ai.onnx.training":         1,
	"ai.onnx.preview.training": 1,
	"com.microsoft":            1,
}

func checkOpsets(imports []*onnxpb.OperatorSetIdProto, where string, add func(*Error)) {
	for _, o := range imports {
		d := o.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		name := d
		if name == "" {
			name = "ai.onnx"
		}
		v := o.GetVersion()
		max, known := MaxOpset[d]
		switch {
		case v < 1:
			add(&Error{Msg: fmt.Sprintf("%sopset_import %s version %d: versions start at 1", where, name, v)})
		case known && v > max:
			add(&Error{Msg: fmt.Sprintf("%sopset_import %s version %d: onnx-cria supports 1 to %d (those ONNX Runtime %s runs); re-export the model for a supported opset", where, name, v, max, versionsOf)})
		}
	}
}

// sameType lists, per op of the default domain, groups of input positions
// that the op's schema binds to one type variable; -1 stands for every
// input (variadic ops). Ops with type variables that changed over opsets
// are handled in typeGroups.
var sameType = map[string][][]int{
	"Add": {{0, 1}}, "Sub": {{0, 1}}, "Mul": {{0, 1}}, "Div": {{0, 1}}, "Mod": {{0, 1}},
	"Equal": {{0, 1}}, "Less": {{0, 1}}, "Greater": {{0, 1}}, "LessOrEqual": {{0, 1}},
	"GreaterOrEqual": {{0, 1}}, "And": {{0, 1}}, "Or": {{0, 1}}, "Xor": {{0, 1}},
	"BitShift": {{0, 1}}, "PRelu": {{0, 1}}, "Where": {{1, 2}},
	"Max": {{-1}}, "Min": {{-1}}, "Sum": {{-1}}, "Mean": {{-1}}, "Concat": {{-1}},
	"MatMul": {{0, 1}}, "Gemm": {{0, 1, 2}}, "Conv": {{0, 1, 2}}, "ConvTranspose": {{0, 1, 2}},
	"InstanceNormalization": {{0, 1, 2}}, "LayerNormalization": {{0, 1, 2}},
	"GroupNormalization": {{0, 1, 2}}, "Clip": {{0, 1, 2}}, "Einsum": {{-1}},
}

func typeGroups(op string, opset int64) [][]int {
	if op == "BatchNormalization" {
		if opset >= 15 { // scale and bias, mean and var may differ from X since 15
			return [][]int{{1, 2}, {3, 4}}
		}
		return [][]int{{0, 1, 2, 3, 4}}
	}
	return sameType[op]
}

// checkTypes reports element types that disagree where ONNX needs them
// equal, as far as they are known: declared by graph inputs and outputs,
// held by constants, or inferred.
func checkTypes(m *Model, sh *Shapes, add func(*Error)) {
	g := m.Graph()
	opset := m.Opset("")
	for i, n := range g.GetNode() {
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			continue
		}
		for _, group := range typeGroups(n.GetOpType(), opset) {
			idx := group
			if len(group) == 1 && group[0] == -1 {
				idx = make([]int, len(n.Input))
				for k := range idx {
					idx[k] = k
				}
			}
			first := ""
			for _, k := range idx {
				if k >= len(n.Input) || n.Input[k] == "" {
					continue
				}
				dt := sh.DTypes[n.Input[k]]
				if dt == Undefined {
					continue
				}
				if first == "" {
					first = n.Input[k]
					continue
				}
				if want := sh.DTypes[first]; dt != want {
					add(&Error{Node: NodeLabel(n, i), Op: n.GetOpType(), Tensor: n.Input[k],
						Msg: fmt.Sprintf("element type %s, but input %q is %s: the op needs them equal; insert a Cast", dt, first, want)})
				}
			}
		}
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	for _, v := range g.GetInput() {
		dt, _, ok := TensorType(v)
		if t := inits[v.GetName()]; ok && t != nil && dt != DataType(t.GetDataType()) {
			add(&Error{Tensor: v.GetName(), Msg: fmt.Sprintf("graph input declares %s, its initializer holds %s", dt, DataType(t.GetDataType()))})
		}
	}
	declared := func(v *onnxpb.ValueInfoProto, what string) {
		dt, _, ok := TensorType(v)
		if got := sh.DTypes[v.GetName()]; ok && dt != Undefined && got != Undefined && dt != got {
			add(&Error{Tensor: v.GetName(), Msg: fmt.Sprintf("%s declares element type %s, the graph computes %s", what, dt, got)})
		}
	}
	for _, v := range g.GetOutput() {
		declared(v, "graph output")
	}
	for _, v := range g.GetValueInfo() {
		declared(v, "value_info")
	}
}
