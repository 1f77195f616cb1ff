package onnxio

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// scratchModel saves a model with two 64 KiB weights in an external data
// file and a small one inline, and loads it.
func scratchModel(t *testing.T, dir string) *Model {
	t.Helper()
	g := &onnxpb.GraphProto{
		Name:        ptr("g"),
		Input:       []*onnxpb.ValueInfoProto{vi("x", -1, 128)},
		Output:      []*onnxpb.ValueInfoProto{vi("y", -1, 128)},
		Initializer: []*onnxpb.TensorProto{ramp("A", 128, 128), ramp("B", 128, 128), ramp("c", 128)},
		Node: []*onnxpb.NodeProto{
			node("MatMul", "m1", ins("x", "A"), outs("h")),
			node("MatMul", "m2", ins("h", "B"), outs("hb")),
			node("Add", "add", ins("hb", "c"), outs("y")),
		},
	}
	m := &Model{Proto: &onnxpb.ModelProto{IrVersion: ptr(int64(8)), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: ptr(int64(17))}}}}
	path := filepath.Join(dir, "m.onnx")
	if err := m.Save(path, &SaveOptions{ExternalData: "m.data", ExternalThreshold: 4096}); err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, path)
}

// ramp is a float tensor whose bytes differ from every other ramp's.
func ramp(name string, dims ...int64) *onnxpb.TensorProto {
	n := NumElements(dims)
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = float64(i) + float64(len(name))/7
	}
	raw, _ := EncodeFloat64s(Float, vals)
	t, err := NewTensor(name, Float, dims, raw)
	if err != nil {
		panic(err)
	}
	return t
}

func TestScratch(t *testing.T) {
	dir := t.TempDir()
	m := scratchModel(t, dir)
	before := initValues(t, m)
	work, s, err := NewScratch(m, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if work.Dir != s.Dir || work.Scratch != s || m.Scratch != nil || m.Dir != dir {
		t.Fatal("NewScratch: the copy should read in the scratch directory, the model as before")
	}
	// The data file is linked, not copied.
	a, _ := os.Stat(filepath.Join(dir, "m.data"))
	b, err := os.Stat(filepath.Join(s.Dir, "m.data"))
	if err != nil || !os.SameFile(a, b) {
		t.Fatalf("the data file is not linked into the scratch directory: %v", err)
	}
	if got := initValues(t, work); !equalValues(got, before) {
		t.Fatal("the working copy reads other values")
	}

	// An edit made through Offload goes to disk; a small one stays.
	edit := work.Clone()
	g := edit.Graph()
	newA := ramp("A2", 128, 128)
	if err := SetRawData(g.Initializer[0], newA.GetDims(), newA.RawData); err != nil {
		t.Fatal(err)
	}
	if err := edit.Offload(g.Initializer[0]); err != nil {
		t.Fatal(err)
	}
	small := ramp("c2", 128)
	if err := SetRawData(g.Initializer[2], small.GetDims(), small.RawData); err != nil {
		t.Fatal(err)
	}
	if err := edit.Offload(g.Initializer[2]); err != nil {
		t.Fatal(err)
	}
	if g.Initializer[0].GetDataLocation() != onnxpb.TensorProto_EXTERNAL || g.Initializer[0].RawData != nil {
		t.Error("the large edit stayed in memory")
	}
	if g.Initializer[2].GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		t.Error("a tensor under the threshold was written out")
	}
	got, err := edit.RawData(g.Initializer[0])
	if err != nil || !bytes.Equal(got, newA.RawData) {
		t.Fatalf("reading the offloaded tensor back: %v", err)
	}
	if s.Written() != int64(len(newA.RawData)) {
		t.Errorf("Written = %d, want %d", s.Written(), len(newA.RawData))
	}
	if w := initValues(t, work); !equalValues(w, before) {
		t.Error("editing the clone changed the working copy")
	}
	spills := func() []string {
		names, _ := filepath.Glob(filepath.Join(s.Dir, spillPrefix+"*"))
		return names
	}
	if len(spills()) != 1 {
		t.Fatalf("spill files %v, want one", spills())
	}

	// Prune keeps what the given models read, and later writes go to a
	// new file.
	if err := s.Prune(edit); err != nil || len(spills()) != 1 {
		t.Fatalf("Prune(edit) removed a file edit reads: %v", err)
	}

	// Spill replaces shared tensors rather than changing them: the
	// model it was derived from still reads the old value inline.
	d := edit.Derive()
	newB := ramp("B2", 128, 128)
	d.Graph().Initializer[1] = newB
	d2 := d.Derive()
	if err := d.Spill(); err != nil {
		t.Fatal(err)
	}
	if d.Graph().Initializer[1] == newB || newB.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || d2.Graph().Initializer[1] != newB {
		t.Error("Spill changed a shared tensor")
	}
	if got, _ := d.RawData(d.Graph().Initializer[1]); !bytes.Equal(got, newB.RawData) {
		t.Error("the spilled tensor reads back other bytes")
	}

	// The first file is read by edit and d, the second only by d.
	if len(spills()) != 2 {
		t.Fatalf("spill files %v, want two", spills())
	}
	if err := s.Prune(edit); err != nil {
		t.Fatal(err)
	}
	if len(spills()) != 1 {
		t.Errorf("after Prune(edit): %v", spills())
	}
	if _, err := d.RawData(d.Graph().Initializer[0]); err != nil {
		t.Errorf("a tensor edit reads was removed: %v", err)
	}
	if err := s.Prune(work); err != nil {
		t.Fatal(err)
	}
	if len(spills()) != 0 {
		t.Errorf("after Prune(work): %v", spills())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s", s.Dir)
	}
	if got := initValues(t, m); !equalValues(got, before) {
		t.Error("the input model's data changed")
	}
}

