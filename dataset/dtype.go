package dataset

import "fmt"

// DType is the element type of an Array. The zero value is Invalid.
type DType int

// Element types. The names follow NumPy's.
const (
	Invalid DType = iota
	Bool
	Uint8
	Int32
	Int64
	Float16 // held as raw IEEE 754 half-precision bits in a []uint16
	Float32
	Float64
)

var dtypeNames = [...]string{
	Invalid: "invalid",
	Bool:    "bool",
	Uint8:   "uint8",
	Int32:   "int32",
	Int64:   "int64",
	Float16: "float16",
	Float32: "float32",
	Float64: "float64",
}

// String returns NumPy's name for d, such as "float32".
func (d DType) String() string {
	if d < 0 || int(d) >= len(dtypeNames) {
		return fmt.Sprintf("DType(%d)", int(d))
	}
	return dtypeNames[d]
}

// ItemSize is the number of bytes of one element (NumPy's itemsize); 0 for Invalid.
func (d DType) ItemSize() int {
	switch d {
	case Bool, Uint8:
		return 1
	case Float16:
		return 2
	case Int32, Float32:
		return 4
	case Int64, Float64:
		return 8
	}
	return 0
}

// Valid reports whether d is one of the element types above.
func (d DType) Valid() bool { return d > Invalid && int(d) < len(dtypeNames) }

// ParseDType returns the DType with NumPy's name s ("float32", "int64", ...).
func ParseDType(s string) (DType, error) {
	for d := Bool; d.Valid(); d++ {
		if dtypeNames[d] == s {
			return d, nil
		}
	}
	return Invalid, fmt.Errorf("dataset: unknown dtype %q", s)
}

// kindSize maps a descr's kind letter and size to a DType.
func kindSize(kind byte, size int) DType {
	switch {
	case kind == 'b' && size == 1:
		return Bool
	case kind == 'u' && size == 1:
		return Uint8
	case kind == 'i' && size == 4:
		return Int32
	case kind == 'i' && size == 8:
		return Int64
	case kind == 'f' && size == 2:
		return Float16
	case kind == 'f' && size == 4:
		return Float32
	case kind == 'f' && size == 8:
		return Float64
	}
	return Invalid
}

// descr is the little-endian NumPy type string written for d.
func (d DType) descr() string {
	switch d {
	case Bool:
		return "|b1"
	case Uint8:
		return "|u1"
	case Int32:
		return "<i4"
	case Int64:
		return "<i8"
	case Float16:
		return "<f2"
	case Float32:
		return "<f4"
	case Float64:
		return "<f8"
	}
	return ""
}
