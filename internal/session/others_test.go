package session

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJoinAboveIdle: while other programs keep the join's CPUs busy, a
// join that would go back to SCHED_IDLE stays at nice 5, and goes there
// once that has passed.
func TestJoinAboveIdle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := &levelSteps{level: joinLow, floor: joinIdle, since: t0, aboveIdleUntil: t0.Add(3 * joinRetryIdle)}
	// tick sets the calling thread's scheduling: the test's is given back.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer keepScheduling()()
	now := t0.Add(2 * joinRetryIdle)
	s.last = now // on time
	s.tick(now, t0)
	if s.level != joinLow {
		t.Fatalf("others busy: level %d, want joinLow (%d)", s.level, joinLow)
	}
	now = t0.Add(3 * joinRetryIdle)
	s.last = now
	s.tick(now, t0)
	if s.level != joinIdle {
		t.Fatalf("others gone: level %d, want joinIdle (%d)", s.level, joinIdle)
	}
}

// TestRunBesideSpinner: a program spinning on the client CPU is seen by
// the run (others_cpu_share, at least the CPU share the spinner got; a
// warning naming it), and the run's join, kept off SCHED_IDLE, lets Go
// stop the world: the run ends with its round trips split.
func TestRunBesideSpinner(t *testing.T) {
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs a client CPU apart from the server's")
	}
	spin := exec.Command("taskset", "-c", "1", "sh", "-c", "while :; do :; done")
	if err := spin.Start(); err != nil {
		t.Skipf("taskset: %v", err)
	}
	defer func() { spin.Process.Kill(); spin.Wait() }()
	start, s0 := time.Now(), pidCPU(t, spin.Process.Pid)
	res := measure(t, Config{Server: "threads"}, 3*time.Second)
	got := float64(pidCPU(t, spin.Process.Pid)-s0) / float64(time.Since(start))
	p := res.Probe
	if p == nil {
		t.Fatal("no probe section")
	}
	t.Logf("the spinner got %.2f of CPU 1 over the run; the run read others at %.2f at most", got, p.OthersCPUShare)
	// The spinner's mean over the whole run (its set-up and flush
	// included) is at most its share in the busiest stretch; /proc
	// counts its time in hundredths of a second.
	if p.OthersCPUShare < got-0.05 {
		t.Errorf("others_cpu_share %.2f, want at least the %.2f the spinner got", p.OthersCPUShare, got)
	}
	if got >= 0.15 && !slicesContainsPrefix(res.Warnings, "other programs used the client CPUs") {
		t.Errorf("the spinner got %.2f of the client CPU and no warning names other programs: %q", got, res.Warnings)
	}
	if bc := res.BreakdownCheck; bc == nil || bc.Joined == 0 {
		t.Errorf("nothing joined: %+v", bc)
	}
}

// pidCPU is process pid's CPU time, user and system, from /proc.
func pidCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields count from after the command's closing parenthesis: utime
	// and stime are the 12th and 13th there, in hundredths of a second.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

func slicesContainsPrefix(ss []string, prefix string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
