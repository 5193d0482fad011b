package session

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestFaultyServers: a wrong reply, a short reply and a server that dies
// mid-run each stop the run with an error naming the request, and what was
// measured before is kept and written.
func TestFaultyServers(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "badserver")
	if out, err := exec.Command("go", "build", "-o", bad, "../../testdata/badserver").CombinedOutput(); err != nil {
		t.Fatalf("build badserver: %v\n%s", err, out)
	}
	const good = 3000
	for _, tc := range []struct{ mode, want string }{
		{"wrong", "wrong reply"},
		{"short", "short reply"},
		{"die", "exit status 3"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Setenv("BADSERVER_MODE", tc.mode)
			t.Setenv("BADSERVER_GOOD", "3000")
			dir := t.TempDir()
			out, err := Run(context.Background(), Config{Server: bad, Out: dir, Load: loadgen.Options{
				Clients: 2, Warmup: -1, Duration: 20 * time.Second, CI: -1, P99CI: -1, Timeout: time.Second,
			}}, Callbacks{})
			var re *loadgen.ReplyError
			if err == nil || !errors.As(err, &re) || !strings.Contains(err.Error(), "request ") {
				t.Fatalf("err = %v, want a reply error naming the request", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
			if out == nil {
				t.Fatal("no results kept")
			}
			// Each connection's set-up includes one priming exchange that
			// the server answers but the run does not record.
			if total := out.Latency.Count + out.Run.Outside; total != good-2 {
				t.Errorf("kept %d round trips, want the %d good ones less 2 priming exchanges", total, good)
			}
			r, err := report.ReadJSON(filepath.Join(dir, "results.json"))
			if err != nil {
				t.Fatal(err)
			}
			if r.Latency.Count == 0 || r.Run.StopReason != "error" || len(r.Errors) == 0 {
				t.Errorf("results.json: count %d, stop %q, errors %v", r.Latency.Count, r.Run.StopReason, r.Errors)
			}
			if _, err := os.Stat(filepath.Join(dir, "requests.csv")); err != nil {
				t.Error(err)
			}
		})
	}
}
