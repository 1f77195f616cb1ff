package autodiff

import (
	"fmt"
	"math"
	"slices"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

// ruleFunc builds the gradients of a node's inputs from those of its
// outputs. It returns one name per input ("" for none); only inputs that
// c.need marks are used.
type ruleFunc func(c *bctx) ([]string, error)

// rule is an op's entry in the backward table: its rule, or none for an
// op through which no gradient flows.
type rule struct {
	fn         ruleFunc
	noGradient bool // from the op's NoGradient class in ops.Facts: its outputs are never on a gradient path
}

// rules is keyed by domain, op type and since-version (see package ops);
// each file registers the rules of its op family.
var rules = ops.NewTable(func(c ops.Class) (rule, bool) {
	return rule{noGradient: true}, c&ops.NoGradient != 0
})

func register(domain string, since int64, fn ruleFunc, types ...string) {
	rules.Add(domain, since, rule{fn: fn}, types...)
}

// lookupRule returns the entry of node n for the opset m imports of n's
// domain.
func lookupRule(m *onnxio.Model, n *onnxpb.NodeProto) (rule, bool) {
	return rules.Lookup(n.GetDomain(), n.GetOpType(), m.Opset(n.GetDomain()))
}

// HasRule reports whether an op of the default domain has a backward rule
// at the given opset version.
func HasRule(op string, opset int64) bool {
	r, ok := rules.Lookup("", op, opset)
	return ok && r.fn != nil
}

func init() {
	register("", 1, gradAdd, "Add")
	register("", 1, gradSub, "Sub")
	register("", 1, gradMul, "Mul")
	register("", 1, gradDiv, "Div")
	register("", 1, gradPow, "Pow")
	register("", 1, gradSum, "Sum")
	register("", 1, gradMean, "Mean")
	register("", 1, gradRelu, "Relu")
	register("", 1, gradLeakyRelu, "LeakyRelu")
	register("", 1, gradSigmoid, "Sigmoid")
	register("", 1, gradTanh, "Tanh")
	register("", 9, gradErf, "Erf")
	register("", 20, gradGelu, "Gelu")
	register("com.microsoft", 1, gradGelu, "Gelu")
	register("", 1, gradExp, "Exp")
	register("", 1, gradLog, "Log")
	register("", 1, gradSqrt, "Sqrt")
	register("", 1, gradReciprocal, "Reciprocal")
	register("", 1, gradNeg, "Neg")
	register("", 1, gradAbs, "Abs")
	register("", 1, gradSoftplus, "Softplus")
	register("", 6, gradHardSigmoid, "HardSigmoid")
	register("", 14, gradHardSwish, "HardSwish")
	register("", 1, gradIdentity, "Identity", "Dropout")
	register("", 1, gradClip, "Clip")
	register("", 1, gradCast, "Cast")
	register("", 9, gradWhere, "Where")
	register("", 8, gradExpand, "Expand")
}

// one input, gradient dy*f: the common shape of unary rules.
func unary(c *bctx, f func(dy string) string) ([]string, error) {
	if c.dy[0] == "" {
		return nil, nil
	}
	return []string{f(c.dy[0])}, nil
}

func gradAdd(c *bctx) ([]string, error) {
	return binary(c, func(dy string) string { return dy }, func(dy string) string { return dy })
}

func gradSub(c *bctx) ([]string, error) {
	// The negation goes after the sum over broadcast axes, on the smaller
	// tensor.
	res, err := binary(c, func(dy string) string { return dy }, func(dy string) string { return dy })
	if err == nil && res != nil && res[1] != "" {
		res[1] = c.neg(res[1])
	}
	return res, err
}

func gradMul(c *bctx) ([]string, error) {
	if x := c.in(0); x == c.in(1) && c.dy[0] != "" && c.needs(0) {
		// x*x: 2 dy x, on the first operand only; the 2 joins dY where
		// dY is still small.
		dy := c.dy[0]
		if s := c.unspread(dy); s != dy {
			return []string{c.mul(c.mul(s, c.scalar(c.ftype(), 2)), x), ""}, nil
		}
		t := c.mul(dy, x)
		return []string{c.add(t, t), ""}, nil
	}
	// A spread dY multiplies an operand of the output's full shape without
	// being expanded first.
	by := func(dy string, k int) string {
		d, ok := c.dims(c.in(k))
		yd, yok := c.dims(c.out(0))
		if ok && yok && slices.Equal(d, yd) && !slices.Contains(d, -1) {
			dy = c.unspread(dy)
		}
		return c.mul(dy, c.in(k))
	}
	return binary(c,
		func(dy string) string { return by(dy, 1) },
		func(dy string) string { return by(dy, 0) })
}

func gradDiv(c *bctx) ([]string, error) {
	return binary(c,
		func(dy string) string { return c.div(dy, c.in(1)) },
		// d(a/b)/db = -(a/b)/b
		func(dy string) string { return c.neg(c.div(c.mul(dy, c.out(0)), c.in(1))) })
}

// binary applies per-operand gradient formulas and reduces each result to
// its operand's shape.
func binary(c *bctx, fa, fb func(dy string) string) ([]string, error) {
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	res := make([]string, 2)
	for k, f := range []func(string) string{fa, fb} {
		if !c.needs(k) {
			continue
		}
		g, err := c.sumToIn(f(dy), k)
		if err != nil {
			return nil, err
		}
		res[k] = g
	}
	return res, nil
}

func gradPow(c *bctx) ([]string, error) {
	a, e := c.in(0), c.in(1)
	dt := c.ftype()
	return binary(c,
		func(dy string) string {
			if v, ok := c.floatConst(e); ok && len(v) == 1 {
				switch v[0] {
				case 1:
					return dy
				case 2:
					return c.mul(dy, c.mul(a, c.scalar(dt, 2)))
				}
				return c.mul(dy, c.mul(c.scalar(dt, v[0]), c.op("Pow", []string{a, c.scalar(dt, v[0]-1)})))
			}
			edt := c.dtype(e)
			if !edt.IsFloat() {
				edt = dt
				e = c.cast(e, dt)
			}
			return c.mul(dy, c.mul(e, c.op("Pow", []string{a, c.sub(e, c.scalar(edt, 1))})))
		},
		// d(a^e)/de = a^e ln a
		func(dy string) string { return c.mul(dy, c.mul(c.out(0), c.op("Log", []string{a}))) })
}

func gradSum(c *bctx) ([]string, error) {
	return variadic(c, 1)
}

func gradMean(c *bctx) ([]string, error) {
	return variadic(c, 1/float64(len(c.n.Input)))
}

func variadic(c *bctx, scale float64) ([]string, error) {
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	if scale != 1 {
		dy = c.mul(dy, c.scalar(c.ftype(), scale))
	}
	res := make([]string, len(c.n.Input))
	for k := range res {
		if !c.needs(k) {
			continue
		}
		g, err := c.sumToIn(dy, k)
		if err != nil {
			return nil, err
		}
		res[k] = g
	}
	return res, nil
}

func gradRelu(c *bctx) ([]string, error) {
	if dy := c.dy[0]; dy != "" && c.premasked[dy] == c.out(0) {
		return []string{dy}, nil
	}
	return unary(c, func(dy string) string {
		dt := c.ftype()
		return c.masked(c.op("Greater", []string{c.in(0), c.scalar(dt, 0)}), dy, dt)
	})
}

func gradLeakyRelu(c *bctx) ([]string, error) {
	alpha := float64(onnxio.AttrFloat(c.n, "alpha", 0.01))
	return unary(c, func(dy string) string {
		dt := c.ftype()
		return c.where(c.op("Greater", []string{c.in(0), c.scalar(dt, 0)}), dy, c.mul(dy, c.scalar(dt, alpha)))
	})
}

func gradSigmoid(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string {
		y := c.out(0)
		return c.mul(dy, c.mul(y, c.sub(c.scalar(c.ftype(), 1), y)))
	})
}

