package breakdown

import (
	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// hdrHist keeps the exact sum beside the histogram, whose mean is only as
// precise as its buckets.
type hdrHist struct {
	h   *hdrhistogram.Histogram
	sum float64
}

func newHdr() *hdrHist { return &hdrHist{h: stats.NewHistogram()} }

func (h *hdrHist) add(v int64) {
	h.sum += float64(v)
	_ = h.h.RecordValue(max(v, 0))
}
