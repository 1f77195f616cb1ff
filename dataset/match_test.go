package dataset

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func mnistSet(t *testing.T, n int) *Set {
	t.Helper()
	x := arange(t, "input", Float32, []int{n, 1, 28, 28}, func(i int) float64 { return float64(i / 784) })
	y := arange(t, "labels", Int64, []int{n}, func(i int) float64 { return float64(i % 10) })
	names := arange(t, "class_names", Uint8, []int{10, 4}, func(int) float64 { return 'a' })
	return &Set{Path: "calib.npz", Arrays: []*Array{names, x, y}}
}

var mnistInput = []InputSpec{{Name: "input", DType: Float32, Shape: []int64{-1, 1, 28, 28}}}

func TestMatch(t *testing.T) {
	s := mnistSet(t, 10)
	b := must(s.Match(mnistInput, ""))
	if b.N != 10 || b.Path != "calib.npz" || b.FixedBatch != 0 || b.Labels != s.Get("labels") || b.Input("input") != s.Get("input") || b.Input("x") != nil {
		t.Fatalf("bound: %+v", b)
	}
	if !slices.Equal(b.Extra, []string{"class_names"}) {
		t.Errorf("Extra = %v", b.Extra)
	}
	if l := b.LabelValues(); len(l) != 10 || l[3] != 3 {
		t.Errorf("LabelValues = %v", l)
	}

	var got []Range
	for bt := range b.Batches(4) {
		got = append(got, bt.Range)
		if len(bt.Inputs) != 1 || bt.Inputs[0].Len() != bt.Len() || len(bt.Labels) != bt.Len() {
			t.Fatalf("batch %v: %v, labels %v", bt.Range, bt.Inputs, bt.Labels)
		}
		if x := bt.Inputs[0].Float32s(); x[0] != float32(bt.Start) || x[len(x)-1] != float32(bt.End-1) {
			t.Errorf("batch %v holds rows %v..%v", bt.Range, x[0], x[len(x)-1])
		}
		if bt.Labels[0] != int64(bt.Start%10) {
			t.Errorf("batch %v labels %v", bt.Range, bt.Labels)
		}
	}
	if !slices.Equal(got, []Range{{0, 4}, {4, 8}, {8, 10}}) {
		t.Errorf("batches %v", got)
	}
	for range b.Batches(3) {
		break // stopping early must not panic
	}
	n := 0
	for bt := range b.Batches(0) {
		n++
		if bt.Len() != 10 {
			t.Errorf("size 0 batch has %d rows", bt.Len())
		}
	}
	if n != 1 {
		t.Errorf("size 0 gave %d batches", n)
	}

	// No labels array: none bound, and "labels" named explicitly works too.
	noLabels := &Set{Path: "x.npz", Arrays: []*Array{s.Get("input")}}
	b = must(noLabels.Match(mnistInput, ""))
	if b.Labels != nil || b.LabelValues() != nil || len(b.Extra) != 0 {
		t.Errorf("no labels: %+v", b)
	}
	for bt := range b.Batches(5) {
		if bt.Labels != nil {
			t.Error("batch has labels")
		}
	}
	// Labels under another name, int32; "labels" then counts as extra.
	s.Arrays = append(s.Arrays, arange(t, "y", Int32, []int{10}, func(i int) float64 { return 1 }))
	b = must(s.Match(mnistInput, "y"))
	if b.Labels.Name != "y" || !slices.Equal(b.Extra, []string{"class_names", "labels"}) || b.LabelValues()[0] != 1 {
		t.Errorf("named labels: %+v", b)
	}
}

func TestMatchShapeMessage(t *testing.T) {
	s := &Set{Path: "calib.npz", Arrays: []*Array{must(Zeros("input", Float32, []int{1024, 784}))}}
	_, err := s.Match([]InputSpec{{Name: "input", DType: Float32, Shape: []int64{0, 1, 28, 28}}}, "")
	want := `calib.npz: array "input" has shape [1024 784], model input "input" wants [N 1 28 28]`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	_, err = s.Match([]InputSpec{{Name: "input", DType: Float32, Shape: []int64{-1, 785}}}, "")
	wantErr(t, err, nil, "[N 785]")
	_, err = s.Match([]InputSpec{{Name: "input", DType: Float32, Shape: []int64{-1, -1, 3}}}, "")
	wantErr(t, err, nil, "[N ? 3]")
}

