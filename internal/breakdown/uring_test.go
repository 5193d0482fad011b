package breakdown

import (
	"testing"

	"github.com/volleyscope/volleyscope/probe"
)

func TestUringTable(t *testing.T) {
	tb := NewUringTable()
	ev := func(kind probe.Kind, ts, ud, arg1 uint64) *probe.Event {
		return &probe.Event{Kind: kind, TS: ts, TGID: 7, Arg0: ud, Arg1: arg1}
	}
	// A recv of 5 µs, a send of 2 µs, a multishot accept completing three
	// times, and a completion of a request submitted before the probe.
	for _, e := range []*probe.Event{
		ev(probe.KindUringSubmit, 1000, 1, 27), ev(probe.KindUringSubmit, 1500, 2, 26),
		ev(probe.KindUringComplete, 3500, 2, 0), ev(probe.KindUringComplete, 6000, 1, 0),
		ev(probe.KindUringSubmit, 10_000, 3, 13), ev(probe.KindUringComplete, 20_000, 3, 0),
		ev(probe.KindUringComplete, 30_000, 3, 0), ev(probe.KindUringComplete, 40_000, 3, 0),
		ev(probe.KindUringComplete, 50_000, 99, 0),
	} {
		tb.Add(e)
	}
	got := map[string]UringStat{}
	for _, s := range tb.Stats() {
		got[s.Name] = s
	}
	if s := got["recv"]; s.Count != 1 || s.P50Ns < 4900 || s.P50Ns > 5100 {
		t.Errorf("recv %+v, want one of 5 µs", s)
	}
	if s := got["send"]; s.Count != 1 || s.P50Ns < 1900 || s.P50Ns > 2100 {
		t.Errorf("send %+v, want one of 2 µs", s)
	}
	if s := got["accept"]; s.Count != 1 || s.Extra != 2 {
		t.Errorf("accept %+v, want 1 timed and 2 further completions", s)
	}
	if len(got) != 3 {
		t.Errorf("opcodes %v, want recv, send and accept", got)
	}
}
