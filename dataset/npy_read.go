package dataset

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/onnx-cria/onnx-cria/internal/inputfile"
)

// npyMagic starts every .npy file; the version bytes follow it.
const npyMagic = "\x93NUMPY"

// MaxHeaderLen bounds the .npy header length that readers accept, so that a
// corrupt length field cannot make them allocate gigabytes. NumPy itself
// refuses headers over 10000 bytes by default.
const MaxHeaderLen = 1 << 20

// ReadNPY reads one .npy array from r and leaves r just after its data, so
// several arrays written back to back can be read in turn. The array's Name is
// empty. Arrays stored in Fortran order are converted to C order.
func ReadNPY(r io.Reader) (*Array, error) {
	hint := int64(-1)
	if l, ok := r.(interface{ Len() int }); ok {
		hint = int64(l.Len()) // bytes.Reader, strings.Reader, bytes.Buffer
	}
	return readNPY(r, readOpts{hint: hint})
}

// LoadNPY reads the .npy file at path. The array is named after the file,
// without its directory and ".npy" extension. Only regular files are read.
func LoadNPY(path string) (*Array, error) {
	f, size, err := inputfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return loadNPY(f, size, path, nil)
}

func loadNPY(f io.Reader, size int64, path string, pick *pickRows) (*Array, error) {
	name := strings.TrimSuffix(filepath.Base(path), ".npy")
	a, err := readNPY(bufio.NewReaderSize(f, 1<<16), readOpts{hint: size, pick: pick.named(name)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a.Name = name
	return a, nil
}

// header is the decoded .npy header.
type header struct {
	dtype   DType
	order   binary.ByteOrder
	fortran bool
	shape   []int
	size    int // header bytes including magic, version and length
}

// readOpts say what a reader knows about its input and which rows it wants.
type readOpts struct {
	// hint is the number of bytes left in r, or -1 when unknown. A known
	// size lets truncation show before any large allocation, and the data
	// is then allocated at once (callers bound a hint that may lie, such as
	// a zip member's declared size, by what the input can hold).
	hint int64
	// whole says that hint counts exactly this array's bytes (an .npz
	// member), so that bytes left after the data are an error found before
	// any data is read.
	whole bool
	// pick, if set, chooses the rows to keep once the row count is known;
	// the others are read past without being kept.
	pick func(rows int) ([]int, error)
}

// readNPY reads an array.
func readNPY(r io.Reader, o readOpts) (*Array, error) {
	h, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	n, err := numElements(h.shape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	size := h.dtype.ItemSize()
	if n > 0 && n > (1<<62)/size {
		return nil, fmt.Errorf("%w: shape %v is too large", ErrHeader, h.shape)
	}
	want := int64(n) * int64(size)
	hint := o.hint
	if hint >= 0 && hint-int64(h.size) < want {
		return nil, truncData(h, want, max(hint-int64(h.size), 0))
	}
	if o.whole && hint-int64(h.size) > want {
		return nil, fmt.Errorf("%w: %d bytes follow the header, but shape %v of %v needs %d: the member holds more than its array",
			ErrHeader, hint-int64(h.size), h.shape, h.dtype, want)
	}
	if o.pick != nil && !h.fortran {
		return readRows(r, h, o.pick)
	}
	data, got, err := readData(r, h.dtype, h.order, n, hint >= 0)
	if err != nil {
		if isEOF(err) {
			return nil, truncData(h, want, got)
		}
		return nil, err
	}
	if h.fortran && len(h.shape) > 1 {
		data = toCOrder(data, h.shape)
	}
	a := &Array{DType: h.dtype, Shape: h.shape, data: data}
	if o.pick != nil { // Fortran order: rows are not contiguous
		if len(h.shape) == 0 {
			return nil, errScalarRows
		}
		rows, err := o.pick(h.shape[0])
		if err != nil {
			return nil, err
		}
		return a.Take(rows)
	}
	return a, nil
}

var errScalarRows = errors.New("the array is 0-d (a scalar) and has no rows")

// readRows reads a C-order array's data keeping only the given rows
// (ascending, distinct), and reads past the others.
func readRows(r io.Reader, h *header, pick func(int) ([]int, error)) (*Array, error) {
	if len(h.shape) == 0 {
		return nil, errScalarRows
	}
	rows, err := pick(h.shape[0])
	if err != nil {
		return nil, err
	}
	rowElems := 1
	for _, d := range h.shape[1:] {
		rowElems *= d // numElements has bounded the product
	}
	rowBytes := int64(rowElems) * int64(h.dtype.ItemSize())
	want := int64(h.shape[0]) * rowBytes
	buf := make([]byte, int64(len(rows))*rowBytes)
	var pos, got int64 // rows and bytes consumed
	skip := func(to int64) error {
		k, err := io.CopyN(io.Discard, r, (to-pos)*rowBytes)
		got += k
		pos = to
		return err
	}
	for i, row := range rows {
		if row < int(pos) {
			return nil, fmt.Errorf("dataset: rows to keep must ascend (row %d after %d)", row, pos-1)
		}
		if err := skip(int64(row)); err != nil {
			return nil, readErr(err, h, want, got)
		}
		k, err := io.ReadFull(r, buf[int64(i)*rowBytes:int64(i+1)*rowBytes])
		got += int64(k)
		pos++
		if err != nil {
			return nil, readErr(err, h, want, got)
		}
	}
	if err := skip(int64(h.shape[0])); err != nil {
		return nil, readErr(err, h, want, got)
	}
	data, _, err := readData(bytes.NewReader(buf), h.dtype, h.order, len(rows)*rowElems, true)
	if err != nil {
		return nil, err
	}
	shape := slices.Clone(h.shape)
	shape[0] = len(rows)
	return &Array{DType: h.dtype, Shape: shape, data: data}, nil
}

// readErr turns running out of input into a truncation error.
func readErr(err error, h *header, want, got int64) error {
	if isEOF(err) {
		return truncData(h, want, got)
	}
	return err
}

// isEOF tells running out of input (truncation) from a failing reader.
func isEOF(err error) bool { return err == io.EOF || err == io.ErrUnexpectedEOF }

func truncData(h *header, want, got int64) error {
	return fmt.Errorf("%w data: shape %v of %v needs %d bytes, found %d", ErrTruncated, h.shape, h.dtype, want, got)
}

func readHeader(r io.Reader) (*header, error) {
	var pre [10]byte
	n, err := io.ReadFull(r, pre[:8])
	if err != nil && !isEOF(err) {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: input is empty", ErrNotNPY)
	}
	if m := min(n, 6); string(pre[:m]) != npyMagic[:m] {
		return nil, fmt.Errorf("%w: bad magic %q (want \"\\x93NUMPY\")", ErrNotNPY, pre[:m])
	}
	if err != nil {
		return nil, fmt.Errorf("%w header: input ends after %d bytes", ErrTruncated, n)
	}
	major, minor := pre[6], pre[7]
	var hlen int
	var prefix int
	switch major {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return nil, fmt.Errorf("%w header: ends inside the header length", ErrTruncated)
		}
		hlen = int(binary.LittleEndian.Uint16(pre[8:10]))
		prefix = 10
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, fmt.Errorf("%w header: ends inside the header length", ErrTruncated)
		}
		n := binary.LittleEndian.Uint32(l[:])
		if n > MaxHeaderLen {
			return nil, fmt.Errorf("%w: header length %d exceeds the limit of %d bytes", ErrHeader, n, MaxHeaderLen)
		}
		hlen = int(n)
		prefix = 12
	default:
		return nil, fmt.Errorf("%w .npy format version %d.%d (known: 1.0, 2.0, 3.0)", ErrUnsupported, major, minor)
	}
	buf := make([]byte, hlen)
	if n, err := io.ReadFull(r, buf); err != nil {
		if !isEOF(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w header: declared %d bytes, found %d", ErrTruncated, hlen, n)
	}
	h, err := parseHeader(buf)
	if err != nil {
		return nil, err
	}
	h.size = prefix + hlen
	return h, nil
}

// parseHeader decodes the Python dict literal of an .npy header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// It accepts exactly the three keys NumPy writes, in any order.
func parseHeader(b []byte) (*header, error) {
	p := &pyParser{s: string(b)}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s in %q", ErrHeader, fmt.Sprintf(format, args...), clip(p.s))
	}
	h := &header{}
	seen := map[string]bool{}
	if !p.eat('{') {
		return nil, bad("want '{'")
	}
	for !p.eat('}') {
		key, ok := p.str()
		if !ok {
			return nil, bad("want a quoted key at offset %d", p.i)
		}
		if seen[key] {
			return nil, bad("key %q repeated", key)
		}
		seen[key] = true
		if !p.eat(':') {
			return nil, bad("want ':' after %q", key)
		}
		switch key {
		case "descr":
			if p.peek() == '[' || p.peek() == '{' {
				return nil, fmt.Errorf("%w dtype: structured arrays (descr is a list of fields) are not supported", ErrUnsupported)
			}
			s, ok := p.str()
			if !ok {
				return nil, bad("descr is not a string")
			}
			d, order, err := parseDescr(s)
			if err != nil {
				return nil, err
			}
			h.dtype, h.order = d, order
		case "fortran_order":
			switch {
			case p.word("True"):
				h.fortran = true
			case p.word("False"):
			default:
				return nil, bad("fortran_order is not True or False")
			}
		case "shape":
			shape, ok := p.tuple()
			if !ok {
				return nil, bad("shape is not a tuple of non-negative integers")
			}
			h.shape = shape
		default:
			return nil, bad("unexpected key %q", key)
		}
		if !p.eat(',') {
			if !p.eat('}') {
				return nil, bad("want ',' or '}' at offset %d", p.i)
			}
			break
		}
	}
	p.space()
	if p.i != len(p.s) {
		return nil, bad("trailing text after '}'")
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return nil, bad("missing key %q", k)
		}
	}
	return h, nil
}

