package session

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestRunConfinesItself: during a run, every thread of this process is on
// the client CPUs (the runtime's, the progress callback's, the client's),
// and every thread of the server on the server CPUs, read from each
// thread's Cpus_allowed_list mid-run.
func TestRunConfinesItself(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs: client and server CPUs must differ")
	}
	clientCPUs, serverCPUs := DefaultCPUs()
	var once sync.Once
	var ours, theirs []affinity.ThreadCPUs
	var sampleErr error
	var server int
	calls := 0
	_, err := Run(context.Background(), Config{
		Self: selfBin, ServerCPUs: serverCPUs,
		Load: loadgen.Options{Clients: 2, ClientCPUs: clientCPUs, Duration: 1500 * time.Millisecond, Warmup: -1, CI: -1, Timeout: stallTimeout},
	}, Callbacks{
		Progress: func(loadgen.Progress) {
			if calls++; calls < 2 {
				return // the second check is well inside the run
			}
			once.Do(func() {
				server = childRunning(os.Getpid(), "serve")
				if ours, sampleErr = affinity.Placement(os.Getpid()); sampleErr != nil {
					return
				}
				theirs, sampleErr = affinity.Placement(server)
			})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sampleErr != nil {
		t.Fatal(sampleErr)
	}
	if server == 0 || len(ours) < 3 || len(theirs) == 0 {
		t.Fatalf("sampled %d of our threads and %d of server %d's; want several of each", len(ours), len(theirs), server)
	}
	for _, th := range ours {
		if !affinity.Within(th.CPUs, clientCPUs) {
			t.Errorf("our thread %d may run on CPUs %v; want only the client CPUs %v", th.TID, th.CPUs, clientCPUs)
		}
	}
	for _, th := range theirs {
		if !affinity.Within(th.CPUs, serverCPUs) {
			t.Errorf("server thread %d may run on CPUs %v; want only the server CPUs %v", th.TID, th.CPUs, serverCPUs)
		}
	}
	t.Logf("%d threads of ours on %v, %d of the server on %v", len(ours), clientCPUs, len(theirs), serverCPUs)
}
