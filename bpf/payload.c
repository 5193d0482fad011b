//go:build ignore

// The watch's payload capture: the first PAYLOAD_CAP bytes of the socket
// data syscalls that a watched process makes on the watched port, so that
// user space can parse the protocol and tell how many requests one send
// (or one read) holds. A separate object from probe.c: it loads only for
// `volleyscope watch`, and a run never pays for it.
//
// One side is captured, set before load: the clients' sends (write,
// sendto, sendmsg, writev) when clients are watched, else the server's
// receives (read, recvfrom, recvmsg, readv). Both are read at the
// syscall's exit, from the buffer pointer stashed at its entry, for the
// length it returned: a receive's bytes are only there then, and a send's
// return is the length it really sent. For the msg and iov calls only the
// first iovec is read; its bytes are the start of the data.
//
// Hooks, in the Go side's order of preference: the eight syscalls' own
// classic tracepoints (syscalls:sys_enter_write …), which run a program
// only for those syscalls; else raw_syscalls sys_enter and sys_exit, as
// tp_btf, raw_tp or classic tracepoint, which run one for every syscall of
// the machine. Either way the syscall number and a bit test of the
// caller's tgid end the run of every other syscall before any helper call
// but one.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "payload.h"

char LICENSE[] SEC("license") = "GPL";

// Keeps struct payload in the object's BTF for bpf2go -type payload.
const struct payload *unused_payload __attribute__((unused));

// Settings, set by user space before load.
volatile const __u16 watch_port = 0;   // the server's listening port
volatile const __u8 capture_recv = 0;  // 1: the server's receives; 0: the clients' sends
// max_captures bounds the cost: a connection's first max_captures sends
// (or receives) are captured, the rest are not; 0: every one.
volatile const __u32 max_captures = 0;

#ifdef __TARGET_ARCH_arm64
enum { NR_READ = 63, NR_WRITE = 64, NR_READV = 65, NR_WRITEV = 66,
       NR_SENDTO = 206, NR_RECVFROM = 207, NR_SENDMSG = 211, NR_RECVMSG = 212 };
#else
enum { NR_READ = 0, NR_WRITE = 1, NR_READV = 19, NR_WRITEV = 20,
       NR_SENDTO = 44, NR_RECVFROM = 45, NR_SENDMSG = 46, NR_RECVMSG = 47 };
#endif

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_INET 2
#define AF_INET6 10

// The records, to user space. Submitted without a wake-up: the reader
// polls on a timer, so that no capture puts a reader's wake-up inside the
// watched round trip.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} payloads SEC(".maps");

// Records dropped because the ring was full, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} payload_lost SEC(".maps");

// Watched processes: one bit per tgid (an array lookup, inlined by the
// JIT, is what every other process's syscall pays). 65536 words cover
// every pid below PID_MAX_LIMIT.
#define TGID_WORDS 65536
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TGID_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} watched_tgids SEC(".maps");

// A data syscall on a watched socket between its entry and its exit, by
// thread.
struct pending {
	__u64 buf;   // user address of the data (the first iovec's)
	__u64 limit; // bytes at buf (the first iovec's length; the count for read/write)
	__u64 sk;
	__u16 lport;
	__u16 rport;
	__u32 nr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pending);
} pendings SEC(".maps");

// Captures made per connection, for max_captures. Keyed by the socket and
// its ports, so that a socket's memory reused for another connection
// starts again; LRU, so that closed connections age out.
struct conn_key {
	__u64 sk;
	__u16 lport;
	__u16 rport;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_key);
	__type(value, __u32);
} captures SEC(".maps");

static __always_inline bool tgid_watched(__u32 tgid)
{
	__u32 w = (tgid >> 6) & (TGID_WORDS - 1);
	__u64 *bits = bpf_map_lookup_elem(&watched_tgids, &w);
	return bits && (*bits & (1ULL << (tgid & 63)));
}

