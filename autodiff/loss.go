package autodiff

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// Objective is the training loss: a weighted sum of terms on one model
// output z. Weights of zero leave a term out.
type Objective struct {
	Output string // model output the loss reads; "" means the first

	// CE is cross-entropy of softmax(z) against integer class labels (fed
	// as LabelsInput, int64 [N]); z is [N, C].
	CE float64
	// LM is next-token cross-entropy for a language model: z [N, T, V]
	// at positions 0..T-2 against the token ids (the model input IDs) at
	// 1..T-1, over the positions the attention mask (input Mask, if set)
	// marks.
	LM        float64
	IDs, Mask string
	// KD is distillation: KL(softmax(t/T) || softmax(z/T)) T^2 averaged
	// over rows, where t is the teacher's output for the same batch (fed
	// as TeacherInput) and T the Temperature (default 1).
	KD          float64
	Temperature float64
	// MSE is the mean squared error to the teacher's output, for
	// regression outputs.
	MSE float64
}

// Inputs the training graph adds to the model's.
const (
	LabelsInput  = "train:labels"
	TeacherInput = "train:teacher"
	LossOutput   = "train:loss"
)

func (o Objective) NeedsTeacher() bool { return o.KD != 0 || o.MSE != 0 }

// lossTerms appends the loss to the builder's graph: it returns the scalar
// loss tensor and the gradient of the loss with respect to z.
func (b *builder) lossTerms(o Objective, z string) (loss, dz string, err error) {
	zd, ok := b.dims(z)
	if !ok {
		return "", "", fmt.Errorf("the shape of output %q is not known statically", z)
	}
	dt := b.dtype(z)
	if !dt.IsFloat() {
		return "", "", fmt.Errorf("output %q has element type %s; a loss needs floating-point scores", z, dt)
	}
	b.scope = "loss"
	defer func() { b.scope = "" }()
	r := len(zd)
	last := zd[r-1]
	var losses, grads []string
	addTerm := func(w float64, l, g string) {
		if w != 1 {
			l = b.mul(l, b.scalar(dt, w))
			g = b.mul(g, b.scalar(dt, w))
		}
		losses = append(losses, l)
		grads = append(grads, g)
	}
	softmaxAxis := int64(r - 1) // the last axis, in every opset's semantics
	if o.CE != 0 {
		if r != 2 {
			return "", "", fmt.Errorf("cross-entropy on labels needs scores [N, classes]; output %q has shape %v", z, zd)
		}
		if last < 0 {
			return "", "", fmt.Errorf("the number of classes of output %q is not static", z)
		}
		logp := b.op("LogSoftmax", []string{z}, attrInt("axis", softmaxAxis))
		onehot := b.oneHot(LabelsInput, last, dt)
		n := b.sizeAs(LabelsInput, dt)
		l := b.div(b.neg(b.reduceSum(b.mul(logp, onehot), allAxes(r), false)), n)
		g := b.div(b.sub(b.op("Exp", []string{logp}), onehot), n)
		addTerm(o.CE, l, g)
	}
	if o.LM != 0 {
		if r != 3 || last < 0 {
			return "", "", fmt.Errorf("next-token loss needs logits [N, T, vocab] with a static vocabulary; output %q has shape %v", z, zd)
		}
		if o.IDs == "" {
			return "", "", fmt.Errorf("next-token loss needs the token id input")
		}
		zs := b.slice(z, []int64{0}, []int64{-1}, []int64{1})
		tgt := b.slice(o.IDs, []int64{1}, []int64{1 << 62}, []int64{1})
		if b.dtype(o.IDs) != onnxio.Int64 {
			tgt = b.cast(tgt, onnxio.Int64)
		}
		logp := b.op("LogSoftmax", []string{zs}, attrInt("axis", 2))
		onehot := b.oneHot(tgt, last, dt)
		var count, weight string
		if o.Mask != "" {
			m := b.cast(b.slice(o.Mask, []int64{1}, []int64{1 << 62}, []int64{1}), dt)
			count = b.op("Max", []string{b.reduceSum(m, []int64{0, 1}, false), b.scalar(dt, 1)})
			weight = b.unsqueeze(m, []int64{2})
		} else {
			count = b.sizeAs(tgt, dt)
		}
		nll := b.mul(logp, onehot)
		g := b.sub(b.op("Exp", []string{logp}), onehot)
		if weight != "" {
			nll = b.mul(nll, weight)
			g = b.mul(g, weight)
		}
		l := b.div(b.neg(b.reduceSum(nll, allAxes(3), false)), count)
		g = b.pad(b.div(g, count), []int64{0, 0, 0, 0, 1, 0}) // no gradient at the last position
		addTerm(o.LM, l, g)
	}
	if o.KD != 0 {
		if last < 0 {
			return "", "", fmt.Errorf("the last axis of output %q is not static", z)
		}
		temp := o.Temperature
		if temp <= 0 {
			temp = 1
		}
		inv := b.scalar(dt, 1/temp)
		zs, ts := b.mul(z, inv), b.mul(TeacherInput, inv)
		lps := b.op("LogSoftmax", []string{zs}, attrInt("axis", softmaxAxis))
		lpt := b.op("LogSoftmax", []string{ts}, attrInt("axis", softmaxAxis))
		pt := b.op("Exp", []string{lpt})
		rows := b.div(b.sizeAs(z, dt), b.scalar(dt, float64(last)))
		kl := b.reduceSum(b.mul(pt, b.sub(lpt, lps)), allAxes(r), false)
		l := b.div(b.mul(kl, b.scalar(dt, temp*temp)), rows)
		// d/dz of T^2 KL / rows = T (softmax(z/T) - softmax(t/T)) / rows.
		g := b.div(b.mul(b.sub(b.op("Exp", []string{lps}), pt), b.scalar(dt, temp)), rows)
		addTerm(o.KD, l, g)
	}
	if o.MSE != 0 {
		d := b.sub(z, TeacherInput)
		n := b.sizeAs(z, dt)
		l := b.div(b.reduceSum(b.mul(d, d), allAxes(r), false), n)
		g := b.div(b.mul(d, b.scalar(dt, 2)), n)
		addTerm(o.MSE, l, g)
	}
	if len(losses) == 0 {
		return "", "", fmt.Errorf("the objective has no terms (set a weight for CE, LM, KD or MSE)")
	}
	loss, dz = losses[0], grads[0]
	if len(losses) > 1 {
		loss, dz = b.op("Sum", losses), b.op("Sum", grads)
	}
	return loss, dz, nil
}

func allAxes(r int) []int64 {
	a := make([]int64, r)
	for k := range a {
		a[k] = int64(k)
	}
	return a
}

func (o Objective) String() string {
	s := ""
	add := func(w float64, name string) {
		if w == 0 {
			return
		}
		if s != "" {
			s += " + "
		}
		if w != 1 {
			s += fmt.Sprintf("%g*", w)
		}
		s += name
	}
	add(o.CE, "cross-entropy")
	add(o.LM, "next-token cross-entropy")
	add(o.KD, fmt.Sprintf("KD(T=%g)", o.Temperature))
	add(o.MSE, "MSE to teacher")
	return s
}
