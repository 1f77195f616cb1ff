package rewrite

import (
	"fmt"
	"sort"
	"strings"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Options tune the analysis.
type Options struct {
	// NoNormThrough makes a LayerNorm or RMSNorm over the unit axis a barrier
	// instead of a pass-through with a warning.
	NoNormThrough bool
	// PruneCache lets attention heads and KV groups that read a KV cache
	// from graph inputs (past keys and values) and write it to graph
	// outputs (present ones) be pruned: those inputs and outputs then lose
	// the units too, so the model's I/O signature changes. Without it such
	// heads are barriers and the signature never changes.
	PruneCache bool
}

// Analysis is the result of dependency analysis: the prunable groups of a
// model and what blocked the rest. It belongs to one model; after Apply,
// analyse the new model again.
type Analysis struct {
	Model    *onnxio.Model
	Groups   []*Group   // prunable and blocked groups, in graph order
	Skipped  []OpReport // ops without a rule that carried units
	Warnings []string

	sp        spaces
	lay       map[string]map[int]Layout
	params    []paramUse
	fixes     []shapeFix
	convs     []convFix
	attrs     []attrFix
	splits    []splitFix
	checks    []layoutCheck
	sizeFixes []sizeFix
	io        []ioAxis // graph inputs and outputs that carry units (PruneCache)
	shapes    *onnxio.Shapes
	ix        *onnxio.Index
	rootOf    map[int]*Group
	pending   map[int][]string // space -> block reasons added after finalize
	finished  bool
	// shapeElems traces the elements of a 1-D integer shape tensor to
	// where they come from (the analyzer's provenance), for the sample
	// rules that run after the analysis.
	shapeElems func(t string) []elem
}

// OpReport names an op without a rule and the nodes where it stopped units.
type OpReport struct {
	Domain, Op string
	Nodes      []string
}

// Group is a set of units that are removed together, with everything a
// pruning criterion and the rewriter need to know about it.
type Group struct {
	ID            int
	Name          string
	Kind          string // neurons, channels, heads, kv-groups, hidden, embedding, conv-groups, mixed
	Width         int
	Sources       []string // nodes whose outputs create the units
	Params        []ParamRef
	ParamsPerUnit int64
	Observe       *Observation // nil: nowhere to observe the states
	Unobserved    string       // why a group with one has no Observe ("" otherwise)
	Warnings      []string
	Blocked       []string // non-empty: not prunable, with the reasons
	Tensors       []TensorAxis
	// Conv reports units that are the channels of a Conv or ConvTranspose
	// input or output somewhere (a residual stream that Linear layers also
	// read is "mixed", and still Conv channels).
	Conv bool
	root int
}

// Prunable reports whether the group may lose units.
func (g *Group) Prunable() bool { return len(g.Blocked) == 0 && g.Width > 1 }

// ParamRef is a constant tensor axis that loses positions with the group.
type ParamRef struct {
	Tensor  string
	Axis    int
	Role    string   // "in": computes the units; "out": reads them; "affine": bias or normalisation
	PerUnit int64    // 0 when another ParamRef of the group already counts this tensor axis (tied weights)
	Segs    []SegRef // where the units sit along Axis
}

// SegRef places a group's units along an axis: unit u owns positions
// Off + r*Width*B + u*B + j for r < R, j < B, where Width is the group's.
type SegRef struct {
	Off, R, B int
}

// Positions lists the positions along the axis that unit u owns.
func Positions(segs []SegRef, width, u int) []int {
	var out []int
	for _, s := range segs {
		for r := 0; r < s.R; r++ {
			for j := 0; j < s.B; j++ {
				out = append(out, s.Off+r*width*s.B+u*s.B+j)
			}
		}
	}
	return out
}

// UnitRuns calls fn(u, lo, hi) for every run [lo, hi) of a parameter
// tensor's row-major elements (of the given dims) that belongs to unit u of
// a group of width units laid out along p.Axis.
func UnitRuns(dims []int64, p ParamRef, width int, fn func(u, lo, hi int)) {
	outer, inner := 1, 1
	for _, d := range dims[:p.Axis] {
		outer *= int(d)
	}
	for _, d := range dims[p.Axis+1:] {
		inner *= int(d)
	}
	n := int(dims[p.Axis])
	for u := 0; u < width; u++ {
		for _, pos := range Positions(p.Segs, width, u) {
			for o := 0; o < outer; o++ {
				fn(u, (o*n+pos)*inner, (o*n+pos+1)*inner)
			}
		}
	}
}

// TensorAxis is an axis of a graph tensor that carries the group's units.
type TensorAxis struct {
	Tensor string
	Axis   int
	R, B   int // the group's units appear as R repeats of blocks of B (see Seg)
	Multi  bool
}

// Observation tells capture where the group's hidden states are: Pre is the
// input of the group's nonlinearity (Z), Post its output (A).
type Observation struct {
	Pre, Post string
	PreAxis   int
	PostAxis  int
	PreR      int // layout of the unit axis in Pre: R repeats of blocks of B
	PreB      int
	PostR     int
	PostB     int
	RMS       bool   // reduce non-unit feature axes by root mean square (heads)
	Op        string // the nonlinearity
	// PreProject, when set, says that Z is Pre times columns of a constant
	// weight, plus a bias: the values of a fused attention op's heads,
	// which no tensor of the graph holds. PreAxis is then the product's
	// last axis.
	PreProject *Projection
	// Linear says the units meet no nonlinearity and no normalisation
	// (a bottleneck or residual stream of Convs): Pre and Post are then
	// the same tensor, the one the first layer that reads the units takes
	// in, and the hidden states are its values (no distortion to measure).
	Linear bool
	// PreSamples and PostSamples, when set, say where Pre and Post hold
	// the samples (nil: on axis 0). Where the samples share the unit axis
	// (heads folded into the batch), the units fill the sample axis's
	// Inner positions, and PreR/PreB (PostR/PostB) lay them out there.
	PreSamples, PostSamples *SampleAxis
}

// Projection names columns [Lo, Hi) of a constant weight [Din, Dout] and of
// a constant bias [Dout] ("" for none).
type Projection struct {
	Weight, Bias string
	Lo, Hi       int
}

type paramUse struct {
	tensor string // constant tensor name (initializer or Constant output)
	axis   int
	lay    Layout
	node   int
	slot   int
	role   string
}

// Roles of parameters: weights that compute the units (a layer's rows),
// weights that read them (the next layer's columns), and per-unit affine
// constants (biases, normalisation parameters).
const (
	roleIn     = "in"
	roleOut    = "out"
	roleAffine = "affine"
)

// shapeFix is a Reshape or Expand whose target shape names a unit axis size.
type shapeFix struct {
	node  int
	axis  int // output axis
	lay   Layout
	elems []elem // provenance of the shape input
}

type convFix struct {
	node  int
	in    Layout // input channel layout; group = its new length / W.dims[1]
	wIn   int
	group bool
}

// attrFix is an integer attribute that counts units (num_heads of fused
// attention ops): element k becomes the new length of lays[k] over div.
type attrFix struct {
	node int
	attr string
	lays []Layout
	div  int
	ints bool // a list attribute (qkv_hidden_sizes), else a single int
}

// splitFix is a Split whose split axis carries units: its sizes change.
type splitFix struct {
	node  int
	parts []Layout // layout of the split axis in each output
}

// ioAxis is an axis of a graph input or output (a KV cache) that carries
// units: its declared size changes with them.
type ioAxis struct {
	name   string
	output bool
	axis   int
	lay    Layout
}

type layoutCheck struct {
	a, b   Layout
	reason string
	// fix, when set, resolves a mismatch instead of blocking: the run-time
	// size that should have been b's is replaced by a constant.
	fix *sizeFix
}

// sizeFix is an input of a shape-building node (a Concat of 1-element
// sizes) that holds the run-time size of another axis where the target
// axis has the units of lay: Apply replaces it with a constant, the new
// length of lay (gpt2's merge-heads reshape(b, t, d) takes d from the
// residual stream; after head pruning the merged axis is narrower).
type sizeFix struct {
	node, slot int
	lay, other Layout // the target axis's units; those of the size read
	// value replaces the size when lay is nil: the target axis carries no
	// units, so its size never changes (the head size of a per-head view
	// computed as the hidden width over the head count).
	value int64
}

// Analyze finds the prunable groups of m. m is not modified.
func Analyze(m *onnxio.Model, opts Options) (*Analysis, error) {
	g := m.Graph()
	if g == nil {
		return nil, fmt.Errorf("%s: no graph", m.Name())
	}
	if err := onnxio.Validate(m); err != nil {
		return nil, fmt.Errorf("the input model is not valid: %w", err)
	}
	a := &Analysis{
		Model:  m,
		lay:    map[string]map[int]Layout{},
		shapes: onnxio.InferShapes(m, true),
		ix:     onnxio.NewIndex(g),
	}
	an := &analyzer{Analysis: a, opts: opts, opset: m.Opset(""), skipped: map[[2]string][]string{}, sizes: map[string][]sizeDep{}, slicedBounds: map[int][]sizeFix{}}
	for i, n := range g.GetNode() {
		an.node(n, i)
		an.sizeUses(n, i)
	}
	an.checkFolds()
	an.coupleShared()
	cache := an.cacheRoots()
	for _, o := range g.GetOutput() {
		for ax, l := range an.lay[o.GetName()] {
			if an.ofCache(l, cache) {
				an.io = append(an.io, ioAxis{name: o.GetName(), output: true, axis: ax, lay: l})
				continue
			}
			an.block(l, fmt.Sprintf("reaches graph output %q", o.GetName()))
		}
		for _, d := range an.sizes[o.GetName()] {
			an.block(d.lay, fmt.Sprintf("the size of a unit axis reaches graph output %q", o.GetName()))
		}
	}
	a.finish(an)
	return a, nil
}

type analyzer struct {
	*Analysis
	opts    Options
	opset   int64
	skipped map[[2]string][]string
	cur     string               // label of the node being analysed
	sizes   map[string][]sizeDep // small integer tensors holding run-time sizes of unit axes
	// slicedBounds holds the Slice nodes whose bounds along a unit axis
	// Apply rewrites as constants, with those rewrites: run-time sizes they
	// read are then not used.
	slicedBounds map[int][]sizeFix
	folds        []foldUse // Reshapes that fold heads into the batch axis
}

func (an *analyzer) node(n *onnxpb.NodeProto, i int) {
	an.cur = onnxio.NodeLabel(n, i)
	r, ok := rules.Lookup(n.GetDomain(), n.GetOpType(), an.Model.Opset(n.GetDomain()))
	if !ok && an.carriesUnits(n) {
		key := [2]string{n.GetDomain(), n.GetOpType()}
		an.skipped[key] = append(an.skipped[key], an.cur)
		an.blockInputs(n, fmt.Sprintf("op %s has no rule (node %s)", opName(n), an.cur))
	}
	// Tensors that If, Loop and Scan bodies read from this scope are inputs
	// too, though not listed as such.
	for _, t := range onnxio.SubgraphReads(n) {
		an.blockTensor(t, fmt.Sprintf("read inside a subgraph of %s (node %s)", n.GetOpType(), an.cur))
	}
	if ok {
		r(an, n, i)
	}
}

func opName(n *onnxpb.NodeProto) string {
	if d := n.GetDomain(); d != "" && d != "ai.onnx" {
		return d + "::" + n.GetOpType()
	}
	return n.GetOpType()
}

func (an *analyzer) carriesUnits(n *onnxpb.NodeProto) bool {
	for _, in := range n.GetInput() {
		if len(an.lay[in]) > 0 {
			return true
		}
	}
	for _, t := range onnxio.SubgraphReads(n) {
		if len(an.lay[t]) > 0 {
			return true
		}
	}
	return false
}

// dims returns the inferred shape of t (nil, false if unknown). An axis
// that carries units has the length of its layout even where inference
// could not size it (heads reshaped with a -1 next to a run-time size).
func (a *Analysis) dims(t string) ([]int64, bool) {
	d, ok := a.shapes.Shape(t)
	if !ok || len(a.lay[t]) == 0 {
		return d, ok
	}
	var out []int64
	for ax, l := range a.lay[t] {
		if ax < len(d) && d[ax] < 0 {
			if out == nil {
				out = append([]int64(nil), d...)
			}
			out[ax] = int64(a.sp.length(l))
		}
	}
	if out == nil {
		return d, ok
	}
	return out, true
}

func (a *Analysis) setLayout(t string, axis int, l Layout) {
	if l == nil {
		return
	}
	m := a.lay[t]
	if m == nil {
		m = map[int]Layout{}
		a.lay[t] = m
	}
	m[axis] = l
}

// block marks every space in l as not prunable.
func (a *Analysis) block(l Layout, reason string) {
	for _, g := range l {
		s := &a.sp.s[a.sp.find(g.S)]
		if !contains(s.blocked, reason) {
			s.blocked = append(s.blocked, reason)
		}
	}
}

func (a *Analysis) warn(l Layout, msg string) {
	for _, g := range l {
		s := &a.sp.s[a.sp.find(g.S)]
		if !contains(s.warn, msg) {
			s.warn = append(s.warn, msg)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (a *Analysis) blockTensor(t, reason string) {
	for _, l := range a.lay[t] {
		a.block(l, reason)
	}
}

func (an *analyzer) blockInputs(n *onnxpb.NodeProto, reason string) {
	for _, in := range n.GetInput() {
		an.blockTensor(in, reason)
	}
}

// constOf resolves name to a constant tensor, looking through Identity
// nodes (exporters put them between initializers and BatchNormalization).
func (a *Analysis) constOf(name string) (string, *onnxpb.TensorProto) {
	for k := 0; k < 16 && name != ""; k++ {
		if t := a.ix.Const(name); t != nil {
			return name, t
		}
		p := a.ix.ProducerNode(name)
		if p == nil || p.GetOpType() != "Identity" || len(p.Input) == 0 {
			return "", nil
		}
		name = p.Input[0]
	}
	return "", nil
}

// param registers that constant input slot of node i loses positions along
// axis as the units of l are removed.
func (an *analyzer) param(i, slot, axis int, l Layout, role string) {
	n := an.ix.Node(i)
	name, t := an.constOf(n.Input[slot])
	if t == nil {
		if d, ok := an.dequantized(n.Input[slot]); ok {
			an.paramDQ(d, axis, l, role)
			return
		}
		an.block(l, fmt.Sprintf("input %q of node %s is not a constant", n.Input[slot], an.cur))
		return
	}
	if axis < 0 || axis >= len(t.GetDims()) {
		an.block(l, fmt.Sprintf("constant %q has no axis %d", name, axis))
		return
	}
	if int(t.GetDims()[axis]) != an.sp.length(l) {
		an.block(l, fmt.Sprintf("constant %q axis %d has %d positions, the units need %d", name, axis, t.GetDims()[axis], an.sp.length(l)))
		return
	}
	if dt := onnxio.DataType(t.GetDataType()); dt.Size() == 0 {
		an.block(l, fmt.Sprintf("constant %q has element type %s, which cannot be sliced", name, dt))
		return
	}
	an.params = append(an.params, paramUse{tensor: name, axis: axis, lay: l, node: i, slot: slot, role: role})
}

// cacheInput gives graph input t (looked up through Identity and Cast)
// the layout l on axis ax when the analysis prunes KV caches, and reports
// whether it did.
func (an *analyzer) cacheInput(t string, ax int, l Layout) bool {
	if !an.opts.PruneCache {
		return false
	}
	for k := 0; k < 4; k++ {
		if p := an.ix.ProducerNode(t); p != nil && (p.GetOpType() == "Identity" || p.GetOpType() == "Cast") {
			an.setLayout(t, ax, l)
			t = p.Input[0]
			continue
		}
		break
	}
	if !an.isGraphInput(t) {
		return false
	}
	an.setLayout(t, ax, l)
	an.io = append(an.io, ioAxis{name: t, axis: ax, lay: l})
	return true
}

func (an *analyzer) isGraphInput(t string) bool {
	if an.ix.Init[t] != nil {
		return false
	}
	for _, v := range an.Model.Graph().GetInput() {
		if v.GetName() == t {
			return true
		}
	}
	return false
}

// cacheRoots are the root spaces that KV cache inputs carry.
func (an *analyzer) cacheRoots() map[int]bool {
	out := map[int]bool{}
	for _, c := range an.io {
		if e, err := an.sp.expand(c.lay); err == nil {
			for _, g := range e {
				out[g.S] = true
			}
		}
	}
	return out
}

// ofCache reports whether every unit of l is carried by a KV cache input:
// a graph output that carries only those is the present cache.
func (an *analyzer) ofCache(l Layout, cache map[int]bool) bool {
	e, err := an.sp.expand(l)
	if err != nil || len(cache) == 0 {
		return false
	}
	for _, g := range e {
		if !cache[g.S] {
			return false
		}
	}
	return true
}

// coupleShared couples the groups that slice one weight matrix along one
// axis: exporters deduplicate equal initializers (torch shares the weights
// of layers deep-copied before training), and slicing such a tensor
// differently for each user would split it into copies, so that pruning
// adds parameters. Coupled, the users lose the same units and the tensor
// stays one. Biases and normalisation parameters (1-D, often equal only
// because they were initialised alike) are still sliced per use.
func (an *analyzer) coupleShared() {
	first := map[string]paramUse{}
	for _, p := range an.params {
		_, t := an.constOf(p.tensor)
		if p.role == roleAffine || t == nil || len(t.GetDims()) < 2 {
			continue
		}
		k := fmt.Sprintf("%s/%d", p.tensor, p.axis)
		q, ok := first[k]
		if !ok {
			first[k] = p
			continue
		}
		if an.sp.length(q.lay) == an.sp.length(p.lay) && !an.sp.equal(q.lay, p.lay) {
			an.cur = onnxio.NodeLabel(an.ix.Node(p.node), p.node)
			an.unify(q.lay, p.lay, fmt.Sprintf("users of the shared weight %q", p.tensor))
		}
	}
}

// unify couples two layouts of one axis, blocking both on failure.
func (an *analyzer) unify(x, y Layout, what string) Layout {
	if err := an.sp.unify(x, y); err != nil {
		r := fmt.Sprintf("%s at node %s cannot be matched: %v", what, an.cur, err)
		an.block(x, r)
		an.block(y, r)
	}
	return x
}

// fresh creates a new space for n units created by node i.
func (an *analyzer) fresh(n int, kind string) Layout {
	return Layout{{an.sp.add(n, kind, an.cur), 1, 1}}
}

// finish resolves the spaces into groups.
func (a *Analysis) finish(an *analyzer) {
	for _, c := range a.checks {
		switch {
		case a.sp.equal(c.a, c.b):
		case c.fix != nil:
			a.sizeFixes = append(a.sizeFixes, *c.fix)
		default:
			a.block(c.a, c.reason)
			a.block(c.b, c.reason)
		}
	}
	a.makeGroups(a.resolveRoots())
	a.groupTensors()
	a.groupParams()
	a.markConvChannels()
	for _, g := range a.rootOf {
		if len(g.Params) == 0 && len(g.Blocked) == 0 {
			g.Blocked = append(g.Blocked, "no weights depend on these units")
		}
	}
	a.shapeElems = func(t string) []elem { return an.prov(t, 0) }
	a.observe()
	a.shapeElems = nil // the analyzer is done; do not keep it alive
	a.orderGroups()
	for key, nodes := range an.skipped {
		a.Skipped = append(a.Skipped, OpReport{Domain: key[0], Op: key[1], Nodes: nodes})
	}
	sort.Slice(a.Skipped, func(i, j int) bool { return a.Skipped[i].Op < a.Skipped[j].Op })
	a.finished = true
}

// resolveRoots passes everything a space was told (blocks, warnings) to
// the roots it expands into, and returns the roots.
func (a *Analysis) resolveRoots() map[int]bool {
	roots := map[int]bool{}
	for id := range a.sp.s {
		e, err := a.sp.expand(Layout{{id, 1, 1}})
		if err != nil {
			s := a.sp.s[a.sp.find(id)]
			s.blocked = append(s.blocked, err.Error())
			continue
		}
		src := a.sp.s[id]
		for _, g := range e {
			roots[g.S] = true
			r := &a.sp.s[g.S]
			for _, b := range src.blocked {
				if !contains(r.blocked, b) {
					r.blocked = append(r.blocked, b)
				}
			}
			for _, w := range src.warn {
				if !contains(r.warn, w) {
					r.warn = append(r.warn, w)
				}
			}
			// Query heads defined as blocks of a KV head: grouped-query attention.
			if id != g.S && src.kind == "heads" && r.kind == "heads" && g.B > 1 && len(e) == 1 {
				r.kind = "kv-groups"
			}
		}
	}
	return roots
}

// makeGroups makes a group of every root space.
func (a *Analysis) makeGroups(roots map[int]bool) {
	a.rootOf = map[int]*Group{}
	var ids []int
	for r := range roots {
		ids = append(ids, r)
	}
	sort.Ints(ids)
	for _, r := range ids {
		s := a.sp.s[r]
		g := &Group{Name: s.origin, Kind: s.kind, Width: s.size, Blocked: s.blocked, Warnings: s.warn, root: r}
		switch {
		case g.Width < 1:
			// No rule should make one; if one does, the group is named and
			// left alone rather than handed to the loop.
			g.Blocked = append(g.Blocked, fmt.Sprintf("its width is not known statically (%d)", g.Width))
		case g.Width == 1 && len(g.Blocked) == 0:
			g.Blocked = []string{"a single unit"}
		}
		a.rootOf[r] = g
	}
}

// groupTensors lists the tensor axes of every group, with the group's place
// in each.
func (a *Analysis) groupTensors() {
	tnames := make([]string, 0, len(a.lay))
	for t := range a.lay {
		tnames = append(tnames, t)
	}
	sort.Strings(tnames)
	for _, t := range tnames {
		axes := a.lay[t]
		keys := make([]int, 0, len(axes))
		for k := range axes {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		for _, k := range keys {
			e, err := a.sp.expand(axes[k])
			if err != nil {
				continue
			}
			for _, sg := range e {
				if g := a.rootOf[sg.S]; g != nil {
					g.Tensors = append(g.Tensors, TensorAxis{Tensor: t, Axis: k, R: sg.R, B: sg.B, Multi: len(e) > 1})
				}
			}
		}
	}
}

// markConvChannels sets Conv on the groups whose units are channels of a
// Conv or ConvTranspose input or output.
func (a *Analysis) markConvChannels() {
	for _, n := range a.Model.Graph().GetNode() {
		if op := n.GetOpType(); (op != "Conv" && op != "ConvTranspose") || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") || len(n.Input) == 0 || len(n.Output) == 0 {
			continue
		}
		for _, t := range []string{n.Input[0], n.Output[0]} {
			e, err := a.sp.expand(a.lay[t][1])
			if err != nil {
				continue
			}
			for _, sg := range e {
				if g := a.rootOf[sg.S]; g != nil {
					g.Conv = true
				}
			}
		}
	}
}

// groupParams lists the parameters of every group and counts them per
// unit.
func (a *Analysis) groupParams() {
	seen := map[string]bool{}
	for _, p := range a.params {
		e, err := a.sp.expand(p.lay)
		if err != nil {
			continue
		}
		_, t := a.constOf(p.tensor)
		numel := onnxio.NumElements(t.GetDims())
		per := numel / t.GetDims()[p.axis]
		segs := map[int][]SegRef{}
		off := 0
		for _, sg := range e {
			segs[sg.S] = append(segs[sg.S], SegRef{Off: off, R: sg.R, B: sg.B})
			off += a.sp.s[sg.S].size * sg.R * sg.B
		}
		for _, sg := range e {
			g := a.rootOf[sg.S]
			key := fmt.Sprintf("%d/%s/%d", sg.S, p.tensor, p.axis)
			if g == nil || seen[key+"/"+p.role] {
				continue
			}
			seen[key+"/"+p.role] = true
			var pu int64
			for _, s := range segs[sg.S] {
				pu += per * int64(s.R*s.B)
			}
			if seen[key] {
				// A tied weight that both computes and reads the units: list
				// the second role too, counted once.
				pu = 0
			}
			seen[key] = true
			g.Params = append(g.Params, ParamRef{Tensor: p.tensor, Axis: p.axis, Role: p.role, PerUnit: pu, Segs: segs[sg.S]})
			g.ParamsPerUnit += pu
		}
	}
}

// orderGroups orders the groups by the graph position of their first
// tensor, for reports, and names them.
func (a *Analysis) orderGroups() {
	first := map[*Group]int{}
	pos := map[string]int{}
	for i, n := range a.Model.Graph().GetNode() {
		for _, o := range n.Output {
			pos[o] = i
		}
	}
	var groups []*Group
	for _, g := range a.rootOf {
		first[g] = 1 << 30
		for _, ta := range g.Tensors {
			if p, ok := pos[ta.Tensor]; ok && p < first[g] {
				first[g] = p
			}
		}
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool {
		if first[groups[i]] != first[groups[j]] {
			return first[groups[i]] < first[groups[j]]
		}
		return groups[i].root < groups[j].root
	})
	names := map[string]int{}
	for i, g := range groups {
		g.ID = i
		g.Name = groupName(g)
		names[g.Name]++
	}
	dup := map[string]int{}
	for _, g := range groups {
		if names[g.Name] > 1 {
			dup[g.Name]++
			g.Name = fmt.Sprintf("%s#%d", g.Name, dup[g.Name])
		}
		g.Sources = sourcesOf(a, g)
	}
	a.Groups = groups
}

func sourcesOf(a *Analysis, g *Group) []string {
	var out []string
	for id, s := range a.sp.s {
		e, err := a.sp.expand(Layout{{id, 1, 1}})
		if err != nil || s.origin == "" {
			continue
		}
		for _, sg := range e {
			if sg.S == g.root && !contains(out, s.origin) {
				out = append(out, s.origin)
			}
		}
	}
	return out
}

// groupName derives a readable, stable name from the node that created the
// units: "/layer1/conv1/Conv" becomes "layer1/conv1:channels".
func groupName(g *Group) string {
	name := strings.TrimPrefix(g.Name, "/")
	if k := strings.LastIndex(name, "/"); k > 0 {
		name = name[:k]
	}
	if name == "" {
		name = fmt.Sprintf("group%d", g.ID)
	}
	return name + ":" + g.Kind
}

// Group returns the group with the given name, or nil.
func (a *Analysis) Group(name string) *Group {
	for _, g := range a.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Prunable returns the groups that may lose units.
func (a *Analysis) Prunable() []*Group {
	var out []*Group
	for _, g := range a.Groups {
		if g.Prunable() {
			out = append(out, g)
		}
	}
	return out
}
