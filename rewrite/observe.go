package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

// observe chooses, for every group, where capture records its hidden
// states: Z is the input of the first nonlinearity that the group's units
// go through (in graph order), A the output of the chain of elementwise ops
// that follows it, up to the op that consumes the units (for a SwiGLU MLP:
// Z = gate projection, A = SiLU(gate) * up). For attention heads the
// nonlinearity is the softmax over keys, and A is the per-head context
// (softmax times V); their feature axes are reduced by root mean square.
// A group whose units meet no such nonlinearity but are normalised (the
// hidden width of a Transformer, through LayerNorm or RMSNorm) is observed
// across its first normalisation: Z is the normalisation's input, A the
// normalised tensor that the next layer reads.
func (a *Analysis) observe() {
	defer a.observeLinear()
	defer a.observeNorms()
	defer a.observeFused()
	g := a.Model.Graph()
	// single returns the root, R and B of a single-segment unit axis.
	single := func(t string, ax int) (int, int, int, bool) {
		l := a.lay[t][ax]
		if l == nil {
			return 0, 0, 0, false
		}
		e, err := a.sp.expand(l)
		if err != nil || len(e) != 1 {
			return 0, 0, 0, false
		}
		return e[0].S, e[0].R, e[0].B, true
	}
	var samples map[string]SampleAxis // computed for the first folded group
	for _, n := range g.GetNode() {
		op := n.GetOpType()
		heads := op == "Softmax"
		if (a.classOf(n)&ops.Activation == 0 && !heads) || len(n.Input) == 0 || len(n.Output) == 0 {
			continue
		}
		in := n.Input[0]
		for ax := range a.lay[in] {
			root, r, b, ok := single(in, ax)
			grp := a.rootOf[root]
			if !ok || grp == nil || grp.Observe != nil {
				continue
			}
			post, pax := n.Output[0], ax
			for {
				cons := a.ix.Consumers[post]
				if len(cons) != 1 {
					break
				}
				c := a.ix.Node(cons[0])
				if len(c.Output) == 0 {
					break
				}
				out := c.Output[0]
				if !a.classOf(c).Elementwise() && !(heads && c.GetOpType() == "MatMul") {
					break
				}
				next := -1
				for oax := range a.lay[out] {
					if s2, _, _, ok := single(out, oax); ok && s2 == root {
						next = oax
					}
				}
				if next < 0 {
					break
				}
				post, pax = out, next
				if c.GetOpType() == "MatMul" {
					break
				}
			}
			_, pr, pb, _ := single(post, pax)
			pre, preAx := in, ax
			switch {
			case heads:
				pre, preAx, r, b = a.headInput(post, pre, preAx, root, single)
			default:
				// Decomposed GELU divides its input by sqrt(2) before Erf:
				// observe the input itself, which is also what a fused Gelu
				// reads (observing inside the pattern would break fusion).
				pre, preAx = a.backOverScale(pre, preAx, root, single)
			}
			o := &Observation{
				Pre: pre, PreAxis: preAx, PreR: r, PreB: b,
				Post: post, PostAxis: pax, PostR: pr, PostB: pb,
				RMS: heads, Op: op,
			}
			if r == dynR || pr == dynR {
				// Heads folded into the batch axis ([B*H, T, D]): observed
				// where the samples are known to sit.
				if samples == nil {
					samples = a.sampleAxes()
				}
				if why := a.placeFolded(o, root, samples); why != "" {
					grp.Unobserved = why
					continue
				}
			}
			grp.Observe = o
		}
	}
}

