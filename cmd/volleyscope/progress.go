package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/report"
)

// Progress periods: a terminal's status line is redrawn in place; a file
// or pipe gets a plain line now and then, never carriage returns.
const (
	ttyEvery  = 200 * time.Millisecond
	lineEvery = 5 * time.Second
)

// progress shows a run's progress on stderr: on a terminal one status line
// redrawn in place, elsewhere (a file, a pipe) a line every lineEvery;
// nothing with --quiet.
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool
	every time.Duration
	last  time.Time
	shown bool // a status line is on the terminal
	now   func() time.Time
}

func newProgress(f *os.File, quiet bool) *progress {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	tty := err == nil
	return newProgressTo(f, tty, quiet)
}

func newProgressTo(w io.Writer, tty, quiet bool) *progress {
	p := &progress{w: w, tty: tty, quiet: quiet, every: lineEvery, now: time.Now}
	if tty {
		p.every = ttyEvery
	}
	p.last = p.now() // the first line comes after one period
	return p
}

func (p *progress) update(g loadgen.Progress) {
	if p.quiet || p.now().Sub(p.last) < p.every {
		return
	}
	p.last = p.now()
	phase := "measuring"
	if g.Warmup {
		phase = "warming up"
	}
	line := fmt.Sprintf("%5.1fs %s: %d round trips, p50 %s %s, p99 %s %s", g.Elapsed.Seconds(), phase, g.Measured,
		report.Dur(g.P50), relCI(g.RelCI), report.Dur(g.P99), relCI(g.P99RelCI))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	fmt.Fprintf(p.w, "%s\n", line)
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
