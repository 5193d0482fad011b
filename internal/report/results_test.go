package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestResultsJSONContract: the names results.json promises to checks and
// scripts are present (more may be added, none renamed).
func TestResultsJSONContract(t *testing.T) {
	r := &Results{Meta: HostMeta(), BreakdownCheck: &BreakdownCheck{}, Breakdown: []Component{{Component: "client_user"}},
		Syscalls: []Syscall{{Name: "read"}}, Errors: []string{}}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	has := func(obj map[string]any, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("results.json lacks %q", k)
			}
		}
	}
	has(m, "meta", "latency_ns", "throughput_rps", "breakdown", "breakdown_check", "syscalls", "lost_events", "errors")
	has(m["meta"].(map[string]any), "kernel", "cpu_model", "ncpu", "server", "clients", "proto", "probe_mode", "hooks", "started_at")
	has(m["latency_ns"].(map[string]any), "count", "mean", "ci_low", "ci_high", "p50", "p90", "p99", "p999", "max")
	has(m["breakdown"].([]any)[0].(map[string]any), "component", "side", "mean_ns", "p50_ns", "p99_ns")
	has(m["breakdown_check"].(map[string]any), "joined", "unjoined", "sum_within_tolerance")
	has(m["syscalls"].([]any)[0].(map[string]any), "side", "name", "count", "p50_ns", "p99_ns", "max_ns")
}

func TestWriteTextSaysWhereTimeGoes(t *testing.T) {
	r := &Results{Meta: Meta{Server: "threads", Clients: 1, Proto: "pingpong"}, Latency: Latency{Count: 10, Mean: 100e3},
		Run:            RunInfo{StopReason: "ci"},
		Breakdown:      []Component{{Component: "server_wakeup", Side: "server", MeanNs: 60e3, Share: 0.6}, {Component: "client_net", Side: "client", MeanNs: 40e3, Share: 0.4}},
		BreakdownCheck: &BreakdownCheck{Joined: 9, Unjoined: 1, UnjoinedReasons: map[string]int{"no data ready": 1}, SumWithinTolerance: 1, Tolerance: "2%"},
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

func TestDur(t *testing.T) {
	for _, tc := range []struct {
		ns   float64
		want string
	}{{512, "512 ns"}, {1500, "1.50 µs"}, {70_100, "70.1 µs"}, {2_500_000, "2.50 ms"}, {3e9, "3.00 s"}} {
		if got := Dur(tc.ns); got != tc.want {
			t.Errorf("Dur(%v) = %q, want %q", tc.ns, got, tc.want)
		}
	}
}
