package finetune

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

// blobs is a learnable 3-class problem: labels are the argmax of a fixed
// random linear map of the input.
func blobs(t testing.TB, n int, seed uint64) *dataset.Set {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 2))
	proj := uniform(rand.New(rand.NewPCG(99, 99)), -1, 1, 8*3)
	x := make([]float32, n*8)
	y := make([]int64, n)
	for i := 0; i < n; i++ {
		best, arg := math.Inf(-1), 0
		for c := 0; c < 3; c++ {
			var s float64
			for k := 0; k < 8; k++ {
				if c == 0 {
					x[i*8+k] = float32(r.NormFloat64())
				}
				s += float64(x[i*8+k]) * proj[k*3+c]
			}
			if s > best {
				best, arg = s, c
			}
		}
		y[i] = int64(arg)
	}
	xa, err := dataset.New("input", []int{n, 8}, x)
	if err != nil {
		t.Fatal(err)
	}
	ya, _ := dataset.New("labels", []int{n}, y)
	return &dataset.Set{Path: "blobs", Arrays: []*dataset.Array{xa, ya}}
}

func TestFinetuneLossDecreases(t *testing.T) {
	needORT(t)
	m := tinyMLP(t, 1)
	train, eval := blobs(t, 512, 1), blobs(t, 256, 2)
	for _, opt := range []string{"adam", "sgd"} {
		t.Run(opt, func(t *testing.T) {
			lr := map[string]float64{"adam": 0.01, "sgd": 0.05}[opt]
			out, res, err := Run(m, train, Config{Epochs: 3, Batch: 32, Optimizer: opt, LR: lr, Eval: eval, Seed: 1, Runtime: testRT})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Epochs) != 3 || res.Steps != 48 {
				t.Fatalf("epochs %d, steps %d", len(res.Epochs), res.Steps)
			}
			first, last := res.Epochs[0].Loss, res.Epochs[2].Loss
			t.Logf("%s: loss %.4f -> %.4f, accuracy %.3f -> %.3f", opt, first, last, res.EvalBefore.Value, res.EvalAfter.Value)
			if !(last < 0.7*first) {
				t.Errorf("training loss went from %.4f to %.4f", first, last)
			}
			if !(res.EvalAfter.Value > res.EvalBefore.Value+0.2) {
				t.Errorf("accuracy went from %.3f to %.3f", res.EvalBefore.Value, res.EvalAfter.Value)
			}
			if err := onnxio.Validate(out); err != nil {
				t.Fatal(err)
			}
			if len(out.Graph().GetInitializer()) != len(m.Graph().GetInitializer()) {
				t.Error("the output model lost initializers")
			}
		})
	}
}

func TestFinetuneDistill(t *testing.T) {
	needORT(t)
	teacher, _, err := Run(tinyMLP(t, 1), blobs(t, 512, 1), Config{Epochs: 4, Batch: 32, LR: 0.01, Seed: 3, Runtime: testRT})
	if err != nil {
		t.Fatal(err)
	}
	// No labels: the student learns from the teacher alone.
	x := blobs(t, 512, 4)
	x.Arrays = x.Arrays[:1]
	eval := blobs(t, 256, 2)
	_, res, err := Run(tinyMLP(t, 5), x, Config{Epochs: 4, Batch: 32, LR: 0.01, Teacher: teacher, Eval: eval, Seed: 3, Runtime: testRT})
	if err != nil {
		t.Fatal(err)
	}
	if res.Objective.KD != 1 || res.Objective.CE != 0 {
		t.Errorf("objective %v, want distillation only", res.Objective)
	}
	t.Logf("distilled: loss %.4f -> %.4f, accuracy %.3f -> %.3f", res.Epochs[0].Loss, res.Epochs[3].Loss, res.EvalBefore.Value, res.EvalAfter.Value)
	if !(res.Epochs[3].Loss < 0.5*res.Epochs[0].Loss) || !(res.EvalAfter.Value > res.EvalBefore.Value+0.2) {
		t.Error("distillation did not learn")
	}
}

