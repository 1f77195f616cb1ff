package onnxio

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

type tensorRecord struct {
	DType  DataType `json:"dtype"`
	Dims   []int64  `json:"dims"`
	Floats []string `json:"floats"`
	Ints   []int64  `json:"ints"`
}

// TestTensorsAgainstOnnx decodes every initializer of typed.onnx (typed
// fields), rawtypes.onnx (raw_data) and halfs.onnx (float16 raw and typed,
// bfloat16 in int32_data) and compares with the values onnx.numpy_helper read
// when make_models.py wrote them.
func TestTensorsAgainstOnnx(t *testing.T) {
	var all map[string]map[string]tensorRecord
	if err := json.Unmarshal(readFile(t, "testdata/tensors.json"), &all); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"typed.onnx", "rawtypes.onnx", "halfs.onnx"} {
		recs := all[file]
		if len(recs) == 0 {
			t.Fatalf("tensors.json has nothing for %s", file)
		}
		m := mustLoad(t, "testdata/"+file)
		ix := NewIndex(m.Graph())
		for name, rec := range recs {
			tp := ix.Init[name]
			if tp == nil {
				t.Errorf("%s: no initializer %q", file, name)
				continue
			}
			if DataType(tp.GetDataType()) != rec.DType || !equalInts(tp.Dims, rec.Dims) {
				t.Errorf("%s %s: %s %v, want %s %v", file, name, DataType(tp.GetDataType()), tp.Dims, rec.DType, rec.Dims)
			}
			if rec.Floats != nil || (rec.Ints == nil && rec.DType.IsFloat()) {
				got, err := m.Float64s(tp)
				if err != nil {
					t.Errorf("%s %s: %v", file, name, err)
					continue
				}
				if len(got) != len(rec.Floats) {
					t.Errorf("%s %s: %d values, want %d", file, name, len(got), len(rec.Floats))
					continue
				}
				for k, s := range rec.Floats {
					w, err := strconv.ParseFloat(s, 64)
					if err != nil {
						t.Fatal(err)
					}
					if math.Float64bits(got[k]) != math.Float64bits(w) {
						t.Errorf("%s %s[%d] = %v, want %v", file, name, k, got[k], w)
					}
				}
				continue
			}
			got, err := m.Int64s(tp)
			if err != nil {
				t.Errorf("%s %s: %v", file, name, err)
				continue
			}
			if !equalInts(got, rec.Ints) {
				t.Errorf("%s %s = %v, want %v", file, name, got, rec.Ints)
			}
			// Float64s decodes integers too.
			fl, err := m.Float64s(tp)
			if err != nil || len(fl) != len(got) {
				t.Errorf("%s %s: Float64s %v, %v", file, name, fl, err)
			}
		}
	}
	// Typed fields and raw_data hold the same bytes.
	typed := mustLoad(t, "testdata/typed.onnx")
	raw := mustLoad(t, "testdata/rawtypes.onnx")
	tv, rv := initValues(t, typed), initValues(t, raw)
	sameValues(t, tv, rv)
	for _, init := range typed.Graph().Initializer {
		if init.RawData != nil {
			t.Errorf("typed.onnx tensor %q uses raw_data", init.GetName())
		}
	}
}

