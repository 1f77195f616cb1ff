package recover

import (
	"fmt"
	"slices"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
)

// stager runs a model forward in stages over fixed batches of calibration
// rows. Each stage computes only the nodes that the requested tensors need
// and that no earlier stage computed, starting from the tensors earlier
// stages left behind; so a model is run once in all, however many stages
// it is cut into. Between stages it keeps, for every batch, the tensors
// that nodes not yet run will read (the frontier): the model's memory
// cost is that frontier over all calibration rows, in the tensors' own
// element types.
//
// The model may be changed between stages, but only in the values of
// constants that no computed node reads (the refit's weights).
type stager struct {
	m       *onnxio.Model
	what    string // "the original model" or "the pruned model", for errors
	ix      *onnxio.Index
	done    []bool
	feeds   map[string]bool // graph inputs the data provides
	pinned  map[string]bool // requested later: kept even without readers
	kept    map[string]bool // tensors every batch's cache holds
	cache   []map[string]ort.Tensor
	batches []rowBatch
	cfg     ort.Config
	sh      *onnxio.Shapes
}

// rowBatch is one batch of the data, fed as the graph inputs.
type rowBatch struct {
	dataset.Range
	feed []ort.Tensor
}

// makeBatches cuts rows [from, to) of b into batches of at most size rows.
func makeBatches(b *dataset.Bound, from, to, size int) ([]rowBatch, error) {
	if b.FixedBatch > 0 {
		size = b.FixedBatch
	}
	var out []rowBatch
	for _, r := range dataset.Ranges(to-from, size) {
		r = dataset.Range{Start: r.Start + from, End: r.End + from}
		bt := rowBatch{Range: r}
		for k, a := range b.Inputs {
			s, err := a.Slice(r.Start, r.End)
			if err != nil {
				return nil, err
			}
			t, err := ort.FromArray(b.Specs[k].Name, s)
			if err != nil {
				return nil, err
			}
			bt.feed = append(bt.feed, t)
		}
		out = append(out, bt)
	}
	return out, nil
}

func newStager(m *onnxio.Model, what string, batches []rowBatch, later []string, cfg ort.Config) *stager {
	s := &stager{m: m, what: what, ix: onnxio.NewIndex(m.Graph()), feeds: map[string]bool{}, pinned: map[string]bool{}, kept: map[string]bool{},
		cache: make([]map[string]ort.Tensor, len(batches)), batches: batches, cfg: cfg}
	s.done = make([]bool, len(m.Graph().GetNode()))
	for _, v := range m.Graph().GetInput() {
		if _, ok := s.ix.Init[v.GetName()]; !ok {
			s.feeds[v.GetName()] = true
		}
	}
	for _, t := range later {
		s.pinned[t] = true
	}
	for i := range s.cache {
		s.cache[i] = map[string]ort.Tensor{}
	}
	return s
}

// free reports whether t needs no computing: absent, fed, a constant (an
// initializer or a Constant node, which every stage that reads it gets a
// copy of), or kept from an earlier stage.
func (s *stager) free(t string) bool {
	if t == "" || s.feeds[t] {
		return true
	}
	if _, ok := s.ix.Init[t]; ok {
		return true
	}
	return s.kept[t] || s.isConstNode(t)
}

func (s *stager) isConstNode(t string) bool {
	i, ok := s.ix.Producer[t]
	if !ok {
		return false
	}
	n := s.m.Graph().Node[i]
	return n.GetOpType() == "Constant" && n.GetDomain() == "" && len(n.GetInput()) == 0
}

// reads lists the tensors node i reads, subgraph reads included.
func (s *stager) reads(i int) []string {
	n := s.m.Graph().Node[i]
	return append(slices.Clone(n.GetInput()), onnxio.SubgraphReads(n)...)
}

// stage is one step of a stager: a session over the nodes it runs.
type stage struct {
	s     *stager
	sess  *ort.Session
	nodes []int
	want  []string
	outs  []string // the session's outputs
	ins   []string // the session's inputs
	keep  map[string]bool
}

// next prepares the stage that makes want (tensors of the model's main
// graph) available for every batch.
func (s *stager) next(want []string) (*stage, error) {
	if len(s.batches) == 0 {
		return nil, fmt.Errorf("%s: no calibration rows", s.what)
	}
	st, consts, err := s.plan(want)
	if err != nil || len(st.nodes) == 0 {
		return st, err
	}
	m, err := s.subgraph(append(consts, st.nodes...), st.ins, st.outs)
	if err != nil {
		return nil, err
	}
	cfg := s.cfg
	cfg.ShortLived, cfg.NoSpin = true, true
	if st.sess, err = ort.NewSessionForModel(m, nil, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", s.what, err)
	}
	return st, nil
}

