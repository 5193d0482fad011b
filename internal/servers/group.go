package servers

import (
	"context"
	"net"
	"sync"
)

// group is what the accept-loop servers (goroutine, threads, fork) share:
// the live connections or children, a way to end them all, and the exit
// that a 0 message asks for.
type group[K comparable] struct {
	mu    sync.Mutex
	live  map[K]bool
	ended bool // the watcher has ended the members: later ones are ended on add
	end   func(K)
	exit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// newGroup starts watching: once ctx is done or an exit is requested, the
// listener is closed (ending the accept loop) and end is called for every
// live member.
func newGroup[K comparable](ctx context.Context, ln *net.TCPListener, end func(K)) *group[K] {
	g := &group[K]{live: map[K]bool{}, exit: make(chan struct{}), end: end}
	go func() {
		select {
		case <-ctx.Done():
		case <-g.exit:
		}
		ln.Close()
		g.mu.Lock()
		g.ended = true
		for k := range g.live {
			end(k)
		}
		g.mu.Unlock()
	}()
	return g
}

// add registers a live member; its goroutine must call done when it ends.
// A member accepted before the listener closed but added after the
// watcher ended the others (an Accept returning as the run is cancelled)
// is ended at once, or it would be served, and waited for, forever.
func (g *group[K]) add(k K) {
	g.wg.Add(1)
	g.mu.Lock()
	g.live[k] = true
	if g.ended {
		g.end(k)
	}
	g.mu.Unlock()
}

// done unregisters a member, then releases it (closes its fd, …): in that
// order, so the watcher never ends a released, possibly reused, fd.
func (g *group[K]) done(k K, release func(K)) {
	g.mu.Lock()
	delete(g.live, k)
	g.mu.Unlock()
	if release != nil {
		release(k)
	}
	g.wg.Done()
}

// requestExit records a 0 message.
func (g *group[K]) requestExit() { g.once.Do(func() { close(g.exit) }) }

// wait waits for every member and says how the server ended.
func (g *group[K]) wait(ctx context.Context, name string) error {
	g.wg.Wait()
	return ended(ctx, g.exit, name)
}

// serveConns accepts connections on ln until ctx ends or a connection asks
// the server to exit, and serves each on a goroutine of its own with
// TCP_NODELAY set; serve returns true when its connection asked the
// server to exit. name is the server's, for wait's errors.
func serveConns(ctx context.Context, ln *net.TCPListener, name string, serve func(c net.Conn) (exit bool)) error {
	g := newGroup(ctx, ln, func(c net.Conn) { c.Close() })
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		c.(*net.TCPConn).SetNoDelay(true)
		g.add(c)
		go func() {
			defer g.done(c, func(c net.Conn) { c.Close() })
			if serve(c) {
				g.requestExit()
			}
		}()
	}
	return g.wait(ctx, name)
}
