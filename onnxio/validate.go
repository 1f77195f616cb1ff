package onnxio

import (
	"fmt"
	"os"
	"strings"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Validate checks the structural rules every model onnx-cria writes must
// keep, and reports every violation at once:
//   - the model declares an IR version from 3 to MaxIRVersion and imports
//     the default opset, and no operator set newer than MaxOpset knows;
//   - element types agree where an op needs them equal (Add's two inputs,
//     Conv's input, weight and bias, ...), an initializer agrees with a graph
//     input of its name, and graph outputs and value_info declare the types
//     the graph computes;
//   - every node input is defined before use (a graph input, an initializer,
//     an earlier node's output or, in subgraphs, an outer-scope name), so
//     the nodes are in topological order;
//   - every tensor has exactly one definition and every graph output exists;
//   - initializer contents match their dims and element type;
//   - shapes agree where ops constrain them (Conv, Gemm, MatMul, Concat,
//     Reshape, broadcasting, normalisation parameters);
//   - value_info names existing tensors and, where shapes can be inferred,
//     declares the inferred shape (no stale value_info).
func Validate(m *Model) error {
	var errs ErrorList
	add := func(e *Error) {
		e.File = m.Path
		errs.Add(e)
	}
	mp := m.Proto
	if mp.IrVersion == nil || mp.GetIrVersion() < 3 || mp.GetIrVersion() > MaxIRVersion {
		add(&Error{Msg: fmt.Sprintf("ir_version %d: onnx-cria supports 3 to %d (those ONNX Runtime %s loads); re-export the model for a supported version", mp.GetIrVersion(), MaxIRVersion, versionsOf)})
	}
	if m.Opset("") == 0 {
		add(&Error{Msg: "no opset_import for the default ONNX domain"})
	}
	checkOpsets(mp.GetOpsetImport(), "", add)
	for _, f := range mp.GetFunctions() {
		checkOpsets(f.GetOpsetImport(), fmt.Sprintf("function %q: ", f.GetName()), add)
	}
	validateGraph(m, mp.GetGraph(), nil, true, add)

	sh := InferShapes(m, false)
	for _, e := range sh.Errors {
		add(e)
	}
	checkParams(m, sh, add)
	checkTypes(m, sh, add)
	g := mp.GetGraph()
	for _, v := range g.GetValueInfo() {
		name := v.GetName()
		_, declared, ok := TensorType(v)
		inferred, known := sh.Dims[name]
		if !ok || declared == nil || !known {
			continue
		}
		if !shapesAgree(StaticDims(declared), inferred) {
			add(&Error{Tensor: name, Msg: fmt.Sprintf("stale value_info: declares shape %v, the graph computes %v", StaticDims(declared), inferred)})
		}
	}
	for _, v := range g.GetOutput() {
		_, declared, ok := TensorType(v)
		inferred, known := sh.Dims[v.GetName()]
		if ok && declared != nil && known && !shapesAgree(StaticDims(declared), inferred) {
			add(&Error{Tensor: v.GetName(), Msg: fmt.Sprintf("graph output declares shape %v, the graph computes %v", StaticDims(declared), inferred)})
		}
	}
	errs.Sort()
	return errs.Err()
}

// shapesAgree compares shapes where both sides know a dimension.
func shapesAgree(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if a[k] >= 0 && b[k] >= 0 && a[k] != b[k] {
			return false
		}
	}
	return true
}

func validateGraph(m *Model, g *onnxpb.GraphProto, outer map[string]bool, top bool, add func(*Error)) {
	gname := ""
	if !top {
		gname = g.GetName()
		if gname == "" {
			gname = "(subgraph)"
		}
	}
	defined := map[string]bool{}
	visible := func(name string) bool { return defined[name] || outer[name] }
	define := func(name, node, op string) {
		if defined[name] {
			add(&Error{Graph: gname, Node: node, Op: op, Tensor: name, Msg: "defined more than once"})
		}
		defined[name] = true
	}
	for _, v := range g.GetInput() {
		define(v.GetName(), "", "")
		if _, _, ok := TensorType(v); top && !ok && v.GetType().GetValue() == nil {
			add(&Error{Graph: gname, Tensor: v.GetName(), Msg: "graph input has no type"})
		}
	}
	inputs := map[string]bool{}
	for _, v := range g.GetInput() {
		inputs[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		name := t.GetName()
		if name == "" {
			add(&Error{Graph: gname, Msg: "initializer without a name"})
			continue
		}
		if !inputs[name] {
			define(name, "", "")
		}
		checkTensorData(m, t, gname, add)
	}
	for _, s := range g.GetSparseInitializer() {
		define(s.GetValues().GetName(), "", "")
	}
	// Every name a node defines, so that a use before definition can be told
	// apart from a use of something that does not exist at all.
	later := map[string]bool{}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			later[o] = true
		}
	}
	for i, n := range g.GetNode() {
		label := NodeLabel(n, i)
		op := n.GetOpType()
		if op == "" {
			add(&Error{Graph: gname, Node: label, Msg: "node without op_type"})
		}
		for _, in := range n.GetInput() {
			if in == "" || visible(in) {
				continue
			}
			if later[in] {
				add(&Error{Graph: gname, Node: label, Op: op, Tensor: in, Msg: "used before it is defined: nodes are not in topological order"})
			} else {
				add(&Error{Graph: gname, Node: label, Op: op, Tensor: in, Msg: "input is not defined anywhere"})
			}
		}
		for _, a := range n.GetAttribute() {
			if a.G == nil && len(a.Graphs) == 0 {
				if a.T != nil {
					checkTensorData(m, a.T, gname, add)
				}
				continue
			}
			// Only subgraphs need the scope: copying it for every
			// attribute made validation quadratic in the graph size.
			scope := map[string]bool{}
			for k := range outer {
				scope[k] = true
			}
			for k := range defined {
				scope[k] = true
			}
			if a.G != nil {
				validateGraph(m, a.G, scope, false, add)
			}
			for _, sg := range a.Graphs {
				validateGraph(m, sg, scope, false, add)
			}
			if a.T != nil {
				checkTensorData(m, a.T, gname, add)
			}
		}
		for _, o := range n.GetOutput() {
			if o != "" {
				define(o, label, op)
			}
		}
	}
	for _, v := range g.GetOutput() {
		if !visible(v.GetName()) {
			add(&Error{Graph: gname, Tensor: v.GetName(), Msg: "graph output is not produced by any node"})
		}
	}
	seen := map[string]bool{}
	for _, v := range g.GetValueInfo() {
		name := v.GetName()
		if seen[name] {
			add(&Error{Graph: gname, Tensor: name, Msg: "value_info entry repeated"})
		}
		seen[name] = true
		if !defined[name] {
			add(&Error{Graph: gname, Tensor: name, Msg: "stale value_info: no such tensor in the graph"})
		}
	}
}

