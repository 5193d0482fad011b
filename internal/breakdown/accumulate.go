package breakdown

import (
	"math/bits"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// Accumulator summarizes joined round trips one at a time, in flat memory.
//
// Beside each component's distribution it keeps, per fine latency bucket,
// the count, the latency sum and each component's sum. Buckets are
// log-spaced, latBucketsPerOctave to a doubling (each at most 1/16 = 6.25%
// wide), 960 in all (about 100 KiB, whatever the run's length). Bands
// (≤ p50, p50–p90, p90–p99, > p99 of the joined round trips' latency) are
// made at the end by merging buckets at the final percentiles, so a round
// trip's band is decided by the whole run's distribution, not by what had
// been seen when it arrived. The cost is resolution: a bucket straddling a
// percentile goes whole to the band holding its middle rank, so a band's
// edges are exact to a bucket's width and its count to a bucket's count.
//
// It also keeps the slowest round trips (see Tail).
type Accumulator struct {
	Joined     int
	Unjoined   int
	Consistent int // joined round trips whose components sum to t1−t0 within the tolerance
	Reasons    map[string]int
	hs         [NumComponents]*hdrHist
	latSum     float64
	lat        *latBuckets
	tail       tail
	conc       concentration
}

// latBucketsPerOctave is the latency buckets per doubling of the latency.
const latBucketsPerOctave = 16

// numLatBuckets covers 0 … 2⁶³ ns: 16 exact buckets below 16 ns, then 16
// per octave.
const numLatBuckets = latBucketsPerOctave * 60

// latBuckets are the per-bucket sums behind the bands.
type latBuckets struct {
	n    [numLatBuckets]int64
	lat  [numLatBuckets]float64
	comp [numLatBuckets][NumComponents]float64
}

// latBucket is the bucket of a latency in ns.
func latBucket(v int64) int {
	if v < latBucketsPerOctave {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 1 // ≥ 4
	top := int(v >> (e - 4))       // 16 … 31
	return latBucketsPerOctave*(e-3) + top - 16
}

// latBucketLow is the least latency of bucket i, in ns; bucket i holds
// [latBucketLow(i), latBucketLow(i+1)).
func latBucketLow(i int) int64 {
	if i < latBucketsPerOctave {
		return int64(i)
	}
	e := i/latBucketsPerOctave + 3
	top := int64(i%latBucketsPerOctave + 16)
	return top << (e - 4)
}

// NewAccumulator returns an empty summary that keeps the DefaultSlowest
// slowest round trips.
func NewAccumulator() *Accumulator {
	a := &Accumulator{Reasons: map[string]int{}, lat: &latBuckets{}}
	for c := range a.hs {
		a.hs[c] = newHdr()
	}
	a.tail.keep = DefaultSlowest
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
	l := rt.T1 - rt.T0
	a.latSum += float64(l)
	k := latBucket(l)
	a.lat.n[k]++
	a.lat.lat[k] += float64(l)
	for c, v := range rt.Ns {
		a.hs[c].add(v)
		a.lat.comp[k][c] += float64(v)
	}
	a.tail.add(rt)
	a.conc.add(a, rt)
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
		l := stats.Summarize(a.hs[c].hist())
		out[c] = ComponentSummary{Component: Component(c), MeanNs: a.hs[c].sum / n, P50Ns: l.P50, P99Ns: l.P99}
		if meanLat > 0 {
			out[c].Share = out[c].MeanNs / meanLat
		}
	}
	return out
}

// Band is the breakdown of the joined round trips whose latency falls in
// one band of the latency distribution.
type Band struct {
	// Name is le_p50, p50_p90, p90_p99 or gt_p99.
	Name string
	// LowNs and HighNs bound the band's latencies: [LowNs, HighNs), at the
	// edges of the buckets it was merged from.
	LowNs, HighNs int64
	Count         int64
	MeanLatencyNs float64
	// MeanNs is each component's mean over the band's round trips, in the
	// order of Names; Share is MeanNs over MeanLatencyNs.
	MeanNs [NumComponents]float64
	Share  [NumComponents]float64
}

// BandNames are the bands in order, with the share of the round trips
// below each one's upper edge.
var BandNames = []string{"le_p50", "p50_p90", "p90_p99", "gt_p99"}

var bandTop = []float64{0.5, 0.9, 0.99, 2}

// Bands is the breakdown per latency band, the four of BandNames in order
// (a band no bucket fell in has Count 0); nil when nothing was joined.
func (a *Accumulator) Bands() []Band {
	if a.Joined == 0 {
		return nil
	}
	out := make([]Band, len(BandNames))
	for i := range out {
		out[i].Name = BandNames[i]
	}
	n := float64(a.Joined)
	var below int64
	for k := range numLatBuckets {
		c := a.lat.n[k]
		if c == 0 {
			continue
		}
		mid := (float64(below) + float64(c)/2) / n
		below += c
		bi := 0
		for mid > bandTop[bi] {
			bi++
		}
		b := &out[bi]
		if b.Count == 0 {
			b.LowNs = latBucketLow(k)
		}
		b.HighNs = latBucketLow(k + 1)
		b.Count += c
		b.MeanLatencyNs += a.lat.lat[k]
		for ci := range NumComponents {
			b.MeanNs[ci] += a.lat.comp[k][ci]
		}
	}
	for i := range out {
		b := &out[i]
		if b.Count == 0 {
			continue
		}
		b.MeanLatencyNs /= float64(b.Count)
		for ci := range NumComponents {
			b.MeanNs[ci] /= float64(b.Count)
			if b.MeanLatencyNs > 0 {
				b.Share[ci] = b.MeanNs[ci] / b.MeanLatencyNs
			}
		}
	}
	return out
}
