package rewrite

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// raceDetector is set when the tests are built with -race.
var raceDetector bool

// Real architectures with random weights: torchvision's resnet18 (residual
// Adds with downsampling projections) and mobilenet_v2 (depthwise convs,
// ReLU6 as Clip, inverted residuals), exported by
// testdata/models/torchvision_structs.py at opsets 11 and 17. The exports
// are not committed; this test makes them when Debian's torch is installed.
func TestTorchvision(t *testing.T) {
	if testing.Short() {
		t.Skip("exports and checks two torchvision models at two opsets; skipped in -short mode")
	}
	if raceDetector {
		// About 80 s without the race detector on two cores, 7 minutes with
		// it (the detector tracks every copy of the 47 MB resnet18).
		t.Skip("too slow under the race detector; run go test ./rewrite -run TestTorchvision")
	}
	const python = "/usr/bin/python3"
	script := filepath.Join("..", "testdata", "models", "torchvision_structs.py")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("%s is missing: %v", script, err)
	}
	if err := exec.Command(python, "-c", "import torch, torchvision, onnx").Run(); err != nil {
		t.Skipf("torch, torchvision and onnx are not importable by %s (apt-get install python3-torch python3-torchvision python3-onnx): %v", python, err)
	}
	dir := t.TempDir()
	// A small input keeps ORT quick; the structure does not depend on it.
	cmd := exec.Command(python, script, dir, "--size", "32")
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s failed: %v\n%s", script, err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest []struct {
		Name  string `json:"name"`
		File  string `json:"file"`
		Opset int64  `json:"opset"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	seen := map[string]bool{}
	for _, e := range manifest {
		seen[e.Name] = true
		t.Run(strings.TrimSuffix(e.File, ".onnx"), func(t *testing.T) {
			t.Parallel() // ORT sessions run one thread each: use the cores
			m, err := onnxio.Load(filepath.Join(dir, e.File))
			if err != nil {
				t.Fatal(err)
			}
			if m.Opset("") != e.Opset {
				t.Errorf("opset %d, manifest says %d", m.Opset(""), e.Opset)
			}
			a, err := Analyze(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			// Every conv layer's channels are prunable except where a
			// residual sum ties them to the stem or block outputs: the only
			// blocked group is the classifier (it reaches the output).
			for _, g := range a.Groups {
				if !g.Prunable() && !strings.HasPrefix(g.Name, "fc:") && !strings.HasPrefix(g.Name, "classifier") {
					t.Errorf("group %s is blocked: %v", g.Name, g.Blocked)
				}
			}
			if len(a.Skipped) > 0 {
				t.Errorf("ops without rules: %+v", a.Skipped)
			}
			want := map[string]int{"resnet18": 12, "mobilenet_v2": 25}[e.Name]
			if n := len(a.Prunable()); n != want {
				t.Errorf("%d prunable groups, want %d:\n%s", n, want, summary(a))
			}
			checkModel(t, m)
		})
	}
	for _, name := range []string{"resnet18", "mobilenet_v2"} {
		if !seen[name] {
			t.Errorf("the script made no %s", name)
		}
	}
}
