package proccost

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestTakeCountsABusyChild: a child that spins for a while shows CPU time
// in the tree of its parent, and a sleeping loop shows voluntary
// switches.
func TestTakeCountsABusyChild(t *testing.T) {
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 0.05; sleep 0.05; sleep 0.05")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	a, err := Take(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if a.Procs < 2 {
		t.Errorf("tree of this test has %d processes, want the child too", a.Procs)
	}
	deadline := time.Now().Add(10 * time.Second)
	var b Sample
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if b, err = Take(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if b.CPUNs-a.CPUNs > 20e6 {
			break
		}
	}
	c := Per(a, b, 10)
	if c.CPUNs < 2e6 {
		t.Errorf("CPU per request %.0f ns over 10 requests, want the child's spin (> 20 ms in all)", c.CPUNs)
	}
	if c.Requests != 10 || c.Threads == 0 || c.Procs == 0 {
		t.Errorf("cost %+v", c)
	}
	if z := Per(b, a, 10); z.CPUNs != 0 {
		t.Errorf("counters going down gave %v ns, want 0", z.CPUNs)
	}
	if _, err := Take(1 << 30); err == nil {
		t.Error("Take of a missing process gave no error")
	}
}

// TestCheck: a cost is given only over samples far enough apart that
// cover most of the measured window.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		span, window time.Duration
		valid        bool
	}{
		{0, time.Second, false},
		{2 * time.Millisecond, time.Second, false},
		{400 * time.Millisecond, 500 * time.Millisecond, false},
		{800 * time.Millisecond, time.Second, true},
		{time.Second, 3 * time.Second, false},
		{2 * time.Second, 3 * time.Second, true},
	} {
		if got := Check(tc.span, tc.window) == ""; got != tc.valid {
			t.Errorf("Check(%v, %v) = %q, want valid %v", tc.span, tc.window, Check(tc.span, tc.window), tc.valid)
		}
	}
}
