// Package ops is the op registry that shape inference (package onnxio),
// the rewriter (package rewrite) and automatic differentiation (package
// autodiff) share, so that an op is described once.
//
// # Tables and the resolution rule
//
// A Table maps an op, keyed by domain and op type, to entries by the opset
// version they apply from (their since-version). For a model that imports
// version N of the op's domain, the entry with the largest since-version
// not above N applies, as ONNX's own operator schemas resolve; a Remove at
// version X ends the op's support from X on, until a later entry. An op
// below its first since-version has no entry. The domains "" and "ai.onnx"
// are the same. Each consumer looks a node up with the version its model
// imports of the node's domain.
//
// # Facts
//
// Facts gives the Class of the ops that need no logic of their own in any
// consumer: elementwise ops (Unary, or Broadcast over all inputs),
// nonlinearities (Activation, where capture observes a group), boolean
// outputs (Predicate), ops whose outputs carry no unit axes (NoUnits:
// Shape, Size, constants) and ops through which no gradient flows
// (NoGradient: comparisons, indices, piecewise-constant functions). Each
// consumer's table is made with NewTable and a derive function that turns
// a class into that consumer's entry:
//
//   - shape inference gives a Unary op's output the first input's shape and
//     a Broadcast op's output the inputs' broadcast shape (boolean for a
//     Predicate);
//   - the rewriter passes units through elementwise ops, coupling the unit
//     axes of Broadcast operands, observes groups at Activations, and lets
//     NoUnits ops read units without blocking them;
//   - autodiff needs no backward rule for a NoGradient op: its outputs are
//     not on any gradient path.
//
// So a new elementwise activation (say com.microsoft's FastGelu) is one
// entry here, plus a backward rule in autodiff if it is to be trained
// through. An op with logic of its own (Conv, Gemm, Reshape, ...) has an
// entry in a consumer's table, added with the same Add and resolved by the
// same rule; a consumer's own entries for an op, at any version, replace
// what the op's class would give in that consumer. An op that is in no
// table is unknown: shape inference leaves its outputs unknown, the
// rewriter stops units at it and names it, and autodiff refuses to
// differentiate through it.
//
// Tables are filled by init functions and only read afterwards.
package ops
