package dataset

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/onnx-cria/onnx-cria/internal/inputfile"
)

// LoadNPZ reads every array of the .npz archive at path, stored
// (np.savez) or deflate-compressed (np.savez_compressed). A member "x.npy"
// becomes the array "x"; arrays keep the archive's order. Members whose name
// does not end in ".npy" are not arrays and are skipped, as are directories.
// Only regular files are read.
func LoadNPZ(path string) (*Set, error) {
	f, size, err := inputfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return loadNPZ(f, size, path, nil)
}

func loadNPZ(r io.ReaderAt, size int64, path string, pick *pickRows) (*Set, error) {
	s, err := readNPZ(r, size, pick)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Path = path
	return s, nil
}

// ReadNPZ reads the arrays of an .npz archive of the given size from r.
// The returned Set has an empty Path.
//
// What a member may decompress to is bounded before it is read: its
// declared size must be what its .npy header needs, and no more than its
// compressed size allows (deflate expands at most 1032 times), so a small
// archive cannot make the reader allocate or inflate more than its arrays
// hold.
func ReadNPZ(r io.ReaderAt, size int64) (*Set, error) {
	return readNPZ(r, size, nil)
}

func readNPZ(r io.ReaderAt, size int64, pick *pickRows) (*Set, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		if errors.Is(err, zip.ErrFormat) {
			return nil, fmt.Errorf("%w (an .npz is a zip of .npy files): %v", ErrNotZip, err)
		}
		return nil, err
	}
	s := &Set{}
	seen := map[string]bool{}
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() || !strings.HasSuffix(zf.Name, ".npy") {
			continue
		}
		name := strings.TrimSuffix(zf.Name, ".npy")
		if seen[name] {
			return nil, fmt.Errorf("member %q: %w: the archive holds two arrays named %q", zf.Name, ErrHeader, name)
		}
		seen[name] = true
		a, err := readMember(zf, size, pick.named(name))
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", zf.Name, err)
		}
		a.Name = name
		s.Arrays = append(s.Arrays, a)
	}
	if pick != nil && len(s.Arrays) == 0 {
		return nil, errNoArrays
	}
	return s, nil
}

// maxDeflateRatio is the most deflate can expand: a 258-byte match in as
// little as two bits.
const maxDeflateRatio = 1032

func readMember(zf *zip.File, archive int64, pick func(int) ([]int, error)) (*Array, error) {
	c, u := zf.CompressedSize64, zf.UncompressedSize64
	switch {
	case c > uint64(archive):
		return nil, fmt.Errorf("%w: member declares %d compressed bytes in an archive of %d", zip.ErrFormat, c, archive)
	case zf.Method == zip.Store && u != c:
		return nil, fmt.Errorf("%w: stored member declares %d bytes but holds %d", zip.ErrFormat, u, c)
	case zf.Method == zip.Deflate && u/maxDeflateRatio > c:
		return nil, fmt.Errorf("%w: member declares %d bytes uncompressed from %d compressed, more than deflate can expand", zip.ErrFormat, u, c)
	}
	rc, err := zf.Open()
	if err != nil {
		if errors.Is(err, zip.ErrAlgorithm) {
			return nil, fmt.Errorf("%w zip compression method %d (only stored and deflate)", ErrUnsupported, zf.Method)
		}
		return nil, err
	}
	defer rc.Close()
	a, err := readNPY(bufio.NewReaderSize(rc, 1<<16), readOpts{hint: int64(min(u, 1<<62)), whole: true, pick: pick})
	if err != nil {
		return nil, err
	}
	// Reading to the end makes archive/zip verify the member's CRC-32; the
	// declared size has been checked to end with the array.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return nil, err
	}
	return a, nil
}

// zipTime is the modification time written for members: fixed, so that the
// same arrays always give the same bytes (it is the zip epoch).
var zipTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// WriteNPZ writes the arrays as a deflate-compressed .npz archive, as
// np.savez_compressed does, with members named after the arrays plus ".npy".
// Names must be non-empty and distinct.
func WriteNPZ(w io.Writer, arrays ...*Array) error {
	return writeNPZ(w, zip.Deflate, arrays)
}

