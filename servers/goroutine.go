package servers

import (
	"context"
	"net"
	"sync"
)

// serveGoroutine is the idiomatic Go server: one goroutine per connection,
// blocking-looking reads that Go's netpoller turns into epoll and futex
// hand-offs between OS threads.
func serveGoroutine(ctx context.Context, ln *net.TCPListener, o Options) error {
	exit := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		select {
		case <-ctx.Done():
		case <-exit:
		}
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		c.(*net.TCPConn).SetNoDelay(true)
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(conns, c); mu.Unlock(); c.Close() }()
			var st conn
			in := make([]byte, 64<<10)
			out := make([]byte, 0, len(in)+4)
			for {
				n, err := c.Read(in)
				if n > 0 {
					var ex bool
					out, ex = st.feed(in[:n], o, out[:0])
					if len(out) > 0 {
						if _, err := c.Write(out); err != nil {
							return
						}
					}
					if ex {
						once.Do(func() { close(exit) })
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return ended(ctx, exit, "goroutine")
}
