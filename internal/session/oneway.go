package session

import (
	"math"
	"slices"
	"sync"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
)

// oneWay accumulates, over the joined round trips of a run across two
// hosts, each direction's one-way time and the check that none came out
// negative beyond the clock estimate's uncertainty at its time. The
// crossing stretch of a direction is its device-to-receive part where
// the packet hooks split it (the sender's stack and the receiver's are
// each on one host), else the whole gap from send entry to data ready.
type oneWay struct {
	mu        sync.Mutex
	halfWidth func(tA int64) (int64, bool) // the estimate's uncertainty at a time of this host's clock
	dir       [2]oneWayDir
	rtt       float64 // sum of client_net + server_net
	n         int64
}

type oneWayDir struct {
	sum      float64
	min      int64
	checked  int64
	negative int64
	halves   []int64 // a bounded sample of the half-widths met, for the median
}

const oneWayHalves = 4096

func newOneWay(halfWidth func(int64) (int64, bool)) *oneWay {
	return &oneWay{halfWidth: halfWidth, dir: [2]oneWayDir{{min: math.MaxInt64}, {min: math.MaxInt64}}}
}

// add takes one round trip (joined or not).
func (o *oneWay) add(rt *breakdown.RoundTrip) {
	if !rt.Joined {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	b := &rt.Bounds
	// The direction's gap and its crossing stretch, raw (before the
	// join clamps a negative gap to 0).
	gaps := [2][2]int64{{b[breakdown.ClientNet], b[breakdown.ClientNet+1]}, {b[breakdown.ServerNet], b[breakdown.ServerNet+1]}}
	o.n++
	for d := range 2 {
		from, to := gaps[d][0], gaps[d][1]
		w := &o.dir[d]
		w.sum += float64(to - from)
		w.min = min(w.min, to-from)
		o.rtt += float64(to - from)
		cf, ct := from, to
		if rt.Xmit[d] != 0 {
			cf, ct = rt.Xmit[d], rt.Recv[d]
		}
		h, ok := o.halfWidth(cf)
		if !ok {
			continue
		}
		w.checked++
		if ct-cf < -h {
			w.negative++
		}
		if len(w.halves) < oneWayHalves {
			w.halves = append(w.halves, h)
		} else {
			w.halves[w.checked%oneWayHalves] = h
		}
	}
}

// fill puts what was accumulated into t.
func (o *oneWay) fill(t *report.TwoHosts) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for d, w := range []*report.OneWay{&t.Request, &t.Reply} {
		x := &o.dir[d]
		if o.n == 0 {
			continue
		}
		w.MeanNs, w.MinNs, w.Checked, w.Negative = x.sum/float64(o.n), x.min, x.checked, x.negative
		if len(x.halves) > 0 {
			hs := slices.Clone(x.halves)
			slices.Sort(hs)
			w.UncertaintyNs = hs[len(hs)/2]
		}
	}
	if o.n > 0 {
		t.NetRTTNs = o.rtt / float64(o.n)
	}
}
