package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

const (
	mlpModel = "../../testdata/models/mlp/model.onnx"
	mlpCalib = "../../testdata/data/fmnist_calib.npz"
)

// copyFile copies src to dst and returns dst.
func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// hashTree records the SHA-256 of every regular file under dir.
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		out[e.Name()] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// Every output that would land on a file the run reads, on another output,
// or on something that is not a regular file is refused before any work,
// and every file in the directory survives byte for byte (issue 15, items
// 1 to 3).
func TestOutputsNeverOverwriteInputs(t *testing.T) {
	dir := t.TempDir()
	in := copyFile(t, mlpModel, filepath.Join(dir, "in.onnx"))
	calib := copyFile(t, mlpCalib, filepath.Join(dir, "calib.npz"))
	m, err := onnxio.Load(mlpModel)
	if err != nil {
		t.Fatal(err)
	}
	ext := filepath.Join(dir, "ext.onnx")
	if err := m.Save(ext, &onnxio.SaveOptions{ExternalData: "ext.bin"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(in, filepath.Join(dir, "hard.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(calib, filepath.Join(dir, "calib.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("in.onnx", filepath.Join(dir, "sym.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("elsewhere.onnx", filepath.Join(dir, "dangling.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	out := p("out.onnx")
	shrink := func(in, out string, more ...string) []string {
		return append([]string{"shrink", in, out, "--target", "0.3", "--calib", calib, "--samples", "64", "--quiet", "--no-latency"}, more...)
	}
	finetune := func(in, out string, more ...string) []string {
		return append([]string{"finetune", in, out, "--data", calib, "--max-steps", "1", "--quiet"}, more...)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"out is in", shrink(in, in), "is the input model"},
		{"out is a hard link to in", shrink(in, p("hard.onnx")), "is the input model"},
		{"out is a symlink to in", shrink(in, p("sym.onnx")), "symbolic link"},
		{"out is a dangling symlink", shrink(in, p("dangling.onnx")), "symbolic link"},
		{"out is in's external data", shrink(ext, p("ext.bin")), "external data"},
		{"out is the calibration data", shrink(in, calib), "is the calibration data"},
		{"report is in", shrink(in, out, "--report", in), "is the input model"},
		{"report is out", shrink(in, out, "--report", out), "same file"},
		{"report is the calibration data", shrink(in, out, "--report", calib), "is the calibration data"},
		{"report is the eval data", shrink(in, out, "--eval", calib, "--report", calib), "is the calibration data"},
		{"external data named like in", shrink(in, out, "--external-data", "in.onnx"), "is the input model"},
		{"external data is in's data file", shrink(ext, out, "--external-data", "ext.bin"), "external data"},
		{"external data is a path", shrink(in, out, "--external-data", "../x.data"), "bare file name"},
		{"out is /dev/null", shrink(in, "/dev/null"), "not a regular file"},
		{"report is a fifo", shrink(in, out, "--report", p("fifo")), "named pipe"},
		{"out is a directory", shrink(in, dir), "directory"},
		{"report in a missing directory", shrink(in, out, "--report", p("nosuch/r.json")), "does not exist"},
		{"out in a missing directory", shrink(in, p("nosuch/o.onnx")), "does not exist"},
		{"finetune out is the teacher", finetune(in, ext, "--teacher", ext), "is the teacher"},
		{"finetune out is the data", finetune(in, calib), "is the training data"},
		{"checkpoint is the student", finetune(in, out, "--checkpoint", in), "is the input model"},
		{"checkpoint is the teacher", finetune(in, out, "--teacher", ext, "--checkpoint", ext), "is the teacher"},
		{"checkpoint is the teacher's data", finetune(in, out, "--teacher", ext, "--checkpoint", p("ext.bin")), "external data"},
		{"checkpoint is out", finetune(in, out, "--checkpoint", out), "same file"},
		{"scores file links to the calibration data", []string{"score", in, "--calib", calib, "--samples", "64", "--quiet", "--report", p("calib.json")}, "is the calibration data"},
	}
	before := hashTree(t, dir)
	for _, c := range cases {
		code, _, errOut := cli(c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q: want a failure saying %q", c.name, code, errOut, c.want)
		}
		after := hashTree(t, dir)
		for name, h := range before {
			if after[name] != h {
				t.Fatalf("%s: %s was modified or removed", c.name, name)
			}
		}
		for name := range after {
			if before[name] == "" {
				t.Fatalf("%s: left %s behind", c.name, name)
			}
		}
		if fi, err := os.Lstat(p("sym.onnx")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s: the symlink was replaced", c.name)
		}
		if fi, err := os.Lstat(p("fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Fatalf("%s: the fifo was replaced", c.name)
		}
	}
	if fi, err := os.Stat("/dev/null"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatal("/dev/null is no longer a device")
	}
}
