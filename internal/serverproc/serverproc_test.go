package serverproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/wire"
)

// The test binary doubles as the server: with testServerEnv set it serves
// ping-pong on -p PORT instead of running the tests.
const testServerEnv = "SERVERPROC_TEST_SERVER" // "pingpong" or "stubborn"

func TestMain(m *testing.M) {
	// Keep the main thread for the main goroutine: the runtime never ends
	// the main thread (it parks it instead), so a start run there would
	// hide a forking thread that ends too early. TestOutlivesStartingThread
	// relies on this.
	runtime.LockOSThread()
	if mode := os.Getenv(testServerEnv); mode != "" {
		os.Exit(testServer(mode))
	}
	os.Exit(m.Run())
}

// testServer answers ping-pong on 127.0.0.1:PORT. "pingpong" exits on the
// exit message and on SIGTERM; "stubborn" ignores both.
func testServer(mode string) int {
	if len(os.Args) < 3 || os.Args[len(os.Args)-2] != "-p" {
		fmt.Fprintln(os.Stderr, "test server: want -p PORT last")
		return 2
	}
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[len(os.Args)-1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			var b [wire.Size]byte
			for {
				if _, err := io(c, b[:]); err != nil {
					return
				}
				v := wire.Get(b[:])
				if v == wire.Exit {
					if mode == "stubborn" {
						return
					}
					os.Exit(0)
				}
				wire.Put(b[:], wire.Reply(v))
				if _, err := c.Write(b[:]); err != nil {
					return
				}
			}
		}()
	}
}

func io(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

func self(t *testing.T, mode string) []string {
	t.Helper()
	t.Setenv(testServerEnv, mode)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "-test.run=^$"}
}

func TestStartFailures(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		argv []string
		want string
	}{
		{"not executable", []string{"/nonexistent/server"}, "no such file"},
		{"exits at once", []string{"/bin/sh", "-c", "echo boom >&2; exit 3", "sh"}, "boom"},
		{"never listens", []string{"/bin/sh", "-c", "exec sleep 30", "sh"}, "not accepting"},
		{"no command", nil, "no command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(ctx, Options{Argv: tc.argv, ReadyWait: 300 * time.Millisecond, Grace: 100 * time.Millisecond})
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestLifecycle starts the test server, checks that it answers and how
// Stop ends it: by the exit message, or by SIGKILL when it ignores both
// the message and SIGTERM.
func TestLifecycle(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		noExit   bool   // Options.NoExitMessage
		stopErr  string // "" : Stop returns nil
		exitText string // in Exited's status
	}{
		{"pingpong", false, "", "exit status 0"},
		// Not sent the exit message, it ends on SIGTERM.
		{"pingpong", true, "", "signal: terminated"},
		{"stubborn", false, "killed", "signal: killed"},
	} {
		t.Run(fmt.Sprintf("%s/noexit=%v", tc.mode, tc.noExit), func(t *testing.T) {
			s, err := Start(context.Background(), Options{Argv: self(t, tc.mode), Grace: 200 * time.Millisecond, NoExitMessage: tc.noExit})
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			var b [wire.Size]byte
			wire.Put(b[:], 41)
			c.Write(b[:])
			if _, err := io(c, b[:]); err != nil || wire.Get(b[:]) != 42 {
				t.Fatalf("reply to 41: %d, %v", wire.Get(b[:]), err)
			}
			c.Close()
			if dead, how := s.Exited(); dead {
				t.Fatalf("server ended early: %s", how)
			}
			err = s.Stop()
			if tc.stopErr == "" && err != nil || tc.stopErr != "" && (err == nil || !strings.Contains(err.Error(), tc.stopErr)) {
				t.Errorf("Stop() = %v, want %q", err, tc.stopErr)
			}
			dead, how := s.Exited()
			if !dead || !strings.Contains(how, tc.exitText) {
				t.Errorf("Exited() = %v, %q; want ended with %q", dead, how, tc.exitText)
			}
			if err := s.Stop(); err != nil {
				t.Errorf("second Stop() = %v", err)
			}
		})
	}
}

// TestOutlivesStartingThread: PR_SET_PDEATHSIG fires when the thread that
// forked the server ends. A pinned start uses a thread of its own; if that
// thread ended after the fork, the kernel would kill the server at once.
// The server must still answer after the starting goroutine has returned
// and the runtime has had time to retire threads, and its threads must be
// on its CPUs while this process's are not confined by the start.
func TestOutlivesStartingThread(t *testing.T) {
	cpus := []int{runtime.NumCPU() - 1}
	s, err := Start(context.Background(), Options{Argv: self(t, "pingpong"), CPUs: cpus})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	if dead, how := s.Exited(); dead {
		t.Fatalf("server died after its start: %s", how)
	}
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatalf("server gone after its start: %v", err)
	}
	c.Close()
	threads, err := affinity.Placement(s.PID())
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range threads {
		if !affinity.Within(th.CPUs, cpus) {
			t.Errorf("server thread %d on CPUs %v, want within %v", th.TID, th.CPUs, cpus)
		}
	}
}

func TestStartCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Start(ctx, Options{Argv: []string{"/bin/sh", "-c", "exec sleep 30", "sh"}, Grace: 100 * time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestFind(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, port, err := Find(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() || int(port) != ln.Addr().(*net.TCPAddr).Port {
		t.Errorf("Find = pid %d port %d, want %d %d", pid, port, os.Getpid(), ln.Addr().(*net.TCPAddr).Port)
	}
	ln.Close()
	for _, tc := range []struct{ addr, want string }{
		{ln.Addr().String(), "nothing listens"},
		{"127.0.0.1", "HOST:PORT"},
		{"127.0.0.1:70000", "not in 1-65535"},
	} {
		if _, _, err := Find(tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Find(%q) = %v, want %q", tc.addr, err, tc.want)
		}
	}
}

// TestFindAll: a server that forked its workers before we looked
// (testdata/preforkserver) is found whole, its parent first.
func TestFindAll(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "preforkserver")
	if out, err := exec.Command("go", "build", "-o", bin, "../../testdata/preforkserver").CombinedOutput(); err != nil {
		t.Fatalf("build preforkserver: %v\n%s", err, out)
	}
	s, err := Start(context.Background(), Options{Argv: []string{bin, "-workers", "3"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); len(pids) < 4 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if pids, _, err = FindAll(s.Addr); err != nil {
			t.Fatal(err)
		}
	}
	if len(pids) != 4 || pids[0] != s.PID() {
		t.Fatalf("FindAll = %v, want the parent %d first and its 3 workers", pids, s.PID())
	}
	for _, p := range pids[1:] {
		if parentPID(p) != s.PID() {
			t.Errorf("pid %d: parent %d, want %d", p, parentPID(p), s.PID())
		}
	}
	// A connection the server accepted names the worker that holds it, too.
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if again, _, err := FindAll(s.Addr); err != nil || len(again) != 4 {
		t.Errorf("FindAll with a connection = %v, %v; want the same 4 processes", again, err)
	}
	if pid, _, err := Find(s.Addr); err != nil || pid != s.PID() {
		t.Errorf("Find = %d, %v; want the parent %d", pid, err, s.PID())
	}
}
