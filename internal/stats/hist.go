package stats

import (
	"fmt"
	"io"
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
// terminal latency histogram (bcc's "lo -> hi : count |***|" layout). h
// holds nanoseconds; unit ("ns", "us", "ms" or "s") is the scale the
// buckets are drawn in, so bucket k > 0 holds values in [2^(k-1), 2^k−1]
// of that unit and bucket 0 holds values below one unit. Rows run from the
// lowest to the highest non-empty bucket, empty ones between included.
func WriteLog2Hist(w io.Writer, h *hdrhistogram.Histogram, unit string) error {
	div, ok := unitNs[unit]
	if !ok {
		return fmt.Errorf("write log2 histogram: unknown unit %q (want ns, us, ms or s)", unit)
	}
	var counts [65]int64 // bits.Len64 is 0..64
	top, low := 0, len(counts)
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		// An HDR bar never straddles a power of two in ns (its width is a
		// power of two and aligned), so its lower edge places it.
		k := bits.Len64(uint64(max(b.From, 0)) / div)
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
	if _, err := fmt.Fprintf(w, "%24s : %-10s |%-40s|\n", unit, "count", "distribution"); err != nil {
		return err
	}
	for k := low; k <= top; k++ {
		lo, hi := uint64(0), uint64(0)
		if k > 0 {
			lo = 1 << (k - 1)
			hi = lo + (lo - 1) // 2^k−1 without overflow at k = 64
		}
		bar := strings.Repeat("*", int(counts[k]*40/peak))
		if _, err := fmt.Fprintf(w, "%10d -> %-10d : %-10d |%-40s|\n", lo, hi, counts[k], bar); err != nil {
			return err
		}
	}
	return nil
}

// unitNs is the length of each display unit of WriteLog2Hist in ns.
var unitNs = map[string]uint64{"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}
