package main

import (
	"flag"

	"github.com/onnx-cria/onnx-cria/runtime"
)

// rtFlags adds the ONNX Runtime flags every running command takes.
func rtFlags(fs *flag.FlagSet) *runtime.Config {
	c := &runtime.Config{}
	fs.StringVar(&c.LibraryPath, "ort-lib", "", "path to libonnxruntime.so (default: $"+runtime.EnvLibrary+", then the cache, then system paths)")
	fs.IntVar(&c.Threads, "threads", 0, "intra-op threads for ONNX Runtime (0: its default)")
	fs.StringVar(&c.Provider, "provider", runtime.ProviderCPU, "execution provider: cpu or cuda")
	return c
}

// startRuntime initialises ONNX Runtime once per process.
func startRuntime(c *runtime.Config) error {
	return runtime.Init(*c)
}
