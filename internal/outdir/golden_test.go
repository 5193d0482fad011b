package outdir

import (
	"bytes"
	"testing"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/golden"
)

// TestGoldenRequestsCSVHeader holds requests.csv's header, without the
// probe and with its breakdown columns, to golden files.
func TestGoldenRequestsCSVHeader(t *testing.T) {
	header := func(columns []string) []byte {
		var buf bytes.Buffer
		if err := NewRequestsCSV(&buf, columns).Flush(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	golden.Check(t, "requests-header-bench.golden", header(nil))
	golden.Check(t, "requests-header-probe.golden", header(breakdown.Names()))
}
