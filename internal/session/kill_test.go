package session

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestServerDiesWithVolleyscope: a server started by volleyscope, and the
// fork server's per-connection children, are gone soon after volleyscope
// is killed with SIGKILL, which it cannot catch (PR_SET_PDEATHSIG does the
// work). No probe, no root needed.
func TestServerDiesWithVolleyscope(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"goroutine", []string{"bench", "--wait", "--duration", "30s"}},
		{"fork", []string{"bench", "--wait", "--duration", "30s", "--server", "fork", "--clients", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(selfBin, tc.args...)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			vs := cmd.Process.Pid
			killed := false
			defer func() {
				if !killed {
					cmd.Process.Kill()
					cmd.Wait()
				}
			}()

			// The server is the child running "serve"; it is up when
			// volleyscope's note says "started".
			// While another volleyscope run holds the CPUs (--wait says
			// so), the 20 s for the server to start count from its end;
			// a run that holds them past a minute is named, and the test
			// skipped: this test cannot run without the CPUs.
			var server int
			deadline, limit := time.Now().Add(20*time.Second), time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				if strings.Contains(stderr.String(), "waiting for CPU") && !strings.Contains(stderr.String(), "started") {
					if d := time.Now().Add(20 * time.Second); d.Before(limit) {
						deadline = d
					}
				}
				if server == 0 {
					server = childRunning(vs, "serve")
				}
				if server != 0 && strings.Contains(stderr.String(), "started") {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if waiting := stderr.String(); strings.Contains(waiting, "waiting for CPU") && !strings.Contains(waiting, "started") {
				t.Skipf("another volleyscope run held the CPUs for over a minute: %s", strings.TrimSpace(waiting))
			}
			if server == 0 || !strings.Contains(stderr.String(), "started") {
				t.Fatalf("no server started within 20s (server pid %d); stderr:\n%s", server, stderr.String())
			}
			time.Sleep(500 * time.Millisecond) // the clients connect; the fork server forks
			tree := append([]int{server}, descendants(server)...)
			if tc.name == "fork" && len(tree) < 3 {
				t.Fatalf("fork server %d has %d children, want one per connection (2)", server, len(tree)-1)
			}

			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
			cmd.Wait()
			deadline = time.Now().Add(10 * time.Second)
			for {
				var alive []int
				for _, p := range tree {
					if running(p) {
						alive = append(alive, p)
					}
				}
				if len(alive) == 0 {
					return
				}
				if time.Now().After(deadline) {
					for _, p := range alive {
						syscall.Kill(p, syscall.SIGKILL)
					}
					t.Fatalf("processes %v of the server tree %v still run 10s after SIGKILL of volleyscope", alive, tree)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// procStat returns the state and parent of process pid from
// /proc/PID/stat; ok is false when it is gone.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	st, _, ok := procStat(pid)
	return ok && st != 'Z'
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, pp, ok := procStat(p); ok && pp == pid {
			out = append(out, p)
		}
	}
	return out
}

// descendants lists every process below pid.
func descendants(pid int) []int {
	var out []int
	for _, c := range children(pid) {
		out = append(out, c)
		out = append(out, descendants(c)...)
	}
	return out
}

// childRunning finds a running child of pid with word among its
// arguments, or 0.
func childRunning(pid int, word string) int {
	for _, c := range children(pid) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(c) + "/cmdline")
		if err != nil || !running(c) {
			continue
		}
		for _, a := range bytes.Split(b, []byte{0}) {
			if string(a) == word {
				return c
			}
		}
	}
	return 0
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