func le16(vals ...uint16) []byte {
	var b []byte
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

// TestDecodeRaw checks every decoded type against hand-written bytes.
func TestDecodeRaw(t *testing.T) {
	f32 := binary.LittleEndian.AppendUint32(nil, math.Float32bits(-1.5))
	f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(float32(math.Inf(1))))
	f64 := binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.0/3))
	cases := []struct {
		dt    DataType
		raw   []byte
		ints  []int64
		float []float64
	}{
		{Float, f32, nil, []float64{-1.5, math.Inf(1)}},
		{Double, f64, nil, []float64{1.0 / 3}},
		{Float16, le16(0x3c00, 0xc000, 0x0001, 0x7bff), nil, []float64{1, -2, math.Ldexp(1, -24), 65504}},
		{BFloat16, le16(0x3f80, 0xc040, 0x0001), nil, []float64{1, -3, math.Ldexp(1, -133)}},
		{Int8, []byte{0x80, 0xff, 0, 0x7f}, []int64{-128, -1, 0, 127}, nil},
		{Uint8, []byte{0x80, 0xff, 0, 0x7f}, []int64{128, 255, 0, 127}, nil},
		{Bool, []byte{1, 0, 1}, []int64{1, 0, 1}, nil},
		{Int16, le16(0x8000, 0xffff, 7), []int64{-32768, -1, 7}, nil},
		{Uint16, le16(0x8000, 0xffff, 7), []int64{32768, 65535, 7}, nil},
		{Int32, []byte{0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff}, []int64{math.MinInt32, -1}, nil},
		{Uint32, []byte{0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff}, []int64{1 << 31, 1<<32 - 1}, nil},
		{Int64, binary.LittleEndian.AppendUint64(nil, uint64(1<<63)), []int64{math.MinInt64}, nil},
		{Uint64, binary.LittleEndian.AppendUint64(nil, 5), []int64{5}, nil},
	}
	for _, c := range cases {
		name := c.dt.String()
		if c.ints != nil {
			got, err := DecodeInt64s(c.dt, c.raw)
			if err != nil || !equalInts(got, c.ints) {
				t.Errorf("%s: DecodeInt64s = %v, %v; want %v", name, got, err, c.ints)
			}
			c.float = make([]float64, len(c.ints))
			for k, v := range c.ints {
				c.float[k] = float64(v)
			}
			if c.dt == Uint64 {
				continue
			}
			enc, err := EncodeInt64s(c.dt, c.ints)
			if err != nil || !bytes.Equal(enc, c.raw) {
				t.Errorf("%s: EncodeInt64s = %x, %v; want %x", name, enc, err, c.raw)
			}
		} else if _, err := DecodeInt64s(c.dt, c.raw); err == nil {
			t.Errorf("%s: DecodeInt64s accepted a float type", name)
		}
		got, err := DecodeFloat64s(c.dt, c.raw)
		if err != nil || len(got) != len(c.float) {
			t.Errorf("%s: DecodeFloat64s = %v, %v", name, got, err)
			continue
		}
		for k := range got {
			if got[k] != c.float[k] {
				t.Errorf("%s[%d] = %v, want %v", name, k, got[k], c.float[k])
			}
		}
		enc, err := EncodeFloat64s(c.dt, got)
		if err != nil || !bytes.Equal(enc, c.raw) {
			t.Errorf("%s: EncodeFloat64s(DecodeFloat64s(x)) = %x, %v; want %x", name, enc, err, c.raw)
		}
		// Through a tensor with raw_data.
		tp, err := NewTensor("t", c.dt, []int64{int64(len(c.float))}, c.raw)
		if err != nil {
			t.Fatal(err)
		}
		var m *Model // inline tensors need no model
		if vals, err := m.Float64s(tp); err != nil || len(vals) != len(c.float) {
			t.Errorf("%s: Float64s of a raw tensor: %v, %v", name, vals, err)
		}
	}
}

