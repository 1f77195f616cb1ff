package finetune

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

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
				g := newTG(17)
				ga, gb := uniform(-1, 1), uniform(-1, 1)
				switch op {
				case "Div":
					gb = away(0.5)
				case "Pow":
					ga, gb = uniform(0.5, 1.5), uniform(-1.5, 1.5)
				}
				a := g.in("a", ga, s[0]...)
				b := g.in("b", gb, s[1]...)
				g.out(g.op(op, []string{a, b}, "y"))
				checkGrad(t, g, "a", "b")
			})
		}
	}
}

func TestGradPowConstExponent(t *testing.T) {
	for _, e := range []float64{2, 3, 0.5, 1} {
		t.Run(fmt.Sprint(e), func(t *testing.T) {
			g := newTG(17)
			x := g.in("x", uniform(0.5, 1.5), 3, 4)
			g.out(g.op("Pow", []string{x, g.fconst("e", nil, e)}, "y"))
			checkGrad(t, g, "x")
		})
	}
}

func TestGradVariadic(t *testing.T) {
	for _, op := range []string{"Sum", "Mean"} {
		t.Run(op, func(t *testing.T) {
			g := newTG(17)
			a, b, c := g.in("a", nil, 2, 3), g.in("b", nil, 3), g.in("c", nil, 1, 1)
			g.out(g.op(op, []string{a, b, c}, "y"))
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
				g := newTG(tc.opset)
				gen := uniform(-2, 2)
				switch tc.gen {
				case "away":
					gen = away(0.1)
				case "pos":
					gen = uniform(0.5, 2)
				case "hsig": // kinks at +-5/3
					gen = pieces(-3, -2, -1.4, 1.4, 2, 3)
				case "hswish": // kinks at +-3
					gen = pieces(-4, -3.3, -2.7, 2.7, 3.3, 4)
				}
				x := g.in("x", gen, dims...)
				g.out(g.op(tc.op, []string{x}, "y", tc.attrs...))
				checkGrad(t, g, "x")
			}
		})
	}
}

