package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
)

type A = onnxpb.AttributeProto

// Binary elementwise ops with numpy broadcasting in both directions.
func TestGradBroadcastBinary(t *testing.T) {
	shapes := [][2][]int64{
		{{2, 3}, {2, 3}},
		{{2, 3, 4}, {4}},
		{{3, 1}, {1, 4}},
		{{2, 1, 4}, {3, 1}},
		{{5}, {2, 3, 5}},
		{{2, 3}, {}},
	}
	for _, op := range []string{"Add", "Sub", "Mul", "Div", "Pow"} {
		for _, s := range shapes {
			t.Run(fmt.Sprintf("%s/%v_%v", op, s[0], s[1]), func(t *testing.T) {
				g := testgraph.New(17)
				ga, gb := testgraph.Uniform(-1, 1), testgraph.Uniform(-1, 1)
				switch op {
				case "Div":
					gb = testgraph.Away(0.5)
				case "Pow":
					ga, gb = testgraph.Uniform(0.5, 1.5), testgraph.Uniform(-1.5, 1.5)
				}
				a := g.In("a", ga, s[0]...)
				b := g.In("b", gb, s[1]...)
				g.Out(g.Op(op, []string{a, b}, "y"))
				checkGrad(t, g, "a", "b")
			})
		}
	}
}

func TestGradPowConstExponent(t *testing.T) {
	for _, e := range []float64{2, 3, 0.5, 1} {
		t.Run(fmt.Sprint(e), func(t *testing.T) {
			g := testgraph.New(17)
			x := g.In("x", testgraph.Uniform(0.5, 1.5), 3, 4)
			g.Out(g.Op("Pow", []string{x, g.FConst("e", nil, e)}, "y"))
			checkGrad(t, g, "x")
		})
	}
}

func TestGradVariadic(t *testing.T) {
	for _, op := range []string{"Sum", "Mean"} {
		t.Run(op, func(t *testing.T) {
			g := testgraph.New(17)
			a, b, c := g.In("a", nil, 2, 3), g.In("b", nil, 3), g.In("c", nil, 1, 1)
			g.Out(g.Op(op, []string{a, b, c}, "y"))
			checkGrad(t, g, "a", "b", "c")
		})
	}
}

func TestGradUnary(t *testing.T) {
	cases := []struct {
		op    string
		gen   string
		attrs []*A
		opset int64
	}{
		{"Relu", "away", nil, 17},
		{"LeakyRelu", "away", []*A{attrFloat("alpha", 0.1)}, 17},
		{"Sigmoid", "", nil, 17},
		{"Tanh", "", nil, 17},
		{"Erf", "", nil, 17},
		{"Exp", "", nil, 17},
		{"Log", "pos", nil, 17},
		{"Sqrt", "pos", nil, 17},
		{"Reciprocal", "pos", nil, 17},
		{"Neg", "", nil, 17},
		{"Abs", "away", nil, 17},
		{"Softplus", "", nil, 17},
		{"HardSigmoid", "hsig", []*A{attrFloat("alpha", 0.3)}, 17},
		{"HardSwish", "hswish", nil, 17},
		{"Identity", "", nil, 17},
		{"Dropout", "", nil, 17},
		{"Gelu", "", nil, 20},
		{"Gelu", "", []*A{attrString("approximate", "tanh")}, 20},
	}
	for _, tc := range cases {
		name := tc.op
		if len(tc.attrs) > 0 {
			name += "/" + tc.attrs[0].GetName()
		}
		t.Run(name, func(t *testing.T) {
			for _, dims := range [][]int64{{7}, {2, 3, 4}} {
				g := testgraph.New(tc.opset)
				gen := testgraph.Uniform(-2, 2)
				switch tc.gen {
				case "away":
					gen = testgraph.Away(0.1)
				case "pos":
					gen = testgraph.Uniform(0.5, 2)
				case "hsig": // kinks at +-5/3
					gen = testgraph.Pieces(-3, -2, -1.4, 1.4, 2, 3)
				case "hswish": // kinks at +-3
					gen = testgraph.Pieces(-4, -3.3, -2.7, 2.7, 3.3, 4)
				}
				x := g.In("x", gen, dims...)
				g.Out(g.Op(tc.op, []string{x}, "y", tc.attrs...))
				checkGrad(t, g, "x")
			}
		})
	}
}

func TestGradClip(t *testing.T) {
	for _, opset := range []int64{9, 17} {
		t.Run(fmt.Sprint(opset), func(t *testing.T) {
			g := testgraph.New(opset)
			x := g.In("x", testgraph.Uniform(-2, 8), 4, 5)
			if opset < 11 {
				g.Out(g.Op("Clip", []string{x}, "y", attrFloat("min", 0), attrFloat("max", 6)))
			} else {
				g.Out(g.Op("Clip", []string{x, g.FConst("lo", nil, 0), g.FConst("hi", nil, 6)}, "y"))
			}
			checkGrad(t, g, "x")
		})
	}
}

