package rewrite

import (
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// ParamsAfter and FLOPsAfter predict exactly what counting the model that
// Apply writes gives, on every fixture, for plans that take a third of
// every prunable group.
func TestCostAfterMatchesApply(t *testing.T) {
	for _, p := range fixtures(t) {
		t.Run(strings.TrimPrefix(p, "../"), func(t *testing.T) {
			m, err := onnxio.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			a, err := Analyze(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			plan := Plan{}
			for _, g := range a.Prunable() {
				for u := 0; u < g.Width; u += 3 {
					plan[g.Name] = append(plan[g.Name], u)
				}
			}
			out, err := a.Apply(plan)
			if err != nil {
				t.Fatal(err)
			}
			wantP, _ := out.ParamCount()
			wantF := onnxio.FLOPs(out)
			gotP, err := a.ParamsAfter(plan)
			if err != nil {
				t.Fatal(err)
			}
			gotF, err := a.FLOPsAfter(plan)
			if err != nil {
				t.Fatal(err)
			}
			if gotP != wantP || gotF != wantF {
				t.Errorf("predicted %d params, %d FLOPs; the written model has %d, %d", gotP, gotF, wantP, wantF)
			}
			if f0 := onnxio.FLOPs(m); !(wantF < f0) {
				t.Errorf("FLOPs %d -> %d: pruning removed none", f0, wantF)
			}
		})
	}
}
