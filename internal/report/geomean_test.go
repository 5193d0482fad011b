package report

import (
	"math"
	"testing"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// TestTableRatioIsVerdicts: the comparison table's B/A (of GeoMean)
// is the verdict's ratio (stats.WelchRatio), for uneven runs too.
func TestTableRatioIsVerdicts(t *testing.T) {
	a := []float64{100, 130, 90, 210}
	b := []float64{95, 160, 70}
	table := GeoMean(b) / GeoMean(a)
	verdict := stats.WelchRatio(b, a, 0.99).Ratio
	if math.Abs(table-verdict) > 1e-12 {
		t.Errorf("table B/A %.6f, verdict B/A %.6f", table, verdict)
	}
	if got := GeoMean([]float64{0, 4}); got != 2 {
		t.Errorf("GeoMean with a zero = %v, want the arithmetic mean 2", got)
	}
}
