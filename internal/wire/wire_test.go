package wire

import (
	"bytes"
	"testing"
)

func TestReplyWraps(t *testing.T) {
	for _, tc := range []struct{ in, want uint32 }{
		{1, 2}, {0x7FFFFFFF, 0x80000000}, {0xFFFFFFFE, 0xFFFFFFFF}, {0xFFFFFFFF, 0},
	} {
		if got := Reply(tc.in); got != tc.want {
			t.Errorf("Reply(%#x) = %#x, want %#x", tc.in, got, tc.want)
		}
		if got := AppendReply([]byte{9}, tc.in); !bytes.Equal(got[1:], be(tc.want)) || got[0] != 9 {
			t.Errorf("AppendReply(%#x) = %x, want 09%x", tc.in, got, be(tc.want))
		}
	}
}

func be(v uint32) []byte {
	b := make([]byte, Size)
	Put(b, v)
	return b
}

// TestAssemblerSplits feeds the same three messages cut at every possible
// pair of places and expects them back whole and in order.
func TestAssemblerSplits(t *testing.T) {
	msgs := []uint32{0x01020304, 0xFFFFFFFF, Exit}
	var stream []byte
	for _, m := range msgs {
		stream = append(stream, be(m)...)
	}
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			var a Assembler
			var got []uint32
			for _, chunk := range [][]byte{stream[:i], stream[i:j], stream[j:]} {
				for in := chunk; len(in) > 0; {
					m, rest, ok := a.Next(in)
					in = rest
					if !ok {
						if len(rest) != 0 {
							t.Fatalf("cut %d,%d: incomplete message left %d bytes", i, j, len(rest))
						}
						break
					}
					got = append(got, m)
				}
			}
			if len(got) != len(msgs) {
				t.Fatalf("cut %d,%d: got %x, want %x", i, j, got, msgs)
			}
			for k := range msgs {
				if got[k] != msgs[k] {
					t.Fatalf("cut %d,%d: got %x, want %x", i, j, got, msgs)
				}
			}
		}
	}
}
