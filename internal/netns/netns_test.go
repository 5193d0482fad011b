package netns

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/volleyscope/volleyscope/internal/testenv"
)

// TestCreateCloseRemoveStale: Close removes what Create made, and
// RemoveStale removes what a killed process left behind.
func TestCreateCloseRemoveStale(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	p, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	if !nsExists(p.NS) || !linkExists(p.HostIf) {
		t.Fatalf("Create made %+v, but the namespace or the veth is missing", p)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if nsExists(p.NS) || linkExists(p.HostIf) {
		t.Fatalf("left after Close: %+v", p)
	}
	// A pid that no process has: pid_max is at most 2^22.
	const dead = 4194303
	stale := &Pair{NS: fmt.Sprintf("%s-%d", prefix, dead), HostIf: fmt.Sprintf("%sh%d", prefix, dead), NSIf: fmt.Sprintf("%sn%d", prefix, dead)}
	for _, s := range [][]string{{"netns", "add", stale.NS}, {"link", "add", stale.HostIf, "type", "veth", "peer", "name", stale.NSIf}} {
		if err := ip(s...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { stale.Close() })
	if err := RemoveStale(); err != nil {
		t.Error(err)
	}
	if nsExists(stale.NS) || linkExists(stale.HostIf) {
		t.Errorf("RemoveStale left %+v", stale)
	}
}
