package report

import (
	"math"
	"testing"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// TestTableRatioIsVerdicts: the comparison table's B/A (of geoMeanOf)
// is the verdict's ratio (stats.WelchRatio), for uneven runs too.
func TestTableRatioIsVerdicts(t *testing.T) {
	a := []float64{100, 130, 90, 210}
	b := []float64{95, 160, 70}
	table := geoMeanOf(b) / geoMeanOf(a)
	verdict := stats.WelchRatio(b, a, 0.99).Ratio
	if math.Abs(table-verdict) > 1e-12 {
		t.Errorf("table B/A %.6f, verdict B/A %.6f", table, verdict)
	}
	if got := geoMeanOf([]float64{0, 4}); got != 2 {
		t.Errorf("geoMeanOf with a zero = %v, want the arithmetic mean 2", got)
	}
}