// TestTypedFields builds tensors with each typed field and checks RawData.
func TestTypedFields(t *testing.T) {
	mk := func(dt DataType, dims []int64, set func(*onnxpb.TensorProto)) *onnxpb.TensorProto {
		tp := &onnxpb.TensorProto{Name: proto.String("t_" + dt.String()), DataType: proto.Int32(int32(dt)), Dims: dims}
		set(tp)
		return tp
	}
	cases := []struct {
		tp   *onnxpb.TensorProto
		want []byte
	}{
		{mk(Float, []int64{2}, func(t *onnxpb.TensorProto) { t.FloatData = []float32{1, -2} }),
			[]byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},
		{mk(Double, []int64{1}, func(t *onnxpb.TensorProto) { t.DoubleData = []float64{2} }),
			binary.LittleEndian.AppendUint64(nil, math.Float64bits(2))},
		{mk(Int64, []int64{2}, func(t *onnxpb.TensorProto) { t.Int64Data = []int64{-1, 3} }),
			[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 0, 0, 0}},
		{mk(Int32, []int64{1}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{-2} }),
			[]byte{0xfe, 0xff, 0xff, 0xff}},
		{mk(Int16, []int64{1}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{-2} }),
			[]byte{0xfe, 0xff}},
		{mk(Uint16, []int64{1}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{65535} }),
			[]byte{0xff, 0xff}},
		{mk(Int8, []int64{2}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{-128, 127} }),
			[]byte{0x80, 0x7f}},
		{mk(Uint8, []int64{1}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{255} }),
			[]byte{0xff}},
		{mk(Bool, []int64{2}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{1, 0} }),
			[]byte{1, 0}},
		{mk(Float16, []int64{1}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{0x3c00} }),
			[]byte{0x00, 0x3c}},
		{mk(BFloat16, []int64{1}, func(t *onnxpb.TensorProto) { t.Int32Data = []int32{0xbf80} }),
			[]byte{0x80, 0xbf}},
		{mk(Uint32, []int64{1}, func(t *onnxpb.TensorProto) { t.Uint64Data = []uint64{1<<32 - 1} }),
			[]byte{0xff, 0xff, 0xff, 0xff}},
		{mk(Uint64, []int64{1}, func(t *onnxpb.TensorProto) { t.Uint64Data = []uint64{1 << 63} }),
			[]byte{0, 0, 0, 0, 0, 0, 0, 0x80}},
		{mk(Float, nil, func(t *onnxpb.TensorProto) { t.FloatData = []float32{1} }),
			[]byte{0, 0, 0x80, 0x3f}},
		{mk(Float, []int64{0, 5}, func(t *onnxpb.TensorProto) {}), []byte{}},
	}
	var m *Model
	for _, c := range cases {
		got, err := m.RawData(c.tp)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("%s: RawData = %x, %v; want %x", c.tp.GetName(), got, err, c.want)
		}
	}
}