// parseDescr maps a NumPy type string such as '<f4' or '|b1' to a DType.
func parseDescr(s string) (DType, binary.ByteOrder, error) {
	unsupported := func(why string) (DType, binary.ByteOrder, error) {
		return Invalid, nil, fmt.Errorf("%w dtype: descr %q%s; supported: bool, uint8, int32, int64, float16, float32, float64", ErrUnsupported, s, why)
	}
	if len(s) < 2 {
		return unsupported("")
	}
	var order binary.ByteOrder
	rest := s
	switch s[0] {
	case '<':
		order, rest = binary.LittleEndian, s[1:]
	case '>':
		order, rest = binary.BigEndian, s[1:]
	case '=':
		order, rest = binary.NativeEndian, s[1:]
	case '|':
		rest = s[1:]
	}
	if rest == "?" {
		rest = "b1"
	}
	if len(rest) < 1 {
		return unsupported("")
	}
	kind := rest[0]
	if kind == 'O' {
		return unsupported(" (object arrays hold pickled Python objects)")
	}
	size, err := strconv.Atoi(rest[1:])
	if err != nil {
		return unsupported("")
	}
	d := kindSize(kind, size)
	if d == Invalid {
		return unsupported("")
	}
	if size > 1 && order == nil {
		return Invalid, nil, fmt.Errorf("%w: descr %q has no byte order for a %d-byte type", ErrHeader, s, size)
	}
	if order == nil {
		order = binary.LittleEndian // one-byte types: order is moot
	}
	return d, order, nil
}

