package delay

import (
	"net"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/testenv"
)

func TestDelayInjected(t *testing.T) {
	testenv.RequireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 4)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			c.Write(b)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rtt := func(n int) time.Duration {
		b := make([]byte, 4)
		best := time.Hour
		for i := 0; i < n; i++ {
			s := time.Now()
			c.Write(b)
			if _, err := c.Read(b); err != nil {
				t.Fatal(err)
			}
			best = min(best, time.Since(s))
		}
		return best
	}
	base := rtt(200)
	inj, err := Attach("lo", Match{DstPort: port}, 500*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	defer inj.Close()
	with := rtt(200)
	n, _ := inj.Delayed()
	t.Logf("min RTT %v → %v with 500µs injected, %d segments delayed", base, with, n)
	if with-base < 450*time.Microsecond || with-base > 700*time.Microsecond {
		t.Errorf("min RTT grew by %v, want ≈500µs", with-base)
	}
	if n < 200 {
		t.Errorf("only %d segments delayed, want ≥ 200", n)
	}
}
