package shrink

import (
	"strings"
	"testing"
)

// A latency target whose final timing lands well above the goal the
// search met is reported, with both numbers; one within the noise is not.
func TestCheckLatencyTarget(t *testing.T) {
	for _, c := range []struct {
		after float64
		warn  bool
	}{{0.62, false}, {0.70, true}} {
		r := &run{cfg: Config{Kind: TargetLatency, Target: 0.4, LatencyBatch: 64}, rep: &Report{Landed: 0.45}}
		r.rep.LatencyBefore = []Latency{{Batch: 1, Median: 1, Min: 1}, {Batch: 64, Median: 10, Min: 10}}
		r.rep.LatencyAfter = []Latency{{Batch: 1, Median: 0.9, Min: 0.9}, {Batch: 64, Median: 11 * c.after, Min: 10 * c.after}}
		r.checkLatencyTarget()
		got := len(r.rep.Warnings) == 1 && strings.Contains(r.rep.Warnings[0], "0.700") && strings.Contains(r.rep.Warnings[0], "0.550")
		if c.warn != got || (!c.warn && len(r.rep.Warnings) > 0) {
			t.Errorf("final ratio %.2f: warnings %q", c.after, r.rep.Warnings)
		}
	}
}
