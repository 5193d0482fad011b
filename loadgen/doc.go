// Package loadgen drives a server with a Volley-style load and records the
// latency of every round trip as the client itself observed it.
//
// What it promises:
//
//   - One Record per round trip, with its CLOCK_MONOTONIC send and
//     receive times in nanoseconds (the clock bpf_ktime_get_ns reads, so
//     kernel events and round trips share one time line), taken right
//     before the send and right after the reply's last byte, into
//     preallocated buffers: nothing is allocated per round trip.
//   - Every reply is checked against what the protocol expects; a wrong,
//     short or late one stops the run with a *ReplyError that names the
//     connection and the request.
//   - Run returns a Summary even when it ends early or with an error,
//     holding what was measured before; Summarize computes the same from
//     recorded round trips.
//   - One measured window per run (Window), decided once by the run loop:
//     a round trip is measured exactly when Start ≤ T0 < End, and every
//     consumer of the round trips uses that window.
//   - The stopping rule: warm-up, an optional MSER-5 cut, then measure
//     until the intervals of the p50 and p99 reach their targets, the
//     duration cap, or the point where the targets are out of reach.
//   - Options' zero values are the defaults; CheckProto refuses protocol
//     settings that cannot make a run before anything connects.
//
// The protocols are one table (Protocols): each row says what a round
// trip sends, the port its servers use by convention, the built-in server
// that speaks it, what Size sets, and, for protocols whose replies are
// framed by their own content (HTTP, RESP, memcache), the framer that
// reads a reply until its framing says it is complete. Ping-pong, echo and
// line are fixed-length exchanges. One request is in flight per
// connection: no pipelining.
//
// The default client is one locked OS thread per connection doing blocking
// write and read on a raw socket fd, so nothing of Go's netpoller or
// scheduler stands between the client and the kernel: the client side of a
// kernel breakdown is the kernel's. With many connections, one epoll
// thread per client CPU carries them (ClientEpoll).
package loadgen
