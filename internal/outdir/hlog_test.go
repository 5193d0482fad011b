package outdir

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestHdrLogIntervals reads latency.hlog back with HdrHistogram's own log
// reader, for runs that start at any millisecond and have seconds in
// which nothing completed: the intervals hold the run's round-trip count,
// one interval a second from the first to the last, each starting where
// its second starts (to the reader's 1 ms), in increasing order.
func TestHdrLogIntervals(t *testing.T) {
	tests := []struct {
		name    string
		started time.Time
		skip    map[int64]bool // seconds with no completions
		seconds int64
	}{
		{"whole second", time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC), nil, 4},
		{"mid-second start", time.Date(2026, 12, 1, 7, 0, 0, 987_654_321, time.UTC), nil, 4},
		{"a silent second", time.Date(2026, 12, 1, 7, 0, 1, 250_000_000, time.UTC), map[int64]bool{2: true}, 5},
		{"warm-up seconds first", time.Date(2026, 12, 1, 7, 0, 2, 1_000_000, time.UTC), map[int64]bool{0: true, 1: true}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o, err := OpenOut(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			const firstT0 = int64(7e9)
			o.Log.Begin(tt.started, firstT0)
			var n int64
			firstSec, lastSec := int64(-1), int64(-1)
			for i := int64(0); i < tt.seconds*500; i++ {
				t1 := firstT0 + i*2e6 + 3e5
				sec := (t1 - firstT0) / 1e9
				if tt.skip[sec] {
					continue
				}
				if firstSec < 0 {
					firstSec = sec
				}
				lastSec = sec
				o.Log.Add(loadgen.Record{T0: t1 - 40e3, T1: t1})
				n++
			}
			if err := o.Commit(&report.Results{Latency: report.Latency{Count: n}}); err != nil {
				t.Fatal(err)
			}
			var total int64
			var starts []int64
			for _, h := range readHdrLog(t, filepath.Join(dir, HdrLogFile)) {
				total += h.TotalCount()
				starts = append(starts, h.StartTimeMs())
				if d := h.EndTimeMs() - h.StartTimeMs(); d < 999 || d > 1001 {
					t.Errorf("interval at %d ms lasts %d ms", h.StartTimeMs(), d)
				}
			}
			if total != n {
				t.Errorf("log holds %d round trips, the run %d", total, n)
			}
			if want := lastSec - firstSec + 1; int64(len(starts)) != want {
				t.Fatalf("%d intervals, want %d (one a second from second %d to %d)", len(starts), want, firstSec, lastSec)
			}
			for i, s := range starts {
				want := tt.started.UnixMilli() + (firstSec+int64(i))*1000
				if s < want-1 || s > want+1 {
					t.Errorf("interval %d starts at %d ms, want %d (%v off)", i, s, want, time.Duration(s-want)*time.Millisecond)
				}
				if i > 0 && s <= starts[i-1] {
					t.Errorf("interval %d starts at %d ms, not after %d", i, s, starts[i-1])
				}
			}
			if got := o.Log.Total().TotalCount(); got != n {
				t.Errorf("Total holds %d round trips, want %d", got, n)
			}
			if got := len(o.Log.Intervals()); got != len(starts) {
				t.Errorf("Intervals has %d, the log %d", got, len(starts))
			}
		})
	}
}

// readHdrLog reads every interval of a latency.hlog with HdrHistogram's
// own log reader.
func readHdrLog(t *testing.T, path string) []*hdrhistogram.Histogram {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := hdrhistogram.NewHistogramLogReader(f)
	var out []*hdrhistogram.Histogram
	for range 100_000 {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if h == nil {
			break
		}
		out = append(out, h)
	}
	return out
}