func TestGradGemm(t *testing.T) {
	for _, ta := range []int64{0, 1} {
		for _, tb := range []int64{0, 1} {
			for _, cdims := range [][]int64{{4}, {3, 4}, {1, 4}, nil} {
				t.Run(fmt.Sprintf("tA%d_tB%d_C%v", ta, tb, cdims), func(t *testing.T) {
					g := testgraph.New(17)
					adims, bdims := []int64{3, 5}, []int64{5, 4}
					if ta == 1 {
						adims = []int64{5, 3}
					}
					if tb == 1 {
						bdims = []int64{4, 5}
					}
					a, b := g.In("a", nil, adims...), g.In("b", nil, bdims...)
					ins := []string{a, b}
					wrt := []string{"a", "b"}
					if cdims != nil {
						ins = append(ins, g.In("c", nil, cdims...))
						wrt = append(wrt, "c")
					}
					g.Out(g.Op("Gemm", ins, "y", attrFloat("alpha", 0.7), attrFloat("beta", 1.3), attrInt("transA", ta), attrInt("transB", tb)))
					checkGrad(t, g, wrt...)
				})
			}
		}
	}
}

func TestGradMatMul(t *testing.T) {
	for _, s := range [][2][]int64{
		{{3, 4}, {4, 5}},
		{{2, 3, 4}, {4, 5}},
		{{2, 3, 4}, {2, 4, 5}},
		{{2, 1, 3, 4}, {3, 4, 2}},
		{{3, 4}, {2, 4, 5}},
		{{4}, {4, 5}},
		{{2, 3, 4}, {4}},
		{{4}, {4}},
	} {
		t.Run(fmt.Sprintf("%v_%v", s[0], s[1]), func(t *testing.T) {
			g := testgraph.New(17)
			a, b := g.In("a", nil, s[0]...), g.In("b", nil, s[1]...)
			g.Out(g.Op("MatMul", []string{a, b}, "y"))
			checkGrad(t, g, "a", "b")
		})
	}
}

func TestGradConv(t *testing.T) {
	cases := []struct {
		name          string
		x, w          []int64
		attrs         []*A
		bias, spatial bool
	}{
		{"plain", []int64{2, 3, 6, 6}, []int64{4, 3, 3, 3}, nil, true, true},
		{"pad_stride", []int64{2, 3, 7, 7}, []int64{4, 3, 3, 3}, []*A{attrInts("pads", []int64{1, 1, 1, 1}), attrInts("strides", []int64{2, 2})}, true, true},
		{"asym_stride_dil", []int64{1, 2, 9, 8}, []int64{3, 2, 2, 3}, []*A{attrInts("pads", []int64{0, 1, 2, 0}), attrInts("strides", []int64{2, 3}), attrInts("dilations", []int64{2, 1})}, true, true},
		{"grouped", []int64{2, 4, 5, 5}, []int64{6, 2, 3, 3}, []*A{attrInt("group", 2), attrInts("pads", []int64{1, 1, 1, 1})}, true, true},
		{"depthwise", []int64{2, 3, 6, 6}, []int64{3, 1, 3, 3}, []*A{attrInt("group", 3), attrInts("strides", []int64{2, 2}), attrInts("pads", []int64{1, 1, 1, 1})}, false, true},
		{"same_upper", []int64{1, 2, 5, 6}, []int64{2, 2, 3, 3}, []*A{attrString("auto_pad", "SAME_UPPER"), attrInts("strides", []int64{2, 2})}, true, true},
		{"1d", []int64{2, 3, 10}, []int64{2, 3, 4}, []*A{attrInts("strides", []int64{3})}, true, true},
		{"1x1", []int64{2, 5, 3, 3}, []int64{4, 5, 1, 1}, nil, true, true},
		// 25 kernel positions: dW through the Conv form, not patches.
		{"5x5", []int64{1, 2, 7, 7}, []int64{3, 2, 5, 5}, []*A{attrInts("pads", []int64{2, 2, 2, 2})}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := testgraph.New(17)
			x, w := g.In("x", nil, tc.x...), g.In("w", nil, tc.w...)
			ins, wrt := []string{x, w}, []string{"x", "w"}
			if tc.bias {
				ins = append(ins, g.In("b", nil, tc.w[0]))
				wrt = append(wrt, "b")
			}
			g.Out(g.Op("Conv", ins, "y", tc.attrs...))
			checkGrad(t, g, wrt...)
		})
	}
}

