package shrink

import (
	"fmt"
	"runtime/debug"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/internal/memstat"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// MemoryPlan estimates the peak resident memory of a run, by part, from
// the model's static shapes and the settings, before anything runs. All
// parts are bytes. The run's peak is about
//
//	Weights + Activations + Edit + max(Observed + States, Refit, Agreement)
//
// since capture, the refit and the agreement check follow one another.
type MemoryPlan struct {
	// Weights is every tensor of the input (mapped by ONNX Runtime from
	// external data, or held in memory); twice when the latency
	// measurement holds a session of the input and one of the output.
	Weights int64 `json:"weights"`
	// Activations is twice the largest set of tensors alive at once in
	// one run of the model at the batch (shapes inferred with the
	// calibration data's sizes): ONNX Runtime's arena holds about that.
	Activations int64 `json:"activations"`
	// Observed is the tensors capture observes, for one batch: ONNX
	// Runtime runs the reductions that read them last, so they all stay
	// alive to the end of a run.
	Observed int64 `json:"observed"`
	// States is the captured matrices: samples x (pre- and
	// post-activation units of every eligible group) x 4 bytes.
	States int64 `json:"states"`
	// Refit is the least-squares refit's largest set of normal equations:
	// for the group whose readers need the most, (D+1)^2 x 8 bytes for
	// X^T X plus (D+1) x outputs x 8 for each reader's X^T Y, with D the
	// group's width, plus a block of 4096 rows of X in float32; and the
	// tensors its staged passes keep for every sample (RefitKept).
	Refit int64 `json:"refit"`
	// RefitKept bounds what the refit's stages keep between them: for both
	// models, samples x the widest cut of the graph just before a layer
	// that reads pruned units (the bytes of one row's tensors made before
	// it and read from it on), and at most the refit's own bound
	// (recover.LSQOptions.MaxMemory).
	RefitKept int64 `json:"refit_kept"`
	// Agreement is the input's log-probabilities that the comparison on
	// the evaluation data keeps (at most evaluate.MaxAgreeBytes).
	Agreement int64 `json:"agreement"`
	// Edit is twice the largest weight that pruning edits: it is read
	// and its slice made while the model is rewritten.
	Edit  int64 `json:"edit"`
	Total int64 `json:"total"`
	Batch int   `json:"batch"`
}

func (p *MemoryPlan) String() string {
	return fmt.Sprintf("%s: weights %s, activations %s, edits %s, then the largest of capture %s (observed tensors %s, states %s), refit %s, agreement %s",
		memstat.Text(p.Total), memstat.Text(p.Weights), memstat.Text(p.Activations), memstat.Text(p.Edit), memstat.Text(p.Observed+p.States), memstat.Text(p.Observed), memstat.Text(p.States), memstat.Text(p.Refit), memstat.Text(p.Agreement))
}

// MemoryError refuses a run whose estimate exceeds Config.MaxMemory.
// FitBatch is the largest batch at which it would fit, 0 if none does.
type MemoryError struct {
	Plan     *MemoryPlan
	Max      int64
	FitBatch int
}

func (e *MemoryError) Error() string {
	return fmt.Sprintf("the run is estimated to need %s, over the memory limit of %s", e.Plan, memstat.Text(e.Max))
}

// estimateMemory estimates the run's peak at the configured batch.
func (r *run) estimateMemory(a *rewrite.Analysis, batch int) *MemoryPlan {
	m := r.in
	p := &MemoryPlan{Batch: batch}
	for _, t := range m.Graph().GetInitializer() {
		p.Weights += tensorBytes(t.GetDims(), t.GetDataType())
	}
	if r.cfg.Latency {
		p.Weights *= 2
	}
	sh, rows := boundShapes(m, r.calib, batch)
	bytesOf := func(t string) int64 {
		d, ok := sh.Dims[t]
		if !ok {
			return 0
		}
		return tensorBytes(d, int32(sh.DTypes[t]))
	}
	p.Activations = 2 * peakLive(m, bytesOf)
	var groups []*rewrite.Group
	for _, g := range a.Groups {
		if r.cfg.eligible(g) {
			groups = append(groups, g)
		}
	}
	ix := onnxio.NewIndex(a.Model.Graph())
	for _, g := range groups {
		for _, pr := range g.Params {
			if t := ix.Const(pr.Tensor); t != nil {
				p.Edit = max(p.Edit, 2*tensorBytes(t.GetDims(), t.GetDataType()))
			}
		}
	}
	if r.cfg.Criterion.NeedsStates() {
		for _, g := range groups {
			if o := g.Observe; o != nil {
				p.Observed += bytesOf(o.Pre)
				if o.Post != o.Pre {
					p.Observed += bytesOf(o.Post)
				}
				p.States += int64(rows) * int64(2*g.Width) * 4
			}
		}
	}
	if rc := r.cfg.Recover; rc != nil && rc.LSQ {
		for _, g := range groups {
			d := int64(g.Width) + 1
			need := d*d*8 + 4096*d*4
			for _, pr := range g.Params {
				if pr.Role != "out" {
					continue
				}
				if t := ix.Const(pr.Tensor); t != nil && len(t.GetDims()) == 2 && pr.Axis < 2 {
					need += d * t.GetDims()[1-pr.Axis] * 8
				}
			}
			p.Refit = max(p.Refit, need)
		}
		// The stages end where refit layers (readers of pruned units)
		// start.
		at := map[int]bool{}
		for _, g := range groups {
			for _, pr := range g.Params {
				if pr.Role == "out" {
					for _, i := range ix.Consumers[pr.Tensor] {
						at[i] = true
					}
				}
			}
		}
		one, _ := boundShapes(m, r.calib, 1)
		cut := widestCut(m, at, func(t string) int64 {
			d, ok := one.Dims[t]
			if !ok {
				return 0
			}
			return tensorBytes(d, int32(one.DTypes[t]))
		})
		bound := rc.LSQOpts.MaxMemory
		if bound <= 0 {
			bound = 2 << 30 // the refit's default
		}
		p.RefitKept = min(2*int64(min(rows, max(r.cfg.Samples, 1)))*cut, bound)
		p.Refit += p.RefitKept
	}
	if r.cfg.Eval != nil && len(m.Graph().GetOutput()) > 0 {
		out := m.Graph().GetOutput()[0].GetName()
		if n, ok := sh.Dims[out]; ok && len(n) > 0 && n[0] > 0 {
			evalRows, _ := r.cfg.Eval.N()
			p.Agreement = min(evaluate.MaxAgreeBytes, bytesOf(out)/n[0]*int64(evalRows))
		}
	}
	p.Total = p.Weights + p.Activations + p.Edit + max(p.Observed+p.States, p.Refit, p.Agreement)
	return p
}

// checkMemory estimates the run's memory, records it in the report, and
// refuses the run when the estimate exceeds Config.MaxMemory.
func (r *run) checkMemory(a *rewrite.Analysis) error {
	p := r.estimateMemory(a, r.cfg.Batch)
	r.rep.Memory = p
	if r.cfg.MaxMemory <= 0 {
		return nil
	}
	if p.Total <= r.cfg.MaxMemory {
		// ORT's part (mapped weights, its arena, the observed tensors)
		// is outside Go's heap; the rest of the limit is the heap's.
		goHeap := max(r.cfg.MaxMemory-(p.Weights+p.Activations+p.Observed), 64<<20)
		old := debug.SetMemoryLimit(goHeap)
		r.restoreLimit = func() { debug.SetMemoryLimit(old) }
		return nil
	}
	e := &MemoryError{Plan: p, Max: r.cfg.MaxMemory}
	for b := r.cfg.Batch / 2; b >= 1; b /= 2 {
		if r.estimateMemory(a, b).Total <= r.cfg.MaxMemory {
			e.FitBatch = b
			break
		}
	}
	return e
}

func tensorBytes(dims []int64, dtype int32) int64 {
	n := onnxio.NumElements(dims)
	size := int64(onnxio.DataType(dtype).Size())
	if n < 0 {
		return 0
	}
	return n * max(size, 1)
}

// boundShapes infers m's shapes with its inputs' dynamic axes set: the
// first to batch, the others to the calibration data's sizes. It also
// returns the number of calibration rows.
func boundShapes(m *onnxio.Model, data *dataset.Set, batch int) (*onnxio.Shapes, int) {
	v := m.Derive()
	g := v.Graph()
	rows := 0
	for k, in := range g.GetInput() {
		dt, shape, ok := onnxio.TensorType(in)
		if !ok {
			continue
		}
		var arr *dataset.Array
		if data != nil {
			arr = data.Get(in.GetName())
		}
		if arr != nil && arr.Rank() > 0 {
			rows = max(rows, arr.Shape[0])
		}
		fixed := append([]onnxio.Dim(nil), shape...)
		for ax := range fixed {
			switch {
			case fixed[ax].Known:
			case ax == 0:
				fixed[ax] = onnxio.Dim{Value: int64(batch), Known: true}
			case arr != nil && ax < arr.Rank():
				fixed[ax] = onnxio.Dim{Value: int64(arr.Shape[ax]), Known: true}
			}
		}
		g.Input[k] = onnxio.NewValueInfo(in.GetName(), dt, fixed)
	}
	return onnxio.InferShapes(v, false), rows
}

// peakLive is the largest total size of the tensors alive at once when
// m's nodes run in graph order: a tensor lives from the node that makes it
// (or from the start, for a graph input) to its last reader, and graph
// outputs to the end.
func peakLive(m *onnxio.Model, bytesOf func(string) int64) int64 {
	g := m.Graph()
	last := map[string]int{}
	for i, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			last[in] = i
		}
		for _, in := range onnxio.SubgraphReads(n) {
			last[in] = i
		}
	}
	for _, o := range g.GetOutput() {
		last[o.GetName()] = len(g.GetNode())
	}
	alive := map[string]bool{}
	var live, peak int64
	for _, in := range g.GetInput() {
		alive[in.GetName()] = true
		live += bytesOf(in.GetName())
	}
	for i, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" && !alive[o] {
				alive[o] = true
				live += bytesOf(o)
			}
		}
		peak = max(peak, live)
		for _, t := range append(n.GetInput(), n.GetOutput()...) {
			if alive[t] && last[t] <= i {
				alive[t] = false
				live -= bytesOf(t)
			}
		}
	}
	return peak
}

// widestCut is the most bytes of tensors made before node i (or fed) and
// read by node i or later, over the nodes i in at: what a run cut into
// stages just before those nodes keeps between stages.
func widestCut(m *onnxio.Model, at map[int]bool, bytesOf func(string) int64) int64 {
	g := m.Graph()
	last := map[string]int{}
	for i, n := range g.GetNode() {
		for _, in := range append(n.GetInput(), onnxio.SubgraphReads(n)...) {
			last[in] = i
		}
	}
	open := map[string]bool{}
	var cur, widest int64
	for _, in := range g.GetInput() {
		if _, read := last[in.GetName()]; read {
			open[in.GetName()] = true
			cur += bytesOf(in.GetName())
		}
	}
	for i, n := range g.GetNode() {
		if at[i] {
			widest = max(widest, cur)
		}
		for _, t := range n.GetInput() {
			if open[t] && last[t] == i {
				open[t] = false
				cur -= bytesOf(t)
			}
		}
		for _, o := range n.GetOutput() {
			if l, read := last[o]; read && l > i && !open[o] {
				open[o] = true
				cur += bytesOf(o)
			}
		}
	}
	return widest
}
