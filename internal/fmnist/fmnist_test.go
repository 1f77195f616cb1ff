package fmnist

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeIDX(t *testing.T, path string, dims []int, data []byte, zip bool) {
	t.Helper()
	var b bytes.Buffer
	b.Write([]byte{0, 0, 8, byte(len(dims))})
	for _, d := range dims {
		b.Write([]byte{byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)})
	}
	b.Write(data)
	out := b.Bytes()
	if zip {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(out)
		w.Close()
		out = z.Bytes()
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A hand-made split of three 2x2 images.
func TestLoadSynthetic(t *testing.T) {
	dir := t.TempDir()
	writeIDX(t, filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), []int{3, 2, 2}, []byte{0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8}, true)
	writeIDX(t, filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), []int{3}, []byte{9, 0, 4}, false)
	s, err := Load(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	x, y := s.Get("input"), s.Get("labels")
	if got := x.Shape; len(got) != 4 || got[0] != 3 || got[1] != 1 || got[2] != 2 || got[3] != 2 {
		t.Fatalf("input shape %v", got)
	}
	if v := x.Float32s(); v[1] != 1 || v[2] != 0.2 || v[0] != 0 {
		t.Errorf("pixels %v", v[:4])
	}
	if v := y.Int64s(); v[0] != 9 || v[2] != 4 {
		t.Errorf("labels %v", v)
	}
	sub, err := LoadSubset(dir, "test", 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := sub.N(); n != 2 {
		t.Errorf("subset has %d rows", n)
	}
	if _, err := Load(dir, "train"); !errors.Is(err, ErrMissing) {
		t.Errorf("missing split: %v", err)
	}
	if _, err := Load(dir, "validation"); err == nil {
		t.Error("unknown split accepted")
	}
}

func TestCorrupt(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	os.WriteFile(p, []byte{0, 0, 8, 1, 0, 0, 0, 9, 1, 2}, 0o644)
	if _, _, err := readIDX(p); err == nil {
		t.Error("truncated file accepted")
	}
	os.WriteFile(p, []byte{0, 0, 9, 1, 0, 0, 0, 1, 1}, 0o644)
	if _, _, err := readIDX(p); err == nil {
		t.Error("non-byte IDX accepted")
	}
	os.WriteFile(p, []byte{0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0o644)
	if _, _, err := readIDX(p); err == nil {
		t.Error("huge shape accepted")
	}
}

// The installed data set, when there is one.
func TestInstalled(t *testing.T) {
	s, err := Load(Dir(), "test")
	if errors.Is(err, ErrMissing) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	x, y := s.Get("input"), s.Get("labels")
	if x.Shape[0] != 10000 || x.Shape[2] != 28 || y.Len() != 10000 {
		t.Fatalf("shapes %v %v", x.Shape, y.Shape)
	}
	counts := make([]int, 10)
	for _, l := range y.Int64s() {
		counts[l]++
	}
	for c, n := range counts {
		if n != 1000 {
			t.Errorf("class %d has %d test images, want 1000", c, n)
		}
	}
}
