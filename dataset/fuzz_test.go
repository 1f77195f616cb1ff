package dataset

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadNPY checks that no input makes ReadNPY panic, that readers with
// and without a known size agree, and that whatever reads also survives a
// write and a second read unchanged.
func FuzzReadNPY(f *testing.F) {
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden_*.npy"))
	for _, name := range golden {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	hdr := "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n"
	f.Add(rawNPY(1, hdr, make([]byte, 16)))
	f.Add(rawNPY(2, "{'descr': '>i8', 'fortran_order': False, 'shape': (1,)}", make([]byte, 8)))
	f.Add(rawNPY(3, "{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", make([]byte, 8)))
	f.Add(rawNPY(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}", nil))
	f.Add(rawNPY(1, hdr, make([]byte, 5)))
	f.Add([]byte(npyMagic + "\x02\x00\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ReadNPY(bytes.NewReader(data))
		b, err2 := ReadNPY(bufioLess{bytes.NewReader(data)})
		if (err == nil) != (err2 == nil) {
			t.Fatalf("sized reader: %v; unsized reader: %v", err, err2)
		}
		if err != nil {
			if a != nil {
				t.Fatal("array returned with an error")
			}
			return
		}
		if !Equal(a, b) {
			t.Fatal("sized and unsized readers disagree")
		}
		if d, n := dataInfo(a.Data()); d != a.DType || n != a.Size() {
			t.Fatalf("%v holds %d %v elements", a, n, d)
		}
		var buf bytes.Buffer
		if err := WriteNPY(&buf, a); err != nil {
			t.Fatal(err)
		}
		c, err := ReadNPY(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !Equal(a, c) {
			t.Fatal("write and read back changed the array")
		}
		// Reading a subset of rows keeps what reading all and taking them
		// keeps.
		if a.Rank() == 0 {
			return
		}
		rows := must(SubsetIndices(a.Len(), 3, 1))
		want := must(a.Take(rows))
		pick := (&pickRows{n: 3, seed: 1}).named("")
		got, err := readNPY(bytes.NewReader(data), readOpts{hint: int64(len(data)), pick: pick})
		if err != nil {
			t.Fatalf("reading rows %v: %v", rows, err)
		}
		if !Equal(got, want) {
			t.Fatal("reading a subset of rows differs from taking them")
		}
	})
}

// FuzzReadNPZ checks that no archive makes ReadNPZ panic.
func FuzzReadNPZ(f *testing.F) {
	for _, name := range []string{"golden_stored.npz", "golden_compressed.npz"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadNPZ(bytes.NewReader(data), int64(len(data)))
		sub, perr := readNPZ(bytes.NewReader(data), int64(len(data)), &pickRows{n: 3, seed: 1})
		if err != nil {
			if s != nil {
				t.Fatal("set returned with an error")
			}
			if perr == nil {
				t.Fatalf("reading all failed (%v), reading a subset did not", err)
			}
			return
		}
		for _, a := range s.Arrays {
			if d, n := dataInfo(a.Data()); d != a.DType || n != a.Size() {
				t.Fatalf("%v holds %d %v elements", a, n, d)
			}
		}
		// LoadSubset's reader agrees with reading everything and Subset.
		want, serr := s.Subset(3, 1)
		if (serr == nil) != (perr == nil) {
			t.Fatalf("Subset: %v; reading a subset: %v", serr, perr)
		}
		if serr != nil {
			return
		}
		for i := range want.Arrays {
			if !Equal(sub.Arrays[i], want.Arrays[i]) {
				t.Fatalf("array %q: reading a subset differs from Subset", want.Arrays[i].Name)
			}
		}
	})
}
