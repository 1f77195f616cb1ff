package rewrite

import (
	"fmt"
	"sort"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Plan names, per group, the units to remove.
type Plan map[string][]int

// edits is everything Apply changes, worked out before touching the model.
type edits struct {
	removed map[int]map[int]bool
	slices  map[string][]*variant // constant -> its distinct slicings
	inPlace map[string]bool       // the first slicing is applied to the constant itself
	shape   map[[2]int]map[int]int64
	shapeOf map[[2]int]string // (node, slot) -> constant read there
	groups  map[int]int64     // Conv node -> new group count
	attrs   map[int]map[string][]int64
	frozen  map[[2]int]int64 // (node, slot) -> the constant that replaces a run-time size
	splits  map[int][]int64  // Split node -> new sizes
	changed map[string]bool  // tensors whose shape changes
}

// plan validates p and works out the edits.
func (a *Analysis) plan(p Plan) (*edits, error) {
	e := &edits{
		slices:  map[string][]*variant{},
		inPlace: map[string]bool{},
		shape:   map[[2]int]map[int]int64{},
		shapeOf: map[[2]int]string{},
		groups:  map[int]int64{},
		attrs:   map[int]map[string][]int64{},
		frozen:  map[[2]int]int64{},
		splits:  map[int][]int64{},
		changed: map[string]bool{},
	}
	var err error
	if e.removed, err = a.removedUnits(p); err != nil {
		return nil, err
	}
	if len(e.removed) == 0 {
		return e, nil
	}
	for _, step := range []func(*edits) error{a.planSlices, a.planShapes, a.planConvGroups, a.planAttrs, a.planSplits, a.planFrozen} {
		if err := step(e); err != nil {
			return nil, err
		}
	}
	for t, axes := range a.lay {
		for _, l := range axes {
			if hit, _ := a.touched(e, l); hit {
				e.changed[t] = true
			}
		}
	}
	return e, nil
}

// removedUnits checks the plan against the groups and returns, per root
// space, the units to remove.
func (a *Analysis) removedUnits(p Plan) (map[int]map[int]bool, error) {
	removed := map[int]map[int]bool{}
	names := make([]string, 0, len(p))
	for name := range p {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		units := p[name]
		if len(units) == 0 {
			continue
		}
		g := a.Group(name)
		if g == nil {
			return nil, fmt.Errorf("plan names group %q, which the model does not have", name)
		}
		if !g.Prunable() {
			return nil, fmt.Errorf("group %q is not prunable: %v", name, g.Blocked)
		}
		rm := map[int]bool{}
		for _, u := range units {
			if u < 0 || u >= g.Width {
				return nil, fmt.Errorf("group %q: unit %d out of range [0, %d)", name, u, g.Width)
			}
			if rm[u] {
				return nil, fmt.Errorf("group %q: unit %d listed twice", name, u)
			}
			rm[u] = true
		}
		if len(rm) >= g.Width {
			return nil, fmt.Errorf("group %q: removing all %d units", name, g.Width)
		}
		removed[g.root] = rm
	}
	return removed, nil
}

// touched reports whether the plan removes units of layout l.
func (a *Analysis) touched(e *edits, l Layout) (bool, error) {
	ex, err := a.sp.expand(l)
	if err != nil {
		return false, err
	}
	for _, s := range ex {
		if len(e.removed[s.S]) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// planSlices works out the positions each constant keeps. A constant read
// in several places (tied weights, constants that an exporter deduplicated)
// is sliced per use: each distinct slicing is one tensor. The constant
// itself takes the first slicing when every reader wants a slicing;
// otherwise it stays as it is for the others.
func (a *Analysis) planSlices(e *edits) error {
	perUse, err := a.keptPerUse(e)
	if err != nil {
		return err
	}
	for name, uses := range perUse {
		keys := make([][2]int, 0, len(uses))
		for u := range uses {
			keys = append(keys, u)
		}
		sortUses(keys)
		var vs []*variant
	next:
		for _, u := range keys {
			for _, v := range vs {
				if sameSlicing(v.axes, uses[u]) {
					v.users = append(v.users, u)
					continue next
				}
			}
			vs = append(vs, &variant{axes: uses[u], users: [][2]int{u}})
		}
		e.slices[name] = vs
		e.inPlace[name] = sameUses(a.constUses(name), keys)
	}
	return nil
}

// keptPerUse returns, per constant and (node, slot) use, the positions
// kept along each sliced axis.
func (a *Analysis) keptPerUse(e *edits) (map[string]map[[2]int]map[int][]int, error) {
	perUse := map[string]map[[2]int]map[int][]int{}
	for _, pu := range a.params {
		hit, err := a.touched(e, pu.lay)
		if err != nil {
			return nil, err
		}
		if !hit {
			continue
		}
		keep, err := a.sp.keep(pu.lay, e.removed)
		if err != nil {
			return nil, err
		}
		use := [2]int{pu.node, pu.slot}
		if perUse[pu.tensor] == nil {
			perUse[pu.tensor] = map[[2]int]map[int][]int{}
		}
		axes := perUse[pu.tensor][use]
		if axes == nil {
			axes = map[int][]int{}
			perUse[pu.tensor][use] = axes
		}
		if prev, ok := axes[pu.axis]; ok && !equalInts(prev, keep) {
			return nil, fmt.Errorf("constant %q would be sliced two ways along axis %d", pu.tensor, pu.axis)
		}
		axes[pu.axis] = keep
	}
	return perUse, nil
}

// sortUses orders (node, slot) pairs.
func sortUses(keys [][2]int) {
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || (keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1])
	})
}

