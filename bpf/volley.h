// Shared layouts of the volleyscope probe. bpf2go generates struct event
// as bpf.ProbeEvent (-type event); probe.Event decodes it at the offsets
// of that type, and probe's TestEventLayout fails when a field here has
// no counterpart there. Keep the fields naturally aligned with explicit
// padding, so the layout is the same on every architecture.
#ifndef VOLLEY_H
#define VOLLEY_H

enum event_kind {
	KIND_SYSCALL = 1,        // completed syscall: ts = exit, arg0 = entry ts, arg1 = nr
	KIND_SOCK_SEND = 2,      // sock_send_length: sk, ret
	KIND_SOCK_RECV = 3,      // sock_recv_length: sk, ret
	KIND_DATA_READY = 4,     // sk_data_ready on the receiving socket
	KIND_WAKING = 5,         // sched_waking: arg0 = woken tid, arg1 = woken tgid
	KIND_WAKEUP = 6,         // sched_wakeup: same
	KIND_SWITCH = 7,         // sched_switch: arg0 = prev tid, arg1 = next tid, ret = prev_state
	KIND_FORK = 8,           // sched_process_fork: arg0 = parent tid, arg1 = child pid
	KIND_EXIT = 9,           // sched_process_exit
	KIND_SOCK_STATE = 10,    // inet_sock_set_state: arg0 = old, arg1 = new state
	KIND_URING_SUBMIT = 11,  // io_uring_submit_req: arg0 = user_data, arg1 = opcode
	KIND_URING_COMPLETE = 12,// io_uring_complete: arg0 = user_data, ret = res
	KIND_SEND_START = 13,    // TCP send starts (tcp_sendmsg_locked or tcp_sendmsg entry): sk
	KIND_IRQ = 14,           // interrupts of a tracked thread since its last record: ts = the last one's end,
	                         // arg0 = the first one's start, sk = their total ns, arg1 = the longest (IRQ_*), ret = how many
	KIND_NET_XMIT = 15,      // a followed socket's data segment handed to a device (net_dev_start_xmit): sk, ports
	                         // (the sender's), arg0 = TCP seq, arg1 = ifindex, ret = payload bytes
	KIND_NET_RECV = 16,      // receive processing of a data segment of a followed port starts (netif_receive_skb):
	                         // ports as the receiving socket sees them, arg0 = TCP seq, arg1 = ifindex, ret = payload bytes
	// Two records folded into one in the kernel (probe.c, "Folded records"); user space reads
	// them back as the two (probe.expand), so that nothing past the reader sees these kinds.
	KIND_NET_RECV_READY = 17,// KIND_NET_RECV and the KIND_DATA_READY it led to: the data-ready's fields, and
	                         // arg0 = the receive's ts, arg1 = its TCP seq | ifindex << 32, ret = its payload bytes
	KIND_SEND_XMIT = 18,     // KIND_SEND_START and the KIND_NET_XMIT that followed it: the transmit's fields,
	                         // but arg0 = the send start's ts, arg1 = TCP seq | ifindex << 32
};

// KIND_IRQ's arg1: which interrupt, IRQ_SOFT | vector number (NET_RX_SOFTIRQ …)
// or IRQ_HARD | irq number.
#define IRQ_HARD (1ULL << 32)
#define IRQ_SOFT (2ULL << 32)

struct event {
	__u64 ts;    // bpf_ktime_get_ns(): CLOCK_MONOTONIC
	__u64 sk;    // struct sock address, 0 if none; KIND_IRQ: interrupt ns; KIND_SWITCH: prev's
	             // uncredited ns (see on_switch)
	__u64 arg0;
	__u64 arg1;
	__u32 tid;   // current task
	__u32 tgid;
	__s32 ret;
	__u16 cpu;
	__u16 kind;
	__u16 lport; // socket's local port, host order
	__u16 rport; // socket's remote port, host order
	__u32 seq;   // per-CPU rings: commit marker (low 32 bits of the slot's sequence + 1)
};

// CPU holders: the tasks that ran on a CPU while a tracked thread waited
// for it (woken, or preempted, until it next switched in). bpf2go
// generates bpf.ProbeHold and bpf.ProbeHoldKey (-type hold -type
// hold_key).
#define HOLDERS 4

struct holder {
	__u32 tid;
	__u32 tgid;      // 0 when the hook cannot tell (classic tracepoint)
	__u64 ns;        // how long it held the CPU during the wait
	char comm[16];
};

struct hold {
	__u64 since;     // the wait's start: the sched_wakeup or the preempting sched_switch
	__u64 other_ns;  // time held by tasks beyond the HOLDERS named
	__u32 cpu;
	__u32 n;         // holders named in h
	struct holder h[HOLDERS];
};

// A wait is keyed by its thread and the sched_switch that ended it: the
// same ts as that switch's event.
struct hold_key {
	__u32 tid;
	__u32 pad;
	__u64 in_ts;
};

#endif