// TestLengthMismatch: stored data that does not fit dims is an error that
// names the tensor, in every field, and no huge dims allocate.
func TestLengthMismatch(t *testing.T) {
	bad := []*onnxpb.TensorProto{
		{Name: proto.String("raw_short"), DataType: proto.Int32(int32(Float)), Dims: []int64{3}, RawData: make([]byte, 8)},
		{Name: proto.String("raw_long"), DataType: proto.Int32(int32(Float16)), Dims: []int64{1}, RawData: make([]byte, 4)},
		{Name: proto.String("float_data"), DataType: proto.Int32(int32(Float)), Dims: []int64{2, 2}, FloatData: []float32{1, 2, 3}},
		{Name: proto.String("int32_data"), DataType: proto.Int32(int32(Int8)), Dims: []int64{2}, Int32Data: []int32{1}},
		{Name: proto.String("int64_data"), DataType: proto.Int32(int32(Int64)), Dims: []int64{}, Int64Data: []int64{1, 2}},
		{Name: proto.String("double_data"), DataType: proto.Int32(int32(Double)), Dims: []int64{2}, DoubleData: []float64{1}},
		{Name: proto.String("uint64_data"), DataType: proto.Int32(int32(Uint32)), Dims: []int64{2}},
		{Name: proto.String("wrong_field"), DataType: proto.Int32(int32(Float)), Dims: []int64{1}, Int32Data: []int32{1}},
		{Name: proto.String("no_data"), DataType: proto.Int32(int32(Int64)), Dims: []int64{1}},
		{Name: proto.String("neg_dims"), DataType: proto.Int32(int32(Float)), Dims: []int64{-1}, RawData: []byte{}},
		{Name: proto.String("huge_typed"), DataType: proto.Int32(int32(Float)), Dims: []int64{1 << 40}},
		{Name: proto.String("huge_int32"), DataType: proto.Int32(int32(Int32)), Dims: []int64{1 << 20, 1 << 20, 1 << 20}},
		{Name: proto.String("overflow_dims"), DataType: proto.Int32(int32(Float)), Dims: []int64{1 << 32, 1 << 32}, RawData: []byte{}},
		{Name: proto.String("overflow_bytes"), DataType: proto.Int32(int32(Float)), Dims: []int64{1 << 62}, RawData: []byte{}},
		{Name: proto.String("overflow_bytes16"), DataType: proto.Int32(14), Dims: []int64{1 << 61}, RawData: []byte{}},
		{Name: proto.String("string"), DataType: proto.Int32(int32(String)), Dims: []int64{1}, StringData: [][]byte{[]byte("a")}},
		{Name: proto.String("undefined"), Dims: []int64{1}, RawData: []byte{1}},
		{Name: proto.String("segment"), DataType: proto.Int32(int32(Uint8)), Dims: []int64{1}, RawData: []byte{1},
			Segment: &onnxpb.TensorProto_Segment{Begin: proto.Int64(0), End: proto.Int64(1)}},
	}
	var m *Model
	for _, tp := range bad {
		if _, err := m.RawData(tp); err == nil || !strings.Contains(err.Error(), `"`+tp.GetName()+`"`) {
			t.Errorf("%s: RawData error %v does not name the tensor", tp.GetName(), err)
		}
		if _, err := m.Float64s(tp); err == nil {
			t.Errorf("%s: Float64s succeeded", tp.GetName())
		}
	}
	// Validate reports each of them as an initializer problem.
	g := graph{}
	for _, tp := range bad {
		g.inits = append(g.inits, tp)
	}
	err := Validate(g.model(13))
	for _, tp := range bad {
		if tp.GetName() == "string" {
			continue // strings have no fixed width: not checked
		}
		if err == nil || !strings.Contains(err.Error(), `"`+tp.GetName()+`"`) {
			t.Errorf("Validate does not report %s", tp.GetName())
		}
	}

	// SetRawData and NewTensor refuse bytes that do not fit.
	for _, c := range []struct {
		dims []int64
		n    int
	}{{[]int64{3}, 8}, {[]int64{-1}, 0}, {[]int64{1 << 62}, 0}, {[]int64{1 << 31, 1 << 31}, 0}} {
		if _, err := NewTensor("x", Float, c.dims, make([]byte, c.n)); err == nil || !strings.Contains(err.Error(), `"x"`) {
			t.Errorf("NewTensor(dims %v, %d bytes): %v", c.dims, c.n, err)
		}
	}
	if _, err := DecodeFloat64s(Float, make([]byte, 5)); err == nil {
		t.Error("DecodeFloat64s of 5 bytes of float32")
	}
	if _, err := DecodeInt64s(Int16, make([]byte, 3)); err == nil {
		t.Error("DecodeInt64s of 3 bytes of int16")
	}
	if _, err := DecodeFloat64s(String, make([]byte, 3)); err == nil {
		t.Error("DecodeFloat64s of strings")
	}
	if _, err := EncodeFloat64s(String, []float64{1}); err == nil {
		t.Error("EncodeFloat64s of strings")
	}
	if _, err := EncodeInt64s(Float, []int64{1}); err == nil {
		t.Error("EncodeInt64s as float")
	}
	if _, err := m.Int64s(&onnxpb.TensorProto{Name: proto.String("f"), DataType: proto.Int32(int32(Float))}); err == nil || !strings.Contains(err.Error(), `"f"`) {
		t.Errorf("Int64s of a float tensor: %v", err)
	}
}

func TestSetRawData(t *testing.T) {
	tp := &onnxpb.TensorProto{
		Name: proto.String("w"), DataType: proto.Int32(int32(Float)), Dims: []int64{2},
		FloatData: []float32{1, 2}, DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*onnxpb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("x")}},
	}
	dims := []int64{1, 1}
	if err := SetRawData(tp, dims, []byte{0, 0, 0x80, 0x3f}); err != nil {
		t.Fatal(err)
	}
	dims[0] = 7 // the tensor keeps its own copy
	if tp.FloatData != nil || tp.ExternalData != nil || tp.DataLocation != nil || !equalInts(tp.Dims, []int64{1, 1}) {
		t.Errorf("SetRawData left %v", tp)
	}
	if v, err := (*Model)(nil).Float64s(tp); err != nil || len(v) != 1 || v[0] != 1 {
		t.Errorf("after SetRawData: %v, %v", v, err)
	}
	// An empty tensor keeps a present (empty) raw_data field.
	if err := SetRawData(tp, []int64{0}, nil); err != nil || tp.RawData == nil {
		t.Errorf("empty: %v, raw_data %v", err, tp.RawData)
	}
	c := NewInt64Tensor("shape", []int64{2}, []int64{-1, 12})
	if v, err := (*Model)(nil).Int64s(c); err != nil || !equalInts(v, []int64{-1, 12}) || c.GetName() != "shape" {
		t.Errorf("NewInt64Tensor: %v, %v", v, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewInt64Tensor with mismatched dims did not panic")
		}
	}()
	NewInt64Tensor("bad", []int64{3}, []int64{1})
}

