package breakdown

import (
	"github.com/volleyscope/volleyscope/stats"
)

// ComponentSummary is one component over all joined round trips.
type ComponentSummary struct {
	Component Component
	MeanNs    float64
	P50Ns     float64
	P99Ns     float64
	Share     float64 // of the mean latency of the joined round trips
}

// Summarize the components of the joined round trips.
func (r *Result) Summarize() []ComponentSummary {
	var hs [NumComponents]*hdrHist
	for c := range hs {
		hs[c] = newHdr()
	}
	var latSum float64
	n := 0
	for i := range r.Trips {
		t := &r.Trips[i]
		if !t.Joined {
			continue
		}
		n++
		latSum += float64(t.T1 - t.T0)
		for c, v := range t.Ns {
			hs[c].add(v)
		}
	}
	if n == 0 {
		return nil
	}
	meanLat := latSum / float64(n)
	out := make([]ComponentSummary, NumComponents)
	for c := range out {
		l := stats.Summarize(hs[c].h)
		out[c] = ComponentSummary{Component: Component(c), MeanNs: hs[c].sum / float64(n), P50Ns: l.P50, P99Ns: l.P99}
		out[c].Share = out[c].MeanNs / meanLat
	}
	return out
}

// Row returns the components of round trip seq on connection conn, for
// requests.csv.
func (r *Result) Row() func(conn, seq int) ([]int64, bool) {
	type key struct{ conn, seq int }
	byKey := make(map[key]int, len(r.Trips))
	for i, t := range r.Trips {
		byKey[key{t.Conn, t.Seq}] = i
	}
	buf := make([]int64, NumComponents)
	return func(conn, seq int) ([]int64, bool) {
		i, ok := byKey[key{conn, seq}]
		if !ok || !r.Trips[i].Joined {
			return nil, false
		}
		copy(buf, r.Trips[i].Ns[:])
		return buf, true
	}
}
