package clocksync

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"

	"github.com/volleyscope/volleyscope/probe"
)

// FuzzMatcher drives a Matcher and its Estimator with arbitrary events,
// pings, watermarks and questions: nothing panics, no half-width is
// negative, and the report is valid JSON (no NaN or infinity).
func FuzzMatcher(f *testing.F) {
	rec := func(op byte, ts int64, l, r uint16, seq uint32, n int32) []byte {
		b := make([]byte, 21)
		b[0] = op
		binary.LittleEndian.PutUint64(b[1:], uint64(ts))
		binary.LittleEndian.PutUint16(b[9:], l)
		binary.LittleEndian.PutUint16(b[11:], r)
		binary.LittleEndian.PutUint32(b[13:], seq)
		binary.LittleEndian.PutUint32(b[17:], uint32(n))
		return b
	}
	var seed []byte
	for i := range int64(50) {
		seed = append(seed, rec(0, 1_000_000+i*1_000_000, 40000, 9000, uint32(i*100), 100)...)
		seed = append(seed, rec(3, 5_000_000_000+i*1_000_000, 9000, 40000, uint32(i*100), 100)...)
		seed = append(seed, rec(2, 5_000_020_000+i*1_000_000, 9000, 40000, uint32(i*7), 10)...)
		seed = append(seed, rec(1, 60_000+i*1_000_000, 40000, 9000, uint32(i*7), 10)...)
		seed = append(seed, rec(5, 1_000_000+i*1_000_000, 0, 0, 0, 0)...)
	}
	seed = append(seed, rec(8, 0, 0, 0, 0, 0)...)
	f.Add(seed)
	f.Add(rec(4, math.MaxInt64, 0, 0, 0, 0))
	f.Add(append(rec(0, math.MinInt64, 1, 2, 3, 4), rec(3, math.MaxInt64, 2, 1, 3, 4)...))
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, data []byte) {
	e := New(Options{})
	m := NewMatcher(e, MatcherOptions{MaxPending: 64})
	for len(data) >= 21 {
		op := data[0]
		ts := int64(binary.LittleEndian.Uint64(data[1:]))
		l := binary.LittleEndian.Uint16(data[9:])
		r := binary.LittleEndian.Uint16(data[11:])
		seq := binary.LittleEndian.Uint32(data[13:])
		n := int32(binary.LittleEndian.Uint32(data[17:]))
		data = data[21:]
		ev := probe.Event{TS: uint64(ts), Lport: l, Rport: r, Arg0: uint64(seq), Ret: n, Kind: probe.KindNetXmit}
		switch op % 10 {
		case 0:
			m.Local(&ev)
		case 1:
			ev.Kind = probe.KindNetRecv
			m.Local(&ev)
		case 2:
			m.Remote(&ev)
		case 3:
			ev.Kind = probe.KindNetRecv
			m.Remote(&ev)
		case 4:
			m.Watermarks(ts, ts+int64(seq))
		case 5:
			// A ping: t2 and t3 from the other fields.
			e.AddExchange(ts, ts+int64(int32(seq))*1000, ts+int64(n))
		case 6:
			if _, h, ok := e.At(ts); ok && h < 0 {
				t.Fatalf("At(%d): half-width %d", ts, h)
			}
		case 7:
			_, _ = e.ToController(ts)
			_ = e.Ready(ts)
		case 8:
			m.Flush()
		case 9:
			e.AddAB(ts, ts+int64(n))
			e.AddBA(ts+int64(seq), ts)
		}
	}
	m.Flush()
	if _, err := json.Marshal(e.Report()); err != nil {
		t.Fatalf("report: %v", err)
	}
	if _, err := json.Marshal(m.Stats()); err != nil {
		t.Fatalf("stats: %v", err)
	}
}
