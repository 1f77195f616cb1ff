package dataset

import (
	"archive/zip"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkLoadNPZZeros loads a 0.4 MB .npz holding a 400 MB float32 array
// of zeros (deflate's best case, as in a decompression bomb): B/op is what
// reading it allocates, which should be the array itself.
//
//	go test -run '^$' -bench LoadNPZZeros -benchmem -benchtime 1x -count 3 ./dataset
func BenchmarkLoadNPZZeros(b *testing.B) {
	const rows, cols = 100000, 1000
	path := filepath.Join(b.TempDir(), "zeros.npz")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	zw := zip.NewWriter(f)
	w, err := zw.Create("input.npy")
	if err != nil {
		b.Fatal(err)
	}
	w.Write(rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 1000), }", nil))
	zero := make([]byte, 4*cols)
	for range rows {
		w.Write(zero)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.ResetTimer()
	for range b.N {
		s, err := LoadNPZ(path)
		if err != nil || s.Arrays[0].Len() != rows {
			b.Fatal(err)
		}
	}
	b.SetBytes(4 * rows * cols)
}
