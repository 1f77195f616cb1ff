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
}

// batchModeBN returns a copy of m in which every BatchNormalization that can
// train in batch mode is replaced by its decomposition with batch
// statistics, and the statistics the copy outputs. A node keeps its
// inference form when its running statistics are not initializers of its
// own, or when its extra outputs are used.
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
		bshape := []int64{-1}
		for a := 2; a < r; a++ {
			axes = append(axes, int64(a))
			bshape = append(bshape, 1)
		}
		col := func(v string) string {
			if r <= 2 {
				return v
			}
			return b.reshape(v, b.ints(bshape...))
		}
		mu := b.reduceMean(x, axes, true)
		xc := b.sub(x, mu)
		v := b.reduceMean(b.mul(xc, xc), axes, true)
		inv := b.op("Reciprocal", []string{b.op("Sqrt", []string{b.add(v, b.scalar(dt, eps))})})
		// The scale joins the per-channel factor before it meets xc: one
		// pass over x (and two in the backward pass) fewer.
		y := b.add(b.mul(xc, b.mul(inv, col(scale))), col(bias))
		// The running statistics: the batch mean and the unbiased variance,
		// v n/(n-1) with n = |x|/C values per channel.
		st.MeanOut = b.reshape(mu, b.ints(st.Dims...))
		nper := b.div(b.sizeAs(x, dt), b.scalar(dt, float64(st.Channels)))
		unb := b.div(nper, b.op("Max", []string{b.sub(nper, b.scalar(dt, 1)), b.scalar(dt, 1)}))
		st.VarOut = b.mul(b.reshape(v, b.ints(st.Dims...)), unb)
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
