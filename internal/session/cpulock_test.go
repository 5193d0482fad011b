package session

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/cpulock"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestRunRefusesBusyCPUs: a run whose CPUs another run holds is refused
// before it starts anything, naming the holder; with WaitCPUs it waits
// and runs once they are let go.
func TestRunRefusesBusyCPUs(t *testing.T) {
	client, server := DefaultCPUs()
	if client == nil {
		t.Skip("needs two CPUs")
	}
	ctx := context.Background()
	held, err := cpulock.Acquire(ctx, server, false, "volleyscope run --test-holder")
	if errors.Is(err, cpulock.ErrBusy) {
		t.Skipf("another run measures on CPU %v: %v", server, err)
	}
	if err != nil {
		t.Skipf("cannot take CPU locks here: %v", err)
	}
	defer held.Release()
	cfg := Config{Self: selfBin, ServerCPUs: server, LockCPUs: true, Command: "volleyscope bench --second",
		Load: loadgen.Options{ClientCPUs: client, Duration: 300 * time.Millisecond, Warmup: -1, CI: -1, P99CI: -1}}
	_, err = Run(ctx, cfg, Callbacks{})
	if errors.Is(err, cpulock.ErrBusy) && !strings.Contains(err.Error(), "volleyscope run --test-holder") {
		t.Skipf("another run took the client CPUs meanwhile: %v", err)
	}
	if !errors.Is(err, cpulock.ErrBusy) || !strings.Contains(err.Error(), "volleyscope run --test-holder") {
		t.Fatalf("run on held CPUs: %v, want ErrBusy naming the holder", err)
	}
	cfg.WaitCPUs = true
	var notes []string
	cb := Callbacks{Note: func(s string) { notes = append(notes, s) }}
	go func() {
		time.Sleep(300 * time.Millisecond)
		held.Release()
	}()
	r, err := Run(ctx, cfg, cb)
	if err != nil || r.Latency.Count == 0 {
		t.Fatalf("waiting run: %v", err)
	}
	if len(notes) == 0 || !strings.Contains(notes[0], "waiting for CPU") {
		t.Errorf("notes %q, want the first to say what it waits for", notes)
	}
}
