// Package servers holds volleyscope's reference servers: the same
// ping-pong (and echo) behaviour over different I/O models, so that a
// difference in latency between two of them is the I/O model's.
//
// Ping-pong: a 4-byte big-endian integer n is answered with n+1 (wrapping);
// n = 0 makes the server exit. Echo: bytes are written back as they come.
// Every server spins Options.Spin of its thread's CPU time per request in
// userspace (the truth tests' injected delay: a fixed amount of work, which
// preemption lengthens in wall time but does not shorten), treats a
// closing connection as normal, and returns within a second of its
// context being cancelled.
package servers