func TestGradPool(t *testing.T) {
	cases := []struct {
		op    string
		x     []int64
		attrs []*A
		opset int64
	}{
		{"MaxPool", []int64{2, 3, 6, 6}, []*A{attrInts("kernel_shape", []int64{2, 2}), attrInts("strides", []int64{2, 2})}, 17},
		{"MaxPool", []int64{2, 3, 6, 6}, []*A{attrInts("kernel_shape", []int64{2, 2}), attrInts("strides", []int64{2, 2})}, 11},
		{"MaxPool", []int64{2, 2, 7, 7}, []*A{attrInts("kernel_shape", []int64{3, 3}), attrInts("strides", []int64{2, 2}), attrInts("pads", []int64{1, 1, 1, 1})}, 17},
		{"MaxPool", []int64{2, 2, 7, 7}, []*A{attrInts("kernel_shape", []int64{3, 3}), attrInts("strides", []int64{2, 2})}, 13},
		{"AveragePool", []int64{2, 3, 6, 6}, []*A{attrInts("kernel_shape", []int64{2, 2}), attrInts("strides", []int64{2, 2})}, 17},
		{"AveragePool", []int64{2, 2, 7, 7}, []*A{attrInts("kernel_shape", []int64{3, 3}), attrInts("strides", []int64{2, 2}), attrInts("pads", []int64{1, 1, 1, 1})}, 17},
		{"AveragePool", []int64{2, 2, 7, 7}, []*A{attrInts("kernel_shape", []int64{3, 3}), attrInts("strides", []int64{2, 2}), attrInts("pads", []int64{1, 1, 1, 1}), attrInt("count_include_pad", 1)}, 17},
		{"GlobalAveragePool", []int64{2, 3, 4, 5}, nil, 17},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%s/%v/opset%d", tc.op, tc.x, tc.opset)
		for _, a := range tc.attrs {
			name += fmt.Sprintf("/%s%v", a.GetName(), a.Ints)
		}
		t.Run(name, func(t *testing.T) {
			g := testgraph.New(tc.opset)
			x := g.In("x", testgraph.Distinct, tc.x...)
			g.Out(g.Op(tc.op, []string{x}, "y", tc.attrs...))
			checkGrad(t, g, "x")
		})
	}
}

// MaxPool in float32, where windows that tile the input take the path
// without the Indices output and the others the scatter of the indices.
func TestGradMaxPoolFloat(t *testing.T) {
	cases := []struct {
		x       []int64
		attrs   []*A
		opset   int64
		indices bool // the forward node gets an Indices output
	}{
		{[]int64{2, 3, 6, 6}, []*A{attrInts("kernel_shape", []int64{2, 2}), attrInts("strides", []int64{2, 2})}, 17, false},
		{[]int64{2, 3, 6, 6}, []*A{attrInts("kernel_shape", []int64{2, 3}), attrInts("strides", []int64{2, 3}), attrInt("ceil_mode", 1)}, 11, false},
		{[]int64{2, 2, 9}, []*A{attrInts("kernel_shape", []int64{3}), attrInts("strides", []int64{3})}, 17, false},
		// The last row and column belong to no window: not a tiling.
		{[]int64{2, 3, 7, 7}, []*A{attrInts("kernel_shape", []int64{2, 2}), attrInts("strides", []int64{2, 2})}, 17, true},
		{[]int64{2, 3, 6, 6}, []*A{attrInts("kernel_shape", []int64{2, 2}), attrInts("strides", []int64{2, 2}), attrInts("pads", []int64{1, 1, 1, 1})}, 17, true},
		{[]int64{2, 2, 7, 7}, []*A{attrInts("kernel_shape", []int64{3, 3}), attrInts("strides", []int64{2, 2})}, 17, true},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%v/opset%d", tc.x, tc.opset)
		for _, a := range tc.attrs {
			name += fmt.Sprintf("/%s%v", a.GetName(), a.Ints)
		}
		t.Run(name, func(t *testing.T) {
			g := testgraph.New(tc.opset)
			x := g.In("x", testgraph.Distinct, tc.x...)
			g.Out(g.Op("MaxPool", []string{x}, "y", tc.attrs...))
			vm, err := VJP(g.Model(t, onnxio.Float), []string{"x"})
			if err != nil {
				t.Fatal(err)
			}
			if got := maxPoolHasIndices(vm); got != tc.indices {
				t.Fatalf("forward MaxPool has an Indices output: %v, want %v", got, tc.indices)
			}
			checkGradIn(t, g, onnxio.Float, "x")
		})
	}
}

func maxPoolHasIndices(m *onnxio.Model) bool {
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "MaxPool" && len(n.GetOutput()) > 1 && n.GetOutput()[1] != "" {
			return true
		}
	}
	return false
}

// Tied maxima share their window's gradient equally, so that each
// window's gradient sums to dY: the values come from a set of three, and
// windows of all equal values (as after a ReLU) are common.
func TestGradMaxPoolTies(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		x, kernel []int64
	}{
		{[]int64{2, 3, 4, 6}, []int64{2, 2}},
		{[]int64{1, 2, 6, 6}, []int64{3, 3}},
		{[]int64{2, 2, 8}, []int64{4}},
	} {
		t.Run(fmt.Sprintf("%v/%v", tc.x, tc.kernel), func(t *testing.T) {
			g := testgraph.New(17)
			levels := func(r *rand.Rand, n int) []float64 {
				v := make([]float64, n)
				for i := range v {
					v[i] = []float64{0, 0, 0.5, 1}[r.IntN(4)]
				}
				return v
			}
			g.In("x", levels, tc.x...)
			g.Out(g.Op("MaxPool", []string{"x"}, "y", attrInts("kernel_shape", tc.kernel), attrInts("strides", tc.kernel)))
			m := g.Model(t, onnxio.Float)
			vm, err := VJP(m, []string{"x"})
			if err != nil {
				t.Fatal(err)
			}
			if maxPoolHasIndices(vm) {
				t.Fatal("the tiled MaxPool's gradient uses the Indices output")
			}
			s, err := ort.NewSessionForModel(vm, nil, testRT)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Destroy()
			r := rand.New(rand.NewPCG(3, 4))
			xv := levels(r, int(onnxio.NumElements(tc.x)))
			ydims := append([]int64{}, tc.x...)
			for k, kk := range tc.kernel {
				ydims[k+2] /= kk
			}
			dy := testgraph.Uniform(-1, 1)(r, int(onnxio.NumElements(ydims)))
			outs, err := s.Run(tensorOf("x", onnxio.Float, tc.x, xv), tensorOf(SeedName("y"), onnxio.Float, ydims, dy))
			if err != nil {
				t.Fatal(err)
			}
			var dx []float64
			for _, o := range outs {
				if o.Name == GradName("x") {
					dx = float64sOf(o)
				}
			}
			checkTiedWindows(t, tc.x, tc.kernel, xv, dx, dy)
		})
	}
}

