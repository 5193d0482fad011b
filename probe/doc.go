// Package probe loads the volleyscope eBPF programs, attaches each event to
// the best hook the running kernel allows, and reads the events.
//
// What it promises: events (Event, of a Kind that matches bpf/volley.h's
// enum event_kind) from the tracked threads, processes and ports only,
// each stamped with CLOCK_MONOTONIC (bpf_ktime_get_ns); every record
// dropped for a full ring counted (Lost, LostPerCPU), never silently
// missing; the hook chosen for each event, or why none works, reported
// (Hooks: each Hook's State and Err); and, after Close, nothing left
// attached or loaded.
//
// Hooks are chosen per event by what loads and attaches, never by version
// number: tp_btf (typed, cheapest) → raw tracepoint → classic tracepoint,
// and for the socket events on kernels without the sock:* tracepoints (they
// arrived in 6.3 and 6.6), fentry/fexit → kprobe/kretprobe on the kernel
// function. The choice is reported per event; an event with no working hook
// is named with what it costs the breakdown.
//
// Filtering happens in the kernel: only tracked threads (the client's, by
// thread id, so the probe's own reader is never traced) and tracked
// processes (the server, followed across fork) produce events, and socket
// events only for sockets on tracked ports.
//
// Records go into per-CPU rings, one per CPU in a memory-mapped array: a
// program reserves a slot with an atomic add on its CPU's head and commits
// the record by writing its sequence number last; nothing wakes the
// reader, which polls, waiting less while the rings fill fast. Kernels
// that refuse the atomics (before 5.12) get the BPF ring buffer instead,
// which wakes the reader only every Config.WakeupRecords records. Records
// dropped because a ring was full are counted per CPU (LostPerCPU).
//
// The package's files follow its jobs: config.go (Config and its
// defaults), env.go (what the machine must allow), hooks.go (the events
// and their candidate hooks), load.go (Open: load and attach), track.go
// (whom to follow), read.go and rings.go (reading the records), event.go
// (their layout, from the type bpf2go generates), stats.go (drops, cost,
// Close), neighbours.go (other programs on the same hooks) and payload.go
// (PayloadCapture: the first bytes of socket data syscalls, a separate
// object that only a watch loads, for its protocol parsers).
package probe
