package report

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
)

// TestResultsJSONContract: the names results.json promises to checks and
// scripts are present (more may be added, none renamed).
func TestResultsJSONContract(t *testing.T) {
	r := &Results{Meta: MetaOf(hostinfo.Local()), BreakdownCheck: &BreakdownCheck{}, Breakdown: []Component{{Component: "client_user"}},
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
