// Package fmnist reads Fashion-MNIST from the IDX files that Debian's
// dataset-fashion-mnist package installs, as dataset arrays: "input",
// float32 [N, 1, 28, 28] with pixels divided by 255, and "labels", int64
// [N]. It serves tests, benchmarks and the recovery measurements; the
// product itself reads .npz files.
//
// An IDX file (optionally gzip-compressed) is two zero bytes, a type code
// (0x08: unsigned bytes), the number of dimensions, each dimension as a
// big-endian uint32, then the elements in row-major order.
package fmnist

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/onnx-cria/onnx-cria/dataset"
)

// DefaultDir is where dataset-fashion-mnist installs the files; the
// environment variable FMNIST_DIR overrides it.
const DefaultDir = "/usr/share/datasets/fashion-mnist"

// Dir returns $FMNIST_DIR or DefaultDir.
func Dir() string {
	if d := os.Getenv("FMNIST_DIR"); d != "" {
		return d
	}
	return DefaultDir
}

// Splits and their files.
var files = map[string][2]string{
	"train": {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"},
	"test":  {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"},
}

// ErrMissing is wrapped by Load when the files are not installed.
var ErrMissing = errors.New("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or set FMNIST_DIR)")

// Load reads a split ("train": 60000 images, "test": 10000) from dir.
func Load(dir, split string) (*dataset.Set, error) {
	f, ok := files[split]
	if !ok {
		return nil, fmt.Errorf("fmnist: unknown split %q (want train or test)", split)
	}
	imgPath, labPath := filepath.Join(dir, f[0]), filepath.Join(dir, f[1])
	for _, p := range []string{imgPath, labPath} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("fmnist: %s: %w", p, ErrMissing)
		}
	}
	img, idims, err := readIDX(imgPath)
	if err != nil {
		return nil, err
	}
	lab, ldims, err := readIDX(labPath)
	if err != nil {
		return nil, err
	}
	if len(idims) != 3 || len(ldims) != 1 || idims[0] != ldims[0] {
		return nil, fmt.Errorf("fmnist: %s has shape %v and %s %v; want [N, rows, cols] and [N]", imgPath, idims, labPath, ldims)
	}
	n, h, w := idims[0], idims[1], idims[2]
	x := make([]float32, len(img))
	for i, v := range img {
		x[i] = float32(v) / 255
	}
	y := make([]int64, len(lab))
	for i, v := range lab {
		y[i] = int64(v)
	}
	xa, err := dataset.New("input", []int{n, 1, h, w}, x)
	if err != nil {
		return nil, err
	}
	ya, err := dataset.New("labels", []int{n}, y)
	if err != nil {
		return nil, err
	}
	return &dataset.Set{Path: imgPath, Arrays: []*dataset.Array{xa, ya}}, nil
}

// LoadSubset reads a split and keeps n rows chosen by dataset.SubsetIndices
// with the seed (all rows when n <= 0 or n >= the split's size).
func LoadSubset(dir, split string, n int, seed int64) (*dataset.Set, error) {
	s, err := Load(dir, split)
	if err != nil || n <= 0 {
		return s, err
	}
	return s.Subset(n, seed)
}

// maxElems bounds what a corrupt header can make readIDX allocate.
const maxElems = 1 << 28

// readIDX reads an unsigned-byte IDX file, gzip-compressed or not.
func readIDX(path string) ([]byte, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("fmnist: %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, nil, fmt.Errorf("fmnist: %s: header: %w", path, err)
	}
	if head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] == 0 {
		return nil, nil, fmt.Errorf("fmnist: %s: not an unsigned-byte IDX file (header % x)", path, head)
	}
	dims := make([]int, head[3])
	total := 1
	for k := range dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, nil, fmt.Errorf("fmnist: %s: dimensions: %w", path, err)
		}
		dims[k] = int(d)
		if d == 0 || total > maxElems/int(d) {
			return nil, nil, fmt.Errorf("fmnist: %s: implausible shape %v", path, dims[:k+1])
		}
		total *= int(d)
	}
	data := make([]byte, total)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("fmnist: %s: %d elements expected: %w", path, total, err)
	}
	return data, dims, nil
}
