package loadgen

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/servers"
)

// TestRunProtoServers drives the built-in http and resp servers with both
// client models, including values larger than the socket buffers (a
// SET written in pieces, a GET read in many reads): every round trip is
// right and completes.
func TestRunProtoServers(t *testing.T) {
	for _, tc := range []struct {
		server string
		opts   Options
	}{
		{"http", Options{Proto: HTTP, HTTP: HTTPOptions{Path: "/a", Headers: []string{"X-Test: 1"}}}},
		{"resp", Options{Proto: Redis}},
		{"resp", Options{Proto: Redis, Mix: Mix{Get: 1, Set: 1}, Keys: 10, Size: 100}},
		{"resp", Options{Proto: Redis, Mix: Mix{Get: 1, Set: 1}, Keys: 4, Size: 256 << 10}},
		{"resp", Options{Proto: Line, Line: LineOptions{Request: []byte("PING\r\n"), Expect: []byte("+PONG\r\n")}}},
	} {
		for _, model := range []ClientModel{ClientThreads, ClientEpoll} {
			t.Run(fmt.Sprintf("%s/%s/%s/%d", tc.server, tc.opts.Proto, model, tc.opts.Size), func(t *testing.T) {
				srv, err := servers.Lookup(tc.server)
				if err != nil {
					t.Fatal(err)
				}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- srv.Serve(ctx, ln.(*net.TCPListener), servers.Options{}) }()
				defer func() { cancel(); ln.Close(); <-done }()
				o := tc.opts
				o.Addr, o.Clients, o.Requests, o.ClientModel, o.Warmup, o.Timeout = ln.Addr().String(), 2, 300, model, -1, 10*time.Second
				res, err := Run(context.Background(), o, Hooks{})
				if err != nil {
					t.Fatal(err)
				}
				if n := res.Measured + res.Outside; n != 600 {
					t.Errorf("%d round trips, want 600", n)
				}
			})
		}
	}
}