// sock_of is fd's socket in the current task's file table (NULL for an fd
// that is not a socket), read with CO-RE from task->files->fdt->fd[fd].
static __always_inline struct sock *sock_of(long fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (unsigned long)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

// The user-space layouts the msg and iov calls point to (UAPI: fixed).
struct u_iovec {
	__u64 base;
	__u64 len;
};

struct u_msghdr {
	__u64 name;
	__s32 namelen;
	__s32 pad;
	__u64 iov;
	__u64 iovlen;
};

// wanted says whether a syscall entry is one to look at: a data syscall
// of the captured side, by a watched process. It comes before the
// syscall's arguments are read, which every other syscall is spared.
static __always_inline bool wanted(long nr)
{
	bool send = nr == NR_WRITE || nr == NR_SENDTO || nr == NR_SENDMSG || nr == NR_WRITEV;
	bool recv = nr == NR_READ || nr == NR_RECVFROM || nr == NR_RECVMSG || nr == NR_READV;
	if (!(capture_recv ? recv : send))
		return false;
	return tgid_watched(bpf_get_current_pid_tgid() >> 32);
}

// on_enter stashes a wanted syscall's buffer if its fd (a0) is a TCP
// socket of the watched port.
static __always_inline void on_enter(long nr, __u64 a0, __u64 a1, __u64 a2)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct sock *sk = sock_of((long)a0);
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	__u16 rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (capture_recv ? lport != watch_port : rport != watch_port)
		return;
	if (max_captures) {
		struct conn_key k = { .sk = (__u64)sk, .lport = lport, .rport = rport };
		__u32 *n = bpf_map_lookup_elem(&captures, &k);
		if (n && *n >= max_captures)
			return;
	}
	struct pending p = { .sk = (__u64)sk, .lport = lport, .rport = rport, .nr = nr, .buf = a1, .limit = a2 };
	if (nr == NR_SENDMSG || nr == NR_RECVMSG) {
		struct u_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)a1) || !m.iovlen)
			return;
		a1 = m.iov;
	}
	if (nr == NR_SENDMSG || nr == NR_RECVMSG || nr == NR_WRITEV || nr == NR_READV) {
		struct u_iovec v;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)a1))
			return;
		p.buf = v.base;
		p.limit = v.len;
	}
	__u32 tid = (__u32)id;
	bpf_map_update_elem(&pendings, &tid, &p, BPF_ANY);
}

static __always_inline void on_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!tgid_watched(id >> 32))
		return;
	__u32 tid = (__u32)id;
	struct pending *p = bpf_map_lookup_elem(&pendings, &tid);
	if (!p)
		return;
	struct pending c = *p;
	bpf_map_delete_elem(&pendings, &tid);
	if (ret <= 0)
		return;
	struct payload *r = bpf_ringbuf_reserve(&payloads, sizeof(*r), 0);
	if (!r) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&payload_lost, &zero);
		if (lost)
			(*lost)++;
		return;
	}
	__u64 n = ret;
	if (n > c.limit)
		n = c.limit;
	if (n > PAYLOAD_CAP)
		n = PAYLOAD_CAP;
	r->ts = bpf_ktime_get_ns();
	r->sk = c.sk;
	r->total = ret;
	r->tid = tid;
	r->tgid = id >> 32;
	r->lport = c.lport;
	r->rport = c.rport;
	r->nr = c.nr;
	r->recv = capture_recv;
	r->pad = 0;
	r->cap = 0;
	if (n && !bpf_probe_read_user(r->data, n, (void *)c.buf))
		r->cap = n;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	if (max_captures) {
		struct conn_key k = { .sk = c.sk, .lport = c.lport, .rport = c.rport };
		__u32 *cnt = bpf_map_lookup_elem(&captures, &k);
		if (cnt) {
			(*cnt)++;
		} else {
			__u32 one = 1;
			bpf_map_update_elem(&captures, &k, &one, BPF_ANY);
		}
	}
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tpbtf_payload_enter, struct pt_regs *regs, long id)
{
	if (!wanted(id))
		return 0;
	on_enter(id, BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx));
	return 0;
}
SEC("tp_btf/sys_exit")
int BPF_PROG(tpbtf_payload_exit, struct pt_regs *regs, long ret) { on_exit(ret); return 0; }

SEC("raw_tp/sys_enter")
int rawtp_payload_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (!wanted(ctx->args[1]))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	on_enter(ctx->args[1], BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, si), BPF_CORE_READ(regs, dx));
	return 0;
}
SEC("raw_tp/sys_exit")
int rawtp_payload_exit(struct bpf_raw_tracepoint_args *ctx) { on_exit(ctx->args[1]); return 0; }

// The classic tracepoints' records: syscalls:sys_enter_NAME and
// sys_exit_NAME (the syscall's number, then its arguments or its return,
// from offset 16), and raw_syscalls:sys_enter and sys_exit, whose long id
// holds the same number in its low half on a little-endian machine.
struct sc_enter {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct sc_exit {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

// tp_payload_enter and tp_payload_exit attach either to the data
// syscalls' own tracepoints (the first choice: they fire for those
// syscalls only, not for every syscall of the machine) or to
// raw_syscalls.
SEC("tracepoint/raw_syscalls/sys_enter")
int tp_payload_enter(struct sc_enter *ctx)
{
	if (!wanted(ctx->nr))
		return 0;
	on_enter(ctx->nr, ctx->args[0], ctx->args[1], ctx->args[2]);
	return 0;
}
SEC("tracepoint/raw_syscalls/sys_exit")
int tp_payload_exit(struct sc_exit *ctx) { on_exit(ctx->ret); return 0; }
