package ort

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Small models built in Go for the tests; each builder is the model's only
// source.

// model wraps a graph into a model importing the given default-domain opset.
// Errors here are mistakes in the builders, hence panics.
func model(opset int64, g *onnxpb.GraphProto) *onnxio.Model {
	mp := &onnxpb.ModelProto{
		IrVersion:    ptr(int64(8)),
		ProducerName: ptr("onnx-cria runtime tests"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: ptr(""), Version: ptr(opset)}},
		Graph:        g,
	}
	m := &onnxio.Model{Proto: mp}
	b, err := m.Encode()
	if err != nil {
		panic(err)
	}
	// Decode so that the model is exactly what a file would give.
	if m, err = onnxio.Decode(b); err != nil {
		panic(err)
	}
	return m
}

func encode(t testing.TB, m *onnxio.Model) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeModel(m *onnxio.Model) []byte {
	b, err := m.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

// vi declares a tensor; -1 dims become the symbol "N".
func vi(name string, dt onnxio.DataType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := make([]onnxio.Dim, len(dims))
	for i, d := range dims {
		if d < 0 {
			shape[i] = onnxio.Dim{Param: "N"}
		} else {
			shape[i] = onnxio.Dim{Value: d, Known: true}
		}
	}
	return onnxio.NewValueInfo(name, dt, shape)
}

func node(op string, in, out []string) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{Name: ptr(out[0] + "_" + op), OpType: ptr(op), Input: in, Output: out}
}

func floatInit(name string, dims []int64, vals []float32) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	tp, err := onnxio.NewTensor(name, onnxio.Float, dims, raw)
	if err != nil {
		panic(err)
	}
	return tp
}

// mlpWeights are the weights of mlpModel: y = relu(x·W + b).
var (
	mlpW = []float32{
		0.5, -1, 0.25,
		1.5, 0.75, -0.5,
		-2, 0.125, 1,
		0.3, -0.7, 0.9,
	}
	mlpB = []float32{0.1, -0.2, 0.05}
)

// mlpModel: x[N,4] -MatMul W[4,3]-> xw -Add b[3]-> h -Relu-> y[N,3].
// xw and h are hidden.
func mlpModel() *onnxio.Model {
	g := &onnxpb.GraphProto{
		Name:        ptr("mlp"),
		Input:       []*onnxpb.ValueInfoProto{vi("x", onnxio.Float, -1, 4)},
		Output:      []*onnxpb.ValueInfoProto{vi("y", onnxio.Float, -1, 3)},
		Initializer: []*onnxpb.TensorProto{floatInit("W", []int64{4, 3}, mlpW), floatInit("b", []int64{3}, mlpB)},
		Node: []*onnxpb.NodeProto{
			node("MatMul", []string{"x", "W"}, []string{"xw"}),
			node("Add", []string{"xw", "b"}, []string{"h"}),
			node("Relu", []string{"h"}, []string{"y"}),
		},
	}
	return model(17, g)
}

// mlpExpect computes xw, h and y for x with n rows in Go.
func mlpExpect(x []float32, n int) (xw, h, y []float32) {
	xw = make([]float32, n*3)
	h = make([]float32, n*3)
	y = make([]float32, n*3)
	for r := 0; r < n; r++ {
		for c := 0; c < 3; c++ {
			var s float32
			for k := 0; k < 4; k++ {
				s += x[r*4+k] * mlpW[k*3+c]
			}
			xw[r*3+c] = s
			h[r*3+c] = s + mlpB[c]
			y[r*3+c] = max(h[r*3+c], 0)
		}
	}
	return xw, h, y
}

// gatherModel: rows = Gather(table[5,2] int64, idx[N] int64) -> [N,2] int64,
// with the hidden idx32 = Cast(idx, int32).
var gatherTable = []int64{10, 11, 20, 21, 30, 31, 40, 41, 50, 51}

func gatherModel() *onnxio.Model {
	cast := node("Cast", []string{"idx"}, []string{"idx32"})
	onnxio.SetAttrInt(cast, "to", int64(onnxio.Int32))
	g := &onnxpb.GraphProto{
		Name:        ptr("gather"),
		Input:       []*onnxpb.ValueInfoProto{vi("idx", onnxio.Int64, -1)},
		Output:      []*onnxpb.ValueInfoProto{vi("rows", onnxio.Int64, -1, 2)},
		Initializer: []*onnxpb.TensorProto{onnxio.NewInt64Tensor("table", []int64{5, 2}, gatherTable)},
		Node: []*onnxpb.NodeProto{
			node("Gather", []string{"table", "idx"}, []string{"rows"}),
			cast,
		},
	}
	return model(17, g)
}

// whereModel: out = Where(cond, a, b) over [N,3]; hidden gt = Greater(a, b)
// (bool) and nb = Not(cond).
func whereModel() *onnxio.Model {
	g := &onnxpb.GraphProto{
		Name: ptr("where"),
		Input: []*onnxpb.ValueInfoProto{
			vi("cond", onnxio.Bool, -1, 3), vi("a", onnxio.Float, -1, 3), vi("b", onnxio.Float, -1, 3),
		},
		Output: []*onnxpb.ValueInfoProto{vi("out", onnxio.Float, -1, 3)},
		Node: []*onnxpb.NodeProto{
			node("Where", []string{"cond", "a", "b"}, []string{"out"}),
			node("Greater", []string{"a", "b"}, []string{"gt"}),
			node("Not", []string{"cond"}, []string{"nb"}),
		},
	}
	return model(17, g)
}

// halfModel: y = x + x in float16 over [2,3]; total = ReduceSum(Cast(y,
// float)) is a scalar graph output; hidden xx = Mul(x, x) is float16.
func halfModel() *onnxio.Model {
	cast := node("Cast", []string{"y"}, []string{"yf"})
	onnxio.SetAttrInt(cast, "to", int64(onnxio.Float))
	sum := node("ReduceSum", []string{"yf"}, []string{"total"})
	onnxio.SetAttrInt(sum, "keepdims", 0)
	g := &onnxpb.GraphProto{
		Name:   ptr("half"),
		Input:  []*onnxpb.ValueInfoProto{vi("x", onnxio.Float16, 2, 3)},
		Output: []*onnxpb.ValueInfoProto{vi("y", onnxio.Float16, 2, 3), vi("total", onnxio.Float)},
		Node: []*onnxpb.NodeProto{
			node("Add", []string{"x", "x"}, []string{"y"}),
			node("Mul", []string{"x", "x"}, []string{"xx"}),
			cast, sum,
		},
	}
	return model(17, g)
}
