package breakdown

// ComponentSummary is one component over all joined round trips.
type ComponentSummary struct {
	Component Component
	MeanNs    float64
	P50Ns     float64
	P99Ns     float64
	Share     float64 // of the mean latency of the joined round trips
}

// Summarize the components of the joined round trips.
func (r *RoundTrips) Summarize() []ComponentSummary {
	a := NewAccumulator()
	for i := range r.Trips {
		if r.Trips[i].Joined {
			a.Add(&r.Trips[i])
		}
	}
	return a.Components()
}

// Row returns the components of round trip seq on connection conn, for
// requests.csv.
func (r *RoundTrips) Row() func(conn, seq int) ([]int64, bool) {
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
