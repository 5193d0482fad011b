// Package loadgen drives a server with a Volley-style load and records the
// latency of every round trip as the client itself observed it.
//
// Ping-pong, the protocol of the built-in servers: the client sends a
// 4-byte big-endian integer and expects that integer plus one back
// (wrapping at 2^32); the integer 0 asks the server to exit. Echo: the
// client sends Size bytes and expects the same bytes back. For real
// servers: HTTP/1.1 keep-alive GETs, RESP (Redis) PING or a GET/SET mix,
// memcached's text get/set, and a fixed request with a fixed reply (line).
// Every reply is checked; a reply framed by its own content (HTTP, RESP,
// memcache) is read until its framing says it is complete, however many
// reads that takes, into a buffer that grows to the largest reply and is
// reused. One request is in flight per connection: no pipelining.
//
// The default client is one locked OS thread per connection doing blocking
// write and read on a raw socket fd, so nothing of Go's netpoller or
// scheduler stands between the client and the kernel: the client side of a
// kernel breakdown is the kernel's. Timestamps are CLOCK_MONOTONIC
// nanoseconds (the clock bpf_ktime_get_ns reads), taken right before the
// send and right after the last byte of the reply, into preallocated
// per-client buffers.
//
// The package also owns the server's lifecycle (start pinned, wait until it
// accepts, stop with the 0 message, SIGTERM, SIGKILL) and the stopping rule:
// warm-up discarded, then run until the batch-means confidence interval of
// the mean is narrower than the target, capped by a maximum duration.
package loadgen