// planShapes works out the new values of shape constants that name the
// size of a unit axis.
func (a *Analysis) planShapes(e *edits) error {
	for _, f := range a.fixes {
		hit, err := a.touched(e, f.lay)
		if err != nil {
			return err
		}
		if !hit {
			continue
		}
		n, err := a.sp.newLength(f.lay, e.removed)
		if err != nil {
			return err
		}
		el := f.elems[f.axis]
		key := [2]int{el.user, el.slot}
		if el.user < 0 {
			return fmt.Errorf("shape constant %q has no reader to rewrite", el.tensor)
		}
		if e.shape[key] == nil {
			e.shape[key] = map[int]int64{}
		}
		if v, ok := e.shape[key][el.index]; ok && v != int64(n) {
			return fmt.Errorf("shape constant %q element %d would need two values (%d and %d)", el.tensor, el.index, v, n)
		}
		e.shape[key][el.index] = int64(n)
		e.shapeOf[key] = el.tensor
	}
	return nil
}

// planConvGroups works out the new group counts of grouped convolutions.
func (a *Analysis) planConvGroups(e *edits) error {
	for _, c := range a.convs {
		hit, err := a.touched(e, c.in)
		if err != nil {
			return err
		}
		if !hit {
			continue
		}
		n, err := a.sp.newLength(c.in, e.removed)
		if err != nil {
			return err
		}
		e.groups[c.node] = int64(n / c.wIn)
	}
	return nil
}

// planAttrs works out the new values of attributes that count units.
func (a *Analysis) planAttrs(e *edits) error {
	for _, f := range a.attrs {
		vals, err := a.newLengths(e, f.lays, f.div)
		if err != nil || vals == nil {
			if err != nil {
				return err
			}
			continue
		}
		if e.attrs[f.node] == nil {
			e.attrs[f.node] = map[string][]int64{}
		}
		e.attrs[f.node][f.attr] = vals
	}
	return nil
}

// newLengths is each layout's length after e's removals divided by div,
// or nil when e touches none of them.
func (a *Analysis) newLengths(e *edits, lays []Layout, div int) ([]int64, error) {
	hit := false
	for _, l := range lays {
		h, err := a.touched(e, l)
		if err != nil {
			return nil, err
		}
		hit = hit || h
	}
	if !hit {
		return nil, nil
	}
	vals := make([]int64, len(lays))
	for k, l := range lays {
		n, err := a.sp.newLength(l, e.removed)
		if err != nil {
			return nil, err
		}
		vals[k] = int64(n / div)
	}
	return vals, nil
}

