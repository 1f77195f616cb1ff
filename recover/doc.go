// Package recover restores the accuracy of a pruned model: a closed-form
// least-squares refit that needs no labels, then optionally gradient
// fine-tuning or distillation (package finetune). Run is the recovery step
// that shrink performs after its last round.
//
// # Least squares
//
// LSQ refits, after pruning, every layer whose input width changed (Gemm,
// MatMul with a constant weight, Conv) so that on calibration data its
// output from the pruned model's inputs matches the original model's
// output of the same layer, restricted to the layer's remaining output
// units. The fit is ridge regression on the normal equations, solved by
// Cholesky; layers are refit in graph order, each on inputs recaptured
// through the layers refit before it; convolutions regress im2col patches
// of a seeded sample of output positions.
//
// The package knows nothing of how units were chosen: it reads the
// original units that remain of every pruned group.
package recover