func TestNumElements(t *testing.T) {
	cases := []struct {
		dims []int64
		want int64
	}{
		{nil, 1}, {[]int64{}, 1}, {[]int64{0}, 0}, {[]int64{2, 3, 4}, 24}, {[]int64{-1, 3}, -1},
		{[]int64{0, -1}, -1}, {[]int64{1 << 32, 1 << 31}, -1}, {[]int64{1 << 31, 1 << 31, 0}, 0},
		{[]int64{math.MaxInt64}, math.MaxInt64}, {[]int64{math.MaxInt64, 2}, -1},
	}
	for _, c := range cases {
		if got := NumElements(c.dims); got != c.want {
			t.Errorf("NumElements(%v) = %d, want %d", c.dims, got, c.want)
		}
	}
}

func TestDataTypeNames(t *testing.T) {
	for dt, want := range map[DataType]string{Float: "float32", Double: "float64", BFloat16: "bfloat16", 99: "dtype(99)"} {
		if dt.String() != want {
			t.Errorf("%d: %q", dt, dt.String())
		}
	}
	for dt := DataType(0); dt < 30; dt++ {
		if dt.IsFloat() && dt.IsInt() {
			t.Errorf("%s is both float and int", dt)
		}
		if (dt.IsFloat() || dt.IsInt()) && dt.Size() == 0 {
			t.Errorf("%s decodable without a size", dt)
		}
	}
}

// ---- float16 and bfloat16 against independent references ----

// refHalf is the value of a binary16 bit pattern, computed from the IEEE 754
// definition with math.Ldexp (NaN for NaN patterns).
func refHalf(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1f
	f := float64(h & 0x3ff)
	switch e {
	case 0x1f:
		if f != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	case 0:
		return sign * math.Ldexp(f, -24) // subnormal: f * 2^-14 / 2^10
	}
	return sign * math.Ldexp(1024+f, e-25) // (1 + f/1024) * 2^(e-15)
}

// TestFloat16WidenExhaustive: all 65536 bit patterns widen exactly.
func TestFloat16WidenExhaustive(t *testing.T) {
	raw := make([]byte, 2*65536)
	for h := 0; h < 65536; h++ {
		binary.LittleEndian.PutUint16(raw[2*h:], uint16(h))
	}
	dec, err := DecodeFloat64s(Float16, raw)
	if err != nil {
		t.Fatal(err)
	}
	for h := 0; h < 65536; h++ {
		want := refHalf(uint16(h))
		got := Float16ToFloat32(uint16(h))
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) || !math.IsNaN(dec[h]) {
				t.Fatalf("%#04x: NaN widened to %v", h, got)
			}
			// The payload and sign survive (shifted into the wider fraction).
			if math.Float32bits(got)>>13&0x3ff != uint32(h)&0x3ff || math.Float32bits(got)>>31 != uint32(h)>>15 {
				t.Errorf("%#04x: NaN payload lost: %#08x", h, math.Float32bits(got))
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) || dec[h] != want {
			t.Fatalf("Float16ToFloat32(%#04x) = %v (decoded %v), want %v", h, got, dec[h], want)
		}
		// Narrowing an exact half gives the same pattern back.
		if back := Float32ToFloat16(got); back != uint16(h) {
			t.Fatalf("Float32ToFloat16(%v) = %#04x, want %#04x", got, back, h)
		}
	}
}

