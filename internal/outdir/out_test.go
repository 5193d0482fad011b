package outdir

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestHdrLogReadBack writes round trips through Out as a run would and
// reads latency.hlog back with HdrHistogram's own reader: every measured
// round trip is in it once, in the interval of its completion second.
func TestHdrLogReadBack(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOut(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	const firstT0 = int64(5e9)
	o.Log.Begin(started, firstT0)
	perSec := map[int64]int64{}
	n := int64(0)
	// 3.5 s of completions, slightly out of order as the run loop hands
	// them over, 1000 round trips per second.
	for i := int64(0); i < 3500; i++ {
		t1 := firstT0 + i*1e6 + 1e5
		if i%7 == 3 {
			t1 -= 3e6 // a little late
		}
		r := loadgen.Record{T0: t1 - 50e3 - i, T1: t1}
		o.Log.Add(r)
		o.Requests.Row(0, i, r, true, nil)
		perSec[(t1-firstT0)/1e9]++
		n++
	}
	if err := o.Commit(&report.Results{}); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, h := range readHdrLog(t, filepath.Join(dir, HdrLogFile)) {
		sec := (h.StartTimeMs() - started.UnixMilli()) / 1000
		if h.EndTimeMs()-h.StartTimeMs() != 1000 {
			t.Errorf("interval %d lasts %d ms", sec, h.EndTimeMs()-h.StartTimeMs())
		}
		if h.TotalCount() != perSec[sec] {
			t.Errorf("second %d: %d round trips in the log, want %d", sec, h.TotalCount(), perSec[sec])
		}
		if h.Min() < 49e3 || h.Max() > 55e3 { // 0.1% buckets
			t.Errorf("second %d: latencies %d–%d ns, want 50–54 µs", sec, h.Min(), h.Max())
		}
		total += h.TotalCount()
	}
	if total != n {
		t.Errorf("log holds %d round trips, want %d", total, n)
	}
	for _, name := range []string{ResultsFile, RequestsFile, HdrLogFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v", name, st.Mode().Perm())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
