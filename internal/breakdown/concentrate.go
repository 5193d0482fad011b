package breakdown

import (
	"cmp"
	"slices"
)

// concentration counts, per connection and per server thread, the round
// trips slower than the running p99: the upper edge of the latency bucket
// holding the p99 of the joined round trips so far (so up to 6.25% above
// it), recomputed every runningP99Every round trips.
// The count is streaming and costs two map updates a round trip; what it
// gives up is that the first round trips are judged against an estimate
// made from few (none are counted before runningP99Every).
type concentration struct {
	p99    int64 // the running p99's bucket edge, 0 until first computed
	slow   int64
	conns  map[int]*slowCount
	thread map[uint32]*slowCount
}

const runningP99Every = 1024

type slowCount struct{ slow, total int64 }

func (c *concentration) add(a *Accumulator, rt *RoundTrip) {
	if c.conns == nil {
		c.conns, c.thread = map[int]*slowCount{}, map[uint32]*slowCount{}
	}
	if a.Joined%runningP99Every == 0 {
		c.p99 = a.lat.quantileHigh(0.99, int64(a.Joined))
	}
	slow := c.p99 > 0 && latency(rt) >= c.p99
	count := func(s *slowCount) {
		s.total++
		if slow {
			s.slow++
		}
	}
	sc := c.conns[rt.Conn]
	if sc == nil {
		sc = &slowCount{}
		c.conns[rt.Conn] = sc
	}
	count(sc)
	st := c.thread[rt.ServerTID]
	if st == nil {
		st = &slowCount{}
		c.thread[rt.ServerTID] = st
	}
	count(st)
	if slow {
		c.slow++
	}
}

// forget lets go of an ended connection's counts unless it had a slow
// round trip: only those can be among the connections Concentration
// names.
func (c *concentration) forget(conn int) {
	if sc := c.conns[conn]; sc != nil && sc.slow == 0 {
		delete(c.conns, conn)
	}
}

// quantileHigh is the upper edge of the bucket holding quantile q of the
// n round trips counted: a round trip at least this slow is beyond the
// quantile whatever its place in that bucket.
func (l *latBuckets) quantileHigh(q float64, n int64) int64 {
	rank := int64(q * float64(n))
	var below int64
	for k := range numLatBuckets {
		below += l.n[k]
		if below > rank {
			return latBucketLow(k + 1)
		}
	}
	return 0
}

// SlowShare is how many of the round trips of one connection or one server
// thread were slower than the running p99 (see Accumulator.Concentration).
type SlowShare struct {
	Key   int64 // connection id, or server thread id
	Slow  int64
	Total int64
}

// Concentration says where the slow round trips concentrate: the top
// connections and server threads by their count of round trips slower than
// the p99 of the joined round trips so far when each was joined (a running
// estimate, recomputed every 1024 round trips; the first 1024 are not
// judged), most first (ties by key), and how many were slow in all.
func (a *Accumulator) Concentration(top int) (conns, threads []SlowShare, slow int64) {
	c := &a.conc
	pick := func(all []SlowShare) []SlowShare {
		all = slices.DeleteFunc(all, func(s SlowShare) bool { return s.Slow == 0 })
		slices.SortFunc(all, func(x, y SlowShare) int {
			if d := cmp.Compare(y.Slow, x.Slow); d != 0 {
				return d
			}
			return cmp.Compare(x.Key, y.Key)
		})
		return all[:min(top, len(all))]
	}
	var cs, ts []SlowShare
	for k, v := range c.conns {
		cs = append(cs, SlowShare{Key: int64(k), Slow: v.slow, Total: v.total})
	}
	for k, v := range c.thread {
		ts = append(ts, SlowShare{Key: int64(k), Slow: v.slow, Total: v.total})
	}
	return pick(cs), pick(ts), c.slow
}
