package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/shrink"
)

func TestMain(m *testing.M) {
	if err := ort.Init(ort.Config{}); err != nil {
		fmt.Fprintf(os.Stderr, "CLI tests need ONNX Runtime; run scripts/setup-ort.sh first.\n%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

const (
	lmModel = "../../testdata/models/llama/model.onnx"
	lmCalib = "../../testdata/data/llama_calib.npz"
	lmEval  = "../../testdata/data/llama_eval.npz"
)

func cli(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, c := range commands {
		code, out, errOut := cli(c.name, "--help")
		if code != 0 || !strings.Contains(out+errOut, "usage: onnx-cria "+c.name) {
			t.Errorf("%s --help: exit %d, output %q", c.name, code, out+errOut)
		}
	}
	if code, out, _ := cli("help"); code != 0 || !strings.Contains(out, "shrink") {
		t.Errorf("help: exit %d", code)
	}
	if code, _, _ := cli(); code != 2 {
		t.Errorf("no arguments: exit %d, want 2", code)
	}
	if code, _, errOut := cli("frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: exit %d %q", code, errOut)
	}
	if code, _, _ := cli("shrink", "a.onnx"); code != 2 {
		t.Errorf("missing argument: exit %d, want 2", code)
	}
	if code, _, _ := cli("inspect", "--bogus", lmModel); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
}

func TestBadModels(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(lmModel)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty.onnx":     {},
		"truncated.onnx": good[:len(good)/3],
		"text.onnx":      []byte("this is not a model\n"),
	}
	for name, b := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"inspect", p}, {"eval", p, lmEval}, {"shrink", p, filepath.Join(dir, "out.onnx"), "--target", "0.3", "--calib", lmCalib}} {
			code, _, errOut := cli(args...)
			if code != 1 || !strings.Contains(errOut, p) {
				t.Errorf("%v: exit %d, stderr %q: want 1 and the file named", args, code, errOut)
			}
		}
	}
	if code, _, errOut := cli("inspect", filepath.Join(dir, "missing.onnx")); code != 1 || !strings.Contains(errOut, "missing.onnx") {
		t.Errorf("missing file: exit %d %q", code, errOut)
	}
	assertNoTemp(t, dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") || e.Name() == "out.onnx" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestShrinkSafety(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.onnx")
	b, _ := os.ReadFile(lmModel)
	os.WriteFile(in, b, 0o644)
	code, _, errOut := cli("shrink", in, in, "--target", "0.3", "--calib", lmCalib)
	if code != 1 || !strings.Contains(errOut, "never overwrites") {
		t.Errorf("out == in: exit %d %q", code, errOut)
	}
	link := filepath.Join(dir, "link.onnx")
	os.Symlink(in, link)
	if code, _, errOut := cli("shrink", in, link, "--target", "0.3", "--calib", lmCalib); code != 1 || !strings.Contains(errOut, "symbolic link") {
		t.Errorf("out links to in: exit %d %q", code, errOut)
	}
	if code, _, errOut := cli("shrink", in, filepath.Join(dir, "o.onnx"), "--target", "0.3"); code != 1 || !strings.Contains(errOut, "np.savez_compressed") {
		t.Errorf("no calibration: exit %d %q", code, errOut)
	}
	if code, _, _ := cli("shrink", in, filepath.Join(dir, "o.onnx"), "--target", "1.5", "--calib", lmCalib); code != 2 {
		t.Errorf("bad target: exit %d, want 2", code)
	}
	if code, _, errOut := cli("shrink", in, filepath.Join(dir, "o.onnx"), "--target", "0.3", "--calib", lmCalib, "--round-to", "fast"); code != 2 || !strings.Contains(errOut, "auto") {
		t.Errorf("bad --round-to: exit %d %q, want 2", code, errOut)
	}
	// Data that does not fit the model: the error names the array.
	bad := filepath.Join(dir, "bad.npz")
	writeNPZ(t, bad)
	if code, _, errOut := cli("shrink", in, filepath.Join(dir, "o.onnx"), "--target", "0.3", "--calib", bad); code != 1 || !strings.Contains(errOut, "input_ids") {
		t.Errorf("mismatched data: exit %d %q", code, errOut)
	}
	after, _ := os.ReadFile(in)
	if !bytes.Equal(after, b) {
		t.Error("the input model was modified")
	}
	assertNoTemp(t, dir)
}

func TestShrinkEndToEnd(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "small.onnx")
	rep := filepath.Join(dir, "report.json")
	code, stdout, errOut := cli("shrink", lmModel, out, "--target", "0.2", "--calib", lmCalib, "--samples", "64",
		"--eval", lmEval, "--report", rep, "--quiet", "--no-latency", "--threads", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if errOut != "" {
		t.Errorf("--quiet still wrote to stderr: %q", errOut)
	}
	if !strings.Contains(stdout, "effective reduction") || !strings.Contains(stdout, "perplexity") {
		t.Errorf("report text lacks its numbers:\n%s", stdout)
	}
	var r struct {
		Reduction float64 `json:"effective_reduction"`
		Output    struct {
			Params int64  `json:"params"`
			SHA256 string `json:"sha256"`
		} `json:"output"`
		Options struct {
			Criterion string `json:"criterion"`
			Seed      int64  `json:"seed"`
		} `json:"options"`
	}
	b, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := m.ParamCount()
	if r.Reduction < 0.2 || r.Output.Params != p || r.Output.SHA256 != m.Hash || r.Options.Criterion != shrink.DefaultCriterion {
		t.Errorf("report %+v disagrees with the file (params %d, sha %s)", r, p, m.Hash)
	}
	code, stdout, _ = cli("inspect", "--groups", "--json", out)
	if code != 0 || !json.Valid([]byte(stdout)) {
		t.Errorf("inspect --json of the output: exit %d", code)
	}
}

