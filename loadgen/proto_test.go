package loadgen

import (
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/wire"
)

func TestExchangePingPong(t *testing.T) {
	x := newExchange(&Options{Proto: PingPong, Size: 999}, 42)
	if len(x.req) != 4 || len(x.want) != 4 {
		t.Fatalf("ping-pong request/reply must be 4 bytes, got %d/%d", len(x.req), len(x.want))
	}
	seen := map[uint32]bool{}
	for i := 0; i < 10000; i++ {
		x.prepare()
		c := wire.Get(x.req)
		if c == wire.Exit {
			t.Fatal("challenge 0 would stop the server")
		}
		seen[c] = true
		wire.Put(x.got, wire.Reply(c))
		if !x.check() {
			t.Fatalf("correct reply %#x to %#x rejected", wire.Reply(c), c)
		}
		wire.Put(x.got, c)
		if x.check() {
			t.Fatalf("echoed challenge %#x accepted as a reply", c)
		}
	}
	if len(seen) < 9990 {
		t.Errorf("challenges repeat too often: %d distinct of 10000", len(seen))
	}
}

func TestExchangeEcho(t *testing.T) {
	for _, size := range []int{1, 7, 8, 64, 65536} {
		x := newExchange(&Options{Proto: Echo, Size: size}, 7)
		for i := 0; i < 3; i++ {
			x.prepare()
			copy(x.got, x.req)
			if !x.check() {
				t.Fatalf("size %d: echo of the request rejected", size)
			}
			x.got[len(x.got)-1] ^= 0xFF
			if x.check() {
				t.Fatalf("size %d: corrupted echo accepted", size)
			}
		}
	}
}

func TestReplyErrorNamesRequest(t *testing.T) {
	e := &ReplyError{Conn: 3, Request: 17, Reason: "wrong reply", Want: []byte{0, 0, 0, 2}, Got: []byte{0, 0, 0, 9}}
	s := e.Error()
	for _, want := range []string{"connection 3", "request 17", "wrong reply", "0x00000002", "0x00000009"} {
		if !strings.Contains(s, want) {
			t.Errorf("error %q lacks %q", s, want)
		}
	}
}

func TestParseProto(t *testing.T) {
	if _, err := ParseProto("udp"); err == nil {
		t.Error("unknown protocol accepted")
	}
	if p, err := ParseProto("echo"); err != nil || p != Echo {
		t.Errorf("ParseProto(echo) = %v, %v", p, err)
	}
}

func TestWorkload(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Proto: PingPong}, ""},
		{Options{Proto: Echo, Size: 100}, ""},
		{Options{Proto: HTTP}, "GET /, status 200-299"},
		{Options{Proto: HTTP, HTTP: HTTPOptions{Path: "/big", Host: "h", Headers: []string{"A: b"}, StatusMin: 404, StatusMax: 404}}, "GET /big, Host h, 1 extra header(s), status 404-404"},
		{Options{Proto: Redis}, "PING"},
		{Options{Proto: Redis, Mix: Mix{Get: 9, Set: 1}, Keys: 10, Size: 100}, "GET:SET 9:1 over 10 keys, 100-byte values"},
		{Options{Proto: Memcache}, "GET:SET 9:1 over 1000 keys, 64-byte values"},
		{Options{Proto: Line, Line: LineOptions{Request: []byte("PING\r\n"), Expect: []byte("+PONG\r\n")}}, `request "PING\r\n", expect "+PONG\r\n"`},
	} {
		if got := tc.o.Workload(); got != tc.want {
			t.Errorf("%s: Workload() = %q, want %q", tc.o.Proto, got, tc.want)
		}
	}
}
