package onnxio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Scratch is a private working directory for the edited copies of a model
// whose weights live in external data files. Edited tensors that are large
// are written to spill files there instead of being kept in memory, so that
// a run over a multi-GiB model holds in memory one tensor at a time; ONNX
// Runtime then maps them from disk like the original weights.
//
// The directory also holds a hard link to each data file the model reads,
// under the name its references use: ONNX Runtime resolves every external
// reference of a model in one directory, and refuses symbolic links that
// lead out of it. Links cost no space and leave the original files as they
// are. Close removes the directory.
type Scratch struct {
	Dir string
	// Threshold is the size in bytes from which Offload and Spill write a
	// tensor out (64 KiB); smaller ones stay in memory.
	Threshold int64

	mu      sync.Mutex
	f       *os.File // the spill file being appended to, nil between files
	name    string   // its base name
	off     int64
	seq     int
	spills  map[string]bool // spill files present, by base name
	written int64
}

// spillName is the pattern of spill file names: it cannot clash with a
// linked data file, whose names come from the model, only if those never
// start with it; NewScratch checks.
const spillPrefix = "onnx-cria-spill-"

// NewScratch creates a scratch directory for m in parent (the system's
// temporary directory if parent is ""), links m's external data files into
// it, and returns a copy of m (see Derive) that reads them there and whose
// edits may be spilled there. When a link cannot be made (parent is on
// another file system than the data), the directory is made in the model's
// own directory instead, as a hidden directory; if that fails too, the
// error says what to do.
func NewScratch(m *Model, parent string) (*Model, *Scratch, error) {
	files, err := m.ExternalFiles()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", m.Name(), err)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(m.Dir, f)
		if strings.HasPrefix(filepath.Base(rel), spillPrefix) {
			return nil, nil, fmt.Errorf("%s: external data file %s: names starting with %q are reserved for onnx-cria's scratch files", m.Name(), f, spillPrefix)
		}
	}
	s, err := linkedDir(m, files, parent)
	if err != nil && m.Dir != "" && len(files) > 0 {
		var err2 error
		if s, err2 = linkedDir(m, files, m.Dir); err2 != nil {
			return nil, nil, fmt.Errorf("%s: making a scratch directory: %v; and beside the model: %v (set TMPDIR to a writable directory on the file system of %s)", m.Name(), err, err2, files[0])
		}
		err = nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: making a scratch directory: %w", m.Name(), err)
	}
	c := m.Derive()
	c.Dir, c.Scratch = s.Dir, s
	return c, s, nil
}

// linkedDir makes a scratch directory in parent with a hard link to each
// of files (paths under m.Dir) at the same relative path.
func linkedDir(m *Model, files []string, parent string) (*Scratch, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	name := "onnx-cria-scratch-*"
	if parent == m.Dir {
		name = "." + name
	}
	dir, err := os.MkdirTemp(parent, name)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		rel, _ := filepath.Rel(m.Dir, f)
		// A data file may be a symbolic link inside the model's directory;
		// link what it points at, not the link.
		real, err := filepath.EvalSymlinks(f)
		if err == nil {
			dst := filepath.Join(dir, rel)
			if err = os.MkdirAll(filepath.Dir(dst), 0o700); err == nil {
				err = os.Link(real, dst)
			}
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return &Scratch{Dir: dir, Threshold: 64 << 10, spills: map[string]bool{}}, nil
}

// Written is the number of bytes written to spill files so far.
func (s *Scratch) Written() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

// Close removes the scratch directory with its links and spill files.
// Models that read from it can no longer be used.
func (s *Scratch) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	return os.RemoveAll(s.Dir)
}

