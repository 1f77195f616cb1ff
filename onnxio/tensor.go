package onnxio

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/onnx-cria/onnx-cria/internal/half"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// DataType is an ONNX tensor element type (TensorProto.DataType).
type DataType int32

// The element types onnx-cria decodes; others are carried but not decoded.
const (
	Undefined DataType = 0
	Float     DataType = 1
	Uint8     DataType = 2
	Int8      DataType = 3
	Uint16    DataType = 4
	Int16     DataType = 5
	Int32     DataType = 6
	Int64     DataType = 7
	String    DataType = 8
	Bool      DataType = 9
	Float16   DataType = 10
	Double    DataType = 11
	Uint32    DataType = 12
	Uint64    DataType = 13
	BFloat16  DataType = 16
)

var dtypeNames = map[DataType]string{
	Undefined: "undefined", Float: "float32", Uint8: "uint8", Int8: "int8",
	Uint16: "uint16", Int16: "int16", Int32: "int32", Int64: "int64",
	String: "string", Bool: "bool", Float16: "float16", Double: "float64",
	Uint32: "uint32", Uint64: "uint64", 14: "complex64", 15: "complex128",
	BFloat16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
	19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1",
}

func (d DataType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Size is the width of one element in bytes in raw_data, or 0 for types
// without a fixed byte width (strings, 4-bit types).
func (d DataType) Size() int {
	switch d {
	case Uint8, Int8, Bool, 17, 18, 19, 20:
		return 1
	case Uint16, Int16, Float16, BFloat16:
		return 2
	case Int32, Uint32, Float:
		return 4
	case Int64, Uint64, Double, 14:
		return 8
	case 15:
		return 16
	}
	return 0
}

// IsFloat reports whether d is a floating-point type that Float64s decodes.
func (d DataType) IsFloat() bool {
	return d == Float || d == Double || d == Float16 || d == BFloat16
}

// IsInt reports whether d is an integer or bool type that Int64s decodes.
func (d DataType) IsInt() bool {
	switch d {
	case Uint8, Int8, Uint16, Int16, Int32, Int64, Bool, Uint32, Uint64:
		return true
	}
	return false
}

// NumElements is the product of dims (1 for a scalar). It returns -1 for a
// negative dimension or an overflowing product.
func NumElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return -1
		}
		if d != 0 && n > math.MaxInt64/d {
			return -1
		}
		n *= d
	}
	return n
}

// numBytes is the byte size of a tensor with these dims and element size, or
// -1 for invalid dims or a size that overflows int64.
func numBytes(dims []int64, size int) int64 {
	n := NumElements(dims)
	if n < 0 || (size > 0 && n > math.MaxInt64/int64(size)) {
		return -1
	}
	return n * int64(size)
}

