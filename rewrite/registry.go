package rewrite

import (
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

// The op-rule table: how each op moves, couples, creates and consumes unit
// axes, looked up once per node in an ops.Table by domain, op type and the
// version the model imports of the op's domain (the entry with the largest
// since-version not above it applies). Ops with a Class in ops.Facts need
// no rule of their own: elementwise ops pass units through (Broadcast ones
// couple their operands' unit axes), NoUnits ops read units without
// blocking them, and capture observes groups at Activations (see observe).
// The other ops register a rule in the rules_*.go file of their family.
// An op without either is a barrier: units that reach it are not pruned and
// the report names the op.

// A ruleFunc analyses node n (node i of the graph) for the analyzer.
type ruleFunc func(an *analyzer, n *onnxpb.NodeProto, i int)

var rules = ops.NewTable(deriveRule)

// deriveRule gives the rule of an op that has only a class.
func deriveRule(c ops.Class) (ruleFunc, bool) {
	switch {
	case c&ops.Broadcast != 0:
		return ruleBroadcast, true
	case c&ops.Unary != 0:
		return ruleUnary, true
	case c&ops.NoUnits != 0:
		return ruleNoUnits, true
	}
	return nil, false
}

// classOf returns the class of node n in ops.Facts (0 if it has none) for
// the opset the model imports of n's domain.
func (a *Analysis) classOf(n *onnxpb.NodeProto) ops.Class {
	c, _ := ops.Facts.Lookup(n.GetDomain(), n.GetOpType(), a.Model.Opset(n.GetDomain()))
	return c
}
