package render

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/golden"
	"github.com/volleyscope/volleyscope/internal/report"
)

// TestTextOfBuild: the terminal summary of each results.json that
// TestBuildFromRecording (package report) holds to its golden files.
func TestTextOfBuild(t *testing.T) {
	n := 0
	built, _ := filepath.Glob("../report/testdata/golden/build_*.json")
	for _, path := range built {
		n++
		r, err := report.ReadJSON(path)
		var b bytes.Buffer
		if err == nil {
			err = WriteText(&b, r)
		}
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, strings.TrimSuffix(filepath.Base(path), ".json")+".txt", b.Bytes())
	}
	if n == 0 {
		t.Error("no build_*.json from package report's tests")
	}
}

func TestWriteTextSaysWhereTimeGoes(t *testing.T) {
	r := &report.Results{Meta: report.Meta{Server: "threads", Clients: 1, Proto: "pingpong"}, Latency: report.Latency{Count: 10, Mean: 100e3},
		Run:            report.RunInfo{StopReason: "ci"},
		Breakdown:      []report.Component{{Component: "server_wakeup", Side: "server", MeanNs: 60e3, Share: 0.6}, {Component: "client_net", Side: "client", MeanNs: 40e3, Share: 0.4}},
		BreakdownCheck: &report.BreakdownCheck{Joined: 9, Unjoined: 1, UnjoinedReasons: map[string]int{"no data ready": 1}, SumWithinTolerance: 1, Tolerance: "2%"},
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"confidence target reached", "server_wakeup", "60.0%", "joined 9 of 10", "1 × no data ready", "most of the time: server_wakeup (server side), 60%"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// TestHoldersUntaken: a wait whose holders account for less than its
// length says how much no task held, and one they fill says nothing.
func TestHoldersUntaken(t *testing.T) {
	trip := func(holders ...int64) report.SlowTrip {
		w := report.TripWait{Component: "client_preempted", Side: "client", TID: 7, Ns: 100_000, Named: true}
		for i, ns := range holders {
			w.Holders = append(w.Holders, report.TripHolder{Comm: "hog", PID: uint32(10 + i), TID: uint32(10 + i), Ns: ns})
		}
		return report.SlowTrip{Waits: []report.TripWait{w}}
	}
	var b strings.Builder
	writeHolders(&b, trip(200, 300), "client")
	if !strings.Contains(b.String(), "99.5 µs with no holder seen") {
		t.Errorf("holders of 0.5 µs in a 100 µs wait: %q, want the 99.5 µs no task held named", b.String())
	}
	b.Reset()
	writeHolders(&b, trip(60_000, 40_000), "client")
	if strings.Contains(b.String(), "no holder") {
		t.Errorf("holders filling the wait: %q, want no time said to be held by no task", b.String())
	}
}

// TestProbeCostUnmeasured: a run whose warm-up had no round trip (a
// watch of a client still silent then) says its programs' cost was not
// measured, rather than 0 ns.
func TestProbeCostUnmeasured(t *testing.T) {
	var b bytes.Buffer
	r := &report.Results{Probe: &report.ProbeInfo{EventsPerRTT: 10}}
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "not measured (no round trip in the warm-up)") || strings.Contains(b.String(), "0 ns of CPU per round trip") {
		t.Errorf("probe cost with no warm-up round trips: %q", b.String())
	}
}
