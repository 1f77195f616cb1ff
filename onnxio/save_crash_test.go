package onnxio_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// crashEnv makes the test binary a child that saves the new model of a
// crash case and exits at one step of Save (see crashChild).
const crashEnv = "ONNXIO_SAVE_CRASH"

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashEnv); spec != "" {
		os.Exit(crashChild(spec))
	}
	os.Exit(m.Run())
}

// crashCase is an old model at m.onnx replaced by a new one.
type crashCase struct {
	name     string
	old, new *onnxio.SaveOptions // nil: inline
	files    []string            // what the directory holds after a complete Save
	loaded   bool                // the new model is loaded from a file with external data
}

var crashCases = []crashCase{
	{"same data name", ext("m.onnx.data", 1), ext("m.onnx.data", 400), []string{"m.onnx", "m.onnx.data"}, false},
	{"default data name", ext("m.onnx.data", 400), nil, []string{"m.onnx", "m.onnx.data"}, true},
	{"inline to external", nil, ext("w.data", 400), []string{"m.onnx", "w.data"}, false},
	{"new data name", ext("a.data", 1), ext("b.data", 400), []string{"b.data", "m.onnx"}, false},
	{"external to inline", ext("a.data", 1), nil, []string{"m.onnx"}, false},
}

func ext(name string, threshold int64) *onnxio.SaveOptions {
	return &onnxio.SaveOptions{ExternalData: name, ExternalThreshold: threshold}
}

