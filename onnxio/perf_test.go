package onnxio

import (
	"fmt"
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// bigChain is a chain of n Conv nodes, each with the attributes exporters
// write, as in a deep network.
func bigChain(n int) *Model {
	g := graph{
		inputs: []*onnxpb.ValueInfoProto{vi("t0", 1, 2, 4, 4)},
		inits:  []*onnxpb.TensorProto{zeros("w", 2, 2, 3, 3)},
	}
	for k := 0; k < n; k++ {
		g.nodes = append(g.nodes, node("Conv", fmt.Sprintf("conv%d", k), ins(fmt.Sprintf("t%d", k), "w"), outs(fmt.Sprintf("t%d", k+1)),
			aInts("pads", 1, 1, 1, 1), aInts("strides", 1, 1), aInts("dilations", 1, 1), aInt("group", 1), aInts("kernel_shape", 3, 3)))
	}
	g.outputs = []*onnxpb.ValueInfoProto{vi(fmt.Sprintf("t%d", n), 1, 2, 4, 4)}
	return g.model(13)
}

// TestValidateLinear: validating a large graph takes time linear in its
// size (a deep network has thousands of nodes; the quadratic version took 18 s for these 5000).
func TestValidateLinear(t *testing.T) {
	m := bigChain(5000)
	start := time.Now()
	if err := Validate(m); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Validate of 5000 nodes took %v", d)
	}
	start = time.Now()
	ix := NewIndex(m.Graph())
	InferShapes(m, false)
	if len(ix.Producer) != 5000 {
		t.Fatal("index")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("NewIndex and InferShapes of 5000 nodes took %v", d)
	}
}
