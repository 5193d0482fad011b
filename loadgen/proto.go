package loadgen

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/volleyscope/volleyscope/internal/wire"
)

// Proto names a wire protocol.
type Proto string

const (
	// PingPong sends a 4-byte big-endian integer and expects integer+1 back
	// (wrapping at 2^32); the integer 0 asks the server to exit. The rule
	// is coded in package internal/wire, shared with the servers.
	PingPong Proto = "pingpong"
	// Echo sends Size bytes and expects the same bytes back.
	Echo Proto = "echo"
	// HTTP sends an HTTP/1.1 keep-alive GET (Options.HTTP) and expects a
	// response framed by Content-Length or chunked encoding, with a
	// status in the accepted range and without Connection: close.
	HTTP Proto = "http"
	// Redis speaks RESP: PING, or a GET/SET mix (Options.Mix) over
	// Options.Keys keys with Size-byte values.
	Redis Proto = "redis"
	// Memcache speaks memcached's text protocol: a get/set mix
	// (Options.Mix, default DefaultMemcacheMix) over Options.Keys keys
	// with Size-byte values.
	Memcache Proto = "memcache"
	// Line sends Options.Line.Request and expects Options.Line.Expect
	// back, both fixed.
	Line Proto = "line"
)

// ReplyError describes a reply that was wrong, short or late. It names the
// connection and the request so that a fault can be found in a capture.
type ReplyError struct {
	Conn    int    // client connection index, from 0
	Request int64  // request number on that connection, from 0
	Reason  string // "wrong reply", "short reply (connection closed)", "timeout", ...
	Want    []byte // expected bytes (prefix for long echo payloads); nil for framed protocols, whose Err says what was wrong
	Got     []byte // bytes received so far
	// Sent is the request of a text protocol (HTTP, RESP, memcache,
	// line), shown quoted after its number; nil for ping-pong and echo.
	Sent []byte
	Text bool  // a text protocol: the bytes are shown quoted rather than in hex
	Err  error // underlying error, if any
	// Late, when not zero, is how long a right reply took that completed
	// after Timeout: the reply is not in question, only its time.
	Late, Timeout time.Duration
}