// By default Conv channel counts stay multiples of ORT's blocked-kernel
// width on this CPU (all but at most one group, which may end off the block
// to land the target, with a warning), and the report records it.
func TestShrinkRoundsConvChannels(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cnn.onnx")
	code, stdout, errOut := cli("shrink", "../../testdata/models/cnn/model.onnx", out, "--target", "0.4",
		"--calib", "../../testdata/data/fmnist_calib.npz", "--samples", "128", "--quiet", "--no-latency", "--recover", "none", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r struct {
		Options struct {
			RoundTo  int `json:"round_to"`
			Channels int `json:"round_channels"`
		} `json:"options"`
		Groups []struct {
			Name   string `json:"name"`
			Kind   string `json:"kind"`
			After  int    `json:"width_after"`
			Pruned bool   `json:"pruned"`
		} `json:"groups"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	block := ort.ConvBlock("cpu")
	if r.Options.RoundTo != 1 || (block > 1 && r.Options.Channels != block) {
		t.Errorf("options %+v, want round_to 1 and round_channels %d", r.Options, block)
	}
	pruned, off := 0, 0
	for _, g := range r.Groups {
		if g.Pruned && g.Kind == "channels" {
			pruned++
			if g.After%block != 0 {
				off++
				if !strings.Contains(strings.Join(r.Warnings, "\n"), g.Name) {
					t.Errorf("group %s: width %d, not a multiple of %d, and no warning says so", g.Name, g.After, block)
				}
			}
		}
	}
	if pruned == 0 || off > 1 {
		t.Errorf("%d channel groups pruned, %d off the block", pruned, off)
	}
}

func TestEvalAndInspect(t *testing.T) {
	code, stdout, errOut := cli("eval", "--quiet", "--json", lmModel, lmEval)
	if code != 0 {
		t.Fatalf("eval: %s", errOut)
	}
	var r struct {
		Metric string  `json:"metric"`
		Value  float64 `json:"value"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Metric != "perplexity" || !(r.Value > 1) {
		t.Errorf("eval json %q (%v)", stdout, err)
	}
	code, stdout, _ = cli("inspect", "--groups", lmModel)
	if code != 0 || !strings.Contains(stdout, "kv-groups") || !strings.Contains(stdout, "validation: ok") {
		t.Errorf("inspect --groups:\n%s", stdout)
	}
}

// TestInternalError: a panic below the command line exits 1 with an
// "internal error" message and the stack only when ONNX_CRIA_TRACE is set.
func TestInternalError(t *testing.T) {
	saved := commands
	defer func() { commands = saved }()
	commands = append(commands[:len(commands):len(commands)], command{name: "boom", run: func([]string, io.Writer, io.Writer) error {
		var s []int
		_ = s[len(saved)] // an index out of range, as a bug would make
		return nil
	}})
	t.Setenv(traceEnv, "")
	code, _, stderr := cli("boom")
	if code != 1 || !strings.Contains(stderr, "onnx-cria boom: internal error") || !strings.Contains(stderr, "please report") ||
		!strings.Contains(stderr, "index out of range") || strings.Contains(stderr, "goroutine") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	t.Setenv(traceEnv, "1")
	code, _, stderr = cli("boom")
	if code != 1 || !strings.Contains(stderr, "goroutine") || !strings.Contains(stderr, "TestInternalError") {
		t.Errorf("with %s=1: exit %d, stderr %q", traceEnv, code, stderr)
	}
}

// inspect's group header counts the groups the default criterion can
// prune, and says how many of them are linear (the depthwise CNN's
// bottleneck channels, observed at the next layer's input), which the
// spectral criterion cannot score; a shrink with spectral leaves them.
func TestInspectGroupHeader(t *testing.T) {
	code, stdout, _ := cli("inspect", "--groups", "../../testdata/models/dwcnn/model.onnx")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	linear := strings.Count(stdout, "(linear: the values the next layer reads)")
	if linear != 2 || !strings.Contains(stdout, "groups: 11, 10 prunable (2 of them linear, which spectral cannot score)") {
		t.Errorf("header and rows disagree on the %d linear groups:\n%s", linear, stdout)
	}
	out := filepath.Join(t.TempDir(), "dw.onnx")
	code, stdout, errOut := cli("shrink", "../../testdata/models/dwcnn/model.onnx", out, "--target", "0.3", "--criterion", "spectral",
		"--calib", "../../testdata/data/fmnist_calib.npz", "--samples", "128", "--quiet", "--no-latency", "--recover", "none", "--json")
	if code != 0 {
		t.Fatalf("shrink --criterion spectral: exit %d: %s", code, errOut)
	}
	var r struct {
		Groups []struct {
			Name   string `json:"name"`
			Pruned bool   `json:"pruned"`
			Why    string `json:"not_pruned_because"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	for _, g := range r.Groups {
		if strings.Contains(g.Name, "project") && (g.Pruned || !strings.Contains(g.Why, "spectral needs")) {
			t.Errorf("spectral on linear group %s: pruned %v, why %q", g.Name, g.Pruned, g.Why)
		}
	}
}
