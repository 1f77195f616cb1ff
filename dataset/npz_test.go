package dataset

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGoldenNPZ(t *testing.T) {
	want := goldenArrays(t)
	s := must(LoadNPZ(filepath.Join("testdata", "golden_stored.npz")))
	order := []string{"f32", "f64", "i64", "i32", "u8", "b", "f16", "scalar", "empty", "fortran", "be_i32", "be_f64"}
	if !slices.Equal(s.Names(), order) {
		t.Errorf("names %v, want file order %v", s.Names(), order)
	}
	for _, a := range s.Arrays {
		if !Equal(a, want[a.Name]) {
			t.Errorf("%s: got %v %v, want %v", a.Name, a, a.Data(), want[a.Name].Data())
		}
	}
	if !strings.HasSuffix(s.Path, "golden_stored.npz") {
		t.Errorf("Path %q", s.Path)
	}

	c := must(LoadNPZ(filepath.Join("testdata", "golden_compressed.npz")))
	in := must(New("input", []int{2, 1, 2, 2}, []float32{0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75}))
	labels := must(New("labels", []int{2}, []int64{3, 1}))
	if len(c.Arrays) != 2 || !Equal(c.Get("input"), in) || !Equal(c.Get("labels"), labels) {
		t.Errorf("compressed: got %v", c.Arrays)
	}
}

func TestNPZRoundTrip(t *testing.T) {
	var arrays []*Array
	for _, d := range allDTypes {
		for i, shape := range testShapes {
			arrays = append(arrays, arange(t, d.String()+string(rune('a'+i)), d, shape, func(i int) float64 { return float64(i % 7) }))
		}
	}
	for _, tc := range []struct {
		name   string
		write  func(io.Writer, ...*Array) error
		method uint16
	}{{"compressed", WriteNPZ, zip.Deflate}, {"stored", WriteNPZStored, zip.Store}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.write(&buf, arrays...); err != nil {
				t.Fatal(err)
			}
			zr := must(zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len())))
			for _, f := range zr.File {
				if f.Method != tc.method || !strings.HasSuffix(f.Name, ".npy") {
					t.Errorf("member %s: method %d", f.Name, f.Method)
				}
			}
			s := must(ReadNPZ(bytes.NewReader(buf.Bytes()), int64(buf.Len())))
			if len(s.Arrays) != len(arrays) {
				t.Fatalf("got %d arrays, want %d", len(s.Arrays), len(arrays))
			}
			for i, a := range s.Arrays {
				if !Equal(a, arrays[i]) {
					t.Errorf("array %d: got %v, want %v", i, a, arrays[i])
				}
			}
			// Same arrays, same bytes: members carry a fixed time.
			var again bytes.Buffer
			tc.write(&again, arrays...)
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Error("writing twice gave different bytes")
			}
		})
	}
	path := filepath.Join(t.TempDir(), "all.npz")
	if err := SaveNPZ(path, arrays...); err != nil {
		t.Fatal(err)
	}
	s := must(Load(path))
	if len(s.Arrays) != len(arrays) || s.Path != path {
		t.Errorf("Load: %d arrays, path %q", len(s.Arrays), s.Path)
	}
	st := must(os.Stat(path))
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
}

