package shrink

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// cacheModel is a decoder attention with a KV cache, as optimum exports it:
// x [N, 3, 16] -> q, k, v in 4 heads of 4; past keys and values [N, 4, 5, 4]
// are inputs joined with the new ones, and the joined tensors are outputs.
func cacheModel(t *testing.T) (*onnxio.Model, *dataset.Set) {
	r := rand.New(rand.NewPCG(3, 4))
	g := testgraph.New(13)
	w := func(name string, dims ...int64) string {
		v := make([]float64, onnxio.NumElements(dims))
		for k := range v {
			v[k] = r.NormFloat64() / 4
		}
		return g.FConst(name, dims, v...)
	}
	x := g.In("x", nil, -1, 3, 16)
	pk, pv := g.In("past_key", nil, -1, 4, 5, 4), g.In("past_value", nil, -1, 4, 5, 4)
	heads := func(name string) string {
		h := g.Op("MatMul", []string{x, w(name+".w", 16, 16)}, name)
		h = g.Op("Reshape", []string{h, g.Ints(name+".shape", []int64{4}, 0, 3, 4, 4)}, name+".r")
		return g.Op("Transpose", []string{h}, name+".t", testgraph.AttrInts("perm", []int64{0, 2, 1, 3}))
	}
	q := heads("q")
	k := g.Op("Concat", []string{pk, heads("k")}, "present_key", testgraph.AttrInt("axis", 2))
	v := g.Op("Concat", []string{pv, heads("v")}, "present_value", testgraph.AttrInt("axis", 2))
	s := g.Op("MatMul", []string{q, g.Op("Transpose", []string{k}, "k.tt", testgraph.AttrInts("perm", []int64{0, 1, 3, 2}))}, "scores")
	c := g.Op("MatMul", []string{g.Op("Softmax", []string{s}, "p", testgraph.AttrInt("axis", -1)), v}, "ctx")
	c = g.Op("Transpose", []string{c}, "ctx.t", testgraph.AttrInts("perm", []int64{0, 2, 1, 3}))
	c = g.Op("Reshape", []string{c, g.Ints("merge.shape", []int64{3}, 0, 3, 16)}, "merge")
	g.Out(g.Op("MatMul", []string{c, w("o.w", 16, 16)}, "y"), k, v)
	m := g.Model(t, onnxio.Float)
	data := &dataset.Set{Path: "mem"}
	for _, in := range []struct {
		name  string
		shape []int
	}{{"x", []int{32, 3, 16}}, {"past_key", []int{32, 4, 5, 4}}, {"past_value", []int{32, 4, 5, 4}}} {
		vals := make([]float32, prod(in.shape))
		for k := range vals {
			vals[k] = float32(r.NormFloat64())
		}
		a, err := dataset.New(in.name, in.shape, vals)
		if err != nil {
			t.Fatal(err)
		}
		data.Arrays = append(data.Arrays, a)
	}
	return m, data
}

func prod(d []int) int {
	p := 1
	for _, v := range d {
		p *= v
	}
	return p
}

// With PruneCache, heads that a KV cache carries through the model's
// inputs and outputs prune: every round captures on calibration rows whose
// cache is sliced like the current model's, the written model's cache
// inputs and outputs are smaller, and the report lists them. Without it,
// nothing in this model is prunable.
func TestPruneCacheHeads(t *testing.T) {
	m, data := cacheModel(t)
	cfg := Config{Target: 0.2, MinWidth: 2, Seed: 1, Latency: true, LatencyLimit: 2e9, Runtime: ort.Config{Threads: 1}}
	if _, _, err := Run(m, data, cfg); err == nil || !strings.Contains(err.Error(), "nothing is prunable") {
		t.Fatalf("without PruneCache: %v", err)
	}
	cfg.PruneCache = true
	out, rep, err := Run(m, data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Reduction < 0.2 || len(rep.Rounds) == 0 {
		t.Fatalf("reduction %v", rep.Reduction)
	}
	want := []string{"past_key: float32 [N 4 5 4] -> float32 [N 3 5 4]", "present_value: float32 [? 4 8 4] -> float32 [? 3 8 4]"}
	got := strings.Join(rep.CacheIO, "; ")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("report's cache_io %q lacks %q", got, w)
		}
	}
	// The written model runs on the cache sliced as the report's kept heads say.
	var kept []int
	for _, g := range rep.Groups {
		if g.Pruned {
			kept = g.Kept
		}
	}
	sliced := &dataset.Set{Path: "mem"}
	for _, a := range data.Arrays {
		if strings.HasPrefix(a.Name, "past") {
			s, err := sliceArray(a, rewrite.AxisKeep{Axis: 1, Keep: kept}) // one position per head
			if err != nil {
				t.Fatal(err)
			}
			a = s
		}
		sliced.Arrays = append(sliced.Arrays, a)
	}
	if _, err := MeasureLatency(out, sliced, []int{2}, 0, ort.Config{Threads: 1}); err != nil {
		t.Errorf("the written model on the sliced cache: %v", err)
	}
	if len(rep.LatencyAfter) == 0 {
		t.Errorf("no latency measured: %v", fmt.Sprint(rep.Warnings))
	}
}
