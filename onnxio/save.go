package onnxio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// SaveOptions control where tensor data goes.
type SaveOptions struct {
	// ExternalData, if set, names a file beside the model (a bare file name)
	// that receives every tensor of at least ExternalThreshold bytes. If it is
	// empty, data stays inline unless the model would exceed the 2 GiB
	// protobuf limit or was loaded with external data; then
	// "<model file name>.data" is used.
	ExternalData      string
	ExternalThreshold int64 // default 1024 bytes
	// Keep lists files the caller reads (data sets, a teacher model, ...):
	// Save never replaces or removes them. The model's own external data
	// files are kept without being listed.
	Keep []string
}

// saveFault, when set (by tests), is called after each step of Save that
// changes the directory; an error stops Save there. A test may also end
// the process in it, to see what a crash at that point leaves on disk.
var saveFault func(step string) error

func fault(step string) error {
	if saveFault != nil {
		return saveFault(step)
	}
	return nil
}

// Save writes the model to path so that path always holds a complete
// model: the old one with its data, or the new one with its data.
//
// Everything is written to temporary files in path's directory first and
// renamed into place once complete; the model is renamed last, so that a
// model never points at data that is not there. The data file gets the
// name asked for (ExternalData, else "<model file name>.data"), and an
// existing file of that name is replaced like the model, unless the model
// being saved reads it or it is in Keep: that is an error. When the model
// being replaced reads the same data file name, the new model goes into
// place in two steps: first pointing at the new data under its temporary
// name (".NAME.tmp-<digits>"), then, once NAME holds the new data, at NAME;
// a crash between them leaves that complete pair, which the next Save to
// path tidies up.
//
// Once the new model is in place, Save removes the data files that the
// replaced model used and the new one does not (a crash just before that
// leaves them behind, unused), and temporary files that interrupted Saves
// to path left; never a file in Keep or one the model reads. Saves into one
// directory take turns (an advisory lock on the directory), so that one
// never removes another's temporary files.
func (m *Model) Save(path string, opts *SaveOptions) error {
	var o SaveOptions
	if opts != nil {
		o = *opts
	}
	if o.ExternalThreshold <= 0 {
		o.ExternalThreshold = 1024
	}
	external := o.ExternalData != "" || m.HasExternalData() || proto.Size(m.Proto) > maxProtoSize
	if external && o.ExternalData == "" {
		o.ExternalData = filepath.Base(path) + ".data"
	}
	if external {
		if filepath.Base(o.ExternalData) != o.ExternalData || o.ExternalData == "." || o.ExternalData == ".." {
			return fmt.Errorf("%s: external data file %q must be a bare file name", path, o.ExternalData)
		}
		if o.ExternalData == filepath.Base(path) {
			return fmt.Errorf("%s: external data file %q would overwrite the model", path, o.ExternalData)
		}
	}
	s := &saver{m: m, path: path, dir: filepath.Dir(path), opts: o}
	unlock, err := lockDir(s.dir)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer unlock()
	s.old = dataFiles(path)
	own, err := m.ExternalFiles()
	if err != nil {
		return fmt.Errorf("%s: %w", m.Name(), err)
	}
	s.keep = append(own, o.Keep...)
	if !external {
		b, err := proto.MarshalOptions{}.Marshal(m.Proto)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := s.putModel(b, "model"); err != nil {
			return err
		}
		if err := fault("model renamed"); err != nil {
			return err
		}
		s.tidy("")
		return nil
	}
	return s.saveExternal()
}

// saver holds one Save's state.
type saver struct {
	m         *Model
	path, dir string
	opts      SaveOptions
	old       map[string]bool // data files the model at path uses now
	keep      []string        // files never replaced or removed
}

// saveExternal writes large tensors to a data file beside the model and
// puts the pair into place.
func (s *saver) saveExternal() error {
	name := s.opts.ExternalData
	final := filepath.Join(s.dir, name)
	if s.kept(final) {
		return fmt.Errorf("%s: external data file %s is read by this run (the model's own data, or a file to keep): choose another external data file name", s.path, final)
	}
	df, err := os.CreateTemp(s.dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	tmp := df.Name()
	inUse := false // whether the model at path points at tmp
	defer func() {
		df.Close()
		if !inUse {
			os.Remove(tmp)
		}
	}()
	locs, restore, err := s.m.writeData(df, s.opts.ExternalThreshold)
	defer restore()
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	if n := proto.Size(s.m.Proto); n > maxProtoSize {
		return fmt.Errorf("%s: model is %d bytes even with external data, over the 2 GiB protobuf limit", s.path, n)
	}
	// CreateTemp makes the file private; the data file is as readable as
	// the model beside it.
	if err := closeData(df); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := fault("data written"); err != nil {
		return err
	}
	marshal := func(location string) ([]byte, error) {
		for _, l := range locs {
			l.Value = proto.String(location)
		}
		b, err := proto.MarshalOptions{}.Marshal(s.m.Proto)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.path, err)
		}
		return b, nil
	}
	if s.old[final] {
		// The model at path reads final: point the new model at the new
		// data under its temporary name first.
		b, err := marshal(filepath.Base(tmp))
		if err != nil {
			return err
		}
		if err := s.putModel(b, "model pointing at the temporary data"); err != nil {
			return err
		}
		inUse = true
		delete(s.old, final)
		s.old[tmp] = true
		if err := fault("model pointing at the temporary data renamed"); err != nil {
			return err
		}
		if err := s.putData(tmp, final); err != nil {
			return err
		}
	} else if err := rename(tmp, final); err != nil {
		return err
	}
	if err := fault("data renamed"); err != nil {
		return err
	}
	b, err := marshal(name)
	if err != nil {
		return err
	}
	if err := s.putModel(b, "model"); err != nil {
		return err
	}
	inUse = false
	if err := fault("model renamed"); err != nil {
		return err
	}
	s.tidy(final)
	return nil
}

