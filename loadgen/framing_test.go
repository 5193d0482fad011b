package loadgen

import (
	"strings"
	"testing"
)

// feedReply gives reply to x's framer in pieces of step bytes (0: all at
// once), as reads would, and returns what done said at the end and at
// which length it first said complete.
func feedReply(x *exchange, reply string, step int) (complete bool, at int, err error) {
	rd := 0
	for rd < len(reply) {
		n := len(reply) - rd
		if step > 0 {
			n = min(n, step)
		}
		sp := x.space(rd)
		n = copy(sp[:min(n, len(sp))], reply[rd:rd+n])
		rd += n
		complete, err = x.done(rd)
		if complete || err != nil {
			return complete, rd, err
		}
	}
	return false, rd, nil
}

func TestFramers(t *testing.T) {
	const hello = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
	const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n"
	// Values of the key space: key 0's value of 4 bytes is "abcd".
	kv := func(get, set int) Options {
		return Options{Size: 4, Keys: 1, Mix: Mix{Get: get, Set: set}}
	}
	for _, tc := range []struct {
		name  string
		opts  Options
		reply string
		want  string // "" complete at len(reply); else a fragment of the error
	}{
		{"http content-length", Options{Proto: HTTP}, hello, ""},
		{"http chunked with trailer", Options{Proto: HTTP}, chunked, ""},
		{"http chunked no trailer", Options{Proto: HTTP}, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", ""},
		{"http 204 without body", Options{Proto: HTTP}, "HTTP/1.1 204 No Content\r\n\r\n", ""},
		{"http 1.0 keep-alive", Options{Proto: HTTP}, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", ""},
		{"http status 404", Options{Proto: HTTP}, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "status 404 Not Found, want 2xx"},
		{"http 404 accepted", Options{Proto: HTTP, HTTP: HTTPOptions{StatusMin: 404, StatusMax: 404}}, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", ""},
		{"http connection close", Options{Proto: HTTP}, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", "Connection: close"},
		{"http 1.0 closes", Options{Proto: HTTP}, "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.0"},
		{"http unframed", Options{Proto: HTTP}, "HTTP/1.1 200 OK\r\n\r\nhello", "without Content-Length"},
		{"http not http", Options{Proto: HTTP}, "SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP/1.x status line"},
		{"http bad chunk size", Options{Proto: HTTP}, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not hexadecimal"},
		{"http extra bytes", Options{Proto: HTTP}, hello + "HTTP", "4 bytes after the end"},
		{"redis pong", Options{Proto: Redis}, "+PONG\r\n", ""},
		{"redis error reply", Options{Proto: Redis}, "-ERR unknown command\r\n", "error reply \"ERR unknown command\""},
		{"redis wrong simple", Options{Proto: Redis}, "+PANG\r\n", "want +PONG"},
		{"redis integer to ping", Options{Proto: Redis}, ":12\r\n", "want +PONG"},
		{"redis array to ping", Options{Proto: Redis}, "*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "want +PONG"},
		{"redis bad type", Options{Proto: Redis}, "?x\r\n", "none of + - : $ *"},
		{"redis set ok", func() Options { o := kv(0, 1); o.Proto = Redis; return o }(), "+OK\r\n", ""},
		{"redis get miss", func() Options { o := kv(1, 0); o.Proto = Redis; return o }(), "$-1\r\n", ""},
		{"redis get hit", func() Options { o := kv(1, 0); o.Proto = Redis; return o }(), "$4\r\nabcd\r\n", ""},
		{"redis get wrong value", func() Options { o := kv(1, 0); o.Proto = Redis; return o }(), "$4\r\nabce\r\n", "value byte 3"},
		{"redis get wrong size", func() Options { o := kv(1, 0); o.Proto = Redis; return o }(), "$2\r\nab\r\n", "returned 2 bytes, want 4"},
		{"memcache stored", func() Options { o := kv(0, 1); o.Proto = Memcache; return o }(), "STORED\r\n", ""},
		{"memcache miss", func() Options { o := kv(1, 0); o.Proto = Memcache; return o }(), "END\r\n", ""},
		{"memcache hit", func() Options { o := kv(1, 0); o.Proto = Memcache; return o }(), "VALUE vs:4:0 0 4\r\nabcd\r\nEND\r\n", ""},
		{"memcache wrong key", func() Options { o := kv(1, 0); o.Proto = Memcache; return o }(), "VALUE vs:4:1 0 4\r\nabcd\r\nEND\r\n", "VALUE for key"},
		{"memcache server error", func() Options { o := kv(1, 0); o.Proto = Memcache; return o }(), "SERVER_ERROR out of memory\r\n", "error reply"},
		{"memcache not stored", func() Options { o := kv(0, 1); o.Proto = Memcache; return o }(), "NOT_STORED\r\n", "want STORED"},
		{"line", Options{Proto: Line, Line: LineOptions{Request: []byte("PING\r\n"), Expect: []byte("PONG\r\n")}}, "PONG\r\n", ""},
		{"line wrong", Options{Proto: Line, Line: LineOptions{Request: []byte("PING\r\n"), Expect: []byte("PONG\r\n")}}, "PANG\r\n", "reply differs"},
	} {
		for _, step := range []int{0, 1, 7} {
			if step > 0 && strings.Contains(tc.name, "extra bytes") {
				continue // in pieces, the reply completes before the extra bytes come
			}
			x := newExchange(&tc.opts, 1)
			x.prepare()
			complete, at, err := feedReply(x, tc.reply, step)
			if tc.want == "" {
				if err != nil || !complete || at != len(tc.reply) {
					t.Errorf("%s, reads of %d: complete %v at %d of %d, err %v", tc.name, step, complete, at, len(tc.reply), err)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s, reads of %d: err %v, want it to say %q", tc.name, step, err, tc.want)
			}
			if !isBadReply(err) {
				t.Errorf("%s: %v is not a wrong-reply error", tc.name, err)
			}
		}
	}
}

// TestFramerIncomplete: a reply cut anywhere before its end is not
// complete and not an error (a short reply is found by the connection's
// close, not by the framer).
func TestFramerIncomplete(t *testing.T) {
	for _, tc := range []struct {
		opts  Options
		reply string
	}{
		{Options{Proto: HTTP}, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n"},
		{Options{Proto: Redis, Size: 3, Keys: 1, Mix: Mix{Get: 1}}, "$3\r\nabc\r\n"},
		{Options{Proto: Memcache, Size: 3, Keys: 1, Mix: Mix{Get: 1}}, "VALUE vs:3:0 0 3\r\nabc\r\nEND\r\n"},
	} {
		for cut := 0; cut < len(tc.reply); cut++ {
			x := newExchange(&tc.opts, 1)
			x.prepare()
			complete, _, err := feedReply(x, tc.reply[:cut], 0)
			if complete || err != nil {
				t.Errorf("%s cut at %d: complete %v, err %v", tc.opts.Proto, cut, complete, err)
			}
		}
	}
}

func TestRequests(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want []string // any of them
	}{
		{Options{Proto: HTTP, Addr: "127.0.0.1:80"}, []string{"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"}},
		{Options{Proto: HTTP, Addr: "x:1", HTTP: HTTPOptions{Path: "/a?b=1", Host: "example.org", Headers: []string{"Accept: */*", "X-A: b"}}},
			[]string{"GET /a?b=1 HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\nX-A: b\r\n\r\n"}},
		{Options{Proto: Redis}, []string{"*1\r\n$4\r\nPING\r\n"}},
		{Options{Proto: Redis, Size: 3, Keys: 1, Mix: Mix{Get: 1, Set: 1}}, []string{
			"*2\r\n$3\r\nGET\r\n$6\r\nvs:3:0\r\n", "*3\r\n$3\r\nSET\r\n$6\r\nvs:3:0\r\n$3\r\nabc\r\n"}},
		{Options{Proto: Memcache, Size: 3, Keys: 1, Mix: Mix{Get: 1, Set: 1}}, []string{
			"get vs:3:0\r\n", "set vs:3:0 0 0 3\r\nabc\r\n"}},
	} {
		x := newExchange(&tc.opts, 3)
		seen := map[string]bool{}
		for i := 0; i < 50; i++ {
			x.prepare()
			got := string(x.req)
			ok := false
			for _, w := range tc.want {
				ok = ok || got == w
			}
			if !ok {
				t.Fatalf("%s request %q, want one of %q", tc.opts.Proto, got, tc.want)
			}
			seen[got] = true
		}
		if len(seen) != len(tc.want) {
			t.Errorf("%s: %d kinds of request in 50, want %d", tc.opts.Proto, len(seen), len(tc.want))
		}
	}
}

// TestExchangeNoAlloc: once the buffers have grown, a round trip's
// request and reply checking allocate nothing.
func TestExchangeNoAlloc(t *testing.T) {
	for _, tc := range []struct {
		opts  Options
		reply string
	}{
		{Options{Proto: HTTP}, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"},
		{Options{Proto: HTTP}, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{Options{Proto: Redis}, "+PONG\r\n"},
		{Options{Proto: Redis, Size: 3, Keys: 1, Mix: Mix{Get: 1}}, "$3\r\nabc\r\n"},
		{Options{Proto: Memcache, Size: 3, Keys: 1, Mix: Mix{Get: 1}}, "VALUE vs:3:0 0 3\r\nabc\r\nEND\r\n"},
	} {
		x := newExchange(&tc.opts, 1)
		allocs := testing.AllocsPerRun(200, func() {
			x.prepare()
			if ok, _, err := feedReply(x, tc.reply, 4); !ok || err != nil {
				t.Fatalf("%s: %v", tc.opts.Proto, err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per round trip, want 0", tc.opts.Proto, allocs)
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{`PING\r\n`, "PING\r\n", ""},
		{`a\\b\t\x41\0`, "a\\b\tA\x00", ""},
		{`x\`, "", "lone"},
		{`\q`, "", "unknown escape"},
		{`\x4`, "", "two hex digits"},
		{`\xZZ`, "", "two hex digits"},
	} {
		got, err := Unescape(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Unescape(%q) err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("Unescape(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mix
		ok   bool
	}{{"9:1", Mix{9, 1}, true}, {"1:0", Mix{1, 0}, true}, {"0:0", Mix{}, false}, {"3", Mix{}, false}, {"-1:2", Mix{}, false}} {
		got, err := ParseMix(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMix(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestReplyErrorText(t *testing.T) {
	e := &ReplyError{Conn: 1, Request: 9, Reason: "wrong reply", Sent: []byte("get vs:64:7\r\n"), Got: []byte("SERVER_ERROR x\r\n"), Text: true, Err: badf("error reply %q", "SERVER_ERROR x")}
	want := `connection 1 request 9 "get vs:64:7\r\n": wrong reply: received "SERVER_ERROR x\r\n" (16 bytes): error reply "SERVER_ERROR x"`
	if got := e.Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
