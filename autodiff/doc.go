// Package autodiff builds training graphs in ONNX and runs them in ONNX
// Runtime: the forward pass, a loss, and the backward pass by reverse-mode
// differentiation over the ONNX ops.
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
// requested too. A Stepper runs the graph and returns the loss and the
// gradients; the caller updates the weights. BatchNormalization trains
// with batch statistics (BNBatch: the graph also outputs each batch's
// mean and variance, for the caller's running statistics, as in PyTorch's
// train mode) or stays frozen in inference form (BNFrozen).
//
// VJP exposes the differentiation itself: vector-Jacobian products of any
// graph with respect to any tensors.
//
// # Backward rules
//
// Each op's rule lives in an ops.Table keyed by domain, op type and
// since-version (the registry shape inference and the rewriter share; see
// package ops), and emits the op's input gradients from its output
// gradients in the form the graph's opset defines (axes as attributes or
// inputs). Broadcasting operands get their gradients summed back to their
// shapes; the gradient of a mean or a sum stays unexpanded where it meets a
// tensor of the full shape (a product, a ReLU's mask, the sum of a
// tensor's gradients), so that broadcasting expands it, and backward nodes
// nothing reads are pruned. Linear layers use Gemm and MatMul; Conv's
// input gradient is a ConvTranspose with the same weights and its weight
// gradient a batched MatMul of the input's patches (a Conv with one-hot
// weights) with the output gradient, or for kernels of more than 9
// positions a Conv of the input with the output gradient, batch and
// channel axes swapped (grouped and depthwise per group); MaxPool shares
// each window's gradient among its maxima when the windows tile the input
// (nearest-neighbour Resizes and an equality mask, without the slow
// Indices output) and routes it through the Indices output with
// ScatterElements otherwise; embeddings (Gather) scatter-add with
// ScatterND, or a one-hot product before opset 16. A model of opset 13 to
// 15 is raised to 16 for those scatters: the ops models use did not change
// meaning in between. Integer tensors carry no gradient, and ops whose
// class in ops.Facts is NoGradient (shapes, comparisons, indices,
// piecewise-constant functions) need no rule; a differentiable path
// through an op without one is an error that names every such op and
// node. Every rule is checked against central finite differences in the
// tests, in float64 wherever ORT runs the ops in double precision.
//
// Only initializers are trained, never Constant nodes (exporters put
// buffers such as rotary tables and masks there), and by default only
// floating-point initializers of two or more elements that are not read as
// statistics or hyper-parameters (see DefaultParams).
//
// GradientPass runs such a graph over a dataset without updating anything,
// for first-order (Taylor) importance scores. The training loop itself
// (optimizers, epochs, checkpoints) is package finetune.
package autodiff
