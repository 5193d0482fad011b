// Package breakdown joins the client's own round-trip records with the
// kernel events the probe saw and splits every round trip into components
// that partition [t0, t1] (DESIGN §6). It is pure code: it reads a loadgen
// result and an event slice and can be tested on recorded streams.
//
// The join follows the round trip's critical path by socket, not by thread:
// on loopback the receiver's network stack runs inside the sender's send
// system call (softirq on the sender's CPU), and a Go server may be woken on
// one thread and read on another. Every boundary is a kernel event or a
// client timestamp:
//
//	b0  t0                      client timestamp before the send
//	b1  client send entry       raw_syscalls:sys_enter of the client's write
//	b2  server data ready       sock:sk_data_ready on the server's socket
//	b3  server on CPU           sched_switch in of the thread woken for b2
//	                            (sched_waking right after b2 on that CPU), or
//	                            of the reading thread if it was preempted; b2
//	                            if the server was running
//	b4  server starts receive   entry of the syscall whose sock_recv_length
//	                            returned the request (if it started after b3)
//	b5  server receive returns  exit of that syscall (io_uring: of the
//	                            io_uring_enter that reaped the completion)
//	b6  server send entry       entry of the syscall whose sock_send_length
//	                            sent the reply
//	b7  client data ready       sock:sk_data_ready on the client's socket
//	b8  client on CPU           sched_switch in of the client thread if it
//	                            was off CPU at b7, else b7
//	b9  client receive returns  exit of the client's last read before t1
//	b10 t1                      client timestamp after the reply
//
// and the components are the ten gaps between consecutive boundaries.
package breakdown
