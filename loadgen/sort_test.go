package loadgen

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkRecords is one check's records as the clients hand them over:
// conns runs, each in completion order, of n records in all over span
// ns, with some completion times shared.
func checkRecords(rng *rand.Rand, conns, n int, span int64) []pending {
	ps := make([]pending, 0, n)
	for c := range conns {
		k := n / conns
		if c < n%conns {
			k++
		}
		ts := make([]int64, k)
		for i := range ts {
			ts[i] = 1e12 + rng.Int64N(span+1)
			if i > 0 && rng.IntN(20) == 0 {
				ts[i] = ts[i-1] // a tie
			}
		}
		slices.Sort(ts)
		for i, t := range ts {
			ps = append(ps, pending{c, int64(i), Record{T0: t - 1000, T1: t}})
		}
	}
	return ps
}

// TestByCompletion: the radix sort orders as a stable comparison sort
// does, at every size and span, reusing its scratch.
func TestByCompletion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var scratch []pending
	for _, tc := range []struct {
		conns, n int
		span     int64
	}{
		{1, 0, 0}, {1, 1, 0}, {3, 10, 100}, {1, 255, 1e8}, {16, 256, 0}, {16, 257, 1},
		{256, 17_000, 1e8}, {256, 17_000, 1 << 40}, {7, 5000, 2047}, {7, 5000, 2048}, {1000, 100_000, 5e9},
	} {
		ps := checkRecords(rng, tc.conns, tc.n, tc.span)
		want := slices.Clone(ps)
		slices.SortStableFunc(want, func(a, b pending) int { return cmp.Compare(a.r.T1, b.r.T1) })
		scratch = byCompletion(ps, scratch)
		if !slices.Equal(ps, want) {
			t.Errorf("%d records of %d connections over %d ns: not in stable completion order", tc.n, tc.conns, tc.span)
		}
	}
}

// BenchmarkByCompletion: a check's records at 256 connections (about
// 170,000 round trips a second, 100 ms checks), by the radix sort and by
// the comparison sort it replaced.
func BenchmarkByCompletion(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	in := checkRecords(rng, 256, 17_000, 1e8)
	ps := make([]pending, len(in))
	for _, name := range []string{"radix", "comparison"} {
		b.Run(fmt.Sprintf("%s/17000", name), func(b *testing.B) {
			var scratch []pending
			for b.Loop() {
				copy(ps, in)
				if name == "radix" {
					scratch = byCompletion(ps, scratch)
				} else {
					slices.SortFunc(ps, func(a, b pending) int { return cmp.Compare(a.r.T1, b.r.T1) })
				}
			}
		})
	}
}
