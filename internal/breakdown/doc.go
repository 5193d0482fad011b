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
//	b1  client send             syscalls: entry of the client's first write
//	                            at or after t0 / default: the first TCP
//	                            send start on its socket (tcp_sendmsg_locked,
//	                            or tcp_sendmsg entry)
//	b2  request ready           sock:sk_data_ready on the server's socket:
//	                            the last one before the read that completed
//	                            the request returned (below)
//	b3  server on CPU           syscalls: sched_switch in of the thread
//	                            woken for b2 (sched_waking right after b2 on
//	                            that CPU); both: the reading thread's switch
//	                            in if it was off CPU at b2; b2 if the server
//	                            was running
//	b4  server starts receive   syscalls: entry of the syscall whose receive
//	                            completed the request, if after b3 /
//	                            default: b3 (server_queue is then 0 and its
//	                            time is in server_kernel_recv: no tracepoint
//	                            marks a receive's start)
//	b5  request read            syscalls: exit of that syscall (io_uring: of
//	                            the io_uring_enter that reaped it) /
//	                            default: its sock:sock_recv_length
//	b6  server's last send      syscalls: entry of the syscall that sent the
//	                            reply's last piece (b7's) / default: the
//	                            start of that send on the server's socket
//	                            (its first TCP send start after the previous
//	                            send returned; on kernels with neither, a
//	                            send's return)
//	b7  last piece ready        sock:sk_data_ready on the client's socket:
//	                            the last one before b9
//	b8  client on CPU           sched_switch in of the client thread if it
//	                            was off CPU at b7, else b7 (b7 too when the
//	                            switch in recorded next is after b9: the
//	                            one before it was not recorded)
//	b9  reply read              syscalls: exit of the client's last read
//	                            before t1 / default: its last receive return
//	b10 t1                      client timestamp after the reply
//
// A request may take several writes and reach the server in several
// segments, and a reply may take several writes and several reads. The
// boundaries follow the critical path, the chain of events each of which
// waited for the one before, so they are the last of each kind, not the
// first:
//
//   - The read that completed the request is the last receive with data on
//     the server's socket that returned before the server began its reply
//     (its first send start or send entry after b1). b2 is the last
//     data-ready there before that read returned: the request's last bytes
//     queued. The client's time between its writes is in client_net, and
//     so is a send held back by a full server receive window; the
//     server's reads of the request's earlier pieces overlap it and are on
//     no critical path (taking the first data-ready instead would charge
//     the client's later writes to the server; README, "Requests and
//     replies in several pieces").
//   - The reply's critical piece is its last: b7 is the last data-ready on
//     the client's socket before the read that completed the reply (b9),
//     and b6 the entry of the send that queued it. Everything the server
//     does from the read that completed the request to that last send
//     (its processing, the reply's earlier pieces, further reads of a
//     request it echoes as it comes, as socat does 8 KiB at a time, and
//     the time it waits for the client's window) is server_user; the
//     client's reads of the earlier pieces overlap it and are on no
//     critical path. client_kernel_recv is only the last piece's read.
//   - A piece of the reply that the server's TCP holds back (Nagle, a full
//     window) is held between b6 and b7: server_net.
//
// For one write and one read on each side these are the single events.
// The boundaries stay in time order, so the components still sum to
// t1 − t0 exactly.
//
// The first ten components are the gaps between consecutive boundaries,
// less the time the thread carrying the request was preempted or
// interrupted in them; four more components hold that time, so they
// still partition [t0, t1]:
//
//	client_preempted  the client thread switched out by sched_switch with
//	                  prev_state 0 (runnable) until its next switch in,
//	                  within [b0, b2) and [b8, b10): out of client_user,
//	                  client_net, client_kernel_recv, client_user_recv
//	server_preempted  the same for the server within [b3, b7): the thread
//	                  of the receive until it sleeps, then the thread of
//	                  the send: out of server_queue, server_kernel_recv,
//	                  server_user, server_net
//	client_irq        hard IRQs and softirqs that ran on the client
//	server_irq        (server) thread's CPU while it was on it, in the
//	                  same spans: probe KindIrq records, which sum them
//	                  between two of the thread's own records
//
// A preemption starts where the scheduler stopped crediting the thread's
// CPU time (KindSwitch's SK before the switch out): a wake-up that
// preempts a running task ends its credited time there, and charges the
// time to the switch to the task that preempts it.
//
// Each direction's network gap, client_net [b1, b2) and server_net
// [b6, b7), splits further at two points of its data segment on the critical
// path (the last whose receive processing started in the gap): handed to a device (net:net_dev_start_xmit, or
// net_dev_queue) and receive processing started (net:netif_receive_skb),
// the transmit paired with the receive by the TCP sequence number both
// records carry. The three parts are the sender's stack (*_net_tx), the
// device (*_net_dev: on loopback and veth the hand-off to the receive
// softirq, on a NIC the wire) and the receiver's stack (*_net_rx); the
// gap itself keeps what is not split, all of it when either record is
// missing, 0 otherwise. Interrupts are carved from each part's own span,
// the sender's preemption from its stack's part only (carvePreempted).
//
// The wake-ups [b2, b3) and [b7, b8) are not carved: a woken thread's wait
// for its first switch in is the wake-up, whatever kept it waiting. A
// side's preemption while the other side carries the request is not on
// the critical path and is in no component. The four come after the ten
// gaps in Names() (and the six parts of the network gaps after them), so
// the columns of requests.csv keep their places.
//
// By default client_user includes the send syscall's entry up to TCP (a
// few hundred ns), and client_user_recv the receive's return to user
// space.
package breakdown
