package session

import (
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/loadgen"
)

// serverCost samples the server's process tree when the measured window
// is decided (the first progress after the warm-up) and when the clients
// are told to stop; the difference over the requests served in between
// (the window's throughput times the time between the samples) is the
// server's cost per request. Closing the connections afterwards is not
// counted.
type serverCost struct {
	pid       int
	mu        sync.Mutex
	a, b      proccost.Sample
	ta, tb    time.Time
	haveA, ok bool
}

// costMeter hooks a serverCost into opts: for a started server, or one
// at addr whose process can be found; nil when neither.
func costMeter(srv *serverproc.Proc, addr string, opts *loadgen.Options) *serverCost {
	c := &serverCost{}
	switch {
	case srv != nil:
		c.pid = srv.PID()
	case addr != "":
		pid, _, err := serverproc.Find(addr)
		if err != nil {
			return nil
		}
		c.pid = pid
	default:
		return nil
	}
	progress, halting := opts.Progress, opts.Halting
	opts.Progress = func(g loadgen.Progress) {
		if !g.Warmup {
			c.first()
		}
		if progress != nil {
			progress(g)
		}
	}
	opts.Halting = func() {
		c.last()
		if halting != nil {
			halting()
		}
	}
	return c
}

func (c *serverCost) first() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.haveA {
		return
	}
	var err error
	c.a, err = proccost.Take(c.pid)
	c.ta, c.haveA = time.Now(), err == nil
}

func (c *serverCost) last() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.haveA {
		return
	}
	var err error
	c.b, err = proccost.Take(c.pid)
	c.tb, c.ok = time.Now(), err == nil
}

// per is the cost per request at rps requests per second; nil when the
// samples are missing (no server process, or the run ended first).
func (c *serverCost) per(rps float64) *proccost.Cost {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok || rps <= 0 {
		return nil
	}
	cost := proccost.Per(c.a, c.b, rps*c.tb.Sub(c.ta).Seconds())
	return &cost
}
