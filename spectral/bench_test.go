package spectral

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
)

// benchData mimics captured activations: rank-32 signals plus noise as
// pre-activations, GELU as the nonlinearity.
func benchData(m, n int) (*mat.Dense, *mat.Dense) {
	rng := newRand(2026, uint64(n))
	z := lowRank(rng, m, n, 32, 0.5)
	return z, applyFn(z, gelu)
}

// peakMeter samples the live heap every 5 ms (runtime/metrics, no
// stop-the-world) and reads the process's peak RSS (VmHWM) after resetting
// it through /proc/self/clear_refs.
type peakMeter struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	peakHeap uint64
}

func startPeak() *peakMeter {
	runtime.GC()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	p := &peakMeter{stop: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > p.peakHeap {
				p.peakHeap = v
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *peakMeter) done(b *testing.B) {
	close(p.stop)
	p.wg.Wait()
	b.ReportMetric(float64(p.peakHeap)/(1<<20), "peak-heap-MB")
	if rss := vmHWM(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MB")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func vmHWM() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkScore is the benchmark: M = 1024 samples, k = 10, s = 2.
// Peak heap and RSS include the inputs (2 x 8*M*n bytes).
func BenchmarkScore(b *testing.B) {
	for _, n := range []int{1024, 4096, 11008} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			z, a := benchData(1024, n)
			o := DefaultOptions()
			b.ReportAllocs()
			pm := startPeak()
			cpu0 := cpuTime()
			b.ResetTimer()
			var r *Result
			for i := 0; i < b.N; i++ {
				var err error
				if r, err = Score(z, a, o); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// CPU seconds of the process per op: with other jobs on the
			// machine, wall time overstates; CPU/threads is the floor.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			pm.done(b)
			b.ReportMetric(r.Timings.GraphX.Seconds()+r.Timings.GraphY.Seconds(), "knn-s")
			b.ReportMetric(r.Timings.Eigen.Seconds(), "eigen-s")
			b.ReportMetric(float64(r.Iterations), "lanczos-steps")
			b.ReportMetric(float64(r.CGIterations), "cg-iters")
		})
	}
}

// BenchmarkKNNKernel times one exact kNN graph (k = 10) per Gram kernel at
// M = 1024, n = 2048: what the C kernels buy over pure Go.
func BenchmarkKNNKernel(b *testing.B) {
	z, _ := benchData(1024, 2048)
	for _, kern := range availableKernels() {
		b.Run(kern, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				ix, err := newKNNIndex(z, 0)
				if err != nil {
					b.Fatal(err)
				}
				ix.kernel = kern
				ix.noC = kern == "go"
				ix.query(10)
			}
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}
