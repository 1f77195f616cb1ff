// Package memstat reads the resident memory of the process from Linux's
// /proc/self/status: VmRSS now and VmHWM, its peak. Both count everything
// the process holds in RAM: Go's heap, ONNX Runtime's allocations and the
// pages of weight files ONNX Runtime maps, which Go's own statistics miss.
// Elsewhere the functions report 0.
package memstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// Current is the resident set size in bytes (VmRSS).
func Current() int64 { return field("VmRSS:") }

// Peak is the peak resident set size in bytes (VmHWM) since the process
// started or since the last ResetPeak.
func Peak() int64 { return field("VmHWM:") }

func field(name string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte(name))
	if i < 0 {
		return 0
	}
	line := b[i+len(name):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := bytes.Fields(line)
	if len(f) == 0 {
		return 0
	}
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}

// Stages records the peak resident size of consecutive stages of a run:
// Mark(name) attributes the time since the previous Mark (or since
// NewStages) to the stage name. When the process's peak (VmHWM) rose in
// that time, the new peak is the stage's, exactly; otherwise the stage's is
// the largest resident size sampled every few milliseconds, which may miss
// a brief spike below the run's peak. Nothing process-wide is changed.
type Stages struct {
	mu      sync.Mutex
	Peaks   map[string]int64 // by stage; the largest when a stage recurs
	Max     int64            // VmHWM at the last Mark
	sampled int64            // largest VmRSS sampled since the last Mark
	hwm     int64            // VmHWM at the last Mark
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NewStages starts measuring, sampling every interval.
func NewStages(interval time.Duration) *Stages {
	s := &Stages{Peaks: map[string]int64{}, hwm: Peak(), sampled: Current(), stop: make(chan struct{}), done: make(chan struct{})}
	s.Max = s.hwm
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				rss := Current()
				s.mu.Lock()
				s.sampled = max(s.sampled, rss)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// Mark ends a stage called name. A nil Stages does nothing.
func (s *Stages) Mark(name string) {
	if s == nil {
		return
	}
	hwm, rss := Peak(), Current()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := max(s.sampled, rss)
	if hwm > s.hwm {
		p = hwm
	}
	s.Peaks[name] = max(s.Peaks[name], p)
	s.Max = max(s.Max, hwm)
	s.hwm, s.sampled = hwm, rss
}

// Stop ends the sampling; it may be called more than once.
func (s *Stages) Stop() {
	if s == nil {
		return
	}
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Text writes a byte count for people: in GiB, MiB, KiB or bytes.
func Text(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
