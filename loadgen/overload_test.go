package loadgen

import (
	"strings"
	"testing"
	"time"
)

// TestOverload: an open loop that achieved under 95% of its offered rate
// is named saturated with both rates; a closed loop or one that kept up
// is not.
func TestOverload(t *testing.T) {
	win := Window{Start: 1, End: 1 + int64(2*time.Second)}
	for _, tc := range []struct {
		name      string
		rate, rps float64
		measured  int64
		want      string
	}{
		{"closed loop", 0, 15175, 30000, ""},
		{"kept up", 25000, 24900, 50000, ""},
		{"saturated", 25000, 15175, 30000, "offered 25,000/s, achieved 15,175/s (61%): the server (or the client) is saturated"},
		{"nothing measured", 25000, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &Summary{Options: Options{Rate: tc.rate}, ThroughputRPS: tc.rps, Measured: tc.measured, Window: win}
			got := res.Overload()
			if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
				t.Errorf("Overload() = %q, want it to begin %q", got, tc.want)
			}
		})
	}
	for x, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 15175.4: "15,175", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := Thousands(x); got != want {
			t.Errorf("Thousands(%v) = %q, want %q", x, got, want)
		}
	}
}
