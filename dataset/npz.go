package dataset

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// LoadNPZ reads every array of the .npz archive at path, stored
// (np.savez) or deflate-compressed (np.savez_compressed). A member "x.npy"
// becomes the array "x"; arrays keep the archive's order. Members whose name
// does not end in ".npy" are not arrays and are skipped, as are directories.
func LoadNPZ(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	s, err := ReadNPZ(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Path = path
	return s, nil
}

// ReadNPZ reads the arrays of an .npz archive of the given size from r.
// The returned Set has an empty Path.
func ReadNPZ(r io.ReaderAt, size int64) (*Set, error) {
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
		a, err := readMember(zf)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", zf.Name, err)
		}
		a.Name = name
		s.Arrays = append(s.Arrays, a)
	}
	return s, nil
}

func readMember(zf *zip.File) (*Array, error) {
	rc, err := zf.Open()
	if err != nil {
		if errors.Is(err, zip.ErrAlgorithm) {
			return nil, fmt.Errorf("%w zip compression method %d (only stored and deflate)", ErrUnsupported, zf.Method)
		}
		return nil, err
	}
	defer rc.Close()
	a, err := readNPY(bufio.NewReaderSize(rc, 1<<16), int64(min(zf.UncompressedSize64, 1<<62)))
	if err != nil {
		return nil, err
	}
	// Reading to the end makes archive/zip verify the member's CRC-32.
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
// named after the file.
func Load(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var magic [6]byte
	n, _ := io.ReadFull(f, magic[:])
	f.Close()
	switch {
	case n >= 4 && string(magic[:2]) == "PK":
		return LoadNPZ(path)
	case n == 6 && string(magic[:]) == npyMagic:
		a, err := LoadNPY(path)
		if err != nil {
			return nil, err
		}
		return &Set{Path: path, Arrays: []*Array{a}}, nil
	}
	return nil, fmt.Errorf("%s: %w nor an .npz archive (starts with %q)", path, ErrNotNPY, magic[:n])
}