func TestGradClip(t *testing.T) {
	for _, opset := range []int64{9, 17} {
		t.Run(fmt.Sprint(opset), func(t *testing.T) {
			g := newTG(opset)
			x := g.in("x", uniform(-2, 8), 4, 5)
			if opset < 11 {
				g.out(g.op("Clip", []string{x}, "y", attrFloat("min", 0), attrFloat("max", 6)))
			} else {
				g.out(g.op("Clip", []string{x, g.fconst("lo", nil, 0), g.fconst("hi", nil, 6)}, "y"))
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
					g := newTG(17)
					adims, bdims := []int64{3, 5}, []int64{5, 4}
					if ta == 1 {
						adims = []int64{5, 3}
					}
					if tb == 1 {
						bdims = []int64{4, 5}
					}
					a, b := g.in("a", nil, adims...), g.in("b", nil, bdims...)
					ins := []string{a, b}
					wrt := []string{"a", "b"}
					if cdims != nil {
						ins = append(ins, g.in("c", nil, cdims...))
						wrt = append(wrt, "c")
					}
					g.out(g.op("Gemm", ins, "y", attrFloat("alpha", 0.7), attrFloat("beta", 1.3), attrInt("transA", ta), attrInt("transB", tb)))
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
			g := newTG(17)
			a, b := g.in("a", nil, s[0]...), g.in("b", nil, s[1]...)
			g.out(g.op("MatMul", []string{a, b}, "y"))
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newTG(17)
			x, w := g.in("x", nil, tc.x...), g.in("w", nil, tc.w...)
			ins, wrt := []string{x, w}, []string{"x", "w"}
			if tc.bias {
				ins = append(ins, g.in("b", nil, tc.w[0]))
				wrt = append(wrt, "b")
			}
			g.out(g.op("Conv", ins, "y", tc.attrs...))
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
			g := newTG(tc.opset)
			x := g.in("x", distinct, tc.x...)
			g.out(g.op(tc.op, []string{x}, "y", tc.attrs...))
			checkGrad(t, g, "x")
		})
	}
}

func TestGradShapeOps(t *testing.T) {
	t.Run("Reshape", func(t *testing.T) {
		g := newTG(17)
		x := g.in("x", nil, 2, 3, 4)
		g.out(g.op("Reshape", []string{x, g.ints("s", []int64{2}, 6, -1)}, "y"))
		checkGrad(t, g, "x")
	})
	t.Run("Flatten", func(t *testing.T) {
		g := newTG(17)
		x := g.in("x", nil, 2, 3, 4)
		g.out(g.op("Flatten", []string{x}, "y", attrInt("axis", 2)))
		checkGrad(t, g, "x")
	})
	for _, opset := range []int64{11, 17} {
		t.Run(fmt.Sprint("SqueezeUnsqueeze", opset), func(t *testing.T) {
			g := newTG(opset)
			x := g.in("x", nil, 2, 1, 4)
			var s, u string
			if opset < 13 {
				s = g.op("Squeeze", []string{x}, "s", attrInts("axes", []int64{1}))
				u = g.op("Unsqueeze", []string{s}, "u", attrInts("axes", []int64{0, 3}))
			} else {
				s = g.op("Squeeze", []string{x, g.ints("a1", []int64{1}, 1)}, "s")
				u = g.op("Unsqueeze", []string{s, g.ints("a2", []int64{2}, 0, 3)}, "u")
			}
			g.out(g.op("Mul", []string{u, u}, "y"))
			checkGrad(t, g, "x")
		})
	}
	t.Run("Transpose", func(t *testing.T) {
		g := newTG(17)
		x := g.in("x", nil, 2, 3, 4)
		g.out(g.op("Transpose", []string{x}, "y", attrInts("perm", []int64{2, 0, 1})))
		g.out(g.op("Transpose", []string{x}, "z"))
		checkGrad(t, g, "x")
	})
	t.Run("Concat", func(t *testing.T) {
		g := newTG(17)
		a, b, c := g.in("a", nil, 2, 3, 4), g.in("b", nil, 2, 1, 4), g.in("c", nil, 2, 2, 4)
		g.out(g.op("Concat", []string{a, b, c}, "y", attrInt("axis", -2)))
		checkGrad(t, g, "a", "b", "c")
	})
	for _, opset := range []int64{11, 13, 18} {
		t.Run(fmt.Sprint("Split", opset), func(t *testing.T) {
			g := newTG(opset)
			x := g.in("x", nil, 2, 7)
			outs := []string{"p", "q", "r"}
			switch {
			case opset < 13:
				g.node("Split", []string{x}, outs, attrInt("axis", 1), attrInts("split", []int64{2, 4, 1}))
			default:
				g.node("Split", []string{x, g.ints("sp", []int64{3}, 2, 4, 1)}, outs, attrInt("axis", 1))
			}
			// r is unused: its gradient is zero.
			g.out(g.op("Mul", []string{"p", "p"}, "y"), "q")
			checkGrad(t, g, "x")
		})
	}
	for _, opset := range []int64{9, 17} {
		t.Run(fmt.Sprint("Slice", opset), func(t *testing.T) {
			g := newTG(opset)
			x := g.in("x", nil, 3, 8, 5)
			if opset < 10 {
				g.op("Slice", []string{x}, "s", attrInts("starts", []int64{1, -4}), attrInts("ends", []int64{100, -1}), attrInts("axes", []int64{1, 2}))
			} else {
				g.op("Slice", []string{x, g.ints("st", []int64{2}, 1, -4), g.ints("en", []int64{2}, 1<<62, -1), g.ints("ax", []int64{2}, 1, 2)}, "s")
			}
			g.out(g.op("Mul", []string{"s", "s"}, "y"))
			checkGrad(t, g, "x")
		})
	}
	t.Run("Expand", func(t *testing.T) {
		g := newTG(17)
		x := g.in("x", nil, 3, 1)
		g.out(g.op("Expand", []string{x, g.ints("sh", []int64{3}, 2, 3, 4)}, "y"))
		checkGrad(t, g, "x")
	})
	t.Run("Where", func(t *testing.T) {
		g := newTG(17)
		a, b := g.in("a", nil, 3, 4), g.in("b", nil, 4)
		c := g.op("Greater", []string{a, g.fconst("z", nil, 0)}, "c")
		g.out(g.op("Where", []string{c, a, b}, "y"))
		checkGrad(t, g, "a", "b")
	})
	t.Run("Cast", func(t *testing.T) {
		g := newTG(17)
		x := g.in("x", nil, 3, 4)
		c := g.op("Cast", []string{x}, "c", attrInt("to", int64(onnxio.Float)))
		g.out(g.op("Cast", []string{g.op("Mul", []string{c, c}, "m")}, "y", attrInt("to", int64(onnxio.Double))))
		checkGradIn(t, g, onnxio.Float, "x") // float32 in the middle: float32 tolerances
	})
}

func TestGradGather(t *testing.T) {
	for _, opset := range []int64{13, 17} {
		t.Run(fmt.Sprint("embedding", opset), func(t *testing.T) {
			g := newTG(opset)
			w := g.in("w", nil, 6, 3)
			idx := g.ints("ids", []int64{2, 4}, 0, 5, 2, 5, 1, 1, 1, -1)
			g.out(g.op("Gather", []string{w, idx}, "y"))
			checkGrad(t, g, "w")
		})
	}
	for _, opset := range []int64{11, 17} {
		t.Run(fmt.Sprint("axis1", opset), func(t *testing.T) {
			g := newTG(opset)
			x := g.in("x", nil, 2, 5, 3)
			g.out(g.op("Gather", []string{x, g.ints("i", []int64{3}, 4, 0, 4)}, "y", attrInt("axis", 1)))
			g.out(g.op("Gather", []string{x, g.ints("j", nil, 2)}, "z", attrInt("axis", 1)))
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
						g := newTG(opset)
						x := g.in("x", nil, 2, 3, 4)
						byInput := op == "ReduceSum" && opset >= 13 || opset >= 18
						var attrs []*A
						ins := []string{x}
						if axes != nil {
							if byInput {
								ins = append(ins, g.ints("ax", []int64{int64(len(axes))}, axes...))
							} else {
								attrs = append(attrs, attrInts("axes", axes))
							}
						}
						attrs = append(attrs, attrInt("keepdims", keep))
						y := g.op(op, ins, "r", attrs...)
						g.out(g.op("Mul", []string{y, y}, "y"))
						checkGrad(t, g, "x")
					})
				}
			}
		}
	}
}