// A Relu whose only consumer is a tiling MaxPool is folded into the
// pooling's gradient: dX of the Relu's input is dY shared among the
// window's maxima where the maximum is positive and zero elsewhere (dead
// windows, exact zeros and ties included), with no full-size Relu mask.
// When the Relu's output needs a gradient of its own, it is not folded.
func TestGradReluMaxPoolFolded(t *testing.T) {
	needORT(t)
	xd, kernel, yd := []int64{2, 3, 6, 6}, []int64{2, 2}, []int64{2, 3, 3, 3}
	g := testgraph.New(17)
	levels := func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = []float64{-1, -0.5, 0, 0, 0.5, 1}[r.IntN(6)]
		}
		return v
	}
	g.In("x", levels, xd...)
	g.Out(g.Op("MaxPool", []string{g.Op("Relu", []string{"x"}, "r")}, "y", attrInts("kernel_shape", kernel), attrInts("strides", kernel)))
	m := g.Model(t, onnxio.Float)
	r := rand.New(rand.NewPCG(7, 8))
	xv := levels(r, int(onnxio.NumElements(xd)))
	dy := testgraph.Uniform(-1, 1)(r, int(onnxio.NumElements(yd)))
	rv := make([]float64, len(xv))
	for i, v := range xv {
		rv[i] = max(v, 0)
	}
	for _, wrt := range [][]string{{"x"}, {"x", "r"}} {
		vm, err := VJP(m, wrt)
		if err != nil {
			t.Fatal(err)
		}
		greater := 0
		for _, n := range vm.Graph().GetNode() {
			if n.GetOpType() == "Greater" {
				greater++
				if len(wrt) == 1 && n.GetInput()[0] != "y" {
					t.Errorf("the folded gradient compares %s with 0, want the pooled output", n.GetInput()[0])
				}
			}
		}
		if greater != 1 {
			t.Fatalf("wrt %v: %d Greater nodes, want 1", wrt, greater)
		}
		s, err := ort.NewSessionForModel(vm, nil, testRT)
		if err != nil {
			t.Fatal(err)
		}
		outs, err := s.Run(tensorOf("x", onnxio.Float, xd, xv), tensorOf(SeedName("y"), onnxio.Float, yd, dy))
		s.Destroy()
		if err != nil {
			t.Fatal(err)
		}
		grads := map[string][]float64{}
		for _, o := range outs {
			grads[o.Name] = float64sOf(o)
		}
		if len(wrt) == 2 {
			// dR: every window's maxima share dY, dead windows too.
			checkTiedWindows(t, xd, kernel, rv, grads[GradName("r")], dy)
		}
		// dX: dY of windows with a positive maximum only.
		live := append([]float64{}, dy...)
		for w := range live {
			n, c, i, j := int64(w)/27, int64(w)/9%3, int64(w)/3%3, int64(w)%3
			top := 0.0
			for a := range int64(2) {
				for b := range int64(2) {
					top = max(top, rv[((n*3+c)*6+2*i+a)*6+2*j+b])
				}
			}
			if top == 0 {
				live[w] = 0
			}
		}
		checkTiedWindows(t, xd, kernel, rv, grads[GradName("x")], live)
	}
}

// checkTiedWindows asserts, for each window of a tiling MaxPool, that dX
// is dY divided by the number of maxima at each maximum and zero elsewhere.
func checkTiedWindows(t *testing.T, xd, kernel []int64, x, dx, dy []float64) {
	t.Helper()
	if len(dx) != len(x) {
		t.Fatalf("dX has %d elements, want %d", len(dx), len(x))
	}
	// Window index of each flat position of X.
	win := make([]int, len(x))
	counts := make([]int, len(dy))
	maxes := make([]float64, len(dy))
	for i := range maxes {
		maxes[i] = math.Inf(-1)
	}
	for i := range x {
		rest, w, stride := int64(i), int64(0), int64(1)
		for a := len(xd) - 1; a >= 0; a-- {
			pos := rest % xd[a]
			rest /= xd[a]
			size := xd[a]
			if a >= 2 {
				pos /= kernel[a-2]
				size /= kernel[a-2]
			}
			w += pos * stride
			stride *= size
		}
		win[i] = int(w)
		maxes[w] = max(maxes[w], x[i])
	}
	for i := range x {
		if x[i] == maxes[win[i]] {
			counts[win[i]]++
		}
	}
	ties := 0
	sums := make([]float64, len(dy))
	for i := range x {
		w := win[i]
		want := 0.0
		if x[i] == maxes[w] {
			want = dy[w] / float64(counts[w])
		}
		if math.Abs(dx[i]-want) > 1e-6 {
			t.Fatalf("dX[%d] = %.8g, want %.8g (window %d: %d maxima, dY %.6g)", i, dx[i], want, w, counts[w], dy[w])
		}
		sums[w] += dx[i]
	}
	for w := range dy {
		if counts[w] > 1 {
			ties++
		}
		if math.Abs(sums[w]-dy[w]) > 1e-6 {
			t.Fatalf("window %d: dX sums to %.8g, dY is %.8g", w, sums[w], dy[w])
		}
	}
	if ties == 0 {
		t.Fatal("no window has tied maxima: the test checks nothing about ties")
	}
	t.Logf("%d of %d windows have tied maxima", ties, len(dy))
}