func TestMatchReportsEverything(t *testing.T) {
	s := &Set{Path: "eval.npz", Arrays: []*Array{
		must(Zeros("image", Float64, []int{100, 3, 32, 32})),
		must(Zeros("mask", Bool, []int{100, 5})),
		must(Zeros("ids", Int64, []int{90, 7})),
		must(Zeros("labels", Float32, []int{100})),
	}}
	inputs := []InputSpec{
		{Name: "image", DType: Float32, Shape: []int64{-1, 3, 32, 32}}, // dtype
		{Name: "mask", DType: Bool, Shape: []int64{-1, 6}},             // shape
		{Name: "ids", DType: Int64, Shape: []int64{-1, 7}},             // rows
		{Name: "tokens", DType: Int64, Shape: []int64{-1, 7}},          // missing
	}
	_, err := s.Match(inputs, "")
	var list MatchErrors
	if !errors.As(err, &list) {
		t.Fatalf("error %T is not MatchErrors: %v", err, err)
	}
	wantLines := []string{
		`eval.npz: array "image" has dtype float64, model input "image" wants float32`,
		`eval.npz: array "mask" has shape [100 5], model input "mask" wants [N 6]`,
		`eval.npz: model input "tokens" has no array of that name (arrays: "image", "mask", "ids", "labels")`,
		`eval.npz: labels array "labels" has dtype float32, want int64 or int32`,
		`eval.npz: array "ids" has 90 rows (leading dimension), array "image" has 100`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, wantLines) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
	var one *MatchError
	if !errors.As(err, &one) || one.Array != "image" || one.Input != "image" || one.Path != "eval.npz" {
		t.Errorf("first MatchError: %+v", one)
	}
	if list[2].Array != "" || list[2].Input != "tokens" {
		t.Errorf("missing input error: %+v", list[2])
	}
}

func TestMatchLabelsAndOddInputs(t *testing.T) {
	x := must(Zeros("x", Float32, []int{6, 2}))
	spec := []InputSpec{{Name: "x", DType: Float32, Shape: []int64{-1, 2}}}
	for _, tc := range []struct {
		name   string
		arrays []*Array
		specs  []InputSpec
		labels string
		frag   string
	}{
		{"labels missing", []*Array{x}, spec, "y", `labels array "y" not found (arrays: "x")`},
		{"labels 2-D", []*Array{x, must(Zeros("labels", Int64, []int{6, 1}))}, spec, "", `labels array "labels" has shape [6 1], want 1-D [N]`},
		{"labels rows", []*Array{x, must(Zeros("labels", Int32, []int{5}))}, spec, "", `array "labels" has 5 rows`},
		{"scalar input", []*Array{x}, []InputSpec{{Name: "x", DType: Float32}}, "", `model input "x" is a scalar`},
		{"0-d array", []*Array{must(Zeros("x", Float32, nil))}, spec, "", `array "x" has shape [], model input "x" wants [N 2]`},
		{"listed twice", []*Array{x}, append(slices.Clone(spec), spec...), "", "listed twice"},
		{"empty set", nil, spec, "", `has no array of that name (arrays: none)`},
		{"fixed batch not a multiple", []*Array{x}, []InputSpec{{Name: "x", DType: Float32, Shape: []int64{4, 2}}}, "", `fixes the batch dimension to 4 and 6 is not a multiple`},
		{"fixed batches disagree", []*Array{x, must(Zeros("z", Float32, []int{6}))}, []InputSpec{{Name: "x", DType: Float32, Shape: []int64{2, 2}}, {Name: "z", DType: Float32, Shape: []int64{3}}}, "", "fixes the batch dimension to 3, another input to 2"},
	} {
		s := &Set{Path: "d.npz", Arrays: tc.arrays}
		b, err := s.Match(tc.specs, tc.labels)
		if b != nil || err == nil || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.name, err, tc.frag)
		}
	}
}

func TestFixedBatchAndBoundSubset(t *testing.T) {
	s := mnistSet(t, 12)
	b := must(s.Match([]InputSpec{{Name: "input", DType: Float32, Shape: []int64{4, 1, 28, 28}}}, ""))
	if b.FixedBatch != 4 {
		t.Fatalf("FixedBatch = %d", b.FixedBatch)
	}
	for bt := range b.Batches(5) {
		if bt.Len() != 4 {
			t.Errorf("batch %v: a fixed batch of 4 is the only size the model takes", bt.Range)
		}
	}
	sub := must(b.Subset(6, 9)) // rounds down to one batch of 4
	if sub.N != 4 || sub.Inputs[0].Len() != 4 || sub.Labels.Len() != 4 || b.N != 12 || b.Inputs[0].Len() != 12 {
		t.Errorf("subset N %d; source N %d", sub.N, b.N)
	}
	rows := must(SubsetIndices(12, 4, 9))
	for k, r := range rows {
		if sub.Inputs[0].Float32s()[784*k] != float32(r) || sub.LabelValues()[k] != int64(r%10) {
			t.Errorf("subset row %d is not source row %d", k, r)
		}
	}
	sub.Extra[0] = "changed"
	if b.Extra[0] != "class_names" {
		t.Error("Subset shares Extra with its source")
	}
	if _, err := b.Subset(-1, 0); err == nil {
		t.Error("negative subset accepted")
	}
	noLabels := must((&Set{Arrays: []*Array{s.Get("input")}}).Match(mnistInput, ""))
	if sub := must(noLabels.Subset(3, 1)); sub.Labels != nil || sub.N != 3 {
		t.Errorf("subset without labels: %+v", sub)
	}
}
