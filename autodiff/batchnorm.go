package autodiff

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// BatchNorm modes of a training graph.
const (
	// BNFrozen keeps BatchNormalization in inference form: the running
	// statistics are constants; scale and bias train.
	BNFrozen = "frozen"
	// BNBatch normalises with each batch's statistics, as training-mode
	// BatchNorm does, and the running statistics follow them as
	// exponential averages (the node's momentum; the variance unbiased),
	// updated in Go after every step and written back into the model.
	BNBatch = "batch"
)

// BNStat is a BatchNormalization whose running statistics a batch-mode
// training graph updates.
type BNStat struct {
	Node      string
	Mean, Var string  // the running-statistics initializers
	MeanOut   string  // graph output: the batch mean, [C]
	VarOut    string  // graph output: the unbiased batch variance, [C]
	Momentum  float64 // running = momentum * running + (1 - momentum) * batch
	Channels  int64
	DType     onnxio.DataType
	Dims      []int64 // of the statistics tensors
	nodeIndex int
	bn        bnBatch
}

// bnBatch is what the backward rule of a batch-mode BatchNormalization
// reads from its forward pass: the centred input, the batch variance
// (keepdims), the values per channel and the reduced axes.
type bnBatch struct {
	out, xc, v, nper string
	axes             []int64
	ch               int64
	eps              float64
}

