package dataset

import "errors"

// Sentinel errors, for errors.Is. Returned errors wrap one of them and add
// the file, the zip member and the details.
var (
	// ErrNotNPY: the data does not start with the .npy magic "\x93NUMPY".
	ErrNotNPY = errors.New("not an .npy file")
	// ErrNotZip: an .npz path that is not a zip archive.
	ErrNotZip = errors.New("not a zip archive")
	// ErrHeader: the .npy header is malformed or longer than MaxHeaderLen.
	ErrHeader = errors.New("malformed .npy header")
	// ErrTruncated: the file ends before the header or the data does.
	ErrTruncated = errors.New("truncated")
	// ErrUnsupported: a dtype this package does not hold (strings, objects,
	// structured, int8, complex...), or an unsupported .npy version.
	ErrUnsupported = errors.New("unsupported")
)