// placeFolded sets where o's tensors hold the samples, and for a tensor
// whose unit axis holds the samples too (the units of root with a run-time
// repeat count), lays the units out within the sample axis's Inner
// positions. It returns why it cannot ("" when it did).
func (a *Analysis) placeFolded(o *Observation, root int, samples map[string]SampleAxis) string {
	place := func(t string, ax int, r, b *int) (*SampleAxis, string) {
		s, ok := samples[t]
		switch {
		case !ok || s.Axis < 0:
			return nil, fmt.Sprintf("the samples of %q, which holds the heads folded into the batch, cannot be followed from the graph inputs", t)
		case *r != dynR && s.Axis == ax:
			return nil, fmt.Sprintf("%q holds the samples on its unit axis %d", t, ax)
		case *r == dynR && (s.Axis != ax || s.Inner != a.sp.s[root].size*(*b)):
			return nil, fmt.Sprintf("%q holds the folded heads on axis %d and the samples at %+v, not in blocks of the heads", t, ax, s)
		}
		if *r == dynR {
			*r = 1
		}
		if s == (SampleAxis{Axis: 0, Outer: 1, Inner: 1}) {
			return nil, ""
		}
		return &s, ""
	}
	var why string
	if o.PreSamples, why = place(o.Pre, o.PreAxis, &o.PreR, &o.PreB); why != "" {
		return why
	}
	o.PostSamples, why = place(o.Post, o.PostAxis, &o.PostR, &o.PostB)
	return why
}

// headInput returns what a head mixes: the values V that the softmax
// weights multiply, when the context is produced by that product. V and the
// context have the same shape per head, so the graphs compare what attention
// does to each head's signal. Otherwise it falls back to the raw logits.
// Values are also far cheaper to observe than the T x T logits.
func (a *Analysis) headInput(post, logits string, ax, root int, single func(string, int) (int, int, int, bool)) (string, int, int, int) {
	if p := a.ix.ProducerNode(post); p != nil && p.GetOpType() == "MatMul" && len(p.Input) == 2 {
		v := p.Input[1]
		for vax := range a.lay[v] {
			if s2, r, b, ok := single(v, vax); ok && s2 == root {
				return v, vax, r, b
			}
		}
	}
	return a.backToLogits(logits, ax, root, single)
}

// backOverScale steps back from t over multiplications and divisions by a
// scalar constant.
func (a *Analysis) backOverScale(t string, ax, root int, single func(string, int) (int, int, int, bool)) (string, int) {
	for k := 0; k < 4; k++ {
		p := a.ix.ProducerNode(t)
		if p == nil || (p.GetOpType() != "Div" && p.GetOpType() != "Mul") || len(p.Input) != 2 {
			break
		}
		c := a.ix.Const(p.Input[1])
		if c == nil || onnxio.NumElements(c.GetDims()) != 1 {
			break
		}
		x := p.Input[0]
		found := false
		for xax := range a.lay[x] {
			if s2, _, _, ok := single(x, xax); ok && s2 == root && xax == ax {
				found = true
			}
		}
		if !found {
			break
		}
		t = x
	}
	return t, ax
}

// backToLogits walks from a softmax input back through elementwise ops in
// which only one operand carries the group's units (adding a mask, scaling)
// and returns the tensor where that chain starts.
func (a *Analysis) backToLogits(t string, ax, root int, single func(string, int) (int, int, int, bool)) (string, int, int, int) {
	_, r, b, _ := single(t, ax)
	for k := 0; k < 8; k++ {
		p := a.ix.ProducerNode(t)
		if p == nil {
			break
		}
		switch p.GetOpType() {
		case "Add", "Sub", "Mul", "Div", "Where", "Cast":
		default:
			return t, ax, r, b
		}
		next, nax := "", -1
		for _, in := range p.Input {
			for iax := range a.lay[in] {
				if s, _, _, ok := single(in, iax); ok && s == root {
					if next != "" && next != in {
						return t, ax, r, b
					}
					next, nax = in, iax
				}
			}
		}
		if next == "" {
			break
		}
		t, ax = next, nax
		_, r, b, _ = single(t, ax)
	}
	return t, ax, r, b
}

var normOps = map[string]bool{"LayerNormalization": true, "RMSNormalization": true, "SimplifiedLayerNormalization": true}

