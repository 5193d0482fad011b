package session

import (
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/internal/proccost"
)

// serverCost samples the server's processes when the measured window is
// decided and when the clients are told to stop; the difference over the
// requests served in between (the window's throughput times the time
// between the samples) is the server's cost per request. Closing the
// connections afterwards is not counted. A nil *serverCost (the server's
// processes unknown) measures nothing.
type serverCost struct {
	pids      []int
	mu        sync.Mutex
	a, b      proccost.Sample
	ta, tb    time.Time
	haveA, ok bool
}

func newServerCost(pids []int) *serverCost {
	if len(pids) == 0 {
		return nil
	}
	return &serverCost{pids: pids}
}

// sample is the processes' cost so far.
func (c *serverCost) sample() (proccost.Sample, error) {
	var sum proccost.Sample
	for _, pid := range c.pids {
		s, err := proccost.Take(pid)
		if err != nil {
			return sum, err
		}
		sum = sum.Add(s)
	}
	return sum, nil
}

func (c *serverCost) first() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.haveA {
		return
	}
	var err error
	c.a, err = c.sample()
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
	c.b, err = c.sample()
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
