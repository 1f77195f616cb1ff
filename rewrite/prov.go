package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Provenance of the elements of small integer tensors that feed Reshape and
// Expand shapes: each element is a constant that Apply may rewrite, a size
// read from a tensor at run time, or something computed that cannot be
// traced.

type elemKind int

const (
	elemOther elemKind = iota
	elemConst          // element index of constant tensor, read by node user at input slot
	elemShape          // size of axis of tensor, read at run time by a Shape node
	elemNone           // no element (right-aligned Expand shapes)
)

type elem struct {
	kind   elemKind
	value  int64
	tensor string // elemConst: the constant; elemShape: the tensor measured
	index  int    // elemConst: element index in the constant
	axis   int    // elemShape: the axis measured
	user   int    // elemConst: node that reads the constant
	slot   int    // elemConst: input slot of that node
	// whole is the node and input slot that supply this element alone (a
	// 1-element input of a Concat), where a constant could replace it,
	// when hasWhole.
	whole    [2]int
	hasWhole bool
}

// prov traces the elements of the 1-D integer tensor t.
func (an *analyzer) prov(t string, depth int) []elem {
	if depth > 32 || t == "" {
		return nil
	}
	if _, ok := an.ix.Init[t]; ok {
		if c := an.ix.Const(t); c != nil {
			return an.constElems(t)
		}
		return nil
	}
	p := an.ix.ProducerNode(t)
	if p == nil {
		return nil
	}
	pi := an.ix.Producer[t]
	// For constants read directly by the node whose output we trace, the
	// user is that node; callers fix up user/slot where it matters.
	switch p.GetOpType() {
	case "Constant":
		if c := onnxio.ConstantValue(p); c != nil && onnxio.DataType(c.GetDataType()).IsInt() {
			return an.constElems(t)
		}
		return nil
	case "Shape":
		return an.provShape(p)
	case "Identity", "Cast", "Unsqueeze", "Squeeze", "Reshape":
		return an.withUser(an.prov(p.Input[0], depth+1), p.Input[0], pi, 0)
	case "Concat":
		return an.provConcat(p, pi, depth)
	case "Gather":
		return an.provGather(p, pi, depth)
	case "Slice":
		return an.provSlice(p, pi, depth)
	case "Where":
		if out, ok := an.provWhere(p, pi, depth); ok {
			return out
		}
	}
	// Computed: the values may be known, but not where they come from.
	return an.valueElems(t)
}

// provOrValues is prov, or the known values of t as untraceable elements.
func (an *analyzer) provOrValues(t string, depth int) []elem {
	if e := an.prov(t, depth); e != nil {
		return e
	}
	return an.valueElems(t)
}

// valueElems returns the known values of t as untraceable elements.
func (an *analyzer) valueElems(t string) []elem {
	v, ok := an.shapes.Values[t]
	if !ok {
		return nil
	}
	out := make([]elem, len(v))
	for k := range v {
		out[k] = elem{kind: elemOther, value: v[k]}
	}
	return out
}

// provShape: the sizes of the axes a Shape node reads.
func (an *analyzer) provShape(p *onnxpb.NodeProto) []elem {
	d, ok := an.dims(p.Input[0])
	if !ok {
		return nil
	}
	start, end := onnxio.AttrInt(p, "start", 0), onnxio.AttrInt(p, "end", int64(len(d)))
	r := int64(len(d))
	if start < 0 {
		start += r
	}
	if end < 0 {
		end += r
	}
	start, end = max(0, min(start, r)), max(0, min(end, r))
	var out []elem
	for a := start; a < end; a++ {
		v := d[a]
		if v < 0 {
			v = onnxio.Unknown
		}
		out = append(out, elem{kind: elemShape, tensor: p.Input[0], axis: int(a), value: v})
	}
	return out
}

func (an *analyzer) provConcat(p *onnxpb.NodeProto, pi, depth int) []elem {
	var out []elem
	for k, in := range p.Input {
		e := an.prov(in, depth+1)
		if e == nil {
			d, ok := an.dims(in)
			if !ok || len(d) != 1 || d[0] < 0 {
				return nil
			}
			e = make([]elem, d[0])
		}
		e = an.withUser(e, in, pi, k)
		if len(e) == 1 && an.shapes.DTypes[in] == onnxio.Int64 {
			e[0].whole, e[0].hasWhole = [2]int{pi, k}, true
		}
		out = append(out, e...)
	}
	return out
}

func (an *analyzer) provGather(p *onnxpb.NodeProto, pi, depth int) []elem {
	src := an.withUser(an.prov(p.Input[0], depth+1), p.Input[0], pi, 0)
	idx, ok := an.shapes.Values[p.Input[1]]
	if src == nil || !ok || onnxio.AttrInt(p, "axis", 0) != 0 {
		return nil
	}
	var out []elem
	for _, j := range idx {
		if j < 0 {
			j += int64(len(src))
		}
		if j < 0 || j >= int64(len(src)) {
			return nil
		}
		out = append(out, src[j])
	}
	return out
}

