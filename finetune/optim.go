package finetune

import (
	"fmt"
	"math"
)

// Optimizer updates weights in place from their gradients. Updates run in
// float32, as PyTorch's do, element by element in a fixed order, so a run
// is reproducible bit for bit.
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
	// p -= lr m^ / (sqrt(v^) + eps) with m^ = m/c1, v^ = v/c2, written as
	// p -= step m / (sqrt(v) + eps sqrt(c2)), step = lr sqrt(c2)/c1.
	c1 := 1 - math.Pow(a.Beta1, float64(a.t))
	c2 := 1 - math.Pow(a.Beta2, float64(a.t))
	step := float32(lr * math.Sqrt(c2) / c1)
	eps := float32(a.Eps * math.Sqrt(c2))
	b1, b2 := float32(a.Beta1), float32(a.Beta2)
	g1, g2 := 1-b1, 1-b2
	decay := float32(1 - lr*a.WeightDecay)
	for k, p := range params {
		g, m, v := grads[k][:len(p)], a.m[k][:len(p)], a.v[k][:len(p)]
		for i, x := range p {
			gi := g[i]
			mi := b1*m[i] + g1*gi
			vi := b2*v[i] + g2*gi*gi
			m[i], v[i] = mi, vi
			p[i] = x*decay - step*mi/(float32(math.Sqrt(float64(vi)))+eps)
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
	rate, wd, mu := float32(lr), float32(s.WeightDecay), float32(s.Momentum)
	for k, p := range params {
		g := grads[k][:len(p)]
		for i, x := range p {
			d := g[i] + wd*x
			if mu != 0 {
				if s.t > 0 {
					d += mu * s.buf[k][i]
				}
				s.buf[k][i] = d
			}
			p[i] = x - rate*d
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
