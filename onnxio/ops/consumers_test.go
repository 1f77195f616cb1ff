package ops_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// notDifferentiable lists the elementwise ops of ops.Facts that autodiff
// has no backward rule for yet: differentiating through them is an error
// that names them. Adding a rule must remove the op from here.
var notDifferentiable = []string{"PRelu", "Elu", "Selu", "Celu", "Softsign", "Mish", "ThresholdedRelu",
	"Sin", "Cos", "Max", "Min", "Mod", "Shrink"}

// autodiffFrom: ops whose backward rule starts at a later version than the
// op (HardSigmoid's rule is for the form of opset 6 on).
var autodiffFrom = map[string]int64{"HardSigmoid": 6}

// noUnitInputs: NoUnits ops whose inputs are shapes or scalars, which carry
// no units in the first place.
var noUnitInputs = []string{"Constant", "ConstantOfShape", "Range"}

// latest is the most recent opset the test models import besides each
// op's first.
const latest = 21

// TestConsumersAgree builds small models around every op of ops.Facts, at
// the version ONNX introduced it, the latest, and the one before its
// first, and checks that shape inference, the rewriter and autodiff all
// treat it as its class says: an elementwise op is inferred (boolean for a
// predicate), passes units through (coupling broadcast operands; an
// activation is where its group is observed) and is differentiable, or has
// no gradient, or is listed in notDifferentiable; a NoUnits op lets units
// reach it; a NoGradient op needs no backward rule; and below its first
// version, every consumer treats the op as unknown.
func TestConsumersAgree(t *testing.T) {
	for _, e := range ops.Facts.Entries() {
		if e.Removed || e.Key.Domain != "" {
			continue // testgraph builds default-domain nodes only
		}
		op, c := e.Key.Op, e.Value
		t.Run(op, func(t *testing.T) {
			opsets := []int64{e.Since}
			if e.Since < latest {
				opsets = append(opsets, latest)
			}
			for _, opset := range opsets {
				if c.Elementwise() {
					checkShape(t, op, c, opset, true)
					checkRewrite(t, op, c, opset, true)
				}
				if c&ops.NoUnits != 0 && !slices.Contains(noUnitInputs, op) {
					checkRewrite(t, op, c, opset, true)
				}
				if opset >= autodiffFrom[op] {
					checkAutodiff(t, op, c, opset, true)
				}
			}
			if e.Since > 1 {
				if c.Elementwise() {
					checkShape(t, op, c, e.Since-1, false)
				}
				if c.Elementwise() || c&ops.NoUnits != 0 && !slices.Contains(noUnitInputs, op) {
					checkRewrite(t, op, c, e.Since-1, false)
				}
				checkAutodiff(t, op, c, e.Since-1, vjpOpset(e.Since-1) >= e.Since)
			}
		})
	}
	for _, op := range notDifferentiable {
		if c, ok := ops.Facts.Lookup("", op, latest); !ok || !c.Elementwise() || c&ops.NoGradient != 0 {
			t.Errorf("notDifferentiable lists %s, which is not an elementwise op with a gradient", op)
		}
	}
}

// operandType is the element type an op takes its unit-carrying operands
// in: Bool for logic ops, Uint8 for BitShift, Float otherwise.
func operandType(op string) onnxio.DataType {
	switch op {
	case "Not", "And", "Or", "Xor":
		return onnxio.Bool
	case "BitShift":
		return onnxio.Uint8
	}
	return onnxio.Float
}

