package dataset

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestDType(t *testing.T) {
	for _, d := range allDTypes {
		got, err := ParseDType(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDType(%q) = %v, %v", d.String(), got, err)
		}
		if !d.Valid() || d.ItemSize() == 0 || len(d.descr()) != 3 {
			t.Errorf("%v: valid %v, size %d, descr %q", d, d.Valid(), d.ItemSize(), d.descr())
		}
	}
	if _, err := ParseDType("complex64"); err == nil {
		t.Error("ParseDType accepted complex64")
	}
	if Invalid.Valid() || Invalid.ItemSize() != 0 || Invalid.String() != "invalid" || DType(99).String() != "DType(99)" || Invalid.descr() != "" {
		t.Error("Invalid or out-of-range DType misbehaves")
	}
	sizes := map[DType]int{Bool: 1, Uint8: 1, Float16: 2, Int32: 4, Float32: 4, Int64: 8, Float64: 8}
	for d, n := range sizes {
		if d.ItemSize() != n {
			t.Errorf("%v.ItemSize() = %d, want %d", d, d.ItemSize(), n)
		}
	}
}

func TestNewAndAccessors(t *testing.T) {
	shape := []int{2, 3}
	f := []float32{1, 2, 3, 4, 5, 6}
	a := must(New("x", shape, f))
	shape[0] = 99 // the array keeps its own copy of shape
	if a.DType != Float32 || !slices.Equal(a.Shape, []int{2, 3}) || a.Len() != 2 || a.RowSize() != 3 || a.Size() != 6 || a.Rank() != 2 {
		t.Errorf("got %v len %d rowsize %d size %d", a, a.Len(), a.RowSize(), a.Size())
	}
	if &a.Float32s()[0] != &f[0] {
		t.Error("New copied data; it should share it")
	}
	if a.String() != `"x" float32 [2 3]` {
		t.Errorf("String() = %s", a)
	}
	if _, err := New("bad", []int{4}, f); err == nil || !strings.Contains(err.Error(), "needs 4 elements, data has 6") {
		t.Errorf("length mismatch: %v", err)
	}
	if _, err := New("neg", []int{-1}, []int32{}); err == nil {
		t.Error("negative dimension accepted")
	}
	if _, err := NewFloat16("h", []int{2}, []uint16{1}); err == nil {
		t.Error("NewFloat16 length mismatch accepted")
	}
	if _, err := Zeros("z", Invalid, []int{1}); err == nil {
		t.Error("Zeros with Invalid accepted")
	}
	if _, err := Zeros("z", Float32, []int{math.MaxInt, 2}); err == nil {
		t.Error("overflowing shape accepted")
	}
	if e := must(New[float64]("e", []int{0}, nil)); e.Float64s() == nil || e.Size() != 0 {
		t.Error("nil data gave a nil slice")
	}

	s := must(New("s", nil, []int64{7}))
	if s.Len() != 0 || s.RowSize() != 1 || s.Size() != 1 || s.Rank() != 0 {
		t.Errorf("scalar: len %d rowsize %d size %d", s.Len(), s.RowSize(), s.Size())
	}

	accessors := map[DType]func(*Array){
		Bool:    func(a *Array) { a.Bools() },
		Uint8:   func(a *Array) { a.Uint8s() },
		Int32:   func(a *Array) { a.Int32s() },
		Int64:   func(a *Array) { a.Int64s() },
		Float16: func(a *Array) { a.Float16Bits() },
		Float32: func(a *Array) { a.Float32s() },
		Float64: func(a *Array) { a.Float64s() },
	}
	for _, d := range allDTypes {
		arr := must(Zeros("a", d, []int{2}))
		for ad, get := range accessors {
			panicked := func() (p any) {
				defer func() { p = recover() }()
				get(arr)
				return nil
			}()
			if (panicked != nil) != (ad != d) {
				t.Errorf("%v accessor on %v array: panic %v", ad, d, panicked)
			}
			if msg, ok := panicked.(string); ok && !strings.Contains(msg, d.String()) {
				t.Errorf("panic message %q does not name the dtype", msg)
			}
		}
	}
}

