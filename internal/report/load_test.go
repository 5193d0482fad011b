package report

import (
	"strings"
	"testing"
)

// TestDifferentLoad: runs at different offered rates, or with different
// connection counts, are named not like for like; the same load is not.
func TestDifferentLoad(t *testing.T) {
	run := func(clients int, rate float64) *Results { return &Results{Meta: Meta{Clients: clients, RateRPS: rate}} }
	for _, tc := range []struct {
		name string
		a, b *Results
		want string
	}{
		{"rates", run(4, 1000), run(4, 5000), "different load: A 4 connection(s), open loop offering 1,000/s, B 4 connection(s), open loop offering 5,000/s"},
		{"open and closed", run(4, 0), run(4, 5000), "different load: A 4 connection(s), closed loop, B"},
		{"connections", run(1, 0), run(4, 0), "different load: A 1 connection(s), closed loop, B 4 connection(s), closed loop"},
		{"same", run(4, 1000), run(4, 1000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			for _, d := range Differences("A", tc.a, "B", tc.b) {
				if strings.HasPrefix(d, "different load") {
					got = d
				}
			}
			if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
				t.Errorf("load difference %q, want %q", got, tc.want)
			}
		})
	}
}