func (an *analyzer) provSlice(p *onnxpb.NodeProto, pi, depth int) []elem {
	src := an.withUser(an.prov(p.Input[0], depth+1), p.Input[0], pi, 0)
	starts, ok1 := an.shapes.Values[safe(p.Input, 1)]
	ends, ok2 := an.shapes.Values[safe(p.Input, 2)]
	if src == nil || !ok1 || !ok2 || len(starts) != 1 {
		return nil
	}
	step := int64(1)
	if st, ok := an.shapes.Values[safe(p.Input, 4)]; ok && len(st) == 1 {
		step = st[0]
	}
	s, e, step := onnxio.SliceBounds(starts[0], ends[0], step, int64(len(src)))
	var out []elem
	for j := s; (step > 0 && j < e) || (step < 0 && j > e); j += step {
		out = append(out, src[j])
	}
	return out
}

// provWhere: torch.onnx exports expand(...) with Where(shape == -1, 1,
// shape): where the condition is known, each element comes from one side.
// It reports false when the condition is not known element by element.
func (an *analyzer) provWhere(p *onnxpb.NodeProto, pi, depth int) ([]elem, bool) {
	cond, ok := an.shapes.Values[p.Input[0]]
	if !ok {
		return nil, false
	}
	x := an.withUser(an.provOrValues(p.Input[1], depth+1), p.Input[1], pi, 1)
	y := an.withUser(an.provOrValues(p.Input[2], depth+1), p.Input[2], pi, 2)
	n := max(len(cond), len(x), len(y))
	at := func(e []elem, k int) (elem, bool) {
		switch len(e) {
		case n:
			return e[k], true
		case 1:
			return e[0], true
		}
		return elem{}, false
	}
	if len(cond) != n && len(cond) != 1 {
		return nil, false
	}
	out := make([]elem, n)
	for k := range out {
		c := cond[0]
		if len(cond) == n {
			c = cond[k]
		}
		src := x
		if c == 0 {
			src = y
		}
		e, ok := at(src, k)
		switch {
		case c == onnxio.Unknown:
			out[k] = elem{kind: elemOther, value: onnxio.Unknown}
		case !ok:
			return nil, true
		case len(src) == 1 && n > 1 && e.kind == elemConst:
			// One constant element broadcast to several places cannot
			// be rewritten for one of them.
			out[k] = elem{kind: elemOther, value: e.value}
		default:
			out[k] = e
		}
	}
	return out, true
}

func safe(l []string, k int) string {
	if k < len(l) {
		return l[k]
	}
	return ""
}

func (an *analyzer) constElems(name string) []elem {
	_, t := an.constOf(name)
	if t == nil {
		return nil
	}
	vals, err := an.Model.Int64s(t)
	if err != nil || len(vals) > 64 {
		return nil
	}
	out := make([]elem, len(vals))
	for k, v := range vals {
		out[k] = elem{kind: elemConst, value: v, tensor: name, index: k, user: -1, slot: -1}
	}
	return out
}

// withUser records node/slot as the reader of constants that input in of
// node user provides directly.
func (an *analyzer) withUser(e []elem, in string, user, slot int) []elem {
	out := make([]elem, len(e))
	for k, x := range e {
		if x.kind == elemConst && x.user < 0 && x.tensor == in {
			x.user, x.slot = user, slot
		}
		out[k] = x
	}
	return out
}

// Run-time sizes of unit axes. Shape (and Size) of a tensor that carries
// units gives values that shrink with the units. Where they set the size of
// a unit axis of a Reshape or Expand output, the rewriter keeps them
// consistent (fixShape); anywhere else (zeros_like, Range, a reshape of a
// tensor without units, arithmetic on data) the model would change shape
// behind the rewriter's back, so those units are blocked.

// sizeDep marks element elem (-1: every element) of a small integer tensor
// as the run-time size of an axis with layout lay.
type sizeDep struct {
	elem int
	lay  Layout
}

