package dataset

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// npyAlign is the alignment NumPy pads the header to, so the data that
// follows can be memory-mapped with any element type aligned.
const npyAlign = 64

// growthDigits is the room NumPy leaves after the header dict so the
// leading dimension can later be rewritten in place; matching it makes the
// files byte-identical to np.save's.
const growthDigits = 21

// WriteNPY writes a in .npy format, little-endian and C order, with the
// same bytes np.save produces: format version 1.0 unless the header needs
// the 4-byte length of version 2.0, header padded to 64-byte alignment.
func WriteNPY(w io.Writer, a *Array) error {
	if err := checkWritable(a); err != nil {
		return err
	}
	if _, err := w.Write(npyHeader(a)); err != nil {
		return err
	}
	return writeData(w, a.data)
}

// SaveNPY writes a to path in .npy format. The file is written under a
// temporary name and renamed, so a failure leaves nothing half-written.
func SaveNPY(path string, a *Array) error {
	if err := checkWritable(a); err != nil {
		return err
	}
	return writeAtomic(path, func(w io.Writer) error { return WriteNPY(w, a) })
}

func checkWritable(a *Array) error {
	if a == nil {
		return fmt.Errorf("dataset: nil array")
	}
	if !a.DType.Valid() {
		return fmt.Errorf("dataset: array %q: cannot write dtype %v", a.Name, a.DType)
	}
	n, err := numElements(a.Shape)
	if err != nil {
		return fmt.Errorf("dataset: array %q: %v", a.Name, err)
	}
	// Arrays built as struct literals bypass New's checks; catch them here.
	if d, got := dataInfo(a.data); d != a.DType || got != n {
		return fmt.Errorf("dataset: array %q: shape %v needs %d %v elements, data holds %d of %T", a.Name, a.Shape, n, a.DType, got, a.data)
	}
	return nil
}

// dataInfo returns the DType matching a backing slice, and its length.
func dataInfo(d any) (DType, int) {
	switch s := d.(type) {
	case []bool:
		return Bool, len(s)
	case []uint8:
		return Uint8, len(s)
	case []int32:
		return Int32, len(s)
	case []int64:
		return Int64, len(s)
	case []uint16:
		return Float16, len(s)
	case []float32:
		return Float32, len(s)
	case []float64:
		return Float64, len(s)
	}
	return Invalid, 0
}

// npyHeader builds magic, version, length and the padded header dict.
func npyHeader(a *Array) []byte {
	var dict strings.Builder
	dict.WriteString("{'descr': '")
	dict.WriteString(a.DType.descr())
	dict.WriteString("', 'fortran_order': False, 'shape': (")
	for i, d := range a.Shape {
		if i > 0 {
			dict.WriteString(", ")
		}
		dict.WriteString(strconv.Itoa(d))
	}
	if len(a.Shape) == 1 {
		dict.WriteByte(',')
	}
	dict.WriteString("), }")
	if len(a.Shape) > 0 {
		dict.WriteString(strings.Repeat(" ", max(growthDigits-len(strconv.Itoa(a.Shape[0])), 0)))
	}
	hdr := dict.String()

	// The dict, the padding spaces and a final newline fill the header up to
	// the next multiple of 64 bytes, counting magic, version and length.
	for _, v := range []struct {
		major  byte
		lenLen int
	}{{1, 2}, {2, 4}} {
		fixed := len(npyMagic) + 2 + v.lenLen
		hlen := len(hdr) + 1
		pad := npyAlign - (fixed+hlen)%npyAlign
		total := hlen + pad
		if v.lenLen == 2 && total > math.MaxUint16 {
			continue
		}
		out := make([]byte, 0, fixed+total)
		out = append(out, npyMagic...)
		out = append(out, v.major, 0)
		if v.lenLen == 2 {
			out = binary.LittleEndian.AppendUint16(out, uint16(total))
		} else {
			out = binary.LittleEndian.AppendUint32(out, uint32(total))
		}
		out = append(out, hdr...)
		for range pad {
			out = append(out, ' ')
		}
		return append(out, '\n')
	}
	panic("unreachable: a version 2.0 header holds any shape")
}

// writeData writes the elements little-endian.
func writeData(w io.Writer, data any) error {
	le := binary.LittleEndian
	switch s := data.(type) {
	case []bool:
		return writeElems(w, s, 1, func(b []byte, v bool) []byte {
			if v {
				return append(b, 1)
			}
			return append(b, 0)
		})
	case []uint8:
		_, err := w.Write(s)
		return err
	case []int32:
		return writeElems(w, s, 4, func(b []byte, v int32) []byte { return le.AppendUint32(b, uint32(v)) })
	case []int64:
		return writeElems(w, s, 8, func(b []byte, v int64) []byte { return le.AppendUint64(b, uint64(v)) })
	case []uint16:
		return writeElems(w, s, 2, le.AppendUint16)
	case []float32:
		return writeElems(w, s, 4, func(b []byte, v float32) []byte { return le.AppendUint32(b, math.Float32bits(v)) })
	case []float64:
		return writeElems(w, s, 8, func(b []byte, v float64) []byte { return le.AppendUint64(b, math.Float64bits(v)) })
	}
	return fmt.Errorf("dataset: cannot write data of type %T", data)
}

// writeElems encodes s into a bounded buffer, writing it out when full.
func writeElems[T any](w io.Writer, s []T, size int, put func([]byte, T) []byte) error {
	buf := make([]byte, 0, min(len(s)*size, chunkBytes))
	for _, v := range s {
		if len(buf)+size > cap(buf) {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		buf = put(buf, v)
	}
	if len(buf) == 0 {
		return nil
	}
	_, err := w.Write(buf)
	return err
}

// writeAtomic writes path through a temporary file in the same directory
// and renames it into place only when write and close succeed.
func writeAtomic(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; give it the mode os.Create would.
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