// models returns the old model and the new one: the same graph with every
// float weight doubled, so that their outputs differ.
func models(t testing.TB) (old, new *onnxio.Model) {
	old, err := onnxio.Load(filepath.Join("testdata", "conv_bn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	new = old.Clone()
	for _, init := range new.Graph().Initializer {
		if onnxio.DataType(init.GetDataType()) != onnxio.Float {
			continue
		}
		v, err := new.Float64s(init)
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			v[i] = 2*v[i] + 0.5
		}
		raw, err := onnxio.EncodeFloat64s(onnxio.Float, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := onnxio.SetRawData(init, init.Dims, raw); err != nil {
			t.Fatal(err)
		}
	}
	return old, new
}

// newModel is case c's new model: new itself, or, for c.loaded, new saved
// with external data into src and loaded from there.
func newModel(t testing.TB, c crashCase, new *onnxio.Model, src string) *onnxio.Model {
	if !c.loaded {
		return new
	}
	p := filepath.Join(src, "src.onnx")
	if _, err := os.Stat(p); err != nil {
		if err := new.Save(p, ext("src.data", 1)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := onnxio.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// crashChild saves case spec's new model into its directory and exits with
// status 3 at the step'th step of Save, as a process killed there would,
// with nothing cleaned up; it prints "done" if Save has fewer steps.
// spec is "dir|step|case|src".
func crashChild(spec string) int {
	var c crashCase
	parts := strings.SplitN(spec, "|", 4)
	step, _ := strconv.Atoi(parts[1])
	for _, cc := range crashCases {
		if cc.name == parts[2] {
			c = cc
		}
	}
	_, new := models(fatalTB{})
	new = newModel(fatalTB{}, c, new, parts[3])
	n := 0
	onnxio.SetSaveFault(func(name string) error {
		if n++; n == step {
			fmt.Println("crash after:", name)
			os.Exit(3)
		}
		return nil
	})
	if err := new.Save(filepath.Join(parts[0], "m.onnx"), c.new); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("done")
	return 0
}

// TestSaveCrashSafe: a Save killed after any of its steps, or failing
// there, leaves m.onnx loading, valid and running in ONNX Runtime as the
// old model or as the new one, never a mixture (a model with the other's
// data); the next Save completes and leaves exactly the new model's files.
func TestSaveCrashSafe(t *testing.T) {
	if err := ort.Init(ort.Config{}); err != nil {
		t.Fatalf("this test runs the saved models in ONNX Runtime; run scripts/setup-ort.sh first: %v", err)
	}
	old, new := models(t)
	x := make([]float32, 2*3*8*8)
	for i := range x {
		x[i] = float32(i%17)/8 - 1
	}
	oldOut, newOut := run(t, old, x), run(t, new, x)
	if slices.Equal(oldOut, newOut) {
		t.Fatal("old and new models give the same outputs")
	}
	for _, c := range crashCases {
		t.Run(c.name, func(t *testing.T) {
			src := t.TempDir()
			new := newModel(t, c, new, src)
			steps := 0
			for step := 1; ; step++ {
				dir := t.TempDir()
				out := filepath.Join(dir, "m.onnx")
				if err := old.Save(out, c.old); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), crashEnv+"="+dir+"|"+strconv.Itoa(step)+"|"+c.name+"|"+src)
				msg, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 3) {
					t.Fatalf("child: %v\n%s", err, msg)
				}
				where := strings.TrimSpace(string(msg))
				consistent(t, where, out, x, oldOut, newOut)
				if err := new.Save(out, c.new); err != nil {
					t.Fatalf("%s; then Save: %v", where, err)
				}
				want := c.files
				if where == "crash after: model renamed" {
					// Killed once the new model was in place but before the
					// replaced model's data was removed: nothing uses it now,
					// and nothing tells a later Save that it may go.
					want = oldFiles(c)
				}
				if got := files(t, dir); !slices.Equal(got, want) {
					t.Errorf("%s; then Save: the directory holds %v, want %v", where, got, want)
				}
				if y := run(t, load(t, out), x); !slices.Equal(y, newOut) {
					t.Errorf("%s; then Save: not the new model", where)
				}
				if where == "done" {
					break
				}
				steps++
			}
			if steps < 2 {
				t.Errorf("Save took %d steps", steps)
			}
			// The same steps failing rather than crashing.
			for step := 1; step <= steps; step++ {
				dir := t.TempDir()
				out := filepath.Join(dir, "m.onnx")
				if err := old.Save(out, c.old); err != nil {
					t.Fatal(err)
				}
				n := 0
				onnxio.SetSaveFault(func(name string) error {
					if n++; n == step {
						return errors.New("failed after " + name)
					}
					return nil
				})
				err := new.Save(out, c.new)
				onnxio.SetSaveFault(nil)
				if err == nil {
					t.Fatalf("step %d: Save did not fail", step)
				}
				consistent(t, err.Error(), out, x, oldOut, newOut)
			}
		})
	}
}

// consistent checks that the model at out loads, validates, and runs as
// the old or the new model.
func consistent(t *testing.T, where, out string, x, oldOut, newOut []float32) {
	t.Helper()
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := onnxio.Validate(m); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if y := run(t, m, x); !slices.Equal(y, oldOut) && !slices.Equal(y, newOut) {
		t.Fatalf("%s: the model on disk runs as neither the old nor the new model", where)
	}
}

// oldFiles is what the directory holds after a Save of c that was killed
// just before tidying up: the new model's files and the old model's data.
func oldFiles(c crashCase) []string {
	names := slices.Clone(c.files)
	if c.old != nil && !slices.Contains(names, c.old.ExternalData) {
		names = append(names, c.old.ExternalData)
	}
	slices.Sort(names)
	return names
}

func load(t *testing.T, path string) *onnxio.Model {
	t.Helper()
	m, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run runs m in ONNX Runtime on a [2, 3, 8, 8] input.
func run(t *testing.T, m *onnxio.Model, x []float32) []float32 {
	t.Helper()
	s, err := ort.NewSessionForModel(m, nil, ort.Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	outs, err := s.Run(ort.Tensor{Name: "x", DType: onnxio.Float, Shape: []int64{2, 3, 8, 8}, Data: x})
	if err != nil {
		t.Fatal(err)
	}
	return outs[0].Data.([]float32)
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// fatalTB lets models run outside a test, in the child.
type fatalTB struct{ testing.TB }

func (fatalTB) Fatal(args ...any) {
	fmt.Println(args...)
	os.Exit(1)
}
