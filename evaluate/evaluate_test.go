package evaluate

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

func TestMain(m *testing.M) {
	if err := ort.Init(ort.Config{}); err != nil {
		fmt.Fprintf(os.Stderr, "evaluate tests need ONNX Runtime; run scripts/setup-ort.sh first.\n%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// Every fixture's metric, recorded by its generator with PyTorch, is
// reproduced through ONNX Runtime: the same number of correct predictions,
// or the same perplexity within 1e-3.
func TestFixtureMetrics(t *testing.T) {
	metas, _ := filepath.Glob("../testdata/models/*/meta.json")
	if len(metas) == 0 {
		t.Fatal("no fixtures")
	}
	for _, meta := range metas {
		b, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Task   string `json:"task"`
			Eval   string `json:"eval"`
			Metric struct {
				Name    string  `json:"name"`
				Value   float64 `json:"value"`
				Correct int     `json:"correct"`
				Total   int     `json:"total"`
				Tokens  int64   `json:"tokens"`
			} `json:"metric"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", meta, err)
		}
		dir := filepath.Dir(meta)
		models, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
		data, err := dataset.Load(filepath.Join(dir, m.Eval))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range models {
			t.Run(p, func(t *testing.T) {
				model, err := onnxio.Load(p)
				if err != nil {
					t.Fatal(err)
				}
				task := Classification
				if m.Task == "lm" {
					task = LanguageModel
				}
				r, err := Run(model, data, Options{Task: task, Batch: 50})
				if err != nil {
					t.Fatal(err)
				}
				switch m.Metric.Name {
				case "accuracy":
					if r.Correct != m.Metric.Correct || r.Total != m.Metric.Total {
						t.Errorf("%d/%d correct through ORT, %d/%d recorded", r.Correct, r.Total, m.Metric.Correct, m.Metric.Total)
					}
				case "perplexity":
					if math.Abs(r.Value-m.Metric.Value) > 1e-3*m.Metric.Value || r.Tokens != m.Metric.Tokens {
						t.Errorf("perplexity %.6f over %d tokens through ORT, %.6f over %d recorded", r.Value, r.Tokens, m.Metric.Value, m.Metric.Tokens)
					}
				default:
					t.Fatalf("unknown metric %q", m.Metric.Name)
				}
			})
		}
	}
}
