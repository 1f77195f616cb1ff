package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/onnx-cria/onnx-cria/internal/half"
)

var testShapes = [][]int{{}, {0}, {0, 3}, {1}, {5}, {2, 3}, {2, 3, 4}, {3, 1, 2, 2}}

func TestRoundTripAllDTypes(t *testing.T) {
	for _, d := range allDTypes {
		for _, shape := range testShapes {
			t.Run(fmt.Sprintf("%v%v", d, shape), func(t *testing.T) {
				a := arange(t, "x", d, shape, func(i int) float64 { return float64(i*37%11) - 3*float64(i%2) })
				var buf bytes.Buffer
				if err := WriteNPY(&buf, a); err != nil {
					t.Fatal(err)
				}
				if buf.Len()%npyAlign != a.Size()*d.ItemSize()%npyAlign {
					t.Errorf("header of %d bytes is not 64-aligned", buf.Len()-a.Size()*d.ItemSize())
				}
				// Through a reader without Len, so data grows as it arrives.
				b := must(ReadNPY(iotest.HalfReader(bytes.NewReader(buf.Bytes()))))
				b.Name = "x"
				if !Equal(a, b) {
					t.Fatalf("round trip: got %v %v, want %v %v", b, b.Data(), a, a.Data())
				}
				path := filepath.Join(t.TempDir(), "x.npy")
				if err := SaveNPY(path, a); err != nil {
					t.Fatal(err)
				}
				if c := must(LoadNPY(path)); !Equal(a, c) {
					t.Fatalf("file round trip: got %v, want %v", c, a)
				}
			})
		}
	}
}

func TestReadNPYStopsAtArrayEnd(t *testing.T) {
	var buf bytes.Buffer
	a := arange(t, "", Int64, []int{3}, func(i int) float64 { return float64(i) })
	b := arange(t, "", Float32, []int{2, 2}, func(i int) float64 { return float64(i) / 2 })
	WriteNPY(&buf, a)
	WriteNPY(&buf, b)
	r := bufioLess{&buf}
	if got := must(ReadNPY(r)); !Equal(got, a) {
		t.Errorf("first: got %v", got)
	}
	if got := must(ReadNPY(r)); !Equal(got, b) {
		t.Errorf("second: got %v", got)
	}
}

// bufioLess hides Len so the reader cannot see the remaining size.
type bufioLess struct{ r io.Reader }

func (b bufioLess) Read(p []byte) (int, error) { return b.r.Read(p) }

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	return must(os.ReadFile(filepath.Join("testdata", name)))
}

// goldenArrays recomputes what make_golden.py saved.
func goldenArrays(t *testing.T) map[string]*Array {
	t.Helper()
	f16 := []uint16{0x0000, 0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00, 0x7e00}
	return map[string]*Array{
		"f32":     arange(t, "f32", Float32, []int{2, 3}, func(i int) float64 { return float64(i) * 0.5 }),
		"f64":     arange(t, "f64", Float64, []int{3, 2}, func(i int) float64 { return float64(i) - 2.5 }),
		"i64":     arange(t, "i64", Int64, []int{4}, func(i int) float64 { return float64(i) * -3 }),
		"i32":     arange(t, "i32", Int32, []int{1, 2, 3}, func(i int) float64 { return float64(i) * 7 }),
		"u8":      arange(t, "u8", Uint8, []int{5}, func(i int) float64 { return float64(i) * 50 }),
		"b":       must(New("b", []int{4}, []bool{true, false, true, true})),
		"f16":     must(NewFloat16("f16", []int{8}, f16)),
		"scalar":  must(New("scalar", nil, []float64{3.25})),
		"empty":   must(Zeros("empty", Float32, []int{0, 3})),
		"fortran": arange(t, "fortran", Float64, []int{2, 3, 4}, func(i int) float64 { return float64(i) }),
		"be_i32":  arange(t, "be_i32", Int32, []int{2, 3}, func(i int) float64 { return float64(i) }),
		"be_f64":  arange(t, "be_f64", Float64, []int{3}, func(i int) float64 { return float64(i) + 0.25 }),
	}
}