// isStat reports a reduction over axis ax of its input with kept dims: the
// statistics of a decomposed normalisation.
func (a *Analysis) isStat(n *onnxpb.NodeProto, ax int) bool {
	switch n.GetOpType() {
	case "ReduceMean", "ReduceSumSquare", "ReduceSum", "ReduceL2":
	default:
		return false
	}
	if onnxio.AttrInt(n, "keepdims", 1) != 1 {
		return false
	}
	d, ok := a.dims(n.Input[0])
	if !ok {
		return false
	}
	_, has := a.lay[n.Output[0]][ax]
	return !has && ax < len(d)
}

func (a *Analysis) observeNorms() {
	g := a.Model.Graph()
	rootAxis := func(t string, root int) (int, int, int, bool) {
		for ax, l := range a.lay[t] {
			e, err := a.sp.expand(l)
			if err == nil && len(e) == 1 && e[0].S == root {
				return ax, e[0].R, e[0].B, true
			}
		}
		return 0, 0, 0, false
	}
	for i, n := range g.GetNode() {
		if len(n.Input) == 0 || len(n.Output) == 0 {
			continue
		}
		x := n.Input[0]
		for ax, l := range a.lay[x] {
			e, err := a.sp.expand(l)
			if err != nil || len(e) != 1 {
				continue
			}
			grp := a.rootOf[e[0].S]
			if grp == nil || grp.Observe != nil || !(normOps[n.GetOpType()] || a.isStat(n, ax)) {
				continue
			}
			root := e[0].S
			if p := a.ix.ProducerNode(x); p != nil && !normOps[n.GetOpType()] && squares(p) {
				// RMSNorm reduces x*x: observe x itself.
				x = p.Input[0]
				if ax2, _, _, ok := rootAxis(x, root); !ok || ax2 != ax {
					continue
				}
			}
			// The normalised tensor: the first input, in graph order, of an
			// op past the normalisation that reads the units.
			seen := map[string]bool{x: true}
			queue := []string{x}
			best, bestNode := "", len(g.Node)
			for len(queue) > 0 {
				t := queue[0]
				queue = queue[1:]
				for _, c := range a.ix.Consumers[t] {
					cn := a.ix.Node(c)
					op := cn.GetOpType()
					if op == "Shape" || (c == i && !normOps[op]) {
						continue
					}
					through := a.classOf(cn).Elementwise() || normOps[op]
					if !through {
						if _, _, _, ok := rootAxis(t, root); ok && t != x && !a.isStat(cn, ax) && c < bestNode {
							best, bestNode = t, c
						}
						continue
					}
					for _, o := range cn.Output {
						if _, _, _, ok := rootAxis(o, root); ok && !seen[o] {
							seen[o] = true
							queue = append(queue, o)
						}
					}
				}
			}
			if best == "" {
				continue
			}
			pax, pr, pb, _ := rootAxis(best, root)
			grp.Observe = &Observation{
				Pre: x, PreAxis: ax, PreR: e[0].R, PreB: e[0].B,
				Post: best, PostAxis: pax, PostR: pr, PostB: pb,
				Op: "normalization",
			}
		}
	}
}

// squares reports Pow(y, 2) and Mul(y, y).
func squares(p *onnxpb.NodeProto) bool {
	switch p.GetOpType() {
	case "Mul":
		return len(p.Input) == 2 && p.Input[0] == p.Input[1]
	case "Pow":
		return len(p.Input) == 2
	}
	return false
}

