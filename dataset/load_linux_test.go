//go:build linux

package dataset

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadRefusesNonRegular: every loader refuses a named pipe (which used
// to block it forever) and a device, naming the file.
func TestLoadRefusesNonRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "calib.npz")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	loaders := map[string]func(string) error{
		"Load":       func(p string) error { _, err := Load(p); return err },
		"LoadNPZ":    func(p string) error { _, err := LoadNPZ(p); return err },
		"LoadNPY":    func(p string) error { _, err := LoadNPY(p); return err },
		"LoadSubset": func(p string) error { _, err := LoadSubset(p, 10, 1); return err },
	}
	for name, load := range loaders {
		for path, want := range map[string]string{fifo: "named pipe", "/dev/zero": "character device", "/dev/null": "character device"} {
			done := make(chan error, 1)
			go func() { done <- load(path) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
					t.Errorf("%s(%s): %v; want an error naming the file and saying %q", name, path, err, want)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s(%s) still blocked after 20 s", name, path)
			}
		}
	}
}