func TestFinetuneNeedsLabelsOrTeacher(t *testing.T) {
	needORT(t)
	x := blobs(t, 64, 1)
	x.Arrays = x.Arrays[:1]
	_, _, err := Run(tinyMLP(t, 1), x, Config{Runtime: testRT})
	if err == nil || !strings.Contains(err.Error(), "labels") || !strings.Contains(err.Error(), "teacher") {
		t.Fatalf("error %v, want one about labels and a teacher", err)
	}
}

// A run stopped mid-epoch and resumed from its checkpoint ends with the
// same weights, bit for bit, and the same history as an uninterrupted run.
func TestFinetuneResume(t *testing.T) {
	needORT(t)
	m := tinyMLP(t, 1)
	train := blobs(t, 200, 1)
	dir := t.TempDir()
	for _, opt := range []string{"adam", "sgd"} {
		t.Run(opt, func(t *testing.T) {
			cfg := Config{Epochs: 3, Batch: 16, Optimizer: opt, WeightDecay: 0.01, Schedule: "cosine", Seed: 7, Runtime: testRT}
			full, fres, err := Run(m, train, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ck := filepath.Join(dir, opt+".ckpt.npz")
			part := cfg
			part.Checkpoint, part.MaxSteps = ck, 17 // 13 steps per epoch: stop inside epoch 2
			_, pres, err := Run(m, train, part)
			if err != nil {
				t.Fatal(err)
			}
			if !pres.Stopped {
				t.Fatal("the run did not stop at MaxSteps")
			}
			// A second interruption, then the rest.
			part.Resume, part.MaxSteps = true, 30
			if _, _, err = Run(m, train, part); err != nil {
				t.Fatal(err)
			}
			part.MaxSteps = 0
			resumed, rres, err := Run(m, train, part)
			if err != nil {
				t.Fatal(err)
			}
			if !rres.Resumed || rres.Steps != fres.Steps {
				t.Fatalf("resumed run: resumed %v, %d steps; uninterrupted %d", rres.Resumed, rres.Steps, fres.Steps)
			}
			for k := range fres.Epochs {
				if fres.Epochs[k].Loss != rres.Epochs[k].Loss {
					t.Errorf("epoch %d loss %v uninterrupted, %v resumed", k+1, fres.Epochs[k].Loss, rres.Epochs[k].Loss)
				}
			}
			a, _ := autodiff.ParamValues(full, []autodiff.Param{{Name: "fc1.weight"}, {Name: "fc2.bias"}})
			b, _ := autodiff.ParamValues(resumed, []autodiff.Param{{Name: "fc1.weight"}, {Name: "fc2.bias"}})
			for k := range a {
				for i := range a[k] {
					if math.Float32bits(a[k][i]) != math.Float32bits(b[k][i]) {
						t.Fatalf("weight %d[%d]: %v uninterrupted, %v resumed", k, i, a[k][i], b[k][i])
					}
				}
			}
			// A checkpoint of another configuration is refused.
			other := cfg
			other.Checkpoint, other.Resume, other.Batch = ck, true, 32
			if _, _, err := Run(m, train, other); err == nil || !strings.Contains(err.Error(), "batch size") {
				t.Errorf("resuming with another batch size: %v", err)
			}
		})
	}
}

// A learning rate that makes training blow up stops the run with the step
// and tensor named, and leaves the last good checkpoint as it was.
func TestFinetuneDiverges(t *testing.T) {
	needORT(t)
	x := blobs(t, 64, 1)
	ck := filepath.Join(t.TempDir(), "ck.npz")
	m := tinyMLP(t, 1)
	if _, _, err := Run(m, x, Config{Runtime: testRT, Batch: 16, Checkpoint: ck, MaxSteps: 2}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Run(m, x, Config{Runtime: testRT, Batch: 16, Epochs: 3, LR: 1e30, Checkpoint: ck, Resume: true})
	var de *DivergedError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "step") {
		t.Fatalf("err %v, want a DivergedError naming the step", err)
	}
	if after, _ := os.ReadFile(ck); !bytes.Equal(after, good) {
		t.Error("the checkpoint was overwritten by a diverged run")
	}
}
