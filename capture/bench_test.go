package capture

import (
	"path/filepath"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// BenchmarkCapture compares, per fixture, a plain ORT pass over the whole
// calibration set with a capture of every group's Z and A over the same
// data. The target is capture <= 1.3x plain. capture-reuse is capture as
// later shrink rounds run it, into the last round's memory. Run:
//
//	go test -run '^$' -bench . -benchtime 3x ./capture
func BenchmarkCapture(b *testing.B) {
	paths, _ := filepath.Glob("../testdata/models/*/model*.onnx")
	for _, p := range paths {
		calib := calibOfBench(p)
		if calib == "" {
			continue
		}
		m, err := onnxio.Load(p)
		if err != nil {
			b.Fatal(err)
		}
		data, err := dataset.Load(calib)
		if err != nil {
			b.Fatal(err)
		}
		a, err := rewrite.Analyze(m, rewrite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var pts []Point
		for _, g := range a.Groups {
			if o := g.Observe; o != nil && g.Prunable() {
				pts = append(pts, Point{Tensor: o.Pre, Axis: o.PreAxis, R: o.PreR, B: o.PreB, RMS: o.RMS},
					Point{Tensor: o.Post, Axis: o.PostAxis, R: o.PostR, B: o.PostB, RMS: o.RMS})
			}
		}
		name := filepath.Base(filepath.Dir(p)) + "/" + filepath.Base(p)
		// Both sides include making their session: capture builds its own
		// instrumented copy each time it runs.
		plain := func(b *testing.B, cfg ort.Config) {
			for i := 0; i < b.N; i++ {
				s, err := ort.NewSessionForModel(m, nil, cfg)
				if err != nil {
					b.Fatal(err)
				}
				bound, err := s.Bind(data, "")
				if err != nil {
					b.Fatal(err)
				}
				for batch := range bound.Batches(64) {
					in, _ := ort.Feed(bound, batch)
					if _, err := s.Run(in...); err != nil {
						b.Fatal(err)
					}
				}
				s.Destroy()
			}
		}
		b.Run("plain/"+name, func(b *testing.B) { plain(b, ort.Config{}) })
		// Plain with capture's session setting (no memory pattern), which
		// also speeds up a pass of a few dozen batches.
		b.Run("plain-short/"+name, func(b *testing.B) { plain(b, ort.Config{ShortLived: true}) })
		b.Run("capture/"+name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Run(m, pts, data, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		// As in the shrink loop from the second round on: the matrices of
		// the previous capture are released and written again, so the
		// process does not fault in fresh pages for them.
		b.Run("capture-reuse/"+name, func(b *testing.B) {
			var bufs Buffers
			for i := 0; i < b.N; i++ {
				r, err := Run(m, pts, data, Options{Buffers: &bufs})
				if err != nil {
					b.Fatal(err)
				}
				bufs.Release(r)
			}
		})
	}
}

func calibOfBench(model string) string {
	t := &testing.T{}
	return calibOf(t, filepath.Join(filepath.Dir(model), "meta.json"))
}