// zipOf builds a zip archive by hand: name/content pairs, stored.
func zipOf(t *testing.T, members ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i < len(members); i += 2 {
		w := must(zw.CreateHeader(&zip.FileHeader{Name: members[i], Method: zip.Store}))
		w.Write([]byte(members[i+1]))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func npyBytes(t *testing.T, a *Array) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteNPY(&buf, a); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestNPZMembers(t *testing.T) {
	x := npyBytes(t, arange(t, "", Int32, []int{3}, func(i int) float64 { return float64(i) }))
	// Non-.npy members and directories are skipped; nested names keep their path.
	data := zipOf(t, "notes.txt", "hello", "dir/", "", "dir/x.npy", x, "x.npy", x)
	s := must(ReadNPZ(bytes.NewReader(data), int64(len(data))))
	if !slices.Equal(s.Names(), []string{"dir/x", "x"}) {
		t.Errorf("names %v", s.Names())
	}
	// An empty archive is an empty set.
	empty := zipOf(t)
	s = must(ReadNPZ(bytes.NewReader(empty), int64(len(empty))))
	if len(s.Arrays) != 0 {
		t.Errorf("empty archive gave %v", s.Names())
	}
}

func TestNPZErrors(t *testing.T) {
	x := npyBytes(t, arange(t, "", Int64, []int{4}, func(i int) float64 { return float64(i) }))
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	_, err := LoadNPZ(filepath.Join(dir, "missing.npz"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.npz") {
		t.Errorf("missing: %v", err)
	}
	_, err = Load(filepath.Join(dir, "missing.npz"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load missing: %v", err)
	}

	_, err = LoadNPZ(write("plain.npz", []byte(x)))
	wantErr(t, err, ErrNotZip, "plain.npz:", "zip")

	_, err = LoadNPZ(write("empty.npz", nil))
	wantErr(t, err, ErrNotZip, "empty.npz:")

	_, err = LoadNPZ(write("trunc.npz", zipOf(t, "a.npy", x[:len(x)-3])))
	wantErr(t, err, ErrTruncated, "trunc.npz:", `member "a.npy"`, "needs 32 bytes, found 29")

	_, err = LoadNPZ(write("badmember.npz", zipOf(t, "a.npy", "just text")))
	wantErr(t, err, ErrNotNPY, `member "a.npy"`)

	_, err = LoadNPZ(write("obj.npz", zipOf(t, "o.npy", string(rawNPY(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", make([]byte, 8))))))
	wantErr(t, err, ErrUnsupported, "obj.npz:", `member "o.npy"`, "object")

	_, err = LoadNPZ(write("dup.npz", zipOf(t, "a.npy", x, "a.npy", x)))
	wantErr(t, err, ErrHeader, "two arrays", `"a"`)

	// A flipped data byte fails the member's CRC-32 check.
	good := zipOf(t, "a.npy", x)
	i := bytes.Index(good, []byte(x)) + len(x) - 1
	bad := slices.Clone(good)
	bad[i] ^= 0xff
	_, err = LoadNPZ(write("crc.npz", bad))
	wantErr(t, err, zip.ErrChecksum, "crc.npz:", `member "a.npy"`)

	// A zip method other than stored and deflate.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.RegisterCompressor(99, func(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil })
	w := must(zw.CreateHeader(&zip.FileHeader{Name: "m.npy", Method: 99}))
	w.Write([]byte(x))
	zw.Close()
	_, err = LoadNPZ(write("method.npz", buf.Bytes()))
	wantErr(t, err, ErrUnsupported, "method 99")

	// Load sniffs content, not extension.
	_, err = Load(write("text.npz", []byte("hello, world")))
	wantErr(t, err, ErrNotNPY, "text.npz:", "nor an .npz")
	s := must(Load(write("really-npy.npz", []byte(x))))
	if len(s.Arrays) != 1 || s.Arrays[0].Name != "really-npy.npz" {
		t.Errorf("npy via Load: %v", s.Names())
	}
	s = must(Load(write("arr.npy", []byte(x))))
	if s.Arrays[0].Name != "arr" {
		t.Errorf("npy name %q", s.Arrays[0].Name)
	}
	_, err = Load(write("shortnpy.npy", []byte(x[:20])))
	wantErr(t, err, ErrTruncated, "shortnpy.npy:")
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestWriteNPZErrors(t *testing.T) {
	a := arange(t, "a", Float32, []int{2}, func(i int) float64 { return 1 })
	noName := arange(t, "", Float32, []int{2}, func(i int) float64 { return 1 })
	bad := &Array{Name: "bad", DType: Float32, Shape: []int{3}, data: []float32{1}}
	for _, tc := range []struct {
		arrays []*Array
		frag   string
	}{
		{[]*Array{a, a}, `two arrays named "a"`},
		{[]*Array{noName}, "needs a name"},
		{[]*Array{a, bad}, `"bad"`},
		{[]*Array{nil}, "nil array"},
	} {
		if err := WriteNPZ(io.Discard, tc.arrays...); err == nil || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("got %v, want an error mentioning %q", err, tc.frag)
		}
	}
	for after := range 4 {
		if err := WriteNPZStored(&failWriter{after: after}, a, arange(t, "b", Int64, []int{30000}, func(i int) float64 { return 0 })); err == nil {
			t.Errorf("failing writer after %d writes: no error", after)
		}
	}
}
