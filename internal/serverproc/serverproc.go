package serverproc

import (
	"context"
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

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/wire"
)

// Options configure a server process started by Start. The zero value of
// every field but Argv is a usable default.
type Options struct {
	// Argv is the command and its arguments (required). The port reaches
	// it in one of three ways: every "{port}" in an argument is replaced
	// by it; else, with FixedPort, the command listens on Port by itself
	// and is given nothing; else "-p PORT" is appended.
	Argv      []string
	FixedPort bool          // the command listens on Port of its own accord
	CPUs      []int         // CPUs the server may run on; empty: those of the thread that starts it
	Port      int           // port to use; 0 picks a free one (required with FixedPort)
	Host      string        // address the server is reached at; default 127.0.0.1
	ReadyWait time.Duration // how long the server may take to accept; default 5s
	Grace     time.Duration // Stop's wait after the exit message and after SIGTERM; default 1s each
	// NoExitMessage: the server does not speak ping-pong (nginx, redis),
	// so Stop begins with SIGTERM.
	NoExitMessage bool
}

// Proc is a running server process started by Start.
type Proc struct {
	Port int
	Addr string // Options.Host:Port

	cmd   *exec.Cmd
	grace time.Duration
	// noExitMessage is Options.NoExitMessage.
	noExitMessage bool
	output        *tailBuffer
	exited        chan struct{}
	status        error // set before exited is closed
}

// ErrExited reports a server that ended while it was still needed.
var ErrExited = errors.New("server exited")

// Start runs opts.Argv on a port (see Options.Argv), pinned to opts.CPUs, and waits until
// the port accepts connections. The package documentation gives the whole
// life of the process. Cancelling ctx during the wait stops the server.
func Start(ctx context.Context, opts Options) (*Proc, error) {
	if len(opts.Argv) == 0 {
		return nil, errors.New("start server: no command given")
	}
	if opts.ReadyWait <= 0 {
		opts.ReadyWait = 5 * time.Second
	}
	if opts.Grace <= 0 {
		opts.Grace = time.Second
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := opts.Port
	if opts.FixedPort {
		if port <= 0 || port > 65535 {
			return nil, fmt.Errorf("start server %s: fixed port %d: want 1-65535", opts.Argv[0], port)
		}
		// A server left from before would answer in this one's place.
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 100*time.Millisecond); err == nil {
			c.Close()
			who := ""
			if pid, _, ferr := Find(net.JoinHostPort(host, strconv.Itoa(port))); ferr == nil {
				who = fmt.Sprintf(" (pid %d)", pid)
			}
			return nil, fmt.Errorf("start server %s: port %d already accepts connections%s: stop that server first", opts.Argv[0], port, who)
		}
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		port = p
	}
	argv, how := portArgv(opts.Argv, port, opts.FixedPort)
	cmd := exec.Command(argv[0], argv[1:]...)
	s := &Proc{Port: port, Addr: net.JoinHostPort(host, strconv.Itoa(port)), cmd: cmd, grace: opts.Grace, noExitMessage: opts.NoExitMessage,
		output: &tailBuffer{max: 4096}, exited: make(chan struct{})}
	cmd.Stdout = s.output
	cmd.Stderr = s.output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.startAndWatch(opts.CPUs); err != nil {
		return nil, fmt.Errorf("start server %s: %w", argv[0], err)
	}

	deadline := time.Now().Add(opts.ReadyWait)
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("start server %s: %w before listening on port %d (%s)%s",
				argv[0], ErrExited, port, exitText(s.status), s.outputTail())
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("start server %s: %w", argv[0], ctx.Err())
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("start server %s: not accepting on %s after %v; check that it %s and listens on %s%s",
				strings.Join(argv, " "), s.Addr, opts.ReadyWait, how, host, s.outputTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// portArgv is the command that starts a server on port, and how the port
// reached it (for an error message).
func portArgv(argv []string, port int, fixed bool) ([]string, string) {
	out := make([]string, len(argv))
	templated := false
	for i, a := range argv {
		out[i] = strings.ReplaceAll(a, "{port}", strconv.Itoa(port))
		templated = templated || out[i] != a
	}
	switch {
	case templated:
		return out, "takes the port where {port} stands"
	case fixed:
		return out, fmt.Sprintf("listens on port %d by itself", port)
	}
	return append(out, "-p", strconv.Itoa(port)), "takes -p PORT"
}

// startAndWatch forks the server from a goroutine locked to its thread,
// pinned to cpus if any, and waits for it there: PR_SET_PDEATHSIG fires
// when the forking thread ends, so that thread must outlive the server.
// The goroutine never unlocks, so when the server has been reaped the
// thread ends with it instead of going back to Go's pool with a changed
// mask; the mask is put back first all the same, for the main thread,
// which Go parks instead of ending. Blocked in wait4, the thread costs no
// CPU.
func (s *Proc) startAndWatch(cpus []int) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if len(cpus) > 0 {
			unpin, err := affinity.PinThread(cpus)
			if err != nil {
				started <- err
				return
			}
			defer unpin()
		}
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.status = s.cmd.Wait()
		close(s.exited)
	}()
	return <-started
}

// PID is the server's process id.
func (s *Proc) PID() int { return s.cmd.Process.Pid }

// Exited reports, without blocking, whether the server has ended, and if
// so its exit status and the tail of its output.
func (s *Proc) Exited() (bool, string) {
	select {
	case <-s.exited:
		return true, exitText(s.status) + s.outputTail()
	default:
		return false, ""
	}
}

// WaitExit waits up to d for the server to end and reports whether it did.
func (s *Proc) WaitExit(d time.Duration) bool {
	select {
	case <-s.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// Stop ends the server: the ping-pong exit message first (unless NoExitMessage), then SIGTERM,
// then SIGKILL to its process group, each after the grace period, and
// reaps it. It is an error only when the server had to be killed. Stop
// may be called more than once.
func (s *Proc) Stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	if !s.noExitMessage {
		if c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
			var msg [wire.Size]byte
			wire.Put(msg[:], wire.Exit)
			_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			_, _ = c.Write(msg[:])
			c.Close()
		}
		if s.WaitExit(s.grace) {
			return nil
		}
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	if s.WaitExit(s.grace) {
		return nil
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Process.Kill()
	<-s.exited
	return fmt.Errorf("stop server %s: it ignored the exit message and SIGTERM for %v each; killed", s.cmd.Path, s.grace)
}

func (s *Proc) outputTail() string {
	t := strings.TrimSpace(s.output.String())
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
// own: this executable's "serve" subcommand, with extra flags after the
// name.
func SelfArgv(name string, extra ...string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	return append([]string{exe, "serve", name}, extra...), nil
}
