package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnx-cria/onnx-cria/internal/inputfile"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

// runFiles lists what one run reads and writes, so that before any work it
// can refuse an output that would land on a file the run reads (by path,
// through symlinks, or as a hard link), two outputs that are one file, and
// outputs that cannot be written as regular files.
type runFiles struct {
	reads, writes []namedPath
}

type namedPath struct{ role, path string }

func (r *runFiles) read(role, path string) {
	if path != "" {
		r.reads = append(r.reads, namedPath{role, path})
	}
}

// readModel adds a model file and every external data file it reads.
func (r *runFiles) readModel(role string, m *onnxio.Model) error {
	r.read(role, m.Path)
	files, err := m.ExternalFiles()
	if err != nil {
		return fmt.Errorf("%s: %w", m.Name(), err)
	}
	for _, f := range files {
		r.read(role+"'s external data", f)
	}
	return nil
}

func (r *runFiles) write(role, path string) {
	if path != "" {
		r.writes = append(r.writes, namedPath{role, path})
	}
}

// writeModel adds a model output derived from src and the data file Save
// may write beside it: dataName if given, else the default
// "<file name>.data", which Save uses when the model keeps external data
// or outgrows the 2 GiB protobuf limit.
func (r *runFiles) writeModel(role, path, dataName string, src *onnxio.Model) {
	r.write(role, path)
	if dataName == "" && (src.HasExternalData() || src.Size > math.MaxInt32) {
		dataName = filepath.Base(path) + ".data"
	}
	if dataName != "" {
		r.write(role+"'s external data", filepath.Join(filepath.Dir(path), dataName))
	}
}

// keep lists every file the run reads, for onnxio.SaveOptions.Keep: Save
// removes data files a replaced model used, never these.
func (r *runFiles) keep() []string {
	var out []string
	for _, in := range r.reads {
		out = append(out, in.path)
	}
	return out
}

// check refuses the run's outputs as a set; it runs before any work.
func (r *runFiles) check() error {
	for i, w := range r.writes {
		if err := writable(w); err != nil {
			return err
		}
		for _, in := range r.reads {
			if sameTarget(w.path, in.path) {
				return fmt.Errorf("%s %s is the %s %s: onnx-cria never overwrites a file it reads; choose another path", w.role, w.path, in.role, in.path)
			}
		}
		for _, o := range r.writes[:i] {
			if sameTarget(w.path, o.path) {
				return fmt.Errorf("%s %s and %s %s are the same file; choose distinct paths", o.role, o.path, w.role, w.path)
			}
		}
	}
	return nil
}

// writable checks that w can be written atomically: an existing file there
// must be a regular file (the write replaces it by renaming, which would
// turn a symlink, device or FIFO into a regular file), and its directory
// must exist and take new files.
func writable(w namedPath) error {
	p := w.path
	if strings.HasSuffix(p, string(filepath.Separator)) {
		return fmt.Errorf("%s %s is a directory; give a file name", w.role, p)
	}
	if fi, err := os.Lstat(p); err == nil {
		switch mode := fi.Mode(); {
		case mode.IsDir():
			return fmt.Errorf("%s %s is a directory; give a file name", w.role, p)
		case mode&os.ModeSymlink != 0:
			dest, _ := os.Readlink(p)
			return fmt.Errorf("%s %s is a symbolic link (to %s): onnx-cria replaces outputs by renaming and would replace the link with a file; give the link's target or remove the link", w.role, p, dest)
		case !mode.IsRegular():
			return fmt.Errorf("%s %s exists and is not a regular file (%s): onnx-cria writes outputs only as regular files", w.role, p, inputfile.Kind(mode))
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("%s %s: %w", w.role, p, err)
	}
	dir := filepath.Dir(p)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: its directory %s does not exist", w.role, p, dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s %s: %s is not a directory", w.role, p, dir)
	}
	// Permission bits do not tell about read-only mounts or ACLs: try it.
	f, err := os.CreateTemp(dir, ".onnx-cria-probe-*")
	if err != nil {
		return fmt.Errorf("%s %s: cannot create files in %s: %v", w.role, p, dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// sameTarget reports whether a and b name one file: the same inode when
// both exist (hard links, symlinks), else the same resolved path.
func sameTarget(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return resolve(a) == resolve(b)
}

// resolve is p's absolute path with symlinks resolved as far as they exist.
func resolve(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs))
	}
	return abs
}

// checkDataName checks --external-data: a file name that goes beside the
// output, not a path.
func checkDataName(name string) error {
	if name != "" && (filepath.Base(name) != name || name == "." || name == "..") {
		return usagef("--external-data %q: want a bare file name; the data file goes beside the output model", name)
	}
	return nil
}
