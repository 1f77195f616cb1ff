// Package exports finds, and makes when it can, the export zoo of
// testdata/exports: structure-only models with random weights in the shapes
// real exports have (dynamic sequence axes, old opsets, torchvision
// architectures, ONNX Runtime's fused ops, quantized weights, KV caches),
// each with its calibration data. The generator is Python (Debian's torch);
// the models live in a cache outside the repository. Tests and benchmarks
// use this package; the product does not.
package exports

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Python is the interpreter that Debian's python3-torch is installed for.
const Python = "/usr/bin/python3"

// EnvDir names the environment variable that overrides the cache directory.
const EnvDir = "ONNX_CRIA_EXPORTS"

// ErrUnavailable wraps the reason the zoo cannot be made here (no torch).
var ErrUnavailable = errors.New("the export zoo cannot be generated here")

// Value is a graph input or output as the generator recorded it; a string
// in Shape is a symbolic dimension.
type Value struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []any  `json:"shape"`
}

// Model is one entry of the zoo.
type Model struct {
	Name      string           `json:"name"`
	Exercises string           `json:"exercises"`
	Items     []int            `json:"issue18_items"`
	Opsets    map[string]int64 `json:"opsets"`
	Inputs    []Value          `json:"inputs"`
	Outputs   []Value          `json:"outputs"`
	Params    int64            `json:"float_params"`
	Bytes     int64            `json:"bytes"`
	Dir       string           `json:"-"`
}

// Path is the model file.
func (m Model) Path() string { return filepath.Join(m.Dir, "model.onnx") }

// Calib is the calibration data, arrays named after the inputs.
func (m Model) Calib() string { return filepath.Join(m.Dir, "calib.npz") }

// Dir returns $ONNX_CRIA_EXPORTS, or onnx-cria/exports in the user's cache
// directory (the generator's default too).
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, "onnx-cria", "exports"), nil
}

// Set names a set of the zoo's models: Small (the test matrix), Bench
// (vit_b_16 and mobilenet_v3_small at 224x224) and Torchvision (the
// torchvision structures of the latency benchmark).
type Set string

const (
	Small       Set = ""
	Bench       Set = "bench"
	Torchvision Set = "torchvision"
)

// manifest is the file the generator lists the set's models in.
func (s Set) manifest() string {
	if s == Small {
		return "manifest.json"
	}
	return "manifest-" + string(s) + ".json"
}

// Ensure runs the generator (repo is the repository root) so that the cache
// holds every model of the set, and returns them. Models already generated
// by the same generator are kept, so a second call costs the interpreter's
// start only. When torch cannot be imported the error wraps ErrUnavailable
// and says what to install.
func Ensure(repo string, set Set) ([]Model, error) {
	script := filepath.Join(repo, "testdata", "exports", "generate.py")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if out, err := exec.Command(Python, "-c", "import torch, torchvision, onnx, numpy").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: torch, torchvision, onnx and numpy are not importable by %s (apt-get install python3-torch python3-torchvision python3-onnx): %v %s",
			ErrUnavailable, Python, err, lastLine(out))
	}
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	args := []string{script, "--dir", dir}
	if set != Small {
		args = append(args, "--set", string(set))
	}
	cmd := exec.Command(Python, args...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s failed: %v\n%s", script, err, out)
	}
	return Load(dir, set)
}

// Load reads the manifest of a set that the generator wrote into dir.
func Load(dir string, set Set) ([]Model, error) {
	name := set.manifest()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	var man struct {
		Models []Model `json:"models"`
	}
	if err := json.Unmarshal(b, &man); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	for k := range man.Models {
		man.Models[k].Dir = filepath.Join(dir, man.Models[k].Name)
	}
	return man.Models, nil
}

func lastLine(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	for k := len(b) - 1; k >= 0; k-- {
		if b[k] == '\n' {
			return string(b[k+1:])
		}
	}
	return string(b)
}
