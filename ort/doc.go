// Package ort runs ONNX models in ONNX Runtime (ORT) from Go.
//
// It finds and checks the ORT shared library, creates sessions from
// serialized models, and moves tensors between Go slices and ORT. Callers
// never handle C memory: inputs are read from their Go slices and outputs
// come back as fresh Go slices.
//
// # The library
//
// ORT is loaded at run time through github.com/yalue/onnxruntime_go, whose
// header is C API version 24, so the library must be ORT 1.24 or newer.
// scripts/setup-ort.sh installs ORT 1.30.0 into the user cache. Init (and
// NewSession, which calls it) uses the first of: Config.LibraryPath, the
// ONNX_CRIA_ORT_LIB environment variable, the cache
// (${ONNX_CRIA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onnx-cria}/ort/1.30.0),
// then libonnxruntime.so.1 or libonnxruntime.so in the LD_LIBRARY_PATH
// entries, /usr/local/lib, /usr/lib and the multiarch directory. Before the
// binding sees the library, its version is read through OrtGetApiBase, so
// a file that is not ORT, or an ORT that is too old, gives an error naming
// the file and version rather than a failure inside the binding. One
// library is loaded per process.
//
// ORT's telemetry is off: Init sets ORT_DISABLE_TELEMETRY=1 in the process
// environment before it creates ORT's environment (ORT 1.30's Linux builds
// otherwise write a debug log and a session file to $TMPDIR and a device id
// and event database under ~/.cache/Microsoft), and then disables telemetry
// events through the C API as well. A run leaves no file behind.
//
// # Sessions and hidden tensors
//
// ORT returns only a model's declared graph outputs. To observe a hidden
// tensor, NewSessionForModel (or NewSession with output names) declares it
// as a graph output in a copy of the model, with its element type from
// onnxio shape inference or value_info, and creates the session from that
// copy; the caller's model is never changed.
//
// A model whose tensors live in external data files reaches ORT as its
// graph with the references (never with the weights inline), and ORT is
// told the model's directory to resolve them in; ORT maps the files into
// memory. So models over the 2 GiB protobuf limit run, no copy of their
// weights passes through Go, and the weights count in the resident memory
// only as mapped file pages. Such sessions do not prepack weights (ORT's
// packed copies would double them); the data files are checked first, so a
// missing or short file is reported by tensor.
//
// Run validates inputs against the model (names, element types, ranks,
// fixed dimensions) and reports every mismatch at once before calling ORT.
// A Session is safe for concurrent Run calls and is released with Destroy.
//
// The CPU execution provider is the default. Config.Provider "cuda" uses
// the CUDA provider when its library, libonnxruntime_providers_cuda.so,
// sits next to the ORT library, and is an error otherwise; there is no
// silent fallback to the CPU.
//
// The package knows nothing about pruning.
package ort
