// Package wire is the ping-pong protocol, written once for the load
// generator and the reference servers: a message is a 4-byte big-endian
// unsigned integer n; the server answers n+1, wrapping at 2^32; the
// message 0 asks the server to exit and gets no answer. (The echo protocol
// needs no rule: the server returns the bytes it received.)
package wire

import "encoding/binary"

// Size is the length of one ping-pong message in bytes.
const Size = 4

// Exit is the message that asks a ping-pong server to exit. Clients never
// send it as a challenge.
const Exit uint32 = 0

// Reply is the server's answer to message n: n+1, wrapping at 2^32.
func Reply(n uint32) uint32 { return n + 1 }

// Put writes message n into b[:Size].
func Put(b []byte, n uint32) { binary.BigEndian.PutUint32(b, n) }

// Get reads the message in b[:Size].
func Get(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// AppendReply appends the answer to message n to out.
func AppendReply(out []byte, n uint32) []byte {
	return binary.BigEndian.AppendUint32(out, Reply(n))
}

// Assembler rebuilds messages from a byte stream whose reads may split
// them anywhere. The zero value is ready; it holds one connection's state.
type Assembler struct {
	part [Size]byte
	n    int
}

// Next consumes bytes from in until one message is complete. It returns
// the message, the bytes after it, and ok; when in ends first, ok is false,
// rest is empty and the partial message is kept for the next call.
func (a *Assembler) Next(in []byte) (msg uint32, rest []byte, ok bool) {
	k := copy(a.part[a.n:], in)
	a.n += k
	if a.n < Size {
		return 0, nil, false
	}
	a.n = 0
	return Get(a.part[:]), in[k:], true
}
