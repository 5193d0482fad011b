package session

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// selfBin is a volleyscope binary built for these tests: built-in servers
// run as "volleyscope serve NAME" in a process of their own, as in real use.
var selfBin string

func TestMain(m *testing.M) {
	raisePriority()
	dir, err := os.MkdirTemp("", "volleyscope-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	selfBin = filepath.Join(dir, "volleyscope")
	out, err := exec.Command("go", "build", "-o", selfBin, "../cmd/volleyscope").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build volleyscope for tests: %v\n%s", err, out)
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
