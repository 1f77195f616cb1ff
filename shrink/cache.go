package shrink

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// With Config.PruneCache a model's KV cache inputs and outputs lose the
// pruned heads, so data for the cache inputs must lose them too before it
// feeds a pruned model: the calibration rows each round captures on, and
// the evaluation data.

// adapt returns d with every array named after a graph input that keep
// lists sliced along that input's axis (d itself when nothing is).
func adapt(d *dataset.Set, keep map[string]rewrite.AxisKeep) (*dataset.Set, error) {
	if d == nil || len(keep) == 0 {
		return d, nil
	}
	out := &dataset.Set{Path: d.Path}
	for _, a := range d.Arrays {
		if k, ok := keep[a.Name]; ok {
			s, err := sliceArray(a, k)
			if err != nil {
				return nil, fmt.Errorf("%s: cache input %q: %w", d.Path, a.Name, err)
			}
			a = s
		}
		out.Arrays = append(out.Arrays, a)
	}
	return out, nil
}

// sliceArray keeps positions k.Keep of axis k.Axis of a float array.
func sliceArray(a *dataset.Array, k rewrite.AxisKeep) (*dataset.Array, error) {
	if k.Axis <= 0 || k.Axis >= a.Rank() {
		return nil, fmt.Errorf("axis %d of an array of shape %v", k.Axis, a.Shape)
	}
	outer, inner := 1, 1
	for _, d := range a.Shape[:k.Axis] {
		outer *= d
	}
	for _, d := range a.Shape[k.Axis+1:] {
		inner *= d
	}
	n := a.Shape[k.Axis]
	for _, p := range k.Keep {
		if p < 0 || p >= n {
			return nil, fmt.Errorf("position %d of axis %d, which has %d", p, k.Axis, n)
		}
	}
	shape := append([]int(nil), a.Shape...)
	shape[k.Axis] = len(k.Keep)
	switch v := a.Data().(type) {
	case []float32:
		return dataset.New(a.Name, shape, gather(v, outer, n, inner, k.Keep))
	case []float64:
		return dataset.New(a.Name, shape, gather(v, outer, n, inner, k.Keep))
	case []uint16:
		return dataset.NewFloat16(a.Name, shape, gather(v, outer, n, inner, k.Keep))
	}
	return nil, fmt.Errorf("element type %T: a KV cache is float", a.Data())
}

func gather[T any](v []T, outer, n, inner int, keep []int) []T {
	out := make([]T, 0, outer*len(keep)*inner)
	for o := 0; o < outer; o++ {
		for _, p := range keep {
			out = append(out, v[(o*n+p)*inner:(o*n+p+1)*inner]...)
		}
	}
	return out
}

// cacheData brings the data that feeds the current model up to date with
// plan: the calibration and evaluation sets with their cache inputs sliced.
func (r *run) cacheData(plan rewrite.Plan) error {
	if !r.cfg.PruneCache {
		return nil
	}
	keep, err := r.orig.IOKeep(plan)
	if err != nil {
		return err
	}
	if r.calibCur, err = adapt(r.calib, keep); err != nil {
		return err
	}
	r.evalCur, err = adapt(r.cfg.Eval, keep)
	return err
}

// noteCache records, in the report, how the pruned model's inputs and
// outputs differ from the input model's (KV caches with PruneCache).
func (r *run) noteCache() {
	before := map[string]string{}
	describe := func(m *onnxio.Model, f func(name, s string)) {
		for _, v := range append(append(m.Graph().GetInput()[:0:0], m.Graph().GetInput()...), m.Graph().GetOutput()...) {
			dt, shape, _ := onnxio.TensorType(v)
			f(v.GetName(), fmt.Sprintf("%s %v", dt, shape))
		}
	}
	describe(r.in, func(name, s string) { before[name] = s })
	describe(r.cur, func(name, s string) {
		if b, ok := before[name]; ok && b != s {
			r.rep.CacheIO = append(r.rep.CacheIO, fmt.Sprintf("%s: %s -> %s", name, b, s))
		}
	})
	if len(r.rep.CacheIO) > 0 {
		r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("%d KV cache inputs and outputs lost heads, so the written model takes and returns a smaller cache (see cache_io)", len(r.rep.CacheIO)))
	}
}