func TestGradSoftmax(t *testing.T) {
	for _, op := range []string{"Softmax", "LogSoftmax"} {
		for _, opset := range []int64{11, 17} {
			for _, axis := range []int64{-1, 1} {
				t.Run(fmt.Sprintf("%s/%d/axis%d", op, opset, axis), func(t *testing.T) {
					g := newTG(opset)
					x := g.in("x", uniform(-2, 2), 2, 3, 4)
					g.out(g.op(op, []string{x}, "y", attrInt("axis", axis)))
					checkGrad(t, g, "x")
				})
			}
		}
	}
}

func TestGradLayerNorm(t *testing.T) {
	for _, axis := range []int64{-1, 1} {
		t.Run(fmt.Sprint(axis), func(t *testing.T) {
			g := newTG(17)
			x := g.in("x", uniform(-2, 2), 2, 3, 4)
			sdims := []int64{4}
			if axis == 1 {
				sdims = []int64{3, 4}
			}
			s, b := g.in("s", uniform(0.5, 1.5), sdims...), g.in("b", nil, sdims...)
			g.out(g.op("LayerNormalization", []string{x, s, b}, "y", attrInt("axis", axis), attrFloat("epsilon", 1e-3)))
			checkGrad(t, g, "x", "s", "b")
		})
	}
	// The decomposed form torch exports before opset 17, and RMSNorm.
	t.Run("decomposed", func(t *testing.T) {
		g := newTG(13)
		x := g.in("x", uniform(-2, 2), 2, 3, 4)
		s, b := g.in("s", uniform(0.5, 1.5), 4), g.in("b", nil, 4)
		mu := g.op("ReduceMean", []string{x}, "mu", attrInts("axes", []int64{-1}))
		xc := g.op("Sub", []string{x, mu}, "xc")
		p := g.op("Pow", []string{xc, g.fconst("two", nil, 2)}, "p")
		v := g.op("ReduceMean", []string{p}, "v", attrInts("axes", []int64{-1}))
		sd := g.op("Sqrt", []string{g.op("Add", []string{v, g.fconst("eps", nil, 1e-5)}, "ve")}, "sd")
		y := g.op("Add", []string{g.op("Mul", []string{g.op("Div", []string{xc, sd}, "xh"), s}, "ys"), b}, "y")
		g.out(y)
		checkGrad(t, g, "x", "s", "b")
	})
	t.Run("rmsnorm", func(t *testing.T) {
		g := newTG(17)
		x := g.in("x", uniform(-2, 2), 2, 3, 4)
		w := g.in("w", uniform(0.5, 1.5), 4)
		p := g.op("Pow", []string{x, g.fconst("two", nil, 2)}, "p")
		ms := g.op("ReduceMean", []string{p}, "ms", attrInts("axes", []int64{-1}))
		r := g.op("Div", []string{g.fconst("one", nil, 1), g.op("Sqrt", []string{g.op("Add", []string{ms, g.fconst("eps", nil, 1e-5)}, "a")}, "sq")}, "r")
		g.out(g.op("Mul", []string{g.op("Mul", []string{x, r}, "xr"), w}, "y"))
		checkGrad(t, g, "x", "w")
	})
}

func TestGradBatchNorm(t *testing.T) {
	for _, dims := range [][]int64{{3, 4, 2, 2}, {5, 4}} {
		t.Run(fmt.Sprint(dims), func(t *testing.T) {
			g := newTG(15)
			x := g.in("x", nil, dims...)
			s, b := g.in("s", nil, 4), g.in("b", nil, 4)
			mean := g.fconst("mean", []int64{4}, 0.1, -0.2, 0.3, 0)
			variance := g.fconst("var", []int64{4}, 0.5, 1, 2, 0.1)
			g.out(g.op("BatchNormalization", []string{x, s, b, mean, variance}, "y", attrFloat("epsilon", 1e-3)))
			checkGrad(t, g, "x", "s", "b")
		})
	}
}

