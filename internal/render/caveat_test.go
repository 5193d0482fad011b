package render

import (
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/report"
)

// TestVerdictShowsCaveat: the rounds whose client may have limited them
// are counted beside the verdict.
func TestVerdictShowsCaveat(t *testing.T) {
	sat := &report.Verdict{ClientSaturatedA: []bool{true, false, true}, ClientSaturatedB: []bool{true, false, false}}
	v := &report.Verdict{A: "a", B: "b", Pairs: 1, Summary: "x", Caveat: sat.SaturationCaveat(3)}
	var b strings.Builder
	if err := WriteVerdict(&b, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "caveat:     3 of 6 rounds were client-saturated") {
		t.Errorf("WriteVerdict does not show the caveat:\n%s", b.String())
	}
}
