// Package inputfile opens the files onnx-cria reads (models, external data,
// .npy and .npz data) so that only regular files are read: a named pipe
// would block the open or the read forever, and a device such as /dev/zero
// never ends. The check is made on the opened descriptor, after symlinks are
// followed, so a file swapped between a check and the open cannot slip by.
package inputfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Open opens path for reading and returns it with its size, or an error
// naming path if it is not a regular file. A named pipe is opened without
// blocking (O_NONBLOCK), so that it is refused rather than waited on.
func Open(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if err := Regular(path, st.Mode()); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// Regular returns nil for a regular file's mode and otherwise an error that
// names path and says what it is.
func Regular(path string, mode fs.FileMode) error {
	if mode.IsRegular() {
		return nil
	}
	if mode.IsDir() {
		return fmt.Errorf("%s: is a directory: give the path of a file in it", path)
	}
	return fmt.Errorf("%s: is %s, not a regular file: onnx-cria reads only regular files; save the content to a file and give its path", path, Kind(mode))
}

// Kind says in words what a file that is not regular is.
func Kind(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file"
}

// ReadAll reads the regular file at path whole, refusing files larger than
// limit bytes before reading them. what names the kind of file in the
// error ("model", "data"); why says where the limit comes from.
func ReadAll(path string, limit int64, what, why string) ([]byte, error) {
	f, size, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > limit {
		return nil, fmt.Errorf("%s: %s file is %d bytes, over %s", path, what, size, why)
	}
	// The file may grow while it is read: read at most limit+1 bytes.
	b := make([]byte, 0, size+1)
	b, err = readUpTo(f, b, limit+1)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %s file grew past %d bytes while it was read (%s)", path, what, limit, why)
	}
	return b, nil
}

// readUpTo appends from r to b until EOF or until b holds n bytes.
func readUpTo(r io.Reader, b []byte, n int64) ([]byte, error) {
	lr := io.LimitReader(r, n-int64(len(b)))
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		k, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+k]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
