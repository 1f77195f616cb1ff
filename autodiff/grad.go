package autodiff

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// bctx is what a backward rule sees: the forward node, the gradients that
// reach its outputs ("" where none does) and which inputs need one.
type bctx struct {
	*builder
	n     *onnxpb.NodeProto
	label string
	dy    []string
	need  []bool
}

// in returns input k of the node, or "" if it is absent.
func (c *bctx) in(k int) string {
	if k < len(c.n.Input) {
		return c.n.Input[k]
	}
	return ""
}

func (c *bctx) out(k int) string {
	if k < len(c.n.Output) {
		return c.n.Output[k]
	}
	return ""
}

// needs reports whether input k needs a gradient.
func (c *bctx) needs(k int) bool { return k < len(c.need) && c.need[k] }

// dimsOf returns the static shape of a forward tensor or an error.
func (c *bctx) dimsOf(t string) ([]int64, error) {
	d, ok := c.dims(t)
	if !ok {
		return nil, fmt.Errorf("the shape of %q is not known statically", t)
	}
	return d, nil
}

// staticDims is dimsOf for tensors whose listed axes must have known sizes.
func (c *bctx) staticDims(t string, axes ...int) ([]int64, error) {
	d, err := c.dimsOf(t)
	if err != nil {
		return nil, err
	}
	for _, a := range axes {
		if a < 0 || a >= len(d) || d[a] < 0 {
			return nil, fmt.Errorf("axis %d of %q (shape %v) has no static size", a, t, d)
		}
	}
	return d, nil
}

// ftype is the element type gradients of this node carry: that of its
// first float output, else of its first input.
func (c *bctx) ftype() onnxio.DataType {
	for _, o := range c.n.Output {
		if dt := c.dtype(o); dt.IsFloat() {
			return dt
		}
	}
	if dt := c.dtype(c.in(0)); dt.IsFloat() {
		return dt
	}
	return onnxio.Float
}

// sumToIn reduces a gradient of output 0's shape to input k's shape.
func (c *bctx) sumToIn(g string, k int) (string, error) {
	od, err := c.dimsOf(c.out(0))
	if err != nil {
		return "", err
	}
	return c.sumTo(g, od, c.in(k))
}

func isFloatish(dt onnxio.DataType) bool { return dt == onnxio.Undefined || dt.IsFloat() }

// checkRules reports, all at once and before anything is built, every op
// on a path from wrt to a seed that has no backward rule.
func (b *builder) checkRules(fwd []*onnxpb.NodeProto, active, live map[string]bool) error {
	var errs onnxio.ErrorList
	for i, n := range fwd {
		onPath := false
		for _, o := range n.GetOutput() {
			onPath = onPath || (o != "" && active[o] && live[o])
		}
		if !onPath {
			continue
		}
		need := false
		for _, in := range n.GetInput() {
			need = need || (in != "" && active[in] && live[in] && isFloatish(b.dtype(in)))
		}
		if !need {
			continue
		}
		for _, a := range n.GetAttribute() {
			if a.G != nil || len(a.Graphs) > 0 {
				errs.Add(&onnxio.Error{Node: onnxio.NodeLabel(n, i), Op: n.GetOpType(), Msg: "gradients through subgraphs (If, Loop, Scan) are not supported"})
				break
			}
		}
		if r, ok := lookupRule(b.m, n); !ok || r.fn == nil {
			errs.Add(&onnxio.Error{Node: onnxio.NodeLabel(n, i), Op: n.GetOpType(), Msg: fmt.Sprintf("no backward rule for op %s (domain %q, opset %d): the training graph cannot pass gradients through it", n.GetOpType(), n.GetDomain(), b.m.Opset(n.GetDomain()))})
		}
	}
	return errs.Err()
}

// backward appends the reverse-mode pass to the builder's graph. seeds
// maps tensors to the names of their incoming gradients (dL/dt); the
// result maps every tensor of wrt that the seeds reach to the name of its
// gradient. Every node on a path from wrt to a seed needs a backward rule;
// all nodes without one are reported together.
func (b *builder) backward(seeds map[string]string, wrt []string) (map[string]string, error) {
	fwd := b.g.GetNode()
	nFwd := len(fwd)
	seedNames := make([]string, 0, len(seeds))
	for t := range seeds {
		seedNames = append(seedNames, t)
	}
	active, live := pathSets(b.m, b.sh.DTypes, seedNames, wrt)
	b.wrt = map[string]bool{}
	for _, t := range wrt {
		b.wrt[t] = true
	}
	// Graph outputs of the rules below are appended after the forward
	// nodes, which are the first nFwd.
	fwd = fwd[:nFwd]
	if err := b.checkRules(fwd, active, live); err != nil {
		return nil, err
	}
	var errs onnxio.ErrorList
	contrib := map[string][]string{}
	for t, g := range seeds {
		contrib[t] = append(contrib[t], g)
	}
	total := func(t string) string {
		switch cs := contrib[t]; len(cs) {
		case 0:
			return ""
		case 1:
			return cs[0]
		default:
			// Sum broadcasts: spread gradients join unexpanded as long as
			// one of the terms has t's full shape.
			terms := make([]string, len(cs))
			whole := false
			for k, g := range cs {
				terms[k] = b.unspread(g)
				whole = whole || terms[k] == g
			}
			if !whole {
				terms = cs
			}
			s := b.op("Sum", terms)
			contrib[t] = []string{s}
			return s
		}
	}
	for i := nFwd - 1; i >= 0; i-- {
		n := fwd[i]
		c := &bctx{builder: b, n: n, label: onnxio.NodeLabel(n, i)}
		c.dy = make([]string, len(n.Output))
		have := false
		for k, o := range n.Output {
			if o != "" && active[o] {
				c.dy[k] = total(o)
				have = have || c.dy[k] != ""
			}
		}
		c.need = make([]bool, len(n.Input))
		needAny := false
		for k, in := range n.Input {
			c.need[k] = in != "" && active[in] && live[in] && isFloatish(b.dtype(in))
			needAny = needAny || c.need[k]
		}
		if !have || !needAny {
			continue
		}
		r, _ := lookupRule(b.m, n)
		b.scope = c.label
		gs, err := r.fn(c)
		b.scope = ""
		if err != nil {
			errs.Add(&onnxio.Error{Node: c.label, Op: n.GetOpType(), Msg: "backward: " + err.Error()})
			continue
		}
		for k, g := range gs {
			if g != "" && c.needs(k) {
				contrib[n.Input[k]] = append(contrib[n.Input[k]], g)
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	var keep []string
	for _, t := range wrt {
		if g := total(t); g != "" {
			out[t] = g
			keep = append(keep, g)
		}
	}
	b.pruneFrom(nFwd, keep)
	return out, nil
}
