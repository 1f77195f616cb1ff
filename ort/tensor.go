package ort

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	ortapi "github.com/yalue/onnxruntime_go"
)

// Tensor is a named tensor in Go memory, row-major.
//
// Data is one of []float32, []float64, []int8, []uint8, []int16, []uint16,
// []int32, []uint32, []int64, []uint64 or []bool, with as many elements as
// Shape says (one for a scalar, whose Shape is empty). float16 and bfloat16
// tensors carry their bit patterns in a []uint16, with DType saying which
// (onnxio.Float16ToFloat32 decodes them). DType may be left Undefined on
// inputs when the Go type says it.
type Tensor struct {
	Name  string
	DType onnxio.DataType
	Shape []int64
	Data  any
}

// Info describes a session input or output. Shape has -1 for a dimension
// that is not fixed, and is nil when not even the rank is known.
type Info struct {
	Name  string
	DType onnxio.DataType
	Shape []int64
}

func (i Info) String() string {
	if i.Shape == nil {
		return fmt.Sprintf("%s %s[?]", i.Name, i.DType)
	}
	return fmt.Sprintf("%s %s%v", i.Name, i.DType, i.Shape)
}

// goDType is the element type that Data's Go type holds; uint16 means
// Uint16, Float16 or BFloat16.
func goDType(data any) (onnxio.DataType, int, bool) {
	switch d := data.(type) {
	case []float32:
		return onnxio.Float, len(d), true
	case []float64:
		return onnxio.Double, len(d), true
	case []int8:
		return onnxio.Int8, len(d), true
	case []uint8:
		return onnxio.Uint8, len(d), true
	case []int16:
		return onnxio.Int16, len(d), true
	case []uint16:
		return onnxio.Uint16, len(d), true
	case []int32:
		return onnxio.Int32, len(d), true
	case []uint32:
		return onnxio.Uint32, len(d), true
	case []int64:
		return onnxio.Int64, len(d), true
	case []uint64:
		return onnxio.Uint64, len(d), true
	case []bool:
		return onnxio.Bool, len(d), true
	}
	return onnxio.Undefined, 0, false
}

// isHalf reports the 16-bit float types, held as []uint16 bit patterns.
func isHalf(dt onnxio.DataType) bool { return dt == onnxio.Float16 || dt == onnxio.BFloat16 }

// supported reports the element types Run can pass in and out.
func supported(dt onnxio.DataType) bool {
	switch dt {
	case onnxio.Float, onnxio.Double, onnxio.Int8, onnxio.Uint8, onnxio.Int16, onnxio.Uint16,
		onnxio.Int32, onnxio.Uint32, onnxio.Int64, onnxio.Uint64, onnxio.Bool,
		onnxio.Float16, onnxio.BFloat16:
		return true
	}
	return false
}

// toValue wraps t's Go memory in an ORT value without copying (ORT only
// reads inputs). The caller must Destroy the value.
func toValue(t Tensor, dt onnxio.DataType) (ortapi.Value, error) {
	switch d := t.Data.(type) {
	case []float32:
		return newValue(t.Shape, d)
	case []float64:
		return newValue(t.Shape, d)
	case []int8:
		return newValue(t.Shape, d)
	case []uint8:
		return newValue(t.Shape, d)
	case []int16:
		return newValue(t.Shape, d)
	case []uint16:
		if isHalf(dt) {
			return newHalfValue(t.Shape, d, dt)
		}
		return newValue(t.Shape, d)
	case []int32:
		return newValue(t.Shape, d)
	case []uint32:
		return newValue(t.Shape, d)
	case []int64:
		return newValue(t.Shape, d)
	case []uint64:
		return newValue(t.Shape, d)
	case []bool:
		return newValue(t.Shape, d)
	}
	return nil, fmt.Errorf("unsupported Go type %T", t.Data)
}

func newValue[T ortapi.TensorData](shape []int64, d []T) (ortapi.Value, error) {
	if len(shape) == 0 {
		return ortapi.NewScalar(d[0])
	}
	return ortapi.NewTensor(ortapi.NewShape(shape...), d)
}

// newHalfValue copies float16/bfloat16 bit patterns into a byte tensor of
// that element type; the binding has no Go type for them.
func newHalfValue(shape []int64, d []uint16, dt onnxio.DataType) (ortapi.Value, error) {
	if len(shape) == 0 || len(d) == 0 {
		return nil, fmt.Errorf("%s scalars and empty %s tensors are not supported as inputs", dt, dt)
	}
	b := make([]byte, 2*len(d))
	for i, v := range d {
		b[2*i], b[2*i+1] = byte(v), byte(v>>8)
	}
	et := ortapi.TensorElementDataType(ortapi.TensorElementDataTypeFloat16)
	if dt == onnxio.BFloat16 {
		et = ortapi.TensorElementDataType(ortapi.TensorElementDataTypeBFloat16)
	}
	return ortapi.NewCustomDataTensor(ortapi.NewShape(shape...), b, et)
}

// newScalarOutput preallocates a rank-0 output: the binding cannot wrap a
// rank-0 result that ORT allocated itself.
func newScalarOutput(dt onnxio.DataType) (ortapi.Value, error) {
	switch dt {
	case onnxio.Float:
		return ortapi.NewEmptyScalar[float32]()
	case onnxio.Double:
		return ortapi.NewEmptyScalar[float64]()
	case onnxio.Int8:
		return ortapi.NewEmptyScalar[int8]()
	case onnxio.Uint8:
		return ortapi.NewEmptyScalar[uint8]()
	case onnxio.Int16:
		return ortapi.NewEmptyScalar[int16]()
	case onnxio.Uint16:
		return ortapi.NewEmptyScalar[uint16]()
	case onnxio.Int32:
		return ortapi.NewEmptyScalar[int32]()
	case onnxio.Uint32:
		return ortapi.NewEmptyScalar[uint32]()
	case onnxio.Int64:
		return ortapi.NewEmptyScalar[int64]()
	case onnxio.Uint64:
		return ortapi.NewEmptyScalar[uint64]()
	case onnxio.Bool:
		return ortapi.NewEmptyScalar[bool]()
	}
	return nil, fmt.Errorf("no scalar output of type %s", dt)
}

// fromValue returns the data of an ORT value as a Go slice and its shape.
// The binding already copied ORT's output into Go memory, which stays valid
// after the value is destroyed, so no further copy is made.
func fromValue(v ortapi.Value) (any, []int64, error) {
	for _, f := range []func(ortapi.Value) (any, []int64, bool){
		take[float32], take[float64], take[int8], take[uint8], take[int16], take[uint16],
		take[int32], take[uint32], take[int64], take[uint64], take[bool],
	} {
		if d, s, ok := f(v); ok {
			return d, s, nil
		}
	}
	return nil, nil, fmt.Errorf("unsupported ORT value %T", v)
}

func take[T ortapi.TensorData](v ortapi.Value) (any, []int64, bool) {
	switch x := v.(type) {
	case *ortapi.Tensor[T]:
		return x.GetData(), []int64(x.GetShape()), true
	case *ortapi.Scalar[T]:
		return []T{x.GetData()}, []int64{}, true
	}
	return nil, nil, false
}