func gradTanh(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string {
		y := c.out(0)
		return c.mul(dy, c.sub(c.scalar(c.ftype(), 1), c.mul(y, y)))
	})
}

func gradErf(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string {
		x, dt := c.in(0), c.ftype()
		e := c.op("Exp", []string{c.neg(c.mul(x, x))})
		return c.mul(dy, c.mul(e, c.scalar(dt, 2/math.Sqrt(math.Pi))))
	})
}

// gradGelu covers Gelu (opset 20, approximate "none" or "tanh") and the
// com.microsoft contrib op (exact form).
func gradGelu(c *bctx) ([]string, error) {
	approx := onnxio.AttrString(c.n, "approximate", "none")
	if approx != "none" && approx != "tanh" {
		return nil, fmt.Errorf("unknown approximate=%q", approx)
	}
	return unary(c, func(dy string) string {
		x, dt := c.in(0), c.ftype()
		half, one := c.scalar(dt, 0.5), c.scalar(dt, 1)
		if approx == "tanh" {
			// y = x/2 (1 + tanh u), u = k (x + a x^3):
			// dy/dx = (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 a x^2).
			k, a := math.Sqrt(2/math.Pi), 0.044715
			x2 := c.mul(x, x)
			u := c.mul(c.scalar(dt, k), c.add(x, c.mul(c.scalar(dt, a), c.mul(x2, x))))
			t := c.op("Tanh", []string{u})
			du := c.mul(c.scalar(dt, k), c.add(one, c.mul(c.scalar(dt, 3*a), x2)))
			d := c.add(c.mul(half, c.add(one, t)), c.mul(c.mul(half, x), c.mul(c.sub(one, c.mul(t, t)), du)))
			return c.mul(dy, d)
		}
		// y = x Phi(x): dy/dx = Phi(x) + x phi(x).
		phiBig := c.mul(half, c.add(one, c.op("Erf", []string{c.mul(x, c.scalar(dt, 1/math.Sqrt2))})))
		phi := c.mul(c.scalar(dt, 1/math.Sqrt(2*math.Pi)), c.op("Exp", []string{c.mul(c.mul(x, x), c.scalar(dt, -0.5))}))
		return c.mul(dy, c.add(phiBig, c.mul(x, phi)))
	})
}

