// Package finetune recovers the accuracy of a pruned model by gradient
// fine-tuning or distillation: the training step is a graph that package
// autodiff builds and ONNX Runtime runs; this package owns the loop around
// it. An Optimizer (Adam with bias correction and decoupled weight decay,
// or SGD with momentum) updates the weights in Go; BatchNormalization
// trains with batch statistics by default, its running statistics updated
// in Go as in PyTorch's train mode. Run is the whole loop: seeded
// shuffling, epochs, evaluation after each, checkpoints (weights, running
// statistics, optimizer state, position) written atomically, from which a
// run resumes to exactly the result of an uninterrupted one. The defaults
// (Adam, learning rate 1e-4, cosine schedule) suit recovering a trained
// model, not training from scratch; a heavily damaged model wants more
// (see RESULTS.md).
//
// The package knows nothing of how units were chosen and nothing of
// capture's internals.
package finetune
