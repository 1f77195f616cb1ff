package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The fixture CNN and MLP measured round robin: one record per file, in
// order, with a positive median at each batch size from each pass.
func TestLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ONNX Runtime for about a second")
	}
	files := []string{"../../../testdata/models/cnn/model.onnx", "../../../testdata/models/mlp/model.onnx"}
	var out bytes.Buffer
	args := append([]string{"--data", "../../../testdata/data/fmnist_calib.npz", "--passes", "2", "--budget", "50ms", "--batches", "1,8"}, files...)
	if err := run(args, &out); err != nil {
		t.Fatal(err)
	}
	var recs []Record
	if err := json.Unmarshal(out.Bytes(), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(files) {
		t.Fatalf("%d records for %d files", len(recs), len(files))
	}
	for i, r := range recs {
		if r.File != files[i] || len(r.Passes) != 2 || r.Threads != 1 {
			t.Errorf("record %d: file %s, %d passes, %d threads", i, r.File, len(r.Passes), r.Threads)
		}
		for _, b := range []string{"1", "8"} {
			if r.Median[b] <= 0 {
				t.Errorf("%s: median at batch %s is %v", r.File, b, r.Median[b])
			}
		}
	}
}

func TestLatencyBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"../../../testdata/models/cnn/model.onnx"},
		{"--data", "../../../testdata/data/fmnist_calib.npz", "--batches", "0", "../../../testdata/models/cnn/model.onnx"},
		{"--data", "../../../testdata/data/fmnist_calib.npz", "missing.onnx"},
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
