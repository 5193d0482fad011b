// Package probe loads the volleyscope eBPF programs, attaches each event to
// the best hook the running kernel allows, and reads the events.
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
// events only for sockets on tracked ports. Records go through one ring
// buffer, submitted without waking the reader except every Nth record; the
// reader polls on a short timer for the tail.
package probe
