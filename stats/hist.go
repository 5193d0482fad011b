package stats

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// NewHistogram makes the histogram every latency goes into: 1 ns to 100 s
// at 3 significant digits (0.1% resolution).
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, 100e9, 3) }

// Latency summarizes a latency histogram, in nanoseconds.
type Latency struct {
	Count int64
	Mean  float64
	P50   float64
	P90   float64
	P99   float64
	P999  float64
	P9999 float64
	Max   float64
}

// Summarize reads the usual percentiles off h.
func Summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	q := func(p float64) float64 { return float64(h.ValueAtQuantile(p)) }
	return Latency{
		Count: h.TotalCount(), Mean: h.Mean(),
		P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), P9999: q(99.99),
		Max: float64(h.Max()),
	}
}

// WriteLog2Hist writes h as power-of-two buckets with bars, the classic
// terminal latency histogram; values are in ns and shown in unit ("ns" or
// "us").
func WriteLog2Hist(w io.Writer, h *hdrhistogram.Histogram, unit string) error {
	div := 1.0
	if unit == "us" {
		div = 1e3
	}
	var counts [64]int64
	top, low := 0, 64
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		v := uint64(math.Max(float64(b.From)/div, 0))
		k := bits.Len64(v)
		counts[k] += b.Count
		top, low = max(top, k), min(low, k)
	}
	var peak int64
	for _, c := range counts {
		peak = max(peak, c)
	}
	if peak == 0 {
		_, err := fmt.Fprintln(w, "(empty)")
		return err
	}
	for k := low; k <= top; k++ {
		lo, hi := uint64(0), uint64(1)
		if k > 0 {
			lo, hi = 1<<(k-1), 1<<k-1
		}
		bar := strings.Repeat("*", int(counts[k]*40/peak))
		if _, err := fmt.Fprintf(w, "%10d -> %-10d %s : %-10d |%-40s|\n", lo, hi, unit, counts[k], bar); err != nil {
			return err
		}
	}
	return nil
}
