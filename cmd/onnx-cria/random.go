package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

// randomCalibration makes n rows of random inputs: standard normal floats,
// token ids uniform over the vocabulary of the embedding they index, and
// all-ones attention masks.
func randomCalibration(m *onnxio.Model, n int, seed int64) (*dataset.Set, error) {
	g := m.Graph()
	ix := onnxio.NewIndex(g)
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	set := &dataset.Set{Path: "(random)"}
	for _, v := range g.GetInput() {
		if _, ok := ix.Init[v.GetName()]; ok {
			continue
		}
		dt, shape, ok := onnxio.TensorType(v)
		if !ok || shape == nil {
			return nil, fmt.Errorf("input %q: random calibration needs a tensor input of known rank", v.GetName())
		}
		dims := []int{n}
		size := n
		for k, d := range onnxio.StaticDims(shape) {
			if k == 0 {
				continue
			}
			if d < 0 {
				return nil, fmt.Errorf("input %q: dimension %d is not fixed; random calibration needs static sizes", v.GetName(), k)
			}
			dims = append(dims, int(d))
			size *= int(d)
		}
		var a *dataset.Array
		var err error
		switch {
		case dt == onnxio.Float:
			x := make([]float32, size)
			for k := range x {
				x[k] = float32(r.NormFloat64())
			}
			a, err = dataset.New(v.GetName(), dims, x)
		case dt == onnxio.Int64 && v.GetName() == "attention_mask":
			x := make([]int64, size)
			for k := range x {
				x[k] = 1
			}
			a, err = dataset.New(v.GetName(), dims, x)
		case dt == onnxio.Int64:
			vocab := int64(0)
			for _, c := range ix.Consumers[v.GetName()] {
				nd := ix.Node(c)
				if nd.GetOpType() == "Gather" && len(nd.Input) > 1 && nd.Input[1] == v.GetName() {
					if t := ix.Const(nd.Input[0]); t != nil && len(t.GetDims()) > 0 {
						vocab = t.GetDims()[0]
					}
				}
			}
			if vocab == 0 {
				return nil, fmt.Errorf("input %q: int64 input that indexes no embedding table; cannot make random values for it", v.GetName())
			}
			x := make([]int64, size)
			for k := range x {
				x[k] = r.Int64N(vocab)
			}
			a, err = dataset.New(v.GetName(), dims, x)
		default:
			return nil, fmt.Errorf("input %q: random calibration does not support %s inputs", v.GetName(), dt)
		}
		if err != nil {
			return nil, err
		}
		set.Arrays = append(set.Arrays, a)
	}
	return set, nil
}

func fileSHA(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