// TestBFloat16WidenExhaustive: all bfloat16 patterns widen to the float32
// with the same top 16 bits, and narrow back unchanged.
func TestBFloat16WidenExhaustive(t *testing.T) {
	raw := make([]byte, 2*65536)
	for h := 0; h < 65536; h++ {
		binary.LittleEndian.PutUint16(raw[2*h:], uint16(h))
	}
	dec, err := DecodeFloat64s(BFloat16, raw)
	if err != nil {
		t.Fatal(err)
	}
	for h := 0; h < 65536; h++ {
		// Reference from the definition: 8 exponent bits, 7 fraction bits.
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		e, f := (h>>7)&0xff, float64(h&0x7f)
		var want float64
		switch {
		case e == 0xff && f != 0:
			want = math.NaN()
		case e == 0xff:
			want = sign * math.Inf(1)
		case e == 0:
			want = sign * math.Ldexp(f, -133)
		default:
			want = sign * math.Ldexp(128+f, e-134)
		}
		if math.IsNaN(want) {
			if !math.IsNaN(dec[h]) {
				t.Fatalf("%#04x: NaN decoded as %v", h, dec[h])
			}
			if back := Float32ToBFloat16(float32(dec[h])); back&0x7f80 != 0x7f80 || back&0x7f == 0 {
				t.Fatalf("%#04x: NaN narrowed to %#04x", h, back)
			}
			continue
		}
		if dec[h] != want || math.Signbit(dec[h]) != math.Signbit(want) {
			t.Fatalf("bfloat16 %#04x = %v, want %v", h, dec[h], want)
		}
		if back := Float32ToBFloat16(float32(want)); back != uint16(h) {
			t.Fatalf("Float32ToBFloat16(%v) = %#04x, want %#04x", want, back, h)
		}
	}
}

// narrowFormat describes a binary format narrower than float32: its
// non-negative finite values and +Inf, sorted by bit pattern (which sorts
// them by value).
type narrowFormat struct {
	cache  *[]float64
	name   string
	inf    uint16               // +Inf pattern; patterns 0..inf are the sorted non-negative values
	value  func(uint16) float64 // exact value of a pattern
	narrow func(float32) uint16 // function under test
	dt     DataType             // for EncodeFloat64s
}

// refRound rounds x to the nearest value of the format, ties to the even
// pattern. It is written from the definition: find the two representable
// neighbours of |x| by searching the table of all non-negative values (sorted
// by pattern), and compare x with their midpoint. The arithmetic is exact:
// the values have at most 11 significant bits, so their sum and midpoint are
// exact float64s, and x is a float64. Overflow follows IEEE 754: Inf stands
// at the next power of two after the largest finite value, so values from
// the midpoint max + ulp/2 upwards round to it.
func refRound(f narrowFormat, x float64) uint16 {
	if math.IsNaN(x) {
		panic("NaN")
	}
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
		x = -x
	}
	table := f.table()
	p := sort.Search(len(table), func(i int) bool { return table[i] > x }) - 1
	if p >= int(f.inf) {
		return sign | f.inf
	}
	mid := (table[p] + table[p+1]) / 2
	switch {
	case x < mid:
		return sign | uint16(p)
	case x > mid:
		return sign | uint16(p+1)
	case p%2 == 0:
		return sign | uint16(p)
	}
	return sign | uint16(p+1)
}

// table lists the values of patterns 0..inf, with Inf replaced by the next
// power of two beyond the largest finite value.
func (f narrowFormat) table() []float64 {
	if f.cache != nil && *f.cache != nil {
		return *f.cache
	}
	t := make([]float64, int(f.inf)+1)
	for p := range t[:f.inf] {
		t[p] = f.value(uint16(p))
	}
	t[f.inf] = math.Ldexp(1, math.Ilogb(t[f.inf-1])+1)
	if f.cache != nil {
		*f.cache = t
	}
	return t
}

var halfFormat = narrowFormat{cache: new([]float64), name: "float16", inf: 0x7c00, value: refHalf, narrow: Float32ToFloat16, dt: Float16}

var bfloat = narrowFormat{cache: new([]float64), name: "bfloat16", inf: 0x7f80, dt: BFloat16,
	value:  func(p uint16) float64 { return float64(math.Float32frombits(uint32(p) << 16)) },
	narrow: Float32ToBFloat16}