// Without a usable parent directory the scratch directory is made, hidden,
// beside the model; a data file that is a symbolic link inside the model's
// directory is linked by its target.
func TestScratchFallsBackToModelDir(t *testing.T) {
	dir := t.TempDir()
	m := scratchModel(t, dir)
	if err := os.Rename(filepath.Join(dir, "m.data"), filepath.Join(dir, "real.data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.data", filepath.Join(dir, "m.data")); err != nil {
		t.Fatal(err)
	}
	work, s, err := NewScratch(m, filepath.Join(dir, "no", "such", "dir"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if filepath.Dir(s.Dir) != dir || !strings.HasPrefix(filepath.Base(s.Dir), ".") {
		t.Errorf("scratch directory %s, want a hidden one in %s", s.Dir, dir)
	}
	if got := initValues(t, work); !equalValues(got, initValues(t, m)) {
		t.Error("the working copy reads other values")
	}
	st, err := os.Lstat(filepath.Join(s.Dir, "m.data"))
	if err != nil || !st.Mode().IsRegular() {
		t.Errorf("the linked data file is not a regular file: %v", err)
	}
}

func TestExternalDataChecks(t *testing.T) {
	dir := t.TempDir()
	m := scratchModel(t, dir)
	if err := m.CheckExternalData(); err != nil {
		t.Fatal(err)
	}
	n, err := m.DiskBytes()
	st, _ := os.Stat(filepath.Join(dir, "m.data"))
	if err != nil || n != m.Size+st.Size() {
		t.Errorf("DiskBytes = %d, %v; want %d", n, err, m.Size+st.Size())
	}
	if e := m.EncodedBytes(); e < 2*128*128*4 || e > m.Size+st.Size() {
		t.Errorf("EncodedBytes = %d", e)
	}
	if err := os.Truncate(filepath.Join(dir, "m.data"), 1000); err != nil {
		t.Fatal(err)
	}
	err = m.CheckExternalData()
	if err == nil || !strings.Contains(err.Error(), `"A"`) || !strings.Contains(err.Error(), `"B"`) {
		t.Errorf("CheckExternalData of a truncated file: %v", err)
	}
}

// equalValues compares two maps of initializer bytes.
func equalValues(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