// sizeUses propagates run-time sizes through shape arithmetic at node i and
// blocks the units whose sizes reach anything else.
func (an *analyzer) sizeUses(n *onnxpb.NodeProto, i int) {
	op := n.GetOpType()
	if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
		op = ""
	}
	switch op {
	case "Shape":
		x := n.Input[0]
		d, ok := an.dims(x)
		if !ok || len(an.lay[x]) == 0 {
			return
		}
		r := int64(len(d))
		start, end := onnxio.AttrInt(n, "start", 0), onnxio.AttrInt(n, "end", r)
		if start < 0 {
			start += r
		}
		if end < 0 {
			end += r
		}
		for ax, l := range an.lay[x] {
			if int64(ax) >= start && int64(ax) < end {
				an.sizes[n.Output[0]] = append(an.sizes[n.Output[0]], sizeDep{ax - int(start), l})
			}
		}
		return
	case "Size":
		for _, l := range an.lay[n.Input[0]] {
			an.sizes[n.Output[0]] = append(an.sizes[n.Output[0]], sizeDep{-1, l})
		}
		return
	}
	var deps []sizeDep // every dependency of the node's inputs
	slots := map[int]bool{}
	for k, in := range n.Input {
		if ds := an.sizes[in]; len(ds) > 0 {
			deps = append(deps, ds...)
			slots[k] = true
		}
	}
	for _, t := range onnxio.SubgraphReads(n) {
		for _, d := range an.sizes[t] {
			an.block(d.lay, fmt.Sprintf("the size of a unit axis is read inside a subgraph of %s (node %s)", n.GetOpType(), an.cur))
		}
	}
	if len(deps) == 0 {
		return
	}
	if (op == "Reshape" || op == "Expand") && len(slots) == 1 && slots[1] {
		an.sizeTarget(n, an.sizes[n.Input[1]])
		return
	}
	if op == "ConstantOfShape" && n.GetDomain() == "" && slots[0] && an.shapedFill(n) {
		return
	}
	if fixes := an.slicedBounds[i]; op == "Slice" && fixes != nil && !slots[0] && !slots[3] && !slots[4] {
		// The bounds become constants, written whenever the units they
		// are computed from change too.
		for _, f := range fixes {
			for _, d := range an.sizes[n.Input[f.slot]] {
				f.other = d.lay
				an.sizeFixes = append(an.sizeFixes, f)
			}
		}
		return
	}
	// Shape arithmetic: every output is a small integer tensor.
	for _, o := range n.Output {
		if _, ok := an.shapes.Values[o]; !ok && o != "" {
			for _, d := range deps {
				an.block(d.lay, fmt.Sprintf("the size of a unit axis is used at run time by %s node %s", n.GetOpType(), an.cur))
			}
			return
		}
	}
	out := an.sizeElems(n, op)
	for _, o := range n.Output {
		if o != "" {
			an.sizes[o] = append(an.sizes[o], out...)
		}
	}
}

// shapedFill gives the output of ConstantOfShape node n the units of the
// axes whose run-time sizes its shape reads, the same axis of the output
// as of the tensor measured (the fill of a Where shaped like the folded
// mask it stands in for): every position holds the same value, so the
// output follows those units under any plan. It reports whether every
// size it reads is such an axis.
func (an *analyzer) shapedFill(n *onnxpb.NodeProto) bool {
	deps := an.sizes[n.Input[0]]
	elems := an.prov(n.Input[0], 0)
	for _, d := range deps {
		if d.elem < 0 || d.elem >= len(elems) || elems[d.elem].kind != elemShape || elems[d.elem].axis != d.elem {
			return false
		}
	}
	for _, d := range deps {
		an.setLayout(n.Output[0], d.elem, d.lay)
	}
	return true
}

// sizeTarget checks a Reshape or Expand whose target shape holds run-time
// sizes of unit axes: each must name a unit axis of the output (fixShape
// then checks that the units agree).
func (an *analyzer) sizeTarget(n *onnxpb.NodeProto, deps []sizeDep) {
	out := n.Output[0]
	r := an.rank(out)
	tv, ok := an.shapes.Values[n.Input[1]]
	for _, d := range deps {
		bad := !ok || r < 0 || d.elem < 0
		if !bad {
			ax := d.elem
			if n.GetOpType() == "Expand" {
				ax += r - len(tv)
			}
			l := an.lay[out][ax]
			if ax < 0 || ax >= r || l == nil {
				bad = true
			} else {
				an.checks = append(an.checks, layoutCheck{d.lay, l, fmt.Sprintf("%s node %s gives axis %d the run-time size of other units", n.GetOpType(), an.cur, ax), an.freezable(n, d.elem, l, d.lay)})
			}
		}
		if bad && !an.freezeUnitless(n, d, r) {
			an.block(d.lay, fmt.Sprintf("%s node %s sizes an axis without units from a unit axis", n.GetOpType(), an.cur))
		}
	}
}

