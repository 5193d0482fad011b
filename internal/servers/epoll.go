package servers

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

func serveEpollLT(ctx context.Context, ln *net.TCPListener, o Options) error {
	return serveEpoll(ctx, ln, o, false)
}

func serveEpollET(ctx context.Context, ln *net.TCPListener, o Options) error {
	return serveEpoll(ctx, ln, o, true)
}

// listenerFd takes a non-blocking duplicate of the listener's fd for the
// event-loop servers.
func listenerFd(ln *net.TCPListener) (int, error) {
	f, err := ln.File()
	if err != nil {
		return -1, fmt.Errorf("take listener fd: %w", err)
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return -1, fmt.Errorf("dup listener fd: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set listener non-blocking: %w", err)
	}
	return fd, nil
}

// cancelFd returns an eventfd that becomes readable when ctx is done, so
// an event loop blocked in the kernel wakes up for it.
func cancelFd(ctx context.Context) (int, func(), error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return -1, nil, fmt.Errorf("eventfd: %w", err)
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		case <-stop:
		}
	}()
	return efd, func() { close(stop); unix.Close(efd) }, nil
}

// econn is one connection of the epoll server.
type econn struct {
	conn
	pending []byte // reply bytes the socket did not take yet
	out     bool   // EPOLLOUT armed
}

// serveEpoll is a single-threaded event loop over non-blocking sockets.
// Level-triggered, it reads once per readiness report; edge-triggered, it
// must drain each socket to EAGAIN, because the kernel reports a socket
// again only when new data arrives.
func serveEpoll(ctx context.Context, ln *net.TCPListener, o Options, et bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lfd, err := listenerFd(ln)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer unix.Close(epfd)
	efd, stopCancel, err := cancelFd(ctx)
	if err != nil {
		return err
	}
	defer stopCancel()
	connFlags := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
	if et {
		connFlags |= unix.EPOLLET
	}
	for _, fd := range []int{lfd, efd} {
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	conns := map[int]*econn{}
	defer func() {
		for fd := range conns {
			unix.Close(fd)
		}
	}()
	closeConn := func(fd int) {
		unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, fd, nil)
		unix.Close(fd)
		delete(conns, fd)
	}
	events := make([]unix.EpollEvent, 256)
	in := make([]byte, 64<<10)
	out := make([]byte, 0, len(in)+4)

	// flush writes c's pending bytes and arms or disarms EPOLLOUT.
	flush := func(fd int, c *econn) bool {
		for len(c.pending) > 0 {
			n, err := unix.Write(fd, c.pending)
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				return false
			}
			c.pending = c.pending[n:]
		}
		want := len(c.pending) > 0
		if want != c.out {
			ev := unix.EpollEvent{Events: connFlags, Fd: int32(fd)}
			if want {
				ev.Events |= unix.EPOLLOUT
			}
			unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, fd, &ev)
			c.out = want
		}
		return true
	}

	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			switch fd {
			case efd:
				return nil
			case lfd:
				for {
					cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil {
						break // EAGAIN: accepted all
					}
					unix.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
					if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, cfd, &unix.EpollEvent{Events: connFlags, Fd: int32(cfd)}); err != nil {
						unix.Close(cfd)
						continue
					}
					conns[cfd] = &econn{}
				}
				continue
			}
			c := conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 && !flush(fd, c) {
				closeConn(fd)
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
				continue
			}
			for {
				k, err := unix.Read(fd, in)
				if err == unix.EINTR {
					continue
				}
				if err == unix.EAGAIN {
					break
				}
				if err != nil || k == 0 {
					closeConn(fd)
					break
				}
				var exit bool
				out, exit = c.feed(in[:k], o, out[:0])
				if exit {
					// Answer the messages that came before the 0, after
					// whatever is still pending, then stop.
					finalWrite(fd, c.pending, out)
					return ErrExitRequested
				}
				if len(c.pending) == 0 {
					// The common case: the socket takes the whole reply,
					// straight from the loop's buffer.
					for len(out) > 0 {
						w, err := unix.Write(fd, out)
						if err != nil {
							break
						}
						out = out[w:]
					}
				}
				c.pending = append(c.pending, out...) // only what the socket refused
				if !flush(fd, c) {
					closeConn(fd)
					break
				}
				if !et {
					break // level-triggered: epoll reports the rest
				}
			}
		}
	}
}

// finalWrite writes a and then b to fd on the way out: the socket is made
// blocking, and a send timeout bounds the wait for a client that does not
// read.
func finalWrite(fd int, a, b []byte) {
	unix.SetNonblock(fd, false)
	tv := unix.NsecToTimeval(int64(time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	for _, p := range [][]byte{a, b} {
		for len(p) > 0 {
			n, err := unix.Write(fd, p)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			p = p[n:]
		}
	}
}