// narrowInputs lists float64 values that probe rounding in the format: every
// representable value, each midpoint between neighbours and the nearest
// float32 and float64 values on both sides of it, plus seeded random values
// over the whole float32 range.
func narrowInputs(f narrowFormat, stride int) []float64 {
	var xs []float64
	for p := 0; p < int(f.inf); p += stride {
		lo := f.value(uint16(p))
		var hi float64
		if p+1 == int(f.inf) {
			hi = math.Ldexp(1, math.Ilogb(lo)+1)
		} else {
			hi = f.value(uint16(p + 1))
		}
		mid := (lo + hi) / 2 // exact in float64
		m32 := float32(mid)
		xs = append(xs, lo, mid,
			float64(math.Nextafter32(m32, 0)), float64(math.Nextafter32(m32, float32(math.Inf(1)))),
			math.Nextafter(mid, 0), math.Nextafter(mid, math.Inf(1)),
			lo+(hi-lo)/4, lo+3*(hi-lo)/4)
	}
	r := rand.New(rand.NewSource(7))
	for k := 0; k < 20000; k++ {
		xs = append(xs, float64(math.Float32frombits(r.Uint32()&0x7fffffff)))
		xs = append(xs, math.Ldexp(r.Float64(), r.Intn(60)-40))
	}
	xs = append(xs, 0, math.SmallestNonzeroFloat64, float64(math.SmallestNonzeroFloat32), math.MaxFloat32, math.MaxFloat64, math.Inf(1))
	return xs
}

