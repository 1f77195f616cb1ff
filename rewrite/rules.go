package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Helpers of every family's rules, and the rules that ops with only a
// class in ops.Facts get (see registry.go).

// rank of t: its inferred rank, or -1.
func (an *analyzer) rank(t string) int {
	d, ok := an.dims(t)
	if !ok {
		return -1
	}
	return len(d)
}

func (an *analyzer) needShape(n *onnxpb.NodeProto, t string) ([]int64, bool) {
	d, ok := an.dims(t)
	if !ok && len(an.lay[t]) > 0 {
		an.blockTensor(t, fmt.Sprintf("shape of %q is unknown at node %s", t, an.cur))
	}
	return d, ok
}

// ruleNoUnits: the outputs carry no units, and reading units is no barrier.
func ruleNoUnits(an *analyzer, n *onnxpb.NodeProto, i int) {}

// ruleBroadcast couples every operand's axes under broadcasting, slices
// constant operands, and passes the units to the output.
func ruleBroadcast(an *analyzer, n *onnxpb.NodeProto, i int) {
	inputs := make([]int, len(n.Input))
	for k := range inputs {
		inputs[k] = k
	}
	an.elementwise(n, i, inputs, []int{0})
}

// ruleUnary passes the units of the first input to every output (Dropout's
// mask too); further inputs (Clip's bounds, Dropout's ratio) are scalars.
func ruleUnary(an *analyzer, n *onnxpb.NodeProto, i int) {
	for k, o := range n.Output {
		if k == 0 || o != "" {
			an.elementwise(n, i, []int{0}, []int{k})
		}
	}
}

func (an *analyzer) elementwise(n *onnxpb.NodeProto, i int, inputs, outs []int) {
	out := n.Output[outs[0]]
	r := an.rank(out)
	if r < 0 {
		for _, s := range inputs {
			if len(an.lay[n.Input[s]]) > 0 {
				an.blockTensor(n.Input[s], fmt.Sprintf("output shape of %s is unknown (node %s)", n.GetOpType(), an.cur))
			}
		}
		return
	}
	for k := 0; k < r; k++ {
		var have []Layout
		var consts [][2]int
		var plain []string
		for _, s := range inputs {
			if s >= len(n.Input) || n.Input[s] == "" {
				continue
			}
			t := n.Input[s]
			d, ok := an.dims(t)
			if !ok {
				if len(an.lay[t]) > 0 {
					an.blockTensor(t, fmt.Sprintf("shape of %q is unknown at node %s", t, an.cur))
				}
				continue
			}
			ax := k - (r - len(d))
			if ax < 0 {
				continue
			}
			if l := an.lay[t][ax]; l != nil {
				have = append(have, l)
				continue
			}
			if d[ax] == 1 {
				continue
			}
			if name, _ := an.constOf(t); name != "" {
				consts = append(consts, [2]int{s, ax})
			} else {
				plain = append(plain, t)
			}
		}
		if len(have) == 0 {
			continue
		}
		l := have[0]
		for _, h := range have[1:] {
			an.unify(l, h, fmt.Sprintf("operands of %s", n.GetOpType()))
		}
		for _, c := range consts {
			an.param(i, c[0], c[1], l, roleAffine)
		}
		for _, t := range plain {
			an.block(l, fmt.Sprintf("combined by %s (node %s) with %q, which carries no prunable units", n.GetOpType(), an.cur, t))
		}
		for _, o := range outs {
			if o < len(n.Output) && n.Output[o] != "" {
				an.setLayout(n.Output[o], k, l)
			}
		}
	}
}

// mapAxes moves the units of in to out with an axis map; axes the map drops
// (ok false) block their units with reason.
func (an *analyzer) mapAxes(in, out string, f func(ax int) (int, bool), reason string) {
	for ax, l := range an.lay[in] {
		if o, ok := f(ax); ok {
			an.setLayout(out, o, l)
		} else {
			an.block(l, reason)
		}
	}
}
