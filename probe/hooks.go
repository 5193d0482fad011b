package probe

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
	{"sys_enter", "syscall boundaries: client_user, server_queue, server_kernel_recv, server_user, client_kernel_recv", sysCands("sys_enter")},
	{"sys_exit", "syscall boundaries (as sys_enter)", sysCands("sys_exit")},
	{"sock_send_length", "the server's send (server_user/server_net split)", append(tpCands("sock_send_length", "sock"),
		candidate{famFentry, []attachment{{prog: "fexit_tcp_sendmsg", target: "tcp_sendmsg"}}, "fexit/tcp_sendmsg"},
		candidate{famKprobe, []attachment{{prog: "kprobe_tcp_sendmsg", target: "tcp_sendmsg"}, {prog: "kretprobe_tcp_sendmsg", target: "tcp_sendmsg", ret: true}}, "kprobe+kretprobe/tcp_sendmsg"})},
	{"sock_recv_length", "the server's receive (server_wakeup/queue/kernel_recv)", append(tpCands("sock_recv_length", "sock"),
		candidate{famFentry, []attachment{{prog: "fexit_tcp_recvmsg", target: "tcp_recvmsg"}}, "fexit/tcp_recvmsg"},
		candidate{famKprobe, []attachment{{prog: "kprobe_tcp_recvmsg", target: "tcp_recvmsg"}, {prog: "kretprobe_tcp_recvmsg", target: "tcp_recvmsg", ret: true}}, "kprobe+kretprobe/tcp_recvmsg"})},
	{"sk_data_ready", "data-ready boundaries: client_net, server_net and both wake-ups", append(tpCands("sk_data_ready", "sock"),
		candidate{famFentry, []attachment{{prog: "fentry_sock_def_readable", target: "sock_def_readable"}}, "fentry/sock_def_readable"},
		candidate{famKprobe, []attachment{{prog: "kprobe_sock_def_readable", target: "sock_def_readable"}}, "kprobe/sock_def_readable"})},
	{"sched_waking", "which server thread a request woke (server_wakeup vs server_queue)", tpCands("sched_waking", "sched")},
	{"sched_wakeup", "nothing in the breakdown (reported only)", tpCands("sched_wakeup", "sched")},
	{"sched_switch", "server_wakeup and client_wakeup (folded into the next component)", tpCands("sched_switch", "sched")},
	{"sched_process_fork", "following a forking server's children", tpCands("sched_process_fork", "sched")},
	{"sched_process_exit", "pruning exited threads (none for the breakdown)", tpCands("sched_process_exit", "sched")},
	{"inet_sock_set_state", "socket identity events (none for the breakdown)", tpCands("inet_sock_set_state", "sock")},
	{"io_uring_submit_req", "io_uring submission times (reported only)", []candidate{
		{famTracepoint, []attachment{{prog: "tp_io_uring_submit_req", target: "io_uring/io_uring_submit_req"}}, "tracepoint/io_uring/io_uring_submit_req"}}},
	{"io_uring_complete", "io_uring completion times (reported only)", []candidate{
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