func checkNarrowing(t *testing.T, f narrowFormat, stride int) {
	bad := 0
	for _, x := range narrowInputs(f, stride) {
		if math.IsNaN(x) {
			continue
		}
		for _, s := range []float64{1, -1} {
			v := s * x
			want := refRound(f, v)
			// float32 inputs: the exported narrowing function.
			if v32 := float32(v); float64(v32) == v {
				if got := f.narrow(v32); got != want {
					bad++
					if bad < 10 {
						t.Errorf("%s: narrowing float32 %v (%#08x) = %#04x, want %#04x", f.name, v32, math.Float32bits(v32), got, want)
					}
				}
			}
			// float64 inputs: EncodeFloat64s must round once, to nearest even.
			raw, err := EncodeFloat64s(f.dt, []float64{v})
			if err != nil {
				t.Fatal(err)
			}
			if got := binary.LittleEndian.Uint16(raw); got != want {
				bad++
				if bad < 10 {
					t.Errorf("%s: EncodeFloat64s(%v) = %#04x, want %#04x", f.name, v, got, want)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d wrongly rounded values", f.name, bad)
	}
	// NaN stays NaN, whatever its payload and sign.
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, 0xff800001, 0x7f80ffff, 0x7f810000} {
		nan := math.Float32frombits(bits)
		h := f.narrow(nan)
		if f.dt == Float16 && !(h&0x7c00 == 0x7c00 && h&0x3ff != 0) {
			t.Errorf("float16 of NaN %#08x = %#04x, not a NaN", bits, h)
		}
		if f.dt == BFloat16 && !(h&0x7f80 == 0x7f80 && h&0x7f != 0) {
			t.Errorf("bfloat16 of NaN %#08x = %#04x, not a NaN", bits, h)
		}
		raw, _ := EncodeFloat64s(f.dt, []float64{float64(nan)})
		back, _ := DecodeFloat64s(f.dt, raw)
		if !math.IsNaN(back[0]) {
			t.Errorf("%s: EncodeFloat64s(NaN) decodes to %v", f.name, back[0])
		}
	}
}

// TestFloat16Narrowing checks rounding to nearest even, overflow to Inf and
// subnormals against the exact reference, at every float16 value.
func TestFloat16Narrowing(t *testing.T) {
	checkNarrowing(t, halfFormat, 1)
	// Spot checks worked out by hand.
	for _, c := range []struct {
		x    float32
		want uint16
	}{
		{65504, 0x7bff}, {65519.99, 0x7bff}, {65520, 0x7c00}, {1e6, 0x7c00}, {-1e6, 0xfc00},
		{1 + 1.0/2048, 0x3c00},                                                       // tie between 1 and 1+2^-10: even is 1
		{1 + 3.0/2048, 0x3c02},                                                       // tie between 1+2^-10 and 1+2^-9: even is the latter
		{float32(math.Ldexp(1, -24)), 0x0001}, {float32(math.Ldexp(1, -25)), 0x0000}, // tie to even 0
		{float32(math.Ldexp(1.5, -25)), 0x0001}, {float32(math.Ldexp(3, -25)), 0x0002}, // 1.5 units: tie to 2
		{float32(math.Ldexp(1023, -24)), 0x03ff}, {float32(math.Ldexp(1023.5, -24)), 0x0400}, // subnormal to normal
		{float32(math.Copysign(0, -1)), 0x8000},
	} {
		if got := Float32ToFloat16(c.x); got != c.want {
			t.Errorf("Float32ToFloat16(%v) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
}

// TestBFloat16Narrowing checks bfloat16 rounding the same way.
func TestBFloat16Narrowing(t *testing.T) {
	checkNarrowing(t, bfloat, 1)
	for _, c := range []struct {
		x    float32
		want uint16
	}{
		{1 + 1.0/256, 0x3f80}, {1 + 3.0/256, 0x3f82}, {math.MaxFloat32, 0x7f80},
		{math.Float32frombits(0x7f7f7fff), 0x7f7f}, {math.Float32frombits(0x7f7f8000), 0x7f80},
		{math.Float32frombits(0x00008000), 0x0000}, {math.Float32frombits(0x00018000), 0x0002},
	} {
		if got := Float32ToBFloat16(c.x); got != c.want {
			t.Errorf("Float32ToBFloat16(%#08x) = %#04x, want %#04x", math.Float32bits(c.x), got, c.want)
		}
	}
}

// TestEncodeDecodeRoundTrip: values representable in a type survive
// EncodeFloat64s then DecodeFloat64s, and integer encoding rounds to nearest.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for _, dt := range []DataType{Float, Double, Float16, BFloat16, Int8, Uint8, Int16, Uint16, Int32, Uint32, Int64, Bool} {
		vals := make([]float64, 200)
		for k := range vals {
			switch dt {
			case Float:
				vals[k] = float64(math.Float32frombits(r.Uint32() &^ 0x7f800000)) // finite
			case Double:
				vals[k] = r.NormFloat64() * 1e10
			case Float16:
				vals[k] = refHalf(uint16(r.Intn(0x7c00)) | uint16(r.Intn(2))<<15)
			case BFloat16:
				vals[k] = bfloat.value(uint16(r.Intn(0x7f80)) | uint16(r.Intn(2))<<15)
			case Bool:
				vals[k] = float64(r.Intn(2))
			case Uint8:
				vals[k] = float64(r.Intn(256))
			case Int8:
				vals[k] = float64(r.Intn(256) - 128)
			case Int16:
				vals[k] = float64(r.Intn(65536) - 32768)
			case Uint16:
				vals[k] = float64(r.Intn(65536))
			case Int32:
				vals[k] = float64(int32(r.Uint32()))
			case Uint32:
				vals[k] = float64(r.Uint32())
			case Int64:
				vals[k] = float64(r.Int63n(1<<53) - 1<<52)
			}
		}
		raw, err := EncodeFloat64s(dt, vals)
		if err != nil || len(raw) != len(vals)*dt.Size() {
			t.Fatalf("%s: EncodeFloat64s: %d bytes, %v", dt, len(raw), err)
		}
		back, err := DecodeFloat64s(dt, raw)
		if err != nil {
			t.Fatal(err)
		}
		for k := range vals {
			if back[k] != vals[k] {
				t.Fatalf("%s: %v came back as %v", dt, vals[k], back[k])
			}
		}
		if dt.IsInt() {
			ints, err := DecodeInt64s(dt, raw)
			if err != nil {
				t.Fatal(err)
			}
			again, err := EncodeInt64s(dt, ints)
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("%s: EncodeInt64s(DecodeInt64s(raw)) differs", dt)
			}
		}
	}
	raw, _ := EncodeFloat64s(Int32, []float64{2.5, -2.5, 1.4999, -7.6})
	if got, _ := DecodeInt64s(Int32, raw); !equalInts(got, []int64{3, -3, 1, -8}) {
		t.Errorf("integer rounding: %v", got)
	}
}
