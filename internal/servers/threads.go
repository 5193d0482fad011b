package servers

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// rawFd takes a connection's socket out of Go's netpoller: a blocking
// duplicate of its fd, the Go side closed.
func rawFd(c net.Conn) (int, error) {
	f, err := c.(*net.TCPConn).File()
	c.Close()
	if err != nil {
		return -1, fmt.Errorf("take connection fd: %w", err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("dup connection fd: %w", err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set connection blocking: %w", err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	return fd, nil
}

// serveBlocking serves one connection with blocking read and write until
// it closes; it reports whether a 0 message asked the server to exit.
func serveBlocking(fd int, o Options) (exit bool) {
	var st conn
	in := make([]byte, 64<<10)
	out := make([]byte, 0, len(in)+4)
	for {
		n, err := unix.Read(fd, in)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return false
		}
		out, exit = st.feed(in[:n], o, out[:0])
		for b := out; len(b) > 0; {
			k, err := unix.Write(fd, b)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return exit
			}
			b = b[k:]
		}
		if exit {
			return true
		}
	}
}

// serveThreads gives every connection an OS thread of its own doing
// blocking system calls: the classic thread-per-connection server.
func serveThreads(ctx context.Context, ln *net.TCPListener, o Options) error {
	g := newGroup(ctx, ln, func(fd int) {
		unix.Shutdown(fd, unix.SHUT_RDWR) // wakes the blocked read
	})
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		fd, err := rawFd(c)
		if err != nil {
			continue
		}
		g.add(fd)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the connection
			if serveBlocking(fd, o) {
				g.requestExit()
			}
			g.done(fd, func(fd int) { unix.Close(fd) })
		}()
	}
	return g.wait(ctx, "threads")
}