// planFrozen works out the constants that replace run-time sizes read
// from an axis whose units differ from the target axis's, once either
// loses units.
func (a *Analysis) planFrozen(e *edits) error {
	for _, f := range a.sizeFixes {
		h1, err := a.touched(e, f.lay)
		if err != nil {
			return err
		}
		h2, err := a.touched(e, f.other)
		if err != nil {
			return err
		}
		if !h1 && !h2 {
			continue
		}
		n, err := a.sp.newLength(f.lay, e.removed)
		if err != nil {
			return err
		}
		if f.lay == nil {
			n = int(f.value)
		}
		key := [2]int{f.node, f.slot}
		if v, ok := e.frozen[key]; ok && v != int64(n) {
			return fmt.Errorf("input %d of node %s would need two sizes (%d and %d)", f.slot, onnxio.NodeLabel(a.ix.Node(f.node), f.node), v, n)
		}
		e.frozen[key] = int64(n)
	}
	return nil
}

// planSplits works out the new sizes of Splits along a unit axis.
func (a *Analysis) planSplits(e *edits) error {
	for _, f := range a.splits {
		sizes, err := a.newLengths(e, f.parts, 1)
		if err != nil {
			return err
		}
		if sizes != nil {
			e.splits[f.node] = sizes
		}
	}
	return nil
}

// variant is one slicing of a constant and the (node, slot) uses that read it.
type variant struct {
	axes  map[int][]int // axis -> kept positions
	users [][2]int
}

