// Command fmnist-npz writes a seeded subset of a Fashion-MNIST split as an
// .npz file ("input" float32 [N,1,28,28] in [0,1], "labels" int64), the
// form onnx-cria's commands read:
//
//	go run ./internal/fmnist/cmd/fmnist-npz -split train -n 20000 -seed 1 -o train20k.npz
//
// -no-labels leaves the labels out, for distillation without labels.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/internal/fmnist"
)

func main() {
	dir := flag.String("dir", fmnist.Dir(), "directory of the IDX gzip files")
	split := flag.String("split", "train", "train or test")
	n := flag.Int("n", 0, "rows to keep, a seeded subset (0: all)")
	seed := flag.Int64("seed", 0, "subset seed")
	out := flag.String("o", "", "output .npz file (required)")
	noLabels := flag.Bool("no-labels", false, "write the images only (for label-free recovery)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	s, err := fmnist.LoadSubset(*dir, *split, *n, *seed)
	if err == nil {
		arrays := s.Arrays
		if *noLabels {
			arrays = []*dataset.Array{s.Get("input")}
		}
		err = dataset.SaveNPZ(*out, arrays...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fmnist-npz:", err)
		os.Exit(1)
	}
	rows, _ := s.N()
	fmt.Printf("%s: %d rows of the %s split\n", *out, rows, *split)
}
