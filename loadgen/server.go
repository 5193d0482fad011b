package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ServerOptions configure a server process started by StartServer.
type ServerOptions struct {
	Argv      []string      // command and arguments; "-p PORT" is appended
	CPUs      []int         // CPUs the server may run on; empty: not pinned
	Port      int           // port to use; 0 picks a free one
	ReadyWait time.Duration // how long the server may take to accept; default 5s
	Grace     time.Duration // wait after the 0 message and after SIGTERM; default 1s each
}

// ServerProc is a server process under the load generator's control.
type ServerProc struct {
	Port int
	Addr string // 127.0.0.1:Port

	cmd    *exec.Cmd
	stderr *tailBuffer
	exited chan struct{}
	status error // set before exited is closed
}

// PID is the server's process id.
func (s *ServerProc) PID() int { return s.cmd.Process.Pid }

// ErrServerExited reports a server that ended while it was still needed.
var ErrServerExited = errors.New("server exited")

// StartServer starts argv with "-p PORT", pinned to opts.CPUs, and waits
// until the port accepts connections. A server that exits first, or never
// listens, is an error carrying its exit status and the tail of its stderr.
func StartServer(ctx context.Context, opts ServerOptions) (*ServerProc, error) {
	if len(opts.Argv) == 0 {
		return nil, errors.New("start server: no command")
	}
	if opts.ReadyWait <= 0 {
		opts.ReadyWait = 5 * time.Second
	}
	port := opts.Port
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		port = p
	}
	argv := append(append([]string{}, opts.Argv...), "-p", strconv.Itoa(port))
	cmd := exec.Command(argv[0], argv[1:]...)
	s := &ServerProc{Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd,
		stderr: &tailBuffer{max: 4096}, exited: make(chan struct{})}
	cmd.Stdout = s.stderr
	cmd.Stderr = s.stderr
	// The server gets its own process group, so a Ctrl-C aimed at us does
	// not reach it before we have stopped it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startPinned(cmd, opts.CPUs); err != nil {
		return nil, fmt.Errorf("start server %s: %w", argv[0], err)
	}
	go func() {
		s.status = cmd.Wait()
		close(s.exited)
	}()

	deadline := time.Now().Add(opts.ReadyWait)
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("start server %s: %w before listening on port %d (%s)%s",
				argv[0], ErrServerExited, port, exitText(s.status), s.stderrTail())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("start server %s: not accepting on port %d after %v%s",
				argv[0], port, opts.ReadyWait, s.stderrTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPinned starts cmd from an OS thread pinned to cpus, so the child
// and every thread it creates inherit the affinity from birth (setting it
// after the start would miss threads already created). The goroutine keeps
// the thread locked and ends, so Go retires that thread.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		var set unix.CPUSet
		for _, c := range cpus {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("pin to CPUs %v: %w", cpus, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// Exited reports, without blocking, whether the server has ended and how.
func (s *ServerProc) Exited() (bool, string) {
	select {
	case <-s.exited:
		return true, exitText(s.status) + s.stderrTail()
	default:
		return false, ""
	}
}

// Stop ends the server: the 0 message first (the protocol's own way), then
// SIGTERM, then SIGKILL, each after a grace period. It reports how the
// server ended if that was not by our request.
func (s *ServerProc) Stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
		var zero [4]byte
		binary.BigEndian.PutUint32(zero[:], 0)
		_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = c.Write(zero[:])
		c.Close()
	}
	if s.wait(time.Second) {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	if s.wait(time.Second) {
		return nil
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Process.Kill()
	<-s.exited
	return fmt.Errorf("server %s ignored the 0 message and SIGTERM; killed", s.cmd.Path)
}

// WaitExit waits up to d for the server to end and reports whether it did.
func (s *ServerProc) WaitExit(d time.Duration) bool { return s.wait(d) }

func (s *ServerProc) wait(d time.Duration) bool {
	select {
	case <-s.exited:
		return true
	case <-time.After(d):
		return false
	}
}

func (s *ServerProc) stderrTail() string {
	t := strings.TrimSpace(s.stderr.String())
	if t == "" {
		return ""
	}
	return "; its output ends with:\n" + t
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// SelfArgv is the command that runs a built-in server in a process of its
// own: this executable's "serve" subcommand.
func SelfArgv(name string, extra ...string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	return append([]string{exe, "serve", name}, extra...), nil
}
