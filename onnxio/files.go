package onnxio

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/onnx-cria/onnx-cria/internal/inputfile"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// ExternalFiles lists the distinct files that m's external tensors are read
// from, joined to m.Dir, in sorted order. Callers that write files use it to
// make sure they never write over data a model still reads.
func (m *Model) ExternalFiles() ([]string, error) {
	seen := map[string]bool{}
	var err error
	walkTensors(m.Proto, func(t *onnxpb.TensorProto) {
		if err != nil || t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return
		}
		var p string
		if p, _, _, err = m.externalRef(t); err == nil {
			seen[p] = true
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// HashFile is the hex SHA-256 of a file's bytes, as Model.Hash is of the
// bytes a model was decoded from.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CheckExternalData checks that every external tensor's bytes are where
// its reference says: the file exists inside the model's directory, is a
// regular file, and holds the tensor's bytes at its offset. It reads no
// tensor data.
func (m *Model) CheckExternalData() error {
	sizes := map[string]int64{}
	var errs ErrorList
	seen := map[*onnxpb.TensorProto]bool{}
	walkTensors(m.Proto, func(t *onnxpb.TensorProto) {
		if seen[t] || t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return
		}
		seen[t] = true
		p, offset, length, err := m.externalRef(t)
		if err != nil {
			errs.Add(&Error{Msg: err.Error()}) // it names the tensor
			return
		}
		size, ok := sizes[p]
		if !ok {
			f, n, err := inputfile.Open(p)
			if err != nil {
				errs.Add(&Error{Tensor: t.GetName(), Msg: fmt.Sprintf("external data: %v", err)})
				return
			}
			f.Close()
			size, sizes[p] = n, n
		}
		want := numBytes(t.GetDims(), DataType(t.GetDataType()).Size())
		if length < 0 {
			length = size - offset
		}
		switch {
		case offset > size || length < 0 || length > size-offset:
			errs.Add(&Error{Tensor: t.GetName(), Msg: fmt.Sprintf("external data %s holds %d bytes, the tensor wants %d at offset %d", p, size, length, offset)})
		case want >= 0 && DataType(t.GetDataType()).Size() > 0 && length != want:
			errs.Add(&Error{Tensor: t.GetName(), Msg: fmt.Sprintf("external data length %d, dims %v of %s need %d", length, t.GetDims(), DataType(t.GetDataType()), want)})
		}
	})
	return errs.Err()
}

// DiskBytes is the size on disk of the model as loaded: the model file
// (Size) plus every external data file it reads, so that two models compare
// like with like whether their weights are inline or not.
func (m *Model) DiskBytes() (int64, error) {
	files, err := m.ExternalFiles()
	if err != nil {
		return 0, err
	}
	total := m.Size
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return 0, err
		}
		total += st.Size()
	}
	return total, nil
}

// EncodedBytes is about what m takes once saved: its serialized size with
// tensors inline, counting external tensors by their length, computed
// without reading or encoding any tensor data.
func (m *Model) EncodedBytes() int64 {
	total := int64(proto.Size(m.Proto))
	seen := map[*onnxpb.TensorProto]bool{}
	walkTensors(m.Proto, func(t *onnxpb.TensorProto) {
		if seen[t] || t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return
		}
		seen[t] = true
		if n := numBytes(t.GetDims(), DataType(t.GetDataType()).Size()); n > 0 {
			total += n
		}
	})
	return total
}

// FileBytes is DiskBytes of the model saved at path.
func FileBytes(path string) (int64, error) {
	m, err := Load(path)
	if err != nil {
		return 0, err
	}
	return m.DiskBytes()
}
