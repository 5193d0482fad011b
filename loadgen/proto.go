package loadgen

import (
	"encoding/hex"
	"fmt"

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
)

// ParseProto checks a protocol name given on the command line.
func ParseProto(s string) (Proto, error) {
	switch Proto(s) {
	case PingPong, Echo:
		return Proto(s), nil
	}
	return "", fmt.Errorf("unknown protocol %q: want pingpong or echo", s)
}

// ReplyError describes a reply that was wrong, short or late. It names the
// connection and the request so that a fault can be found in a capture.
type ReplyError struct {
	Conn    int    // client connection index, from 0
	Request int64  // request number on that connection, from 0
	Reason  string // "wrong reply", "short reply (connection closed)", "timeout", ...
	Want    []byte // expected bytes (prefix for long echo payloads)
	Got     []byte // bytes received so far
	Err     error  // underlying error, if any
}

func (e *ReplyError) Error() string {
	s := fmt.Sprintf("connection %d request %d: %s: expected %s, received %s (%d bytes)",
		e.Conn, e.Request, e.Reason, hexPrefix(e.Want), hexPrefix(e.Got), len(e.Got))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
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

// exchange builds requests and checks replies for one connection. It owns
// its buffers, so a round trip allocates nothing.
type exchange struct {
	proto Proto
	req   []byte // request bytes for the current round trip
	want  []byte // expected reply
	got   []byte // receive buffer, len(want)
	rng   uint64 // xorshift state for challenges and payloads
}

func newExchange(proto Proto, size int, seed uint64) *exchange {
	if proto == PingPong {
		size = wire.Size
	}
	x := &exchange{
		proto: proto,
		req:   make([]byte, size),
		want:  make([]byte, size),
		got:   make([]byte, size),
		rng:   seed | 1,
	}
	if proto == Echo {
		for i := range x.req {
			x.req[i] = byte(x.next())
		}
		copy(x.want, x.req)
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
// varies the first 8 bytes for the same reason.
func (x *exchange) prepare() {
	if x.proto == PingPong {
		c := uint32(x.next())
		if c == wire.Exit {
			c = 1
		}
		wire.Put(x.req, c)
		wire.Put(x.want, wire.Reply(c))
		return
	}
	n := min(8, len(x.req))
	v := x.next()
	for i := 0; i < n; i++ {
		x.req[i] = byte(v >> (8 * i))
	}
	copy(x.want[:n], x.req[:n])
}

// check compares a complete reply with the expected one.
func (x *exchange) check() bool {
	for i := range x.want {
		if x.got[i] != x.want[i] {
			return false
		}
	}
	return true
}
