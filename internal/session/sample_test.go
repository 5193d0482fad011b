package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
)

// TestConnSample: every connection up to followAll, then about followAll
// of them, and all of them when the events are recorded.
func TestConnSample(t *testing.T) {
	for _, tc := range []struct {
		clients int
		record  string
		want    uint32
	}{{1, "", 1}, {followAll, "", 1}, {followAll + 1, "", 2}, {256, "", 16}, {10000, "", 1024}, {256, "x.rec", 1}} {
		cfg := Config{Load: loadgen.Options{Clients: tc.clients}, Record: tc.record}
		if got := connSample(cfg); got != tc.want {
			t.Errorf("%d clients, record %q: one in %d, want %d", tc.clients, tc.record, got, tc.want)
		}
	}
}

// TestSampleRecords: with a connection sample (64 connections, about 16
// followed), the probe writes the followed connections' records only:
// every kind's records per round trip (of all connections) stay within
// the followed share of what a round trip writes, the receive-processing
// records (netif_receive_skb, which reads the ports from the packet)
// included: before it took the sample into account, the receive hook
// wrote one record per data segment of every connection (README, "What
// the observer costs under load").
func TestSampleRecords(t *testing.T) {
	requireRoot(t)
	r, err := Run(context.Background(), Config{Self: selfBin, Server: "epoll-lt", Probe: true, ServerCPUs: []int{0},
		Load: loadgen.Options{Clients: 64, ClientCPUs: []int{1}, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond, CI: -1, P99CI: -1, Timeout: stallTimeout}}, Callbacks{})
	if err != nil && !errors.Is(err, ErrLostEvents) {
		t.Fatal(err)
	}
	p := r.Probe
	if p == nil || p.Sample == nil || p.Sample.Connections != 64 || p.Sample.Followed == 0 || p.Sample.Followed >= 64 {
		t.Fatalf("probe section %+v: want a sample of the 64 connections", p)
	}
	share := float64(p.Sample.Followed) / float64(p.Sample.Connections)
	// A followed loopback round trip writes at most two records of a
	// kind (one per side), and interrupts and switches a few more.
	for kind, n := range p.EventsPerRTTByKind {
		if limit := 2*share + 0.1; kind != "irq" && kind != "switch" && n > limit {
			t.Errorf("%s: %.2f records per round trip with %d of 64 connections followed, want ≤ %.2f", kind, n, p.Sample.Followed, limit)
		}
	}
	t.Logf("%d of 64 followed: %.2f records per round trip, by kind %v", p.Sample.Followed, p.EventsPerRTT, p.EventsPerRTTByKind)
}