// Prune removes the spill files that none of keep reads and starts a new
// spill file for later writes. A session that still maps a removed file
// keeps reading it (the data stays until it is unmapped).
func (s *Scratch) Prune(keep ...*Model) error {
	used := map[string]bool{}
	for _, m := range keep {
		if m == nil || m.Dir != s.Dir {
			continue
		}
		walkTensors(m.Proto, func(t *onnxpb.TensorProto) {
			if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
				return
			}
			for _, kv := range t.GetExternalData() {
				if kv.GetKey() == "location" {
					used[filepath.Clean(kv.GetValue())] = true
				}
			}
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	for name := range s.spills {
		if !used[name] {
			if rerr := os.Remove(filepath.Join(s.Dir, name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
				err = rerr
			}
			delete(s.spills, name)
		}
	}
	return err
}

// write appends raw to the current spill file at a page-aligned offset and
// returns where it went.
func (s *Scratch) write(raw []byte) (name string, offset int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		s.seq++
		s.name = spillPrefix + strconv.Itoa(s.seq) + ".data"
		if s.f, err = os.OpenFile(filepath.Join(s.Dir, s.name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			s.f = nil
			return "", 0, fmt.Errorf("scratch: %w", err)
		}
		s.spills[s.name] = true
		s.off = 0
	}
	s.off += (4096 - s.off%4096) % 4096
	if _, err := s.f.WriteAt(raw, s.off); err != nil {
		return "", 0, fmt.Errorf("scratch: writing %s: %w", s.name, err)
	}
	offset = s.off
	s.off += int64(len(raw))
	s.written += int64(len(raw))
	return s.name, offset, nil
}

// Offload writes t's data to m's scratch directory and makes t refer to it,
// when m has a scratch directory (see NewScratch) and t holds at least
// Scratch.Threshold bytes in memory; otherwise it does nothing. t is
// changed in place, so it must belong to m alone: a tensor the caller has
// just made or set. Spill does the same for tensors m may share.
func (m *Model) Offload(t *onnxpb.TensorProto) error {
	s := m.Scratch
	if s == nil || t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || t.GetSegment() != nil {
		return nil
	}
	size := DataType(t.GetDataType()).Size()
	n := numBytes(t.GetDims(), size)
	if size == 0 || n < s.Threshold {
		return nil
	}
	if m.Dir != s.Dir {
		return fmt.Errorf("tensor %q: the model reads its data in %s, not in its scratch directory %s", t.GetName(), m.Dir, s.Dir)
	}
	raw, err := m.RawData(t)
	if err != nil {
		return err
	}
	name, offset, err := s.write(raw)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	takeData(t)
	t.ExternalData = []*onnxpb.StringStringEntryProto{
		{Key: ptr("location"), Value: ptr(name)},
		{Key: ptr("offset"), Value: ptr(strconv.FormatInt(offset, 10))},
		{Key: ptr("length"), Value: ptr(strconv.FormatInt(int64(len(raw)), 10))},
	}
	t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	return nil
}

// Spill offloads every large initializer of m's main graph that is held in
// memory (see Offload). Each is replaced in m's list by a new tensor, so
// models that share the old one (see Derive) are not changed.
func (m *Model) Spill() error {
	if m.Scratch == nil {
		return nil
	}
	g := m.Graph()
	for i, t := range g.GetInitializer() {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			continue
		}
		if n := numBytes(t.GetDims(), DataType(t.GetDataType()).Size()); n < m.Scratch.Threshold {
			continue
		}
		raw, err := m.RawData(t)
		if err != nil {
			return err
		}
		c := withoutData(t)
		c.RawData = raw
		if err := m.Offload(c); err != nil {
			return err
		}
		g.Initializer[i] = c
	}
	return nil
}

// withoutData copies t's fields other than its data.
func withoutData(t *onnxpb.TensorProto) *onnxpb.TensorProto {
	d := takeData(t)
	c := proto.Clone(t).(*onnxpb.TensorProto)
	d.putBack(t)
	return c
}

// tensorData is the fields that hold or locate a tensor's values.
type tensorData struct {
	raw      []byte
	floats   []float32
	int32s   []int32
	int64s   []int64
	doubles  []float64
	uint64s  []uint64
	external []*onnxpb.StringStringEntryProto
	location *onnxpb.TensorProto_DataLocation
}

// takeData moves the data fields out of t, leaving them empty.
func takeData(t *onnxpb.TensorProto) tensorData {
	d := tensorData{t.RawData, t.FloatData, t.Int32Data, t.Int64Data, t.DoubleData, t.Uint64Data, t.ExternalData, t.DataLocation}
	t.RawData, t.FloatData, t.Int32Data, t.Int64Data, t.DoubleData, t.Uint64Data = nil, nil, nil, nil, nil, nil
	t.ExternalData, t.DataLocation = nil, nil
	return d
}

// putBack restores fields taken by takeData.
func (d tensorData) putBack(t *onnxpb.TensorProto) {
	t.RawData, t.FloatData, t.Int32Data, t.Int64Data, t.DoubleData, t.Uint64Data = d.raw, d.floats, d.int32s, d.int64s, d.doubles, d.uint64s
	t.ExternalData, t.DataLocation = d.external, d.location
}
