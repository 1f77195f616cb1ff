package onnxio_test

import (
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
	"google.golang.org/protobuf/proto"
)

// versionModel is y = BatchNormalization(Relu(x) + w) on [1, 4] float
// tensors, with the given IR version and default opset, edited by mut.
func versionModel(t *testing.T, ir, opset int64, mut func(*onnxpb.ModelProto)) *onnxio.Model {
	t.Helper()
	d := []onnxio.Dim{{Value: 1, Known: true}, {Value: 4, Known: true}}
	tensor := func(name string, dt onnxio.DataType, dims ...int64) *onnxpb.TensorProto {
		n := onnxio.NumElements(dims)
		tp, err := onnxio.NewTensor(name, dt, dims, make([]byte, n*int64(dt.Size())))
		if err != nil {
			t.Fatal(err)
		}
		return tp
	}
	node := func(op string, in []string, out string) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(strings.ToLower(op)), Input: in, Output: []string{out}}
	}
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(ir),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph: &onnxpb.GraphProto{
			Name: proto.String("g"),
			Node: []*onnxpb.NodeProto{
				node("Relu", []string{"x"}, "r"),
				node("Add", []string{"r", "w"}, "h"),
				node("BatchNormalization", []string{"h", "scale", "bias", "mean", "var"}, "y"),
			},
			Input:  []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("x", onnxio.Float, d)},
			Output: []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("y", onnxio.Float, d)},
			Initializer: []*onnxpb.TensorProto{
				tensor("w", onnxio.Float, 4), tensor("scale", onnxio.Float, 4), tensor("bias", onnxio.Float, 4),
				tensor("mean", onnxio.Float, 4), tensor("var", onnxio.Float, 4),
			},
		},
	}
	if mut != nil {
		mut(mp)
	}
	return &onnxio.Model{Proto: mp}
}

// initNamed returns the initializer called name in mp's graph.
func initNamed(mp *onnxpb.ModelProto, name string) *onnxpb.TensorProto {
	for _, t := range mp.Graph.Initializer {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// toHalf makes initializer name a float16 tensor of the same shape.
func toHalf(name string) func(*onnxpb.ModelProto) {
	return func(mp *onnxpb.ModelProto) {
		t := initNamed(mp, name)
		t.DataType = proto.Int32(int32(onnxio.Float16))
		if err := onnxio.SetRawData(t, t.Dims, make([]byte, 2*onnxio.NumElements(t.Dims))); err != nil {
			panic(err)
		}
	}
}

func addOpset(domain string, v int64) func(*onnxpb.ModelProto) {
	return func(mp *onnxpb.ModelProto) {
		mp.OpsetImport = append(mp.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(domain), Version: proto.Int64(v)})
	}
}

// TestValidateAgreesWithORT: the validator refuses the models that ONNX
// Runtime 1.30 refuses for their format version or element types, naming
// what is wrong, and accepts those at the edges of what it loads; each
// model is loaded in ORT to check the claim.
func TestValidateAgreesWithORT(t *testing.T) {
	if err := ort.Init(ort.Config{}); err != nil {
		t.Fatalf("this test loads models in ONNX Runtime; run scripts/setup-ort.sh first: %v", err)
	}
	d := []onnxio.Dim{{Value: 1, Known: true}, {Value: 4, Known: true}}
	cases := []struct {
		name string
		m    *onnxio.Model
		want string // a fragment of the error; "" for a valid model
	}{
		{"IR 13, opset 26", versionModel(t, onnxio.MaxIRVersion, 26, nil), ""},
		{"opset 7", versionModel(t, 8, 7, nil), ""},
		{"IR 14", versionModel(t, onnxio.MaxIRVersion+1, 13, nil), "ir_version 14"},
		{"IR 99", versionModel(t, 99, 13, nil), "ir_version 99"},
		{"opset 27", versionModel(t, 8, 27, nil), "ai.onnx version 27"},
		{"opset 99", versionModel(t, 8, 99, nil), "ai.onnx version 99"},
		{"ai.onnx.ml 5", versionModel(t, 8, 13, addOpset("ai.onnx.ml", 5)), ""},
		{"ai.onnx.ml 6", versionModel(t, 8, 13, addOpset("ai.onnx.ml", 6)), "ai.onnx.ml version 6"},
		{"com.microsoft 2", versionModel(t, 8, 13, addOpset("com.microsoft", 2)), "com.microsoft version 2"},
		{"custom domain 7", versionModel(t, 8, 13, addOpset("example.custom", 7)), ""},
		{"float16 initializer in Add", versionModel(t, 8, 13, toHalf("w")), `"w": element type float16, but input "r" is float32`},
		{"float16 BatchNorm scale, opset 14", versionModel(t, 8, 14, toHalf("scale")), `"scale": element type float16`},
		{"float16 BatchNorm scale and bias, opset 15", versionModel(t, 8, 15, func(mp *onnxpb.ModelProto) {
			toHalf("scale")(mp)
			toHalf("bias")(mp)
		}), ""},
		{"float16 BatchNorm scale only, opset 15", versionModel(t, 8, 15, toHalf("scale")), `"bias": element type float32, but input "scale" is float16`},
		{"float16 graph output", versionModel(t, 8, 13, func(mp *onnxpb.ModelProto) {
			mp.Graph.Output[0] = onnxio.NewValueInfo("y", onnxio.Float16, d)
		}), "graph output declares element type float16, the graph computes float32"},
		{"float16 value_info", versionModel(t, 8, 13, func(mp *onnxpb.ModelProto) {
			mp.Graph.ValueInfo = append(mp.Graph.ValueInfo, onnxio.NewValueInfo("h", onnxio.Float16, d))
		}), "value_info declares element type float16"},
		{"float16 input over a float32 initializer", versionModel(t, 8, 13, func(mp *onnxpb.ModelProto) {
			mp.Graph.Input = append(mp.Graph.Input, onnxio.NewValueInfo("w", onnxio.Float16, []onnxio.Dim{{Value: 4, Known: true}}))
		}), "graph input declares float16, its initializer holds float32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verr := onnxio.Validate(c.m)
			switch {
			case c.want == "" && verr != nil:
				t.Errorf("Validate: %v", verr)
			case c.want != "" && (verr == nil || !strings.Contains(verr.Error(), c.want)):
				t.Errorf("Validate: %v; want an error saying %q", verr, c.want)
			}
			b, err := proto.Marshal(c.m.Proto)
			if err != nil {
				t.Fatal(err)
			}
			s, oerr := ort.NewSession(b, nil, ort.Config{Threads: 1})
			if oerr == nil {
				s.Destroy()
			}
			if (oerr == nil) != (c.want == "") {
				t.Errorf("ONNX Runtime disagrees: validator %v, ORT %v", verr, oerr)
			}
		})
	}
}