// WriteNPZStored writes the arrays as an uncompressed .npz archive, as np.savez does.
func WriteNPZStored(w io.Writer, arrays ...*Array) error {
	return writeNPZ(w, zip.Store, arrays)
}

// SaveNPZ writes the arrays to path as a compressed .npz archive, through a
// temporary file that is renamed into place on success.
func SaveNPZ(path string, arrays ...*Array) error {
	if err := checkNPZ(arrays); err != nil {
		return err
	}
	return writeAtomic(path, func(w io.Writer) error { return WriteNPZ(w, arrays...) })
}

func checkNPZ(arrays []*Array) error {
	seen := map[string]bool{}
	for _, a := range arrays {
		if err := checkWritable(a); err != nil {
			return err
		}
		if a.Name == "" {
			return fmt.Errorf("dataset: an array written to an .npz needs a name")
		}
		if seen[a.Name] {
			return fmt.Errorf("dataset: two arrays named %q", a.Name)
		}
		seen[a.Name] = true
	}
	return nil
}

func writeNPZ(w io.Writer, method uint16, arrays []*Array) error {
	if err := checkNPZ(arrays); err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	for _, a := range arrays {
		mw, err := zw.CreateHeader(&zip.FileHeader{Name: a.Name + ".npy", Method: method, Modified: zipTime})
		if err != nil {
			return err
		}
		if err := WriteNPY(mw, a); err != nil {
			return err
		}
	}
	return zw.Close()
}

// Load reads path as an .npz archive or a single .npy file, by its first
// bytes rather than its extension. An .npy file gives a Set of one array
// named after the file. Only regular files are read: a named pipe or a
// device is an error naming the path.
func Load(path string) (*Set, error) {
	return load(path, nil)
}

// LoadSubset returns what Load(path) followed by Subset(n, seed) returns,
// the same rows in the same order, without holding the rows it leaves out:
// they are read past, not kept, so memory follows n rather than the file.
func LoadSubset(path string, n int, seed int64) (*Set, error) {
	if n < 0 {
		return nil, fmt.Errorf("%s: subset of %d rows", path, n)
	}
	return load(path, &pickRows{n: n, seed: seed})
}

func load(path string, pick *pickRows) (*Set, error) {
	f, size, err := inputfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [6]byte
	n, _ := io.ReadFull(f, magic[:])
	switch {
	case n >= 4 && string(magic[:2]) == "PK":
		return loadNPZ(f, size, path, pick)
	case n == 6 && string(magic[:]) == npyMagic:
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		a, err := loadNPY(f, size, path, pick)
		if err != nil {
			return nil, err
		}
		return &Set{Path: path, Arrays: []*Array{a}}, nil
	}
	return nil, fmt.Errorf("%s: %w nor an .npz archive (starts with %q)", path, ErrNotNPY, magic[:n])
}

var errNoArrays = errors.New("holds no arrays")

// pickRows chooses the rows a subset keeps once the first array's row
// count is known, as Set.Subset does, and holds every later array to that
// count.
type pickRows struct {
	n     int
	seed  int64
	first string // first array's name; "" until it is read
	total int
	rows  []int
}

// named returns the chooser for the array name; nil for a nil p (no subset).
func (p *pickRows) named(name string) func(int) ([]int, error) {
	if p == nil {
		return nil
	}
	return func(total int) ([]int, error) {
		if p.first == "" {
			rows, err := SubsetIndices(total, p.n, p.seed)
			if err != nil {
				return nil, err
			}
			p.first, p.total, p.rows = name, total, rows
		} else if total != p.total {
			return nil, fmt.Errorf("array %q has %d rows (leading dimension), array %q has %d", name, total, p.first, p.total)
		}
		return p.rows, nil
	}
}