// The attention pattern of the Llama fixture: rotary embedding by
// Slice/Neg/Concat, a causal mask by Where, a grouped KV head repeated
// by Unsqueeze/Expand/Reshape, softmax, SiLU gating.
func TestGradAttentionBlock(t *testing.T) {
	g := newTG(17)
	const T, D = 4, 4
	q := g.in("q", nil, 2, 2, T, D)
	k := g.in("k", nil, 2, 1, T, D)
	cos := g.fconst("cos", []int64{T, D}, uniform(-1, 1)(nil2(), T*D)...)
	half := g.op("Slice", []string{q, g.ints("s0", []int64{1}, D/2), g.ints("e0", []int64{1}, 1<<62), g.ints("a0", []int64{1}, 3)}, "hi")
	low := g.op("Slice", []string{q, g.ints("s1", []int64{1}, 0), g.ints("e1", []int64{1}, D/2), g.ints("a1", []int64{1}, 3)}, "lo")
	rot := g.op("Concat", []string{g.op("Neg", []string{half}, "nh"), low}, "rot", attrInt("axis", -1))
	qr := g.op("Add", []string{g.op("Mul", []string{q, cos}, "qc"), g.op("Mul", []string{rot, cos}, "rc")}, "qr")
	ku := g.op("Unsqueeze", []string{k, g.ints("ua", []int64{1}, 2)}, "ku")
	ke := g.op("Expand", []string{ku, g.ints("es", []int64{5}, 1, 1, 2, 1, 1)}, "ke")
	kr := g.op("Reshape", []string{ke, g.ints("rs", []int64{4}, -1, 2, T, D)}, "kr")
	kt := g.op("Transpose", []string{kr}, "kt", attrInts("perm", []int64{0, 1, 3, 2}))
	s := g.op("MatMul", []string{qr, kt}, "scores")
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
	cond := g.op("Equal", []string{g.ints("mask", []int64{T, T}, mask...), g.ints("one", nil, 1)}, "cond")
	sm := g.op("Where", []string{cond, g.fconst("ninf", nil, -1e9), s}, "masked")
	p := g.op("Softmax", []string{sm}, "p", attrInt("axis", -1))
	o := g.op("MatMul", []string{p, kr}, "o")
	silu := g.op("Mul", []string{o, g.op("Sigmoid", []string{o}, "sg")}, "silu")
	g.out(silu)
	checkGrad(t, g, "q", "k")
}

func TestGradMissingRule(t *testing.T) {
	g := newTG(17)
	x := g.in("x", nil, 3, 4)
	y := g.op("Relu", []string{g.op("Cosh", []string{x}, "c")}, "r")
	g.out(g.op("Einsum", []string{y}, "y", attrString("equation", "ij->ji")))
	_, err := VJP(g.model(t, onnxio.Float), []string{"x"})
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
	g := newTG(17)
	x := g.in("x", nil, 2, 3, 4)
	sh := g.op("Shape", []string{x}, "sh")
	d0 := g.op("Gather", []string{sh, g.ints("i0", []int64{1}, 0)}, "d0")
	ci := g.op("Cast", []string{g.op("Cast", []string{d0}, "df", attrInt("to", int64(onnxio.Float)))}, "di", attrInt("to", int64(onnxio.Int64)))
	ns := g.op("Concat", []string{ci, g.ints("m1", []int64{1}, -1)}, "ns", attrInt("axis", 0))
	g.out(g.op("Reshape", []string{g.op("Tanh", []string{x}, "t"), ns}, "y"))
	checkGrad(t, g, "x")
}

// Gradients of hidden tensors (for Taylor scores) equal those of the same
// tensors fed as inputs to the rest of the graph.
func TestGradHidden(t *testing.T) {
	needORT(t)
	full := newTG(17)
	x := full.in("x", nil, 3, 4)
	h := full.op("Tanh", []string{full.op("MatMul", []string{x, full.in("w", nil, 4, 5)}, "xw")}, "h")
	full.out(full.op("Mul", []string{h, full.op("Sigmoid", []string{h}, "s")}, "y"))
	tail := newTG(17)
	th := tail.in("h", nil, 3, 5)
	tail.out(tail.op("Mul", []string{th, tail.op("Sigmoid", []string{th}, "s")}, "y"))
	checkGrad(t, tail, "h")

	fm, err := VJP(full.model(t, onnxio.Double), []string{"h", "w"})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := VJP(tail.model(t, onnxio.Double), []string{"h"})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	xv, wv, seed := uniform(-1, 1)(r, 12), uniform(-1, 1)(r, 20), uniform(-1, 1)(r, 15)
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
