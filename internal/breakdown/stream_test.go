package breakdown

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// TestStreamMatchesJoin feeds recorded runs to a Stream the way a live run
// does (events in time slices, each round trip once it completed, Advance
// behind the newest event) and checks every round trip splits exactly as
// the whole-run Join splits it, while the stream lets go of old events.
func TestStreamMatchesJoin(t *testing.T) {
	for _, name := range []string{"default_cross_cpu", "default_epoll_4conns", "default_iouring", "cross_cpu", "epoll_4conns", "default_socat_8k_parts", "chunks_8k_spin"} {
		t.Run(name, func(t *testing.T) {
			one, err := ReadRecording("../../testdata/streams/" + name + ".rec.gz")
			if err != nil {
				t.Fatal(err)
			}
			// The recording again and again, 120 ms apart (or further,
			// so that copies never overlap), so the stream must let go of
			// old events (and carry each thread's last switch) for the
			// split to come out the same.
			span := int64(one.Events[len(one.Events)-1].TS - one.Events[0].TS)
			in := repeat(one, 8, max(120e6, span+20e6))
			whole := map[[2]int]RoundTrip{}
			for _, rt := range Join(in).Trips {
				whole[[2]int{rt.Conn, rt.Seq}] = rt
			}
			type trip struct {
				conn int
				seq  int64
				r    loadgen.Record
			}
			var trips []trip
			var infos []loadgen.ConnInfo
			for _, c := range in.Conns {
				infos = append(infos, c.ConnInfo)
				for i, r := range c.Records {
					if r.T0 >= in.MeasureStart {
						trips = append(trips, trip{c.ID, int64(i), r})
					}
				}
			}
			slices.SortFunc(trips, func(a, b trip) int { return cmp.Compare(a.r.T1, b.r.T1) })
			got := map[[2]int]RoundTrip{}
			s := NewStream(in.ServerPort, infos, false, 10*time.Millisecond, func(rt *RoundTrip, r loadgen.Record) {
				if r.T0 != rt.T0 || r.T1 != rt.T1 {
					t.Errorf("round trip %d/%d handed over with another record", rt.Conn, rt.Seq)
				}
				got[[2]int{rt.Conn, rt.Seq}] = *rt
			})
			// 2 ms of events at a time, handed over as the per-CPU rings
			// hand them: each CPU's in time order, one CPU after the
			// other, and an odd CPU's drained 3 ms late, so that a
			// hand-over holds events older than the last one's newest.
			// The watermark lags behind by more than that: the events
			// after it wait, and the later hand-overs' are merged in
			// among them.
			const slice, skew, lag = int64(2e6), int64(3e6), int64(5e6)
			arrival := func(e probe.Event) int64 { return int64(e.TS) + int64(e.CPU%2)*skew }
			order := slices.Clone(in.Events)
			slices.SortStableFunc(order, func(a, b probe.Event) int { return cmp.Compare(arrival(a), arrival(b)) })
			maxKept := 0
			ei, ti := 0, 0
			var byCPU []probe.Event
			for now := int64(in.Events[0].TS); ei < len(order); now += slice {
				byCPU = byCPU[:0]
				for ; ei < len(order) && arrival(order[ei]) < now; ei++ {
					byCPU = append(byCPU, order[ei])
				}
				slices.SortStableFunc(byCPU, func(a, b probe.Event) int { return cmp.Compare(a.CPU, b.CPU) })
				for i := range byCPU {
					s.Event(&byCPU[i])
				}
				for ; ti < len(trips) && trips[ti].r.T1 < now-lag; ti++ {
					s.Trip(trips[ti].conn, trips[ti].seq, trips[ti].r)
				}
				s.Advance(now - lag)
				maxKept = max(maxKept, s.Held())
			}
			for ; ti < len(trips); ti++ {
				s.Trip(trips[ti].conn, trips[ti].seq, trips[ti].r)
			}
			s.Flush()
			if len(got) != len(trips) || len(got) != len(whole) {
				t.Fatalf("stream handed over %d round trips, join %d, recorded %d", len(got), len(whole), len(trips))
			}
			for k, w := range whole {
				g := got[k]
				if g.Joined != w.Joined || g.Reason != w.Reason || g.Bounds != w.Bounds || g.Ns != w.Ns {
					t.Errorf("round trip %v: stream %+v, join %+v", k, g, w)
				}
			}
			a := s.Summary()
			if a.Joined+a.Unjoined != len(trips) {
				t.Errorf("summary counts %d+%d of %d", a.Joined, a.Unjoined, len(trips))
			}
			if maxKept >= len(in.Events)/2 {
				t.Errorf("the stream kept up to %d of %d events: it does not let go of old ones", maxKept, len(in.Events))
			}
			t.Logf("%d events, %d round trips (%d joined); at most %d events kept", len(in.Events), len(trips), a.Joined, maxKept)
		})
	}
}