// batchModeBN returns a copy of m in which every BatchNormalization that can
// train in batch mode normalises with batch statistics: the batch mean and
// variance are computed in the graph and fed to an inference-mode node,
// whose backward rule (gradBatchNormBatch) accounts for their dependence
// on the input. It also returns the statistics the copy outputs. A node
// keeps its inference form when its running statistics are not
// initializers of its own, or when its extra outputs are used.
func batchModeBN(m *onnxio.Model) (*onnxio.Model, []BNStat, error) {
	c := m.Clone()
	g := c.Graph()
	ix := onnxio.NewIndex(g)
	sh := onnxio.InferShapes(c, true)
	var stats []BNStat
	for i, n := range g.GetNode() {
		if n.GetOpType() != "BatchNormalization" || n.GetDomain() != "" || len(n.Input) < 5 || onnxio.AttrInt(n, "training_mode", 0) != 0 {
			continue
		}
		used := false
		for _, o := range n.Output[1:] {
			used = used || (o != "" && len(ix.Consumers[o]) > 0)
		}
		mean, vr := ix.Init[n.Input[3]], ix.Init[n.Input[4]]
		if used || mean == nil || vr == nil || len(ix.Consumers[n.Input[3]]) != 1 || len(ix.Consumers[n.Input[4]]) != 1 {
			continue
		}
		if _, isIn := ix.Inputs[n.Input[3]]; isIn {
			continue
		}
		xd, ok := sh.Shape(n.Input[0])
		if !ok || len(xd) < 2 {
			continue
		}
		st := BNStat{Node: onnxio.NodeLabel(n, i), Mean: n.Input[3], Var: n.Input[4],
			Momentum: float64(onnxio.AttrFloat(n, "momentum", 0.9)), Channels: onnxio.NumElements(mean.GetDims()),
			DType: onnxio.DataType(mean.GetDataType()), Dims: append([]int64{}, mean.GetDims()...), nodeIndex: i}
		stats = append(stats, st)
	}
	if len(stats) == 0 {
		return m, nil, nil
	}
	// Emit each replacement at the end of the graph, then move it into the
	// node's place so that the order stays topological.
	b := &builder{m: c, g: g, opset: c.Opset(""), taken: map[string]bool{}, memo: map[string]string{}, sh: sh, ix: ix}
	for _, v := range g.GetInput() {
		b.taken[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		b.taken[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		b.taken[n.GetName()] = true
		for _, o := range n.GetOutput() {
			b.taken[o] = true
		}
	}
	orig := append([]*onnxpb.NodeProto{}, g.Node...)
	repl := map[int][]*onnxpb.NodeProto{}
	for k := range stats {
		st := &stats[k]
		n := orig[st.nodeIndex]
		x, scale, bias := n.Input[0], n.Input[1], n.Input[2]
		xd, _ := sh.Shape(x)
		r := len(xd)
		dt := sh.DTypes[x]
		if !dt.IsFloat() {
			return nil, nil, fmt.Errorf("BatchNormalization %s: input %q has element type %s", st.Node, x, dt)
		}
		eps := float64(onnxio.AttrFloat(n, "epsilon", 1e-5))
		start := len(g.Node)
		b.scope = "bn/" + st.Node
		axes := []int64{0}
		for a := 2; a < r; a++ {
			axes = append(axes, int64(a))
		}
		mu := b.reduceMean(x, axes, true)
		xc := b.sub(x, mu)
		nper := b.div(b.sizeAs(x, dt), b.scalar(dt, float64(st.Channels)))
		v := b.reduceMean(b.mul(xc, xc), axes, true) // ORT runs ReduceSumSquare about 3x slower
		// The normalisation itself is an inference-mode BatchNormalization
		// fed with the batch statistics: one pass over x, where Mul and Add
		// took two. Its backward rule (gradBatchNorm) knows, from bnBatch,
		// that the statistics depend on x.
		st.MeanOut = b.reshape(mu, b.ints(st.Dims...))
		v1 := b.reshape(v, b.ints(st.Dims...))
		y := b.op("BatchNormalization", []string{x, scale, bias, st.MeanOut, v1}, attrFloat("epsilon", float32(eps)))
		st.bn = bnBatch{out: n.Output[0], ch: st.Channels, eps: eps, xc: xc, v: v, nper: nper, axes: axes}
		// The running statistics: the batch mean and the unbiased variance,
		// v n/(n-1) with n = |x|/C values per channel.
		unb := b.div(nper, b.op("Max", []string{b.sub(nper, b.scalar(dt, 1)), b.scalar(dt, 1)}))
		st.VarOut = b.mul(v1, unb)
		b.scope = ""
		// y's producer takes the BatchNormalization's output name.
		added := g.Node[start:]
		for _, an := range added {
			for k, o := range an.Output {
				if o == y {
					an.Output[k] = n.Output[0]
				}
			}
			for k, in := range an.Input {
				if in == y {
					an.Input[k] = n.Output[0]
				}
			}
		}
		repl[st.nodeIndex] = append([]*onnxpb.NodeProto{}, added...)
		g.Node = g.Node[:start]
	}
	var nodes []*onnxpb.NodeProto
	for i, n := range orig {
		if r, ok := repl[i]; ok {
			nodes = append(nodes, r...)
			continue
		}
		nodes = append(nodes, n)
	}
	g.Node = nodes
	// Constants the builder added are initializers already; value_info of
	// the replaced outputs still holds.
	return c, stats, nil
}

// gradBatchNormBatch is the backward pass of a batch-mode
// BatchNormalization, y = scale xh + bias with xh = xc r, xc = x - mean(x),
// r = 1/sqrt(mean(xc^2) + eps) per channel, in closed form: with n values
// per channel, S1 = sum(dy) and S2 = sum(dy xc),
//
//	dx = scale r (dy - S1/n - xc r^2 S2/n),  dscale = r S2,  dbias = S1.
//
// The full-size passes are the two sums, one product and the three that
// write dx: a Mul, an inference-mode BatchNormalization that applies the
// per-channel affine map to xc, and an Add.
func (c *bctx) gradBatchNormBatch(bb bnBatch) ([]string, error) {
	dy, x, scale, bias := c.dy[0], c.in(0), c.in(1), c.in(2)
	dt := c.ftype()
	r, err := c.rank(x)
	if err != nil {
		return nil, err
	}
	vec := c.ints(bb.ch)
	col := func(v string) string {
		if r <= 2 {
			return v
		}
		s := []int64{-1}
		for k := 2; k < r; k++ {
			s = append(s, 1)
		}
		return c.reshape(v, c.ints(s...))
	}
	inv := c.op("Reciprocal", []string{c.op("Sqrt", []string{c.add(bb.v, c.scalar(dt, bb.eps))})})
	s1 := c.reduceSum(dy, bb.axes, true)
	s2 := c.reduceSum(c.mul(dy, bb.xc), bb.axes, true)
	res := make([]string, 5)
	if c.needs(0) {
		rn := c.op("Reciprocal", []string{bb.nper})
		a := c.mul(col(scale), inv)
		k1 := c.neg(c.mul(c.mul(a, c.mul(inv, inv)), c.mul(s2, rn)))
		k0 := c.neg(c.mul(a, c.mul(s1, rn)))
		zeros := make([]float64, bb.ch)
		ones := make([]float64, bb.ch)
		for i := range ones {
			ones[i] = 1
		}
		aff := c.op("BatchNormalization", []string{bb.xc, c.reshape(k1, vec), c.reshape(k0, vec),
			c.floats(dt, []int64{bb.ch}, zeros), c.floats(dt, []int64{bb.ch}, ones)}, attrFloat("epsilon", 0))
		res[0] = c.add(c.mul(dy, a), aff)
	}
	if c.needs(1) {
		res[1] = c.reshapeLike(c.mul(s2, inv), scale)
	}
	if bias != "" && c.needs(2) {
		res[2] = c.reshapeLike(s1, bias)
	}
	return res, nil
}
