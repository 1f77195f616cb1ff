//go:build linux

package onnxio

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadRefusesNonRegular: a named pipe, a device and a file over the
// 2 GiB protobuf limit are refused as models, and a pipe as external data,
// with the file named, before anything is read. (A pipe used to block Load forever and /dev/zero to grow memory
// until the process died.)
func TestLoadRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.onnx")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	big := filepath.Join(dir, "big.onnx")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: takes no disk space.
	if err := f.Truncate(maxProtoSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	link := filepath.Join(dir, "zero.onnx")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{fifo, "named pipe"},
		{"/dev/zero", "character device"},
		{link, "character device"},
		{big, "2 GiB"},
	}
	// External data that is a pipe.
	m, tp := extModel(t, "location", "data.bin", "length", "8")
	pipeData := filepath.Join(m.Dir, "data.bin")
	if err := os.Remove(pipeData); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(pipeData, 0o644); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct{ path, want string }{pipeData, "named pipe"})
	for _, c := range cases {
		done := make(chan error, 1)
		go func() {
			var err error
			if c.path == pipeData {
				_, err = m.RawData(tp)
			} else {
				_, err = Load(c.path)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Load(%s): %v; want an error naming the file and saying %q", c.path, err, c.want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("Load(%s) still blocked after 20 s", c.path)
		}
	}
}
