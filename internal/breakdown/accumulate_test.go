package breakdown

import (
	"math"
	"testing"
)

// TestLatBucket: every value lies in its bucket's bounds, and buckets are
// at most 1/16 of their lower edge wide.
func TestLatBucket(t *testing.T) {
	for _, v := range []int64{0, 1, 15, 16, 17, 31, 32, 1000, 999_999, 1 << 40, 1<<62 + 12345} {
		k := latBucket(v)
		lo, hi := latBucketLow(k), latBucketLow(k+1)
		if v < lo || (k+1 < numLatBuckets && v >= hi) {
			t.Errorf("latBucket(%d) = %d: [%d, %d) does not hold it", v, k, lo, hi)
		}
		if k+1 < numLatBuckets && lo >= 16 && hi-lo > lo/16 {
			t.Errorf("bucket %d: [%d, %d) wider than 1/16", k, lo, hi)
		}
	}
}

// trip is a joined round trip of latency lat whose components are all in
// client_user but srv ns in server_preempted.
func trip(seq int, lat, srv int64) RoundTrip {
	rt := RoundTrip{Conn: 1, Seq: seq, T0: 1_000_000, T1: 1_000_000 + lat, Joined: true, Consistent: true}
	rt.Ns[ClientUser] = lat - srv
	rt.Ns[ServerPreempted] = srv
	return rt
}

func TestBands(t *testing.T) {
	a := NewAccumulator()
	// 1000 round trips: 500 of 10 µs, 400 of 20 µs, 90 of 100 µs (half
	// preempted), 10 of 1 ms (nine tenths preempted).
	add := func(n int, lat, srv int64) {
		for i := range n {
			rt := trip(i, lat, srv)
			a.Add(&rt)
		}
	}
	add(500, 10_000, 0)
	add(400, 20_000, 0)
	add(90, 100_000, 50_000)
	add(10, 1_000_000, 900_000)
	got := a.Bands()
	want := []struct {
		count      int64
		lat, share float64 // mean latency; server_preempted share
	}{{500, 10_000, 0}, {400, 20_000, 0}, {90, 100_000, 0.5}, {10, 1_000_000, 0.9}}
	if len(got) != len(want) {
		t.Fatalf("%d bands, want %d", len(got), len(want))
	}
	for i, w := range want {
		b := got[i]
		if b.Name != BandNames[i] || b.Count != w.count || math.Abs(b.MeanLatencyNs-w.lat) > 1e-6 || math.Abs(b.Share[ServerPreempted]-w.share) > 1e-9 {
			t.Errorf("band %d = %s count %d mean %.0f server_preempted share %.3f, want %s %d %.0f %.3f",
				i, b.Name, b.Count, b.MeanLatencyNs, b.Share[ServerPreempted], BandNames[i], w.count, w.lat, w.share)
		}
		if float64(b.LowNs) > w.lat || float64(b.HighNs) <= w.lat {
			t.Errorf("band %s: [%d, %d) does not hold %.0f", b.Name, b.LowNs, b.HighNs, w.lat)
		}
		var sum float64
		for _, s := range b.Share {
			sum += s
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("band %s: shares sum to %f", b.Name, sum)
		}
	}
}

func TestSlowest(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep int
		lats []int64
		want []int64
	}{
		{"fewer than kept", 10, []int64{5, 3, 9}, []int64{9, 5, 3}},
		{"keeps the slowest", 3, []int64{5, 1, 9, 7, 2, 8, 3}, []int64{9, 8, 7}},
		{"none", 0, []int64{5, 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator()
			a.KeepSlowest(tc.keep)
			for i, l := range tc.lats {
				rt := trip(i, l*1000, 0)
				a.Add(&rt)
			}
			got := a.Slowest()
			if len(got) != len(tc.want) {
				t.Fatalf("kept %d, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				if l := got[i].T1 - got[i].T0; l != w*1000 {
					t.Errorf("slowest[%d] = %d ns, want %d", i, l, w*1000)
				}
			}
		})
	}
}

// TestConcentration: after the first 1024 round trips set the running
// p99, the slow ones of connection 2 on server thread 7 are counted there.
func TestConcentration(t *testing.T) {
	a := NewAccumulator()
	for i := range 4096 {
		rt := trip(i, 10_000+int64(i%100), 0)
		rt.Conn, rt.ServerTID = 1+i%3, uint32(5+i%3)
		if i >= 1024 && i%128 == 0 { // 24 slow ones (under 1%), all on conn 2, thread 7
			rt.T1 += 1_000_000
			rt.Ns[ClientUser] += 1_000_000
			rt.Conn, rt.ServerTID = 2, 7
		}
		a.Add(&rt)
	}
	conns, threads, slow := a.Concentration(5)
	// The ordinary round trips (10000-10099 ns) share one bucket, whose
	// upper edge is the running p99: only the 24 are over it.
	if slow != 24 || len(conns) != 1 || conns[0].Key != 2 || conns[0].Slow != 24 || len(threads) != 1 || threads[0].Key != 7 || threads[0].Slow != 24 {
		t.Fatalf("slow %d, conns %+v, threads %+v: want 24, all on connection 2 and thread 7", slow, conns, threads)
	}
}
