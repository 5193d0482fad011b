// Package uring is a minimal io_uring binding on raw syscalls
// (io_uring_setup = 425, io_uring_enter = 426, io_uring_register = 427 on
// every architecture since Linux 5.1), just enough for the reference servers:
// one ring driven by one thread, accept/recv/send/poll submissions, opcode
// probing and a provided-buffer ring for multishot receive.
//
// It exists instead of a dependency because the servers need little and the
// module keeps its dependency list short. It is not safe for concurrent use:
// the kernel's single-producer/single-consumer protocol on the rings assumes
// one submitter and one reaper, and the servers drive a ring from one locked
// OS thread.
//
// Ring memory protocol (see io_uring(7)): the application writes SQEs, then
// publishes them by storing the SQ tail with release semantics; the kernel
// consumes them and advances the SQ head. The kernel writes CQEs and stores
// the CQ tail with release semantics; the application reads the tail with
// acquire semantics, reads the CQEs and stores the CQ head. sync/atomic loads
// and stores are sequentially consistent, so they provide both orders.
package uring
