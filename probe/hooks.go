package probe

import "fmt"

// family is a kind of hook.
type family string

const (
	famTPBTF      family = "tp_btf"
	famRawTP      family = "raw_tp"
	famTracepoint family = "tracepoint"
	famFentry     family = "fentry"
	famKprobe     family = "kprobe"
)

// attachment is one program and where it goes.
type attachment struct {
	prog   string // program name in probe.c
	target string // tracepoint "group/name", raw tracepoint or function name
	ret    bool   // kretprobe
}

// candidate is one way to observe an event: one or two programs (a kprobe
// and its kretprobe) of one family.
type candidate struct {
	fam  family
	att  []attachment
	name string // reported hook, e.g. "tp_btf/sock_recv_length"
}

// eventHooks lists, in order of preference, the ways to observe an event.
type eventHooks struct {
	event string
	costs string // what the breakdown loses without it
	cands []candidate
	// detail: attached only with Config.Syscalls (the hooks that fire on
	// every system call and wake-up of the machine).
	detail bool
	// fallbackFor: attached only when that event found no hook.
	fallbackFor string
}

func tpCands(event, group string) []candidate {
	return []candidate{
		{famTPBTF, []attachment{{prog: "tpbtf_" + event, target: event}}, "tp_btf/" + event},
		{famRawTP, []attachment{{prog: "rawtp_" + event, target: event}}, "raw_tp/" + event},
		{famTracepoint, []attachment{{prog: "tp_" + event, target: group + "/" + event}}, "tracepoint/" + group + "/" + event},
	}
}

// syscall events share the raw_syscalls group; their programs are named
// after the short name.
func sysCands(event string) []candidate {
	return []candidate{
		{famTPBTF, []attachment{{prog: "tpbtf_" + event, target: event}}, "tp_btf/" + event},
		{famRawTP, []attachment{{prog: "rawtp_" + event, target: event}}, "raw_tp/" + event},
		{famTracepoint, []attachment{{prog: "tp_" + event, target: "raw_syscalls/" + event}}, "tracepoint/raw_syscalls/" + event},
	}
}

var hookTable = []eventHooks{
	{event: "sys_enter", costs: "syscall boundaries: the per-syscall table, server_queue vs server_kernel_recv", cands: sysCands("sys_enter"), detail: true},
	{event: "sys_exit", costs: "syscall boundaries (as sys_enter)", cands: sysCands("sys_exit"), detail: true},
	{event: "send_start", costs: "the start of each send: client_user/client_net and server_user/server_net splits", cands: []candidate{
		{famTPBTF, []attachment{{prog: "tpbtf_tcp_sendmsg_locked", target: "tcp_sendmsg_locked"}}, "tp_btf/tcp_sendmsg_locked"},
		{famRawTP, []attachment{{prog: "rawtp_tcp_sendmsg_locked", target: "tcp_sendmsg_locked"}}, "raw_tp/tcp_sendmsg_locked"},
		{famFentry, []attachment{{prog: "fentry_tcp_sendmsg", target: "tcp_sendmsg"}}, "fentry/tcp_sendmsg"},
		{famKprobe, []attachment{{prog: "kprobe_tcp_sendmsg_start", target: "tcp_sendmsg"}}, "kprobe/tcp_sendmsg"},
	}},
	// Kernels with no send-start hook: the send's return, which the join
	// uses as the send boundary (the send's own kernel time then counts as
	// the sender's user time).
	{event: "sock_send_length", costs: "the server's send (server_user/server_net split)", fallbackFor: "send_start", cands: append(tpCands("sock_send_length", "sock"),
		candidate{famFentry, []attachment{{prog: "fexit_tcp_sendmsg", target: "tcp_sendmsg"}}, "fexit/tcp_sendmsg"},
		candidate{famKprobe, []attachment{{prog: "kprobe_tcp_sendmsg", target: "tcp_sendmsg"}, {prog: "kretprobe_tcp_sendmsg", target: "tcp_sendmsg", ret: true}}, "kprobe+kretprobe/tcp_sendmsg"})},
	{event: "sock_recv_length", costs: "every receive's return (server_wakeup/queue/kernel_recv, client_kernel_recv)", cands: append(tpCands("sock_recv_length", "sock"),
		candidate{famFentry, []attachment{{prog: "fexit_tcp_recvmsg", target: "tcp_recvmsg"}}, "fexit/tcp_recvmsg"},
		candidate{famKprobe, []attachment{{prog: "kprobe_tcp_recvmsg", target: "tcp_recvmsg"}, {prog: "kretprobe_tcp_recvmsg", target: "tcp_recvmsg", ret: true}}, "kprobe+kretprobe/tcp_recvmsg"})},
	{event: "sk_data_ready", costs: "data-ready boundaries: client_net, server_net and both wake-ups", cands: append(tpCands("sk_data_ready", "sock"),
		candidate{famFentry, []attachment{{prog: "fentry_sock_def_readable", target: "sock_def_readable"}}, "fentry/sock_def_readable"},
		candidate{famKprobe, []attachment{{prog: "kprobe_sock_def_readable", target: "sock_def_readable"}}, "kprobe/sock_def_readable"})},
	{event: "sched_waking", costs: "which server thread a request woke, when another thread reads it", cands: tpCands("sched_waking", "sched"), detail: true},
	{event: "sched_wakeup", costs: "nothing in the breakdown (reported only)", cands: tpCands("sched_wakeup", "sched")},
	{event: "sched_switch", costs: "server_wakeup and client_wakeup (folded into the next component)", cands: tpCands("sched_switch", "sched")},
	// Interrupts: fire for every interrupt of the machine, emit only the
	// sum that hit a tracked thread (probe.c). Without the entry and exit
	// of a kind, that kind's time stays in the component it interrupted.
	// Each exit is attached before its entry: an entry seen without its
	// exit (one attached in between) would leave the CPU's nesting count
	// up for good, while an exit without its entry is ignored.
	{event: "irq_handler_exit", costs: "hard IRQ time in client_irq and server_irq (it stays in the component it interrupted)", cands: tpCands("irq_handler_exit", "irq")},
	{event: "irq_handler_entry", costs: "hard IRQ time (as irq_handler_exit)", cands: tpCands("irq_handler_entry", "irq")},
	{event: "softirq_exit", costs: "softirq time in client_irq and server_irq (it stays in the component it interrupted)", cands: tpCands("softirq_exit", "irq")},
	{event: "softirq_entry", costs: "softirq time (as softirq_exit)", cands: tpCands("softirq_entry", "irq")},
	// The packet's path: where a direction's network time is split into
	// the sender's stack, the device and the receiver's stack. Without
	// either, client_net and server_net stay whole. net_dev_queue (before
	// the qdisc) stands in for net_dev_start_xmit (after it) where that
	// cannot be hooked. napi_gro_receive_entry is not a candidate for the
	// receive: loopback and veth never pass there, so it would attach and
	// split nothing.
	{event: "net_dev_xmit", costs: "the sender stack / device split of client_net and server_net (they stay whole)", cands: append(tpCands("net_dev_start_xmit", "net"), tpCands("net_dev_queue", "net")...)},
	{event: "netif_receive_skb", costs: "the device / receiver stack split of client_net and server_net (they stay whole)", cands: tpCands("netif_receive_skb", "net")},
	{event: "sched_process_fork", costs: "following a forking server's children", cands: tpCands("sched_process_fork", "sched")},
	{event: "sched_process_exit", costs: "pruning exited threads (none for the breakdown)", cands: tpCands("sched_process_exit", "sched")},
	{event: "inet_sock_set_state", costs: "socket identity events (none for the breakdown)", cands: tpCands("inet_sock_set_state", "sock")},
	{event: "io_uring_submit_req", costs: "io_uring submission times (reported only)", cands: []candidate{
		{famTracepoint, []attachment{{prog: "tp_io_uring_submit_req", target: "io_uring/io_uring_submit_req"}}, "tracepoint/io_uring/io_uring_submit_req"}}},
	{event: "io_uring_complete", costs: "io_uring completion times (reported only)", cands: []candidate{
		{famTracepoint, []attachment{{prog: "tp_io_uring_complete", target: "io_uring/io_uring_complete"}}, "tracepoint/io_uring/io_uring_complete"}}},
}

