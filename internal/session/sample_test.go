package session

import (
	"testing"

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
