// Package breakdown joins the client's own round-trip records with the
// kernel events the probe saw and splits every round trip into components
// that partition [t0, t1] exactly. It is pure code: it reads a loadgen
// result and an event slice and can be tested on recorded streams.
//
// The join follows the round trip's critical path by socket, not by thread:
// on loopback the receiver's network stack runs inside the sender's send
// system call (softirq on the sender's CPU), and a Go server may be woken on
// one thread and read on another. Every boundary is a kernel event or a
// client timestamp. The probe runs at two levels: by default it sees send
// starts, data ready, receive returns and context switches; with --syscalls
// it adds every system call's entry and exit and sched_waking. Where the
// two differ, the boundary is given as "syscalls: … / default: …":
//
//	b0  t0                      client timestamp before the send
//	b1  client send             syscalls: entry of the client's write /
//	                            default: the TCP send start on its socket
//	                            (tcp_sendmsg_locked, or tcp_sendmsg entry)
//	b2  server data ready       sock:sk_data_ready on the server's socket
//	b3  server on CPU           syscalls: sched_switch in of the thread
//	                            woken for b2 (sched_waking right after b2 on
//	                            that CPU); both: the reading thread's switch
//	                            in if it was off CPU at b2; b2 if the server
//	                            was running
//	b4  server starts receive   syscalls: entry of the syscall whose receive
//	                            returned the request, if after b3 / default:
//	                            b3 (server_queue is then 0 and its time is
//	                            in server_kernel_recv: no tracepoint marks a
//	                            receive's start)
//	b5  server receive returns  syscalls: exit of that syscall (io_uring: of
//	                            the io_uring_enter that reaped it) /
//	                            default: sock:sock_recv_length
//	b6  server send             syscalls: entry of the syscall that sent the
//	                            reply / default: the TCP send start on the
//	                            server's socket (on kernels with neither, the
//	                            send's return)
//	b7  client data ready       sock:sk_data_ready on the client's socket
//	b8  client on CPU           sched_switch in of the client thread if it
//	                            was off CPU at b7, else b7
//	b9  client receive returns  syscalls: exit of the client's last read
//	                            before t1 / default: its last receive return
//	b10 t1                      client timestamp after the reply
//
// The first ten components are the gaps between consecutive boundaries,
// less the time the thread carrying the request was preempted in them;
// two more components hold that time, so the twelve still partition
// [t0, t1]:
//
//	client_preempted  the client thread switched out by sched_switch with
//	                  prev_state 0 (runnable) until its next switch in,
//	                  within [b0, b2) and [b8, b10): out of client_user,
//	                  client_net, client_kernel_recv, client_user_recv
//	server_preempted  the same for the server within [b3, b7): the thread
//	                  of the receive until it sleeps, then the thread of
//	                  the send: out of server_queue, server_kernel_recv,
//	                  server_user, server_net
//
// The wake-ups [b2, b3) and [b7, b8) are not carved: a woken thread's wait
// for its first switch in is the wake-up, whatever kept it waiting. A
// side's preemption while the other side carries the request is not on
// the critical path and is in no component. The two come last in Names()
// so the ten gaps keep their requests.csv columns.
//
// By default client_user includes the send syscall's entry up to TCP (a
// few hundred ns), and client_user_recv the receive's return to user
// space.
package breakdown