// plan works out a stage without creating its session: the nodes it runs,
// what it reads from earlier stages, what it outputs, what is kept after
// it, and the Constant nodes it needs a copy of.
func (s *stager) plan(want []string) (*stage, []int, error) {
	st := &stage{s: s, want: want}
	in := map[int]bool{}
	var visit func(t string) error
	visit = func(t string) error {
		if s.free(t) {
			return nil
		}
		i, ok := s.ix.Producer[t]
		if !ok {
			return fmt.Errorf("%s: tensor %q is neither computed, fed nor a constant", s.what, t)
		}
		if in[i] {
			return nil
		}
		if s.done[i] {
			return fmt.Errorf("%s: tensor %q was computed by an earlier stage and not kept", s.what, t)
		}
		in[i] = true
		for _, r := range s.reads(i) {
			if err := visit(r); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range want {
		if err := visit(t); err != nil {
			return nil, nil, err
		}
	}
	for i := range in {
		st.nodes = append(st.nodes, i)
	}
	slices.Sort(st.nodes)
	made := map[string]bool{}
	for _, i := range st.nodes {
		for _, o := range s.m.Graph().Node[i].GetOutput() {
			made[o] = true
		}
	}
	var consts []int
	seen := map[string]bool{}
	for _, i := range st.nodes {
		for _, r := range s.reads(i) {
			if r == "" || made[r] || seen[r] {
				continue
			}
			seen[r] = true
			if s.isConstNode(r) {
				consts = append(consts, s.ix.Producer[r])
			} else if _, ok := s.ix.Init[r]; !ok {
				st.ins = append(st.ins, r)
			}
		}
	}
	slices.Sort(consts)
	st.keep = s.later(in)
	outSet := map[string]bool{}
	for _, t := range want {
		if made[t] && !outSet[t] {
			outSet[t] = true
			st.outs = append(st.outs, t)
		}
	}
	for _, i := range st.nodes {
		for _, o := range s.m.Graph().Node[i].GetOutput() {
			if made[o] && st.keep[o] && !outSet[o] && !s.isConstNode(o) {
				outSet[o] = true
				st.outs = append(st.outs, o)
			}
		}
	}
	return st, consts, nil
}

// later lists what stages after one running the nodes in stage read: the
// inputs of nodes neither run before nor in it, and the pinned tensors.
func (s *stager) later(stage map[int]bool) map[string]bool {
	keep := map[string]bool{}
	for i := range s.m.Graph().GetNode() {
		if stage[i] || s.done[i] {
			continue
		}
		for _, r := range s.reads(i) {
			keep[r] = true
		}
	}
	for t := range s.pinned {
		keep[t] = true
	}
	return keep
}

// subgraph is the model with only the given nodes, reading ins and
// writing outs; it shares the model's nodes and weights.
func (s *stager) subgraph(nodes []int, ins, outs []string) (*onnxio.Model, error) {
	c := s.m.Derive()
	g := c.Graph()
	g.Node = nil
	used := map[string]bool{}
	for _, i := range nodes {
		n := s.m.Graph().Node[i]
		g.Node = append(g.Node, n)
		for _, r := range s.reads(i) {
			used[r] = true
		}
	}
	g.Initializer = nil
	for _, t := range s.m.Graph().GetInitializer() {
		if used[t.GetName()] {
			g.Initializer = append(g.Initializer, t)
		}
	}
	g.SparseInitializer = nil
	g.ValueInfo = nil
	g.Input = nil
	for _, name := range ins {
		v, err := s.valueInfo(name)
		if err != nil {
			return nil, err
		}
		g.Input = append(g.Input, v)
	}
	g.Output = nil
	for _, name := range outs {
		v, err := s.declared(name)
		if err != nil {
			return nil, err
		}
		g.Output = append(g.Output, v)
	}
	if c.Proto.GetIrVersion() < 4 { // initializers outside the inputs
		v := int64(4)
		c.Proto.IrVersion = &v
	}
	return c, nil
}

// valueInfo declares an input of a stage: the model's own declaration for
// a graph input, otherwise the element type of the kept tensor and its
// shape, with the dimensions that differ between batches left symbolic.
func (s *stager) valueInfo(name string) (*onnxpb.ValueInfoProto, error) {
	if v, ok := s.ix.Inputs[name]; ok && s.feeds[name] {
		return v, nil
	}
	first, ok := s.cache[0][name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q is not kept between stages", s.what, name)
	}
	dims := make([]onnxio.Dim, len(first.Shape))
	for k, d := range first.Shape {
		dims[k] = onnxio.Dim{Value: d, Known: true}
	}
	for _, c := range s.cache[1:] {
		t := c[name]
		if len(t.Shape) != len(dims) {
			return nil, fmt.Errorf("%s: tensor %q changes rank between batches", s.what, name)
		}
		for k, d := range t.Shape {
			if dims[k].Known && d != dims[k].Value {
				dims[k] = onnxio.Dim{Param: fmt.Sprintf("cria_%d", k)}
			}
		}
	}
	return onnxio.NewValueInfo(name, first.DType, dims), nil
}

// declared is a stage output: its element type, shape left to ORT.
func (s *stager) declared(name string) (*onnxpb.ValueInfoProto, error) {
	if v, ok := s.ix.Outputs[name]; ok {
		return v, nil
	}
	if v, ok := s.ix.ValueInfo[name]; ok {
		if dt, _, ok := onnxio.TensorType(v); ok && dt != onnxio.Undefined {
			return v, nil
		}
	}
	sh := s.shapes()
	dt := sh.DTypes[name]
	if dt == onnxio.Undefined {
		return nil, fmt.Errorf("%s: cannot tell the element type of tensor %q", s.what, name)
	}
	if d, ok := sh.Dims[name]; ok && len(d) == 0 {
		// A scalar: ORT needs its rank to return it.
		return onnxio.NewValueInfo(name, dt, []onnxio.Dim{}), nil
	}
	v := onnxio.NewValueInfo(name, dt, nil)
	v.GetType().GetTensorType().Shape = nil // rank unknown
	return v, nil
}

func (s *stager) shapes() *onnxio.Shapes {
	if s.sh == nil {
		s.sh = onnxio.InferShapes(s.m, true)
	}
	return s.sh
}

// run runs the stage on batch b and returns the wanted tensors by name.
func (st *stage) run(b int) (map[string]ort.Tensor, error) {
	s := st.s
	cache := s.cache[b]
	got := map[string]ort.Tensor{}
	if st.sess != nil {
		var feed []ort.Tensor
		for _, name := range st.ins {
			if s.feeds[name] {
				continue
			}
			feed = append(feed, cache[name])
		}
		for _, t := range s.batches[b].feed {
			if slices.Contains(st.ins, t.Name) {
				feed = append(feed, t)
			}
		}
		outs, err := st.sess.Run(feed...)
		if err != nil {
			return nil, fmt.Errorf("%s, rows %d-%d: %w", s.what, s.batches[b].Start, s.batches[b].End, err)
		}
		for k, name := range st.outs {
			got[name] = outs[k]
		}
	}
	res := map[string]ort.Tensor{}
	for _, name := range st.want {
		t, ok := got[name]
		if !ok {
			t, ok = cache[name]
		}
		if !ok {
			for _, f := range s.batches[b].feed {
				if f.Name == name {
					t, ok = f, true
				}
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q was not computed", s.what, name)
		}
		res[name] = t
	}
	for name, t := range got {
		if st.keep[name] {
			cache[name] = t
		}
	}
	for name := range cache {
		if !st.keep[name] {
			delete(cache, name)
		}
	}
	return res, nil
}

// finish closes the stage once every batch has run.
func (st *stage) finish() {
	s := st.s
	kept := map[string]bool{}
	for _, t := range append(st.outs, keys(s.kept)...) {
		if st.keep[t] {
			kept[t] = true
		}
	}
	s.kept = kept
	for _, i := range st.nodes {
		st.s.done[i] = true
	}
	for _, t := range st.want {
		delete(st.s.pinned, t)
	}
	if st.sess != nil {
		st.sess.Destroy()
		st.sess = nil
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// keptBytes is the most the stager's kept tensors take per calibration
// sample at any of the stages that the requests, in turn, make; it plans
// the stages without running anything, from the model's static shapes,
// where the batch must be the only dimension not known. ok is false when
// some kept tensor's size per sample cannot be told.
func keptBytes(m *onnxio.Model, requests [][]string, later []string) (peak int64, ok bool, err error) {
	s := newStager(m, "model", nil, later, ort.Config{})
	sh := s.shapes()
	size := func(t string) (int64, bool) {
		d, known := sh.Dims[t]
		dt := sh.DTypes[t]
		if !known || dt == onnxio.Undefined {
			return 0, false
		}
		n, free := int64(dt.Size()), 0
		for _, v := range d {
			if v <= 0 {
				free++
				continue
			}
			n *= v
		}
		return n, free <= 1
	}
	for _, want := range requests {
		st, _, err := s.plan(want)
		if err != nil {
			return 0, false, err
		}
		var total int64
		for t := range s.kept {
			n, known := size(t)
			if !known {
				return 0, false, nil
			}
			total += n
		}
		for _, t := range st.outs {
			if st.keep[t] && !s.kept[t] {
				n, known := size(t)
				if !known {
					return 0, false, nil
				}
				total += n
			}
		}
		peak = max(peak, total)
		st.finish()
	}
	return peak, true, nil
}
