package ops

import (
	"fmt"
	"strings"
	"testing"
)

// TestResolution: the entry with the largest since-version not above the
// model's opset applies; a removal ends support until a later entry;
// "ai.onnx" is the default domain; other domains are apart.
func TestResolution(t *testing.T) {
	tb := NewTable[string](nil)
	tb.Add("", 5, "v5", "Op")
	tb.Add("ai.onnx", 13, "v13", "Op") // the same op as domain ""
	tb.Remove("", 16, "Op")
	tb.Add("", 18, "v18", "Op")
	tb.Add("com.example", 1, "ex1", "Op")
	cases := []struct {
		domain string
		opset  int64
		want   string // "" for none
	}{
		{"", 0, ""}, {"", 4, ""}, {"", 5, "v5"}, {"", 12, "v5"}, {"", 13, "v13"}, {"ai.onnx", 15, "v13"},
		{"", 16, ""}, {"ai.onnx", 17, ""}, {"", 18, "v18"}, {"", 1 << 40, "v18"},
		{"com.example", 0, ""}, {"com.example", 1, "ex1"}, {"com.example", 30, "ex1"}, {"com.other", 30, ""},
	}
	for _, c := range cases {
		got, ok := tb.Lookup(c.domain, "Op", c.opset)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("Lookup(%q, Op, %d) = %q, %v; want %q", c.domain, c.opset, got, ok, c.want)
		}
	}
	if _, ok := tb.Lookup("", "Other", 18); ok {
		t.Error("an op without entries resolved")
	}
	var got []string
	for _, e := range tb.Entries() {
		got = append(got, fmt.Sprintf("%s@%d:%s:%v", e.Key, e.Since, e.Value, e.Removed))
	}
	want := "Op@5:v5:false Op@13:v13:false Op@16::true Op@18:v18:false com.example::Op@1:ex1:false"
	if strings.Join(got, " ") != want {
		t.Errorf("Entries = %v, want %s", got, want)
	}
}

// TestDerived: a table falls back to an op's class in Facts, resolved by
// the same rule, unless it has entries of its own for the op.
func TestDerived(t *testing.T) {
	tb := NewTable(func(c Class) (Class, bool) { return c, c.Elementwise() })
	tb.Add("", 7, Unary|NoGradient, "Relu") // shadows Relu's class at every version
	for _, c := range []struct {
		op    string
		opset int64
		want  Class // 0: none
	}{
		{"Add", 1, Broadcast}, {"Add", 20, Broadcast},
		{"Gelu", 19, 0}, {"Gelu", 20, Unary | Activation}, // ONNX added Gelu in opset 20
		{"Relu", 6, 0}, {"Relu", 7, Unary | NoGradient},
		{"Shape", 13, 0}, // NoUnits only: derive gives no entry
		{"Conv", 13, 0},
	} {
		got, ok := tb.Lookup("ai.onnx", c.op, c.opset)
		if ok != (c.want != 0) || got != c.want {
			t.Errorf("Lookup(%s, %d) = %v, %v; want %v", c.op, c.opset, got, ok, c.want)
		}
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	tb := NewTable[int](nil)
	tb.Add("", 1, 1, "Op")
	for name, f := range map[string]func(){
		"add":    func() { tb.Add("ai.onnx", 1, 2, "Op") },
		"remove": func() { tb.Remove("", 1, "Op") },
		"zero":   func() { tb.Add("", 0, 1, "Other") },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// TestFactsClasses: the class flags are consistent with one another.
func TestFactsClasses(t *testing.T) {
	for _, e := range Facts.Entries() {
		c := e.Value
		switch {
		case c&Unary != 0 && c&Broadcast != 0:
			t.Errorf("%s is both Unary and Broadcast", e.Key)
		case c&(Activation|Predicate) != 0 && !c.Elementwise():
			t.Errorf("%s: %v needs an elementwise class", e.Key, c)
		case c&Predicate != 0 && c&NoGradient == 0:
			t.Errorf("%s has a boolean output but no NoGradient", e.Key)
		case c&NoUnits != 0 && c.Elementwise():
			t.Errorf("%s: %v", e.Key, c)
		}
	}
	if got := (Unary | Activation).String(); got != "Unary|Activation" {
		t.Errorf("String = %q", got)
	}
}