func sameSlicing(a, b map[int][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for ax, k := range a {
		if l, ok := b[ax]; !ok || !equalInts(k, l) {
			return false
		}
	}
	return true
}

// sliced returns the dims of t after slicing.
func (v *variant) dims(t *onnxpb.TensorProto) []int64 {
	nd := append([]int64(nil), t.GetDims()...)
	for ax, keep := range v.axes {
		nd[ax] = int64(len(keep))
	}
	return nd
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}

// constUses lists the (node, slot) pairs that read constant name, looking
// through Identity nodes; a graph output is recorded as node -1.
func (a *Analysis) constUses(name string) [][2]int {
	var out [][2]int
	var walk func(t string, depth int)
	walk = func(t string, depth int) {
		if _, ok := a.ix.Outputs[t]; ok {
			out = append(out, [2]int{-1, 0})
		}
		seen := map[int]bool{}
		for _, c := range a.ix.Consumers[t] {
			if seen[c] {
				continue
			}
			seen[c] = true
			n := a.ix.Node(c)
			if n.GetOpType() == "Identity" && depth < 16 {
				walk(n.Output[0], depth+1)
				continue
			}
			for k, in := range n.Input {
				if in == t {
					out = append(out, [2]int{c, k})
				}
			}
			if indexOf(n.Input, t) < 0 {
				out = append(out, [2]int{c, -1}) // read inside a subgraph
			}
		}
	}
	walk(name, 0)
	return out
}

func sameUses(all, registered [][2]int) bool {
	reg := map[[2]int]bool{}
	for _, u := range registered {
		reg[u] = true
	}
	for _, u := range all {
		if !reg[u] {
			return false
		}
	}
	return true
}

// ParamsAfter is the parameter count (see onnxio.Model.ParamCount) of the
// model that Apply(p) would produce, computed without building it.
func (a *Analysis) ParamsAfter(p Plan) (int64, error) {
	e, err := a.plan(p)
	if err != nil {
		return 0, err
	}
	total, _ := a.Model.ParamCount()
	q := onnxio.QuantizedWeights(a.Model)
	for name, vs := range e.slices {
		_, t := a.constOf(name)
		w, ok := q[t] // weights per element of quantized codes
		if !ok && !onnxio.DataType(t.GetDataType()).IsFloat() {
			continue
		}
		if !ok {
			w = 1
		}
		for _, v := range vs {
			total += int64(float64(onnxio.NumElements(v.dims(t))) * w)
		}
		if e.inPlace[name] {
			total -= int64(float64(onnxio.NumElements(t.GetDims())) * w)
		}
	}
	return total, nil
}

// Apply removes the planned units and returns a new, smaller model that has
// passed the validator. The analysed model is not modified.
func (a *Analysis) Apply(p Plan) (*onnxio.Model, error) {
	e, err := a.plan(p)
	if err != nil {
		return nil, err
	}
	out := a.Model.Clone()
	if len(e.removed) == 0 {
		return out, nil
	}
	w := newApplier(a, e, out)
	for _, step := range []func() error{w.sliceConstants, w.rewriteShapes, w.setGroups, w.rewriteSplits, w.rewriteIO, w.freezeSizes} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	w.dropStaleValueInfo()
	out.Path, out.Size, out.Hash = "", 0, ""
	if err := onnxio.Validate(out); err != nil {
		return nil, fmt.Errorf("the pruned model failed validation (a bug in onnx-cria): %w", err)
	}
	return out, nil
}

// applier writes the edits into out, a copy of the analysed model.
type applier struct {
	*Analysis
	e     *edits
	out   *onnxio.Model
	g     *onnxpb.GraphProto
	cix   *onnxio.Index // of the copy (Analysis.ix indexes the original)
	taken map[string]bool
}

func newApplier(a *Analysis, e *edits, out *onnxio.Model) *applier {
	g := out.Graph()
	w := &applier{Analysis: a, e: e, out: out, g: g, cix: onnxio.NewIndex(g), taken: map[string]bool{}}
	for _, t := range g.GetInitializer() {
		w.taken[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.Output {
			w.taken[o] = true
		}
	}
	return w
}

// fresh returns an unused name for a new initializer derived from base.
func (w *applier) fresh(base string) string {
	name := base + "_pruned"
	for k := 2; w.taken[name]; k++ {
		name = fmt.Sprintf("%s_pruned%d", base, k)
	}
	w.taken[name] = true
	return name
}

// sliceConstants slices every planned constant, in place or into private
// copies for shared ones.
func (w *applier) sliceConstants() error {
	names := make([]string, 0, len(w.e.slices))
	for name := range w.e.slices {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := w.sliceConstant(name); err != nil {
			return err
		}
	}
	return nil
}

func (w *applier) sliceConstant(name string) error {
	src := w.cix.Const(name)
	if src == nil {
		return fmt.Errorf("constant %q not found in the copy", name)
	}
	orig, err := w.Model.RawData(src)
	if err != nil {
		return err
	}
	size := onnxio.DataType(src.GetDataType()).Size()
	type sliced struct {
		dims []int64
		raw  []byte
	}
	var done []sliced
	for _, v := range w.e.slices[name] {
		raw := orig
		dims := append([]int64(nil), src.GetDims()...)
		axes := make([]int, 0, len(v.axes))
		for ax := range v.axes {
			axes = append(axes, ax)
		}
		sort.Ints(axes)
		for _, ax := range axes {
			raw = gatherAxis(raw, dims, size, ax, v.axes[ax])
			dims[ax] = int64(len(v.axes[ax]))
		}
		done = append(done, sliced{dims, raw})
	}
	inPlace := w.e.inPlace[name]
	for k, v := range w.e.slices[name] {
		if k == 0 && inPlace {
			continue // written last: the copies read the original
		}
		nn := w.fresh(name)
		t, err := onnxio.NewTensor(nn, onnxio.DataType(src.GetDataType()), done[k].dims, done[k].raw)
		if err != nil {
			return err
		}
		// With a scratch directory, each slice goes to disk as it is made
		// (see onnxio.NewScratch): the edits of a multi-GiB model are
		// never all in memory at once.
		if err := w.out.Offload(t); err != nil {
			return err
		}
		w.g.Initializer = append(w.g.Initializer, t)
		for _, u := range v.users {
			w.g.Node[u[0]].Input[u[1]] = nn
		}
	}
	if inPlace {
		if err := onnxio.SetRawData(src, done[0].dims, done[0].raw); err != nil {
			return err
		}
		return w.out.Offload(src)
	}
	return nil
}

// rewriteShapes writes the new sizes into the shape constants read by
// Reshape and Expand (through Concat and the like).
func (w *applier) rewriteShapes() error {
	keys := make([][2]int, 0, len(w.e.shape))
	for k := range w.e.shape {
		keys = append(keys, k)
	}
	sortUses(keys)
	for _, key := range keys {
		name := w.e.shapeOf[key]
		src := w.cix.Const(name)
		if src == nil {
			return fmt.Errorf("shape constant %q not found", name)
		}
		vals, err := w.out.Int64s(src)
		if err != nil {
			return err
		}
		for idx, v := range w.e.shape[key] {
			vals[idx] = v
		}
		raw, err := onnxio.EncodeInt64s(onnxio.DataType(src.GetDataType()), vals)
		if err != nil {
			return err
		}
		if uses := w.constUses(name); len(uses) == 1 && uses[0] == key {
			if err := onnxio.SetRawData(src, src.GetDims(), raw); err != nil {
				return err
			}
			continue
		}
		nn := w.fresh(name)
		t, err := onnxio.NewTensor(nn, onnxio.DataType(src.GetDataType()), src.GetDims(), raw)
		if err != nil {
			return err
		}
		w.g.Initializer = append(w.g.Initializer, t)
		w.g.Node[key[0]].Input[key[1]] = nn
	}
	return nil
}

func (w *applier) setGroups() error {
	for node, groups := range w.e.groups {
		onnxio.SetAttrInt(w.g.Node[node], "group", groups)
	}
	for _, f := range w.attrs {
		vals, ok := w.e.attrs[f.node][f.attr]
		switch {
		case !ok:
		case f.ints:
			onnxio.SetAttrInts(w.g.Node[f.node], f.attr, vals)
		default:
			onnxio.SetAttrInt(w.g.Node[f.node], f.attr, vals[0])
		}
	}
	return nil
}

// rewriteSplits writes the new Split sizes: the attribute before opset 13,
// the input from then on.
func (w *applier) rewriteSplits() error {
	splitNodes := make([]int, 0, len(w.e.splits))
	for node := range w.e.splits {
		splitNodes = append(splitNodes, node)
	}
	sort.Ints(splitNodes)
	for _, node := range splitNodes {
		n, sizes := w.g.Node[node], w.e.splits[node]
		if w.Model.Opset("") < 13 {
			onnxio.SetAttrInts(n, "split", sizes)
			continue
		}
		raw, err := onnxio.EncodeInt64s(onnxio.Int64, sizes)
		if err != nil {
			return err
		}
		if len(n.Input) > 1 && n.Input[1] != "" {
			name := n.Input[1]
			src := w.cix.Const(name)
			if src == nil {
				return fmt.Errorf("split sizes %q of node %s are not a constant", name, n.GetName())
			}
			if uses := w.constUses(name); len(uses) == 1 && uses[0] == [2]int{node, 1} && w.cix.Init[name] != nil {
				if err := onnxio.SetRawData(src, src.GetDims(), raw); err != nil {
					return err
				}
				continue
			}
		}
		nn := w.fresh(n.Output[0] + "_split")
		t, err := onnxio.NewTensor(nn, onnxio.Int64, []int64{int64(len(sizes))}, raw)
		if err != nil {
			return err
		}
		w.g.Initializer = append(w.g.Initializer, t)
		for len(n.Input) < 2 {
			n.Input = append(n.Input, "")
		}
		n.Input[1] = nn
		removeAttr(n, "num_outputs") // exclusive with explicit sizes
	}
	return nil
}

// IOKeep lists, for each graph input that plan p shrinks (a KV cache,
// with Options.PruneCache), the axis and the positions along it that stay:
// data for the input must be sliced so to feed the pruned model.
func (a *Analysis) IOKeep(p Plan) (map[string]AxisKeep, error) {
	e, err := a.plan(p)
	if err != nil {
		return nil, err
	}
	out := map[string]AxisKeep{}
	for _, c := range a.io {
		hit, err := a.touched(e, c.lay)
		if err != nil {
			return nil, err
		}
		if c.output || !hit {
			continue
		}
		keep, err := a.sp.keep(c.lay, e.removed)
		if err != nil {
			return nil, err
		}
		out[c.name] = AxisKeep{Axis: c.axis, Keep: keep}
	}
	return out, nil
}

// AxisKeep is the positions that stay along one axis.
type AxisKeep struct {
	Axis int
	Keep []int
}

// freezeSizes points each frozen input at a new 1-element int64 constant.
func (w *applier) freezeSizes() error {
	keys := make([][2]int, 0, len(w.e.frozen))
	for k := range w.e.frozen {
		keys = append(keys, k)
	}
	sortUses(keys)
	for _, k := range keys {
		n := w.g.Node[k[0]]
		name := w.fresh(n.Input[k[1]] + "_size")
		w.g.Initializer = append(w.g.Initializer, onnxio.NewInt64Tensor(name, []int64{1}, []int64{w.e.frozen[k]}))
		n.Input[k[1]] = name
	}
	return nil
}

// rewriteIO writes the new sizes of the graph inputs' and outputs' axes
// that carry units (KV caches, with Options.PruneCache); symbolic sizes
// stay.
func (w *applier) rewriteIO() error {
	for _, c := range w.io {
		hit, err := w.touched(w.e, c.lay)
		if err != nil || !hit {
			continue
		}
		n, err := w.sp.newLength(c.lay, w.e.removed)
		if err != nil {
			return err
		}
		vs := w.g.Input
		if c.output {
			vs = w.g.Output
		}
		for k, v := range vs {
			dt, shape, ok := onnxio.TensorType(v)
			if v.GetName() != c.name || !ok || c.axis >= len(shape) || !shape[c.axis].Known {
				continue
			}
			shape[c.axis] = onnxio.Dim{Value: int64(n), Known: true}
			nv := onnxio.NewValueInfo(c.name, dt, shape)
			nv.DocString = v.DocString
			vs[k] = nv
		}
	}
	return nil
}

// dropStaleValueInfo removes the value_info of every tensor whose shape
// changed.
func (w *applier) dropStaleValueInfo() {
	for name := range w.e.slices {
		if w.e.inPlace[name] {
			w.e.changed[name] = true
		}
	}
	var vi []*onnxpb.ValueInfoProto
	for _, v := range w.g.GetValueInfo() {
		if !w.e.changed[v.GetName()] && !w.identityOfChanged(v.GetName(), w.e) {
			vi = append(vi, v)
		}
	}
	w.g.ValueInfo = vi
}

func removeAttr(n *onnxpb.NodeProto, name string) {
	var keep []*onnxpb.AttributeProto
	for _, at := range n.Attribute {
		if at.GetName() != name {
			keep = append(keep, at)
		}
	}
	n.Attribute = keep
}

// identityOfChanged reports whether t is an Identity output of a sliced
// constant.
func (a *Analysis) identityOfChanged(t string, e *edits) bool {
	for k := 0; k < 16; k++ {
		p := a.ix.ProducerNode(t)
		if p == nil || p.GetOpType() != "Identity" {
			return false
		}
		t = p.Input[0]
		if e.inPlace[t] {
			return true
		}
	}
	return false
}

// gatherAxis keeps the given positions of one axis of a row-major tensor.
func gatherAxis(raw []byte, dims []int64, elem, axis int, keep []int) []byte {
	outer := 1
	for _, d := range dims[:axis] {
		outer *= int(d)
	}
	inner := elem
	for _, d := range dims[axis+1:] {
		inner *= int(d)
	}
	n := int(dims[axis])
	out := make([]byte, 0, outer*len(keep)*inner)
	for o := 0; o < outer; o++ {
		base := o * n * inner
		for _, k := range keep {
			out = append(out, raw[base+k*inner:base+(k+1)*inner]...)
		}
	}
	return out
}

// FLOPsAfter is onnxio.FLOPs of the model that Apply(p) would write,
// computed from the analysis: every axis that carries units loses the
// positions of the removed ones, and sliced constants take their slicing's
// shape where each node reads them.
func (a *Analysis) FLOPsAfter(p Plan) (int64, error) {
	e, err := a.plan(p)
	if err != nil {
		return 0, err
	}
	sliced := map[[2]int][]int64{} // (node, slot) -> the constant's shape there
	for name, vs := range e.slices {
		_, t := a.constOf(name)
		for _, v := range vs {
			for _, u := range v.users {
				sliced[u] = v.dims(t)
			}
		}
	}
	var ferr error
	shape := func(t string) []int64 {
		d, ok := a.dims(t)
		if !ok {
			return nil
		}
		if len(e.removed) == 0 || len(a.lay[t]) == 0 {
			return d
		}
		d = append([]int64(nil), d...)
		for ax, l := range a.lay[t] {
			if ax >= len(d) {
				continue
			}
			gone, err := a.removedPositions(e, l)
			if err != nil {
				ferr = err
			}
			d[ax] -= int64(gone)
		}
		return d
	}
	var total int64
	for i, n := range a.Model.Graph().GetNode() {
		in := func(k int) []int64 {
			if d, ok := sliced[[2]int{i, k}]; ok {
				return d
			}
			return shape(n.Input[k])
		}
		total += onnxio.NodeFLOPs(n, in, shape(n.Output[0]))
	}
	return total, ferr
}

// removedPositions counts the positions of layout l that the edits remove.
func (a *Analysis) removedPositions(e *edits, l Layout) (int, error) {
	ex, err := a.sp.expand(l)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range ex {
		n += len(e.removed[s.S]) * s.R * s.B
	}
	return n, nil
}
