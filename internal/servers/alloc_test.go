package servers

import (
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/loadgen"
)

// rawClient is a blocking ping-pong client on a raw socket: it allocates
// nothing per round trip, so the process's malloc count during a loop of
// round trips is the server's.
type rawClient struct {
	fd  int
	buf [4]byte
}

func dialRaw(tb testing.TB, addr string) *rawClient {
	tb.Helper()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		tb.Fatal(err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	// A stuck server fails the test instead of hanging it.
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	tb.Cleanup(func() { unix.Close(fd) })
	return &rawClient{fd: fd}
}

func (c *rawClient) ping(v uint32) (uint32, error) {
	binary.BigEndian.PutUint32(c.buf[:], v)
	if _, err := unix.Write(c.fd, c.buf[:]); err != nil {
		return 0, err
	}
	for got := 0; got < 4; {
		n, err := unix.Read(c.fd, c.buf[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, unix.ECONNRESET
		}
		got += n
	}
	return binary.BigEndian.Uint32(c.buf[:]), nil
}

// startQuiet runs s on a fresh listener for a benchmark or test and stops
// it at cleanup.
func startQuiet(tb testing.TB, s Server, o Options) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln.(*net.TCPListener), o); ln.Close() }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			tb.Errorf("%s did not stop within 3 s of cancel", s.Name)
		}
	})
	return ln.Addr().String()
}

// TestNoAllocPerRequest: after warm-up, a round trip must not allocate in
// the server (STYLE: no allocation per round trip on hot paths). The fork
// server is left out: its requests are served in another process.
func TestNoAllocPerRequest(t *testing.T) {
	const warm, n = 200, 2000
	for _, s := range All() {
		if s.Name == "fork" || loadgen.SpokenBy(s.Name) != loadgen.PingPong {
			continue // fork: served in another process; http, resp: other protocols (net/http allocates per request)
		}
		t.Run(s.Name, func(t *testing.T) {
			skipUnsupported(t, s.Name)
			c := dialRaw(t, startQuiet(t, s, Options{}))
			for i := uint32(1); i <= warm; i++ {
				if got, err := c.ping(i); err != nil || got != i+1 {
					t.Fatalf("warm-up ping %d: got %d, %v", i, got, err)
				}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := uint32(1); i <= n; i++ {
				if got, err := c.ping(i); err != nil || got != i+1 {
					t.Fatalf("ping %d: got %d, %v", i, got, err)
				}
			}
			runtime.ReadMemStats(&after)
			// A few mallocs of the runtime itself (timers, GC work) are
			// allowed; one per request would be n.
			if d := after.Mallocs - before.Mallocs; d > n/100 {
				t.Errorf("%d allocations in %d round trips (%.3f per round trip)", d, n, float64(d)/n)
			}
		})
	}
}

// BenchmarkRoundTrip measures one ping-pong round trip per server through a
// raw blocking client, with allocations (which are the server's: the client
// allocates nothing).
func BenchmarkRoundTrip(b *testing.B) {
	for _, s := range All() {
		if loadgen.SpokenBy(s.Name) != loadgen.PingPong {
			continue
		}
		b.Run(s.Name, func(b *testing.B) {
			skipUnsupported(b, s.Name)
			c := dialRaw(b, startQuiet(b, s, Options{}))
			if _, err := c.ping(1); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v := uint32(i) | 1
				if got, err := c.ping(v); err != nil || got != v+1 {
					b.Fatalf("ping %d: got %d, %v", v, got, err)
				}
			}
		})
	}
}

// skipUnsupported skips a server this kernel lacks (Check says why); every
// server test goes through it, so a missing feature is never a silent pass.
func skipUnsupported(tb testing.TB, name string) {
	tb.Helper()
	if err := Check(name); err != nil {
		tb.Skipf("kernel lacks it: %v", err)
	}
}