// observeFused observes the heads of ONNX Runtime's fused attention ops as
// the other heads are: Z the values each head mixes (MultiHeadAttention's
// and GroupQueryAttention's value input; for Attention, the input times the
// value columns of its packed weight), A the context the op outputs per
// head, both reduced by root mean square.
func (a *Analysis) observeFused() {
	for _, n := range a.Model.Graph().GetNode() {
		if n.GetDomain() != ops.MS || len(n.Output) == 0 {
			continue
		}
		op := n.GetOpType()
		if op != "Attention" && op != "MultiHeadAttention" && op != "GroupQueryAttention" {
			continue
		}
		post := n.Output[0]
		l := a.lay[post][2]
		e, err := a.sp.expand(l)
		if l == nil || err != nil || len(e) != 1 {
			continue
		}
		grp := a.rootOf[e[0].S]
		if grp == nil || grp.Observe != nil {
			continue
		}
		o := &Observation{Post: post, PostAxis: 2, PostR: e[0].R, PostB: e[0].B, RMS: true, Op: op}
		switch op {
		case "Attention":
			p, ok := a.attentionValues(n, e[0])
			if !ok {
				continue
			}
			o.Pre, o.PreAxis, o.PreR, o.PreB, o.PreProject = n.Input[0], 2, 1, e[0].B, p
		default:
			v := safe(n.Input, 2)
			ve, err := a.sp.expand(a.lay[v][2])
			if v == "" || err != nil || len(ve) != 1 || ve[0].S != e[0].S {
				continue
			}
			o.Pre, o.PreAxis, o.PreR, o.PreB = v, 2, ve[0].R, ve[0].B
		}
		grp.Observe = o
	}
}

// attentionValues returns the value columns of an Attention node's packed
// weight and bias.
func (a *Analysis) attentionValues(n *onnxpb.NodeProto, out Seg) (*Projection, bool) {
	w, wt := a.constOf(safe(n.Input, 1))
	if wt == nil || len(wt.GetDims()) != 2 {
		return nil, false
	}
	width := int(wt.GetDims()[1])
	v := a.sp.s[out.S].size * out.B
	p := &Projection{Weight: w, Lo: width - v, Hi: width}
	if b, bt := a.constOf(safe(n.Input, 2)); bt != nil {
		p.Bias = b
	}
	return p, true
}

// readsUnits lists the ops whose first input is contracted with a
// constant weight on the axis given: the layers that read a group's units.
var readsUnits = map[string]func(rank int) int{
	"Conv":          func(int) int { return 1 },
	"ConvTranspose": func(int) int { return 1 },
	"Gemm":          func(r int) int { return r - 1 },
	"MatMul":        func(r int) int { return r - 1 },
}

// observeLinear observes the groups left without an observation whose
// units go through no nonlinearity and no normalisation (the bottleneck
// channels of inverted residual blocks, whose streams only Adds and
// BatchNorms touch): the hidden states are the values the first layer
// that reads the units (in graph order) takes in, so that criteria that
// need only A (obs, flap, wanda, activation) can score them. Runs last,
// after every other way of observing a group.
func (a *Analysis) observeLinear() {
	g := a.Model.Graph()
	for _, n := range g.GetNode() {
		axisOf, ok := readsUnits[n.GetOpType()]
		if !ok || n.GetDomain() != "" || len(n.Input) < 2 || n.GetOpType() == "Gemm" && onnxio.AttrInt(n, "transA", 0) != 0 {
			continue
		}
		if _, w := a.constOf(n.Input[1]); w == nil {
			continue
		}
		x := n.Input[0]
		shape, ok := a.shapes.Shape(x)
		if !ok {
			continue
		}
		ax := axisOf(len(shape))
		if ax < 1 || a.lay[x][ax] == nil {
			continue
		}
		e, err := a.sp.expand(a.lay[x][ax])
		if err != nil || len(e) != 1 || e[0].R == dynR {
			continue
		}
		grp := a.rootOf[e[0].S]
		if grp == nil || grp.Observe != nil || grp.Unobserved != "" {
			continue
		}
		grp.Observe = &Observation{
			Pre: x, PreAxis: ax, PreR: e[0].R, PreB: e[0].B,
			Post: x, PostAxis: ax, PostR: e[0].R, PostB: e[0].B,
			Linear: true,
		}
	}
}