func TestGradShapeOps(t *testing.T) {
	t.Run("Reshape", func(t *testing.T) {
		g := testgraph.New(17)
		x := g.In("x", nil, 2, 3, 4)
		g.Out(g.Op("Reshape", []string{x, g.Ints("s", []int64{2}, 6, -1)}, "y"))
		checkGrad(t, g, "x")
	})
	t.Run("Flatten", func(t *testing.T) {
		g := testgraph.New(17)
		x := g.In("x", nil, 2, 3, 4)
		g.Out(g.Op("Flatten", []string{x}, "y", attrInt("axis", 2)))
		checkGrad(t, g, "x")
	})
	for _, opset := range []int64{11, 17} {
		t.Run(fmt.Sprint("SqueezeUnsqueeze", opset), func(t *testing.T) {
			g := testgraph.New(opset)
			x := g.In("x", nil, 2, 1, 4)
			var s, u string
			if opset < 13 {
				s = g.Op("Squeeze", []string{x}, "s", attrInts("axes", []int64{1}))
				u = g.Op("Unsqueeze", []string{s}, "u", attrInts("axes", []int64{0, 3}))
			} else {
				s = g.Op("Squeeze", []string{x, g.Ints("a1", []int64{1}, 1)}, "s")
				u = g.Op("Unsqueeze", []string{s, g.Ints("a2", []int64{2}, 0, 3)}, "u")
			}
			g.Out(g.Op("Mul", []string{u, u}, "y"))
			checkGrad(t, g, "x")
		})
	}
	t.Run("Transpose", func(t *testing.T) {
		g := testgraph.New(17)
		x := g.In("x", nil, 2, 3, 4)
		g.Out(g.Op("Transpose", []string{x}, "y", attrInts("perm", []int64{2, 0, 1})))
		g.Out(g.Op("Transpose", []string{x}, "z"))
		checkGrad(t, g, "x")
	})
	t.Run("Concat", func(t *testing.T) {
		g := testgraph.New(17)
		a, b, c := g.In("a", nil, 2, 3, 4), g.In("b", nil, 2, 1, 4), g.In("c", nil, 2, 2, 4)
		g.Out(g.Op("Concat", []string{a, b, c}, "y", attrInt("axis", -2)))
		checkGrad(t, g, "a", "b", "c")
	})
	for _, opset := range []int64{11, 13, 18} {
		t.Run(fmt.Sprint("Split", opset), func(t *testing.T) {
			g := testgraph.New(opset)
			x := g.In("x", nil, 2, 7)
			outs := []string{"p", "q", "r"}
			switch {
			case opset < 13:
				g.Node("Split", []string{x}, outs, attrInt("axis", 1), attrInts("split", []int64{2, 4, 1}))
			default:
				g.Node("Split", []string{x, g.Ints("sp", []int64{3}, 2, 4, 1)}, outs, attrInt("axis", 1))
			}
			// r is unused: its gradient is zero.
			g.Out(g.Op("Mul", []string{"p", "p"}, "y"), "q")
			checkGrad(t, g, "x")
		})
	}
	for _, opset := range []int64{9, 17} {
		t.Run(fmt.Sprint("Slice", opset), func(t *testing.T) {
			g := testgraph.New(opset)
			x := g.In("x", nil, 3, 8, 5)
			if opset < 10 {
				g.Op("Slice", []string{x}, "s", attrInts("starts", []int64{1, -4}), attrInts("ends", []int64{100, -1}), attrInts("axes", []int64{1, 2}))
			} else {
				g.Op("Slice", []string{x, g.Ints("st", []int64{2}, 1, -4), g.Ints("en", []int64{2}, 1<<62, -1), g.Ints("ax", []int64{2}, 1, 2)}, "s")
			}
			g.Out(g.Op("Mul", []string{"s", "s"}, "y"))
			checkGrad(t, g, "x")
		})
	}
	t.Run("Expand", func(t *testing.T) {
		g := testgraph.New(17)
		x := g.In("x", nil, 3, 1)
		g.Out(g.Op("Expand", []string{x, g.Ints("sh", []int64{3}, 2, 3, 4)}, "y"))
		checkGrad(t, g, "x")
	})
	t.Run("Where", func(t *testing.T) {
		g := testgraph.New(17)
		a, b := g.In("a", nil, 3, 4), g.In("b", nil, 4)
		c := g.Op("Greater", []string{a, g.FConst("z", nil, 0)}, "c")
		g.Out(g.Op("Where", []string{c, a, b}, "y"))
		checkGrad(t, g, "a", "b")
	})
	t.Run("Cast", func(t *testing.T) {
		g := testgraph.New(17)
		x := g.In("x", nil, 3, 4)
		c := g.Op("Cast", []string{x}, "c", attrInt("to", int64(onnxio.Float)))
		g.Out(g.Op("Cast", []string{g.Op("Mul", []string{c, c}, "m")}, "y", attrInt("to", int64(onnxio.Double))))
		checkGradIn(t, g, onnxio.Float, "x") // float32 in the middle: float32 tolerances
	})
}