func clip(s string) string {
	s = strings.TrimRight(s, " \n")
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// pyParser reads the small subset of Python literals found in .npy headers.
type pyParser struct {
	s string
	i int
}

func (p *pyParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pyParser) peek() byte {
	p.space()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *pyParser) eat(c byte) bool {
	if p.peek() == c && c != 0 {
		p.i++
		return true
	}
	return false
}

func (p *pyParser) word(w string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], w) {
		p.i += len(w)
		return true
	}
	return false
}

// str reads a '...' or "..." literal; a backslash keeps the next byte.
func (p *pyParser) str() (string, bool) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", false
	}
	var sb strings.Builder
	for j := p.i + 1; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == q:
			p.i = j + 1
			return sb.String(), true
		case c == '\\' && j+1 < len(p.s):
			j++
			sb.WriteByte(p.s[j])
		default:
			sb.WriteByte(c)
		}
	}
	return "", false
}

// tuple reads (), (n,) or (n, m, ...); Python 2's long suffix 'L' is allowed.
// (5) without a comma is an int in Python, not a tuple, and is rejected.
func (p *pyParser) tuple() ([]int, bool) {
	if !p.eat('(') {
		return nil, false
	}
	shape := []int{}
	comma := false
	for !p.eat(')') {
		if len(shape) > 0 && !comma {
			return nil, false
		}
		p.space()
		j := p.i
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		if j == p.i || j-p.i > 18 { // 18 digits always fit in an int64
			return nil, false
		}
		v, err := strconv.Atoi(p.s[p.i:j])
		if err != nil {
			return nil, false
		}
		p.i = j
		if p.i < len(p.s) && p.s[p.i] == 'L' {
			p.i++
		}
		shape = append(shape, v)
		comma = p.eat(',')
	}
	if len(shape) == 1 && !comma {
		return nil, false
	}
	return shape, true
}