// apply adds node op to g on the float tensors xs (converted to the op's
// operand type) and returns its output.
func apply(g *testgraph.Graph, op string, c ops.Class, xs ...string) string {
	var ins []string
	var attrs []*onnxpb.AttributeProto
	conv := func(x string) string {
		switch operandType(op) {
		case onnxio.Bool:
			return g.Op("Greater", []string{x, g.FConst(x+".zero", nil, 0)}, x+".bool")
		case onnxio.Uint8:
			return g.Op("Cast", []string{x}, x+".u8", testgraph.AttrInt("to", int64(onnxio.Uint8)))
		}
		return x
	}
	for _, x := range xs {
		ins = append(ins, conv(x))
	}
	switch op {
	case "Where":
		ins = append([]string{g.Op("Greater", []string{xs[0], g.FConst("cond.zero", nil, 0)}, "cond")}, ins...)
	case "Cast":
		attrs = append(attrs, testgraph.AttrInt("to", int64(onnxio.Float)))
	case "Mod":
		attrs = append(attrs, testgraph.AttrInt("fmod", 1))
	case "BitShift":
		attrs = append(attrs, testgraph.AttrString("direction", "LEFT"))
	case "OneHot":
		ins = append(ins, g.Ints("depth", nil, 3), g.FConst("onehot.values", []int64{2}, 0, 1))
	case "Constant":
		ins = nil
		attrs = append(attrs, &onnxpb.AttributeProto{Name: ptr("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(),
			T: onnxio.NewInt64Tensor("", []int64{1}, []int64{1})})
	case "ConstantOfShape":
		ins = []string{g.Op("Shape", []string{xs[0]}, "shape")}
	case "Range":
		ins = []string{g.FConst("start", nil, 0), g.FConst("limit", nil, 4), g.FConst("delta", nil, 1)}
	}
	return g.Op(op, ins, "y", attrs...)
}

// arity is the number of unit-carrying operands the test gives an op.
func arity(c ops.Class) int {
	if c&ops.Broadcast != 0 {
		return 2
	}
	return 1
}

func checkShape(t *testing.T, op string, c ops.Class, opset int64, known bool) {
	t.Helper()
	g := testgraph.New(opset)
	xs := []string{g.In("a", nil, 2, 12), g.In("b", nil, 12)}
	y := apply(g, op, c, xs[:arity(c)]...)
	g.Out(y)
	sh := onnxio.InferShapes(g.Model(t, onnxio.Float), false)
	d, ok := sh.Shape(y)
	if !known {
		if ok {
			t.Errorf("opset %d: shape inference knows %s before its first version: %v", opset, op, d)
		}
		return
	}
	want := operandType(op)
	if c&ops.Predicate != 0 {
		want = onnxio.Bool
	}
	if !ok || fmt.Sprint(d) != "[2 12]" || sh.DTypes[y] != want {
		t.Errorf("opset %d: shape inference gives %v (known %v) of %s, want [2 12] of %s", opset, d, ok, sh.DTypes[y], want)
	}
}

// checkRewrite analyses x -> fc1 -> h -> op -> fc2 with, for a broadcast
// op, a second operand h2 from fc1b; a NoUnits op reads h beside fc2 (and
// its output goes nowhere: a size that reaches a graph output blocks).
func checkRewrite(t *testing.T, op string, c ops.Class, opset int64, known bool) {
	t.Helper()
	g := testgraph.New(opset)
	x := g.In("x", nil, 2, 8)
	h := g.Op("MatMul", []string{x, g.FConst("fc1.w", []int64{8, 12}, seq(96)...)}, "h")
	hs := []string{h}
	if arity(c) == 2 {
		hs = append(hs, g.Op("MatMul", []string{x, g.FConst("fc1b.w", []int64{8, 12}, seq(96)...)}, "h2"))
	}
	next := h
	if c.Elementwise() {
		next = apply(g, op, c, hs...)
		if operandType(op) != onnxio.Float || c&ops.Predicate != 0 {
			next = g.Op("Cast", []string{next}, "y.float", testgraph.AttrInt("to", int64(onnxio.Float)))
		}
	} else {
		apply(g, op, c, h)
	}
	g.Out(g.Op("MatMul", []string{next, g.FConst("fc2.w", []int64{12, 6}, seq(72)...)}, "out"))
	a, err := rewrite.Analyze(g.Model(t, onnxio.Float), rewrite.Options{})
	if err != nil {
		t.Fatalf("opset %d: %v", opset, err)
	}
	skipped := slices.ContainsFunc(a.Skipped, func(r rewrite.OpReport) bool { return r.Op == op })
	if !known {
		if !skipped {
			t.Errorf("opset %d: the rewriter knows %s before its first version", opset, op)
		}
		return
	}
	grp := groupOf(a, h)
	switch {
	case skipped:
		t.Errorf("opset %d: the rewriter has no rule for %s", opset, op)
	case grp == nil || !grp.Prunable():
		t.Errorf("opset %d: fc1's units are not prunable through %s: %+v", opset, op, grp)
	case c.Elementwise() && groupOf(a, "y") != grp:
		t.Errorf("opset %d: %s does not pass fc1's units to its output", opset, op)
	case c&ops.Broadcast != 0 && groupOf(a, hs[1]) != grp:
		t.Errorf("opset %d: %s does not couple its operands' units", opset, op)
	case c&ops.Activation != 0 && (grp.Observe == nil || grp.Observe.Op != op || grp.Observe.Pre != h):
		t.Errorf("opset %d: fc1's units are not observed at %s: %+v", opset, op, grp.Observe)
	}
}

func groupOf(a *rewrite.Analysis, tensor string) *rewrite.Group {
	for _, g := range a.Groups {
		for _, ta := range g.Tensors {
			if ta.Tensor == tensor && ta.Axis == 1 {
				return g
			}
		}
	}
	return nil
}

// checkAutodiff differentiates op's output with respect to its float
// inputs: it must succeed unless the op is unknown at the opset or listed
// in notDifferentiable, and then fail naming the op.
func checkAutodiff(t *testing.T, op string, c ops.Class, opset int64, known bool) {
	t.Helper()
	g := testgraph.New(opset)
	xs := []string{g.In("a", nil, 2, 12), g.In("b", nil, 12)}
	g.Out(apply(g, op, c, xs[:arity(c)]...))
	_, err := autodiff.VJP(g.Model(t, onnxio.Float), xs[:arity(c)])
	// Ops fed through Greater or Cast to an integer type are on no float
	// path, known or not.
	onPath := operandType(op) == onnxio.Float && !slices.Contains(noUnitInputs, op)
	wantErr := onPath && (!known || c&ops.NoGradient == 0 && slices.Contains(notDifferentiable, op))
	switch {
	case err != nil && !wantErr:
		t.Errorf("opset %d: autodiff: %v", opset, err)
	case err == nil && wantErr:
		t.Errorf("opset %d: autodiff differentiates through %s (known %v)", opset, op, known)
	case err != nil && !strings.Contains(err.Error(), "no backward rule for op "+op+" "):
		t.Errorf("opset %d: autodiff fails without naming %s: %v", opset, op, err)
	}
}

// vjpOpset is the opset VJP differentiates at: it raises 13 to 15 to 16
// (see its doc), which makes HardSwish (14) and Bernoulli (15) known there.
func vjpOpset(opset int64) int64 {
	if opset >= 13 && opset < 16 {
		return 16
	}
	return opset
}

func seq(n int) []float64 {
	v := make([]float64, n)
	for k := range v {
		v[k] = float64(k%7) - 3
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// A contrib op, registered the way a new one would be: one entry.
const contribDomain, contribOp = "com.example.test", "FastGeluTest"

func init() { ops.Facts.Add(contribDomain, 1, ops.Unary|ops.Activation, contribOp) }

// TestOneEntry: with that entry alone, shape inference infers the op, the
// rewriter passes units through it and observes them there, and autodiff
// names it as an op without a backward rule; a model that does not import
// its domain leaves it unknown.
func TestOneEntry(t *testing.T) {
	for _, imported := range []bool{true, false} {
		g := testgraph.New(17)
		x := g.In("x", nil, 2, 8)
		h := g.Op("MatMul", []string{x, g.FConst("fc1.w", []int64{8, 12}, seq(96)...)}, "h")
		y := g.Op(contribOp, []string{h}, "y")
		g.Out(g.Op("MatMul", []string{y, g.FConst("fc2.w", []int64{12, 6}, seq(72)...)}, "out"))
		m := g.Model(t, onnxio.Float)
		for _, n := range m.Graph().GetNode() {
			if n.GetOpType() == contribOp {
				n.Domain = ptr(contribDomain)
			}
		}
		if imported {
			m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: ptr(contribDomain), Version: ptr(int64(1))})
		}
		d, ok := onnxio.InferShapes(m, false).Shape(y)
		if ok != imported || imported && fmt.Sprint(d) != "[2 12]" {
			t.Errorf("imported %v: shape inference gives %v, %v", imported, d, ok)
		}
		a, err := rewrite.Analyze(m, rewrite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		grp := groupOf(a, h)
		passed := grp != nil && grp.Prunable() && groupOf(a, y) == grp && grp.Observe != nil && grp.Observe.Op == contribOp
		if passed != imported {
			t.Errorf("imported %v: the rewriter passes and observes units: %v (%+v, skipped %v)", imported, passed, grp, a.Skipped)
		}
		_, err = autodiff.VJP(m, []string{x})
		if err == nil || !strings.Contains(err.Error(), "no backward rule for op "+contribOp) {
			t.Errorf("imported %v: autodiff: %v", imported, err)
		}
	}
}
