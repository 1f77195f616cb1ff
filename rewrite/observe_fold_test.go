package rewrite

import (
	"fmt"
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/ort"
)

// The sizes place the samples of the heads folded into the batch, with a
// static sequence length (ViT's tokens) and with one known only at run
// time, which the fold view copies from its input ([S, B, E] -> [S, B*H,
// D], S read by a Shape): the heads are observed on the [B*H, S, D] values
// and context with the samples in blocks of H on axis 0, and what capture
// records per sample and head equals the root mean square of that head's
// slice of the tensors that ONNX Runtime computes.
func TestObserveTorchMHAFolded(t *testing.T) {
	for _, seq := range []int64{6, -1} {
		t.Run(fmt.Sprintf("seq=%d", seq), func(t *testing.T) { observeFolded(t, seq) })
	}
}

func observeFolded(t *testing.T, modelSeq int64) {
	const n, heads, d = 5, 4, 4
	seq := int(modelSeq)
	if seq < 0 {
		seq = 16 // what inputsFor gives a dynamic axis
	}
	m := torchMHA(t, false, modelSeq)
	a, err := Analyze(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := a.Group("in_proj.q.view:heads")
	if g == nil || g.Observe == nil {
		t.Fatalf("folded heads not observed: %+v", g)
	}
	o := g.Observe
	want := SampleAxis{Axis: 0, Outer: 1, Inner: heads}
	if o.PreSamples == nil || *o.PreSamples != want || o.PostSamples == nil || *o.PostSamples != want ||
		o.PreAxis != 0 || o.PostAxis != 0 || o.PreR != 1 || o.PostR != 1 || !o.RMS {
		t.Fatalf("observed at %+v (samples %+v, %+v), want both on axis 0 with the samples %+v", o, o.PreSamples, o.PostSamples, want)
	}
	in := inputsFor(t, m, n, 3)
	x, err := dataset.New("x", []int{n, seq, 8}, in[0].Data.([]float32))
	if err != nil {
		t.Fatal(err)
	}
	samples := &capture.Samples{Axis: want.Axis, Outer: want.Outer, Inner: want.Inner}
	pts := []capture.Point{
		{Tensor: o.Pre, Axis: o.PreAxis, R: o.PreR, B: o.PreB, RMS: true, Samples: samples},
		{Tensor: o.Post, Axis: o.PostAxis, R: o.PostR, B: o.PostB, RMS: true, Samples: samples},
	}
	res, err := capture.Run(m, pts, &dataset.Set{Arrays: []*dataset.Array{x}}, capture.Options{Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSessionForModel(m, []string{o.Pre, o.Post}, ort.Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	out, err := s.Run(in...)
	if err != nil {
		t.Fatal(err)
	}
	for k, full := range out[len(out)-2:] {
		if got := full.Shape; len(got) != 3 || got[0] != n*heads || got[1] != int64(seq) || got[2] != d {
			t.Fatalf("%s has shape %v, want [%d, %d, %d]", pts[k].Tensor, got, n*heads, seq, d)
		}
		v := full.Data.([]float32)
		for smp := 0; smp < n; smp++ {
			for h := 0; h < heads; h++ {
				var sq float64
				for _, f := range v[(smp*heads+h)*seq*d : (smp*heads+h+1)*seq*d] {
					sq += float64(f) * float64(f)
				}
				want := math.Sqrt(sq / float64(seq*d))
				if got := res.Data[k].At(smp, h); math.Abs(got-want) > 1e-5*math.Max(1, want) {
					t.Errorf("%s: sample %d head %d: captured %g, from the tensor %g", pts[k].Tensor, smp, h, got, want)
				}
			}
		}
	}
}
