package onnxio

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// FuzzDecode feeds arbitrary bytes to Decode and, when they decode, runs
// everything that reads a model: Validate, InferShapes (with and without
// value_info), the index, tensor decoding, Encode and a second Decode. None
// of it may panic. Run it with
//
//	go test -fuzz=FuzzDecode ./onnxio
//
// The seed corpus is testdata/fuzz/FuzzDecode (small models and the crashers
// found so far) plus the small models in testdata.
//
// Decoded models have no directory, so external data would resolve against
// the working directory (the package directory under go test); the body
// points Dir at a temporary directory holding only a copy of
// testdata/external.data, so that fuzzed references read that file and
// nothing else.
func FuzzDecode(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.onnx"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) <= 16<<10 {
			f.Add(b)
		}
	}
	// Hand-built graphs reach what the exports do not: subgraphs, shape
	// arithmetic, external data references.
	models := []*Model{subgraphModel(), fuzzShapeModel()}
	for _, g := range malformedGraphs() {
		models = append(models, g.model(13))
	}
	for _, m := range models {
		if b, err := proto.Marshal(m.Proto); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	data, err := os.ReadFile(filepath.Join("testdata", "external.data"))
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "external.data"), data, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if m != nil {
				t.Fatal("Decode returned a model and an error")
			}
			return
		}
		m.Dir = dir
		exercise(m)
		out, err := m.Encode()
		if err != nil {
			return
		}
		m2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decoding an encoded model: %v", err)
		}
		m2.Dir = dir
		// Encoding is a fixed point once the model has been through the
		// schema.
		out2, err := m2.Encode()
		if err != nil {
			t.Fatalf("second Encode: %v", err)
		}
		if string(out2) != string(out) {
			t.Fatal("Encode(Decode(Encode(m))) differs from Encode(m)")
		}
	})
}

// fuzzShapeModel strings together the ops whose inference folds values.
func fuzzShapeModel() *Model {
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Shape", "shape", ins("x"), outs("s")),
			node("Gather", "gather", ins("s", "zero"), outs("g")),
			node("Unsqueeze", "unsq", ins("g", "ax0"), outs("u")),
			node("Concat", "concat", ins("u", "minus1"), outs("c"), aInt("axis", 0)),
			node("Reshape", "reshape", ins("x", "c"), outs("r")),
			node("Split", "split", ins("r", "sp"), outs("p", "q"), aInt("axis", 1)),
			node("Where", "where", ins("cond", "p", "q"), outs("w")),
			node("Slice", "slice", ins("s", "st", "en", "ax0", "step"), outs("sl")),
			node("Range", "range", ins("zero", "g", "one"), outs("rg")),
			node("Pad", "pad", ins("w", "pads"), outs("pd")),
			node("Mod", "mod", ins("s", "two"), outs("md")),
			node("Expand", "expand", ins("pd", "s2"), outs("e")),
			node("Conv", "conv", ins("img", "wt", "bias"), outs("cv"), aInts("pads", 1, 1, 1, 1), aInt("group", 1)),
			node("BatchNormalization", "bn", ins("cv", "bias", "bias", "bias", "bias"), outs("bn")),
			node("MaxPool", "pool", ins("bn"), outs("mp"), aInts("kernel_shape", 2, 2), aInt("ceil_mode", 1)),
			node("Flatten", "flat", ins("mp"), outs("fl")),
			node("Gemm", "gemm", ins("fl", "gw"), outs("gm"), aInt("transB", 1)),
			node("Transpose", "tr", ins("gm"), outs("t")),
			node("MatMul", "mm", ins("t", "gm"), outs("mm2")),
			node("ReduceMean", "rm", ins("mm2"), outs("y"), aInts("axes", -1)),
		},
		inputs: []*onnxpb.ValueInfoProto{vi("x", -1, 3, 4), viT("cond", Bool, 1), vi("img", 1, 2, 4, 4)},
		inits: []*onnxpb.TensorProto{i64scalar("zero", 0), i64scalar("one", 1), i64scalar("two", 2), i64s("ax0", 0),
			i64s("minus1", -1), i64s("sp", 5, 7), i64s("st", -1), i64s("en", -9), i64s("step", -1),
			i64s("pads", 0, 1, 0, 2), i64s("s2", 2, 1, 1), zeros("wt", 3, 2, 3, 3), zeros("bias", 3), zeros("gw", 5, 12)},
		outputs: []*onnxpb.ValueInfoProto{vi("y", 5, 1), vi("e", -1, -1, -1)},
		vinfo:   []*onnxpb.ValueInfoProto{vi("r", -1, 12), vi("stale", 1)},
	}
	return g.model(13)
}
