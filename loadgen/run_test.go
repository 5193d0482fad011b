package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer serves ping-pong on 127.0.0.1 with a twist chosen by the test:
// misbehave is called with the request count so far and may return a
// replacement reply (nil: answer correctly) or close the connection.
type fakeServer struct {
	ln       net.Listener
	requests atomic.Int64
}

type behaviour func(n int64, challenge uint32) (reply []byte, closeConn bool)

func startFake(t *testing.T, b behaviour) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var buf [4]byte
				for {
					if _, err := io.ReadFull(c, buf[:]); err != nil {
						return
					}
					n := f.requests.Add(1)
					ch := binary.BigEndian.Uint32(buf[:])
					var rep [4]byte
					binary.BigEndian.PutUint32(rep[:], ch+1)
					out := rep[:]
					if b != nil {
						r, cl := b(n, ch)
						if cl {
							if r != nil {
								c.Write(r)
							}
							return
						}
						if r != nil {
							out = r
						}
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func quick(addr string) Options {
	return Options{Addr: addr, Clients: 2, Duration: 400 * time.Millisecond, Warmup: 50 * time.Millisecond,
		CI: -1, Timeout: 500 * time.Millisecond, CheckEvery: 50 * time.Millisecond}
}

func TestRunLoopback(t *testing.T) {
	f := startFake(t, nil)
	var ready []ConnInfo
	o := quick(f.addr())
	o.ClientsReady = func(c []ConnInfo) error { ready = c; return nil }
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopDuration {
		t.Errorf("stop reason %q, want %q", res.StopReason, StopDuration)
	}
	if len(ready) != 2 || ready[0].TID == 0 || ready[0].TID == ready[1].TID || ready[0].LocalPort == 0 {
		t.Errorf("ClientsReady got %+v, want two distinct threads with ports", ready)
	}
	total := 0
	for _, c := range res.Conns {
		total += len(c.Records)
		for i, r := range c.Records {
			if r.T1 <= r.T0 {
				t.Fatalf("conn %d record %d: t1 %d not after t0 %d", c.ID, i, r.T1, r.T0)
			}
			if i > 0 && r.T0 < c.Records[i-1].T1 {
				t.Fatalf("conn %d record %d starts before the previous reply", c.ID, i)
			}
		}
	}
	// The server also answered one priming round trip per connection at set-up.
	if int64(total+len(res.Conns)) != f.requests.Load() {
		t.Errorf("recorded %d round trips + %d priming, server answered %d", total, len(res.Conns), f.requests.Load())
	}
	if res.Measured < 100 || res.Measured+res.WarmupDiscarded+res.MSERDiscarded != total {
		t.Errorf("measured %d + warm-up %d + MSER %d != recorded %d", res.Measured, res.WarmupDiscarded, res.MSERDiscarded, total)
	}
	if res.Latency.Count != int64(res.Measured) || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Errorf("bad latency summary %+v", res.Latency)
	}
	if res.ThroughputRPS <= 0 {
		t.Error("no throughput")
	}
}

func TestRunStopsOnCI(t *testing.T) {
	f := startFake(t, nil)
	o := quick(f.addr())
	// A loose target: this checks the rule stops the run, not how fast a
	// noisy machine converges (stats tests cover the interval itself).
	o.CI = 0.25
	o.Duration = 20 * time.Second
	o.MinSamples = 500
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The final interval also counts the round trips in flight at the
	// stop and MSER-5's truncation, so it may differ a little from the one
	// the rule saw.
	if res.StopReason != StopCI || res.Mean.RelHalfWidth() > 0.3 {
		t.Errorf("stop %q at ±%.3f, want ci at ≈0.25", res.StopReason, res.Mean.RelHalfWidth())
	}
}

func TestRunRequestsLimit(t *testing.T) {
	f := startFake(t, nil)
	o := quick(f.addr())
	o.Requests, o.Duration = 300, 10*time.Second
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Conns {
		if len(c.Records) != 300 {
			t.Errorf("conn %d did %d round trips, want 300", c.ID, len(c.Records))
		}
	}
}

func TestRunBadServers(t *testing.T) {
	const good = 50
	// The server's request count n includes the one priming round trip
	// of set-up, so its fault starts after good+1 requests.
	for _, tc := range []struct {
		name   string
		b      behaviour
		reason string
	}{
		{"wrong reply", func(n int64, c uint32) ([]byte, bool) {
			if n > good+1 {
				return []byte{0xde, 0xad, 0xbe, 0xef}, false
			}
			return nil, false
		}, "wrong reply"},
		{"short reply", func(n int64, c uint32) ([]byte, bool) {
			if n > good+1 {
				return []byte{0, 1}, true
			}
			return nil, false
		}, "short reply"},
		{"server dies", func(n int64, c uint32) ([]byte, bool) { return nil, n > good+1 }, "short reply"},
		{"silent server", func(n int64, c uint32) ([]byte, bool) {
			if n > good+1 {
				time.Sleep(time.Second)
			}
			return nil, false
		}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, tc.b)
			o := quick(f.addr())
			o.Clients, o.Warmup, o.Duration = 1, -1, 10*time.Second
			res, err := Run(context.Background(), o)
			var re *ReplyError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a ReplyError", err)
			}
			if !strings.Contains(err.Error(), tc.reason) || re.Request != good || re.Conn != 0 {
				t.Errorf("error %q: want %q at request %d on connection 0", err, tc.reason, good)
			}
			if res == nil || res.StopReason != StopError {
				t.Fatalf("result %+v, want one with stop reason error", res)
			}
			if res.Measured != good || len(res.Conns[0].Records) != good {
				t.Errorf("kept %d measured / %d recorded round trips, want the %d good ones", res.Measured, len(res.Conns[0].Records), good)
			}
		})
	}
}

func TestRunInterrupted(t *testing.T) {
	f := startFake(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	o := quick(f.addr())
	o.Duration = 30 * time.Second
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopInterrupted || res.Measured == 0 {
		t.Errorf("stop %q with %d measured, want interrupted with data", res.StopReason, res.Measured)
	}
}

func TestRunConnectionRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := Run(context.Background(), quick(addr))
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), addr) {
		t.Errorf("err = %v, want connection refused naming %s", err, addr)
	}
}
