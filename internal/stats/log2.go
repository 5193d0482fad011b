package stats

import (
	"math/bits"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Log2Bucket is one power-of-two bucket of a histogram: the values in
// [LowNs, HighNs).
type Log2Bucket struct {
	LowNs  int64 `json:"low_ns"`
	HighNs int64 `json:"high_ns"`
	Count  int64 `json:"count"`
}

// Log2 folds h into power-of-two buckets, from the first to the last that
// holds a value (empty ones between kept, as a histogram shows gaps). A
// bucket of h that straddles a power of two goes to the one holding its
// lower end.
func Log2(h *hdrhistogram.Histogram) []Log2Bucket {
	var counts [64]int64
	lo, hi := 64, -1
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		k := 0
		if b.From > 0 {
			k = 63 - bits.LeadingZeros64(uint64(b.From))
		}
		counts[k] += b.Count
		lo, hi = min(lo, k), max(hi, k)
	}
	var out []Log2Bucket
	for k := lo; k <= hi; k++ {
		low := int64(0)
		if k > 0 {
			low = 1 << k
		}
		out = append(out, Log2Bucket{LowNs: low, HighNs: 1 << (k + 1), Count: counts[k]})
	}
	return out
}
