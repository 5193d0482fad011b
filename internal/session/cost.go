package session

import (
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/loadgen"
)

// serverCost samples the server's processes (and their descendants, each
// once) at the first check after the warm-up and when the clients are
// told to stop; the difference over the requests served in between (the
// window's throughput times the time between the samples) is the
// server's cost per request. The first sample is not put off until the
// window's start is decided (after the pilot stretch): in a short run
// that decision may come at the last check, leaving two samples a moment
// apart. Closing the connections afterwards is not counted. A nil
// *serverCost (the server's processes unknown) measures nothing.
type serverCost struct {
	warmup time.Duration
	mu     sync.Mutex
	pids   []int
	// take samples the server's processes: this host's /proc, or an
	// agent's on the server's host.
	take      func() (proccost.Sample, error)
	a, b      proccost.Sample
	ta, tb    time.Time
	haveA, ok bool
}

// newServerCost measures pids, after a warm-up of warmup (the load's
// option: 0 is loadgen's default, negative none).
func newServerCost(pids []int, warmup time.Duration) *serverCost {
	if len(pids) == 0 {
		return nil
	}
	c := &serverCost{pids: pids, warmup: costWarmup(warmup)}
	c.take = func() (proccost.Sample, error) { return proccost.TakeAll(c.pids) }
	return c
}

// newRemoteCost measures a server on another host, sampled by take.
func newRemoteCost(take func() (proccost.Sample, error), warmup time.Duration) *serverCost {
	return &serverCost{take: take, warmup: costWarmup(warmup)}
}

// costWarmup is the load's warm-up option (0: loadgen's default,
// negative: none) as a duration.
func costWarmup(warmup time.Duration) time.Duration {
	switch {
	case warmup == 0:
		return loadgen.DefaultWarmup
	case warmup < 0:
		return 0
	}
	return warmup
}

// add measures more processes (workers found once the clients had
// connected); only before the first sample.
func (c *serverCost) add(pids []int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.haveA {
		c.pids = append(c.pids, pids...)
	}
}

// progress takes the first sample at the first check past the warm-up.
func (c *serverCost) progress(g loadgen.Progress) {
	if c != nil && (!g.Warmup || g.Elapsed >= c.warmup) {
		c.first()
	}
}

func (c *serverCost) first() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.haveA {
		return
	}
	var err error
	c.a, err = c.take()
	c.ta, c.haveA = time.Now(), err == nil
}

func (c *serverCost) last() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.haveA {
		return
	}
	var err error
	c.b, err = c.take()
	c.tb, c.ok = time.Now(), err == nil
}

// per is the cost per request of the run load; nil when the samples are
// missing (no server process, or the run ended first), and nil with the
// reason, for the run's warnings, when they do not make a valid figure
// (proccost.Check).
func (c *serverCost) per(load *loadgen.Summary) (*proccost.Cost, string) {
	if c == nil {
		return nil, ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok || load.ThroughputRPS <= 0 {
		return nil, ""
	}
	span := c.tb.Sub(c.ta)
	if why := proccost.Check(span, load.Window.Span()); why != "" {
		return nil, "the server's CPU time and context switches per request are not given: " + why
	}
	cost := proccost.Per(c.a, c.b, load.ThroughputRPS*span.Seconds())
	return &cost, ""
}