func TestConversions(t *testing.T) {
	vals := []float64{0, 1, 3, 0, 2}
	for _, d := range allDTypes {
		a := arange(t, "v", d, []int{5}, func(i int) float64 {
			if d == Float16 {
				return float64([]uint16{0, 0x3c00, 0x4200, 0, 0x4000}[i])
			}
			return vals[i]
		})
		want := vals
		if d == Bool {
			want = []float64{0, 1, 1, 0, 1}
		}
		f32, f64 := a.AsFloat32(), a.AsFloat64()
		for i := range want {
			if float64(f32[i]) != want[i] || f64[i] != want[i] {
				t.Errorf("%v[%d]: AsFloat32 %v AsFloat64 %v, want %v", d, i, f32[i], f64[i], want[i])
			}
		}
		ints, err := a.AsInt64()
		switch d {
		case Float16, Float32, Float64:
			if err == nil || !strings.Contains(err.Error(), d.String()) {
				t.Errorf("%v: AsInt64 error %v", d, err)
			}
		default:
			for i := range want {
				if err != nil || float64(ints[i]) != want[i] {
					t.Errorf("%v[%d]: AsInt64 %v, %v", d, i, ints, err)
				}
			}
		}
	}
}

func TestSliceTakeClone(t *testing.T) {
	for _, d := range allDTypes {
		a := arange(t, "a", d, []int{4, 2}, func(i int) float64 { return float64(i) })
		orig := a.Clone()
		s := must(a.Slice(1, 3))
		want := arange(t, "a", d, []int{2, 2}, func(i int) float64 { return float64(i + 2) })
		if !Equal(s, want) {
			t.Errorf("%v Slice: got %v", d, s.Data())
		}
		tk := must(a.Take([]int{3, 0, 3}))
		wantTake := arange(t, "a", d, []int{3, 2}, func(i int) float64 { return float64([]int{6, 7, 0, 1, 6, 7}[i]) })
		if !Equal(tk, wantTake) {
			t.Errorf("%v Take: got %v", d, tk.Data())
		}
		// Results are copies: zeroing them, or a clone, leaves a alone.
		for _, r := range []*Array{s, tk, a.Clone()} {
			zeroData(r)
			clear(r.Shape)
		}
		if !Equal(a, orig) {
			t.Errorf("%v: source changed", d)
		}
		if e := must(a.Slice(2, 2)); e.Len() != 0 || e.Size() != 0 {
			t.Errorf("empty slice: %v", e)
		}
	}
	a := arange(t, "a", Float32, []int{4, 2}, func(i int) float64 { return float64(i) })
	s := must(a.Slice(0, 1))
	s.Float32s()[0] = 99
	if a.Float32s()[0] != 0 {
		t.Error("Slice shares data with its source")
	}
	for _, r := range [][2]int{{-1, 2}, {3, 2}, {0, 5}} {
		if _, err := a.Slice(r[0], r[1]); err == nil || !strings.Contains(err.Error(), `"a"`) {
			t.Errorf("Slice%v: %v", r, err)
		}
	}
	for _, rows := range [][]int{{4}, {-1}} {
		if _, err := a.Take(rows); err == nil {
			t.Errorf("Take(%v) succeeded", rows)
		}
	}
	scalar := must(New("s", nil, []float32{1}))
	if _, err := scalar.Slice(0, 1); err == nil || !strings.Contains(err.Error(), "0-d") {
		t.Errorf("Slice on scalar: %v", err)
	}
	if _, err := scalar.Take([]int{0}); err == nil {
		t.Error("Take on scalar succeeded")
	}
}

func TestEqual(t *testing.T) {
	nan := must(New("n", []int{1}, []float64{math.NaN()}))
	if !Equal(nan, nan.Clone()) {
		t.Error("NaN array unequal to its clone")
	}
	a := must(New("a", []int{2}, []int32{1, 2}))
	for _, b := range []*Array{
		must(New("b", []int{2}, []int32{1, 2})),
		must(New("a", []int{2}, []int64{1, 2})),
		must(New("a", []int{2, 1}, []int32{1, 2})),
		must(New("a", []int{2}, []int32{1, 3})),
	} {
		if Equal(a, b) {
			t.Errorf("%v equals %v", a, b)
		}
	}
	f32 := must(New("f", []int{1}, []float32{float32(math.NaN())}))
	if !Equal(f32, f32.Clone()) || Equal(&Array{}, &Array{}) {
		t.Error("Equal on float32 NaN or on zero arrays")
	}
}

func zeroData(a *Array) {
	switch s := a.Data().(type) {
	case []bool:
		clear(s)
	case []uint8:
		clear(s)
	case []int32:
		clear(s)
	case []int64:
		clear(s)
	case []uint16:
		clear(s)
	case []float32:
		clear(s)
	case []float64:
		clear(s)
	}
}
