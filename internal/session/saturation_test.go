package session

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/testenv"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestClientSaturationWarning: with a CPU-bound thread on the client's
// CPU, the run says the client may limit the measurement; without it,
// with one client and the server on another CPU, it does not.
func TestClientSaturationWarning(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	testenv.Exclusive(t)
	run := func(hog bool) []string {
		var stop atomic.Bool
		done := make(chan struct{})
		if hog {
			go func() {
				defer close(done)
				runtime.LockOSThread()
				var set unix.CPUSet
				set.Set(1)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					t.Error(err)
					return
				}
				for !stop.Load() {
				}
			}()
		} else {
			close(done)
		}
		out, err := Run(context.Background(), Config{Self: selfBin, ServerCPUs: []int{0}, Load: loadgen.Options{
			ClientCPUs: []int{1}, Duration: 2 * time.Second, Warmup: 200 * time.Millisecond, CI: -1, P99CI: -1, Timeout: stallTimeout,
		}}, Callbacks{})
		stop.Store(true)
		<-done
		if err != nil {
			t.Fatal(err)
		}
		cl := out.Run.ClientLoad
		if !cl.Known {
			t.Errorf("hog %v: no client load: %s (%d client threads)", hog, cl.Unknown, len(out.Meta.ClientCPUs))
		}
		t.Logf("hog %v: client CPU %.0f%% busy, client threads %.0f%% of it, run-queue wait %.1f µs per round trip, mean latency %.1f µs",
			hog, 100*cl.CPUsBusy, 100*cl.OnCPU, cl.RunDelayPerTripNs/1e3, out.Latency.Mean/1e3)
		return out.Warnings
	}
	saturated := func(ws []string) bool {
		for _, w := range ws {
			if strings.Contains(w, "the client may limit") {
				return true
			}
		}
		return false
	}
	if ws := run(true); !saturated(ws) {
		t.Errorf("a hog on the client's CPU, and no client-saturation warning: %q", ws)
	}
	if ws := run(false); saturated(ws) {
		t.Logf("note: a saturation warning without a hog (a busy machine): %q", ws)
	}
}
