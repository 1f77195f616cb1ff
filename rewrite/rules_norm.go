package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

func init() {
	rules.Add("", 1, ruleBatchNorm, "BatchNormalization")
	rules.Add("", 1, ruleInstanceNorm, "InstanceNormalization")
	rules.Add("", 17, ruleLayerNorm, "LayerNormalization")
	rules.Add("", 1, ruleReduce, "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
		"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin")
	rules.Add("", 1, ruleSoftmaxOld, "Softmax", "LogSoftmax", "Hardmax")
	rules.Add("", 13, ruleSoftmax, "Softmax", "LogSoftmax", "Hardmax")
}

func ruleBatchNorm(an *analyzer, n *onnxpb.NodeProto, i int) {
	if len(n.Output) > 1 || onnxio.AttrInt(n, "training_mode", 0) == 1 {
		an.blockInputs(n, fmt.Sprintf("BatchNormalization node %s runs in training mode", an.cur))
		return
	}
	x := n.Input[0]
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, true }, "")
	if l := an.lay[x][1]; l != nil {
		for k := 1; k < len(n.Input) && k < 5; k++ {
			an.param(i, k, 0, l, roleAffine)
		}
	}
}

func ruleInstanceNorm(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, true }, "")
	if l := an.lay[x][1]; l != nil {
		an.param(i, 1, 0, l, roleAffine)
		an.param(i, 2, 0, l, roleAffine)
	}
}

func ruleLayerNorm(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	if r < 0 {
		an.blockInputs(n, fmt.Sprintf("LayerNormalization node %s: input shape unknown", an.cur))
		return
	}
	axis := int(onnxio.AttrInt(n, "axis", -1))
	if axis < 0 {
		axis += r
	}
	for ax, l := range an.lay[x] {
		switch {
		case ax < axis:
			an.setLayout(n.Output[0], ax, l)
		case ax == r-1 && axis == r-1 && !an.opts.NoNormThrough:
			an.warn(l, fmt.Sprintf("LayerNormalization node %s normalises over the pruned axis: its statistics change", an.cur))
			an.setLayout(n.Output[0], ax, l)
			for k := 1; k < len(n.Input) && k < 3; k++ {
				if n.Input[k] != "" {
					if _, t := an.constOf(n.Input[k]); t != nil {
						an.param(i, k, len(t.GetDims())-1, l, roleAffine)
					}
				}
			}
		default:
			an.block(l, fmt.Sprintf("LayerNormalization node %s normalises over the unit axis together with others", an.cur))
		}
	}
	for k := 1; k < len(n.Output); k++ {
		an.mapAxes(x, n.Output[k], func(ax int) (int, bool) { return ax, ax < axis }, fmt.Sprintf("statistics output of LayerNormalization node %s", an.cur))
	}
}

func ruleReduce(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	din, ok := an.dims(x)
	if !ok {
		an.blockTensor(x, fmt.Sprintf("%s node %s: shape unknown", n.GetOpType(), an.cur))
		return
	}
	op := n.GetOpType()
	keep := onnxio.AttrInt(n, "keepdims", 1) == 1
	var axes []int64
	if op == "ArgMax" || op == "ArgMin" {
		axes = []int64{onnxio.AttrInt(n, "axis", 0)}
	} else {
		since := int64(18)
		if op == "ReduceSum" {
			since = 13
		}
		var okAx bool
		axes, okAx = an.axesArg(n, since)
		if !okAx {
			an.blockTensor(x, fmt.Sprintf("%s node %s has axes known only at run time", op, an.cur))
			return
		}
		if len(axes) == 0 && onnxio.AttrInt(n, "noop_with_empty_axes", 0) == 1 {
			an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, true }, "")
			return
		}
	}
	red := map[int]bool{}
	for _, a := range axes {
		if a < 0 {
			a += int64(len(din))
		}
		red[int(a)] = true
	}
	if len(axes) == 0 {
		for k := range din {
			red[k] = true
		}
	}
	stat := keep && (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceSumSquare" || op == "ReduceL2")
	m := map[int]int{}
	j := 0
	for k := range din {
		if red[k] {
			if keep {
				j++
			}
			continue
		}
		m[k] = j
		j++
	}
	for ax, l := range an.lay[x] {
		if o, ok := m[ax]; ok {
			an.setLayout(n.Output[0], o, l)
			continue
		}
		if stat && !an.opts.NoNormThrough {
			// Normalisation statistics (decomposed LayerNorm, RMSNorm):
			// structurally fine, numerically different after pruning.
			an.warn(l, fmt.Sprintf("%s node %s computes statistics over the pruned axis: they change", op, an.cur))
			continue
		}
		an.block(l, fmt.Sprintf("%s node %s reduces over the unit axis", op, an.cur))
	}
}

func ruleSoftmax(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	axis := int(onnxio.AttrInt(n, "axis", -1))
	if axis < 0 {
		axis += r
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, ax != axis },
		fmt.Sprintf("%s node %s normalises over the unit axis", n.GetOpType(), an.cur))
}

// Before opset 13, Softmax flattens the input into [before axis, from axis].
func ruleSoftmaxOld(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	axis := int(onnxio.AttrInt(n, "axis", 1))
	if axis < 0 {
		axis += r
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, ax < axis },
		fmt.Sprintf("%s node %s normalises over the unit axis", n.GetOpType(), an.cur))
}
