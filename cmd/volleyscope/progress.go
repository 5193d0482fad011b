package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// ttyEvery is how often a terminal's status line is redrawn in place.
const ttyEvery = 200 * time.Millisecond

// progress shows a run's progress on stderr: on a terminal one status
// line redrawn in place (elapsed, round trips, the intervals' widths and
// an estimate of the time to the targets); nothing on a file or pipe, or
// with --quiet. Notices (note) go to both.
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool
	last  time.Time
	shown bool // a status line is on the terminal
	now   func() time.Time
	// The run's targets, for the estimate (0: none).
	p50Target, p99Target float64
	cap                  time.Duration
	warmup               time.Duration // 0: none
}

// targetOf is the interval target an Options field asks for: its
// default when 0, none when negative.
func targetOf(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return max(v, 0)
}

// aim sets the interval targets and the duration cap the estimate uses,
// and the warm-up (an Options value: 0 the default, negative none) the
// status line counts down.
func (p *progress) aim(p50, p99 float64, cap, warmup time.Duration) {
	p.p50Target, p.p99Target, p.cap = p50, p99, cap
	if warmup == 0 {
		warmup = loadgen.DefaultWarmup
	}
	p.warmup = max(warmup, 0)
}

// eta estimates the time until the intervals reach their targets, from
// a half-width that shrinks as one over the square root of the time
// measured: "" when there is nothing to estimate.
func (p *progress) eta(g loadgen.Progress) string {
	if g.Warmup || g.Measured == 0 || (p.p50Target <= 0 && p.p99Target <= 0) {
		return ""
	}
	var left float64
	for _, t := range []struct{ rel, target float64 }{{g.RelCI, p.p50Target}, {g.P99RelCI, p.p99Target}} {
		if t.target <= 0 {
			continue
		}
		if !(t.rel > 0 && t.rel < 10) {
			return ""
		}
		left = max(left, g.Elapsed.Seconds()*((t.rel/t.target)*(t.rel/t.target)-1))
	}
	if p.cap > 0 && time.Duration(left*1e9) > p.cap-g.Elapsed {
		return fmt.Sprintf(", the %v cap first", p.cap)
	}
	return fmt.Sprintf(", targets in ~%.0fs", max(left, 0))
}

func newProgress(f *os.File, quiet bool) *progress {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	tty := err == nil
	return newProgressTo(f, tty, quiet)
}

func newProgressTo(w io.Writer, tty, quiet bool) *progress {
	p := &progress{w: w, tty: tty, quiet: quiet, now: time.Now}
	p.last = p.now() // the first line comes after one period
	return p
}

func (p *progress) update(g loadgen.Progress) {
	if p.quiet || !p.tty || p.now().Sub(p.last) < ttyEvery {
		return
	}
	p.last = p.now()
	fmt.Fprintf(p.w, "\r\033[K%s", p.status(g))
	p.shown = true
}

// status is the status line: during the warm-up, nothing is measured
// yet, so the line counts the warm-up down instead of showing zeros.
func (p *progress) status(g loadgen.Progress) string {
	if g.Warmup {
		left := p.warmup - g.Elapsed
		if left > 0 {
			return fmt.Sprintf("%5.1fs warming up (%.1f s left)", g.Elapsed.Seconds(), left.Seconds())
		}
		return fmt.Sprintf("%5.1fs warming up (deciding where the measured window starts)", g.Elapsed.Seconds())
	}
	return fmt.Sprintf("%5.1fs measuring: %d round trips, p50 %s %s, p99 %s %s%s", g.Elapsed.Seconds(), g.Measured,
		report.Dur(g.P50), relCI(g.RelCI), report.Dur(g.P99), relCI(g.P99RelCI), p.eta(g))
}

func (p *progress) note(s string) {
	if p.quiet {
		return
	}
	p.clear()
	fmt.Fprintf(p.w, "%s\n", s)
}

func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

func (p *progress) done() { p.clear() }

// relCI renders an interval's relative half-width, or a dash while there
// is none yet.
func relCI(r float64) string {
	if r > 0 && r < 10 {
		return fmt.Sprintf("±%.2f%%", 100*r)
	}
	return "±—"
}