// putData makes final hold the same bytes as tmp while tmp stays in place:
// a hard link where the file system has them, else a copy.
func (s *saver) putData(tmp, final string) error {
	f, err := os.CreateTemp(s.dir, "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", final, err)
	}
	second := f.Name()
	f.Close()
	os.Remove(second) // Link needs a free name; the directory lock keeps it free.
	if err := os.Link(tmp, second); err != nil {
		if err := copyFile(tmp, second); err != nil {
			os.Remove(second)
			return fmt.Errorf("writing %s: %w", final, err)
		}
	}
	if err := fault("data linked"); err != nil {
		os.Remove(second)
		return err
	}
	return rename(second, final)
}

// putModel writes b beside path and renames it over path.
func (s *saver) putModel(b []byte, what string) error {
	tmp, err := writeTemp(s.path, b)
	if err != nil {
		return err
	}
	if err := fault(what + " written"); err != nil {
		os.Remove(tmp)
		return err
	}
	return rename(tmp, s.path)
}

// rename renames from over to, or removes from if it cannot, and syncs the
// directory, so that renames reach the disk in the order they were made.
func rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		os.Remove(from)
		return fmt.Errorf("writing %s: %w", to, err)
	}
	if d, err := os.Open(filepath.Dir(to)); err == nil {
		d.Sync() // not every file system syncs directories; the rename stands
		d.Close()
	}
	return nil
}

// tempName matches the temporary files of Save and WriteFileAtomic:
// "." + the final name + ".tmp-" + digits.
var tempName = regexp.MustCompile(`^\.(.+)\.tmp-[0-9]+$`)

// tidy removes, once the new model is in place, the data files the
// replaced model used that the new one (whose data file is final, or "")
// does not, and the temporary files that interrupted Saves to path left.
// Failures to remove are ignored: the model in place is complete.
func (s *saver) tidy(final string) {
	owned := map[string]bool{filepath.Base(s.path): true, filepath.Base(s.path) + ".data": true}
	if final != "" {
		owned[filepath.Base(final)] = true
	}
	var doomed []string
	for p := range s.old {
		if p != final {
			doomed = append(doomed, p)
			owned[filepath.Base(p)] = true
		}
	}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if g := tempName.FindStringSubmatch(e.Name()); g != nil && owned[g[1]] && e.Type().IsRegular() {
			doomed = append(doomed, filepath.Join(s.dir, e.Name()))
		}
	}
	for _, p := range doomed {
		if p != final && !s.kept(p) {
			os.Remove(p)
		}
	}
}

// kept reports whether p is, or is a link to, a file that must be kept.
func (s *saver) kept(p string) bool {
	st, err := os.Stat(p)
	if err != nil {
		return false
	}
	for _, k := range s.keep {
		if kt, err := os.Stat(k); err == nil && os.SameFile(st, kt) {
			return true
		}
	}
	return false
}

// dataFiles lists the external data files that the model at path uses; an
// absent or unreadable model uses none.
func dataFiles(path string) map[string]bool {
	files := map[string]bool{}
	m, err := Load(path)
	if err != nil {
		return files
	}
	refs, _ := m.ExternalFiles() // a bad reference is no file to remove
	for _, f := range refs {
		files[f] = true
	}
	return files
}

// writeData writes every tensor of at least threshold bytes, and every
// external one, to df at page-aligned offsets and swaps it for an external
// reference. It returns the references' location entries, for the caller
// to fill in, and restore, which puts the tensors back as they were.
func (m *Model) writeData(df *os.File, threshold int64) (locs []*onnxpb.StringStringEntryProto, restore func(), err error) {
	// The swapped-out fields are kept by reference, not copied: a model
	// held in memory is not doubled while it is written.
	type saved struct {
		t    *onnxpb.TensorProto
		data tensorData
	}
	var swaps []saved
	restore = func() {
		for _, s := range swaps {
			s.data.putBack(s.t)
		}
	}
	var offset int64
	seen := map[*onnxpb.TensorProto]bool{}
	walkTensors(m.Proto, func(t *onnxpb.TensorProto) {
		// A message built in Go may hold one tensor in two places (both
		// branches of an If sharing a graph): swap it only once, or the
		// second visit reads the reference the first one wrote and the
		// restore leaves that reference in m.
		if err != nil || seen[t] {
			return
		}
		seen[t] = true
		size := int64(DataType(t.GetDataType()).Size())
		n := NumElements(t.GetDims())
		ext := t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
		if size == 0 || n < 0 || (!ext && n*size < threshold) {
			return
		}
		var raw []byte
		if raw, err = m.RawData(t); err != nil {
			return
		}
		// Page-aligned offsets let readers map the file.
		if pad := (4096 - offset%4096) % 4096; pad != 0 {
			if _, err = df.Write(make([]byte, pad)); err != nil {
				return
			}
			offset += pad
		}
		if _, err = df.Write(raw); err != nil {
			return
		}
		swaps = append(swaps, saved{t, takeData(t)})
		loc := &onnxpb.StringStringEntryProto{Key: ptr("location")}
		locs = append(locs, loc)
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			loc,
			{Key: ptr("offset"), Value: ptr(strconv.FormatInt(offset, 10))},
			{Key: ptr("length"), Value: ptr(strconv.FormatInt(int64(len(raw)), 10))},
		}
		t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
		offset += int64(len(raw))
	})
	return locs, restore, err
}

// closeData makes a finished data file readable like the model, syncs and
// closes it.
func closeData(f *os.File) error {
	err := f.Chmod(0o644)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyFile copies src to the new file dst and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return closeData(out)
}
