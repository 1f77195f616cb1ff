package onnxio

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Small builders for hand-made graphs. They keep the tests readable: a graph
// is a list of nodes plus typed inputs, outputs and initializers.

func node(op, name string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{
		OpType: proto.String(op), Name: proto.String(name),
		Input: inputs, Output: outputs, Attribute: attrs,
	}
}

func ins(names ...string) []string  { return names }
func outs(names ...string) []string { return names }

func aInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func aInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func aFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func aFloats(name string, v ...float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOATS.Enum(), Floats: v}
}

func aString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

func aTensor(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: t}
}

func aGraph(name string, g *onnxpb.GraphProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: g}
}

// vi declares a float tensor; -1 dims become the symbol "N".
func vi(name string, dims ...int64) *onnxpb.ValueInfoProto {
	return viT(name, Float, dims...)
}

func viT(name string, dt DataType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := make([]Dim, len(dims))
	for k, d := range dims {
		if d < 0 {
			shape[k] = Dim{Param: "N"}
		} else {
			shape[k] = Dim{Value: d, Known: true}
		}
	}
	return NewValueInfo(name, dt, shape)
}

// zeros is a float32 initializer of the given dims.
func zeros(name string, dims ...int64) *onnxpb.TensorProto {
	n := NumElements(dims)
	t, err := NewTensor(name, Float, dims, make([]byte, 4*n))
	if err != nil {
		panic(err)
	}
	return t
}

func i64s(name string, vals ...int64) *onnxpb.TensorProto {
	return NewInt64Tensor(name, []int64{int64(len(vals))}, vals)
}

func i64scalar(name string, v int64) *onnxpb.TensorProto {
	return NewInt64Tensor(name, nil, []int64{v})
}

// graph assembles a graph.
type graph struct {
	nodes   []*onnxpb.NodeProto
	inputs  []*onnxpb.ValueInfoProto
	outputs []*onnxpb.ValueInfoProto
	inits   []*onnxpb.TensorProto
	vinfo   []*onnxpb.ValueInfoProto
}

func (g graph) proto(name string) *onnxpb.GraphProto {
	return &onnxpb.GraphProto{
		Name: proto.String(name), Node: g.nodes, Input: g.inputs, Output: g.outputs,
		Initializer: g.inits, ValueInfo: g.vinfo,
	}
}

// model wraps a graph in a model importing the default opset at version opset.
func (g graph) model(opset int64) *Model {
	return &Model{Proto: &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:       g.proto("test"),
	}}
}

// testModels lists the .onnx files under onnxio/testdata and, when present,
// the repository's trained fixtures under testdata/models.
func testModels(t *testing.T) (local, fixtures []string) {
	t.Helper()
	local, err := filepath.Glob(filepath.Join("testdata", "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if len(local) == 0 {
		t.Fatal("no models in onnxio/testdata: run testdata/make_models.py")
	}
	root := filepath.Join("..", "testdata")
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == root {
				return filepath.SkipDir
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".onnx") {
			fixtures = append(fixtures, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(fixtures)
	return local, fixtures
}

func mustLoad(t testing.TB, path string) *Model {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dirEntries lists the names in dir, sorted.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}
