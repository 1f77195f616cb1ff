package onnxio

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Index answers the questions every graph pass asks: who produces a tensor,
// who consumes it, is it a constant, what type does the model declare for it.
// It is a snapshot: rebuild it after editing the graph.
type Index struct {
	Graph     *onnxpb.GraphProto
	Producer  map[string]int   // tensor -> index of the node that outputs it
	Consumers map[string][]int // tensor -> indices of nodes that read it (in node order, repeated per use)
	Init      map[string]*onnxpb.TensorProto
	Inputs    map[string]*onnxpb.ValueInfoProto // graph inputs
	Outputs   map[string]*onnxpb.ValueInfoProto // graph outputs
	ValueInfo map[string]*onnxpb.ValueInfoProto // value_info entries
}

// NewIndex indexes one graph (not its subgraphs; see SubgraphReads).
func NewIndex(g *onnxpb.GraphProto) *Index {
	ix := &Index{
		Graph:     g,
		Producer:  map[string]int{},
		Consumers: map[string][]int{},
		Init:      map[string]*onnxpb.TensorProto{},
		Inputs:    map[string]*onnxpb.ValueInfoProto{},
		Outputs:   map[string]*onnxpb.ValueInfoProto{},
		ValueInfo: map[string]*onnxpb.ValueInfoProto{},
	}
	for _, t := range g.GetInitializer() {
		ix.Init[t.GetName()] = t
	}
	for _, v := range g.GetInput() {
		ix.Inputs[v.GetName()] = v
	}
	for _, v := range g.GetOutput() {
		ix.Outputs[v.GetName()] = v
	}
	for _, v := range g.GetValueInfo() {
		ix.ValueInfo[v.GetName()] = v
	}
	for i, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				ix.Producer[o] = i
			}
		}
		for _, in := range n.GetInput() {
			if in != "" {
				ix.Consumers[in] = append(ix.Consumers[in], i)
			}
		}
		// Tensors that a subgraph reads from the outer scope are uses too.
		for _, name := range SubgraphReads(n) {
			ix.Consumers[name] = append(ix.Consumers[name], i)
		}
	}
	return ix
}

// Node returns node i of the graph.
func (ix *Index) Node(i int) *onnxpb.NodeProto { return ix.Graph.Node[i] }

// ProducerNode returns the node that outputs tensor, or nil.
func (ix *Index) ProducerNode(tensor string) *onnxpb.NodeProto {
	if i, ok := ix.Producer[tensor]; ok {
		return ix.Graph.Node[i]
	}
	return nil
}

// Const returns the tensor holding a constant value: an initializer that is
// not overridable by a graph input, or the value of a Constant node. Both are
// weights to a pruning tool. It returns nil for anything computed at run time.
func (ix *Index) Const(name string) *onnxpb.TensorProto {
	if t, ok := ix.Init[name]; ok {
		if _, isInput := ix.Inputs[name]; !isInput {
			return t
		}
		return nil
	}
	if i, ok := ix.Producer[name]; ok {
		n := ix.Graph.Node[i]
		if n.GetOpType() == "Constant" && n.GetDomain() == "" {
			return ConstantValue(n)
		}
	}
	return nil
}

// IsConst reports whether name is a constant (see Const).
func (ix *Index) IsConst(name string) bool { return ix.Const(name) != nil }

// ConstantValue returns the tensor a Constant node produces, converting the
// value_float(s) and value_int(s) forms into a tensor. It returns nil for
// forms onnx-cria does not decode (strings, sparse).
func ConstantValue(n *onnxpb.NodeProto) *onnxpb.TensorProto {
	out := ""
	if len(n.GetOutput()) > 0 {
		out = n.Output[0]
	}
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			return a.T
		case "value_float":
			raw, _ := EncodeFloat64s(Float, []float64{float64(a.GetF())})
			t, _ := NewTensor(out, Float, nil, raw)
			return t
		case "value_floats":
			vals := make([]float64, len(a.Floats))
			for i, f := range a.Floats {
				vals[i] = float64(f)
			}
			raw, _ := EncodeFloat64s(Float, vals)
			t, _ := NewTensor(out, Float, []int64{int64(len(vals))}, raw)
			return t
		case "value_int":
			return NewInt64Tensor(out, nil, []int64{a.GetI()})
		case "value_ints":
			return NewInt64Tensor(out, []int64{int64(len(a.Ints))}, a.Ints)
		}
	}
	return nil
}

// SubgraphReads lists the outer-scope tensors that n's subgraphs (If, Loop,
// Scan bodies) read: names used in a subgraph but not defined inside it.
func SubgraphReads(n *onnxpb.NodeProto) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range n.GetAttribute() {
		gs := a.Graphs
		if a.G != nil {
			gs = append([]*onnxpb.GraphProto{a.G}, gs...)
		}
		for _, g := range gs {
			for _, name := range freeNames(g) {
				if !seen[name] {
					seen[name] = true
					out = append(out, name)
				}
			}
		}
	}
	return out
}

