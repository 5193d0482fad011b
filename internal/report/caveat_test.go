package report

import (
	"strings"
	"testing"
)

// TestSaturationCaveat: rounds whose client may have limited them are
// counted beside the verdict, over the verdict's pairs only.
func TestSaturationCaveat(t *testing.T) {
	v := &Verdict{ClientSaturatedA: []bool{true, false, true}, ClientSaturatedB: []bool{true, false, false}}
	if got := v.SaturationCaveat(2); !strings.HasPrefix(got, "2 of 4 rounds were client-saturated") {
		t.Errorf("caveat over 2 pairs: %q", got)
	}
	if got := v.SaturationCaveat(3); !strings.HasPrefix(got, "3 of 6 rounds") {
		t.Errorf("caveat over 3 pairs: %q", got)
	}
	if got := (&Verdict{ClientSaturatedA: []bool{false}, ClientSaturatedB: []bool{false}}).SaturationCaveat(1); got != "" {
		t.Errorf("no saturated round, caveat %q", got)
	}
	r := &Results{Warnings: []string{"the client may limit this measurement: its CPUs were 99% busy"}}
	if !ClientLimited(r) || ClientLimited(&Results{}) {
		t.Error("ClientLimited does not read the saturation warning")
	}
}
