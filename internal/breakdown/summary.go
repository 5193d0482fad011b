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
