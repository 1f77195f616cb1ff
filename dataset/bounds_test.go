package dataset

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"hash/crc32"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"testing"
)

// rawMember builds a one-member archive whose central directory declares
// the given uncompressed size for deflated bytes, as a hostile file can.
func rawMember(t *testing.T, name string, payload []byte, declared uint64) []byte {
	t.Helper()
	var comp bytes.Buffer
	fw := must(flate.NewWriter(&comp, flate.BestCompression))
	fw.Write(payload)
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w := must(zw.CreateRaw(&zip.FileHeader{
		Name: name, Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(payload),
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: declared,
	}))
	w.Write(comp.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// allocated returns the bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	fn()
	goruntime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestNPZDecompressionBounded: a member is read only as far as its array
// needs, and what it may claim is bounded by what its compressed bytes can
// hold, before anything large is allocated.
func TestNPZDecompressionBounded(t *testing.T) {
	// A header declaring 10^9 float32s (4 GB) in a member that declares as
	// much, from about a kilobyte of compressed zeros: only an impossible
	// expansion could back it.
	hdr := "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }"
	npy := rawNPY(1, hdr, make([]byte, 1<<20))
	lie := rawMember(t, "x.npy", npy, uint64(len(npy)-1<<20)+4e9)
	var err error
	n := allocated(func() { _, err = ReadNPZ(bytes.NewReader(lie), int64(len(lie))) })
	wantErr(t, err, zip.ErrFormat, `member "x.npy"`, "more than deflate can expand")
	if n > 16<<20 {
		t.Errorf("refusing the member allocated %d MB", n>>20)
	}

	// Bytes after the array: refused before the array is read, rather than
	// inflated and thrown away.
	x := npyBytes(t, arange(t, "", Int64, []int{4}, func(i int) float64 { return float64(i) }))
	trailing := zipOf(t, "a.npy", x+"more bytes than the array")
	_, err = ReadNPZ(bytes.NewReader(trailing), int64(len(trailing)))
	wantErr(t, err, ErrHeader, `member "a.npy"`, "more than its array")

	// A stored member whose sizes disagree.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w := must(zw.CreateRaw(&zip.FileHeader{Name: "a.npy", Method: zip.Store, CRC32: crc32.ChecksumIEEE([]byte(x)),
		CompressedSize64: uint64(len(x)), UncompressedSize64: 1 << 40}))
	w.Write([]byte(x))
	zw.Close()
	_, err = ReadNPZ(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	wantErr(t, err, zip.ErrFormat, `member "a.npy"`, "stored member declares")
}

// TestLoadSubset: LoadSubset gives what Load and Subset give, for .npz and
// .npy files, C and Fortran order, and keeps only the rows it returns.
func TestLoadSubset(t *testing.T) {
	dir := t.TempDir()
	fortran := rawNPY(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (5, 3), }",
		bytes.Repeat([]byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}, 5))
	fPath := filepath.Join(dir, "f.npy")
	if err := os.WriteFile(fPath, fortran, 0o644); err != nil {
		t.Fatal(err)
	}
	mixed := filepath.Join(dir, "mixed.npz")
	if err := SaveNPZ(mixed,
		arange(t, "input", Float32, []int{7, 2, 3}, func(i int) float64 { return float64(i) }),
		arange(t, "labels", Int64, []int{7}, func(i int) float64 { return float64(i % 3) })); err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join("..", "testdata", "data", "fmnist_calib.npz"), fPath, mixed}
	for _, p := range files {
		full, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			n    int
			seed int64
		}{{0, 1}, {1, 1}, {3, 7}, {100, 2}, {1 << 20, 3}} {
			want := must(full.Subset(c.n, c.seed))
			got, err := LoadSubset(p, c.n, c.seed)
			if err != nil {
				t.Fatalf("%s n=%d: %v", p, c.n, err)
			}
			if got.Path != want.Path || !slices.Equal(got.Names(), want.Names()) {
				t.Fatalf("%s n=%d: got %s %v, want %s %v", p, c.n, got.Path, got.Names(), want.Path, want.Names())
			}
			for i := range got.Arrays {
				if !Equal(got.Arrays[i], want.Arrays[i]) {
					t.Errorf("%s n=%d seed=%d: array %q differs from Load+Subset", p, c.n, c.seed, got.Arrays[i].Name)
				}
			}
		}
	}

	// Arrays that disagree on their rows, and a scalar.
	bad := filepath.Join(dir, "bad.npz")
	SaveNPZ(bad, arange(t, "a", Float32, []int{4}, nil0), arange(t, "b", Float32, []int{5}, nil0))
	_, err := LoadSubset(bad, 2, 1)
	wantErr(t, err, nil, "bad.npz", `array "b" has 5 rows`, `array "a" has 4`)
	scalar := filepath.Join(dir, "scalar.npz")
	SaveNPZ(scalar, arange(t, "s", Float32, nil, nil0))
	_, err = LoadSubset(scalar, 2, 1)
	wantErr(t, err, nil, "scalar.npz", "0-d")

	// Memory follows the subset: 10 rows of a 32 MB array.
	big := filepath.Join(dir, "big.npz")
	if err := SaveNPZ(big, arange(t, "input", Float32, []int{8192, 1024}, nil0)); err != nil {
		t.Fatal(err)
	}
	var s *Set
	n := allocated(func() { s, err = LoadSubset(big, 10, 1) })
	if err != nil || s.Arrays[0].Len() != 10 {
		t.Fatalf("LoadSubset: %v", err)
	}
	if n > 4<<20 {
		t.Errorf("LoadSubset of 10 rows of a 32 MB array allocated %d MB", n>>20)
	}
}

func nil0(int) float64 { return 0 }
