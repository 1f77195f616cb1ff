package ort

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

func closeTo(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// mustSession(t)(NewSession(...)) fails the test on error and destroys the
// session at the end of the test.
func mustSession(t testing.TB) func(*Session, error) *Session {
	return func(s *Session, err error) *Session {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Destroy(); err != nil {
				t.Error(err)
			}
		})
		return s
	}
}

func mustRun(t testing.TB, s *Session, in ...Tensor) []Tensor {
	t.Helper()
	out, err := s.Run(in...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var mlpX = []float32{
	1, 2, 3, 4,
	-1, 0.5, 0, 2,
	0.25, -3, 1, -1,
}

func TestMLPGraphOutput(t *testing.T) {
	b := encode(t, mlpModel())
	s := mustSession(t)(NewSession(b, nil, Config{}))
	if got, want := s.Inputs(), []Info{{"x", onnxio.Float, []int64{-1, 4}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Inputs() = %v, want %v", got, want)
	}
	if got, want := s.Outputs(), []Info{{"y", onnxio.Float, []int64{-1, 3}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Outputs() = %v, want %v", got, want)
	}
	out := mustRun(t, s, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
	_, _, y := mlpExpect(mlpX, 3)
	if len(out) != 1 || out[0].Name != "y" || out[0].DType != onnxio.Float || !reflect.DeepEqual(out[0].Shape, []int64{3, 3}) {
		t.Fatalf("got %+v", out)
	}
	closeTo(t, "y", out[0].Data.([]float32), y)
}

func TestHiddenOutputs(t *testing.T) {
	m := mlpModel()
	before := encode(t, m)
	orig := proto.Clone(m.Proto)
	s := mustSession(t)(NewSessionForModel(m, []string{"h", "xw"}, Config{}))

	if !proto.Equal(m.Proto, orig) || !bytes.Equal(encode(t, m), before) {
		t.Fatal("NewSessionForModel modified the model")
	}
	var names []string
	for _, o := range s.Outputs() {
		names = append(names, o.Name)
	}
	if !reflect.DeepEqual(names, []string{"y", "h", "xw"}) {
		t.Fatalf("outputs %v", names)
	}
	if got := s.Outputs()[1]; got.DType != onnxio.Float || !reflect.DeepEqual(got.Shape, []int64{-1, 3}) {
		t.Errorf("hidden output info %v", got)
	}
	out := mustRun(t, s, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
	xw, h, y := mlpExpect(mlpX, 3)
	closeTo(t, "y", out[0].Data.([]float32), y)
	closeTo(t, "h", out[1].Data.([]float32), h)
	closeTo(t, "xw", out[2].Data.([]float32), xw)
	for _, o := range out {
		if !reflect.DeepEqual(o.Shape, []int64{3, 3}) {
			t.Errorf("%s shape %v", o.Name, o.Shape)
		}
	}
	// h has negative entries that Relu cut: the hidden tensor is really
	// pre-activation.
	neg := false
	for _, v := range out[1].Data.([]float32) {
		neg = neg || v < 0
	}
	if !neg {
		t.Error("h has no negative values; the test input does not exercise Relu")
	}
}

func TestNewSessionOutputsFromBytes(t *testing.T) {
	b := encode(t, mlpModel())
	keep := bytes.Clone(b)
	// Any order, hidden and graph outputs mixed, one repeated.
	s := mustSession(t)(NewSession(b, []string{"h", "y", "h"}, Config{}))
	if !bytes.Equal(b, keep) {
		t.Fatal("NewSession modified the model bytes")
	}
	out := mustRun(t, s, Tensor{Name: "x", DType: onnxio.Float, Shape: []int64{3, 4}, Data: mlpX})
	_, h, y := mlpExpect(mlpX, 3)
	closeTo(t, "h", out[0].Data.([]float32), h)
	closeTo(t, "y", out[1].Data.([]float32), y)
	closeTo(t, "h again", out[2].Data.([]float32), h)
	out[0].Data.([]float32)[0] = 1e9
	if out[2].Data.([]float32)[0] == 1e9 {
		t.Error("repeated outputs share memory")
	}
}

func TestGatherInt64(t *testing.T) {
	s := mustSession(t)(NewSessionForModel(gatherModel(), []string{"idx32", "idx", "table"}, Config{}))
	idx := []int64{4, 0, 2, 2}
	out := mustRun(t, s, Tensor{Name: "idx", Shape: []int64{4}, Data: idx})
	want := []int64{50, 51, 10, 11, 30, 31, 30, 31}
	if !reflect.DeepEqual(out[0].Data, want) || !reflect.DeepEqual(out[0].Shape, []int64{4, 2}) || out[0].DType != onnxio.Int64 {
		t.Errorf("rows = %+v, want %v", out[0], want)
	}
	if !reflect.DeepEqual(out[1].Data, []int32{4, 0, 2, 2}) || out[1].DType != onnxio.Int32 {
		t.Errorf("idx32 = %+v", out[1])
	}
	// A graph input and an initializer can be observed too.
	if !reflect.DeepEqual(out[2].Data, idx) {
		t.Errorf("idx = %+v", out[2])
	}
	if !reflect.DeepEqual(out[3].Data, gatherTable) || !reflect.DeepEqual(out[3].Shape, []int64{5, 2}) {
		t.Errorf("table = %+v", out[3])
	}
}

func TestWhereBool(t *testing.T) {
	s := mustSession(t)(NewSessionForModel(whereModel(), []string{"gt", "nb"}, Config{}))
	cond := []bool{true, false, true, false, false, true}
	a := []float32{1, 2, 3, 4, 5, 6}
	b := []float32{6, 5, 4, 3, 2, 1}
	out := mustRun(t, s,
		Tensor{Name: "b", Shape: []int64{2, 3}, Data: b},
		Tensor{Name: "cond", Shape: []int64{2, 3}, Data: cond},
		Tensor{Name: "a", Shape: []int64{2, 3}, Data: a},
	)
	want := make([]float32, 6)
	gt := make([]bool, 6)
	nb := make([]bool, 6)
	for i := range want {
		want[i] = b[i]
		if cond[i] {
			want[i] = a[i]
		}
		gt[i] = a[i] > b[i]
		nb[i] = !cond[i]
	}
	if !reflect.DeepEqual(out[0].Data, want) {
		t.Errorf("out = %v, want %v", out[0].Data, want)
	}
	if !reflect.DeepEqual(out[1].Data, gt) || out[1].DType != onnxio.Bool {
		t.Errorf("gt = %+v, want %v", out[1], gt)
	}
	if !reflect.DeepEqual(out[2].Data, nb) {
		t.Errorf("nb = %v, want %v", out[2].Data, nb)
	}
}

func TestFloat16AndScalar(t *testing.T) {
	s := mustSession(t)(NewSessionForModel(halfModel(), []string{"xx", "total"}, Config{}))
	if o := s.Outputs(); o[0].DType != onnxio.Float16 || !reflect.DeepEqual(o[1].Shape, []int64{}) {
		t.Fatalf("outputs %v", o)
	}
	xs := []float32{0.5, -1.25, 3, 1e-5, 65504 / 2, -0.0}
	x := make([]uint16, len(xs))
	for i, v := range xs {
		x[i] = onnxio.Float32ToFloat16(v)
	}
	out := mustRun(t, s, Tensor{Name: "x", Shape: []int64{2, 3}, Data: x})
	if len(out) != 4 {
		t.Fatalf("%d outputs", len(out))
	}
	var total float32
	for i, o := range []Tensor{out[0], out[2]} {
		if o.DType != onnxio.Float16 || !reflect.DeepEqual(o.Shape, []int64{2, 3}) {
			t.Fatalf("output %d: %+v", i, o)
		}
	}
	for i := range xs {
		xv := onnxio.Float16ToFloat32(x[i])
		wantY := onnxio.Float32ToFloat16(xv + xv)
		wantXX := onnxio.Float32ToFloat16(xv * xv)
		if got := out[0].Data.([]uint16)[i]; got != wantY {
			t.Errorf("y[%d] = %#04x, want %#04x", i, got, wantY)
		}
		if got := out[2].Data.([]uint16)[i]; got != wantXX {
			t.Errorf("xx[%d] = %#04x, want %#04x", i, got, wantXX)
		}
		total += onnxio.Float16ToFloat32(wantY)
	}
	for _, o := range []Tensor{out[1], out[3]} {
		if o.Name != "total" || len(o.Shape) != 0 || o.DType != onnxio.Float {
			t.Fatalf("total: %+v", o)
		}
		closeTo(t, "total", o.Data.([]float32), []float32{total})
	}
}

func TestOutputErrors(t *testing.T) {
	m := mlpModel()
	for _, c := range []struct {
		outs []string
		want string
	}{
		{[]string{"nope"}, `tensor "nope": no such tensor in the main graph`},
		{[]string{"nope", "h", "also_missing"}, `"also_missing"`},
	} {
		_, err := NewSessionForModel(m, c.outs, Config{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `graph "mlp"`) {
			t.Errorf("outputs %v: error %v, want one containing %q and the model", c.outs, err, c.want)
		}
	}
	if _, err := NewSession(encode(t, m), []string{}, Config{}); err == nil || !strings.Contains(err.Error(), "no outputs") {
		t.Errorf("empty output list: %v", err)
	}

	// A tensor whose type nothing determines: an op shape inference does
	// not know, with no value_info.
	g := proto.Clone(m.Graph()).(*onnxpb.GraphProto)
	g.Node = append(g.Node, &onnxpb.NodeProto{OpType: ptr("Mystery"), Domain: ptr("com.example"), Input: []string{"y"}, Output: []string{"z"}})
	odd := model(17, g)
	odd.Proto.OpsetImport = append(odd.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: ptr("com.example"), Version: ptr(int64(1))})
	_, err := NewSessionForModel(odd, []string{"z"}, Config{})
	if err == nil || !strings.Contains(err.Error(), `tensor "z": cannot determine its element type`) {
		t.Errorf("untyped hidden tensor: %v", err)
	}
	// With value_info it is known (and then ORT rejects the unknown op,
	// with the model named).
	g.ValueInfo = append(g.ValueInfo, vi("z", onnxio.Float, -1, 3))
	_, err = NewSessionForModel(model(17, g), []string{"z"}, Config{})
	if err == nil || !strings.Contains(err.Error(), "creating ORT session") || !strings.Contains(err.Error(), "Mystery") {
		t.Errorf("unknown op: %v", err)
	}
}

func TestInputValidation(t *testing.T) {
	s := mustSession(t)(NewSessionForModel(whereModel(), nil, Config{}))
	ok := func() []Tensor {
		return []Tensor{
			{Name: "cond", Shape: []int64{1, 3}, Data: []bool{true, false, true}},
			{Name: "a", Shape: []int64{1, 3}, Data: []float32{1, 2, 3}},
			{Name: "b", Shape: []int64{1, 3}, Data: []float32{3, 2, 1}},
		}
	}
	mustRun(t, s, ok()...)
	cases := []struct {
		name string
		edit func([]Tensor) []Tensor
		want []string
	}{
		{"unknown name", func(in []Tensor) []Tensor { in[0].Name = "c"; return in },
			[]string{`input "c": the model has no such input`, `input "cond" (cond bool[-1 3]): missing`}},
		{"missing", func(in []Tensor) []Tensor { return in[1:] }, []string{`input "cond" (cond bool[-1 3]): missing`}},
		{"twice", func(in []Tensor) []Tensor { return append(in, in[1]) }, []string{`input "a": given more than once`}},
		{"dtype", func(in []Tensor) []Tensor { in[1].Data = []float64{1, 2, 3}; return in },
			[]string{`input "a": element type float64, the model wants float32`}},
		{"dtype field", func(in []Tensor) []Tensor { in[1].DType = onnxio.Int32; return in },
			[]string{`input "a": DType int32 does not match Data of type []float32`}},
		{"rank", func(in []Tensor) []Tensor { in[2].Shape = []int64{3}; return in },
			[]string{`input "b": shape [3] has rank 1, the model wants rank 2 [-1 3]`}},
		{"static dim", func(in []Tensor) []Tensor {
			in[2].Shape = []int64{3, 1}
			return in
		}, []string{`input "b": shape [3 1]: dimension 1 is 1, the model wants 3`}},
		{"length", func(in []Tensor) []Tensor { in[0].Data = []bool{true}; return in },
			[]string{`input "cond": shape [1 3] holds 3 elements, Data has 1`}},
		{"go type", func(in []Tensor) []Tensor { in[0].Data = []string{"x"}; return in },
			[]string{`input "cond": Data is []string`}},
		{"several", func(in []Tensor) []Tensor {
			in[0].Data = []int64{1, 2, 3}
			in[1].Shape = []int64{2, 3}
			return in
		}, []string{"2 input problems", `input "cond": element type int64`, `input "a": shape [2 3] holds 6`}},
	}
	for _, c := range cases {
		_, err := s.Run(c.edit(ok())...)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
		if !strings.Contains(err.Error(), `model (graph "where"): run:`) {
			t.Errorf("%s: error %q does not name the model and operation", c.name, err)
		}
	}
}

func TestThreadsAndProviders(t *testing.T) {
	b := encode(t, mlpModel())
	s := mustSession(t)(NewSession(b, nil, Config{Threads: 1, Provider: "CPU"}))
	mustRun(t, s, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
	// A short-lived session (no memory pattern) computes the same, run after run.
	short := mustSession(t)(NewSession(b, nil, Config{Threads: 1, ShortLived: true}))
	_, _, y := mlpExpect(mlpX, 3)
	for range 3 {
		out := mustRun(t, short, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
		closeTo(t, "y (short-lived)", out[0].Data.([]float32), y)
	}

	if _, err := NewSession(b, nil, Config{Threads: -2}); err == nil || !strings.Contains(err.Error(), "negative thread count") {
		t.Errorf("negative threads: %v", err)
	}
	if _, err := NewSession(b, nil, Config{Provider: "tpu"}); err == nil || !strings.Contains(err.Error(), `unknown execution provider "tpu" (known: cpu, cuda)`) {
		t.Errorf("unknown provider: %v", err)
	}
	_, err := NewSession(b, nil, Config{Provider: "cuda"})
	if err == nil {
		t.Fatal("provider cuda succeeded without the CUDA provider library")
	}
	for _, w := range []string{"libonnxruntime_providers_cuda.so", "not found next to the ONNX Runtime library", "CPU provider, which is the default"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("provider cuda: error %q lacks %q", err, w)
		}
	}
}

// TestCUDAProviderLoadFails puts a fake CUDA provider library next to (a
// link to) the real ORT library: ORT's failure must come back as an error.
func TestCUDAProviderLoadFails(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.Symlink(LibraryPath(), lib); err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(dir, "libonnxruntime_providers_cuda.so"))
	out, ok := helper(t, "cuda", EnvLibrary+"="+lib)
	// ORT fails while loading provider libraries; which call reports it
	// depends on the ORT version.
	if ok || !strings.Contains(out, "provider cuda:") || !strings.Contains(out, "(device 1)") || !strings.Contains(out, "Failed to load library") {
		t.Errorf("got:\n%s", out)
	}
}

func TestConcurrentSessions(t *testing.T) {
	s1 := mustSession(t)(NewSessionForModel(mlpModel(), []string{"h"}, Config{Threads: 1}))
	s2 := mustSession(t)(NewSessionForModel(gatherModel(), nil, Config{Threads: 1}))
	_, h, y := mlpExpect(mlpX, 3)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				out, err := s1.Run(Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
				if err != nil {
					errs <- err.Error()
					return
				}
				if !reflect.DeepEqual(out[0].Shape, []int64{3, 3}) || len(out[1].Data.([]float32)) != len(h) {
					errs <- "mlp: wrong result"
					return
				}
				for k, v := range out[0].Data.([]float32) {
					if math.Abs(float64(v-y[k])) > 1e-4 {
						errs <- "mlp: wrong value"
						return
					}
				}
			}
		}()
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				idx := []int64{int64((g + i) % 5)}
				out, err := s2.Run(Tensor{Name: "idx", Shape: []int64{1}, Data: idx})
				if err != nil {
					errs <- err.Error()
					return
				}
				if want := gatherTable[2*idx[0] : 2*idx[0]+2]; !reflect.DeepEqual(out[0].Data, want) {
					errs <- "gather: wrong value"
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestDestroy(t *testing.T) {
	s, err := NewSession(encode(t, mlpModel()), nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if _, err := s.Run(Tensor{Name: "x", Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}); err == nil || !strings.Contains(err.Error(), "destroyed") {
		t.Errorf("Run after Destroy: %v", err)
	}
}

func TestBadModelBytes(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("not a model at all")} {
		if _, err := NewSession(b, nil, Config{}); err == nil || !strings.Contains(err.Error(), "ort: new session:") {
			t.Errorf("NewSession(%q): %v", b, err)
		}
	}
}

func TestScalarOfUnknownRank(t *testing.T) {
	m := halfModel()
	// Declare "total" with its type only: nothing tells the rank.
	m.Graph().Output[1] = typeOnly("total", onnxio.Float)
	s := mustSession(t)(NewSessionForModel(m, nil, Config{}))
	_, err := s.Run(Tensor{Name: "x", Shape: []int64{2, 3}, Data: make([]uint16, 6)})
	if err == nil || !strings.Contains(err.Error(), "an output of unknown rank is a scalar") {
		t.Errorf("got %v", err)
	}
}

func TestExternalData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mlp.onnx")
	if err := mlpModel().Save(path, &onnxio.SaveOptions{ExternalData: "mlp.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !m.HasExternalData() {
		t.Fatal("the test model has no external data")
	}
	s := mustSession(t)(NewSessionForModel(m, []string{"h"}, Config{}))
	out := mustRun(t, s, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
	_, h, y := mlpExpect(mlpX, 3)
	closeTo(t, "y", out[0].Data.([]float32), y)
	closeTo(t, "h", out[1].Data.([]float32), h)

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSession(b, nil, Config{}); err == nil || !strings.Contains(err.Error(), "NewSessionForModel") {
		t.Errorf("NewSession with external data: %v", err)
	}
	// Errors name the file.
	if _, err := NewSessionForModel(m, []string{"nope"}, Config{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the file: %v", err)
	}
}

// RunInto must leave every output in the caller's memory, reuse it across
// runs, and refuse buffers of the wrong shape or type, naming the output.
func TestRunInto(t *testing.T) {
	s := mustSession(t)(NewSessionForModel(mlpModel(), []string{"h"}, Config{}))
	_, h, y := mlpExpect(mlpX, 3)
	yb, hb := make([]float32, 9), make([]float32, 9)
	outs := []Tensor{{DType: onnxio.Float, Shape: []int64{3, 3}, Data: yb}, {DType: onnxio.Float, Shape: []int64{3, 3}, Data: hb}}
	for run := 0; run < 2; run++ {
		clear(yb)
		clear(hb)
		if err := s.RunInto(outs, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX}); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "y", yb, y)
		closeTo(t, "h", hb, h)
	}
	// Two rows into the first rows of the same buffers.
	two := []Tensor{{DType: onnxio.Float, Shape: []int64{2, 3}, Data: yb[:6]}, {DType: onnxio.Float, Shape: []int64{2, 3}, Data: hb[:6]}}
	clear(yb)
	if err := s.RunInto(two, Tensor{Name: "x", Shape: []int64{2, 4}, Data: mlpX[:8]}); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "y rows", yb[:6], y[:6])
	for _, c := range []struct {
		outs []Tensor
		want string
	}{
		{outs[:1], "1 output buffers for 2 outputs"},
		{[]Tensor{outs[0], {DType: onnxio.Float, Shape: []int64{3, 4}, Data: make([]float32, 12)}}, `"h"`},
		{[]Tensor{outs[0], {DType: onnxio.Double, Shape: []int64{3, 3}, Data: make([]float64, 9)}}, "element type"},
		{[]Tensor{outs[0], {DType: onnxio.Float, Shape: []int64{3, 3}, Data: make([]float32, 8)}}, "holds 9 elements"},
	} {
		err := s.RunInto(c.outs, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error with %q", err, c.want)
		}
	}
}

// A model with external data reaches ORT as its graph and references:
// the weights stay in their file, which ORT maps, so models over the 2 GiB
// protobuf limit run and no copy of the weights passes through Go.
func TestExternalDataStaysOnDisk(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mlp.onnx")
	if err := mlpModel().Save(path, &onnxio.SaveOptions{ExternalData: "mlp.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, dataDir, err := serialize(m)
	if err != nil {
		t.Fatal(err)
	}
	if abs, _ := filepath.Abs(dir); dataDir != abs {
		t.Errorf("data directory %q, want %q", dataDir, abs)
	}
	w := floatInit("W", []int64{4, 3}, mlpW).RawData
	if bytes.Contains(raw, w) {
		t.Error("the serialized model holds the weights inline")
	}
	s := mustSession(t)(NewSessionForModel(m, nil, Config{}))
	out := mustRun(t, s, Tensor{Name: "x", Shape: []int64{3, 4}, Data: mlpX})
	_, _, y := mlpExpect(mlpX, 3)
	closeTo(t, "y", out[0].Data.([]float32), y)

	// Data that is not where the references say is reported by tensor
	// and file before ORT sees it.
	data := filepath.Join(dir, "mlp.data")
	full, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		setup func() error
		want  []string
	}{
		{"truncated", func() error { return os.WriteFile(data, full[:len(full)-4], 0o644) }, []string{`"b"`, "mlp.data", "holds"}},
		{"missing", func() error { return os.Remove(data) }, []string{`"W"`, "mlp.data", "no such file"}},
	} {
		if err := c.setup(); err != nil {
			t.Fatal(err)
		}
		_, err := NewSessionForModel(m, nil, Config{})
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s data file: got %v, want an error with %s", c.name, err, w)
			}
		}
	}
	// Without a directory the references cannot be resolved.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := onnxio.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSessionForModel(dm, nil, Config{}); err == nil || !strings.Contains(err.Error(), "decoded from bytes") {
		t.Errorf("model from bytes with external data: %v", err)
	}
}

// A model with edits spilled to a scratch directory runs with the edits:
// ORT finds the linked original data and the spill file in one directory.
func TestScratchModelRuns(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mlp.onnx")
	if err := mlpModel().Save(path, &onnxio.SaveOptions{ExternalData: "mlp.data", ExternalThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	work, scratch, err := onnxio.NewScratch(m, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer scratch.Close()
	scratch.Threshold = 1
	// Double W; b stays in the original file.
	edited := work.Clone()
	w2 := make([]float32, len(mlpW))
	for i, v := range mlpW {
		w2[i] = 2 * v
	}
	edited.Graph().Initializer[0] = floatInit("W", []int64{4, 3}, w2)
	if err := edited.Spill(); err != nil {
		t.Fatal(err)
	}
	if edited.Graph().Initializer[0].GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
		t.Fatal("the edited W was not spilled")
	}
	s := mustSession(t)(NewSessionForModel(edited, nil, Config{}))
	out := mustRun(t, s, Tensor{Name: "x", Shape: []int64{1, 4}, Data: mlpX[:4]})
	want := make([]float32, 3)
	for j := range want {
		v := mlpB[j]
		for i := 0; i < 4; i++ {
			v += mlpX[i] * w2[i*3+j]
		}
		want[j] = max(v, 0)
	}
	closeTo(t, "y of the edited model", out[0].Data.([]float32), want)
}