// checkTensorData checks that a tensor's stored bytes fit its dims, without
// reading external data into memory.
func checkTensorData(m *Model, t *onnxpb.TensorProto, gname string, add func(*Error)) {
	dt := DataType(t.GetDataType())
	if dt == Undefined {
		add(&Error{Graph: gname, Tensor: t.GetName(), Msg: "tensor without a data type"})
		return
	}
	if dt.Size() == 0 {
		return
	}
	want := numBytes(t.GetDims(), dt.Size())
	if want < 0 {
		add(&Error{Graph: gname, Tensor: t.GetName(), Msg: fmt.Sprintf("invalid dims %v", t.GetDims())})
		return
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		p, off, length, err := m.externalRef(t)
		if err != nil {
			add(&Error{Graph: gname, Tensor: t.GetName(), Msg: trimTensor(err, t.GetName())})
			return
		}
		if length >= 0 && length != want {
			add(&Error{Graph: gname, Tensor: t.GetName(), Msg: fmt.Sprintf("external data length %d, dims %v of %s need %d", length, t.GetDims(), dt, want)})
		}
		if st, err := os.Stat(p); err != nil {
			add(&Error{Graph: gname, Tensor: t.GetName(), Msg: fmt.Sprintf("external data: %v", err)})
		} else if !st.Mode().IsRegular() {
			add(&Error{Graph: gname, Tensor: t.GetName(), Msg: fmt.Sprintf("external data %s is not a regular file", p)})
		} else if off > st.Size() || want > st.Size()-off {
			add(&Error{Graph: gname, Tensor: t.GetName(), Msg: fmt.Sprintf("external data file %s is too short", p)})
		}
		return
	}
	if _, err := m.RawData(t); err != nil {
		add(&Error{Graph: gname, Tensor: t.GetName(), Msg: trimTensor(err, t.GetName())})
	}
}

// checkParams checks per-channel parameter tensors against the data they
// apply to.
func checkParams(m *Model, sh *Shapes, add func(*Error)) {
	for i, n := range m.Graph().GetNode() {
		label := NodeLabel(n, i)
		if len(n.Input) == 0 {
			continue // nothing to check; shape inference reports nothing either
		}
		switch n.GetOpType() {
		case "BatchNormalization", "InstanceNormalization":
			x, ok := sh.Dims[n.Input[0]]
			c := int64(-1)
			if ok && len(x) >= 2 {
				c = x[1]
			}
			for k := 1; k < len(n.Input); k++ {
				p, ok := sh.Dims[n.Input[k]]
				if !ok {
					continue
				}
				if len(p) != 1 || (c >= 0 && p[0] >= 0 && p[0] != c) {
					add(&Error{File: m.Path, Node: label, Op: n.GetOpType(), Tensor: n.Input[k],
						Msg: fmt.Sprintf("parameter shape %v does not match %d channels", p, c)})
				}
			}
		case "LayerNormalization":
			x, ok := sh.Dims[n.Input[0]]
			if !ok {
				continue
			}
			axis := AttrInt(n, "axis", -1)
			if axis < 0 {
				axis += int64(len(x))
			}
			if axis < 0 || axis >= int64(len(x)) {
				continue
			}
			norm := x[axis:]
			for k := 1; k < len(n.Input) && k < 3; k++ {
				p, ok := sh.Dims[n.Input[k]]
				if !ok || n.Input[k] == "" {
					continue
				}
				if _, err := broadcast(norm, p); err != nil || len(p) > len(norm) {
					add(&Error{File: m.Path, Node: label, Op: "LayerNormalization", Tensor: n.Input[k],
						Msg: fmt.Sprintf("parameter shape %v does not fit normalised dims %v", p, norm)})
				}
			}
		}
	}
}

// trimTensor drops the tensor name that codec errors start with, since the
// Error names it already.
func trimTensor(err error, name string) string {
	return strings.TrimPrefix(err.Error(), fmt.Sprintf("tensor %q: ", name))
}
