package dataset

import (
	"fmt"
	"math"
	"slices"

	"github.com/onnx-cria/onnx-cria/internal/half"
)

// Array is an n-dimensional array in C (row-major) order. Axis 0 is the row
// (sample) axis. The elements are held in a slice of the Go type that matches
// DType: []bool, []uint8, []int32, []int64, []uint16 (Float16 bits),
// []float32 or []float64.
//
// Shape and DType describe the data and must not be changed by the caller.
//
// The typed accessors (Bools, Uint8s, Int32s, Int64s, Float16Bits, Float32s,
// Float64s) return the backing slice itself, not a copy: writes through it
// change the array. Each panics if the array's DType differs, like a failed
// type assertion, since that is a programming error; use DType, Data or the
// As* conversions when the type is not known.
type Array struct {
	Name  string
	DType DType
	Shape []int

	data any
}

// Element is the set of Go element types an Array can be built from.
// Float16 arrays are built with NewFloat16 instead, since uint16 is ambiguous.
type Element interface {
	bool | uint8 | int32 | int64 | float32 | float64
}

// New returns an array that holds data with the given shape. data is used as
// the backing store, not copied (as gonum's mat.NewDense does); shape is copied.
// It is an error if len(data) is not the product of shape.
func New[T Element](name string, shape []int, data []T) (*Array, error) {
	var d DType
	switch any(data).(type) {
	case []bool:
		d = Bool
	case []uint8:
		d = Uint8
	case []int32:
		d = Int32
	case []int64:
		d = Int64
	case []float32:
		d = Float32
	case []float64:
		d = Float64
	}
	return newArray(name, d, shape, data, len(data))
}

// NewFloat16 returns a Float16 array whose elements are the IEEE 754
// half-precision bit patterns in bits (used as the backing store).
func NewFloat16(name string, shape []int, bits []uint16) (*Array, error) {
	return newArray(name, Float16, shape, bits, len(bits))
}

// Zeros returns a zero-filled array of the given dtype and shape.
func Zeros(name string, d DType, shape []int) (*Array, error) {
	n, err := numElements(shape)
	if err != nil {
		return nil, fmt.Errorf("dataset: array %q: %v", name, err)
	}
	if !d.Valid() {
		return nil, fmt.Errorf("dataset: array %q: invalid dtype", name)
	}
	return newArray(name, d, shape, makeSlice(d, n), n)
}

func newArray(name string, d DType, shape []int, data any, n int) (*Array, error) {
	want, err := numElements(shape)
	if err != nil {
		return nil, fmt.Errorf("dataset: array %q: %v", name, err)
	}
	if want != n {
		return nil, fmt.Errorf("dataset: array %q: shape %v needs %d elements, data has %d", name, shape, want, n)
	}
	if n == 0 {
		data = makeSlice(d, 0) // so accessors never return a nil slice
	}
	return &Array{Name: name, DType: d, Shape: slices.Clone(shape), data: data}, nil
}

// numElements is the product of shape, with checks for negative dims and overflow.
func numElements(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n *= d
	}
	return n, nil
}

func makeSlice(d DType, n int) any {
	switch d {
	case Bool:
		return make([]bool, n)
	case Uint8:
		return make([]uint8, n)
	case Int32:
		return make([]int32, n)
	case Int64:
		return make([]int64, n)
	case Float16:
		return make([]uint16, n)
	case Float32:
		return make([]float32, n)
	case Float64:
		return make([]float64, n)
	}
	return nil
}

// String describes the array, e.g. `"x" float32 [1024 784]`.
func (a *Array) String() string {
	return fmt.Sprintf("%q %v %v", a.Name, a.DType, a.Shape)
}

// Rank is the number of dimensions; 0 for a scalar.
func (a *Array) Rank() int { return len(a.Shape) }

// Size is the number of elements (the product of Shape; 1 for a scalar).
func (a *Array) Size() int {
	n, _ := numElements(a.Shape)
	return n
}

// Len is the leading dimension, Shape[0]: the number of rows.
// A 0-d array has no rows and Len returns 0.
func (a *Array) Len() int {
	if len(a.Shape) == 0 {
		return 0
	}
	return a.Shape[0]
}

// RowSize is the number of elements in one row, the product of Shape[1:]
// (1 for a 1-D or 0-d array).
func (a *Array) RowSize() int {
	if len(a.Shape) == 0 {
		return 1
	}
	n, _ := numElements(a.Shape[1:])
	return n
}

