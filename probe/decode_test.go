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

func TestRecordingRoundTrip(t *testing.T) {
	var w bytes.Buffer
	rec, err := NewRecorder(&w, []byte(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		rec.Write(&Event{TS: uint64(i), Kind: KindSwitch})
	}
	rec.Flush()
	n := 0
	meta, err := ReadRecording(bytes.NewReader(w.Bytes()), func(e *Event) {
		if e.TS != uint64(n) {
			t.Fatalf("event %d has TS %d", n, e.TS)
		}
		n++
	})
	if err != nil || n != 100 || string(meta) != `{"x":1}` {
		t.Fatalf("read %d events, meta %q, err %v", n, meta, err)
	}
	if _, err := ReadRecording(bytes.NewReader(w.Bytes()[:w.Len()-3]), func(*Event) {}); err == nil {
		t.Error("truncated recording read without error")
	}
	if _, err := ReadRecording(bytes.NewReader([]byte("not a recording at all")), func(*Event) {}); err == nil {
		t.Error("garbage read as a recording")
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

// FuzzReadRecording: a corrupt file is an error, never a panic or a hang.
func FuzzReadRecording(f *testing.F) {
	var w bytes.Buffer
	rec, _ := NewRecorder(&w, []byte("{}"))
	rec.Write(&Event{TS: 1})
	rec.Flush()
	f.Add(w.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ReadRecording(bytes.NewReader(b), func(*Event) {})
	})
}
