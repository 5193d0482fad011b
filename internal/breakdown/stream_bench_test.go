package breakdown

import (
	"cmp"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
)

// BenchmarkStream is the streaming join's cost per kernel event, on the
// recorded streams fed the way a live run feeds them (internal/session's
// joinStage): every event one at a time through Event, each measured
// round trip through Trip once it completed, Advance every joinEvery
// with the watermark the live run's lag behind the newest event (so that
// the events after it wait, as live), with the live run's keep,
// everything held until the window's start, and Flush at the end.
// It reports ns/event and allocs/event beside the per-run figures.
func BenchmarkStream(b *testing.B) {
	files, _ := filepath.Glob("../../testdata/streams/*.rec.gz")
	if len(files) == 0 {
		b.Fatal("no recorded streams in testdata/streams")
	}
	// The live run's timing (internal/session: joinEvery, the probe's
	// lag (probeLag), and keep as 2×DefaultCheckEvery + keepSlack).
	const (
		every = int64(100 * time.Millisecond)
		lag   = int64(250 * time.Millisecond)
		keep  = 2*loadgen.DefaultCheckEvery + 250*time.Millisecond
	)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".rec.gz")
		one, err := ReadRecording(f)
		if err != nil {
			b.Fatal(err)
		}
		if len(one.Events) == 0 {
			continue
		}
		// Copies end to end, 1 ms apart, for several times keep (at least
		// three copies, at most about 600k events): the stream then spends
		// most of its time as a long run's does, with a full index
		// trimmed behind the watermark, not growing from empty.
		shift := int64(one.Events[len(one.Events)-1].TS-one.Events[0].TS) + 1e6
		copies := max(3, min(int(5*keep.Nanoseconds()/shift), 600_000/len(one.Events)))
		in := repeat(one, copies, shift)
		var infos []loadgen.ConnInfo
		var trips []waiting
		for _, c := range in.Conns {
			infos = append(infos, c.ConnInfo)
			for i, r := range c.Records {
				if r.T0 >= in.MeasureStart {
					trips = append(trips, waiting{c.ID, int64(i), r})
				}
			}
		}
		slices.SortFunc(trips, func(x, y waiting) int { return cmp.Compare(x.r.T1, y.r.T1) })
		b.Run(name, func(b *testing.B) {
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0 := processCPU()
			for b.Loop() {
				s := NewStream(in.ServerPort, infos, false, keep, func(*RoundTrip, loadgen.Record) {})
				s.Hold(1) // until the window's start is known, as in a live run
				held := true
				ei, ti := 0, 0
				for now := int64(in.Events[0].TS) + every; ei < len(in.Events); now += every {
					if held && now > in.MeasureStart {
						s.SetWindowStart(in.MeasureStart)
						s.Release()
						held = false
					}
					for ; ei < len(in.Events) && int64(in.Events[ei].TS) < now; ei++ {
						s.Event(&in.Events[ei])
					}
					for ; ti < len(trips) && trips[ti].r.T1 < now; ti++ {
						s.Trip(trips[ti].conn, trips[ti].seq, trips[ti].r)
					}
					s.Advance(now - lag)
				}
				for ; ti < len(trips); ti++ {
					s.Trip(trips[ti].conn, trips[ti].seq, trips[ti].r)
				}
				s.Flush()
			}
			cpu := processCPU() - cpu0
			runtime.ReadMemStats(&ms1)
			n := float64(b.N) * float64(len(in.Events))
			// CPU time, the garbage collector's included, is less swayed by
			// other work on a shared machine than the wall time is.
			b.ReportMetric(float64(cpu)/n, "cpu-ns/event")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/event")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/event")
			b.ReportMetric(float64(len(in.Events))/float64(max(len(trips), 1)), "events/trip")
		})
	}
}

// processCPU is the CPU time the process has used, user and system, ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
