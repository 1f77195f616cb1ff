package rewrite

import (
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// A decoder's attention with a KV cache as optimum exports it: past keys
// and values [B, H, P, D] are graph inputs joined with the new ones, and
// the joined tensors are graph outputs. By default the heads are a barrier
// and the I/O signature stays; with PruneCache the heads prune, the cache
// inputs and outputs lose them too, and the pruned model fed the cache
// sliced as IOKeep says gives what the model with the heads' outgoing
// weights zeroed gives on the whole cache.
func TestPruneCache(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", 2, 3, 16)
	pk, pv := b.in("past_key", 2, 4, 5, 4), b.in("past_value", 2, 4, 5, 4)
	heads := func(name string) string {
		h := b.op("MatMul", name, strs(x, b.w(name+".w", 16, 16)))
		h = b.op("Reshape", name+".r", strs(h, b.ints(name+".shape", 2, 3, 4, 4)))
		return b.op("Transpose", name+".t", strs(h), aIs("perm", 0, 2, 1, 3))
	}
	q := heads("q")
	k := b.op("Concat", "present_key", strs(pk, heads("k")), aI("axis", 2))
	v := b.op("Concat", "present_value", strs(pv, heads("v")), aI("axis", 2))
	s := b.op("MatMul", "scores", strs(q, b.op("Transpose", "k.tt", strs(k), aIs("perm", 0, 1, 3, 2))))
	c := b.op("MatMul", "ctx", strs(b.op("Softmax", "p", strs(s), aI("axis", -1)), v))
	c = b.op("Reshape", "merge", strs(b.op("Transpose", "ctx.t", strs(c), aIs("perm", 0, 2, 1, 3)), b.ints("merge.shape", 2, 3, 16)))
	b.out(b.op("MatMul", "o", strs(c, b.w("o.w", 16, 16))), k, v)
	m := b.model()

	a := analyze(t, m)
	blockedWith(t, a, "k", "joins tensors with and without units", `reaches graph output "present_key"`)

	a, err := Analyze(m, Options{PruneCache: true})
	if err != nil {
		t.Fatal(err)
	}
	g := groupOf(t, a, "k")
	if !g.Prunable() || g.Kind != "heads" || g.Width != 4 {
		t.Fatalf("with PruneCache the heads should prune:\n%s", summary(a))
	}
	plan := Plan{g.Name: {1}}
	zeroed, err := a.ZeroUnits(plan)
	if err != nil {
		t.Fatal(err)
	}
	za, err := Analyze(zeroed, Options{PruneCache: true})
	if err != nil {
		t.Fatal(err)
	}
	pruned, err := za.Apply(plan)
	if err != nil {
		t.Fatal(err)
	}
	sig := signature(pruned)
	if !strings.Contains(sig, "past_key float32 [2 3 5 4]") || !strings.Contains(sig, "present_value float32 [2 3 8 4]") {
		t.Errorf("cache inputs and outputs not rewritten: %s", sig)
	}
	keep, err := za.IOKeep(plan)
	if err != nil {
		t.Fatal(err)
	}
	if kk := keep["past_key"]; kk.Axis != 1 || len(kk.Keep) != 3 || kk.Keep[1] != 2 {
		t.Fatalf("IOKeep %+v", keep)
	}
	in := inputsFor(t, m, 2, 3)
	var sliced []ort.Tensor
	for _, x := range in {
		if kk, ok := keep[x.Name]; ok {
			x = sliceAxis(t, x, kk)
		}
		sliced = append(sliced, x)
	}
	want, got := runModel(t, zeroed, in), runModel(t, pruned, sliced)
	want[1], want[2] = sliceAxis(t, want[1], keep["past_key"]), sliceAxis(t, want[2], keep["past_key"])
	if d := maxDiff(t, want, got); d > 1e-5 {
		t.Errorf("pruned model with the sliced cache differs by %g", d)
	}
}

// sliceAxis keeps positions k.Keep of axis k.Axis of a float tensor.
func sliceAxis(t *testing.T, x ort.Tensor, k AxisKeep) ort.Tensor {
	t.Helper()
	data := x.Data.([]float32)
	outer, inner := 1, 1
	for _, d := range x.Shape[:k.Axis] {
		outer *= int(d)
	}
	for _, d := range x.Shape[k.Axis+1:] {
		inner *= int(d)
	}
	n := int(x.Shape[k.Axis])
	var out []float32
	for o := 0; o < outer; o++ {
		for _, p := range k.Keep {
			out = append(out, data[(o*n+p)*inner:(o*n+p+1)*inner]...)
		}
	}
	shape := append([]int64(nil), x.Shape...)
	shape[k.Axis] = int64(len(k.Keep))
	return ort.Tensor{Name: x.Name, DType: onnxio.Float, Shape: shape, Data: out}
}
