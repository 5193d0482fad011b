package breakdown

import (
	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// hdrHist keeps the exact sum beside the histogram, whose mean is only as
// precise as its buckets. Most components of a round trip are zero, and
// each joined round trip adds every component: the zeros are counted
// apart and recorded in one call when the histogram is read (hist).
type hdrHist struct {
	h     *hdrhistogram.Histogram
	sum   float64
	zeros int64
}

func newHdr() *hdrHist { return &hdrHist{h: stats.NewHistogram()} }

func (h *hdrHist) add(v int64) {
	h.sum += float64(v)
	if v <= 0 {
		h.zeros++
		return
	}
	_ = h.h.RecordValue(v)
}

// hist is the histogram of every value added.
func (h *hdrHist) hist() *hdrhistogram.Histogram {
	if h.zeros > 0 {
		_ = h.h.RecordValues(0, h.zeros)
		h.zeros = 0
	}
	return h.h
}
