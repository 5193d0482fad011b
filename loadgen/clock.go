package loadgen

import (
	_ "unsafe" // for go:linkname
)

// nanotime is the Go runtime's CLOCK_MONOTONIC reading in nanoseconds, read
// through the vDSO without a system call. It is the same clock as the
// kernel's ktime_get_ns and so as bpf_ktime_get_ns(), which lets client
// timestamps be joined with kernel events without any offset.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Now returns the current CLOCK_MONOTONIC time in nanoseconds.
func Now() int64 { return nanotime() }
