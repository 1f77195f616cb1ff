package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// must returns v, panicking (and so failing the test) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// arange builds an array of the given dtype with elements f(0), f(1), ...
func arange(t testing.TB, name string, d DType, shape []int, f func(i int) float64) *Array {
	t.Helper()
	a := must(Zeros(name, d, shape))
	for i := range a.Size() {
		v := f(i)
		switch s := a.data.(type) {
		case []bool:
			s[i] = v != 0
		case []uint8:
			s[i] = uint8(v)
		case []int32:
			s[i] = int32(v)
		case []int64:
			s[i] = int64(v)
		case []uint16:
			s[i] = uint16(v) // raw half bits
		case []float32:
			s[i] = float32(v)
		case []float64:
			s[i] = v
		}
	}
	return a
}

// rawNPY builds an .npy file by hand: the given version, header text and data.
func rawNPY(major byte, hdr string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString(npyMagic)
	b.WriteByte(major)
	b.WriteByte(0)
	if major == 1 {
		binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	} else {
		binary.Write(&b, binary.LittleEndian, uint32(len(hdr)))
	}
	b.WriteString(hdr)
	b.Write(data)
	return b.Bytes()
}

// wantErr checks that err wraps target and mentions every fragment.
func wantErr(t testing.TB, err, target error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", target)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %q does not wrap %v", err, target)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

var allDTypes = []DType{Bool, Uint8, Int32, Int64, Float16, Float32, Float64}
