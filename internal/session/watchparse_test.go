package session

import (
	"bytes"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// respGet is a RESP GET as redis-benchmark sends it.
const respGet = "*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n"

// TestConnParseSend: what the parser makes of one connection's sends,
// each given as the bytes captured and the send's full length.
func TestConnParseSend(t *testing.T) {
	big := "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$1000\r\n" + strings.Repeat("v", 1000) + "\r\n"
	httpGet := "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"
	httpPost := "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
	type send struct {
		data  string // the whole send; the capture is its first probe.PayloadCap bytes
		begun int    // requests begun in it
	}
	tests := []struct {
		name      string
		sends     []send
		proto     loadgen.Proto // "": not recognised (timed)
		pipelined bool
		gaveUp    bool
		most      int
	}{
		{"resp one per send", []send{{respGet, 1}, {respGet, 1}, {respGet, 1}}, loadgen.Redis, false, false, 1},
		{"resp pipelined -P 16", []send{{strings.Repeat(respGet, 16), 8}}, loadgen.Redis, true, false, 8},
		{"resp two in capture", []send{{respGet + "*1\r\n$4\r\nPING\r\n", 2}}, loadgen.Redis, true, false, 2},
		{"resp larger than the capture", []send{{big, 1}, {big, 1}}, loadgen.Redis, false, false, 1},
		{"resp larger than the capture, then another", []send{{big + respGet, 2}}, loadgen.Redis, true, false, 2},
		{"resp split over two sends", []send{{big[:100], 1}, {big[100:], 0}, {respGet, 1}}, loadgen.Redis, false, false, 1},
		{"resp end of one and start of the next", []send{{big[:100], 1}, {big[100:] + respGet, 1}}, loadgen.Redis, true, false, 2},
		{"resp header cut by the send", []send{{respGet, 1}, {"*2\r\n$3\r\nGET\r\n$1", 1}, {"6\r\nkey:__rand_int__\r\n", 0}, {respGet, 1}}, loadgen.Redis, false, false, 1},
		{"resp inline", []send{{"PING\r\n", 1}, {"GET key\r\n", 1}}, loadgen.Redis, false, false, 1},
		{"resp inline pipelined", []send{{"PING\r\nPING\r\nPING\r\n", 3}}, loadgen.Redis, true, false, 3},
		{"http keep-alive", []send{{httpGet, 1}, {httpGet, 1}}, loadgen.HTTP, false, false, 1},
		{"http body", []send{{httpPost, 1}, {httpPost, 1}}, loadgen.HTTP, false, false, 1},
		{"http pipelined", []send{{httpGet + httpGet, 2}}, loadgen.HTTP, true, false, 2},
		{"http headers beyond the capture", []send{{"GET / HTTP/1.1\r\nCookie: " + strings.Repeat("c", 400) + "\r\n\r\n", 1}}, loadgen.HTTP, false, false, 1},
		{"http chunked", []send{{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0}, {httpGet + httpGet, 0}}, loadgen.HTTP, false, true, 0},
		{"memcached get", []send{{"get k1\r\n", 1}, {"get k2\r\n", 1}}, loadgen.Memcache, false, false, 1},
		{"memcached set", []send{{"set k 0 0 5\r\nhello\r\n", 1}, {"set k 0 0 5 noreply\r\nhello\r\n", 1}}, loadgen.Memcache, false, false, 1},
		{"memcached pipelined", []send{{"set k 0 0 5\r\nhello\r\nget k\r\n", 2}}, loadgen.Memcache, true, false, 2},
		{"memcached meta", []send{{"ms k 5 T0\r\nhello\r\nmg k v\r\n", 2}}, loadgen.Memcache, true, false, 2},
		{"garbage", []send{{"\x00\x01\x02\x03binary", 0}, {"\xff\xfe", 0}}, "", false, false, 0},
		{"ping-pong integers", []send{{"\x00\x00\x00\x01", 0}, {"\x00\x00\x00\x02", 0}}, "", false, false, 0},
		{"a bare word", []send{{"HELLO", 0}}, "", false, false, 0},
		{"a binary send that begins like RESP", []send{{"*123", 0}, {"*124", 0}}, "", false, false, 0},
		{"resp bad length", []send{{"*2\r\n$x\r\nGET\r\n", 0}}, "", false, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c connParse
			for i, s := range tc.sends {
				data := []byte(s.data)
				capd := data[:min(len(data), probe.PayloadCap)]
				if got := c.send(capd, int64(len(data))); got != s.begun {
					t.Errorf("send %d (%q…): %d requests begun, want %d", i, capd[:min(len(capd), 24)], got, s.begun)
				}
			}
			if c.proto != tc.proto || c.pipelined != tc.pipelined || c.gaveUp != tc.gaveUp || c.mostInOne != tc.most {
				t.Errorf("proto %q pipelined %v gave up %v most in one send %d; want %q %v %v %d", c.proto, c.pipelined, c.gaveUp, c.mostInOne, tc.proto, tc.pipelined, tc.gaveUp, tc.most)
			}
		})
	}
}

