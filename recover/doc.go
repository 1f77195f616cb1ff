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
// units. The fit is ridge regression; convolutions regress im2col patches
// of a seeded sample of output positions.
//
// Each layer is fit given the layers refit before it. The layers are
// taken in passes: a pass holds every layer whose input no layer still to
// be refit affects (a block's q, k and v projections; gate and up; the
// branches of an inception block), and layers that read the same input
// the same way share one set of normal equations. Both models run in
// stages, one per pass: a stage runs only the nodes that earlier stages
// have not, starting from the tensors they left, so each model is run
// once in all and the cost grows linearly with depth (before, every layer
// ran both models on the whole calibration set).
//
// One calibration sample in eight (at least one when there are two or
// more) is held out by a seeded choice. Refits are solved on the others
// and kept only when they lower the layer's error on the held-out samples;
// a refit with fewer regression rows than unknowns (underdetermined), or
// whose ridge outweighs the data in most input directions
// (ill-conditioned), is flagged and must in addition lower the error on
// significantly more held-out samples than it raises it (a sign test at
// 5%, so at least five held-out samples).
//
// # Memory
//
// Between stages each model keeps, for every calibration sample, the
// tensors that its later nodes read (for a CNN the feature maps crossing
// the cut, for a transformer the residual stream), in their own element
// types. LSQ works this out from the models' static shapes before running
// anything and uses fewer calibration samples (a seeded subset) when it
// would exceed LSQOptions.MaxMemory (2 GiB). A pass holds, per group of layers sharing equations, X^T X
// (D x D, float64, for D input features plus a bias), X^T Y (D x N), the
// current and the refit weights, and one block of at most 4096 rows that
// ONNX Runtime turns into its contribution to X^T X and X^T Y; the
// factorisation works in place. When the rows number less than half the
// features the rows themselves (R x D, float32) are kept instead of X^T X
// and the problem is solved through the R x R matrix X X^T, which gives
// the same solution. Otherwise no layer's regression rows are held, and no
// layer's targets outside its pass.
//
// The package knows nothing of how units were chosen: it reads the
// original units that remain of every pruned group.
package recover
