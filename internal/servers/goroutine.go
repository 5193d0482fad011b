package servers

import (
	"context"
	"net"
)

// serveGoroutine is the idiomatic Go server: one goroutine per connection,
// blocking-looking reads that Go's netpoller turns into epoll and futex
// hand-offs between OS threads.
func serveGoroutine(ctx context.Context, ln *net.TCPListener, o Options) error {
	return serveConns(ctx, ln, "goroutine", func(c net.Conn) (exit bool) {
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
						return false
					}
				}
				if ex {
					return true
				}
			}
			if err != nil {
				return false
			}
		}
	})
}