// freezeUnitless records, when element d.elem of Reshape node n's target
// sizes an output axis without units to a value known now and supplied
// alone (a 1-element input of a Concat), that Apply replaces that input
// with its present value once d's units change. An axis without units
// keeps its size under every plan, so the constant is exact; nn.Multihead-
// Attention computes its head size as the run-time hidden width over the
// head count. It reports whether it did.
func (an *analyzer) freezeUnitless(n *onnxpb.NodeProto, d sizeDep, r int) bool {
	if n.GetOpType() != "Reshape" || d.elem < 0 || d.elem >= r || an.lay[n.Output[0]][d.elem] != nil {
		return false
	}
	elems := an.prov(n.Input[1], 0)
	if d.elem >= len(elems) || !elems[d.elem].hasWhole || elems[d.elem].value <= 0 {
		return false
	}
	e := elems[d.elem]
	an.sizeFixes = append(an.sizeFixes, sizeFix{node: e.whole[0], slot: e.whole[1], other: d.lay, value: e.value})
	return true
}

// freezable returns how element k of the target shape of Reshape node n
// could be replaced by a constant, the new length of l, or nil.
func (an *analyzer) freezable(n *onnxpb.NodeProto, k int, l, other Layout) *sizeFix {
	if n.GetOpType() != "Reshape" {
		return nil
	}
	elems := an.prov(n.Input[1], 0)
	if k < 0 || k >= len(elems) || !elems[k].hasWhole {
		return nil
	}
	return &sizeFix{node: elems[k].whole[0], slot: elems[k].whole[1], lay: l, other: other}
}

// sizeElems maps the size dependencies of a shape-arithmetic node's inputs
// to its output elements: exactly for selections and concatenations of
// 1-D tensors, to every element otherwise.
func (an *analyzer) sizeElems(n *onnxpb.NodeProto, op string) []sizeDep {
	length := func(t string) int {
		if v, ok := an.shapes.Values[t]; ok {
			return len(v)
		}
		return -1
	}
	whole := func() []sizeDep {
		var out []sizeDep
		for _, in := range n.Input {
			for _, d := range an.sizes[in] {
				out = append(out, sizeDep{-1, d.lay})
			}
		}
		return out
	}
	in0 := an.sizes[safe(n.Input, 0)]
	onlyFirst := true
	for k, in := range n.Input {
		if k > 0 && len(an.sizes[in]) > 0 {
			onlyFirst = false
		}
	}
	switch op {
	case "Identity", "Cast", "Unsqueeze", "Squeeze", "Reshape", "Neg", "Abs":
		if onlyFirst {
			return in0
		}
	case "Gather":
		idx, ok := an.shapes.Values[safe(n.Input, 1)]
		if !onlyFirst || !ok || onnxio.AttrInt(n, "axis", 0) != 0 {
			break
		}
		var out []sizeDep
		for _, d := range in0 {
			for j, x := range idx {
				if x < 0 {
					x += int64(length(n.Input[0]))
				}
				if d.elem < 0 || int64(d.elem) == x {
					out = append(out, sizeDep{j, d.lay})
				}
			}
		}
		return out
	case "Slice":
		starts, ok1 := an.shapes.Values[safe(n.Input, 1)]
		ends, ok2 := an.shapes.Values[safe(n.Input, 2)]
		size := length(n.Input[0])
		if !onlyFirst || !ok1 || !ok2 || len(starts) != 1 || size < 0 {
			break
		}
		step := int64(1)
		if st, ok := an.shapes.Values[safe(n.Input, 4)]; ok && len(st) == 1 {
			step = st[0]
		}
		s, e, step := onnxio.SliceBounds(starts[0], ends[0], step, int64(size))
		var out []sizeDep
		j := 0
		for x := s; (step > 0 && x < e) || (step < 0 && x > e); x += step {
			for _, d := range in0 {
				if d.elem < 0 || int64(d.elem) == x {
					out = append(out, sizeDep{j, d.lay})
				}
			}
			j++
		}
		return out
	case "Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Equal", "Less", "Greater",
		"LessOrEqual", "GreaterOrEqual", "Where", "Not", "And", "Or":
		// Elementwise on 1-D values of one length (or scalars).
		nout := length(n.Output[0])
		var out []sizeDep
		for _, in := range n.Input {
			for _, d := range an.sizes[in] {
				switch k := length(in); {
				case nout < 0 || (k != nout && k != 1):
					return whole()
				case k == 1 && nout != 1:
					out = append(out, sizeDep{-1, d.lay})
				default:
					out = append(out, d)
				}
			}
		}
		return out
	case "Concat":
		var out []sizeDep
		off := 0
		for _, in := range n.Input {
			k := length(in)
			if k < 0 {
				return whole()
			}
			for _, d := range an.sizes[in] {
				if d.elem < 0 {
					for j := 0; j < k; j++ {
						out = append(out, sizeDep{off + j, d.lay})
					}
				} else {
					out = append(out, sizeDep{off + d.elem, d.lay})
				}
			}
			off += k
		}
		return out
	}
	return whole()
}
