package finetune

import (
	"fmt"
	"math"
)

// Optimizer updates weights in place from their gradients. Updates are
// computed per element in float64 and stored as float32, in a fixed order,
// so a run is reproducible bit for bit.
type Optimizer interface {
	// Step applies one update with learning rate lr.
	Step(params, grads [][]float32, lr float64)
	// State returns the optimizer's state tensors by name, for checkpoints
	// (the slices are the live state, not copies), and its step count.
	State() (map[string][][]float32, int64)
	// SetState restores what State returned.
	SetState(state map[string][][]float32, steps int64) error
	Name() string
}

// Adam is Adam with bias correction; WeightDecay is decoupled (AdamW:
// p -= lr wd p before the Adam step).
type Adam struct {
	Beta1, Beta2, Eps, WeightDecay float64

	t    int64
	m, v [][]float32
}

// NewAdam returns Adam with the usual defaults (0.9, 0.999, 1e-8).
func NewAdam(weightDecay float64) *Adam {
	return &Adam{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
}

func (a *Adam) Name() string { return "adam" }

func (a *Adam) Step(params, grads [][]float32, lr float64) {
	if a.m == nil {
		a.m, a.v = zerosLike(params), zerosLike(params)
	}
	a.t++
	c1 := 1 - math.Pow(a.Beta1, float64(a.t))
	c2 := 1 - math.Pow(a.Beta2, float64(a.t))
	for k, p := range params {
		g, m, v := grads[k], a.m[k], a.v[k]
		for i := range p {
			x := float64(p[i])
			if a.WeightDecay != 0 {
				x -= lr * a.WeightDecay * x
			}
			gi := float64(g[i])
			mi := a.Beta1*float64(m[i]) + (1-a.Beta1)*gi
			vi := a.Beta2*float64(v[i]) + (1-a.Beta2)*gi*gi
			m[i], v[i] = float32(mi), float32(vi)
			x -= lr * (mi / c1) / (math.Sqrt(vi/c2) + a.Eps)
			p[i] = float32(x)
		}
	}
}

func (a *Adam) State() (map[string][][]float32, int64) {
	return map[string][][]float32{"m": a.m, "v": a.v}, a.t
}

func (a *Adam) SetState(s map[string][][]float32, steps int64) error {
	if s["m"] == nil || s["v"] == nil {
		return fmt.Errorf("adam state needs m and v")
	}
	a.m, a.v, a.t = s["m"], s["v"], steps
	return nil
}

// SGD is stochastic gradient descent with momentum (PyTorch's form: the
// first step fills the buffer with the gradient) and L2 weight decay added
// to the gradient.
type SGD struct {
	Momentum, WeightDecay float64

	t   int64
	buf [][]float32
}

func (s *SGD) Name() string { return "sgd" }

func (s *SGD) Step(params, grads [][]float32, lr float64) {
	if s.buf == nil && s.Momentum != 0 {
		s.buf = zerosLike(params)
	}
	for k, p := range params {
		g := grads[k]
		for i := range p {
			x := float64(p[i])
			d := float64(g[i]) + s.WeightDecay*x
			if s.Momentum != 0 {
				b := d
				if s.t > 0 {
					b = s.Momentum*float64(s.buf[k][i]) + d
				}
				s.buf[k][i] = float32(b)
				d = b
			}
			p[i] = float32(x - lr*d)
		}
	}
	s.t++
}

func (s *SGD) State() (map[string][][]float32, int64) {
	if s.buf == nil {
		return map[string][][]float32{}, s.t
	}
	return map[string][][]float32{"momentum": s.buf}, s.t
}

func (s *SGD) SetState(st map[string][][]float32, steps int64) error {
	s.buf, s.t = st["momentum"], steps
	if s.Momentum != 0 && s.buf == nil && steps > 0 {
		return fmt.Errorf("sgd state has no momentum buffer")
	}
	return nil
}

func zerosLike(p [][]float32) [][]float32 {
	out := make([][]float32, len(p))
	for k := range p {
		out[k] = make([]float32, len(p[k]))
	}
	return out
}

// clipNorm scales grads so that their global 2-norm is at most maxNorm and
// returns the norm before clipping.
func clipNorm(grads [][]float32, maxNorm float64) float64 {
	var s float64
	for _, g := range grads {
		for _, x := range g {
			s += float64(x) * float64(x)
		}
	}
	n := math.Sqrt(s)
	if maxNorm > 0 && n > maxNorm {
		f := float32(maxNorm / n)
		for _, g := range grads {
			for i := range g {
				g[i] *= f
			}
		}
	}
	return n
}
