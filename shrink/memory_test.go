package shrink

import (
	"errors"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// The estimate's parts are what they say: the weights' bytes, the bytes of
// the observed tensors of one batch as ORT returns them, and the captured
// matrices; a run over the limit is refused before anything runs, with
// the largest batch that fits.
func TestMemoryEstimate(t *testing.T) {
	m, calib := loadFixture(t, "llama", "llama_calib.npz")
	cfg := Config{Target: 0.3, Samples: 32, Batch: 8, Recover: &recover.Options{LSQ: true}, Runtime: ort.Config{Threads: 1}}
	r, err := start(m, calib, cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := rewrite.Analyze(r.cur, rewrite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p8, p16 := r.estimateMemory(a, 8), r.estimateMemory(a, 16)

	var weights int64
	for _, w := range m.Graph().GetInitializer() {
		raw, err := m.RawData(w)
		if err != nil {
			t.Fatal(err)
		}
		weights += int64(len(raw))
	}
	// The observed tensors of 8 rows, through ORT.
	var names []string
	var states int64
	for _, g := range a.Groups {
		if r.cfg.eligible(g) {
			names = append(names, g.Observe.Pre, g.Observe.Post)
			states += 32 * int64(2*g.Width) * 4
		}
	}
	s, err := ort.NewSessionForModel(m, names, r.cfg.Runtime)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	b, err := s.Bind(r.calib, "")
	if err != nil {
		t.Fatal(err)
	}
	var observed int64
	for batch := range b.Batches(8) {
		in, err := ort.Feed(b, batch)
		if err != nil {
			t.Fatal(err)
		}
		outs, err := s.Run(in...)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs[len(m.Graph().GetOutput()):] {
			observed += onnxio.NumElements(o.Shape) * int64(o.DType.Size())
		}
		break
	}
	if p8.Weights != weights || p8.Observed != observed || p8.States != states {
		t.Errorf("estimate %+v; weights %d, observed %d, states %d", p8, weights, observed, states)
	}
	if p16.Observed != 2*p8.Observed || p16.Activations <= p8.Activations || p8.Refit <= 0 || p8.Edit <= 0 {
		t.Errorf("at batch 16 %+v, at 8 %+v", p16, p8)
	}
	if want := p8.Weights + p8.Activations + p8.Edit + max(p8.Observed+p8.States, p8.Refit, p8.Agreement); p8.Total != want {
		t.Errorf("total %d, parts add to %d", p8.Total, want)
	}

	// Over the limit: refused before any capture, naming a batch that fits.
	cfg.MaxMemory = p8.Total - 1
	ran := false
	cfg.Progress = func(string, int, int) { ran = true }
	_, _, err = Run(m, calib, cfg)
	var me *MemoryError
	if !errors.As(err, &me) || ran {
		t.Fatalf("over the limit: %v (ran: %v)", err, ran)
	}
	if me.FitBatch < 1 || r.estimateMemory(a, me.FitBatch).Total > cfg.MaxMemory || r.estimateMemory(a, 2*me.FitBatch).Total <= cfg.MaxMemory {
		t.Errorf("FitBatch %d is not the largest halving of the batch that fits", me.FitBatch)
	}
}
