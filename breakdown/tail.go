package breakdown

import (
	"cmp"
	"slices"
)

// DefaultSlowest is how many of the slowest round trips an Accumulator
// keeps unless told otherwise (KeepSlowest).
const DefaultSlowest = 10

// tail keeps the slowest joined round trips seen so far: a min-heap on
// latency of at most keep copies, so a new round trip costs one
// comparison unless it is slower than the fastest kept.
type tail struct {
	keep  int
	trips []RoundTrip // heap: trips[0] is the fastest kept
}

func latency(rt *RoundTrip) int64 { return rt.T1 - rt.T0 }

func (t *tail) add(rt *RoundTrip) {
	if t.keep <= 0 {
		return
	}
	if t.trips == nil {
		t.trips = make([]RoundTrip, 0, t.keep)
	}
	if len(t.trips) < t.keep {
		t.trips = append(t.trips, *rt)
		for i := len(t.trips) - 1; i > 0; {
			p := (i - 1) / 2
			if latency(&t.trips[p]) <= latency(&t.trips[i]) {
				break
			}
			t.trips[p], t.trips[i] = t.trips[i], t.trips[p]
			i = p
		}
		return
	}
	if latency(rt) <= latency(&t.trips[0]) {
		return
	}
	t.trips[0] = *rt
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(t.trips) && latency(&t.trips[l]) < latency(&t.trips[m]) {
			m = l
		}
		if r < len(t.trips) && latency(&t.trips[r]) < latency(&t.trips[m]) {
			m = r
		}
		if m == i {
			return
		}
		t.trips[m], t.trips[i] = t.trips[i], t.trips[m]
		i = m
	}
}

// KeepSlowest sets how many of the slowest joined round trips a keeps (0:
// none); call it before the first Add.
func (a *Accumulator) KeepSlowest(n int) { a.tail.keep = n }

// Slowest returns copies of the slowest joined round trips, slowest first
// (ties: by connection, then sequence).
func (a *Accumulator) Slowest() []RoundTrip {
	out := slices.Clone(a.tail.trips)
	slices.SortFunc(out, func(x, y RoundTrip) int {
		if c := cmp.Compare(latency(&y), latency(&x)); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Conn, y.Conn); c != 0 {
			return c
		}
		return cmp.Compare(x.Seq, y.Seq)
	})
	return out
}
