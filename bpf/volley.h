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
};

struct event {
	__u64 ts;    // bpf_ktime_get_ns(): CLOCK_MONOTONIC
	__u64 sk;    // struct sock address, 0 if none
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

#endif
