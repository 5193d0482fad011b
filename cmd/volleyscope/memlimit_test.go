package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestFollowLiveHeap: the soft memory limit rises above a live heap
// larger than memoryLimit (a fixed limit below it would have the
// collector run back to back), and falls back once the heap is let go.
func TestFollowLiveHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { followLiveHeap(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const held = 160 << 20
	live := make([]byte, held)
	for i := range live {
		live[i] = byte(i)
	}
	runtime.GC() // the live heap is measured by a collection
	limit := waitLimit(t, func(l int64) bool { return l >= held*3/2 })
	t.Logf("with %d MiB held: limit %d MiB", held>>20, limit>>20)
	runtime.KeepAlive(live)
	live = nil
	runtime.GC()
	limit = waitLimit(t, func(l int64) bool { return l == memoryLimit })
	t.Logf("let go: limit %d MiB", limit>>20)
}

// waitLimit waits up to 5 s for the memory limit to satisfy ok.
func waitLimit(t *testing.T, ok func(int64) bool) int64 {
	t.Helper()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		l := debug.SetMemoryLimit(-1)
		if ok(l) {
			return l
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("memory limit %d MiB after 5 s", l>>20)
		}
		runtime.GC()
	}
}