// freeNames are the names a graph uses without defining them.
func freeNames(g *onnxpb.GraphProto) []string {
	defined := map[string]bool{}
	for _, v := range g.GetInput() {
		defined[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		defined[t.GetName()] = true
	}
	for _, s := range g.GetSparseInitializer() {
		defined[s.GetValues().GetName()] = true
	}
	var free []string
	seen := map[string]bool{}
	use := func(name string) {
		if name != "" && !defined[name] && !seen[name] {
			seen[name] = true
			free = append(free, name)
		}
	}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			use(in)
		}
		for _, name := range SubgraphReads(n) {
			use(name)
		}
		for _, o := range n.GetOutput() {
			defined[o] = true
		}
	}
	for _, v := range g.GetOutput() {
		use(v.GetName())
	}
	return free
}

// NodeLabel names a node for messages: its name, or "#i" if it has none.
func NodeLabel(n *onnxpb.NodeProto, i int) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return fmt.Sprintf("#%d", i)
}

// Attr returns the attribute called name, or nil.
func Attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// AttrInt returns an int attribute or def if absent.
func AttrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := Attr(n, name); a != nil && a.I != nil {
		return a.GetI()
	}
	return def
}

// AttrFloat returns a float attribute or def if absent.
func AttrFloat(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := Attr(n, name); a != nil && a.F != nil {
		return a.GetF()
	}
	return def
}

// AttrInts returns an ints attribute, or nil if absent.
func AttrInts(n *onnxpb.NodeProto, name string) []int64 {
	if a := Attr(n, name); a != nil {
		return a.Ints
	}
	return nil
}

// AttrString returns a string attribute or def if absent.
func AttrString(n *onnxpb.NodeProto, name, def string) string {
	if a := Attr(n, name); a != nil && a.S != nil {
		return string(a.S)
	}
	return def
}

// SetAttrInt sets (or adds) an int attribute.
func SetAttrInt(n *onnxpb.NodeProto, name string, v int64) {
	if a := Attr(n, name); a != nil {
		a.I = &v
		return
	}
	n.Attribute = append(n.Attribute, &onnxpb.AttributeProto{
		Name: &name, Type: onnxpb.AttributeProto_INT.Enum(), I: &v,
	})
}

// SetAttrInts sets (or adds) an ints attribute.
func SetAttrInts(n *onnxpb.NodeProto, name string, v []int64) {
	if a := Attr(n, name); a != nil {
		a.Ints = append([]int64(nil), v...)
		return
	}
	n.Attribute = append(n.Attribute, &onnxpb.AttributeProto{
		Name: &name, Type: onnxpb.AttributeProto_INTS.Enum(), Ints: append([]int64(nil), v...),
	})
}

// Dim is one dimension of a declared shape: a size, or a symbol, or unknown.
type Dim struct {
	Value int64  // valid if Param == "" and Known
	Param string // symbolic name such as "batch"
	Known bool   // false for an absent dimension value
}

func (d Dim) String() string {
	switch {
	case d.Param != "":
		return d.Param
	case d.Known:
		return fmt.Sprint(d.Value)
	}
	return "?"
}

// TensorType returns the element type and shape a ValueInfoProto declares.
// ok is false for non-tensor types; shape is nil if the rank is unknown.
func TensorType(v *onnxpb.ValueInfoProto) (dt DataType, shape []Dim, ok bool) {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return Undefined, nil, false
	}
	dt = DataType(tt.GetElemType())
	if tt.Shape == nil {
		return dt, nil, true
	}
	shape = make([]Dim, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		switch v := d.Value.(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			shape[i] = Dim{Value: v.DimValue, Known: true}
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			shape[i] = Dim{Param: v.DimParam}
		}
	}
	return dt, shape, true
}

// StaticDims converts a declared shape to sizes, -1 for unknown dimensions.
func StaticDims(shape []Dim) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		if d.Known && d.Param == "" {
			out[i] = d.Value
		} else {
			out[i] = -1
		}
	}
	return out
}

// NewValueInfo builds a tensor ValueInfoProto; -1 dims become symbols named
// by params (or unnamed if params has no entry).
func NewValueInfo(name string, dt DataType, shape []Dim) *onnxpb.ValueInfoProto {
	sp := &onnxpb.TensorShapeProto{}
	for _, d := range shape {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		switch {
		case d.Param != "":
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
		case d.Known:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Value}
		}
		sp.Dim = append(sp.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: &name,
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: ptr(int32(dt)), Shape: sp},
		}},
	}
}

// InputInitializers lists the initializers that the main graph also declares
// as inputs (IR < 4 exporters did this for every weight), which makes them
// overridable defaults rather than constants.
func InputInitializers(m *Model) []string {
	g := m.Graph()
	init := map[string]bool{}
	for _, t := range g.GetInitializer() {
		init[t.GetName()] = true
	}
	var out []string
	for _, v := range g.GetInput() {
		if init[v.GetName()] {
			out = append(out, v.GetName())
		}
	}
	return out
}

// DetachInputInitializers removes initializers from the main graph's inputs,
// so that they are constants. Inputs without an initializer stay.
func DetachInputInitializers(m *Model) {
	g := m.Graph()
	init := map[string]bool{}
	for _, t := range g.GetInitializer() {
		init[t.GetName()] = true
	}
	var in []*onnxpb.ValueInfoProto
	for _, v := range g.GetInput() {
		if !init[v.GetName()] {
			in = append(in, v)
		}
	}
	g.Input = in
	if m.Proto.GetIrVersion() < 4 {
		// IR 4 is the first that allows initializers outside the inputs.
		v := int64(4)
		m.Proto.IrVersion = &v
	}
}
