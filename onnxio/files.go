package onnxio

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
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
