// Package dataset reads and writes the NumPy files that hold calibration,
// training and evaluation data, and prepares them for a model: matching
// arrays to model inputs by name, batching, and seeded subsets.
//
// # Files
//
// An .npy file holds one array: the magic "\x93NUMPY", a format version
// (1.0, 2.0 or 3.0; they differ in the width of the header length and the
// header's text encoding), a Python dict literal giving 'descr' (the dtype,
// e.g. '<f4'), 'fortran_order' and 'shape', then the raw elements. An .npz
// file is a zip archive (stored or deflate-compressed) of .npy members; the
// member "x.npy" is the array "x". The parser here is written from those
// facts alone; it never evaluates the header as code, so object (pickled)
// arrays are refused rather than read.
//
// Readers accept bool, uint8, int32, int64, float16, float32 and float64 in
// either byte order, and convert Fortran-order arrays to C order. Writers
// produce little-endian C-order files byte-identical to np.save's (header
// padded to 64 bytes). Every malformed input is an error that wraps one of
// ErrNotNPY, ErrNotZip, ErrHeader, ErrTruncated or ErrUnsupported and names
// the file and member; none panics. MaxHeaderLen bounds what a corrupt length
// field can make a reader allocate, and array data is allocated as it
// arrives when the input's size is not known.
//
// Files are read only if they are regular files: a named pipe or a device
// is refused, naming the path, instead of blocking or never ending. An .npz
// member may decompress to what its .npy header declares and nothing more:
// its declared size must match the header's shape, and cannot exceed what
// its compressed bytes can hold (deflate expands at most 1032 times), which
// is checked before anything is allocated. An array is then allocated once,
// at its declared size. LoadSubset reads a seeded subset of rows without
// keeping the others, so its memory follows the subset, not the file.
//
// # Data
//
// An Array holds its elements in a typed Go slice, in C order, with axis 0
// as the row (sample) axis. A Set is the arrays of one file in file order.
// Set.Match binds a Set to a model's inputs (described by InputSpec, which
// callers fill from the model so that this package knows nothing of ONNX or
// ONNX Runtime) and reports every mismatch at once. A Bound yields batches
// of input rows plus labels. Subsets are chosen by a fixed, documented
// algorithm (see SubsetIndices) so that a seed reproduces the same rows
// anywhere.
//
// Functions never modify the arrays they are given; results that hold rows
// (Slice, Take, Subset, batches) are copies. New and the typed accessors
// such as Float32s share the caller's slice, as gonum's mat.NewDense does.
package dataset
