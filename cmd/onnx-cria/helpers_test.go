package main

import (
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
)

// writeNPZ writes data whose input_ids have the wrong width.
func writeNPZ(t *testing.T, path string) {
	t.Helper()
	a, err := dataset.New("input_ids", []int{4, 7}, make([]int64, 28))
	if err != nil {
		t.Fatal(err)
	}
	if err := dataset.SaveNPZ(path, a); err != nil {
		t.Fatal(err)
	}
}