// TestGoldenNPY reads NumPy's own files, and checks that WriteNPY produces
// the very same bytes as np.save for little-endian C-order arrays.
func TestGoldenNPY(t *testing.T) {
	want := goldenArrays(t)
	for _, name := range []string{"f32", "f64", "i64", "i32", "u8", "b", "f16", "scalar", "empty"} {
		t.Run(name, func(t *testing.T) {
			file := "golden_" + name + ".npy"
			got := must(LoadNPY(filepath.Join("testdata", file)))
			got.Name = name
			if !Equal(got, want[name]) {
				t.Errorf("read %v %v, want %v %v", got, got.Data(), want[name], want[name].Data())
			}
			var buf bytes.Buffer
			if err := WriteNPY(&buf, want[name]); err != nil {
				t.Fatal(err)
			}
			if np := readGolden(t, file); !bytes.Equal(buf.Bytes(), np) {
				t.Errorf("WriteNPY bytes differ from np.save:\n got %q\nwant %q", buf.Bytes(), np)
			}
		})
	}
	for file, name := range map[string]string{
		"golden_fortran.npy": "fortran",
		"golden_be_f64.npy":  "be_f64",
		"golden_v2.npy":      "i32",
		"golden_v3.npy":      "f32",
	} {
		got := must(LoadNPY(filepath.Join("testdata", file)))
		got.Name = name
		if !Equal(got, want[name]) {
			t.Errorf("%s: read %v %v, want %v", file, got, got.Data(), want[name].Data())
		}
	}
}

func TestFloat16Values(t *testing.T) {
	a := must(LoadNPY(filepath.Join("testdata", "golden_f16.npy")))
	got := a.AsFloat32()
	want := []float32{0, 1, -2, 0.5, 65504, float32(math.Ldexp(1, -24)), float32(math.Inf(1))}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("element %d: got %v, want %v", i, got[i], w)
		}
	}
	if !math.IsNaN(float64(got[7])) {
		t.Errorf("element 7: got %v, want NaN", got[7])
	}
	for h, w := range map[uint16]float32{0x8000: float32(math.Copysign(0, -1)), 0x0200: float32(math.Ldexp(1, -15)), 0x03ff: float32(math.Ldexp(1023, -24)), 0xfc00: float32(math.Inf(-1)), 0x3555: 0.33325195} {
		if g := half.ToFloat32(h); g != w || math.Signbit(float64(g)) != math.Signbit(float64(w)) {
			t.Errorf("half.ToFloat32(%#04x) = %v, want %v", h, g, w)
		}
	}
}

// Hand-made files: big-endian data, version 2.0, Python 2 longs, double
// quotes, keys out of order, and a Fortran-order array.
func TestHandCraftedNPY(t *testing.T) {
	be := make([]byte, 0, 12)
	for _, v := range []float32{1.5, -2, 1e-3} {
		be = binary.BigEndian.AppendUint32(be, math.Float32bits(v))
	}
	beI64 := binary.BigEndian.AppendUint64(nil, uint64(0x0102030405060708))
	beI64 = binary.BigEndian.AppendUint64(beI64, math.MaxUint64) // -1
	fortran := []byte{}
	// The 2x3 matrix [[0 1 2] [3 4 5]] stored column by column.
	for _, v := range []int32{0, 3, 1, 4, 2, 5} {
		fortran = binary.LittleEndian.AppendUint32(fortran, uint32(v))
	}
	tests := []struct {
		name string
		file []byte
		want *Array
	}{
		{"big-endian f4", rawNPY(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }\n", be),
			must(New("", []int{3}, []float32{1.5, -2, 1e-3}))},
		{"big-endian i8 v2.0", rawNPY(2, "{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }   \n", beI64),
			must(New("", []int{2}, []int64{0x0102030405060708, -1}))},
		{"py2 long and quotes", rawNPY(1, `{"shape": (2L, 1L), "fortran_order": False, "descr": "|u1"}`+"\n", []byte{7, 9}),
			must(New("", []int{2, 1}, []uint8{7, 9}))},
		{"bool alias ?", rawNPY(1, "{'descr': '|?', 'fortran_order': False, 'shape': (3,)}", []byte{0, 1, 2}),
			must(New("", []int{3}, []bool{false, true, true}))},
		{"fortran order", rawNPY(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }\n", fortran),
			must(New("", []int{2, 3}, []int32{0, 1, 2, 3, 4, 5}))},
		{"v3.0 spaces in tuple", rawNPY(3, "{ 'descr' : '<f8' , 'fortran_order' : False , 'shape' : ( 1 , ) }\n", binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5))),
			must(New("", []int{1}, []float64{2.5}))},
		{"native order", rawNPY(1, "{'descr': '=i4', 'fortran_order': False, 'shape': ()}", binary.NativeEndian.AppendUint32(nil, 42)),
			must(New("", nil, []int32{42}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := must(ReadNPY(bytes.NewReader(tt.file)))
			if !Equal(got, tt.want) {
				t.Errorf("got %v %v, want %v %v", got, got.Data(), tt.want, tt.want.Data())
			}
		})
	}
}