// readData reads n elements of type d in byte order order. When exact is set
// the caller has checked that the bytes are there, so the slice is allocated
// at once; otherwise it grows as data arrives, bounding the memory a lying
// header can claim. got counts the bytes read before an error.
func readData(r io.Reader, d DType, order binary.ByteOrder, n int, exact bool) (data any, got int64, err error) {
	switch d {
	case Bool:
		return readElems(r, n, 1, exact, order, func(dst []bool, b []byte) {
			for i := range dst {
				dst[i] = b[i] != 0
			}
		})
	case Uint8:
		return readElems(r, n, 1, exact, order, func(dst []uint8, b []byte) { copy(dst, b) })
	case Int32:
		return readElems(r, n, 4, exact, order, func(dst []int32, b []byte) {
			for i := range dst {
				dst[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
			}
		})
	case Int64:
		return readElems(r, n, 8, exact, order, func(dst []int64, b []byte) {
			for i := range dst {
				dst[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
			}
		})
	case Float16:
		return readElems(r, n, 2, exact, order, func(dst []uint16, b []byte) {
			for i := range dst {
				dst[i] = binary.LittleEndian.Uint16(b[2*i:])
			}
		})
	case Float32:
		return readElems(r, n, 4, exact, order, func(dst []float32, b []byte) {
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		})
	case Float64:
		return readElems(r, n, 8, exact, order, func(dst []float64, b []byte) {
			for i := range dst {
				dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
			}
		})
	}
	return nil, 0, fmt.Errorf("%w dtype %v", ErrUnsupported, d)
}

const chunkBytes = 1 << 16

// readElems reads n elements of size bytes in chunks; big-endian chunks are
// byte-swapped first so that dec only ever decodes little-endian bytes.
func readElems[T any](r io.Reader, n, size int, exact bool, order binary.ByteOrder, dec func([]T, []byte)) (any, int64, error) {
	// With the size known the slice is allocated once: growing it as data
	// arrives held several copies at a time (a 627 MB array took 2.2 GB).
	capacity := min(n, chunkBytes)
	if exact {
		capacity = n
	}
	out := make([]T, 0, capacity)
	buf := make([]byte, min(n*size, chunkBytes/size*size))
	for len(out) < n {
		k := min(n-len(out), len(buf)/size)
		m, err := io.ReadFull(r, buf[:k*size])
		whole := m / size
		if order == binary.BigEndian && size > 1 {
			swap(buf[:whole*size], size)
		}
		start := len(out)
		if cap(out)-start < whole {
			out = append(out, make([]T, whole)...)
		} else {
			out = out[:start+whole]
		}
		dec(out[start:], buf[:whole*size])
		if err != nil {
			return nil, int64(start+whole)*int64(size) + int64(m%size), err
		}
	}
	return out, int64(n) * int64(size), nil
}

// swap reverses the bytes of each size-byte element of b in place.
func swap(b []byte, size int) {
	for i := 0; i+size <= len(b); i += size {
		e := b[i : i+size]
		for l, h := 0, size-1; l < h; l, h = l+1, h-1 {
			e[l], e[h] = e[h], e[l]
		}
	}
}

// toCOrder converts Fortran-ordered (column-major) data of the given shape
// into C (row-major) order.
func toCOrder(data any, shape []int) any {
	switch s := data.(type) {
	case []bool:
		return transpose(s, shape)
	case []uint8:
		return transpose(s, shape)
	case []int32:
		return transpose(s, shape)
	case []int64:
		return transpose(s, shape)
	case []uint16:
		return transpose(s, shape)
	case []float32:
		return transpose(s, shape)
	case []float64:
		return transpose(s, shape)
	}
	return data
}

func transpose[T any](src []T, shape []int) []T {
	dst := make([]T, len(src))
	if len(src) == 0 {
		return dst
	}
	k := len(shape)
	// In Fortran order axis 0 varies fastest: its stride is 1.
	stride := make([]int, k)
	s := 1
	for ax := range k {
		stride[ax] = s
		s *= shape[ax]
	}
	idx := make([]int, k)
	off := 0
	for n := range dst {
		dst[n] = src[off]
		for ax := k - 1; ax >= 0; ax-- {
			idx[ax]++
			off += stride[ax]
			if idx[ax] < shape[ax] {
				break
			}
			off -= stride[ax] * shape[ax]
			idx[ax] = 0
		}
	}
	return dst
}
