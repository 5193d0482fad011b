package probe

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/volleyscope/volleyscope/bpf"
)

// TestEventLayout holds the Go side to struct event in volley.h, through
// the type bpf2go generated from the object's BTF (bpf.ProbeEvent): every
// field of the C struct is decoded into Event (or is the rings' commit
// marker), at the same offset and size in both Go types, and a record
// written in the C layout decodes to its values. A field added to
// volley.h fails here until Decode and Event learn it.
func TestEventLayout(t *testing.T) {
	// C field (bpf2go's name) → Event field, "" for seq (rings.go).
	fields := map[string]string{
		"Ts": "TS", "Sk": "SK", "Arg0": "Arg0", "Arg1": "Arg1", "Tid": "TID", "Tgid": "TGID",
		"Ret": "Ret", "Cpu": "CPU", "Kind": "Kind", "Lport": "Lport", "Rport": "Rport", "Seq": "",
	}
	ct := reflect.TypeFor[bpf.ProbeEvent]()
	gt := reflect.TypeFor[Event]()
	if ct.Size() != gt.Size() || int(ct.Size()) != EventSize {
		t.Errorf("sizeof struct event %d, Event %d, EventSize %d: want all equal", ct.Size(), gt.Size(), EventSize)
	}
	// A record in the C layout, each field a distinct value.
	var c bpf.ProbeEvent
	cv := reflect.ValueOf(&c).Elem()
	seen := 0
	for i := 0; i < ct.NumField(); i++ {
		cf := ct.Field(i)
		if cf.Name == "_" {
			continue
		}
		seen++
		goName, ok := fields[cf.Name]
		if !ok {
			t.Errorf("struct event has field %s (offset %d) that probe.Event does not decode", cf.Name, cf.Offset)
			continue
		}
		fv := cv.Field(i)
		switch fv.Kind() {
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			fv.SetInt(-int64(i + 1))
		default:
			fv.SetUint(uint64(0x0102030405060708*(i+1)) & (1<<(8*cf.Type.Size()) - 1))
		}
		if goName == "" {
			if int(cf.Offset) != offSeq {
				t.Errorf("seq at offset %d, rings.go reads it at %d", cf.Offset, offSeq)
			}
			continue
		}
		gf, ok := gt.FieldByName(goName)
		if !ok {
			t.Fatalf("Event has no field %s", goName)
		}
		if gf.Offset != cf.Offset || gf.Type.Size() != cf.Type.Size() {
			t.Errorf("%s: C offset %d size %d, Event.%s offset %d size %d", cf.Name, cf.Offset, cf.Type.Size(), goName, gf.Offset, gf.Type.Size())
		}
	}
	if seen != len(fields) {
		t.Errorf("struct event has %d fields, the test knows %d", seen, len(fields))
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&c)), unsafe.Sizeof(c)) // amd64: little-endian, as Decode reads
	var e Event
	if err := Decode(raw, &e); err != nil {
		t.Fatal(err)
	}
	ev := reflect.ValueOf(e)
	for cName, goName := range fields {
		if goName == "" {
			continue
		}
		want := cv.FieldByName(cName)
		got := ev.FieldByName(goName)
		var w, g int64
		if want.CanInt() {
			w = want.Int()
		} else {
			w = int64(want.Uint())
		}
		if got.CanInt() {
			g = got.Int()
		} else {
			g = int64(got.Uint())
		}
		if w != g {
			t.Errorf("%s decoded into %s as %#x, want %#x", cName, goName, g, w)
		}
	}
	// Encode writes the same bytes (seq 0).
	var back [EventSize]byte
	Encode(back[:], &e)
	c.Seq = 0
	if raw := unsafe.Slice((*byte)(unsafe.Pointer(&c)), unsafe.Sizeof(c)); string(back[:]) != string(raw) {
		t.Errorf("Encode wrote %x, want %x", back, raw)
	}
}

// TestCursorLayout: the reader's head, lost and tail offsets are those of
// struct cursor, and head (written by the programs) and tail (written by
// the reader) sit on different 64-byte cache lines.
func TestCursorLayout(t *testing.T) {
	ct := reflect.TypeFor[bpf.ProbeCursor]()
	for _, f := range []struct {
		name string
		off  int
	}{{"Head", offHead}, {"Lost", offLost}, {"Tail", offTail}} {
		sf, ok := ct.FieldByName(f.name)
		if !ok || int(sf.Offset) != f.off || sf.Type.Size() != 8 {
			t.Errorf("struct cursor %s: %+v, reader uses offset %d", f.name, sf, f.off)
		}
	}
	if int(ct.Size()) != cursorSize || offTail/64 == offHead/64 || cursorSize%64 != 0 {
		t.Errorf("cursor size %d (reader %d), head at %d, tail at %d: want head and tail on separate cache lines", ct.Size(), cursorSize, offHead, offTail)
	}
}