// allowed says whether a mode lets an event use a family. The tracepoint
// families are always allowed for events that have nothing else (the
// scheduler and syscall events); fentry and kprobe modes force the socket
// events onto that family.
func allowed(m Mode, ev eventHooks, f family) bool {
	switch m {
	case ModeAuto, "":
		return true
	case ModeTracepoint:
		return f == famTPBTF || f == famRawTP || f == famTracepoint
	}
	want := famFentry
	if m == ModeKprobe {
		want = famKprobe
	}
	has := false
	for _, c := range ev.cands {
		if c.fam == want {
			has = true
		}
	}
	if has {
		return f == want
	}
	return f == famTPBTF || f == famRawTP || f == famTracepoint
}

// HookState says whether an event is observed.
type HookState int

// Hook states. The zero value is HookMissing: an event is unobserved
// until a hook attaches.
const (
	HookMissing  HookState = iota // wanted, but no candidate loaded and attached (Hook.Err says why)
	HookAttached                  // attached to Hook.Hook
	HookOff                       // not attached, by choice (Hook.OffReason says why)
)

func (s HookState) String() string {
	switch s {
	case HookMissing:
		return "missing"
	case HookAttached:
		return "attached"
	case HookOff:
		return "off"
	}
	return fmt.Sprintf("hook_state_%d", int(s))
}

// Hook is what Open decided for one event.
type Hook struct {
	Event string    // e.g. "sock_recv_length"
	State HookState // attached, off by choice, or missing
	Hook  string    // HookAttached: the hook, e.g. "tp_btf/sock_recv_length"
	// OffReason, for HookOff: "--syscalls" (attached only with
	// Config.Syscalls), "<event> has a hook" (a fallback not needed), or ""
	// (left out by Config.Skip, or sched_wakeup without Config.Wakeup).
	OffReason string
	Err       error  // HookMissing: why each candidate failed
	Costs     string // what the breakdown loses without the event
}

// String is the hook as results.json and the terminal show it: the hook
// attached ("tp_btf/sched_switch"), "off", "off (--syscalls)", or "none"
// when no hook worked.
func (h Hook) String() string {
	switch h.State {
	case HookAttached:
		return h.Hook
	case HookOff:
		if h.OffReason == "" {
			return "off"
		}
		return "off (" + h.OffReason + ")"
	}
	return "none"
}