func TestFortranOrderLargerRank(t *testing.T) {
	// Transpose a C-order 2x3x4 array by hand into Fortran order and read it back.
	shape := []int{2, 3, 4}
	var data []byte
	for k := range 4 {
		for j := range 3 {
			for i := range 2 {
				data = binary.LittleEndian.AppendUint16(data, uint16(i*12+j*4+k))
			}
		}
	}
	got := must(ReadNPY(bytes.NewReader(rawNPY(1, "{'descr': '<f2', 'fortran_order': True, 'shape': (2, 3, 4), }", data))))
	want := arange(t, "", Float16, shape, func(i int) float64 { return float64(i) })
	if !Equal(got, want) {
		t.Errorf("got %v, want %v", got.Data(), want.Data())
	}
}

func TestReadErrors(t *testing.T) {
	ok := "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n"
	eight := make([]byte, 8)
	tests := []struct {
		name   string
		file   []byte
		target error
		frags  []string
	}{
		{"empty", nil, ErrNotNPY, []string{"empty"}},
		{"bad magic", []byte("PK\x03\x04 not numpy at all"), ErrNotNPY, []string{"bad magic"}},
		{"text", []byte("hello"), ErrNotNPY, nil},
		{"magic only", []byte(npyMagic), ErrTruncated, []string{"header"}},
		{"magic prefix", []byte(npyMagic[:3]), ErrTruncated, nil},
		{"no length", []byte(npyMagic + "\x01\x00\x10"), ErrTruncated, []string{"header length"}},
		{"no v2 length", []byte(npyMagic + "\x02\x00\x10\x00"), ErrTruncated, []string{"header length"}},
		{"short header", rawNPY(1, ok, nil)[:30], ErrTruncated, []string{"declared"}},
		{"short data", rawNPY(1, ok, eight[:5]), ErrTruncated, []string{"needs 8 bytes, found 5", "[2]", "float32"}},
		{"no data", rawNPY(1, ok, nil), ErrTruncated, []string{"found 0"}},
		{"version 4", rawNPY(1, ok, eight)[:0:0], ErrNotNPY, nil},
		{"header too long", []byte(npyMagic + "\x02\x00\x00\x00\x00\x40"), ErrHeader, []string{"1073741824", "exceeds"}},
		{"unicode dtype", rawNPY(1, "{'descr': '<U5', 'fortran_order': False, 'shape': (2,), }", eight), ErrUnsupported, []string{`"<U5"`, "float32"}},
		{"int8", rawNPY(1, "{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }", eight), ErrUnsupported, []string{"|i1"}},
		{"complex", rawNPY(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", eight), ErrUnsupported, []string{"<c8"}},
		{"object", rawNPY(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", eight), ErrUnsupported, []string{"|O", "object"}},
		{"structured", rawNPY(1, "{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (2,), }", eight), ErrUnsupported, []string{"structured"}},
		{"no order on f4", rawNPY(1, "{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", eight), ErrHeader, []string{"byte order"}},
		{"descr garbage", rawNPY(1, "{'descr': '<fx', 'fortran_order': False, 'shape': (2,), }", eight), ErrUnsupported, []string{"<fx"}},
		{"descr short", rawNPY(1, "{'descr': 'f', 'fortran_order': False, 'shape': (2,), }", eight), ErrUnsupported, nil},
		{"descr no kind", rawNPY(1, "{'descr': '<<', 'fortran_order': False, 'shape': (2,), }", eight), ErrUnsupported, nil},
		{"descr number", rawNPY(1, "{'descr': 4, 'fortran_order': False, 'shape': (2,), }", eight), ErrHeader, []string{"descr is not a string"}},
		{"not a dict", rawNPY(1, "['descr', '<f4']", eight), ErrHeader, []string{"want '{'"}},
		{"missing shape", rawNPY(1, "{'descr': '<f4', 'fortran_order': False}", eight), ErrHeader, []string{`missing key "shape"`}},
		{"extra key", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", eight), ErrHeader, []string{`unexpected key "x"`}},
		{"repeated key", rawNPY(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", eight), ErrHeader, []string{"repeated"}},
		{"unquoted key", rawNPY(1, "{descr: '<f4'}", eight), ErrHeader, []string{"quoted key"}},
		{"no colon", rawNPY(1, "{'descr' '<f4'}", eight), ErrHeader, []string{"':'"}},
		{"no comma", rawNPY(1, "{'descr': '<f4' 'shape': (2,)}", eight), ErrHeader, []string{"','"}},
		{"unterminated string", rawNPY(1, "{'descr': '<f4", eight), ErrHeader, nil},
		{"int not tuple", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", eight), ErrHeader, []string{"shape"}},
		{"negative dim", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", eight), ErrHeader, []string{"shape"}},
		{"missing comma in tuple", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2 2)}", eight), ErrHeader, []string{"shape"}},
		{"huge dim", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (12345678901234567890,)}", eight), ErrHeader, []string{"shape"}},
		{"overflowing shape", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999999, 999999999999999999)}", eight), ErrHeader, []string{"too many"}},
		{"too many bytes", rawNPY(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (999999999999999999,)}", eight), ErrHeader, []string{"too large"}},
		{"bad fortran", rawNPY(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", eight), ErrHeader, []string{"fortran_order"}},
		{"trailing text", rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", eight), ErrHeader, []string{"trailing"}},
		{"big claim, little data", rawNPY(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000,)}", eight), ErrTruncated, []string{"800000000 bytes, found 8"}},
	}
	tests[10].file = append([]byte(npyMagic+"\x04\x00"), eight...)
	tests[10].target, tests[10].frags = ErrUnsupported, []string{"version 4.0"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{bytes.NewReader(tt.file), bufioLess{bytes.NewReader(tt.file)}} {
				a, err := ReadNPY(r)
				if a != nil {
					t.Errorf("got an array %v along with the error", a)
				}
				wantErr(t, err, tt.target, tt.frags...)
			}
		})
	}
}

func TestLoadErrorsNameFile(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadNPY(filepath.Join(dir, "missing.npy"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.npy") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.npy")
	os.WriteFile(bad, []byte("not numpy"), 0o644)
	_, err = LoadNPY(bad)
	wantErr(t, err, ErrNotNPY, "bad.npy:")
	short := filepath.Join(dir, "short.npy")
	os.WriteFile(short, rawNPY(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", make([]byte, 20)), 0o644)
	_, err = LoadNPY(short)
	wantErr(t, err, ErrTruncated, "short.npy:", "needs 32 bytes, found 20")
	_, err = LoadNPY(dir) // a directory, not a file
	if err == nil {
		t.Error("loading a directory succeeded")
	}
}

func TestWriteErrors(t *testing.T) {
	good := arange(t, "g", Float32, []int{2}, func(i int) float64 { return 1 })
	tests := []struct {
		name string
		a    *Array
		frag string
	}{
		{"nil", nil, "nil array"},
		{"invalid dtype", &Array{Name: "z", Shape: []int{1}}, "cannot write dtype invalid"},
		{"short data", &Array{Name: "s", DType: Float32, Shape: []int{3}, data: []float32{1}}, "needs 3 float32 elements"},
		{"wrong type", &Array{Name: "w", DType: Float64, Shape: []int{1}, data: []float32{1}}, "[]float32"},
		{"negative shape", &Array{Name: "n", DType: Float32, Shape: []int{-1}, data: []float32{}}, "negative"},
	}
	for _, tt := range tests {
		if err := WriteNPY(io.Discard, tt.a); err == nil || !strings.Contains(err.Error(), tt.frag) {
			t.Errorf("%s: got %v, want an error mentioning %q", tt.name, err, tt.frag)
		}
		if err := SaveNPY(filepath.Join(t.TempDir(), "x.npy"), tt.a); err == nil {
			t.Errorf("%s: SaveNPY succeeded", tt.name)
		}
	}
	// A failing writer's error comes back, from the header or the data.
	for _, d := range allDTypes {
		a := must(Zeros("x", d, []int{20000}))
		for _, after := range []int{0, 1} {
			w := &failWriter{after: after}
			if err := WriteNPY(w, a); !errors.Is(err, errFail) {
				t.Errorf("%v after %d writes: got %v", d, after, err)
			}
		}
	}
	// A failed save leaves nothing behind.
	dir := t.TempDir()
	if err := SaveNPY(filepath.Join(dir, "no", "such", "dir.npy"), good); err == nil {
		t.Error("saving into a missing directory succeeded")
	}
	if err := SaveNPZ(filepath.Join(dir, "x.npz"), good, good); err == nil {
		t.Error("saving two arrays with one name succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed saves left %v", entries)
	}
}

var errFail = errors.New("write failed")

type failWriter struct{ after, n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n >= w.after {
		return 0, errFail
	}
	w.n++
	return len(p), nil
}

func TestWriteVersion2Header(t *testing.T) {
	// A shape with enough axes pushes the header past 65535 bytes.
	shape := make([]int, 25000)
	for i := range shape {
		shape[i] = 1
	}
	a := must(Zeros("big", Int32, shape))
	var buf bytes.Buffer
	if err := WriteNPY(&buf, a); err != nil {
		t.Fatal(err)
	}
	if v := buf.Bytes()[6]; v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
	if (buf.Len()-4)%npyAlign != 0 {
		t.Errorf("header not aligned: %d", buf.Len()-4)
	}
	b := must(ReadNPY(&buf))
	if !slices.Equal(b.Shape, shape) {
		t.Errorf("shape has %d axes", len(b.Shape))
	}
}

// TestFortranOrderAllDTypes writes each dtype's C-order data of the reversed
// shape, which is the Fortran layout of the original, under a Fortran header.
func TestFortranOrderAllDTypes(t *testing.T) {
	for _, d := range allDTypes {
		want := arange(t, "", d, []int{2, 3, 4}, func(i int) float64 { return float64(i % 5) })
		rev := must(Zeros("", d, []int{4, 3, 2}))
		for i := range 2 {
			for j := range 3 {
				for k := range 4 {
					src := i*12 + j*4 + k
					dst := k*6 + j*2 + i
					copyElem(rev, dst, want, src)
				}
			}
		}
		var buf bytes.Buffer
		WriteNPY(&buf, rev)
		data := buf.Bytes()[128:] // the header WriteNPY makes here is 128 bytes
		hdr := fmt.Sprintf("{'descr': '%s', 'fortran_order': True, 'shape': (2, 3, 4), }", d.descr())
		got := must(ReadNPY(bytes.NewReader(rawNPY(1, hdr, data))))
		if !Equal(got, want) {
			t.Errorf("%v: got %v, want %v", d, got.Data(), want.Data())
		}
	}
}

func copyElem(dst *Array, i int, src *Array, j int) {
	switch s := src.Data().(type) {
	case []bool:
		dst.Bools()[i] = s[j]
	case []uint8:
		dst.Uint8s()[i] = s[j]
	case []int32:
		dst.Int32s()[i] = s[j]
	case []int64:
		dst.Int64s()[i] = s[j]
	case []uint16:
		dst.Float16Bits()[i] = s[j]
	case []float32:
		dst.Float32s()[i] = s[j]
	case []float64:
		dst.Float64s()[i] = s[j]
	}
}

func TestReaderErrorsPassThrough(t *testing.T) {
	file := rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", make([]byte, 8))
	for _, cut := range []int{0, 12, 20, len(file) - 4} {
		r := io.MultiReader(bytes.NewReader(file[:cut]), iotest.ErrReader(errFail))
		if _, err := ReadNPY(r); !errors.Is(err, errFail) {
			t.Errorf("reader failing after %d bytes: got %v", cut, err)
		}
	}
}