func TestGradGather(t *testing.T) {
	for _, opset := range []int64{13, 17} {
		t.Run(fmt.Sprint("embedding", opset), func(t *testing.T) {
			g := testgraph.New(opset)
			w := g.In("w", nil, 6, 3)
			idx := g.Ints("ids", []int64{2, 4}, 0, 5, 2, 5, 1, 1, 1, -1)
			g.Out(g.Op("Gather", []string{w, idx}, "y"))
			checkGrad(t, g, "w")
		})
	}
	for _, opset := range []int64{11, 17} {
		t.Run(fmt.Sprint("axis1", opset), func(t *testing.T) {
			g := testgraph.New(opset)
			x := g.In("x", nil, 2, 5, 3)
			g.Out(g.Op("Gather", []string{x, g.Ints("i", []int64{3}, 4, 0, 4)}, "y", attrInt("axis", 1)))
			g.Out(g.Op("Gather", []string{x, g.Ints("j", nil, 2)}, "z", attrInt("axis", 1)))
			checkGrad(t, g, "x")
		})
	}
}

func TestGradReduce(t *testing.T) {
	for _, op := range []string{"ReduceSum", "ReduceMean"} {
		for _, opset := range []int64{11, 13, 18} {
			for _, keep := range []int64{0, 1} {
				for _, axes := range [][]int64{{1}, {-1, 0}, nil} {
					t.Run(fmt.Sprintf("%s/%d/keep%d/%v", op, opset, keep, axes), func(t *testing.T) {
						g := testgraph.New(opset)
						x := g.In("x", nil, 2, 3, 4)
						byInput := op == "ReduceSum" && opset >= 13 || opset >= 18
						var attrs []*A
						ins := []string{x}
						if axes != nil {
							if byInput {
								ins = append(ins, g.Ints("ax", []int64{int64(len(axes))}, axes...))
							} else {
								attrs = append(attrs, attrInts("axes", axes))
							}
						}
						attrs = append(attrs, attrInt("keepdims", keep))
						y := g.Op(op, ins, "r", attrs...)
						g.Out(g.Op("Mul", []string{y, y}, "y"))
						checkGrad(t, g, "x")
					})
				}
			}
		}
	}
}

