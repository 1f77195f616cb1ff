//go:build linux

package onnxio

import (
	"bytes"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
)

// withFileSizeLimit runs fn with writes to regular files limited to limit
// bytes (RLIMIT_FSIZE): a write past it fails with EFBIG, like a full disk,
// even for root, for whom permissions do not stop writes.
func withFileSizeLimit(t *testing.T, limit uint64, fn func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip("getrlimit:", err)
	}
	signal.Ignore(syscall.SIGXFSZ) // else the kernel stops the process
	defer signal.Reset(syscall.SIGXFSZ)
	lim := old
	lim.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip("setrlimit:", err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	fn()
}

// TestSaveWriteFailure: when writing fails half-way (disk full), Save
// reports it, leaves no temporary file, and keeps an existing model and
// data file as they were.
func TestSaveWriteFailure(t *testing.T) {
	m := mustLoad(t, "testdata/conv_bn.onnx")
	dir := t.TempDir()
	model := filepath.Join(dir, "m.onnx")
	data := filepath.Join(dir, "m.data")
	opts := &SaveOptions{ExternalData: "m.data", ExternalThreshold: 1}
	if err := m.Save(model, opts); err != nil {
		t.Fatal(err)
	}
	oldModel, oldData := readFile(t, model), readFile(t, data)

	// The limit is well above what the test binary itself writes (go test's
	// log of opened files), and the files below are well above it.
	const limit = 1 << 20
	// A data file within the limit (conv2.weight, 864 bytes) and a model
	// beyond it: the model fails after the data file is complete, which
	// must then not replace the existing one.
	bigDoc := m.Clone()
	doc := string(bytes.Repeat([]byte("x"), 2*limit))
	bigDoc.Proto.DocString = &doc
	// A data file beyond the limit.
	bigData := m.Clone()
	bigData.Graph().Initializer = append(bigData.Graph().Initializer, zeros("unused", limit/2))
	withFileSizeLimit(t, limit, func() {
		if err := bigDoc.Save(model, &SaveOptions{ExternalData: "m.data", ExternalThreshold: 800}); err == nil {
			t.Error("Save of a model past the file size limit succeeded")
		}
		if err := bigData.Save(model, opts); err == nil {
			t.Error("Save with external data succeeded past the file size limit")
		}
		if err := bigDoc.Save(model, nil); err == nil {
			t.Error("Save succeeded past the file size limit")
		}
		if err := WriteFileAtomic(model, make([]byte, 2*limit)); err == nil {
			t.Error("WriteFileAtomic succeeded past the file size limit")
		}
	})
	noTemp(t, dir)
	if !bytes.Equal(readFile(t, model), oldModel) || !bytes.Equal(readFile(t, data), oldData) {
		t.Error("failed Saves changed the existing model or its data")
	}
	if names := dirEntries(t, dir); len(names) != 2 {
		t.Errorf("directory holds %v", names)
	}
	if _, err := os.Stat(model); err != nil {
		t.Fatal(err)
	}
}
