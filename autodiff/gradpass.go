package autodiff

import (
	"errors"
	"fmt"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// GradOptions configure a GradientPass.
type GradOptions struct {
	Batch      int   // rows per run (64)
	MaxSamples int   // a seeded subset of this many rows (0: all)
	Seed       int64 // for the subset
	Runtime    ort.Config
	Progress   func(label string, done, total int)
}

// GradientPass runs the loss on the data alone (HardObjective:
// cross-entropy on the "labels" array, or next-token cross-entropy for a
// language model) over data in batches and calls fn after each batch with
// the values and gradients of the named initializers, in that order.
// Nothing is updated, and BatchNormalization uses its running statistics:
// the gradients are those of the model as it is, for first-order (Taylor)
// importance scores.
func GradientPass(m *onnxio.Model, data *dataset.Set, names []string, o GradOptions, fn func(values, grads [][]float32) error) error {
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if len(names) == 0 {
		return errors.New("gradient pass: no weights named")
	}
	bound, err := BindData(m, data, o.MaxSamples, o.Seed)
	if err != nil {
		return fmt.Errorf("%s: %w", data.Path, err)
	}
	obj, err := HardObjective(m, bound.Labels != nil)
	if err != nil {
		return fmt.Errorf("%s: %w", data.Path, err)
	}
	tg, err := BuildTraining(m, TrainSpec{Objective: obj, Params: names, BatchNorm: BNFrozen})
	if err != nil {
		return err
	}
	for k, p := range tg.Params {
		if p.Name != names[k] {
			return fmt.Errorf("gradient pass: weight %d is %q, want %q", k, p.Name, names[k])
		}
	}
	st, err := NewStepper(tg, o.Runtime)
	if err != nil {
		return fmt.Errorf("gradient graph: %w", err)
	}
	defer st.Destroy()
	values, err := ParamValues(m, tg.Params)
	if err != nil {
		return err
	}
	batch := o.Batch
	if bound.FixedBatch > 0 {
		batch = bound.FixedBatch
	}
	for lo := 0; lo < bound.N; lo += batch {
		hi := min(lo+batch, bound.N)
		if bound.FixedBatch > 0 && hi-lo != batch {
			break
		}
		rows := make([]int, hi-lo)
		for k := range rows {
			rows[k] = lo + k
		}
		b, err := MakeBatch(bound, rows)
		if err != nil {
			return err
		}
		res, err := st.Run(values, b)
		if err != nil {
			return fmt.Errorf("rows %d-%d: %w", lo, hi, err)
		}
		if err := fn(values, res.Grads); err != nil {
			return err
		}
		if o.Progress != nil {
			o.Progress("gradients", hi, bound.N)
		}
	}
	return nil
}