// TestRequestParsers: each parser on whole requests, on captures cut
// short, and on what is not its protocol.
func TestRequestParsers(t *testing.T) {
	tests := []struct {
		name  string
		parse reqParser
		b     string
		more  bool
		n     int64
		st    reqStatus
	}{
		{"resp get", respRequest, respGet, false, int64(len(respGet)), reqOK},
		{"resp cut in a value", respRequest, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\nabc", true, 35, reqOK},
		{"resp cut before a header", respRequest, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n", true, 0, reqUnknown},
		{"resp cut in the count", respRequest, "*1", true, 0, reqUnknown},
		{"resp zero args", respRequest, "*0\r\n", false, 0, reqBad},
		{"resp not bulk", respRequest, "*1\r\n:5\r\n", false, 0, reqBad},
		{"resp wrong end of argument", respRequest, "*1\r\n$4\r\nPINGxx", false, 0, reqBad},
		{"resp huge count", respRequest, "*99999999999\r\n", false, 0, reqBad},
		{"inline lower case, unknown connection", func(b []byte, more bool) (int64, reqStatus) { return respInline(b, more, true) }, "ping\r\n", false, 0, reqBad},
		{"inline lower case, known RESP", parserOf(loadgen.Redis), "ping\r\n", false, 6, reqOK},
		{"inline bare newline", parserOf(loadgen.Redis), "PING\n", false, 5, reqOK},
		{"inline with a control byte", parserOf(loadgen.Redis), "GET \x01\r\n", false, 0, reqBad},
		{"http cut in the headers", httpRequest, "GET / HTTP/1.1\r\nHost: a", true, 0, reqUnknown},
		{"http not http", httpRequest, "GET key\r\n", false, 0, reqBad},
		{"http bad header", httpRequest, "GET / HTTP/1.1\r\nnocolon\r\n\r\n", false, 0, reqBad},
		{"http bad length", httpRequest, "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", false, 0, reqBad},
		{"memcached cas", memcacheRequest, "cas k 0 0 3 99\r\nabc\r\n", false, 21, reqOK},
		{"memcached set without bytes", memcacheRequest, "set k 0\r\n", false, 0, reqBad},
		{"memcached unknown verb", memcacheRequest, "frob k\r\n", false, 0, reqBad},
		{"memcached cut in the line", memcacheRequest, "set k 0 0", true, 0, reqUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, st := tc.parse([]byte(tc.b), tc.more)
			if st != tc.st || (st == reqOK && n != tc.n) {
				t.Errorf("%q: length %d status %d, want %d status %d", tc.b, n, st, tc.n, tc.st)
			}
		})
	}
}

// FuzzConnParse: any bytes, cut anywhere, neither panic the parser nor
// make it count more requests than the send has bytes.
func FuzzConnParse(f *testing.F) {
	f.Add([]byte(strings.Repeat(respGet, 3)), 10)
	f.Add([]byte("GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n"), 50)
	f.Add([]byte("set k 0 0 5\r\nhello\r\nget k\r\n"), 7)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		var c connParse
		for len(b) > 0 {
			n := max(1, min(len(b), cut%512+1))
			send := b[:n]
			got := c.send(bytes.Clone(send[:min(len(send), probe.PayloadCap)]), int64(len(send)))
			if got < 0 || got > len(send) {
				t.Fatalf("%d requests in a send of %d bytes", got, len(send))
			}
			b = b[n:]
		}
	})
}

// TestWatchTripsParsed: the timing of a pipelining client that writes
// its requests in one send reads as ping-pong; the payload capture's
// record of that send marks the connection pipelined, and nothing of it
// is split. A connection whose captures hold one request each is split
// as timing says, and counted as parsed; one with no capture as timed.
func TestWatchTripsParsed(t *testing.T) {
	const port, cport = 9000, 40000
	ev := func(ts int64, k probe.Kind) probe.Event {
		return probe.Event{TS: uint64(ts), Kind: k, Lport: cport, Rport: port, TID: 7, Ret: 4, SK: 0xabc}
	}
	evs := []probe.Event{
		ev(100, probe.KindSendStart), ev(110, probe.KindSockSend), ev(200, probe.KindSockRecv),
		ev(300, probe.KindSendStart), ev(310, probe.KindSockSend), ev(400, probe.KindSockRecv),
		ev(500, probe.KindSendStart),
	}
	for _, tc := range []struct {
		name   string
		sends  []string // the captures of the sends at 100 and 300; nil: none
		trips  int
		piped  int
		parsed int
	}{
		{"one request per send", []string{respGet, respGet}, 2, 0, 1},
		{"sixteen per send", []string{strings.Repeat(respGet, 16), strings.Repeat(respGet, 16)}, 0, 1, 1},
		{"no capture", nil, 2, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatchTrips(port)
			w.parser = newWatchParser(false)
			for i := range evs {
				w.event(&evs[i])
			}
			for i, s := range tc.sends {
				data := []byte(s)
				w.parser.capture(&probe.Payload{TS: int64(111 + 200*i), SK: 0xabc, Total: int64(len(data)), Lport: cport, Rport: port, Data: data[:min(len(data), probe.PayloadCap)]})
			}
			_, trips := w.advance(1000, false)
			if len(trips) != tc.trips || w.pipelined != tc.piped {
				t.Errorf("%d round trips, %d pipelined; want %d, %d", len(trips), w.pipelined, tc.trips, tc.piped)
			}
			n := 0
			if pc := w.parsing.byProto[loadgen.Redis]; pc != nil {
				n = pc.n
			}
			if n != tc.parsed || w.parsing.timed.n != 1-tc.parsed {
				t.Errorf("%d parsed, %d timed; want %d, %d: %s", n, w.parsing.timed.n, tc.parsed, 1-tc.parsed, w.parsing.text(""))
			}
			t.Log(w.parsing.text(""))
		})
	}
}
