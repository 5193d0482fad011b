package session

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
)

// TestNetNS: client and server in two namespaces joined by veth; the
// breakdown joins as on loopback, and nothing of the namespace is left.
func TestNetNS(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	out, err := Run(context.Background(), Config{Self: selfBin, Server: "threads", NetNS: true, Probe: true, ServerCPUs: []int{0},
		Load: loadgen.Options{Clients: 2, ClientCPUs: []int{1}, Duration: time.Second, Warmup: 200 * time.Millisecond, CI: -1, P99CI: -1, Timeout: stallTimeout}}, Callbacks{})
	if err != nil {
		t.Fatal(err)
	}
	r := out
	if !strings.Contains(r.Meta.Network, "veth") {
		t.Errorf("meta.network %q, want the veth pair", r.Meta.Network)
	}
	bc := r.BreakdownCheck
	if bc == nil {
		t.Fatal("no breakdown check in the results")
	}
	wantJoined(t, r)
	t.Logf("%s: %d round trips, mean %.1f µs, joined %d of %d", r.Meta.Network, r.Latency.Count, r.Latency.Mean/1e3, bc.Joined, bc.Joined+bc.Unjoined)
	ns, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(ns), "vs-"+strconv.Itoa(os.Getpid())) {
		t.Errorf("namespace left behind: %s", ns)
	}
	links, _ := exec.Command("ip", "-o", "link").Output()
	if strings.Contains(string(links), "vsh"+strconv.Itoa(os.Getpid())) {
		t.Errorf("veth left behind")
	}
}
