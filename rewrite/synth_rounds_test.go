package rewrite

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// Random plans over coupled structures, in several rounds: each round
// zeroes the outgoing weights of random units of every group, removes them,
// and requires the same outputs, the predicted parameter count, and a model
// that analyses again into the same groups, narrower.
func TestRounds(t *testing.T) {
	models := map[string]func(t *testing.T) *onnxio.Model{
		"inception": func(t *testing.T) *onnxio.Model {
			return convNet(t, 13, func(b *builder, x string) (string, int64) {
				p := b.op("Relu", "b1.relu", strs(b.op("Conv", "b1", strs(x, b.w("b1.w", 4, 8, 1, 1), b.w("b1.b", 4)))))
				q := b.op("Relu", "b2.relu", strs(b.op("Conv", "b2", strs(x, b.w("b2.w", 6, 8, 3, 3)), aIs("pads", 1, 1, 1, 1))))
				h := b.op("Concat", "cat", strs(p, q, x), aI("axis", 1))
				h = b.op("Conv", "dw", strs(h, b.w("dw.w", 36, 1, 3, 3)), aI("group", 18), aIs("pads", 1, 1, 1, 1))
				h = b.op("Relu", "dw.relu", strs(h))
				h = b.op("Conv", "mix", strs(h, b.w("mix.w", 7, 36, 1, 1), b.w("mix.b", 7)))
				return b.op("Relu", "mix.relu", strs(h)), 7
			}).model()
		},
		"split-gqa-fused": func(t *testing.T) *onnxio.Model {
			return attention(t, attnOpts{opset: 13, shapes: "concat", t: -1, heads: 8, kv: 4, d: 2, fused: true}).model()
		},
		"gqa-torch": func(t *testing.T) *onnxio.Model {
			return attention(t, attnOpts{opset: 17, shapes: "torch", t: -1, heads: 8, kv: 4, d: 2}).model()
		},
		"mha-minus1": func(t *testing.T) *onnxio.Model {
			return attention(t, attnOpts{opset: 14, shapes: "minus1", t: -1, heads: 8, kv: 8, d: 2}).model()
		},
		"split18": func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, 18)
			x := b.in("x", -1, 8)
			h := b.op("MatMul", "fc1", strs(x, b.w("fc1.w", 8, 24)))
			p := b.opN("Split", "split", strs(h), 3, aI("axis", 1), aI("num_outputs", 3))
			var outs []string
			for k := range p {
				r := b.op("Relu", fmt.Sprintf("p%d.relu", k), strs(p[k]))
				outs = append(outs, b.op("MatMul", fmt.Sprintf("p%d", k), strs(r, b.w(fmt.Sprintf("p%d.w", k), 8, 3))))
			}
			b.out(b.op("Sum", "sum", outs))
			return b.model()
		},
		"tied-shared": func(t *testing.T) *onnxio.Model {
			b := newBuilder(t, 13)
			x := b.in("x", -1, 8)
			w := b.w("shared.w", 8, 8)
			z := b.f("zeros", []int64{8}, 0, 0, 0, 0, 0, 0, 0, 0)
			h := b.op("Relu", "relu1", strs(b.op("Add", "l1.b", strs(b.op("MatMul", "l1", strs(x, w)), z))))
			h = b.op("Relu", "relu2", strs(b.op("Add", "l2.b", strs(b.op("MatMul", "l2", strs(h, w)), z))))
			b.out(b.op("MatMul", "l3", strs(h, b.w("l3.w", 8, 3))))
			return b.model()
		},
	}
	for name, build := range models {
		t.Run(name, func(t *testing.T) {
			m := build(t)
			in := inputsFor(t, m, 3, 5)
			for seed := uint64(1); seed <= 3; seed++ {
				r := rand.New(rand.NewPCG(seed, 11))
				cur := m
				for round := 0; round < 3; round++ {
					a, err := Analyze(cur, Options{})
					if err != nil {
						t.Fatal(err)
					}
					plan := Plan{}
					for _, g := range a.Prunable() {
						if len(g.Warnings) > 0 {
							continue
						}
						if g.Width < 3 {
							continue // leave two units: one head or KV group is a degenerate structure
						}
						n := 1 + r.IntN(g.Width-2)
						plan[g.Name] = randomUnits(r, g.Width, n)
					}
					if len(plan) == 0 {
						if round == 0 {
							t.Fatalf("nothing to prune:\n%s", summary(a))
						}
						break
					}
					zeroed := zeroOutgoing(t, a, plan)
					za, err := Analyze(zeroed, Options{})
					if err != nil {
						t.Fatal(err)
					}
					want, err := za.ParamsAfter(plan)
					if err != nil {
						t.Fatal(err)
					}
					pruned, err := za.Apply(plan)
					if err != nil {
						t.Fatalf("seed %d round %d: %v", seed, round, err)
					}
					if got, _ := pruned.ParamCount(); got != want {
						t.Errorf("seed %d round %d: %d parameters, ParamsAfter said %d", seed, round, got, want)
					}
					if d := maxDiff(t, runModel(t, zeroed, in), runModel(t, pruned, in)); d > 1e-5 {
						t.Errorf("seed %d round %d: outputs changed by %g (plan %v)", seed, round, d, plan)
					}
					pa, err := Analyze(pruned, Options{})
					if err != nil {
						t.Fatal(err)
					}
					if len(pa.Prunable()) < len(a.Prunable())-countNarrowed(a, plan) {
						t.Errorf("seed %d round %d: %d prunable groups before, %d after:\n%s\n%s", seed, round,
							len(a.Prunable()), len(pa.Prunable()), summary(a), summary(pa))
					}
					cur = pruned
				}
			}
		})
	}
}

// countNarrowed counts groups that a plan leaves with one unit (no longer
// prunable).
func countNarrowed(a *Analysis, p Plan) int {
	n := 0
	for name, units := range p {
		if g := a.Group(name); g != nil && g.Width-len(units) <= 1 {
			n++
		}
	}
	return n
}
