package main

import (
	"flag"

	"github.com/onnx-cria/onnx-cria/ort"
)

// rtFlags adds the ONNX Runtime flags every running command takes.
func rtFlags(fs *flag.FlagSet) *ort.Config {
	c := &ort.Config{}
	fs.StringVar(&c.LibraryPath, "ort-lib", "", "path to libonnxruntime.so (default: $"+ort.EnvLibrary+", then the cache, then system paths)")
	fs.IntVar(&c.Threads, "threads", 0, "intra-op threads for ONNX Runtime (0: its default)")
	fs.StringVar(&c.Provider, "provider", ort.ProviderCPU, "execution provider: cpu or cuda")
	return c
}

// startRuntime initialises ONNX Runtime once per process.
func startRuntime(c *ort.Config) error {
	return ort.Init(*c)
}
