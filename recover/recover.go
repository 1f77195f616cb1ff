package recover

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/autodiff"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/finetune"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Options say how to recover after pruning.
type Options struct {
	LSQ      bool         // least-squares refit of the narrowed layers on the calibration set
	Train    *dataset.Set // if set, gradient fine-tuning on it (after the refit, if any)
	Distill  bool         // fine-tune against the original model as teacher
	LSQOpts  LSQOptions
	Finetune finetune.Config
	Eval     *dataset.Set // if set, the metric after recovery
	EvalTask string
	Runtime  ort.Config
}

// Report is what the recovery did.
type Report struct {
	Methods   []string         `json:"methods"`
	LSQ       []LayerFit       `json:"lsq_layers,omitempty"`
	Finetune  *finetune.Result `json:"finetune,omitempty"`
	EvalAfter *evaluate.Result `json:"eval_after_recovery,omitempty"`
}

// Run recovers small, a pruned copy of orig: kept maps the group names of
// rewrite.Analyze(orig) to the original units that remain (see LSQ).
// calib is the calibration set (for the refit). Neither model is
// modified.
func Run(orig, small *onnxio.Model, kept map[string][]int, calib *dataset.Set, r Options) (*onnxio.Model, *Report, error) {
	out := &Report{}
	cur := small
	if r.LSQ {
		o := r.LSQOpts
		o.Runtime = r.Runtime
		m, fits, err := LSQ(orig, cur, kept, calib, o)
		if err != nil {
			return nil, nil, fmt.Errorf("least-squares recovery: %w", err)
		}
		cur, out.LSQ = m, fits
		out.Methods = append(out.Methods, "lsq")
	}
	if r.Train != nil {
		c := r.Finetune
		c.Runtime = r.Runtime
		if r.Distill {
			c.Teacher = orig
		} else if r.Train.Get("labels") == nil {
			// A classifier without labels has no loss but the original
			// model's outputs; a language model trains on its tokens.
			if _, err := autodiff.HardObjective(cur, false); err != nil {
				c.Teacher = orig
			}
		}
		m, res, err := finetune.Run(cur, r.Train, c)
		if err != nil {
			return nil, nil, fmt.Errorf("fine-tuning: %w", err)
		}
		cur, out.Finetune = m, res
		out.Methods = append(out.Methods, "finetune")
	}
	if r.Eval != nil && len(out.Methods) > 0 {
		res, err := evaluate.Run(cur, r.Eval, evaluate.Options{Task: r.EvalTask, Runtime: r.Runtime})
		if err != nil {
			return nil, nil, fmt.Errorf("evaluating the recovered model: %w", err)
		}
		out.EvalAfter = res
	}
	return cur, out, nil
}