// The gradients of means and sums reach x*x, a ReLU and the sum of x's
// gradients unexpanded (broadcasting expands them): the backward graph has
// no Expand left, and no node whose output nothing reads.
func TestGradSpread(t *testing.T) {
	g := testgraph.New(18)
	x := g.In("x", testgraph.Away(0.1), 3, 4, 5, 2)
	axes := g.Ints("axes", []int64{3}, 0, 2, 3)
	mu := g.Op("ReduceMean", []string{x, axes}, "mu")
	xc := g.Op("Sub", []string{x, mu}, "xc")
	v := g.Op("ReduceMean", []string{g.Op("Mul", []string{xc, xc}, "sq"), axes}, "v")
	h := g.Op("Relu", []string{g.Op("Mul", []string{xc, v}, "xv")}, "h")
	s := g.Op("ReduceSum", []string{h, g.Ints("a2", []int64{2}, 2, 3)}, "s", attrInt("keepdims", 0))
	g.Out(g.Op("Mul", []string{s, s}, "y"))
	checkGrad(t, g, "x")
	vm, err := VJP(g.Model(t, onnxio.Float), []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, o := range vm.Graph().GetOutput() {
		used[o.GetName()] = true
	}
	for _, n := range vm.Graph().GetNode() {
		for _, in := range n.GetInput() {
			used[in] = true
		}
	}
	for _, n := range vm.Graph().GetNode() {
		if n.GetOpType() == "Expand" {
			t.Errorf("node %s expands %s", n.GetName(), n.GetInput()[0])
		}
		if !used[n.GetOutput()[0]] && strings.HasPrefix(n.GetName(), "grad/") {
			t.Errorf("nothing reads the output of backward node %s (%s)", n.GetName(), n.GetOpType())
		}
	}
}

func TestGradSoftmax(t *testing.T) {
	for _, op := range []string{"Softmax", "LogSoftmax"} {
		for _, opset := range []int64{11, 17} {
			for _, axis := range []int64{-1, 1} {
				t.Run(fmt.Sprintf("%s/%d/axis%d", op, opset, axis), func(t *testing.T) {
					g := testgraph.New(opset)
					x := g.In("x", testgraph.Uniform(-2, 2), 2, 3, 4)
					g.Out(g.Op(op, []string{x}, "y", attrInt("axis", axis)))
					checkGrad(t, g, "x")
				})
			}
		}
	}
}

func TestGradLayerNorm(t *testing.T) {
	for _, axis := range []int64{-1, 1} {
		t.Run(fmt.Sprint(axis), func(t *testing.T) {
			g := testgraph.New(17)
			x := g.In("x", testgraph.Uniform(-2, 2), 2, 3, 4)
			sdims := []int64{4}
			if axis == 1 {
				sdims = []int64{3, 4}
			}
			s, b := g.In("s", testgraph.Uniform(0.5, 1.5), sdims...), g.In("b", nil, sdims...)
			g.Out(g.Op("LayerNormalization", []string{x, s, b}, "y", attrInt("axis", axis), attrFloat("epsilon", 1e-3)))
			checkGrad(t, g, "x", "s", "b")
		})
	}
	// The decomposed form torch exports before opset 17, and RMSNorm.
	t.Run("decomposed", func(t *testing.T) {
		g := testgraph.New(13)
		x := g.In("x", testgraph.Uniform(-2, 2), 2, 3, 4)
		s, b := g.In("s", testgraph.Uniform(0.5, 1.5), 4), g.In("b", nil, 4)
		mu := g.Op("ReduceMean", []string{x}, "mu", attrInts("axes", []int64{-1}))
		xc := g.Op("Sub", []string{x, mu}, "xc")
		p := g.Op("Pow", []string{xc, g.FConst("two", nil, 2)}, "p")
		v := g.Op("ReduceMean", []string{p}, "v", attrInts("axes", []int64{-1}))
		sd := g.Op("Sqrt", []string{g.Op("Add", []string{v, g.FConst("eps", nil, 1e-5)}, "ve")}, "sd")
		y := g.Op("Add", []string{g.Op("Mul", []string{g.Op("Div", []string{xc, sd}, "xh"), s}, "ys"), b}, "y")
		g.Out(y)
		checkGrad(t, g, "x", "s", "b")
	})
	t.Run("rmsnorm", func(t *testing.T) {
		g := testgraph.New(17)
		x := g.In("x", testgraph.Uniform(-2, 2), 2, 3, 4)
		w := g.In("w", testgraph.Uniform(0.5, 1.5), 4)
		p := g.Op("Pow", []string{x, g.FConst("two", nil, 2)}, "p")
		ms := g.Op("ReduceMean", []string{p}, "ms", attrInts("axes", []int64{-1}))
		r := g.Op("Div", []string{g.FConst("one", nil, 1), g.Op("Sqrt", []string{g.Op("Add", []string{ms, g.FConst("eps", nil, 1e-5)}, "a")}, "sq")}, "r")
		g.Out(g.Op("Mul", []string{g.Op("Mul", []string{x, r}, "xr"), w}, "y"))
		checkGrad(t, g, "x", "w")
	})
}

func TestGradBatchNorm(t *testing.T) {
	for _, dims := range [][]int64{{3, 4, 2, 2}, {5, 4}} {
		t.Run(fmt.Sprint(dims), func(t *testing.T) {
			g := testgraph.New(15)
			x := g.In("x", nil, dims...)
			s, b := g.In("s", nil, 4), g.In("b", nil, 4)
			mean := g.FConst("mean", []int64{4}, 0.1, -0.2, 0.3, 0)
			variance := g.FConst("var", []int64{4}, 0.5, 1, 2, 0.1)
			g.Out(g.Op("BatchNormalization", []string{x, s, b, mean, variance}, "y", attrFloat("epsilon", 1e-3)))
			checkGrad(t, g, "x", "s", "b")
		})
	}
}

// The attention pattern of the Llama fixture: rotary embedding by
// Slice/Neg/Concat, a causal mask by Where, a grouped KV head repeated
// by Unsqueeze/Expand/Reshape, softmax, SiLU gating.
func TestGradAttentionBlock(t *testing.T) {
	g := testgraph.New(17)
	const T, D = 4, 4
	q := g.In("q", nil, 2, 2, T, D)
	k := g.In("k", nil, 2, 1, T, D)
	cos := g.FConst("cos", []int64{T, D}, testgraph.Uniform(-1, 1)(nil2(), T*D)...)
	half := g.Op("Slice", []string{q, g.Ints("s0", []int64{1}, D/2), g.Ints("e0", []int64{1}, 1<<62), g.Ints("a0", []int64{1}, 3)}, "hi")
	low := g.Op("Slice", []string{q, g.Ints("s1", []int64{1}, 0), g.Ints("e1", []int64{1}, D/2), g.Ints("a1", []int64{1}, 3)}, "lo")
	rot := g.Op("Concat", []string{g.Op("Neg", []string{half}, "nh"), low}, "rot", attrInt("axis", -1))
	qr := g.Op("Add", []string{g.Op("Mul", []string{q, cos}, "qc"), g.Op("Mul", []string{rot, cos}, "rc")}, "qr")
	ku := g.Op("Unsqueeze", []string{k, g.Ints("ua", []int64{1}, 2)}, "ku")
	ke := g.Op("Expand", []string{ku, g.Ints("es", []int64{5}, 1, 1, 2, 1, 1)}, "ke")
	kr := g.Op("Reshape", []string{ke, g.Ints("rs", []int64{4}, -1, 2, T, D)}, "kr")
	kt := g.Op("Transpose", []string{kr}, "kt", attrInts("perm", []int64{0, 1, 3, 2}))
	s := g.Op("MatMul", []string{qr, kt}, "scores")
	var mask []int64
	for i := 0; i < T; i++ {
		for j := 0; j < T; j++ {
			if j > i {
				mask = append(mask, 1)
			} else {
				mask = append(mask, 0)
			}
		}
	}
	cond := g.Op("Equal", []string{g.Ints("mask", []int64{T, T}, mask...), g.Ints("one", nil, 1)}, "cond")
	sm := g.Op("Where", []string{cond, g.FConst("ninf", nil, -1e9), s}, "masked")
	p := g.Op("Softmax", []string{sm}, "p", attrInt("axis", -1))
	o := g.Op("MatMul", []string{p, kr}, "o")
	silu := g.Op("Mul", []string{o, g.Op("Sigmoid", []string{o}, "sg")}, "silu")
	g.Out(silu)
	checkGrad(t, g, "q", "k")
}

func TestGradMissingRule(t *testing.T) {
	g := testgraph.New(17)
	x := g.In("x", nil, 3, 4)
	y := g.Op("Relu", []string{g.Op("Cosh", []string{x}, "c")}, "r")
	g.Out(g.Op("Einsum", []string{y}, "y", attrString("equation", "ij->ji")))
	_, err := VJP(g.Model(t, onnxio.Float), []string{"x"})
	if err == nil {
		t.Fatal("no error for ops without backward rules")
	}
	for _, want := range []string{"Cosh", "n0_Cosh", "Einsum", "n2_Einsum", "no backward rule"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Integer and shape paths need no rules: Shape, Gather on shapes, Cast to
// int and ConstantOfShape feed a Reshape without a gradient.
func TestGradSkipsShapePaths(t *testing.T) {
	g := testgraph.New(17)
	x := g.In("x", nil, 2, 3, 4)
	sh := g.Op("Shape", []string{x}, "sh")
	d0 := g.Op("Gather", []string{sh, g.Ints("i0", []int64{1}, 0)}, "d0")
	ci := g.Op("Cast", []string{g.Op("Cast", []string{d0}, "df", attrInt("to", int64(onnxio.Float)))}, "di", attrInt("to", int64(onnxio.Int64)))
	ns := g.Op("Concat", []string{ci, g.Ints("m1", []int64{1}, -1)}, "ns", attrInt("axis", 0))
	g.Out(g.Op("Reshape", []string{g.Op("Tanh", []string{x}, "t"), ns}, "y"))
	checkGrad(t, g, "x")
}

// Gradients of hidden tensors (for Taylor scores) equal those of the same
// tensors fed as inputs to the rest of the graph.
func TestGradHidden(t *testing.T) {
	needORT(t)
	full := testgraph.New(17)
	x := full.In("x", nil, 3, 4)
	h := full.Op("Tanh", []string{full.Op("MatMul", []string{x, full.In("w", nil, 4, 5)}, "xw")}, "h")
	full.Out(full.Op("Mul", []string{h, full.Op("Sigmoid", []string{h}, "s")}, "y"))
	tail := testgraph.New(17)
	th := tail.In("h", nil, 3, 5)
	tail.Out(tail.Op("Mul", []string{th, tail.Op("Sigmoid", []string{th}, "s")}, "y"))
	checkGrad(t, tail, "h")

	fm, err := VJP(full.Model(t, onnxio.Double), []string{"h", "w"})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := VJP(tail.Model(t, onnxio.Double), []string{"h"})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	xv, wv, seed := testgraph.Uniform(-1, 1)(r, 12), testgraph.Uniform(-1, 1)(r, 20), testgraph.Uniform(-1, 1)(r, 15)
	fs, err := ort.NewSessionForModel(fm, []string{"h"}, testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Destroy()
	out, err := fs.Run(tensorOf("x", onnxio.Double, []int64{3, 4}, xv), tensorOf("w", onnxio.Double, []int64{4, 5}, wv), tensorOf(SeedName("y"), onnxio.Double, []int64{3, 5}, seed))
	if err != nil {
		t.Fatal(err)
	}
	hv, gh := out[3].Data.([]float64), out[1].Data.([]float64)
	ts, err := ort.NewSessionForModel(tm, nil, testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Destroy()
	out2, err := ts.Run(tensorOf("h", onnxio.Double, []int64{3, 5}, hv), tensorOf(SeedName("y"), onnxio.Double, []int64{3, 5}, seed))
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range out2[1].Data.([]float64) {
		if math.Abs(g-gh[i]) > 1e-12 {
			t.Fatalf("dL/dh[%d]: %v from the full graph, %v from the tail", i, gh[i], g)
		}
	}
}