// Data returns the backing slice as an any: []bool, []uint8, []int32,
// []int64, []uint16 (Float16), []float32 or []float64.
func (a *Array) Data() any { return a.data }

// Bools returns the elements of a Bool array.
func (a *Array) Bools() []bool { return typed[bool](a, Bool) }

// Uint8s returns the elements of a Uint8 array.
func (a *Array) Uint8s() []uint8 { return typed[uint8](a, Uint8) }

// Int32s returns the elements of an Int32 array.
func (a *Array) Int32s() []int32 { return typed[int32](a, Int32) }

// Int64s returns the elements of an Int64 array.
func (a *Array) Int64s() []int64 { return typed[int64](a, Int64) }

// Float16Bits returns the half-precision bit patterns of a Float16 array.
func (a *Array) Float16Bits() []uint16 { return typed[uint16](a, Float16) }

// Float32s returns the elements of a Float32 array.
func (a *Array) Float32s() []float32 { return typed[float32](a, Float32) }

// Float64s returns the elements of a Float64 array.
func (a *Array) Float64s() []float64 { return typed[float64](a, Float64) }

func typed[T any](a *Array, d DType) []T {
	s, ok := a.data.([]T)
	if !ok || a.DType != d {
		panic(fmt.Sprintf("dataset: %s accessor called on %v array %q", d, a.DType, a.Name))
	}
	return s
}

// AsFloat32 returns a new slice with every element converted to float32
// (false/true become 0/1; int64 and float64 may round).
func (a *Array) AsFloat32() []float32 {
	out := make([]float32, a.Size())
	switch s := a.data.(type) {
	case []bool:
		for i, v := range s {
			if v {
				out[i] = 1
			}
		}
	case []uint8:
		convert(out, s)
	case []int32:
		convert(out, s)
	case []int64:
		convert(out, s)
	case []uint16:
		for i, v := range s {
			out[i] = half.ToFloat32(v)
		}
	case []float32:
		copy(out, s)
	case []float64:
		convert(out, s)
	}
	return out
}

// AsFloat64 returns a new slice with every element converted to float64.
func (a *Array) AsFloat64() []float64 {
	out := make([]float64, a.Size())
	switch s := a.data.(type) {
	case []bool:
		for i, v := range s {
			if v {
				out[i] = 1
			}
		}
	case []uint8:
		convert(out, s)
	case []int32:
		convert(out, s)
	case []int64:
		convert(out, s)
	case []uint16:
		for i, v := range s {
			out[i] = float64(half.ToFloat32(v))
		}
	case []float32:
		convert(out, s)
	case []float64:
		copy(out, s)
	}
	return out
}

// AsInt64 returns a new slice with every element converted to int64. Only
// integer and bool arrays convert; floating-point arrays are an error, since
// labels stored as floats usually mean the wrong array was chosen.
func (a *Array) AsInt64() ([]int64, error) {
	out := make([]int64, a.Size())
	switch s := a.data.(type) {
	case []bool:
		for i, v := range s {
			if v {
				out[i] = 1
			}
		}
	case []uint8:
		convert(out, s)
	case []int32:
		convert(out, s)
	case []int64:
		copy(out, s)
	default:
		return nil, fmt.Errorf("dataset: array %q has dtype %v, not an integer type", a.Name, a.DType)
	}
	return out, nil
}

func convert[D, S uint8 | int32 | int64 | float32 | float64](dst []D, src []S) {
	for i, v := range src {
		dst[i] = D(v)
	}
}

// Clone returns a deep copy of a.
func (a *Array) Clone() *Array {
	return &Array{Name: a.Name, DType: a.DType, Shape: slices.Clone(a.Shape), data: cloneData(a.data)}
}

func cloneData(d any) any {
	switch s := d.(type) {
	case []bool:
		return slices.Clone(s)
	case []uint8:
		return slices.Clone(s)
	case []int32:
		return slices.Clone(s)
	case []int64:
		return slices.Clone(s)
	case []uint16:
		return slices.Clone(s)
	case []float32:
		return slices.Clone(s)
	case []float64:
		return slices.Clone(s)
	}
	return nil
}

