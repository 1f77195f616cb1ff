package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ui shows progress and log lines on stderr. On a terminal a stage is a
// bar redrawn in place; anywhere else (a file, a CI log) it is one line
// when the stage ends, plus one every half minute for long stages, so that
// logs hold no carriage-return frames. A quiet ui shows nothing.
type ui struct {
	mu    sync.Mutex
	w     io.Writer
	quiet bool
	tty   bool
	label string
	start time.Time // of the current stage
	last  time.Time // last drawing or line
	drawn bool
}

func newUI(w io.Writer, quiet bool) *ui {
	return &ui{w: w, quiet: quiet, tty: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// logf prints one line, after ending any bar.
func (u *ui) logf(format string, args ...any) {
	if u.quiet {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.endLocked()
	fmt.Fprintf(u.w, format+"\n", args...)
}

// progress reports done of total for the stage called label.
func (u *ui) progress(label string, done, total int) {
	if u.quiet {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	if label != u.label {
		u.endLocked()
		u.label, u.start, u.last = label, now, time.Time{}
	}
	finished := done >= total
	switch {
	case u.tty && (finished || now.Sub(u.last) >= 100*time.Millisecond):
		fmt.Fprintf(u.w, "\r%s", u.bar(done, total, now))
		u.drawn, u.last = true, now
	case !u.tty && finished:
		fmt.Fprintf(u.w, "%s: %d/%d in %.1fs\n", u.label, done, total, now.Sub(u.start).Seconds())
		u.last = now
	case !u.tty && now.Sub(u.start) > 30*time.Second && now.Sub(u.last) > 30*time.Second:
		fmt.Fprintf(u.w, "%s: %d/%d after %.0fs%s\n", u.label, done, total, now.Sub(u.start).Seconds(), eta(done, total, now.Sub(u.start)))
		u.last = now
	}
	if finished {
		u.endLocked()
		u.label = ""
	}
}

func (u *ui) bar(done, total int, now time.Time) string {
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	el := now.Sub(u.start)
	return fmt.Sprintf("%-24s [%s%s] %d/%d %5.1fs%s", u.label, strings.Repeat("#", n), strings.Repeat(".", width-n), done, total, el.Seconds(), eta(done, total, el))
}

// eta is ", about Ns left" once a stage is far enough along to tell.
func eta(done, total int, el time.Duration) string {
	if done <= 0 || done >= total || el < 2*time.Second {
		return ""
	}
	left := time.Duration(float64(el) * float64(total-done) / float64(done))
	return fmt.Sprintf(", about %s left", left.Round(time.Second))
}

// end finishes a bar in progress with a newline.
func (u *ui) end() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.endLocked()
}

func (u *ui) endLocked() {
	if u.drawn {
		fmt.Fprintln(u.w)
		u.drawn = false
	}
}

// logFunc and progressFunc are the ui's callbacks for library
// configurations, nil when quiet so that libraries skip the work of
// reporting.
func (u *ui) logFunc() func(string, ...any) {
	if u.quiet {
		return nil
	}
	return u.logf
}

func (u *ui) progressFunc() func(string, int, int) {
	if u.quiet {
		return nil
	}
	return u.progress
}
