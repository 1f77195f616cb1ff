package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// needORT fails the test (never skips) when ONNX Runtime is missing.
func needORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(ort.Config{}); err != nil {
		t.Fatalf("ONNX Runtime is required for this test (run scripts/setup-ort.sh): %v", err)
	}
}

// testRT runs tests on one thread: results are then reproducible and the
// race detector has less to watch.
var testRT = ort.Config{Threads: 1}

func tensorOf(name string, dt onnxio.DataType, dims []int64, v []float64) ort.Tensor {
	if dt == onnxio.Double {
		return ort.Tensor{Name: name, DType: dt, Shape: dims, Data: append([]float64{}, v...)}
	}
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return ort.Tensor{Name: name, DType: dt, Shape: dims, Data: f}
}

func float64sOf(t ort.Tensor) []float64 {
	switch d := t.Data.(type) {
	case []float64:
		return d
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	}
	panic(fmt.Sprintf("tensor %s holds %T", t.Name, t.Data))
}

// notImplemented reports ORT's refusal to run an op in a type.
func notImplemented(err error) bool {
	s := err.Error()
	return strings.Contains(s, "NOT_IMPLEMENTED") || strings.Contains(s, "Could not find an implementation") ||
		strings.Contains(s, "types are incompatible")
}

// checkGrad compares the VJP graph's gradients of wrt with central finite
// differences of L = sum_o <R_o, o> for random R, in float64 when ORT runs
// every op in double precision and in float32 otherwise.
func checkGrad(t *testing.T, g *testgraph.Graph, wrt ...string) {
	t.Helper()
	checkGradIn(t, g, onnxio.Double, wrt...)
}

// checkGradIn is checkGrad starting from element type dt.
func checkGradIn(t *testing.T, g *testgraph.Graph, dt onnxio.DataType, wrt ...string) {
	t.Helper()
	needORT(t)
	for {
		err := tryCheckGrad(t, g, dt, wrt)
		if err == nil {
			return
		}
		if dt == onnxio.Double && notImplemented(err) {
			dt = onnxio.Float
			continue
		}
		t.Fatal(err)
	}
}

func tryCheckGrad(t *testing.T, g *testgraph.Graph, dt onnxio.DataType, wrt []string) error {
	t.Helper()
	m := g.Model(t, dt)
	vm, err := VJP(m, wrt)
	if err != nil {
		return err
	}
	fwd, err := ort.NewSessionForModel(m, nil, testRT)
	if err != nil {
		return err
	}
	defer fwd.Destroy()
	bwd, err := ort.NewSessionForModel(vm, nil, testRT)
	if err != nil {
		return err
	}
	defer bwd.Destroy()
	r := rand.New(rand.NewPCG(1, 2))
	vals := map[string][]float64{}
	var feed []ort.Tensor
	dims := map[string][]int64{}
	for _, in := range g.Draw(r) {
		vals[in.Name] = in.Values
		dims[in.Name] = in.Dims
		feed = append(feed, tensorOf(in.Name, dt, in.Dims, in.Values))
	}
	outs, err := fwd.Run(feed...)
	if err != nil {
		return err
	}
	seeds := map[string][]float64{}
	bfeed := append([]ort.Tensor{}, feed...)
	for _, o := range outs {
		s := testgraph.Uniform(-1, 1)(r, len(float64sOf(o)))
		seeds[o.Name] = s
		bfeed = append(bfeed, tensorOf(SeedName(o.Name), o.DType, o.Shape, s))
	}
	res, err := bwd.Run(bfeed...)
	if err != nil {
		return err
	}
	grads := map[string][]float64{}
	for _, o := range res {
		if strings.HasPrefix(o.Name, "grad:") {
			grads[strings.TrimPrefix(o.Name, "grad:")] = float64sOf(o)
		}
	}
	loss := func(fd []ort.Tensor) float64 {
		outs, err := fwd.Run(fd...)
		if err != nil {
			t.Fatal(err)
		}
		var l float64
		for _, o := range outs {
			for i, y := range float64sOf(o) {
				l += seeds[o.Name][i] * y
			}
		}
		return l
	}
	h, tol := 1e-6, 1e-6
	if dt == onnxio.Float {
		h, tol = 1e-2, 2e-2
	}
	for _, w := range wrt {
		gv := grads[w]
		if len(gv) != len(vals[w]) {
			return fmt.Errorf("gradient of %s has %d elements, want %d", w, len(gv), len(vals[w]))
		}
		scale := 0.0
		for _, x := range gv {
			scale += math.Abs(x)
		}
		scale /= float64(len(gv))
		idx := r.Perm(len(gv))
		if len(idx) > 48 {
			idx = idx[:48]
		}
		for _, i := range idx {
			fd := func(delta float64) float64 {
				in := make([]ort.Tensor, len(feed))
				for k, tt := range feed {
					if tt.Name == w {
						v := append([]float64{}, vals[w]...)
						v[i] += delta
						in[k] = tensorOf(w, dt, dims[w], v)
					} else {
						in[k] = tt
					}
				}
				return loss(in)
			}
			num := (fd(h) - fd(-h)) / (2 * h)
			if d := math.Abs(num - gv[i]); d > tol*(math.Abs(num)+math.Abs(gv[i])+scale+1e-12) {
				return fmt.Errorf("%s: d/d%s[%d]: backward %.8g, finite difference %.8g (%s)", m.Graph().GetNode()[len(m.Graph().GetNode())-1].GetOpType(), w, i, gv[i], num, dt)
			}
		}
	}
	t.Logf("%d gradients checked in %s", len(wrt), dt)
	return nil
}

func nil2() *rand.Rand { return rand.New(rand.NewPCG(7, 7)) }
