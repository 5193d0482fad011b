package outdir

import (
	"bytes"
	"testing"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/golden"
)

func TestGoldenRequestsCSVHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		columns []string
	}{{"requests-header-bench.golden", nil}, {"requests-header-probe.golden", breakdown.Names()}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := NewRequestsCSV(&buf, tc.columns)
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.name, buf.Bytes())
		})
	}
}
