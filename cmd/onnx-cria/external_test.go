package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// A model with its weights in an external data file is shrunk out of core
// (edits spilled to a scratch directory, sessions mapping the files) and
// gives the same model as the same run on the inline file: the output is
// written with external data like its input, runs in ORT with the input's
// inputs and outputs, and the report compares model plus data files on
// both sides. The scratch directory is gone afterwards and the input's
// directory holds what it held.
func TestShrinkExternalData(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	inDir, outDir := filepath.Join(t.TempDir(), "in"), t.TempDir()
	os.Mkdir(inDir, 0o755)
	src, err := onnxio.Load(lmModel)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(inDir, "model.onnx")
	if err := src.Save(in, &onnxio.SaveOptions{ExternalData: "model.onnx.data"}); err != nil {
		t.Fatal(err)
	}
	args := []string{"--target", "0.3", "--calib", lmCalib, "--samples", "32", "--eval", lmEval, "--quiet", "--no-latency", "--threads", "1"}
	ext, inl := filepath.Join(outDir, "ext.onnx"), filepath.Join(outDir, "inline.onnx")
	rep := filepath.Join(outDir, "ext.json")
	if code, _, errOut := cli(append([]string{"shrink", in, ext, "--report", rep}, args...)...); code != 0 {
		t.Fatalf("external: exit %d: %s", code, errOut)
	}
	if code, _, errOut := cli(append([]string{"shrink", lmModel, inl, "--report", inl + ".json"}, args...)...); code != 0 {
		t.Fatalf("inline: exit %d: %s", code, errOut)
	}

	a, err := onnxio.Load(ext)
	if err != nil {
		t.Fatal(err)
	}
	b, err := onnxio.Load(inl)
	if err != nil {
		t.Fatal(err)
	}
	if !a.HasExternalData() || b.HasExternalData() {
		t.Errorf("layouts: external input gave external data %v, inline input %v", a.HasExternalData(), b.HasExternalData())
	}
	if files, _ := a.ExternalFiles(); !slices.Equal(files, []string{ext + ".data"}) {
		t.Errorf("the output's data files are %v", files)
	}
	// The same model: capture and refit sessions compute the same way
	// whether ORT maps the weights or gets them inline.
	va, vb := weights(t, a), weights(t, b)
	if len(va) != len(vb) {
		t.Fatalf("%d initializers out of core, %d in memory", len(va), len(vb))
	}
	for name, v := range vb {
		if d := maxDiff(va[name], v); d != 0 {
			t.Errorf("initializer %s differs between the two runs by %g", name, d)
		}
	}
	if ka, kb := kept(t, rep), kept(t, inl+".json"); !reflect.DeepEqual(ka, kb) {
		t.Errorf("other units kept out of core: %v, in memory: %v", ka, kb)
	}
	sameIO(t, src, a)

	var r struct {
		Input, Output struct {
			Bytes int64 `json:"bytes"`
		}
		Peak      int64            `json:"peak_rss_bytes"`
		Stages    map[string]int64 `json:"peak_rss_bytes_per_stage"`
		Agreement struct {
			Positions int64   `json:"positions"`
			Top1      float64 `json:"top1_agreement"`
			KL        float64 `json:"mean_kl_nats"`
		} `json:"agreement"`
	}
	raw, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Input.Bytes != fileSizes(t, in, in+".data") || r.Output.Bytes != fileSizes(t, ext, ext+".data") {
		t.Errorf("report bytes %d -> %d; the files hold %d -> %d", r.Input.Bytes, r.Output.Bytes, fileSizes(t, in, in+".data"), fileSizes(t, ext, ext+".data"))
	}
	if r.Peak <= 0 || r.Stages["capture"] <= 0 || r.Stages["save"] <= 0 || r.Stages["recover"] <= 0 {
		t.Errorf("peak memory missing from the report: %d %v", r.Peak, r.Stages)
	}
	if a := r.Agreement; a.Positions == 0 || a.Top1 <= 0 || a.Top1 > 1 || a.KL <= 0 {
		t.Errorf("agreement with the input: %+v", a)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
	if entries, _ := os.ReadDir(inDir); len(entries) != 2 {
		t.Errorf("the input's directory holds %v", entries)
	}
}

// weights maps a model's initializers to their bytes.
func weights(t *testing.T, m *onnxio.Model) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, w := range m.Graph().GetInitializer() {
		raw, err := m.RawData(w)
		if err != nil {
			t.Fatal(err)
		}
		out[w.GetName()] = raw
	}
	return out
}

// sameIO checks that b runs in ORT with a's inputs and outputs.
func sameIO(t testing.TB, a, b *onnxio.Model) {
	t.Helper()
	sa, err := ort.NewSessionForModel(a, nil, ort.Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Destroy()
	sb, err := ort.NewSessionForModel(b, nil, ort.Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy()
	if !slices.EqualFunc(sa.Inputs(), sb.Inputs(), sameInfo) || !slices.EqualFunc(sa.Outputs(), sb.Outputs(), sameInfo) {
		t.Errorf("I/O changed: %v -> %v, %v -> %v", sa.Inputs(), sb.Inputs(), sa.Outputs(), sb.Outputs())
	}
}

func sameInfo(a, b ort.Info) bool {
	return a.Name == b.Name && a.DType == b.DType && slices.Equal(a.Shape, b.Shape)
}

func fileSizes(t *testing.T, paths ...string) int64 {
	t.Helper()
	var n int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// maxDiff is the largest difference between two float32 tensors' values
// relative to 1 + |b|, or +Inf if their sizes differ.
func maxDiff(a, b []byte) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	fa, _ := onnxio.DecodeFloat64s(onnxio.Float, a)
	fb, _ := onnxio.DecodeFloat64s(onnxio.Float, b)
	d := 0.0
	for i := range fa {
		d = max(d, math.Abs(fa[i]-fb[i])/(1+math.Abs(fb[i])))
	}
	return d
}

// kept reads the kept units of every group from a report.
func kept(t *testing.T, report string) map[string][]int {
	t.Helper()
	var r struct {
		Groups []struct {
			Name string `json:"name"`
			Kept []int  `json:"kept"`
		} `json:"groups"`
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for _, g := range r.Groups {
		out[g.Name] = g.Kept
	}
	return out
}

// --max-memory refuses, before any work, a run whose estimate exceeds it,
// and says what to change; a malformed size is a usage error.
func TestShrinkMaxMemory(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.onnx")
	args := []string{"shrink", lmModel, out, "--target", "0.3", "--calib", lmCalib, "--samples", "32", "--no-latency", "--quiet"}
	code, _, errOut := cli(append(args, "--max-memory", "64K")...)
	if code != 1 || !strings.Contains(errOut, "--max-memory") || !strings.Contains(errOut, "weights alone") {
		t.Errorf("--max-memory 64K: exit %d %q", code, errOut)
	}
	code, _, errOut = cli(append(args, "--max-memory", "120M", "--batch", "64")...)
	if code != 1 || !strings.Contains(errOut, "lower --batch to") {
		t.Errorf("--max-memory 5M: exit %d %q", code, errOut)
	}
	if code, _, errOut := cli(append(args, "--max-memory", "lots")...); code != 2 || !strings.Contains(errOut, "6GiB") {
		t.Errorf("--max-memory lots: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a refused run wrote its output")
	}
}
