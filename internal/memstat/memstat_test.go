package memstat

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// A stage that touches 256 MiB has that much more peak than the one
// before it; the peak is the process's (VmHWM) when it rose.
func TestStages(t *testing.T) {
	if Current() == 0 {
		t.Skip("no /proc/self/status")
	}
	debug.FreeOSMemory()
	s := NewStages(time.Millisecond)
	defer s.Stop()
	time.Sleep(5 * time.Millisecond)
	s.Mark("idle")
	const n = 256 << 20
	b := make([]byte, n)
	for i := range b {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	s.Mark("big")
	if s.Peaks["big"] < s.Peaks["idle"]+n*9/10 {
		t.Errorf("peaks %v: the 256 MiB stage is not 256 MiB above the idle one", s.Peaks)
	}
	if s.Max > Peak() || s.Max < s.Peaks["big"] {
		t.Errorf("Max %d, VmHWM %d, stage peak %d", s.Max, Peak(), s.Peaks["big"])
	}
	s.Stop() // twice is fine
}
