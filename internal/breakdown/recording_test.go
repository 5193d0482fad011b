package breakdown

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// sampleInput has events out of time order (as the per-CPU rings deliver
// them), more events than one frame holds, and a connection whose records
// arrive in two batches.
func sampleInput() Input {
	in := Input{ServerPort: 9000, MeasureStart: 12345}
	for i := 0; i < 2*eventsPerFrame+7; i++ {
		in.Events = append(in.Events, probe.Event{TS: uint64(i), SK: 0xffff888000000000 + uint64(i), TID: 7, TGID: 7, Ret: -11, CPU: uint16(i % 2), Kind: probe.KindSwitch, Lport: 9000, Rport: 40000})
	}
	in.Conns = []loadgen.Conn{
		{ConnInfo: loadgen.ConnInfo{ID: 0, TID: 100, LocalPort: 40000}, Records: []loadgen.Record{{T0: 1, T1: 5}, {T0: 6, T1: 9}}},
		{ConnInfo: loadgen.ConnInfo{ID: 1, TID: 101, LocalPort: 40001}},
	}
	return in
}

func equalInput(t *testing.T, got, want Input) {
	t.Helper()
	if got.ServerPort != want.ServerPort || got.MeasureStart != want.MeasureStart {
		t.Errorf("port/measure start %d/%d, want %d/%d", got.ServerPort, got.MeasureStart, want.ServerPort, want.MeasureStart)
	}
	if len(got.Events) != len(want.Events) {
		t.Fatalf("%d events, want %d", len(got.Events), len(want.Events))
	}
	for i := range got.Events {
		if got.Events[i] != want.Events[i] {
			t.Fatalf("event %d: %+v, want %+v", i, got.Events[i], want.Events[i])
		}
	}
	if len(got.Conns) != len(want.Conns) {
		t.Fatalf("%d connections, want %d", len(got.Conns), len(want.Conns))
	}
	for i := range got.Conns {
		g, w := got.Conns[i], want.Conns[i]
		if g.ConnInfo != w.ConnInfo || len(g.Records) != len(w.Records) {
			t.Fatalf("connection %d: %+v with %d records, want %+v with %d", i, g.ConnInfo, len(g.Records), w.ConnInfo, len(w.Records))
		}
		for j := range g.Records {
			if g.Records[j] != w.Records[j] {
				t.Errorf("connection %d record %d: %+v, want %+v", i, j, g.Records[j], w.Records[j])
			}
		}
	}
}

// TestRecordingRoundTrip writes as a streaming run would (events in
// reverse time order, a connection's records in two batches around other
// frames) and reads back what Join needs, events sorted.
func TestRecordingRoundTrip(t *testing.T) {
	want := sampleInput()
	var buf bytes.Buffer
	w, err := NewRecordingWriter(&buf, RecordingHeader{ServerPort: want.ServerPort})
	if err != nil {
		t.Fatal(err)
	}
	first := want.Conns[0]
	first.Records = first.Records[:1]
	if err := w.WriteConn(first); err != nil {
		t.Fatal(err)
	}
	for i := len(want.Events) - 1; i >= 0; i-- {
		if err := w.WriteEvent(&want.Events[i]); err != nil {
			t.Fatal(err)
		}
	}
	rest := want.Conns[0]
	rest.Records = rest.Records[1:]
	for _, c := range []loadgen.Conn{rest, want.Conns[1]} {
		if err := w.WriteConn(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(RecordingTrailer{MeasureStart: want.MeasureStart}); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRecording(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	equalInput(t, got, want)
}

func TestWriteRecordingFile(t *testing.T) {
	want := sampleInput()
	for _, name := range []string{"x.rec", "x.rec.gz"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name)
			if err := WriteRecording(path, want); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			if gz := len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b; gz != strings.HasSuffix(name, ".gz") {
				t.Errorf("gzip %v for %s", gz, name)
			}
			got, err := ReadRecording(path)
			if err != nil {
				t.Fatal(err)
			}
			equalInput(t, got, want)
		})
	}
}

// TestReadRecordingV1 builds a version 1 file (the layout of the files in
// testdata/streams) and reads it.
func TestReadRecordingV1(t *testing.T) {
	meta := []byte(`{"server_port":9000,"measure_start_ns":12345,"conns":[{"id":0,"tid":100,"local_port":40000,"records":[[1,5],[6,9]]},{"id":1,"tid":101,"local_port":40001,"records":null}]}`)
	want := sampleInput()
	var b bytes.Buffer
	b.WriteString(recMagic)
	binary.Write(&b, binary.LittleEndian, uint32(1))
	binary.Write(&b, binary.LittleEndian, uint32(len(meta)))
	b.Write(meta)
	var rec [probe.EventSize]byte
	for i := range want.Events {
		probe.Encode(rec[:], &want.Events[i])
		b.Write(rec[:])
	}
	got, err := DecodeRecording(&b)
	if err != nil {
		t.Fatal(err)
	}
	equalInput(t, got, want)
}

// TestReadRecordingErrors: every damaged file is one error with one
// "read recording" prefix, saying what is wrong.
func TestReadRecordingErrors(t *testing.T) {
	var good bytes.Buffer
	w, _ := NewRecordingWriter(&good, RecordingHeader{ServerPort: 1})
	w.WriteEvent(&probe.Event{TS: 1})
	w.Close(RecordingTrailer{MeasureStart: 1})
	g := good.Bytes()
	v9 := bytes.Clone(g)
	v9[8] = 9
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "not a volleyscope recording"},
		{"other file", []byte("hello, this is not a recording at all"), "not a volleyscope recording"},
		{"version", v9, "version 9"},
		{"no trailer", g[:len(g)-5-len(`{"measure_start_ns":1}`)], "no trailer"},
		{"cut in a frame", g[:len(g)-3], "cut short"},
		{"cut in the header", g[:20], "header: cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRecording(bytes.NewReader(tc.b))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if strings.Count(err.Error(), "recording") > 1+strings.Count(tc.want, "recording") {
				t.Errorf("stutter: %v", err)
			}
		})
	}
	if _, err := ReadRecording(filepath.Join(t.TempDir(), "missing.rec")); err == nil || strings.Count(err.Error(), "read recording") != 1 {
		t.Errorf("missing file: %v", err)
	}
	_, err := DecodeRecording(bytes.NewReader(nil))
	if !errors.Is(err, ErrNotRecording) {
		t.Errorf("empty file: %v, want ErrNotRecording", err)
	}
}

func TestWriteEventAllocatesNothing(t *testing.T) {
	var buf bytes.Buffer
	buf.Grow(64 << 20)
	w, err := NewRecordingWriter(&buf, RecordingHeader{})
	if err != nil {
		t.Fatal(err)
	}
	e := probe.Event{TS: 1, Kind: probe.KindSwitch}
	if n := testing.AllocsPerRun(10000, func() { w.WriteEvent(&e) }); n != 0 {
		t.Errorf("WriteEvent allocates %.2f times per event", n)
	}
}

// FuzzDecodeRecording: a corrupt file is an error, never a panic or a
// hang.
func FuzzDecodeRecording(f *testing.F) {
	var b bytes.Buffer
	w, _ := NewRecordingWriter(&b, RecordingHeader{ServerPort: 1})
	w.WriteEvent(&probe.Event{TS: 1})
	w.WriteConn(loadgen.Conn{Records: []loadgen.Record{{T0: 1, T1: 2}}})
	w.Close(RecordingTrailer{})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeRecording(bytes.NewReader(b))
	})
}
