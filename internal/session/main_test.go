package session

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// selfBin is a volleyscope binary built for these tests: built-in servers
// run as "volleyscope serve NAME" in a process of their own, as in real use.
var selfBin string

func TestMain(m *testing.M) {
	if os.Getenv(hogEnv) != "" {
		runHog()
		return
	}
	raisePriority()
	startNice = threadNice(strconv.Itoa(os.Getpid()))
	dir, err := os.MkdirTemp("", "volleyscope-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	selfBin = filepath.Join(dir, "volleyscope")
	out, err := exec.Command("go", "build", "-o", selfBin, "../../cmd/volleyscope").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build volleyscope for tests: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// raisePriority sets every thread of this process to nice -10 when root:
// threads made later and the servers the tests start inherit it. The
// truth tests then lose little of their CPUs to the unit tests and builds
// of a 'make test' running beside them, which at nice 0 preempted a
// spinning server on nearly every request, each preemption leaving a few
// µs of switching in server_user. What preemption remains is what
// server_preempted is for.
func raisePriority() {
	if os.Geteuid() != 0 {
		return
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		fmt.Fprintln(os.Stderr, "raise priority:", err)
		return
	}
	for _, task := range tasks {
		if tid, err := strconv.Atoi(task.Name()); err == nil {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, -10); err != nil {
				fmt.Fprintf(os.Stderr, "raise priority of thread %d: %v\n", tid, err)
			}
		}
	}
}

// hogEnv makes the test binary a CPU hog (see hog in truth_test.go): a
// process of its own, since Run confines every thread of this one to the
// client CPUs.
const hogEnv = "VOLLEYSCOPE_TEST_HOG"

// runHog, after saying "ready", holds CPU 0 at a real-time priority for
// hogBurst of every hogPeriod, until its stdin closes.
func runHog() {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(0)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintln(os.Stderr, "hog: pin to CPU 0:", err)
		os.Exit(1)
	}
	// A hog that competes by weight is a matter of luck under EEVDF: a
	// woken server with lag to spend runs at once, so a nice -20 hog may
	// delay one round and not the next. A real-time hog is not: for hogBurst of every
	// hogPeriod it holds CPU 0 outright, so a request that arrives or runs
	// then waits for the burst to end. The gaps keep the kernel's
	// real-time throttling out of it.
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 1 /* SCHED_FIFO */, Priority: 10}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		fmt.Fprintln(os.Stderr, "hog: SCHED_FIFO:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		end := time.Now().Add(hogBurst)
		for time.Now().Before(end) {
		}
		// The thread itself sleeps (not a goroutine parked by Go's
		// scheduler), so CPU 0 is free exactly between bursts.
		ts := unix.NsecToTimespec((hogPeriod - hogBurst).Nanoseconds())
		_ = unix.Nanosleep(&ts, nil)
	}
}

// The real-time hog's duty cycle.
const (
	hogBurst  = 200 * time.Microsecond
	hogPeriod = 300 * time.Microsecond
)

// stallTimeout is the reply timeout of the tests' runs: a machine loaded
// by other work (another test run, a CPU hog at high priority) has
// stalled a single round trip for seconds, and no test here is about
// timeouts.
const stallTimeout = 30 * time.Second
