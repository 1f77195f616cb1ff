// Package finetune recovers the accuracy of a pruned model: by gradient
// fine-tuning or distillation, executed by ONNX Runtime, and by a
// closed-form least-squares refit that needs no labels.
//
// # Training graphs
//
// ONNX Runtime's training API is not available, so training runs on its
// inference engine. BuildTraining turns an inference graph into a training
// graph, in ONNX: the forward pass, a loss on one output (see Objective:
// cross-entropy on class labels, next-token cross-entropy for language
// models, distillation KL(softmax(t/T) || softmax(z/T)) T^2 against a
// teacher's outputs, or MSE for regression outputs) and the backward pass
// by reverse-mode differentiation, written with ONNX ops. The trainable
// initializers become graph inputs and their gradients graph outputs;
// gradients of hidden tensors (dL/da for first-order Taylor scores) can be
// requested too. A Stepper runs the graph; an Optimizer (Adam with bias
// correction and decoupled weight decay, or SGD with momentum) updates the
// weights in Go. BatchNormalization trains with batch statistics by default
// (its running statistics follow them, updated in Go, as in PyTorch's train
// mode) or stays frozen in inference form. Run is the whole loop: seeded
// shuffling, epochs, evaluation after each, checkpoints (weights, running
// statistics, optimizer state, position) written atomically, from which a
// run resumes to exactly the result of an uninterrupted one. The defaults
// (Adam, learning rate 1e-4, cosine schedule) suit recovering a trained
// model, not training from scratch; a heavily damaged model wants more
// (see RESULTS.md).
//
// VJP exposes the differentiation itself: vector-Jacobian products of any
// graph with respect to any tensors.
//
// # Backward rules
//
// Each op's rule lives in a table keyed by (domain, op type, opset range),
// and emits the op's input gradients from its output gradients in the form
// the graph's opset defines (axes as attributes or inputs). Broadcasting
// operands get their gradients summed back to their shapes. Linear layers
// use Gemm and MatMul; Conv's input gradient is a ConvTranspose with the
// same weights and its weight gradient a Conv of the input with the output
// gradient, batch and channel axes swapped (grouped and depthwise per
// group); MaxPool routes gradients through its Indices output with
// ScatterElements; embeddings (Gather) scatter-add with ScatterND, or a
// one-hot product before opset 16. A model of opset 13 to 15 is raised to 16
// for those scatters: the ops models use did not change meaning in between.
// Integer tensors and shape computations carry no gradient and need no
// rule; a differentiable path through an op without one is an error that
// names every such op and node. Every rule is checked against central
// finite differences in the tests, in float64 wherever ORT runs the ops in
// double precision.
//
// Only initializers are trained, never Constant nodes (exporters put
// buffers such as rotary tables and masks there), and by default only
// floating-point initializers of two or more elements that are not read as
// statistics or hyper-parameters (see DefaultParams).
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
// The package knows nothing of how units were chosen (it reads kept units
// per group) and nothing of capture's internals.
package finetune
