package finetune

import (
	"path/filepath"
	"testing"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

// BatchNormalization trains with batch statistics by default and its
// running statistics follow them; frozen, they stay. A run interrupted and
// resumed ends with the same statistics, bit for bit. The cnn fixture has
// BatchNormalization nodes in inference form.
func TestBatchNormRunning(t *testing.T) {
	needORT(t)
	m, data := loadFixture(t, "cnn", "fmnist_calib.npz")
	mean := ""
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "BatchNormalization" {
			mean = n.GetInput()[3]
			break
		}
	}
	if mean == "" {
		t.Fatal("the cnn fixture has no BatchNormalization node")
	}
	stat := func(mm *onnxio.Model) []float64 {
		v, err := mm.Float64s(onnxio.NewIndex(mm.Graph()).Init[mean])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, mode := range []string{autodiff.BNBatch, autodiff.BNFrozen} {
		base := Config{Batch: 32, Epochs: 2, BatchNorm: mode, MaxSamples: 96, Runtime: testRT}
		out, res, err := Run(m, data, base)
		if err != nil {
			t.Fatal(err)
		}
		before, after := stat(m), stat(out)
		moved := before[0] != after[0]
		if moved != (mode == autodiff.BNBatch) || res.BatchNorm != mode {
			t.Errorf("%s: running mean %v -> %v, result mode %q", mode, before[:2], after[:2], res.BatchNorm)
		}
		// Interrupted and resumed: the same statistics, bit for bit.
		cfg := base
		cfg.Checkpoint, cfg.MaxSteps = filepath.Join(t.TempDir(), "ck.npz"), 4
		if _, _, err := Run(m, data, cfg); err != nil {
			t.Fatal(err)
		}
		cfg.MaxSteps, cfg.Resume = 0, true
		again, _, err := Run(m, data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range stat(again) {
			if v != after[i] {
				t.Fatalf("%s: resumed running mean differs at %d: %v vs %v", mode, i, v, after[i])
			}
		}
	}
}
