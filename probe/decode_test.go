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

// TestExpand: a folded record reads back as the two records it folds,
// field for field as the programs write them unfolded (bpf/probe.c), the
// earlier first; any other record passes through as it is.
func TestExpand(t *testing.T) {
	const sk = 0xffff888012345678
	recv := Event{TS: 1000, Arg0: 0xfedcba98, Arg1: 7, TID: 5, TGID: 6, Ret: 1448, CPU: 1, Kind: KindNetRecv, Lport: 9000, Rport: 41000}
	ready := Event{TS: 1900, SK: sk, TID: 5, TGID: 6, CPU: 1, Kind: KindDataReady, Lport: 9000, Rport: 41000}
	start := Event{TS: 500, SK: sk, TID: 8, TGID: 8, Ret: 1, CPU: 0, Kind: KindSendStart, Lport: 41000, Rport: 9000}
	xmit := Event{TS: 800, SK: sk, Arg0: 0x12345678, Arg1: 1, TID: 8, TGID: 8, Ret: 64, CPU: 0, Kind: KindNetXmit, Lport: 41000, Rport: 9000}
	// The folds, as on_data_ready and on_xmit write them.
	recvReady := ready
	recvReady.Kind, recvReady.Arg0, recvReady.Arg1, recvReady.Ret = KindNetRecvReady, recv.TS, recv.Arg0|recv.Arg1<<32, recv.Ret
	sendXmit := xmit
	sendXmit.Kind, sendXmit.Arg0, sendXmit.Arg1 = KindSendXmit, start.TS, xmit.Arg0|xmit.Arg1<<32
	for _, c := range []struct {
		in   Event
		want []Event
	}{
		{recvReady, []Event{recv, ready}},
		{sendXmit, []Event{start, xmit}},
		{xmit, []Event{xmit}},
		{ready, []Event{ready}},
	} {
		t.Run(c.in.Kind.String(), func(t *testing.T) {
			// Through the record layout, as the reader gets it.
			var b [EventSize]byte
			Encode(b[:], &c.in)
			var e Event
			if err := Decode(b[:], &e); err != nil {
				t.Fatal(err)
			}
			var got []Event
			expand(&e, func(e *Event) { got = append(got, *e) })
			if len(got) != len(c.want) {
				t.Fatalf("got %d events %+v, want %+v", len(got), got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("event %d: got %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}
