package shrink

// The recovery hook (docs/METHOD.md §8): after the last round, restore
// accuracy with the finetune package (least-squares refit, gradient
// fine-tuning or both).
// Run itself never calls it, so the pruning loop stays as the paper has
// it; the shrink command runs it on Run's result.

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/finetune"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/runtime"
)

// Recovery says how to recover after pruning.
type Recovery struct {
	LSQ      bool         // least-squares refit of the narrowed layers on the calibration set
	Train    *dataset.Set // if set, gradient fine-tuning on it (after the refit, if any)
	Distill  bool         // fine-tune against the original model as teacher
	LSQOpts  finetune.LSQOptions
	Finetune finetune.Config
	Eval     *dataset.Set // if set, the metric after recovery
	EvalTask string
	Runtime  runtime.Config
}

// RecoveryReport is what the recovery did.
type RecoveryReport struct {
	Methods   []string            `json:"methods"`
	LSQ       []finetune.LayerFit `json:"lsq_layers,omitempty"`
	Finetune  *finetune.Result    `json:"finetune,omitempty"`
	EvalAfter *evaluate.Result    `json:"eval_after_recovery,omitempty"`
}

// Kept returns the original units that remain of every pruned group, as
// finetune.LSQ wants them.
func (r *Report) Kept() map[string][]int {
	kept := map[string][]int{}
	for _, g := range r.Groups {
		if g.Pruned {
			kept[g.Name] = g.Kept
		}
	}
	return kept
}

// Recover applies the recovery to small, the result of Run(orig, ...) with
// report rep. calib is the calibration set (for the refit). Neither model
// is modified.
func Recover(orig, small *onnxio.Model, rep *Report, calib *dataset.Set, r Recovery) (*onnxio.Model, *RecoveryReport, error) {
	out := &RecoveryReport{}
	cur := small
	if r.LSQ {
		o := r.LSQOpts
		o.Runtime = r.Runtime
		m, fits, err := finetune.LSQ(orig, cur, rep.Kept(), calib, o)
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
		}
		m, res, err := finetune.Run(cur, r.Train, c)
		if err != nil {
			// Without labels the original model is the only teacher there is.
			if !r.Distill && r.Train.Get("labels") == nil {
				c.Teacher = orig
				m, res, err = finetune.Run(cur, r.Train, c)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("fine-tuning: %w", err)
			}
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
