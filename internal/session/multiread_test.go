package session

import (
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestTruthMultipartReply: an echo server (testdata/chunkserver) reads a
// whole 64 KiB request, then writes it back either at once or in eight
// 8 KiB pieces with 50 µs of CPU spun between two pieces; interleaved
// rounds of each, at both probe levels. The seven spins are server time:
// server_user must grow by at least them, and the client's components,
// client_kernel_recv above all (where the parts after the first used to
// land), must not move beyond the spread between rounds. Every round
// joins ≥ 99% of its round trips, ≥ 99% of them summing to their latency.
func TestTruthMultipartReply(t *testing.T) {
	requireRoot(t)
	bin := filepath.Join(t.TempDir(), "chunkserver")
	if out, err := exec.Command("go", "build", "-o", bin, "../../testdata/chunkserver").CombinedOutput(); err != nil {
		t.Fatalf("build chunkserver: %v\n%s", err, out)
	}
	const (
		size  = 65536
		chunk = 8192
		spin  = 50 * time.Microsecond
	)
	want := float64((size/chunk - 1) * spin.Nanoseconds())
	server := func(chunk int, spin time.Duration) Config {
		return Config{
			Server: fmt.Sprintf("%s -size %d -chunk %d -spin %s -p {port}", bin, size, chunk, spin),
			Load:   loadgen.Options{Proto: loadgen.Echo, Size: size},
		}
	}
	for _, syscalls := range []bool{false, true} {
		t.Run(fmt.Sprintf("syscalls=%v", syscalls), func(t *testing.T) {
			base, parts := server(size, 0), server(chunk, spin)
			base.Syscalls, parts.Syscalls = syscalls, syscalls
			tr := &truth{}
			round := func(cfg Config) []report.Component {
				r := measure(t, cfg, truthRound)
				bc := r.BreakdownCheck
				if bc.SumWithinTolerance < 0.99 {
					t.Logf("%s: warnings %q", cfg.Server, r.Warnings)
				}
				// Records the probe dropped (a CPU held by other work kept
				// the reader from its rings; the run names it) leave round
				// trips unjoined: the join rate is judged only without them.
				if rate := float64(bc.Joined) / float64(bc.Joined+bc.Unjoined); rate < 0.99 && r.LostEvents > 0 {
					t.Logf("%s: joined %.3f with %d records lost; judging the joined ones", cfg.Server, rate, r.LostEvents)
				} else if rate < 0.99 {
					t.Errorf("%s: joined %d of %d (%.3f), want ≥ 0.99; reasons %v", cfg.Server, bc.Joined, bc.Joined+bc.Unjoined, rate, bc.UnjoinedReasons)
				}
				return tr.components(t, r)
			}
			for range truthPairs {
				tr.base = append(tr.base, round(base))
				tr.inj = append(tr.inj, round(parts))
			}
			for i, name := range tr.names {
				t.Logf("%-18s µs p50 at once%s  parts%s   mean at once%s  parts%s", name,
					tr.row(tr.base, i, p50), tr.row(tr.inj, i, p50), tr.row(tr.base, i, mean), tr.row(tr.inj, i, mean))
			}
			// The spins at least; the seven more writes (each running the
			// client's receive softirq and wake-up on loopback) add to it,
			// by an amount this test does not know.
			user := tr.index(t, "server_user")
			if d, noise := tr.shift(user, p50); d < want-want/10-3*noise {
				t.Errorf("server_user p50 moved by %.1f µs, want at least the %.0f µs spun between parts − (10%% + 3 × %.1f µs spread between rounds)",
					d/1e3, want/1e3, noise/1e3)
			}
			// The client does the same work either way, but for reading in
			// parts: its components may move by their spread between rounds
			// and 5% of the spins (10% for a wake-up, as in landsIn: a
			// client asleep longer between parts wakes from a deeper idle).
			for _, name := range []string{"client_user", "client_net", "client_net_tx", "client_net_dev", "client_net_rx", "client_kernel_recv", "client_user_recv", "client_wakeup"} {
				k := tr.index(t, name)
				side := want / 20
				if name == "client_wakeup" {
					side = want / 10
				}
				if d, noise := tr.shift(k, p50); math.Abs(d) > 3*noise+side {
					t.Errorf("%s p50 moved by %.1f µs, beyond 3 × its %.1f µs spread between rounds + %.0f%% of the %.0f µs spun: the server's parts landed on the client",
						name, d/1e3, noise/1e3, 100*side/want, want/1e3)
				}
			}
			// And the mean: the parts' time is not in client_kernel_recv's
			// tail either.
			k := tr.index(t, "client_kernel_recv")
			if d, noise := tr.shift(k, mean); d > 3*noise+want/20 {
				t.Errorf("client_kernel_recv mean grew by %.1f µs, beyond 3 × its %.1f µs spread between rounds + 5%% of the %.0f µs spun",
					d/1e3, noise/1e3, want/1e3)
			}
		})
	}
}
