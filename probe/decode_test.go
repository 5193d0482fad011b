package probe

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodeRoundTrip(t *testing.T) {
	in := Event{TS: 1, SK: 0xffff888012345678, Arg0: 3, Arg1: 4, TID: 5, TGID: 6, Ret: -11, CPU: 7, Kind: KindSockRecv, Lport: 8080, Rport: 40000}
	var b [EventSize]byte
	Encode(b[:], &in)
	var out Event
	if err := Decode(b[:], &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("decoded %+v, want %+v", out, in)
	}
	if err := Decode(b[:EventSize-1], &out); !errors.Is(err, ErrShortRecord) {
		t.Errorf("short record: err = %v, want ErrShortRecord", err)
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	var b [EventSize]byte
	var e Event
	if n := testing.AllocsPerRun(1000, func() { _ = Decode(b[:], &e) }); n != 0 {
		t.Errorf("Decode allocates %.1f times per record", n)
	}
}

func BenchmarkDecode(b *testing.B) {
	var buf [EventSize]byte
	var e Event
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = Decode(buf[:], &e)
	}
}

// FuzzDecode: arbitrary bytes never panic; only exact-size records decode,
// and a decoded record encodes back to the same bytes (but the padding).
func FuzzDecode(f *testing.F) {
	f.Add(make([]byte, EventSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		err := Decode(b, &e)
		if len(b) != EventSize {
			if err == nil {
				t.Fatalf("%d-byte record decoded", len(b))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var back [EventSize]byte
		Encode(back[:], &e)
		if !bytes.Equal(back[:52], b[:52]) {
			t.Fatalf("re-encoded %x, want %x", back[:52], b[:52])
		}
	})
}
