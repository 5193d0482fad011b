package breakdown

import (
	"time"

	"github.com/volleyscope/volleyscope/stats"
)

// Accumulator summarizes joined round trips one at a time, in flat memory.
type Accumulator struct {
	Joined     int
	Unjoined   int
	Consistent int // joined round trips whose components sum to t1−t0 within the tolerance
	Reasons    map[string]int
	hs         [NumComponents]*hdrHist
	latSum     float64
}

// NewAccumulator returns an empty summary.
func NewAccumulator() *Accumulator {
	a := &Accumulator{Reasons: map[string]int{}}
	for c := range a.hs {
		a.hs[c] = newHdr()
	}
	return a
}

// Add counts one round trip.
func (a *Accumulator) Add(rt *RoundTrip) {
	if !rt.Joined {
		a.Unjoined++
		a.Reasons[rt.Reason]++
		return
	}
	a.Joined++
	if rt.Consistent {
		a.Consistent++
	}
	a.latSum += float64(rt.T1 - rt.T0)
	for c, v := range rt.Ns {
		a.hs[c].add(v)
	}
}

// MeanLatency is the mean t1 − t0 of the joined round trips so far.
func (a *Accumulator) MeanLatency() time.Duration {
	if a.Joined == 0 {
		return 0
	}
	return time.Duration(a.latSum / float64(a.Joined))
}

// Components summarizes each component over the joined round trips, in
// the order of Names; nil when nothing was joined.
func (a *Accumulator) Components() []ComponentSummary {
	if a.Joined == 0 {
		return nil
	}
	n := float64(a.Joined)
	meanLat := a.latSum / n
	out := make([]ComponentSummary, NumComponents)
	for c := range out {
		l := stats.Summarize(a.hs[c].h)
		out[c] = ComponentSummary{Component: Component(c), MeanNs: a.hs[c].sum / n, P50Ns: l.P50, P99Ns: l.P99}
		if meanLat > 0 {
			out[c].Share = out[c].MeanNs / meanLat
		}
	}
	return out
}
