package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/onnx-cria/onnx-cria/ort"
)

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", "Print the versions of onnx-cria, Go and the ONNX Runtime library it finds.", stderr)
	c := &common{}
	addORT(fs, &c.rt)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "onnx-cria %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err := c.start(); err != nil {
		fmt.Fprintf(stdout, "ONNX Runtime: not available: %v\n", err)
		return err
	}
	fmt.Fprintf(stdout, "ONNX Runtime %s (%s)\n", ort.Version(), ort.LibraryPath())
	return nil
}
