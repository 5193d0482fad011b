package servers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"
	_ "unsafe" // go:linkname

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/wire"
)

// Options are the behaviour shared by every server.
type Options struct {
	Echo bool          // echo mode: write back whatever arrives
	Spin time.Duration // userspace work per request, in the thread's CPU time: preemption lengthens it (0: none)
}

// Server is one reference server.
type Server struct {
	Name     string // as used by --server and 'volleyscope serve'
	Model    string // the I/O model, one line
	Requires string // kernel requirement, "" if none beyond Linux
	// Serve serves ln until ctx is cancelled (returns nil) or a client
	// sends 0 (returns ErrExitRequested).
	Serve func(ctx context.Context, ln *net.TCPListener, opts Options) error
	check func() error // nil: works everywhere
}

// ErrExitRequested is returned by Serve when a client sent the 0 message.
var ErrExitRequested = errors.New("server: exit requested by client")

var registry = []Server{
	{Name: "goroutine", Model: "Go net: one goroutine per connection (netpoller, epoll underneath)", Serve: serveGoroutine},
	{Name: "threads", Model: "one OS thread per connection, blocking read/write", Serve: serveThreads},
	{Name: "fork", Model: "one process per connection (re-exec with the socket), blocking read/write", Serve: serveFork},
	{Name: "epoll-lt", Model: "one thread, non-blocking sockets, level-triggered epoll", Serve: serveEpollLT},
	{Name: "epoll-et", Model: "one thread, non-blocking sockets, edge-triggered epoll", Serve: serveEpollET},
	{Name: "iouring", Model: "one thread, one io_uring: accept, recv, send", Requires: "Linux 5.6 (io_uring accept/recv/send)", Serve: serveIOUring, check: checkIOUring},
	{Name: "iouring-multishot", Model: "one thread, one io_uring: multishot accept and recv, provided-buffer ring", Requires: "Linux 6.0 (multishot recv, buffer rings)", Serve: serveMultishot, check: checkMultishot},
	{Name: "http", Model: "HTTP/1.1: Go net/http, a goroutine per connection, a 6-byte \"hello\" body (--proto http)", Serve: serveHTTP},
	{Name: "resp", Model: "RESP (Redis): PING, GET, SET; a goroutine per connection (--proto redis)", Serve: serveRESP},
}

// All lists the servers.
func All() []Server { return registry }

// Lookup finds a server by name.
func Lookup(name string) (Server, error) {
	for _, s := range registry {
		if s.Name == name {
			return s, nil
		}
	}
	return Server{}, errors.New(Unknown(name))
}

// Check says whether this kernel can run the server, and if not what it
// lacks.
func Check(name string) error {
	s, err := Lookup(name)
	if err != nil {
		return err
	}
	if s.check != nil {
		if err := s.check(); err != nil {
			// e.g. "iouring-multishot: kernel lacks multishot recv
			// (needs Linux 6.0+)"
			return fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return nil
}

// IOUringFeatures says which io_uring features of the built-in servers
// this kernel offers, e.g. "accept/recv/send yes; multishot recv and
// buffer rings no (…)".
func IOUringFeatures() string {
	say := func(name string) string {
		if err := Check(name); err != nil {
			return "no (" + err.Error() + ")"
		}
		return "yes"
	}
	return "accept/recv/send " + say("iouring") + "; multishot recv and buffer rings " + say("iouring-multishot")
}

// ended is what a server that accepts in a loop returns once its
// connections are done: ErrExitRequested after a 0 message (exit closed),
// nil after cancellation, else an error (the listener went away).
func ended(ctx context.Context, exit <-chan struct{}, name string) error {
	select {
	case <-exit:
		return ErrExitRequested
	default:
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%s server: listener closed", name)
}

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// spin does d of work on this thread's CPU: it runs until the thread's
// CPU time (CLOCK_THREAD_CPUTIME_ID) has advanced by d, so that time the
// thread spends preempted inside it lengthens the spin instead of
// shortening the work. The breakdown must charge d to server_user and the
// preemptions to server_preempted.
//
// The thread CPU clock has no vDSO path (clock_gettime falls back to the
// system call for CPU clocks), and the probe records every system call of
// a tracked thread, so it is read rarely: the spin busy-waits on the
// monotonic clock (vDSO) for what is left, then reads the CPU clock once
// to see how much of that wait the thread really ran. Unpreempted, that
// is two system calls per spin; each preemption adds one.
func spin(d time.Duration) {
	if d <= 0 {
		return
	}
	// A goroutine moved to another thread mid-spin would read another
	// thread's clock.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPUNs()
	for {
		left := d.Nanoseconds() - (threadCPUNs() - start)
		if left <= 0 {
			return
		}
		end := nanotime() + left
		for nanotime() < end {
		}
	}
}

// threadCPUNs is the calling thread's CPU time in ns.
func threadCPUNs() int64 {
	var ts unix.Timespec
	// Only EINVAL or EFAULT can fail it, neither possible here.
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// conn is the protocol state of one connection for the servers that see
// raw bytes: a partial ping-pong message survives across reads.
type conn struct {
	asm wire.Assembler
}

// feed handles the bytes in, appending the answer to out (which must have
// room for len(in)+4 bytes) and returning it; exit is true when a 0
// message arrived.
func (c *conn) feed(in []byte, o Options, out []byte) (res []byte, exit bool) {
	if o.Echo {
		spin(o.Spin)
		return append(out, in...), false
	}
	for len(in) > 0 {
		v, rest, ok := c.asm.Next(in)
		if !ok {
			break
		}
		in = rest
		if v == wire.Exit {
			return out, true
		}
		spin(o.Spin)
		out = wire.AppendReply(out, v)
	}
	return out, false
}
