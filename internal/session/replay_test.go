package session

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/volleyscope/volleyscope/internal/golden"
	"github.com/volleyscope/volleyscope/internal/outdir"
	"github.com/volleyscope/volleyscope/internal/report"
)

// TestReplayPipeline runs the whole pipeline — source, load, window,
// join, sinks, summary — from a recording, without root or a kernel:
// the recorded events come through the event-source seam and the
// recorded round trips through the load's hooks, as a live run's do.
// results.json is held to a golden file, and the files beside it must
// agree with it.
func TestReplayPipeline(t *testing.T) {
	for _, name := range []string{"default_cross_cpu", "default_epoll_4conns"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := Replay(context.Background(), filepath.Join("..", "..", "testdata", "streams", name+".rec.gz"), Config{Out: dir}, Callbacks{})
			if err != nil {
				t.Fatal(err)
			}
			bc := res.BreakdownCheck
			if bc == nil || bc.Joined == 0 || int64(bc.Joined+bc.Unjoined) != res.Latency.Count {
				t.Fatalf("breakdown check %+v for %d measured round trips", bc, res.Latency.Count)
			}
			if bc.SumWithinTolerance < 0.99 {
				t.Errorf("sum check holds for %.3f of joined round trips, want ≥ 0.99", bc.SumWithinTolerance)
			}
			got, err := os.ReadFile(filepath.Join(dir, outdir.ResultsFile))
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			if err := report.WriteJSON(&want, res); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("results.json differs from the results returned")
			}
			csv, err := os.ReadFile(filepath.Join(dir, outdir.RequestsFile))
			if err != nil {
				t.Fatal(err)
			}
			if rows := int64(bytes.Count(csv, []byte("\n")) - 1); rows != res.Latency.Count+res.Run.Outside {
				t.Errorf("requests.csv has %d rows, results.json %d measured + %d outside", rows, res.Latency.Count, res.Run.Outside)
			}
			golden.Check(t, "replay_"+name+".golden.json", got)
		})
	}
}
