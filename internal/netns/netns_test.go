package netns

import (
	"fmt"
	"os/exec"
	"strings"
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

// TestTwoPairs: a process's second pair has names and a /30 of its own,
// the route makes the first pair's host address reachable from it, and
// RemoveStale removes a killed process's second pair too.
func TestTwoPairs(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	a, err := CreateNth(0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := CreateNth(1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.NS == b.NS || a.HostIf == b.HostIf || a.HostAddr == b.HostAddr {
		t.Fatalf("pairs share names or addresses: %+v %+v", a, b)
	}
	if err := b.RouteTo(a.HostAddr); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "-n", b.NS, "route", "get", a.HostAddr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "via "+b.HostAddr) {
		t.Errorf("route to %s from %s: %s %v", a.HostAddr, b.NS, out, err)
	}
	if _, err := CreateNth(MaxPairs); err == nil {
		t.Error("a pair past MaxPairs was made")
	}
	for _, p := range []*Pair{a, b} {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if nsExists(p.NS) || linkExists(p.HostIf) {
			t.Errorf("left after Close: %+v", p)
		}
	}
	const dead = 4194303
	stale := &Pair{NS: fmt.Sprintf("%s-%dx1", prefix, dead), HostIf: fmt.Sprintf("%sh%dx1", prefix, dead), NSIf: fmt.Sprintf("%sn%dx1", prefix, dead)}
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
