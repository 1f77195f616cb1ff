// Package shrink runs the iterative pruning loop of docs/METHOD.md §5: capture
// the hidden states of every prunable group, score the units with a
// criterion, remove the lowest-scored ones within each round's budget,
// rewrite the model physically, and repeat until the effective parameter
// reduction 1 - params/params0 reaches the target. The last round removes
// only what is still needed, so the target is overshot by at most one
// unit's parameters (or one step of RoundTo units); of the steps that would
// complete it, it takes the one that overshoots least.
//
// The criteria share one interface so that comparisons differ only in the
// criterion: spectral structural importance and the local baselines the
// paper argues against (docs/METHOD.md §6: magnitude of incoming weights,
// mean absolute activation, random, first-order Taylor).
//
// Parameters are counted as onnxio.Model.ParamCount counts them: every
// element of a floating-point initializer or Constant tensor. FLOPs count
// two per multiply-add of Conv, ConvTranspose, Gemm and MatMul for one
// sample (batch axes of unknown size count as 1).
package shrink