// RawData returns the tensor's elements as little-endian fixed-width bytes,
// whichever field holds them. External data is read through m; m may be nil
// when the tensor is known to be stored inline. The returned slice may alias
// t.RawData: copy it before changing it.
func (m *Model) RawData(t *onnxpb.TensorProto) ([]byte, error) {
	dt := DataType(t.GetDataType())
	size := dt.Size()
	if size == 0 {
		return nil, fmt.Errorf("tensor %q: element type %s has no fixed-width encoding", t.GetName(), dt)
	}
	n := NumElements(t.GetDims())
	want := numBytes(t.GetDims(), size)
	if n < 0 || want < 0 {
		return nil, fmt.Errorf("tensor %q: invalid dims %v", t.GetName(), t.GetDims())
	}
	if t.GetSegment() != nil {
		return nil, fmt.Errorf("tensor %q: segmented tensors are not supported", t.GetName())
	}
	var raw []byte
	switch {
	case t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL:
		if m == nil {
			return nil, fmt.Errorf("tensor %q: stored as external data, but no model to resolve it", t.GetName())
		}
		b, err := m.readExternal(t)
		if err != nil {
			return nil, err
		}
		raw = b
	case t.RawData != nil:
		raw = t.RawData
	default:
		b, err := typedToRaw(t, dt, n)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	if int64(len(raw)) != want {
		return nil, fmt.Errorf("tensor %q: holds %d bytes, dims %v of %s need %d", t.GetName(), len(raw), t.GetDims(), dt, want)
	}
	return raw, nil
}

// typedToRaw converts the type-specific repeated fields to raw bytes.
func typedToRaw(t *onnxpb.TensorProto, dt DataType, n int64) ([]byte, error) {
	size := dt.Size()
	// Allocate only once the field is known to hold n values: n comes from
	// the dims and may be huge in a corrupt file.
	var out []byte
	alloc := func() { out = make([]byte, 0, n*int64(size)) }
	bad := func(field string, got int) error {
		return fmt.Errorf("tensor %q: %s has %d values, dims %v need %d", t.GetName(), field, got, t.GetDims(), n)
	}
	switch dt {
	case Float:
		if int64(len(t.FloatData)) != n {
			return nil, bad("float_data", len(t.FloatData))
		}
		alloc()
		for _, v := range t.FloatData {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	case Double:
		if int64(len(t.DoubleData)) != n {
			return nil, bad("double_data", len(t.DoubleData))
		}
		alloc()
		for _, v := range t.DoubleData {
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(v))
		}
	case Int64:
		if int64(len(t.Int64Data)) != n {
			return nil, bad("int64_data", len(t.Int64Data))
		}
		alloc()
		for _, v := range t.Int64Data {
			out = binary.LittleEndian.AppendUint64(out, uint64(v))
		}
	case Uint32, Uint64:
		if int64(len(t.Uint64Data)) != n {
			return nil, bad("uint64_data", len(t.Uint64Data))
		}
		alloc()
		for _, v := range t.Uint64Data {
			if dt == Uint32 {
				out = binary.LittleEndian.AppendUint32(out, uint32(v))
			} else {
				out = binary.LittleEndian.AppendUint64(out, v)
			}
		}
	case Int32, Int16, Int8, Uint16, Uint8, Bool, Float16, BFloat16:
		// The format packs all of these into int32_data, one value each;
		// 16-bit floats as their bit patterns.
		if int64(len(t.Int32Data)) != n {
			return nil, bad("int32_data", len(t.Int32Data))
		}
		alloc()
		for _, v := range t.Int32Data {
			switch size {
			case 1:
				out = append(out, byte(v))
			case 2:
				out = binary.LittleEndian.AppendUint16(out, uint16(v))
			default:
				out = binary.LittleEndian.AppendUint32(out, uint32(v))
			}
		}
	default:
		return nil, fmt.Errorf("tensor %q: cannot decode typed fields of %s", t.GetName(), dt)
	}
	return out, nil
}

// SetRawData replaces the tensor's contents with raw little-endian bytes and
// new dims, clearing the typed fields and any external-data reference. The
// dtype stays the same.
func SetRawData(t *onnxpb.TensorProto, dims []int64, raw []byte) error {
	dt := DataType(t.GetDataType())
	if nb := numBytes(dims, dt.Size()); nb < 0 || nb != int64(len(raw)) {
		return fmt.Errorf("tensor %q: %d bytes do not fit dims %v of %s", t.GetName(), len(raw), dims, dt)
	}
	t.Dims = append([]int64(nil), dims...)
	t.RawData = raw
	if t.RawData == nil {
		t.RawData = []byte{}
	}
	t.FloatData, t.Int32Data, t.Int64Data, t.DoubleData, t.Uint64Data = nil, nil, nil, nil, nil
	t.ExternalData = nil
	t.DataLocation = nil
	return nil
}

// Float64s decodes a floating-point or integer tensor into float64 values,
// which hold every float32, float16, bfloat16 and int32 value exactly.
func (m *Model) Float64s(t *onnxpb.TensorProto) ([]float64, error) {
	raw, err := m.RawData(t)
	if err != nil {
		return nil, err
	}
	return DecodeFloat64s(DataType(t.GetDataType()), raw)
}

// Int64s decodes an integer or bool tensor.
func (m *Model) Int64s(t *onnxpb.TensorProto) ([]int64, error) {
	dt := DataType(t.GetDataType())
	if !dt.IsInt() {
		return nil, fmt.Errorf("tensor %q: %s is not an integer type", t.GetName(), dt)
	}
	raw, err := m.RawData(t)
	if err != nil {
		return nil, err
	}
	return DecodeInt64s(dt, raw)
}

// DecodeFloat64s converts raw little-endian elements of type dt to float64.
func DecodeFloat64s(dt DataType, raw []byte) ([]float64, error) {
	size := dt.Size()
	if size == 0 || len(raw)%size != 0 {
		return nil, fmt.Errorf("cannot decode %d bytes of %s", len(raw), dt)
	}
	n := len(raw) / size
	out := make([]float64, n)
	switch dt {
	case Float:
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case Double:
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	case Float16:
		for i := range out {
			out[i] = float64(Float16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:])))
		}
	case BFloat16:
		for i := range out {
			out[i] = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16))
		}
	default:
		ints, err := DecodeInt64s(dt, raw)
		if err != nil {
			return nil, err
		}
		for i, v := range ints {
			out[i] = float64(v)
		}
	}
	return out, nil
}