func (e *ReplyError) Error() string {
	show := hexPrefix
	if e.Text {
		show = quotePrefix
	}
	s := fmt.Sprintf("connection %d request %d", e.Conn, e.Request)
	if e.Sent != nil {
		s += " " + quotePrefix(e.Sent)
	}
	if e.Late > 0 {
		return s + fmt.Sprintf(": late: complete after %.1f s, the timeout is %s s (--timeout)", e.Late.Seconds(), strconv.FormatFloat(e.Timeout.Seconds(), 'f', -1, 64))
	}
	// A binary protocol's reply that reads as text came from a server
	// that speaks another protocol (an SSH banner, an HTTP error): show
	// it as text, and say so.
	hint, showGot := "", show
	if !e.Text && printable(e.Got) && !bytes.Equal(e.Got, e.Want) {
		showGot = quotePrefix
		hint = "; the reply is text: the server may speak another protocol (--proto " + protoNames(func(p ProtoInfo) bool { return !p.Binary }) + ")"
	}
	if e.Want != nil {
		s += fmt.Sprintf(": %s: expected %s, received %s (%d bytes)", e.Reason, show(e.Want), showGot(e.Got), len(e.Got))
	} else {
		s += fmt.Sprintf(": %s: received %s (%d bytes)", e.Reason, showGot(e.Got), len(e.Got))
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s + hint
}

// printable says whether b reads as text: at least 2 bytes, all of them
// printable ASCII, tabs or line ends.
func printable(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\r' && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}

func (e *ReplyError) Unwrap() error { return e.Err }

// hexPrefix renders at most 16 bytes so that a 64 KiB echo mismatch stays
// readable.
func hexPrefix(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	if len(b) > 16 {
		return "0x" + hex.EncodeToString(b[:16]) + "…"
	}
	return "0x" + hex.EncodeToString(b)
}

// quotePrefix renders at most 96 bytes of a text reply, quoted with Go
// escapes, so that \r\n and binary bytes are visible.
func quotePrefix(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	if len(b) > 96 {
		return strconv.Quote(string(b[:96])) + "…"
	}
	return strconv.Quote(string(b))
}

// badReply is a reply that cannot be the right one; its message says why.
type badReply struct{ msg string }

func (e *badReply) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badReply{fmt.Sprintf(format, args...)} }

// framer builds the requests and frames the replies of a protocol whose
// replies carry their own length (HTTP, RESP, memcache).
type framer interface {
	// request writes the next request into buf (reused, grown if need
	// be) and returns it.
	request(buf []byte) []byte
	// reply looks at b, the reply bytes received so far: it returns the
	// reply's length once b holds all of it, 0 while more bytes are
	// needed, or a *badReply when b cannot begin a right reply.
	reply(b []byte) (int, error)
}

// maxReply bounds the receive buffer of a framed protocol: a reply that
// has not ended within it is refused.
const maxReply = 64 << 20

// exchange builds requests and checks replies for one connection. It owns
// its buffers, so a round trip allocates nothing once the receive buffer
// has grown to the largest reply.
type exchange struct {
	proto Proto
	req   []byte // request bytes for the current round trip
	want  []byte // expected reply (fixed-length protocols)
	got   []byte // receive buffer: len(want), or growing for a framer
	rng   uint64 // xorshift state for challenges, payloads, keys
	fr    framer // nil for fixed-length protocols
	// maxReq is the longest request the exchange sends: the threads
	// model writes and reads together from bigRequest on.
	maxReq int
}

func newExchange(opts *Options, seed uint64) *exchange {
	size := opts.Size
	x := &exchange{proto: opts.Proto, rng: seed | 1}
	switch opts.Proto {
	case PingPong:
		x.req, x.want, x.got = make([]byte, wire.Size), make([]byte, wire.Size), make([]byte, wire.Size)
	case Echo:
		x.req, x.want, x.got = make([]byte, size), make([]byte, size), make([]byte, size)
		for i := range x.req {
			x.req[i] = byte(x.next())
		}
		copy(x.want, x.req)
	case Line:
		x.req, x.want = opts.Line.Request, opts.Line.Expect
		x.got = make([]byte, len(x.want))
	default:
		if info, ok := LookupProto(opts.Proto); ok && info.newFramer != nil {
			x.fr = info.newFramer(opts, x)
		}
	}
	x.maxReq = len(x.req)
	if x.fr != nil {
		x.got = make([]byte, 4096)
		// The largest request: a SET of a Size-byte value, with its key
		// and framing, or the fixed HTTP request.
		x.maxReq = max(len(x.fr.request(nil)), size+256)
		x.req = make([]byte, 0, x.maxReq)
	}
	return x
}

func (x *exchange) next() uint64 {
	x.rng ^= x.rng << 13
	x.rng ^= x.rng >> 7
	x.rng ^= x.rng << 17
	return x.rng
}

// prepare sets up the next request. Ping-pong uses a fresh random non-zero
// challenge each time, so a server replaying an old answer is caught. Echo
// varies the first 8 bytes for the same reason. Line's request never
// changes; a framer writes its own.
func (x *exchange) prepare() {
	switch {
	case x.fr != nil:
		x.req = x.fr.request(x.req)
	case x.proto == PingPong:
		c := uint32(x.next())
		if c == wire.Exit {
			c = 1
		}
		wire.Put(x.req, c)
		wire.Put(x.want, wire.Reply(c))
	case x.proto == Echo:
		n := min(8, len(x.req))
		v := x.next()
		for i := 0; i < n; i++ {
			x.req[i] = byte(v >> (8 * i))
		}
		copy(x.want[:n], x.req[:n])
	}
}

// space is where the next read of the reply goes, rd bytes having
// arrived: the rest of a fixed-length reply, or the free end of a
// framer's buffer, which doubles when full.
func (x *exchange) space(rd int) []byte {
	if x.fr == nil {
		return x.got[rd:len(x.want)]
	}
	if rd == len(x.got) && len(x.got) < maxReply {
		g := make([]byte, min(2*len(x.got), maxReply))
		copy(g, x.got[:rd])
		x.got = g
	}
	return x.got[rd:]
}

// done says whether the rd bytes received complete the reply, checking
// it: a wrong reply, or bytes beyond its end, give a *badReply.
func (x *exchange) done(rd int) (bool, error) {
	if x.fr == nil {
		if rd < len(x.want) {
			return false, nil
		}
		// bytes.Equal runs at memcmp's speed; a byte loop would add
		// client time that grows with the echo's size.
		if !bytes.Equal(x.got[:len(x.want)], x.want) {
			return false, errWrong
		}
		return true, nil
	}
	n, err := x.fr.reply(x.got[:rd])
	switch {
	case err != nil:
		return false, err
	case n == 0 && rd == maxReply:
		return false, badf("no end of the reply within %d bytes", maxReply)
	case n == 0:
		return false, nil
	case n < rd:
		return false, badf("%d bytes after the end of the reply (the server answered more than was asked)", rd-n)
	}
	return true, nil
}

// errWrong is a fixed-length reply that differs from the expected one:
// the error's ReplyError shows both.
var errWrong = errors.New("reply differs")

// check compares a complete fixed-length reply with the expected one (a
// test helper's view of done).
func (x *exchange) check() bool {
	ok, err := x.done(len(x.want))
	return ok && err == nil
}

// lineWorkload is Options.Workload for line: the fixed exchange.
func lineWorkload(o Options) string {
	return fmt.Sprintf("request %q, expect %q", o.Line.Request, o.Line.Expect)
}