// Slice returns a new array holding a copy of rows [i, j).
func (a *Array) Slice(i, j int) (*Array, error) {
	if len(a.Shape) == 0 {
		return nil, fmt.Errorf("dataset: array %q is 0-d and has no rows", a.Name)
	}
	if i < 0 || j < i || j > a.Shape[0] {
		return nil, fmt.Errorf("dataset: array %q: rows [%d, %d) out of range [0, %d)", a.Name, i, j, a.Shape[0])
	}
	rs := a.RowSize()
	shape := slices.Clone(a.Shape)
	shape[0] = j - i
	return &Array{Name: a.Name, DType: a.DType, Shape: shape, data: cloneData(sliceData(a.data, i*rs, j*rs))}, nil
}

// Take returns a new array holding copies of the given rows, in the order
// given; a row may repeat.
func (a *Array) Take(rows []int) (*Array, error) {
	if len(a.Shape) == 0 {
		return nil, fmt.Errorf("dataset: array %q is 0-d and has no rows", a.Name)
	}
	for _, r := range rows {
		if r < 0 || r >= a.Shape[0] {
			return nil, fmt.Errorf("dataset: array %q: row %d out of range [0, %d)", a.Name, r, a.Shape[0])
		}
	}
	shape := slices.Clone(a.Shape)
	shape[0] = len(rows)
	rs := a.RowSize()
	var data any
	switch s := a.data.(type) {
	case []bool:
		data = takeRows(s, rows, rs)
	case []uint8:
		data = takeRows(s, rows, rs)
	case []int32:
		data = takeRows(s, rows, rs)
	case []int64:
		data = takeRows(s, rows, rs)
	case []uint16:
		data = takeRows(s, rows, rs)
	case []float32:
		data = takeRows(s, rows, rs)
	case []float64:
		data = takeRows(s, rows, rs)
	}
	return &Array{Name: a.Name, DType: a.DType, Shape: shape, data: data}, nil
}

func takeRows[T any](s []T, rows []int, rs int) []T {
	out := make([]T, 0, len(rows)*rs)
	for _, r := range rows {
		out = append(out, s[r*rs:(r+1)*rs]...)
	}
	return out
}

func sliceData(d any, i, j int) any {
	switch s := d.(type) {
	case []bool:
		return s[i:j]
	case []uint8:
		return s[i:j]
	case []int32:
		return s[i:j]
	case []int64:
		return s[i:j]
	case []uint16:
		return s[i:j]
	case []float32:
		return s[i:j]
	case []float64:
		return s[i:j]
	}
	return nil
}

// Equal reports whether a and b have the same name, dtype, shape and
// elements. NaNs compare equal to NaNs with the same bits.
func Equal(a, b *Array) bool {
	if a.Name != b.Name || a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) {
		return false
	}
	switch s := a.data.(type) {
	case []float32:
		t := b.data.([]float32)
		return slices.EqualFunc(s, t, func(x, y float32) bool {
			return math.Float32bits(x) == math.Float32bits(y)
		})
	case []float64:
		t := b.data.([]float64)
		return slices.EqualFunc(s, t, func(x, y float64) bool {
			return math.Float64bits(x) == math.Float64bits(y)
		})
	case []bool:
		return slices.Equal(s, b.data.([]bool))
	case []uint8:
		return slices.Equal(s, b.data.([]uint8))
	case []int32:
		return slices.Equal(s, b.data.([]int32))
	case []int64:
		return slices.Equal(s, b.data.([]int64))
	case []uint16:
		return slices.Equal(s, b.data.([]uint16))
	}
	return false
}

// RowsVary reports whether any row along axis 0 differs from the first.
// NaN compares unequal to itself, so an array with a NaN varies.
func (a *Array) RowsVary() bool {
	switch d := a.data.(type) {
	case []float32:
		return rowsVary(d, a.RowSize())
	case []float64:
		return rowsVary(d, a.RowSize())
	case []int64:
		return rowsVary(d, a.RowSize())
	case []int32:
		return rowsVary(d, a.RowSize())
	case []uint8:
		return rowsVary(d, a.RowSize())
	case []uint16:
		return rowsVary(d, a.RowSize())
	case []bool:
		return rowsVary(d, a.RowSize())
	}
	return true
}

func rowsVary[T comparable](d []T, row int) bool {
	if row == 0 {
		return false
	}
	for i := row; i+row <= len(d); i += row {
		if !slices.Equal(d[:row], d[i:i+row]) {
			return true
		}
	}
	return false
}