func gradExp(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string { return c.mul(dy, c.out(0)) })
}

func gradLog(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string { return c.div(dy, c.in(0)) })
}

func gradSqrt(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string { return c.div(c.mul(dy, c.scalar(c.ftype(), 0.5)), c.out(0)) })
}

func gradReciprocal(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string { y := c.out(0); return c.neg(c.mul(dy, c.mul(y, y))) })
}

func gradNeg(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string { return c.neg(dy) })
}

func gradAbs(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string { return c.mul(dy, c.op("Sign", []string{c.in(0)})) })
}

func gradSoftplus(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string { return c.mul(dy, c.op("Sigmoid", []string{c.in(0)})) })
}

// inOpen is a mask of lo < v < hi as type dt.
func (c *bctx) inOpen(v string, lo, hi float64, dt onnxio.DataType) string {
	m := c.op("And", []string{
		c.op("Greater", []string{v, c.scalar(dt, lo)}),
		c.op("Less", []string{v, c.scalar(dt, hi)})})
	return c.cast(m, dt)
}

func gradHardSigmoid(c *bctx) ([]string, error) {
	alpha := float64(onnxio.AttrFloat(c.n, "alpha", 0.2))
	beta := float64(onnxio.AttrFloat(c.n, "beta", 0.5))
	return unary(c, func(dy string) string {
		dt := c.ftype()
		z := c.add(c.mul(c.in(0), c.scalar(dt, alpha)), c.scalar(dt, beta))
		return c.mul(dy, c.mul(c.inOpen(z, 0, 1, dt), c.scalar(dt, alpha)))
	})
}

// HardSwish is x * HardSigmoid(x) with alpha 1/6, beta 1/2.
func gradHardSwish(c *bctx) ([]string, error) {
	return unary(c, func(dy string) string {
		x, dt := c.in(0), c.ftype()
		z := c.add(c.mul(x, c.scalar(dt, 1.0/6)), c.scalar(dt, 0.5))
		hs := c.op("HardSigmoid", []string{x}, attrFloat("alpha", 1.0/6), attrFloat("beta", 0.5))
		d := c.add(hs, c.mul(x, c.mul(c.inOpen(z, 0, 1, dt), c.scalar(dt, 1.0/6))))
		return c.mul(dy, d)
	})
}

func gradIdentity(c *bctx) ([]string, error) {
	if c.n.GetOpType() == "Dropout" {
		if tm := c.in(2); tm != "" {
			if v, ok := c.values(tm); !ok || len(v) != 1 || v[0] != 0 {
				return nil, fmt.Errorf("Dropout in training mode (or with a run-time training_mode input): export the model in eval mode")
			}
		}
	}
	return unary(c, func(dy string) string { return dy })
}

// gradClip passes the gradient where min <= x <= max (inclusive, as
// torch.clamp does); the bounds get none.
func gradClip(c *bctx) ([]string, error) {
	if !c.needs(0) {
		return nil, nil
	}
	x, dt := c.in(0), c.ftype()
	var lo, hi string
	if c.opset < 11 {
		if a := onnxio.Attr(c.n, "min"); a != nil {
			lo = c.scalar(dt, float64(a.GetF()))
		}
		if a := onnxio.Attr(c.n, "max"); a != nil {
			hi = c.scalar(dt, float64(a.GetF()))
		}
	} else {
		lo, hi = c.in(1), c.in(2)
	}
	return unary(c, func(dy string) string {
		var mask string
		if lo != "" {
			mask = c.op("Not", []string{c.op("Less", []string{x, lo})})
		}
		if hi != "" {
			m := c.op("Not", []string{c.op("Greater", []string{x, hi})})
			if mask == "" {
				mask = m
			} else {
				mask = c.op("And", []string{mask, m})
			}
		}
		if mask == "" {
			return dy
		}
		return c.masked(mask, dy, dt)
	})
}

func gradCast(c *bctx) ([]string, error) {
	from := c.dtype(c.in(0))
	if !from.IsFloat() || !c.dtype(c.out(0)).IsFloat() {
		return nil, nil // through integers no gradient flows
	}
	return unary(c, func(dy string) string { return c.cast(dy, from) })
}

func gradWhere(c *bctx) ([]string, error) {
	dy := c.dy[0]
	if dy == "" {
		return nil, nil
	}
	zero := c.scalar(c.ftype(), 0)
	res := make([]string, 3)
	for k := 1; k <= 2; k++ {
		if !c.needs(k) {
			continue
		}
		var g string
		if k == 1 {
			g = c.where(c.in(0), dy, zero)
		} else {
			g = c.where(c.in(0), zero, dy)
		}
		var err error
		if res[k], err = c.sumToIn(g, k); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func gradExpand(c *bctx) ([]string, error) {
	if c.dy[0] == "" || !c.needs(0) {
		return nil, nil
	}
	g, err := c.sumToIn(c.dy[0], 0)
	return []string{g}, err
}