// repeat lays n copies of a recording end to end, shift ns apart.
func repeat(in Input, n int, shift int64) Input {
	out := Input{ServerPort: in.ServerPort, MeasureStart: in.MeasureStart}
	out.Conns = make([]loadgen.Conn, len(in.Conns))
	for i, c := range in.Conns {
		out.Conns[i].ConnInfo = c.ConnInfo
	}
	for k := range n {
		d := int64(k) * shift
		for _, e := range in.Events {
			e.TS += uint64(d)
			if e.Kind == probe.KindSyscall {
				e.Arg0 += uint64(d) // the entry time
			}
			out.Events = append(out.Events, e)
		}
		for i, c := range in.Conns {
			for _, r := range c.Records {
				out.Conns[i].Records = append(out.Conns[i].Records, loadgen.Record{T0: r.T0 + d, T1: r.T1 + d})
			}
		}
	}
	return out
}

func TestSortRuns(t *testing.T) {
	ev := func(ts ...uint64) []probe.Event {
		var o []probe.Event
		for _, x := range ts {
			o = append(o, probe.Event{TS: x})
		}
		return o
	}
	for _, in := range [][]probe.Event{
		nil,
		ev(1),
		ev(1, 2, 3),
		ev(3, 2, 1),
		ev(1, 4, 7, 2, 5, 8, 3, 6, 9),
		ev(5, 6, 1, 2, 9, 3, 4, 4, 0),
	} {
		want := slices.Clone(in)
		slices.SortStableFunc(want, byTS)
		got, _ := SortRuns(slices.Clone(in), nil)
		if !slices.Equal(got, want) {
			t.Errorf("SortRuns(%v) = %v, want %v", in, got, want)
		}
	}
}

// TestMergeSorted: two sorted stretches merge as one stable sort of the
// two would order them (the first's values first among equal stamps),
// however much they overlap. Arg0 tells the values apart.
func TestMergeSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var a, b []probe.Event
		for i := range rng.IntN(20) {
			a = append(a, probe.Event{TS: rng.Uint64N(30), Arg0: uint64(i)})
		}
		for i := range rng.IntN(20) {
			b = append(b, probe.Event{TS: rng.Uint64N(30), Arg0: uint64(100 + i)})
		}
		slices.SortStableFunc(a, byTS)
		slices.SortStableFunc(b, byTS)
		want := slices.Concat(a, b)
		slices.SortStableFunc(want, byTS)
		if got := MergeSorted(nil, a, b); !slices.Equal(got, want) {
			t.Fatalf("MergeSorted(%v, %v) = %v, want %v", a, b, got, want)
		}
	}
}

// TestSeriesSearch: a search from any hint finds what sort.Search finds.
func TestSeriesSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		s := &series[int64]{}
		for v := range int64(rng.IntN(40)) {
			s.push(v/2, v/2, self)
		}
		s.off = rng.IntN(len(s.buf) + 1)
		s.hint = rng.IntN(len(s.buf)+3) - 1
		l := s.live()
		t0 := rng.Int64N(25) - 2
		f := func(i int) bool { return l[i] >= t0 }
		if got, want := s.search(f), sort.Search(len(l), f); got != want {
			t.Fatalf("search for %d in %v from hint %d = %d, want %d", t0, l, s.hint, got, want)
		}
	}
	var none *series[int64]
	if none.search(func(int) bool { return true }) != 0 {
		t.Error("a nil series' search is not 0")
	}
}

// TestServerSendsFolded: the server's send counts over a long window come
// out whole while the stream keeps only the recent buckets.
func TestServerSendsFolded(t *testing.T) {
	const port = 9000
	s := NewStream(port, nil, false, time.Second, nil)
	const start, end = int64(10_000_000_000), int64(70_000_000_000) // a minute
	s.SetWindowStart(start)
	var want int64
	for ts := start - 2_000_000_000; ts < end+2_000_000_000; ts += 250_000 { // a send every 250 µs
		s.Event(&probe.Event{TS: uint64(ts), Kind: probe.KindSendStart, Lport: port, Rport: 40000})
		if ts >= start && ts < end {
			want++
		}
		if ts%100_000_000 == 0 {
			if ts >= end {
				s.SetWindowEnd(end)
			}
			s.Advance(ts - 250_000_000)
			if held := len(s.starts); held > 3000 {
				t.Fatalf("%d send buckets held at %d s", held, ts/1e9)
			}
		}
	}
	s.Flush()
	if got := s.ServerSends(start, end); got != want {
		t.Errorf("ServerSends = %d, want %d", got, want)
	}
}

