package autodiff

import (
	"errors"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// HardObjective is the loss on the data alone: cross-entropy on class
// labels when there are any, else next-token cross-entropy for a language
// model (see LMInputs); an error when there is neither.
func HardObjective(m *onnxio.Model, hasLabels bool) (Objective, error) {
	if hasLabels {
		return Objective{CE: 1}, nil
	}
	if ids, mask := LMInputs(m); ids != "" {
		return Objective{LM: 1, IDs: ids, Mask: mask}, nil
	}
	return Objective{}, ErrNoLabels
}

// ErrNoLabels: the data has no "labels" array and the model is not a
// language model, so there is no loss without a teacher.
var ErrNoLabels = errors.New("the data has no \"labels\" array of integer class labels and the model is not a language model")

// LMInputs finds a language model's token ids and attention mask: the
// first output is [N, T, V] and a 2-D integer input other than
// attention_mask holds the ids.
func LMInputs(m *onnxio.Model) (ids, mask string) {
	g := m.Graph()
	sh := onnxio.InferShapes(m, true)
	if len(g.GetOutput()) == 0 {
		return "", ""
	}
	if d, ok := sh.Shape(g.GetOutput()[0].GetName()); !ok || len(d) != 3 {
		return "", ""
	}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	for _, v := range g.GetInput() {
		dt, shape, ok := onnxio.TensorType(v)
		if !ok || inits[v.GetName()] || len(shape) != 2 || !dt.IsInt() {
			continue
		}
		if v.GetName() == "attention_mask" {
			mask = v.GetName()
		} else if ids == "" {
			ids = v.GetName()
		}
	}
	return ids, mask
}

// BindData matches data to m's inputs and takes the seeded subset of
// maxSamples rows when that is positive.
func BindData(m *onnxio.Model, data *dataset.Set, maxSamples int, seed int64) (*dataset.Bound, error) {
	specs, err := ort.ModelInputs(m)
	if err != nil {
		return nil, err
	}
	bound, err := data.Match(specs, "")
	if err != nil {
		return nil, err
	}
	if maxSamples > 0 && bound.N > maxSamples {
		if bound, err = bound.Subset(maxSamples, seed); err != nil {
			return nil, err
		}
	}
	if bound.N == 0 {
		return nil, errors.New("no rows")
	}
	return bound, nil
}

// MakeBatch copies the given rows of every bound array.
func MakeBatch(b *dataset.Bound, rows []int) (Batch, error) {
	var out Batch
	for k, a := range b.Inputs {
		r, err := a.Take(rows)
		if err != nil {
			return out, err
		}
		t, err := ort.FromArray(b.Specs[k].Name, r)
		if err != nil {
			return out, err
		}
		out.Inputs = append(out.Inputs, t)
	}
	if b.Labels != nil {
		l, err := b.Labels.Take(rows)
		if err != nil {
			return out, err
		}
		if out.Labels, err = l.AsInt64(); err != nil {
			return out, err
		}
	}
	return out, nil
}
