package main

import (
	"strings"
	"testing"
)

// TestSummarize: verdicts come from leaf tests, so a parent whose subtests
// all skipped is no pass, and a skip carries the leaf's last message.
func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		out                     string
		passed, failed, skipped int
		skipReason              string
		failedNames             []string
	}{
		{"all subtests skip under a passing parent", `=== RUN   TestKernelHooksAndEvents
=== RUN   TestKernelHooksAndEvents/default/cross_cpu
    kernel_test.go:169: send_start           none
    kernel_test.go:186: kernel lacks tracepoints for [send_start] in mode tracepoint
=== RUN   TestKernelHooksAndEvents/default/same_cpu
    kernel_test.go:186: kernel lacks tracepoints for [send_start] in mode tracepoint (same)
--- PASS: TestKernelHooksAndEvents (0.10s)
    --- SKIP: TestKernelHooksAndEvents/default/cross_cpu (0.05s)
    --- SKIP: TestKernelHooksAndEvents/default/same_cpu (0.05s)
PASS
`, 0, 0, 2, "kernel lacks tracepoints for [send_start] in mode tracepoint", nil},
		{"leaves pass", `=== RUN   TestKernelHooksAndEvents
=== RUN   TestKernelHooksAndEvents/syscalls/cross_cpu
    kernel_test.go:218: 35234 events
=== RUN   TestKernelHooksAndEvents/syscalls/same_cpu
--- PASS: TestKernelHooksAndEvents (9.00s)
    --- PASS: TestKernelHooksAndEvents/syscalls/cross_cpu (5.00s)
    --- PASS: TestKernelHooksAndEvents/syscalls/same_cpu (4.00s)
PASS
`, 2, 0, 0, "", nil},
		{"one leaf fails", `=== RUN   TestA
=== RUN   TestA/x
    a_test.go:3: switch per round trip = 6.148, want [0, 6]
=== RUN   TestA/y
--- FAIL: TestA (2.00s)
    --- FAIL: TestA/x (1.00s)
    --- PASS: TestA/y (1.00s)
FAIL
`, 1, 1, 0, "", []string{"TestA/x"}},
		{"nothing matched", "testing: warning: no tests to run\nPASS\n", 0, 0, 0, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := summarize([]byte(tc.out))
			if s.passed != tc.passed || s.failed != tc.failed || s.skipped != tc.skipped {
				t.Errorf("passed/failed/skipped = %d/%d/%d, want %d/%d/%d", s.passed, s.failed, s.skipped, tc.passed, tc.failed, tc.skipped)
			}
			if s.skipReason != tc.skipReason {
				t.Errorf("skip reason %q, want %q", s.skipReason, tc.skipReason)
			}
			if strings.Join(s.failedNames, ",") != strings.Join(tc.failedNames, ",") {
				t.Errorf("failed %v, want %v", s.failedNames, tc.failedNames)
			}
		})
	}
}
