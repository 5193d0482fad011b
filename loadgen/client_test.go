package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testServer is a ping-pong or echo server on 127.0.0.1, one goroutine per
// connection, whose reply to the nth request overall can be delayed or
// dribbled out by the test.
type testServer struct {
	ln       net.Listener
	requests atomic.Int64
	accepted atomic.Int64
	// delay, if set, is called before each reply with the request's
	// number on its connection (from 0) and overall (from 1).
	delay func(perConn, overall int64) time.Duration
	// dribble sends each reply one byte at a time, this far apart.
	dribble time.Duration
	// mute stops answering from this overall request on (0: never).
	mute int64
}

func serveTest(t *testing.T, proto Proto, size int, s *testServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	t.Cleanup(func() { ln.Close() })
	if proto == PingPong {
		size = 4
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, size)
				for k := int64(0); ; k++ {
					if proto == Echo {
						// Echo as it reads, so a client that writes the whole
						// payload before reading deadlocks on big payloads.
						got := 0
						for got < size {
							n, err := c.Read(buf[:min(size-got, 64<<10)])
							if err != nil {
								return
							}
							got += n
							if got == size {
								// Counted before the reply's last bytes go
								// out, so the count is complete when the
								// client has its reply.
								s.requests.Add(1)
							}
							if _, err := c.Write(buf[:n]); err != nil {
								return
							}
						}
						continue
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					n := s.requests.Add(1)
					if s.mute > 0 && n >= s.mute {
						io.Copy(io.Discard, c)
						return
					}
					if s.delay != nil {
						time.Sleep(s.delay(k, n))
					}
					binary.BigEndian.PutUint32(buf, binary.BigEndian.Uint32(buf)+1)
					if s.dribble > 0 {
						for i := range buf {
							time.Sleep(s.dribble)
							if _, err := c.Write(buf[i : i+1]); err != nil {
								return
							}
						}
						continue
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// drive starts the clients of o, lets them run for d (or until they end by
// themselves) and returns every connection's records and the set.
func drive(t *testing.T, o Options, d time.Duration) (*clientSet, [][]Record, error) {
	t.Helper()
	o.defaults()
	addr, err := net.ResolveTCPAddr("tcp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := startClients(context.Background(), &o, addr)
	if err != nil {
		return nil, nil, err
	}
	s.begin()
	select {
	case <-time.After(d):
	case <-s.done():
	}
	s.halt()
	<-s.done()
	s.close()
	recs := make([][]Record, len(s.conns))
	for i, c := range s.conns {
		c.recs.drain(func(_ int64, r Record) { recs[i] = append(recs[i], r) })
	}
	return s, recs, s.err()
}

var models = []ClientModel{ClientThreads, ClientEpoll}

func TestClientModels(t *testing.T) {
	for _, tc := range []struct {
		proto   Proto
		size    int
		clients int
	}{
		{PingPong, 0, 1},
		{PingPong, 0, 7},
		{Echo, 1024, 5},
	} {
		for _, m := range models {
			t.Run(string(tc.proto)+"/"+string(m)+"/"+string(rune('0'+tc.clients)), func(t *testing.T) {
				srv := &testServer{}
				addr := serveTest(t, tc.proto, tc.size, srv)
				o := Options{Addr: addr, Clients: tc.clients, Proto: tc.proto, Size: tc.size, ClientModel: m,
					ClientCPUs: []int{0}, Timeout: 2 * time.Second}
				s, recs, err := drive(t, o, 200*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				st := s.stats()
				if st.Model != m || st.Connections != tc.clients || st.Attempts != tc.clients || st.PerSecond <= 0 || len(st.Failures) != 0 {
					t.Errorf("set-up stats %+v, want %d connections by %s", st, tc.clients, m)
				}
				total := 0
				tids := map[int]bool{}
				for i, rs := range recs {
					if len(rs) == 0 {
						t.Errorf("connection %d made no round trip", i)
					}
					for j, r := range rs {
						if r.T1 <= r.T0 || r.Intended != 0 || (j > 0 && r.T0 < rs[j-1].T1) {
							t.Fatalf("connection %d record %d: %+v (previous %+v)", i, j, r, rs[max(j-1, 0)])
						}
					}
					total += len(rs)
					tids[s.conns[i].tid] = true
				}
				// The server also answered one priming round trip per connection.
				if int64(total+tc.clients) != srv.requests.Load() {
					t.Errorf("recorded %d round trips + %d priming, server answered %d", total, tc.clients, srv.requests.Load())
				}
				wantThreads := tc.clients
				if m == ClientEpoll {
					wantThreads = 1 // one client CPU
				}
				if len(tids) != wantThreads || tids[0] {
					t.Errorf("%d distinct driving threads %v, want %d", len(tids), tids, wantThreads)
				}
				for _, ci := range s.info() {
					if ci.LocalPort == 0 || ci.TID == 0 {
						t.Errorf("connection info %+v lacks a port or thread", ci)
					}
				}
			})
		}
	}
}

func TestClientModelResolve(t *testing.T) {
	for _, tc := range []struct {
		m    ClientModel
		n    int
		want ClientModel
	}{
		{ClientAuto, 1, ClientThreads},
		{ClientAuto, AutoEpollFrom - 1, ClientThreads},
		{ClientAuto, AutoEpollFrom, ClientEpoll},
		{ClientThreads, 10000, ClientThreads},
		{ClientEpoll, 1, ClientEpoll},
	} {
		if got := tc.m.Resolve(tc.n); got != tc.want {
			t.Errorf("%q.Resolve(%d) = %q, want %q", tc.m, tc.n, got, tc.want)
		}
	}
	if _, err := ParseClientModel("fibers"); err == nil {
		t.Error("unknown model accepted")
	}
	if m, err := ParseClientModel("auto"); err != nil || m != ClientAuto {
		t.Errorf("ParseClientModel(auto) = %q, %v", m, err)
	}
}

// A reply that trickles in, each byte well within the timeout but the
// whole over it, is a timeout: --timeout bounds the round trip, not a read.
func TestTimeoutBoundsRoundTrip(t *testing.T) {
	for _, m := range models {
		t.Run(string(m), func(t *testing.T) {
			const good = 20
			srv := &testServer{}
			srv.delay = func(k, n int64) time.Duration {
				if n > good+1 { // +1: the priming round trip
					srv.dribble = 60 * time.Millisecond // 4 bytes: ≥ 240 ms
				}
				return 0
			}
			addr := serveTest(t, PingPong, 0, srv)
			o := Options{Addr: addr, Clients: 1, ClientModel: m, Timeout: 150 * time.Millisecond}
			_, recs, err := drive(t, o, 5*time.Second)
			var re *ReplyError
			if !errors.As(err, &re) || !strings.Contains(re.Reason, "timeout") || re.Request != good {
				t.Fatalf("err = %v, want a timeout at request %d", err, good)
			}
			if len(recs[0]) != good {
				t.Errorf("%d round trips recorded, want the %d good ones", len(recs[0]), good)
			}
		})
	}
}

// A server slow to serve a new connection (a forking server re-executing
// itself) costs set-up time, not a round-trip timeout.
func TestSlowFirstReplyIsSetUp(t *testing.T) {
	for _, m := range models {
		t.Run(string(m), func(t *testing.T) {
			srv := &testServer{delay: func(k, n int64) time.Duration {
				if k == 0 {
					return 300 * time.Millisecond
				}
				return 0
			}}
			addr := serveTest(t, PingPong, 0, srv)
			o := Options{Addr: addr, Clients: 3, ClientModel: m, Timeout: 100 * time.Millisecond, ConnectTimeout: 5 * time.Second}
			s, recs, err := drive(t, o, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if st := s.stats(); st.Slowest < 300*time.Millisecond || st.Duration < st.Slowest {
				t.Errorf("set-up stats %+v: want the 300 ms first replies in them", st)
			}
			for i, rs := range recs {
				if len(rs) == 0 {
					t.Errorf("connection %d: no round trip", i)
				}
			}
		})
	}
}

func TestSetupFailures(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	silent := func(t *testing.T) string { return serveTest(t, PingPong, 0, &testServer{mute: 1}) }
	for _, tc := range []struct {
		name   string
		addr   func(*testing.T) string
		reason string
		msg    string
	}{
		{"refused", refused, "ECONNREFUSED (connection refused)", "connection refused"},
		{"never answers", silent, "connected, but no reply to the priming request within 300ms", "connected, but no reply to the priming request within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			o := Options{Addr: addr, Clients: 5, ConnectTimeout: 300 * time.Millisecond, ConnectRate: 1000}
			_, _, err := drive(t, o, time.Second)
			var se *SetupError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a SetupError", err)
			}
			st := se.Stats
			if st.Connections != 0 || st.Attempts < 1 || len(st.Failures) != 1 || st.Failures[0].Reason != tc.reason || st.Failures[0].Count != st.Attempts {
				t.Errorf("stats %+v, want every attempt failed with %q", st, tc.reason)
			}
			if msg := err.Error(); !strings.Contains(msg, addr) || !strings.Contains(msg, tc.msg) || strings.Count(msg, "\n") != 0 {
				t.Errorf("error %q: want one line naming %s and %q", msg, addr, tc.msg)
			}
		})
	}
}

// Many failing connections make one summary line that counts them by
// reason and names the first.
func TestFailuresSummarised(t *testing.T) {
	for _, m := range models {
		t.Run(string(m), func(t *testing.T) {
			const n = 12
			srv := &testServer{mute: 200}
			addr := serveTest(t, PingPong, 0, srv)
			o := Options{Addr: addr, Clients: n, ClientModel: m, Timeout: 200 * time.Millisecond}
			_, _, err := drive(t, o, 5*time.Second)
			var ce *ClientErrors
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want ClientErrors", err)
			}
			msg := err.Error()
			want := "12 connections failed: 12 timeout (no complete reply within 200ms); first: connection "
			if !strings.HasPrefix(msg, want) || strings.Contains(msg, "\n") || len(ce.Errs) != n {
				t.Errorf("error %q (%d errors): want one line starting %q", msg, len(ce.Errs), want)
			}
			var re *ReplyError
			if !errors.As(err, &re) {
				t.Error("the connections' ReplyErrors are not reachable with errors.As")
			}
		})
	}
}

func TestFailureCountsOrder(t *testing.T) {
	got := failureCounts(map[string]int{"b": 2, "a": 2, "c": 5, "d": 1})
	want := []Failure{{"c", 5}, {"a", 2}, {"b", 2}, {"d", 1}}
	if !slices.Equal(got, want) {
		t.Errorf("failureCounts = %v, want %v", got, want)
	}
}

// An echo payload far larger than the socket buffers completes: the
// client reads while it writes.
func TestEchoLargerThanSocketBuffers(t *testing.T) {
	for _, m := range models {
		t.Run(string(m), func(t *testing.T) {
			const size = 8 << 20
			addr := serveTest(t, Echo, size, &testServer{})
			o := Options{Addr: addr, Clients: 1, Proto: Echo, Size: size, ClientModel: m, Requests: 3, Timeout: 10 * time.Second}
			_, recs, err := drive(t, o, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs[0]) != 3 {
				t.Errorf("%d round trips, want 3", len(recs[0]))
			}
		})
	}
}

func TestRaiseNoFile(t *testing.T) {
	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
	if saved.Max < 2000 {
		t.Skipf("hard limit %d too low to test raising the soft one", saved.Max)
	}
	low := unix.Rlimit{Cur: 256, Max: saved.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	if err := raiseNoFile(1000); err != nil {
		t.Fatalf("raise for 1000 connections: %v", err)
	}
	var now unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &now)
	if now.Cur < 1000 {
		t.Errorf("soft limit %d after raising for 1000 connections", now.Cur)
	}
	// More than the kernel's nr_open allows anyone.
	err := raiseNoFile(1 << 30)
	if err == nil || !strings.HasPrefix(err.Error(), "1073741824 connections need about ") || !strings.Contains(err.Error(), "ulimit -n") {
		t.Errorf("err = %v, want the descriptors needed, the limit and what to do", err)
	}
}

// A server that stalls once for 100 ms: closed loop sends nothing while it
// waits, so the stall is one slow round trip among thousands and p99.9
// hides it; open loop keeps its schedule, the requests meant for the
// stall all wait, and p99.9 shows it.
func TestOpenLoopShowsStall(t *testing.T) {
	const stall = 100 * time.Millisecond
	p999 := func(t *testing.T, m ClientModel, rate float64) time.Duration {
		srv := &testServer{}
		var stalled atomic.Bool
		srv.delay = func(k, n int64) time.Duration {
			if n == 400 && !stalled.Swap(true) {
				return stall
			}
			return 0
		}
		addr := serveTest(t, PingPong, 0, srv)
		// Closed loop is fast: more round trips make its p99.9 a
		// statistic of several, not the one stalled round trip.
		o := Options{Addr: addr, Clients: 2, ClientModel: m, Rate: rate, Requests: 1000}
		if rate == 0 {
			o.Requests = 5000
		}
		_, recs, err := drive(t, o, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var lat []int64
		for _, rs := range recs {
			for _, r := range rs {
				if (rate > 0) != (r.Intended != 0) {
					t.Fatalf("record %+v: Intended set %v, want %v", r, r.Intended != 0, rate > 0)
				}
				lat = append(lat, r.Latency())
			}
		}
		slices.Sort(lat)
		return time.Duration(lat[len(lat)*999/1000])
	}
	for _, m := range models {
		t.Run(string(m), func(t *testing.T) {
			closed := p999(t, m, 0)
			open := p999(t, m, 1000)
			t.Logf("p99.9 closed loop %v, open loop at 1000/s %v", closed, open)
			if closed >= stall/2 || open < stall/2 {
				t.Errorf("p99.9 closed %v, open %v: want the %v stall hidden in closed loop and shown in open loop", closed, open, stall)
			}
		})
	}
}

// TestClientThreadTimerSlack: a client thread sleeps with 1 ns of timer
// slack, not the kernel's default 50 µs, by which every open-loop send
// would otherwise leave late (its wait counted in the request's latency).
func TestClientThreadTimerSlack(t *testing.T) {
	got := make(chan int, 1)
	go func() {
		if _, err := pinThread(-1); err != nil {
			t.Error(err)
		}
		slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
		if err != nil {
			t.Error(err)
		}
		got <- slack
	}()
	if slack := <-got; slack != 1 {
		t.Errorf("client thread's timer slack %d ns, want 1", slack)
	}
	own, _ := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	t.Logf("a client thread's timer slack 1 ns; this test's thread %d ns", own)
}