// DecodeInt64s converts raw little-endian integer or bool elements to int64.
func DecodeInt64s(dt DataType, raw []byte) ([]int64, error) {
	size := dt.Size()
	if !dt.IsInt() || len(raw)%size != 0 {
		return nil, fmt.Errorf("cannot decode %d bytes of %s as integers", len(raw), dt)
	}
	out := make([]int64, len(raw)/size)
	for i := range out {
		p := raw[size*i:]
		switch dt {
		case Uint8, Bool:
			out[i] = int64(p[0])
		case Int8:
			out[i] = int64(int8(p[0]))
		case Uint16:
			out[i] = int64(binary.LittleEndian.Uint16(p))
		case Int16:
			out[i] = int64(int16(binary.LittleEndian.Uint16(p)))
		case Int32:
			out[i] = int64(int32(binary.LittleEndian.Uint32(p)))
		case Uint32:
			out[i] = int64(binary.LittleEndian.Uint32(p))
		case Int64, Uint64:
			out[i] = int64(binary.LittleEndian.Uint64(p))
		}
	}
	return out, nil
}

// EncodeFloat64s converts values to raw little-endian elements of type dt,
// rounding to nearest even for the narrow float types.
func EncodeFloat64s(dt DataType, vals []float64) ([]byte, error) {
	size := dt.Size()
	out := make([]byte, len(vals)*size)
	for i, v := range vals {
		p := out[size*i:]
		switch dt {
		case Float:
			binary.LittleEndian.PutUint32(p, math.Float32bits(float32(v)))
		case Double:
			binary.LittleEndian.PutUint64(p, math.Float64bits(v))
		case Float16:
			binary.LittleEndian.PutUint16(p, Float32ToFloat16(float32RoundOdd(v)))
		case BFloat16:
			binary.LittleEndian.PutUint16(p, Float32ToBFloat16(float32RoundOdd(v)))
		case Int64, Int32, Int16, Int8, Uint8, Uint16, Uint32, Uint64, Bool:
			iv := int64(math.Round(v))
			if err := putInt(dt, p, iv); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("cannot encode %s", dt)
		}
	}
	return out, nil
}

// EncodeInt64s converts values to raw little-endian elements of integer type dt.
func EncodeInt64s(dt DataType, vals []int64) ([]byte, error) {
	if !dt.IsInt() {
		return nil, fmt.Errorf("cannot encode integers as %s", dt)
	}
	size := dt.Size()
	out := make([]byte, len(vals)*size)
	for i, v := range vals {
		if err := putInt(dt, out[size*i:], v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func putInt(dt DataType, p []byte, v int64) error {
	switch dt {
	case Uint8, Int8, Bool:
		p[0] = byte(v)
	case Uint16, Int16:
		binary.LittleEndian.PutUint16(p, uint16(v))
	case Int32, Uint32:
		binary.LittleEndian.PutUint32(p, uint32(v))
	case Int64, Uint64:
		binary.LittleEndian.PutUint64(p, uint64(v))
	default:
		return fmt.Errorf("cannot encode integers as %s", dt)
	}
	return nil
}

// float32RoundOdd converts v to float32 rounding to odd: exact values stay,
// others become whichever neighbour has an odd last bit. Rounding that result
// to nearest even in a format at least two bits narrower (float16, bfloat16)
// gives the correctly rounded value of v, which going through float32 with
// round-to-nearest does not: v just above a float16 midpoint can round to the
// midpoint in float32 and then tie to the wrong side.
func float32RoundOdd(v float64) float32 {
	f := float32(v)
	if float64(f) == v || math.IsNaN(v) {
		return f
	}
	b := math.Float32bits(f)
	if math.Abs(float64(f)) > math.Abs(v) {
		b-- // rounded away from zero (maybe to Inf): step back to the truncation
	}
	return math.Float32frombits(b | 1)
}

// Float16ToFloat32 widens an IEEE 754 half-precision bit pattern exactly.
func Float16ToFloat32(h uint16) float32 { return half.ToFloat32(h) }

// Float32ToFloat16 narrows to half precision, rounding to nearest even,
// overflowing to infinity and keeping NaN a NaN.
func Float32ToFloat16(f float32) uint16 { return half.FromFloat32(f) }

// Float32ToBFloat16 narrows to bfloat16, rounding to nearest even.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7f800000 == 0x7f800000 && b&0x7fffff != 0 {
		return uint16(b>>16) | 0x40 // keep NaN quiet and a NaN
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// NewTensor builds an initializer-style tensor with raw data.
func NewTensor(name string, dt DataType, dims []int64, raw []byte) (*onnxpb.TensorProto, error) {
	t := &onnxpb.TensorProto{Name: &name, DataType: ptr(int32(dt))}
	if err := SetRawData(t, dims, raw); err != nil {
		return nil, err
	}
	return t, nil
}

// NewInt64Tensor is NewTensor for int64 values, as used by shape constants.
func NewInt64Tensor(name string, dims []int64, vals []int64) *onnxpb.TensorProto {
	raw, _ := EncodeInt64s(Int64, vals)
	t, err := NewTensor(name, Int64, dims, raw)
	if err != nil {
		panic(err) // dims and vals disagree: a programming error
	}
	return t
}

func ptr[T any](v T) *T { return &v }