// TestStreamForget: an ended connection's state is let go once no round
// trip of it can still come, and not while one waits.
func TestStreamForget(t *testing.T) {
	const keep = 1_000_000
	s := NewStream(9000, []loadgen.ConnInfo{{ID: 0, TID: 1, LocalPort: 40000}, {ID: 1, TID: 1, LocalPort: 40001}}, false, keep, nil)
	s.Trip(1, 0, loadgen.Record{T0: 5_000_000, T1: 5_000_100}) // waits: the watermark is not past 2×T1−T0
	s.Forget(0, 1000)
	s.Forget(1, 1000)
	s.Advance(1000 + keep) // not yet past keep
	if len(s.conns) != 2 {
		t.Fatalf("%d connections held before keep passed, want 2", len(s.conns))
	}
	s.Advance(2000 + keep)
	if _, ok := s.conns[0]; ok || len(s.conns) != 1 {
		t.Errorf("connections held %v: want connection 0 let go, 1 kept while its round trip waits", s.conns)
	}
	s.Advance(6_000_000)
	if len(s.conns) != 0 || len(s.gone) != 0 {
		t.Errorf("connections held %v, %d to let go: want none once the round trip was joined", s.conns, len(s.gone))
	}
}

// TestIndexForgetsSwitchedOut: the index lets go of a thread with no
// switch for long before the trim bound (threads come and go on a
// machine a watch runs on for hours, and a thread switched in beside a
// followed one is never seen switching out), and keeps a recent one.
func TestIndexForgetsSwitchedOut(t *testing.T) {
	ix := newIndex()
	// Thread 5 switched out for 6 at 1 s; 7 out for 8 at 9 s.
	ix.add([]probe.Event{{TS: 1_000_000_000, Kind: probe.KindSwitch, Arg0: 5, Arg1: 6, Ret: 1}})
	ix.add([]probe.Event{{TS: 9_000_000_000, Kind: probe.KindSwitch, Arg0: 7, Arg1: 8, Ret: 1}})
	ix.trim(5_000_000_000)
	if ix.sw[5] == nil || ix.sw[6] == nil {
		t.Fatalf("threads let go 4 s after their last switch: %v", ix.sw)
	}
	ix.trim(1_000_000_000 + forgetSwitchedOut + 1)
	if ix.sw[5] != nil || ix.sw[6] != nil {
		t.Errorf("threads 5 and 6, last switched %v before the bound, still held", forgetSwitchedOut)
	}
	if ix.sw[7] == nil || ix.sw[8] == nil {
		t.Errorf("threads 7 and 8, switched 2 s before the bound, let go")
	}
}

// TestStreamTrimSparesHandedOver: a round trip handed over while a join
// runs, after it took its hand-over and before its trim (the pilot
// stretch's, handed over as the run loop lifts the hold), keeps its
// events: the trim never passes it, however far the watermark is.
func TestStreamTrimSparesHandedOver(t *testing.T) {
	const ms = int64(time.Millisecond)
	s := NewStream(9000, []loadgen.ConnInfo{{ID: 0, TID: 1, LocalPort: 40000}}, false, 10*time.Millisecond, nil)
	for at := 100 * ms; at < 110*ms; at += ms / 10 {
		s.Event(&probe.Event{TS: uint64(at), Kind: probe.KindSockRecv, Lport: 40000, Rport: 9000, TID: 1, Ret: 4})
	}
	s.Advance(120 * ms)
	held := s.Held()
	if held == 0 {
		t.Fatal("no events held")
	}
	// The join's hand-over is taken (advance's first step); then the
	// round trip comes, and the trim runs against a watermark 1 s on.
	s.Trip(0, 0, loadgen.Record{T0: 100 * ms, T1: 109 * ms})
	s.trim(1100*ms, false)
	if got := s.Held(); got != held {
		t.Errorf("the trim left %d of %d events, while a round trip over them waited to be taken", got, held)
	}
	s.Advance(1100 * ms) // takes it, and trims after it is joined
	if got := s.Held(); got != 0 {
		t.Errorf("%d events held once the round trip was joined and the watermark 1 s past them, want 0", got)
	}
}
