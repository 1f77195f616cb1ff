// Package capture records the hidden states of a model on a dataset (the Z
// and A of docs/METHOD.md §1).
//
// ONNX Runtime returns only a graph's declared outputs, so capture runs an
// in-memory copy of the model that declares the observed tensors as outputs
// (the model itself is never changed). Each observation point is a tensor,
// the axis that carries its units, and how the units sit on that axis (R
// repeats of blocks of B positions, as the rewriter describes them). Every
// batch is reduced at once to one value per sample and unit, so memory stays
// at M x n per point whatever the size of the activations:
//
//   - spatial axes (convolution feature maps) are averaged;
//   - token axes are averaged over the non-padding tokens of each sample,
//     using the dataset's attention mask when there is one (an axis is a
//     token axis when its length equals the mask's);
//   - a unit's block and repeat positions are averaged together;
//   - with RMS set (attention heads), values are squared before averaging
//     and the root is taken after, so that signed features do not cancel.
//
// The reductions run inside the graph, right after the tensors they read,
// and ORT writes their results straight into Go memory (for [N, n] tensors,
// into the result matrix itself). Results are float32 matrices, as ORT
// computes them; Buffers lets a later capture reuse an earlier one's memory.
// The copy declares only the capture's outputs, so ORT skips whatever
// served the model's own outputs alone.
//
// Axis 0 is the sample axis, unless a point's Samples places the samples
// elsewhere (heads folded into the batch, a merged [T*N, D] view): a view
// with the samples first is reduced then. NaN or infinite activations are
// an error that names the tensor and the sample.
package capture
