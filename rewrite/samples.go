package rewrite

import (
	"slices"
	"strings"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// SampleAxis says where a tensor holds the samples, that is capture's rows:
// axis 0 of every graph input. Sample n of N sits at the positions
// (o*N + n)*Inner + j of Axis, for o < Outer and j < Inner. Heads folded
// into the batch ([B*H, T, D]) have the samples on their own axis with
// Inner = H; a merge view [S*B, E] has them with Outer = S.
type SampleAxis struct {
	Axis, Outer, Inner int
}

// lostSamples marks a tensor whose samples the rules below cannot place.
var lostSamples = SampleAxis{Axis: -1}

// sampleAxes follows the samples from the graph inputs through the ops
// whose effect on them is exact (elementwise ops, transposes, matrix
// products that do not contract them, normalisations and softmaxes over
// other axes, slices, splits and concatenations along other axes, and
// reshapes that keep them whole between static sizes). A tensor that no
// graph input feeds is missing from the map: its values are the same for
// every sample. Every other op loses them.
func (a *Analysis) sampleAxes() map[string]SampleAxis {
	g := a.Model.Graph()
	out := map[string]SampleAxis{}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	for _, in := range g.GetInput() {
		if !inits[in.GetName()] {
			out[in.GetName()] = SampleAxis{Axis: 0, Outer: 1, Inner: 1}
		}
	}
	for _, n := range g.GetNode() {
		fed, lost := false, false
		// Reads from inside subgraphs count: no rule places them, so the
		// outputs of such a node lose the samples.
		for _, in := range slices.Concat(n.GetInput(), onnxio.SubgraphReads(n)) {
			if s, ok := out[in]; ok {
				fed = true
				lost = lost || s.Axis < 0
			}
		}
		if !fed || n.GetOpType() == "Shape" || n.GetOpType() == "Size" {
			continue
		}
		s, ok := lostSamples, false
		switch {
		case n.GetDomain() != "":
		case !lost:
			s, ok = a.sampleRule(n, out)
		case a.classOf(n).Elementwise():
			// Positions follow the operands whose samples are placed; an
			// operand that lost them (a key padding mask whose run-time
			// sequence length kept its views from placing them) only adds
			// values there.
			if ro := a.rankOf(n.GetOutput()[0]); ro >= 0 {
				s, ok = a.alignedSamples(n.GetInput(), out, ro, a.rankOf, -1)
			}
		}
		if !ok {
			s = lostSamples
		}
		for k, o := range n.GetOutput() {
			if k == 0 || (ok && (n.GetOpType() == "Split" || n.GetOpType() == "Dropout")) {
				out[o] = s
			} else {
				out[o] = lostSamples
			}
		}
	}
	return out
}

// sampleRule places the samples in the first output of n, whose inputs
// carry them at known places.
func (a *Analysis) sampleRule(n *onnxpb.NodeProto, at map[string]SampleAxis) (SampleAxis, bool) {
	in := n.GetInput()
	rank := a.rankOf
	// only says that input k alone carries the samples.
	only := func(k int) (SampleAxis, bool) {
		for j, t := range in {
			if _, ok := at[t]; ok && j != k {
				return lostSamples, false
			}
		}
		s, ok := at[safe(in, k)]
		return s, ok
	}
	ro := rank(n.GetOutput()[0])
	if ro < 0 {
		return lostSamples, false
	}
	switch op := n.GetOpType(); {
	case op == "Transpose":
		s, ok := only(0)
		perm := onnxio.AttrInts(n, "perm")
		if !ok {
			return s, false
		}
		if perm == nil {
			s.Axis = ro - 1 - s.Axis
			return s, true
		}
		k := slices.Index(perm, int64(s.Axis))
		s.Axis = k
		return s, k >= 0
	case op == "Softmax" || op == "LogSoftmax" || op == "LayerNormalization":
		s, ok := only(0)
		ax := normAxis(onnxio.AttrInt(n, "axis", -1), ro)
		switch {
		case op == "LayerNormalization" || a.Model.Opset("") < 13:
			if op != "LayerNormalization" && !hasAttr(n, "axis") {
				ax = 1
			}
			return s, ok && s.Axis < ax // normalised over axes ax and later
		default:
			return s, ok && s.Axis != ax
		}
	case op == "MatMul":
		return a.matmulSamples(n, at, rank)
	case op == "Gemm":
		s, ok := only(0)
		if !ok || rank(in[0]) != 2 {
			return s, false
		}
		want := 0
		if onnxio.AttrInt(n, "transA", 0) != 0 {
			want = 1
		}
		s.Axis = 0
		return s, at[in[0]].Axis == want
	case op == "Conv":
		s, ok := only(0)
		return s, ok && s.Axis == 0
	case op == "Gather":
		// An embedding lookup: rows of a table chosen by indices that
		// carry the samples land where the indices' axes go.
		s, ok := only(1)
		ax := normAxis(onnxio.AttrInt(n, "axis", 0), rank(in[0]))
		if !ok || ax < 0 {
			return lostSamples, false
		}
		s.Axis += ax
		return s, true
	case op == "Reshape":
		s, ok := only(0)
		lead := a.copiedLead(n)
		return a.reshapeSamples(in[0], n.GetOutput()[0], s, ok, lead)
	case op == "Slice", op == "Split":
		s, ok := only(0)
		axes, known := a.cutAxes(n, rank(in[0]))
		return s, ok && known && !slices.Contains(axes, s.Axis)
	case strings.HasPrefix(op, "Reduce"):
		s, ok := only(0)
		axes, known := a.reducedAxes(n, rank(in[0]))
		if !ok || !known || slices.Contains(axes, s.Axis) {
			return lostSamples, false
		}
		if onnxio.AttrInt(n, "keepdims", 1) == 0 {
			for _, ax := range axes {
				if ax < s.Axis {
					s.Axis--
				}
			}
		}
		return s, true
	case op == "Concat":
		ax := normAxis(onnxio.AttrInt(n, "axis", 0), ro)
		return a.alignedSamples(in, at, ro, rank, ax)
	case op == "Identity" || op == "Cast" || op == "Dropout" || a.classOf(n).Elementwise():
		return a.alignedSamples(in, at, ro, rank, -1)
	}
	return lostSamples, false
}

// alignedSamples places the samples in the output of an op that aligns its
// inputs from the last axis (broadcasting or concatenating along axis
// cut): every input that carries them must carry them alike. Inputs that
// lost them are passed over when the others have the output's rank, so
// that broadcasting leaves their positions where they are (an input with
// the samples has more than one position on their axis, so it is never
// the one broadcast).
func (a *Analysis) alignedSamples(in []string, at map[string]SampleAxis, ro int, rank func(string) int, cut int) (SampleAxis, bool) {
	s, found, lost, narrow := lostSamples, false, false, false
	for _, t := range in {
		x, ok := at[t]
		if !ok {
			continue
		}
		if x.Axis < 0 {
			lost = true
			continue
		}
		r := rank(t)
		if r < 0 {
			return lostSamples, false
		}
		narrow = narrow || r != ro
		x.Axis += ro - r
		if found && x != s {
			return lostSamples, false
		}
		s, found = x, true
	}
	return s, found && s.Axis != cut && !(lost && narrow)
}

// rankOf is t's inferred rank, or -1.
func (a *Analysis) rankOf(t string) int {
	d, ok := a.shapes.Shape(t)
	if !ok {
		return -1
	}
	return len(d)
}

// matmulSamples places the samples in a MatMul's output: on a batch axis
// of either factor, the rows of the first or the columns of the second,
// never the contracted axis.
func (a *Analysis) matmulSamples(n *onnxpb.NodeProto, at map[string]SampleAxis, rank func(string) int) (SampleAxis, bool) {
	ro := rank(n.GetOutput()[0])
	s, found := lostSamples, false
	for k, t := range n.GetInput() {
		x, ok := at[t]
		if !ok {
			continue
		}
		r := rank(t)
		if r < 2 || (k == 0 && x.Axis == r-1) || (k == 1 && x.Axis == r-2) {
			return lostSamples, false
		}
		batch := x.Axis < r-2
		x.Axis += ro - r
		if found && (x != s || !batch) {
			return lostSamples, false
		}
		s, found = x, true
	}
	return s, found
}

// reshapeSamples places the samples in the output of a Reshape of a tensor
// that has them as s. Every other axis of the input must have a static
// size, and so must every axis of the output but one, which then holds
// them: exact when the sizes before and after it divide the sizes around
// the samples in the input. The first lead axes, which the Reshape copies
// from its input (a run-time sequence length kept in front: [S, B, E] ->
// [S, B*H, D]), may have any size: the flat order within them is the
// same on both sides.
func (a *Analysis) reshapeSamples(x, y string, s SampleAxis, ok bool, lead int) (SampleAxis, bool) {
	din, ok1 := a.shapes.Shape(x)
	dout, ok2 := a.shapes.Shape(y)
	if !ok || !ok1 || !ok2 {
		return lostSamples, false
	}
	lead = min(lead, s.Axis)
	before, after := int64(s.Outer), int64(s.Inner)
	for ax, d := range din {
		switch {
		case ax == s.Axis:
		case ax < lead:
		case d <= 0:
			return lostSamples, false
		case ax < s.Axis:
			before *= d
		default:
			after *= d
		}
	}
	k := -1
	for ax, d := range dout {
		if d <= 0 && ax >= lead {
			if k >= 0 {
				return lostSamples, false
			}
			k = ax
		}
	}
	if k < 0 {
		return lostSamples, false
	}
	pb, qa := onnxio.NumElements(dout[lead:k]), onnxio.NumElements(dout[k+1:])
	if before%pb != 0 || after%qa != 0 {
		return lostSamples, false
	}
	return SampleAxis{Axis: k, Outer: int(before / pb), Inner: int(after / qa)}, true
}

// copiedLead is how many leading axes Reshape node n copies from its
// input: its target shape names them as the input's own sizes (read by a
// Shape of the input, or of a tensor whose axis has the same size, or a 0
// without allowzero).
func (a *Analysis) copiedLead(n *onnxpb.NodeProto) int {
	if a.shapeElems == nil || len(n.GetInput()) < 2 {
		return 0
	}
	elems := a.shapeElems(n.Input[1])
	allowZero := onnxio.AttrInt(n, "allowzero", 0) == 1
	lead := 0
	for j, e := range elems {
		switch {
		case e.kind == elemShape && a.sameSize(e.tensor, e.axis, n.Input[0], j):
		case (e.kind == elemConst || e.kind == elemOther) && e.value == 0 && !allowZero:
		default:
			return lead
		}
		lead++
	}
	return lead
}

// sameSize reports whether axis ax of t and axis bx of u have the same
// size whatever the inputs: they meet, followed back through ops that
// keep that axis, at the same axis of one tensor.
func (a *Analysis) sameSize(t string, ax int, u string, bx int) bool {
	from := a.sizeSources(t, ax)
	for name, x := range a.sizeSources(u, bx) {
		if y, ok := from[name]; ok && x == y {
			return true
		}
	}
	return false
}

// sizeSources lists the tensors, with the axis, whose size axis ax of t
// takes through ops that keep it: elementwise ops (inputs that are not
// broadcast there), transposes, a matrix product's batch and row axes,
// slices along other axes.
func (a *Analysis) sizeSources(t string, ax int) map[string]int {
	seen := map[string]int{}
	var walk func(t string, ax, depth int)
	walk = func(t string, ax, depth int) {
		if _, ok := seen[t]; ok || depth > 24 {
			return
		}
		seen[t] = ax
		n := a.ix.ProducerNode(t)
		if n == nil || len(n.Input) == 0 {
			return
		}
		r := a.rankOf(t)
		switch op := n.GetOpType(); {
		case op == "Transpose":
			perm := onnxio.AttrInts(n, "perm")
			if ax < len(perm) {
				walk(n.Input[0], int(perm[ax]), depth+1)
			}
		case op == "MatMul":
			if r >= 2 && a.rankOf(n.Input[0]) == r && ax < r-1 {
				walk(n.Input[0], ax, depth+1)
			}
		case op == "Slice":
			if axes, known := a.cutAxes(n, r); known && !slices.Contains(axes, ax) {
				walk(n.Input[0], ax, depth+1)
			}
		case op == "Identity" || op == "Cast" || a.classOf(n).Elementwise():
			for _, in := range n.Input {
				d, ok := a.shapes.Shape(in)
				if !ok || r < 0 {
					continue
				}
				if ia := ax - (r - len(d)); ia >= 0 && d[ia] != 1 {
					walk(in, ia, depth+1)
				}
			}
		}
	}
	walk(t, ax, 0)
	return seen
}

// cutAxes returns the axes that a Slice or Split cuts, when known.
func (a *Analysis) cutAxes(n *onnxpb.NodeProto, r int) ([]int, bool) {
	if r < 0 {
		return nil, false
	}
	var axes []int64
	switch {
	case n.GetOpType() == "Split":
		axes = []int64{onnxio.AttrInt(n, "axis", 0)}
	case len(n.GetInput()) < 3: // opset < 10: attributes
		axes = onnxio.AttrInts(n, "axes")
		if axes == nil {
			for k := range onnxio.AttrInts(n, "starts") {
				axes = append(axes, int64(k))
			}
		}
	case len(n.GetInput()) > 3 && n.GetInput()[3] != "":
		v, ok := a.constInt64s(n.GetInput()[3])
		if !ok {
			return nil, false
		}
		axes = v
	default:
		d, ok := a.shapes.Shape(n.GetInput()[1])
		if !ok || len(d) != 1 || d[0] < 0 {
			return nil, false
		}
		for k := int64(0); k < d[0]; k++ {
			axes = append(axes, k)
		}
	}
	out := make([]int, len(axes))
	for k, ax := range axes {
		out[k] = normAxis(ax, r)
	}
	return out, true
}

// reducedAxes returns the axes that a Reduce op reduces, when known: an
// attribute, or a constant second input (ReduceSum since opset 13, the
// others since 18); none means all, unless noop_with_empty_axes.
func (a *Analysis) reducedAxes(n *onnxpb.NodeProto, r int) ([]int, bool) {
	if r < 0 {
		return nil, false
	}
	axes := onnxio.AttrInts(n, "axes")
	if t := safe(n.GetInput(), 1); t != "" {
		v, ok := a.constInt64s(t)
		if !ok {
			return nil, false
		}
		axes = v
	}
	if len(axes) == 0 {
		if onnxio.AttrInt(n, "noop_with_empty_axes", 0) != 0 {
			return nil, true
		}
		for k := 0; k < r; k++ {
			axes = append(axes, int64(k))
		}
	}
	out := make([]int, len(axes))
	for k, ax := range axes {
		out[k] = normAxis(ax, r)
	}
	return out, true
}

func normAxis(ax int64, r int) int {
	if ax < 0 {
		ax += int64(r)
	}
	return int(ax)
}

func hasAttr(n *onnxpb.NodeProto, name string) bool {
	return slices.ContainsFunc(n.GetAttribute(), func(a *onnxpb.AttributeProto) bool { return a.GetName() == name })
}

// constInt64s is the value of the constant tensor name, if it is one.
func (a *Analysis) constInt64s(name string) ([]int64, bool) {
	_, c := a.constOf(name)
	if c == nil {
		return nil, false
	}
	v, err := a.Model.Int64s(c)
	return v, err == nil
}
