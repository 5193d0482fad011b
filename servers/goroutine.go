package servers

import (
	"context"
	"net"
)

// serveGoroutine is the idiomatic Go server: one goroutine per connection,
// blocking-looking reads that Go's netpoller turns into epoll and futex
// hand-offs between OS threads.
func serveGoroutine(ctx context.Context, ln *net.TCPListener, o Options) error {
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
						g.requestExit()
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	return g.wait(ctx, "goroutine")
}
