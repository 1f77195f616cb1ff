// Package onnxio reads, indexes, checks and writes ONNX models.
//
// It owns the ONNX schema as Go types (package onnxpb), loading and saving
// with external data, tensor codecs for the element types models use, a graph
// index (producer and consumers of every tensor, constants whether they are
// initializers or Constant nodes) and a validator that reports every problem
// it finds, naming the node and tensor at fault.
//
// InferShapes propagates static shapes, element types and small integer
// values (shape arithmetic) through a graph. Its rules live in a table of
// package ops, the op registry it shares with the rewriter and autodiff:
// an elementwise op is inferred from its class there (the first input's
// shape, or all inputs broadcast), the other ops by rules of their own in
// the shapes_*.go file of their family, each resolved at the version the
// model imports of the op's domain. An op without a rule leaves its
// outputs unknown.
//
// Reading and writing are lossless: Load followed by Save of an unmodified
// model gives back the same bytes for files written by the reference
// (C++) protobuf serializer, and fields this schema does not know survive.
//
// Files are read only if they are regular files, models up to the 2 GiB
// protobuf limit, and external data only from the model's directory, also
// after symbolic links are resolved. Save replaces a model with external
// data so that the path holds the old pair or the new pair at every moment
// (see Save for the order of the steps and the rule for data file names).
//
// A model with external data is read lazily: Load reads the model file,
// and a tensor's bytes are read from its data file when they are asked for.
// NewScratch gives such a model a private directory where edited tensors
// are written (Offload, Spill) instead of being held in memory, so that
// tools can edit a multi-GiB model one tensor at a time.
//
// The package knows nothing about ONNX Runtime or pruning.
package onnxio
