package exports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirFromEnvironment(t *testing.T) {
	t.Setenv(EnvDir, "/somewhere/zoo")
	if d, err := Dir(); err != nil || d != "/somewhere/zoo" {
		t.Errorf("Dir() = %q, %v; want the environment's", d, err)
	}
	t.Setenv(EnvDir, "")
	t.Setenv("XDG_CACHE_HOME", "/cache")
	if d, err := Dir(); err != nil || d != filepath.Join("/cache", "onnx-cria", "exports") {
		t.Errorf("Dir() = %q, %v; want under XDG_CACHE_HOME", d, err)
	}
}

func TestLoadManifest(t *testing.T) {
	dir := t.TempDir()
	man := `{"stamp": "x", "models": [{"name": "gpt2_opset17", "issue18_items": [1], "opsets": {"ai.onnx": 17},
		"inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}],
		"outputs": [{"name": "logits", "dtype": "float", "shape": ["batch", "sequence", 512]}], "float_params": 169728}]}`
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(man), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := Load(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Path() != filepath.Join(dir, "gpt2_opset17", "model.onnx") || ms[0].Calib() != filepath.Join(dir, "gpt2_opset17", "calib.npz") ||
		ms[0].Items[0] != 1 || ms[0].Inputs[0].Shape[1] != "sequence" || ms[0].Outputs[0].Shape[2] != float64(512) {
		t.Errorf("Load: %+v", ms)
	}
	if _, err := Load(dir, true); err == nil {
		t.Error("Load(bench) without manifest-bench.json: no error")
	}
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{"), 0o644)
	if _, err := Load(dir, false); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("a corrupt manifest: %v, want an error naming the file", err)
	}
}
