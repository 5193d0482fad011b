//go:build ignore

// The volleyscope probe: socket, syscall, scheduler and io_uring events of
// the tracked client threads and server process, into per-CPU record rings
// (or, on kernels that refuse the rings' atomics, the BPF ring buffer).
//
// Every event has several programs below, one per hook kind (tp_btf, raw
// tracepoint, classic tracepoint, and for the socket events fentry/fexit and
// kprobe on the kernel function). The Go side loads and attaches the first
// that works on the running kernel and reports the choice.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "volley.h"

char LICENSE[] SEC("license") = "GPL";

// Keeps struct event in the object's BTF for bpf2go -type event.
const struct event *unused_event __attribute__((unused));

// BPF ring buffer only (ring_slots == 0): records are submitted with
// BPF_RB_NO_WAKEUP and the reader polls on a short timer; only after
// wakeup_records records from one CPU is the reader woken at once, so a
// burst cannot overflow the buffer. A wake-up per event would put the
// reader's wake-up inside every round trip measured, and batched wake-ups
// still put some there; a timer alone puts none on the round trip's path.
volatile const __u64 wakeup_records = 65536;

// The BPF ring buffer (ring_slots == 0); user space sizes it before load
// (16 MiB, more for a high expected rate) and shrinks it to one page when
// the per-CPU rings are used.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

// BPF ring buffer only, per CPU: records dropped because the buffer was
// full, and records since the last forced wake-up of the reader.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[2]);
} lost SEC(".maps");

// Threads followed: one bit per thread id, in an array, because array
// lookups are inlined by the JIT (no helper call): the check that every
// untracked event pays is a load and a test. 65536 words cover every tid
// below PID_MAX_LIMIT (4,194,304 on 64-bit).
#define TID_WORDS 65536
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TID_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} tracked_bits SEC(".maps");

// Processes followed (the server), grown on fork.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} tracked_tgids SEC(".maps");

// Ports whose TCP sockets are followed (the server's listening port, set
// before load; 0 = unused): a socket is followed when its local or remote
// port is one of them. Constants, not a map: two compares per socket event.
volatile const __u16 port0 = 0;
volatile const __u16 port1 = 0;

// syscalls: raw_syscalls enter/exit are attached (--syscalls), so socket
// events inside a syscall fold into its record. Without them the inflight
// map is never filled and the socket hooks skip its lookup: every helper
// call and every hook that fires adds to the round trip measured, and the
// syscall tracepoints fire on every system call of the machine.
volatile const bool syscalls = false;

// hooks_only: every program returns at its first test, so a benchmark can
// measure what the kernel charges for running the hooks at all.
volatile const bool hooks_only = false;

// trace_epoch: time-sampled tracing (watch --trace-share). User space
// increments it at each switch, at run time (a global, not a constant):
// odd means off, and every program that emits records or keeps per-CPU or
// per-thread state returns at its first test, so that tracing off costs
// the hooks' floor and one load. State written before a switch (a CPU's
// interrupt sum and held records, its waiter, a thread's syscall entry)
// carries the epoch it was written in and is dropped at its first use in
// another (cpu_irq_of, cpu_wait_of, on_sys_exit): no record is built from
// halves either side of an off stretch. Only a watch switches it; every
// other mode keeps 0, where the epoch tests never differ.
volatile __u32 trace_epoch = 0;

static __always_inline bool tracing_off(void)
{
	return trace_epoch & 1;
}

// A syscall in progress on a tracked thread: entry and exit are merged into
// one record at exit; the socket it touched is noted by the sock events.
struct inflight {
	__u64 enter_ts;
	__u64 nr;
	__u64 sk;
	__u16 lport, rport;
	__u32 epoch; // trace_epoch at the entry
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct inflight);
} inflight SEC(".maps");

// tid_bit says whether tid is followed, tracing on or off: the fork and
// exit hooks keep the set of threads right through an off stretch.
static __always_inline bool tid_bit(__u32 tid)
{
	if (hooks_only)
		return false;
	__u32 w = tid / 64;
	__u64 *v = bpf_map_lookup_elem(&tracked_bits, &w);
	return v && (*v & (1ULL << (tid % 64)));
}

static __always_inline bool tid_tracked(__u32 tid)
{
	return !tracing_off() && tid_bit(tid);
}

static __always_inline void set_tracked(__u32 tid, bool on)
{
	__u32 w = tid / 64;
	__u64 *v = bpf_map_lookup_elem(&tracked_bits, &w);
	if (!v)
		return;
	if (on)
		__sync_fetch_and_or(v, 1ULL << (tid % 64));
	else
		__sync_fetch_and_and(v, ~(1ULL << (tid % 64)));
}

// current_tracked: the whole cost for an untracked task. The server's
// threads are marked by user space (from /proc/PID/task) and by on_fork as
// they are created.
static __always_inline bool current_tracked(__u32 *tidp, __u32 *tgidp)
{
	if (hooks_only)
		return false;
	__u64 id = bpf_get_current_pid_tgid();
	*tidp = (__u32)id;
	*tgidp = id >> 32;
	return tid_tracked(*tidp);
}

// Per-CPU record rings (the default): one mmapable array holds every
// CPU's ring, CPU c owning slots [c*ring_slots, (c+1)*ring_slots). A
// program reserves a slot with an atomic add on its CPU's head (programs
// on one CPU may nest: softirq and hardirq hooks interrupt others), writes
// the record, and commits it by writing seq last. The reader maps both
// arrays, takes committed records from tail to head on a timer and
// advances tail. No lock, no helper call, no wake-up: plain stores cost
// less per record than bpf_ringbuf_output's helper call, and a round trip
// writes several records (README, "What the probe costs").
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); // ncpu * ring_slots, set before load
	__type(key, __u32);
	__type(value, struct event);
} ring_slots_map SEC(".maps");

struct cursor {
	__u64 head;    // next slot to reserve (written by the programs)
	__u64 lost;    // records dropped because the ring was full
	__u64 pad0[6];
	__u64 tail;    // next slot to read (written by the reader)
	__u64 pad1[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); // ncpu, set before load
	__type(key, __u32);
	__type(value, struct cursor);
} ring_cursors SEC(".maps");

// ring_slots: slots per CPU, a power of two; 0 selects the BPF ring
// buffer below instead (for comparison, and for kernels that refuse the
// atomic fetch-add, before 5.12).
volatile const __u32 ring_slots = 0;

// Slots kept free for programs that nest between the fullness check and
// the reservation (process, softirq, hardirq, NMI).
#define RING_SLACK 8

// submit puts one record in this CPU's ring (ring_slots != 0) or the BPF
// ring buffer, or counts it as lost when there is no room.
static __always_inline void submit(struct event *e)
{
	if (ring_slots) {
		// The record's CPU is this one (a program is not migrated
		// while it runs): no helper call.
		__u32 cpu = e->cpu;
		struct cursor *c = bpf_map_lookup_elem(&ring_cursors, &cpu);
		if (!c)
			return;
		if (c->head - c->tail >= ring_slots - RING_SLACK) {
			__sync_fetch_and_add(&c->lost, 1);
			return;
		}
		__u64 idx = __sync_fetch_and_add(&c->head, 1);
		__u32 k = cpu * ring_slots + ((__u32)idx & (ring_slots - 1));
		struct event *r = bpf_map_lookup_elem(&ring_slots_map, &k);
		if (!r)
			return; // cannot happen: k < ncpu * ring_slots
		e->seq = 0;
		__builtin_memcpy(r, e, sizeof(*e));
		// The commit: after the record's stores (x86 keeps stores in
		// order; the barrier keeps the compiler from moving them).
		asm volatile("" ::: "memory");
		*(volatile __u32 *)&r->seq = (__u32)idx + 1;
		return;
	}
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (!n)
		return;
	// One helper call (copy and commit) rather than reserve + submit, and
	// no ring query. The reader is woken only after wakeup_records
	// records from one CPU since its last forced wake-up; otherwise its
	// timer finds them.
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (++n[1] >= wakeup_records) {
		n[1] = 0;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_output(&events, e, sizeof(*e), flags))
		n[0] += 1;
}

// fill_at starts a record whose time, CPU and task the caller already
// has: no helper call.
static __always_inline void fill_at(struct event *e, __u16 kind, __u32 tid, __u32 tgid, __u64 ts, __u32 cpu)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = ts;
	e->kind = kind;
	e->tid = tid;
	e->tgid = tgid;
	e->cpu = cpu;
}

static __always_inline void fill(struct event *e, __u16 kind, __u32 tid, __u32 tgid)
{
	fill_at(e, kind, tid, tgid, bpf_ktime_get_ns(), bpf_get_smp_processor_id());
}

static __always_inline bool port_followed(__u16 p)
{
	if (hooks_only)
		return false;
	return p && (p == port0 || p == port1);
}

// A sample of the connections (sample_mask != 0): only those whose client
// port, hashed by multiplying with sample_mult, has no bit of sample_mask
// in bits 16 and up. At high rates the socket events of every connection
// would cost the observer more CPU than the clients can spare; the
// latency of every round trip is still measured by the load. User space
// sets both before load and holds the same hash (probe.Sampled).
volatile const __u32 sample_mask = 0;
volatile const __u32 sample_mult = 0;

static __always_inline bool conn_followed(__u16 lport, __u16 rport)
{
	bool l = port_followed(lport);
	if (!l && !port_followed(rport))
		return false;
	if (!sample_mask)
		return true;
	__u32 client = l ? rport : lport;
	return (((client * sample_mult) >> 16) & sample_mask) == 0;
}

// sock_ports reads a socket's ports (through bpf_probe_read: for hooks
// whose socket pointer is untyped) and says whether it is followed.
static __always_inline bool sock_ports(struct sock *sk, __u16 *lport, __u16 *rport)
{
	if (!sk)
		return false;
	*lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	*rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return conn_followed(*lport, *rport);
}

// sock_ports_btf is sock_ports for typed (tp_btf, fentry) pointers: direct
// loads, no helper call.
static __always_inline bool sock_ports_btf(struct sock *sk, __u16 *lport, __u16 *rport)
{
	if (!sk)
		return false;
	*lport = sk->__sk_common.skc_num;
	*rport = bpf_ntohs(sk->__sk_common.skc_dport);
	return conn_followed(*lport, *rport);
}

/* ---- interrupts: irq:irq_handler_entry/exit, irq:softirq_entry/exit ---- */

// Interrupt time of the tracked threads, summed per CPU in the kernel:
// the hooks fire for every interrupt of the machine, so they emit
// nothing themselves. The outermost interrupt context on a CPU (a hard
// IRQ nested in a softirq counts once, in the softirq) that ends while a
// tracked thread is current adds its length to the CPU's sum. The sum is
// emitted as one KIND_IRQ record at that thread's next record (a syscall,
// a socket event, its switch out), so a round trip's boundaries split it
// where they fall, and a thread that no interrupt hit costs nothing.
//
// What is not an interrupt of the thread: NET_RX processing that makes
// data ready on a followed socket (on_data_ready marks it). On loopback
// and veth that softirq is the receiver's network stack run inside the
// sender's send (do_softirq from local_bh_enable, current = the sender),
// and on a NIC it is the receive path: either way it is the network's
// time, *_net, not an interruption of the work the thread was doing. Any
// other softirq (timers, RCU, another socket's packets) and every hard
// IRQ is counted, in whatever component it lands.
//
// x86's system vectors (local APIC timer, IPIs) have their own
// tracepoints and are not counted; their time stays in the component
// they interrupted.
struct cpu_irq {
	__u64 entry;   // the outermost interrupt's start, 0 if none is running or it interrupted an untracked task
	__u64 ns;      // interrupt time of thread tid since its last record
	__u64 first;   // start of the first interrupt in ns
	__u64 last;    // end of the last
	__u64 top_ns;  // the longest of them
	__u64 top;     // which it was (IRQ_SOFT | vector, IRQ_HARD | irq)
	__u64 cur;     // the outermost interrupt in progress
	__u64 stretch; // interrupt time, network's included, of the thread on CPU since in_ts
	__u64 in_ts;   // in_tid's switch in on this CPU
	__u64 in_sum;  // its sum_exec_runtime then
	__u32 tid;     // the thread ns belongs to
	__u32 in_tid;  // the tracked thread switched in last, 0 if it left
	__u32 depth;   // interrupt contexts nested now
	__u32 count;   // interrupts in ns
	__u32 followed;// the interrupt in progress made data ready on a followed socket
	__u32 entry_tid;// the task the outermost interrupt in progress interrupted
	__u32 epoch;   // trace_epoch when this was last used (cpu_irq_of)
	__u32 pad[3];
	// Records held back to be folded into the next one (see "Folded
	// records" below); kind 0: none held.
	struct event recv_held; // a KIND_NET_RECV, inside the interrupt in progress
	struct event send_held; // a KIND_SEND_START, in task context
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024); // the possible CPUs, set before load
	__type(key, __u32);
	__type(value, struct cpu_irq);
} cpu_irqs SEC(".maps");

// irq_time_accounting: the kernel charges interrupt time to no task
// (CONFIG_IRQ_TIME_ACCOUNTING), so a thread's sum_exec_runtime leaves it
// out; set by user space from the kernel's BTF.
volatile const bool irq_time_accounting = false;

#define IRQ_STALE_NS 1000000000ULL

/* ---- folded records ---- */

// Two records that always come in a pair, on one CPU, in one context and
// for one socket, are written as one: each record costs a ring slot's
// reservation, its copy and its commit. The second record of the pair
// carries the first one's time and the fields that differ (volley.h,
// KIND_NET_RECV_READY and KIND_SEND_XMIT), and user space reads them back
// as the two records they were (probe.expand), so no time and no field
// is lost or moved. The first record is held in the CPU's cpu_irq slot
// until its pair comes; anything that might come between ends the hold
// and writes it as it stands:
//  - a segment's receive (netif_receive_skb) is held only inside an
//    interrupt whose exit is seen (depth > 0; softirq_exit is attached
//    before softirq_entry), until the data-ready it leads to; another
//    segment, another socket's data-ready, or the outermost interrupt's
//    exit writes it;
//  - a send start (tcp_sendmsg_locked, tcp_sendmsg) is held in task
//    context until its first segment is handed to a device in the same
//    context (on loopback, and whenever the congestion window lets the
//    send transmit at once, inside the same send); another socket event
//    of a tracked thread on the CPU (the send's return, the next
//    receive, even -EAGAIN), a context switch of a tracked thread, or
//    the thread's exit writes it. No interrupt touches it: a program in
//    task context that writes or takes the held record can be
//    interrupted midway, and without an atomic exchange the interrupt's
//    program could write it twice or half-written. So a send whose
//    segment waits (for the congestion window, or the socket's owner)
//    is written at the thread's next socket event or switch.
// fold_records is set by user space only when the hooks of all those
// ends are attached (none is left out by Config.Skip): a held record is
// never lost.
volatile const bool fold_records = false;

// hold_flush writes a held record as it stands, if there is one.
static __always_inline void hold_flush(struct event *h)
{
	if (!h->kind)
		return;
	submit(h);
	h->kind = 0;
}

// hold_pack is a folded record's arg1: the first record's TCP sequence
// number and interface.
static __always_inline __u64 hold_pack(const struct event *h)
{
	return (h->arg0 & 0xffffffffULL) | (h->arg1 << 32);
}

// cpu_irq_of is CPU cpu's interrupt state, cleared if it was last used
// in another trace_epoch: an interrupt sum, a nesting count or a held
// record from before an off stretch belongs to nothing traced after it.
static __always_inline struct cpu_irq *cpu_irq_of(__u32 cpu)
{
	struct cpu_irq *c = bpf_map_lookup_elem(&cpu_irqs, &cpu);
	if (!c)
		return 0;
	__u32 ep = trace_epoch;
	if (c->epoch != ep) {
		c->epoch = ep;
		c->entry = 0;
		c->ns = 0;
		c->depth = 0;
		c->followed = 0;
		c->in_tid = 0;
		c->recv_held.kind = 0;
		c->send_held.kind = 0;
	}
	return c;
}

static __always_inline struct cpu_irq *this_cpu_irq(void)
{
	return cpu_irq_of(bpf_get_smp_processor_id());
}

// on_irq_entry and on_irq_exit run on every interrupt of the machine.
// An interrupt of an untracked task (the current one: the same at entry
// and exit) costs its bookkeeping and no clock read; so does, at its exit,
// one that made data ready on a followed socket, unless the kernel keeps
// interrupt time apart (stretch, for on_switch).
static __always_inline void on_irq_entry(__u64 what)
{
	if (hooks_only || tracing_off())
		return;
	struct cpu_irq *c = this_cpu_irq();
	if (!c)
		return;
	// A nesting count left up by an exit that was never seen (a program
	// skipped by the kernel's recursion guard) is reset once the
	// interrupt it counts would be older than any interrupt runs, and at
	// the next switch of a tracked thread on this CPU (on_switch: no
	// interrupt spans a context switch).
	if (c->depth && c->entry && bpf_ktime_get_ns() - c->entry > IRQ_STALE_NS)
		c->depth = 0;
	if (c->depth++ == 0) {
		// Not the send start: see "Folded records".
		hold_flush(&c->recv_held);
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		c->entry_tid = tid;
		c->entry = tid_tracked(tid) ? bpf_ktime_get_ns() : 0;
		c->cur = what;
		c->followed = 0;
	}
}

static __always_inline void on_irq_exit(void)
{
	if (hooks_only || tracing_off())
		return;
	struct cpu_irq *c = this_cpu_irq();
	if (!c || c->depth == 0) // the probe attached inside an interrupt
		return;
	if (--c->depth != 0)
		return; // nested
	hold_flush(&c->recv_held); // a receive whose data-ready did not come in it
	if (!c->entry)
		return; // an untracked task's
	if (c->followed && !irq_time_accounting) {
		c->entry = 0;
		return; // the network's time (see above), and no stretch to keep
	}
	__u64 start = c->entry, now = bpf_ktime_get_ns(), d = now - start;
	c->entry = 0;
	__u32 tid = c->entry_tid;
	if (tid == c->in_tid)
		c->stretch += d;
	if (c->followed)
		return; // the network's time (see above)
	if (c->tid != tid || !c->ns) {
		// The sum of a thread that left without a record is lost with
		// it: it ran nothing of a round trip since.
		c->tid = tid;
		c->ns = 0;
		c->count = 0;
		c->top_ns = 0;
		c->first = start;
	}
	c->ns += d;
	c->count++;
	c->last = now;
	if (d > c->top_ns) {
		c->top_ns = d;
		c->top = c->cur;
	}
}

// irq_flush emits the interrupt time of tid on this CPU since its last
// record, if any; not from interrupt context (a data-ready inside the
// very softirq being timed).
static __always_inline void irq_flush_c(struct cpu_irq *c, __u32 tid, __u32 tgid)
{
	if (!c || !c->ns || c->tid != tid || c->depth)
		return;
	struct event e;
	fill(&e, KIND_IRQ, tid, tgid);
	e.ts = c->last;
	e.arg0 = c->first;
	e.sk = c->ns;
	e.arg1 = c->top;
	e.ret = c->count;
	c->ns = 0;
	submit(&e);
}

static __always_inline void irq_flush(__u32 tid, __u32 tgid)
{
	irq_flush_c(this_cpu_irq(), tid, tgid);
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(tpbtf_irq_handler_entry, int irq) { on_irq_entry(IRQ_HARD | (__u32)irq); return 0; }
SEC("tp_btf/irq_handler_exit")
int BPF_PROG(tpbtf_irq_handler_exit, int irq) { on_irq_exit(); return 0; }
SEC("tp_btf/softirq_entry")
int BPF_PROG(tpbtf_softirq_entry, unsigned int vec) { on_irq_entry(IRQ_SOFT | vec); return 0; }
SEC("tp_btf/softirq_exit")
int BPF_PROG(tpbtf_softirq_exit, unsigned int vec) { on_irq_exit(); return 0; }
SEC("raw_tp/irq_handler_entry")
int rawtp_irq_handler_entry(struct bpf_raw_tracepoint_args *ctx) { on_irq_entry(IRQ_HARD | (__u32)ctx->args[0]); return 0; }
SEC("raw_tp/irq_handler_exit")
int rawtp_irq_handler_exit(struct bpf_raw_tracepoint_args *ctx) { on_irq_exit(); return 0; }
SEC("raw_tp/softirq_entry")
int rawtp_softirq_entry(struct bpf_raw_tracepoint_args *ctx) { on_irq_entry(IRQ_SOFT | (__u32)ctx->args[0]); return 0; }
SEC("raw_tp/softirq_exit")
int rawtp_softirq_exit(struct bpf_raw_tracepoint_args *ctx) { on_irq_exit(); return 0; }
SEC("tracepoint/irq/irq_handler_entry")
int tp_irq_handler_entry(struct trace_event_raw_irq_handler_entry *ctx) { on_irq_entry(IRQ_HARD | (__u32)ctx->irq); return 0; }
SEC("tracepoint/irq/irq_handler_exit")
int tp_irq_handler_exit(void *ctx) { on_irq_exit(); return 0; }
SEC("tracepoint/irq/softirq_entry")
int tp_softirq_entry(struct trace_event_raw_softirq *ctx) { on_irq_entry(IRQ_SOFT | ctx->vec); return 0; }
SEC("tracepoint/irq/softirq_exit")
int tp_softirq_exit(void *ctx) { on_irq_exit(); return 0; }

/* ---- syscalls: raw_syscalls:sys_enter / sys_exit ---- */

static __always_inline void on_sys_enter(long nr)
{
	__u32 tid, tgid;
	if (!current_tracked(&tid, &tgid))
		return;
	irq_flush(tid, tgid);
	// Reuse the thread's entry in place: a hash update and delete per
	// syscall would cost more than the rest of the probe.
	struct inflight *f = bpf_map_lookup_elem(&inflight, &tid);
	if (f) {
		f->enter_ts = bpf_ktime_get_ns();
		f->nr = nr;
		f->sk = 0;
		f->lport = 0;
		f->rport = 0;
		f->epoch = trace_epoch;
		return;
	}
	struct inflight n = { .enter_ts = bpf_ktime_get_ns(), .nr = nr, .epoch = trace_epoch };
	bpf_map_update_elem(&inflight, &tid, &n, BPF_ANY);
}

static __always_inline void on_sys_exit(long ret)
{
	if (hooks_only || tracing_off())
		return;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight *f = bpf_map_lookup_elem(&inflight, &tid);
	if (!f || !f->enter_ts || f->epoch != trace_epoch)
		return;
	irq_flush(tid, bpf_get_current_pid_tgid() >> 32);
	struct event e;
	fill(&e, KIND_SYSCALL, tid, bpf_get_current_pid_tgid() >> 32);
	e.arg0 = f->enter_ts;
	e.arg1 = f->nr;
	e.sk = f->sk;
	e.lport = f->lport;
	e.rport = f->rport;
	e.ret = ret;
	f->enter_ts = 0;
	submit(&e);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tpbtf_sys_enter, struct pt_regs *regs, long id) { on_sys_enter(id); return 0; }
SEC("tp_btf/sys_exit")
int BPF_PROG(tpbtf_sys_exit, struct pt_regs *regs, long ret) { on_sys_exit(ret); return 0; }
SEC("raw_tp/sys_enter")
int rawtp_sys_enter(struct bpf_raw_tracepoint_args *ctx) { on_sys_enter(ctx->args[1]); return 0; }
SEC("raw_tp/sys_exit")
int rawtp_sys_exit(struct bpf_raw_tracepoint_args *ctx) { on_sys_exit(ctx->args[1]); return 0; }
SEC("tracepoint/raw_syscalls/sys_enter")
int tp_sys_enter(struct trace_event_raw_sys_enter *ctx) { on_sys_enter(ctx->id); return 0; }
SEC("tracepoint/raw_syscalls/sys_exit")
int tp_sys_exit(struct trace_event_raw_sys_exit *ctx) { on_sys_exit(ctx->ret); return 0; }

/* ---- socket send/receive return: sock:sock_send_length / sock_recv_length (6.3+) ---- */

// on_sock_len fires when a protocol's sendmsg/recvmsg returned, in the
// caller's context, also for errors such as -EAGAIN (and, with kind
// KIND_SEND_START, when a send starts).
static __always_inline void on_sock_len(__u16 kind, struct sock *sk, int ret, bool typed)
{
	__u32 tid, tgid;
	if (!current_tracked(&tid, &tgid))
		return;
	__u16 lport, rport;
	if (typed ? !sock_ports_btf(sk, &lport, &rport) : !sock_ports(sk, &lport, &rport))
		return;
	__u32 cpu = bpf_get_smp_processor_id();
	struct cpu_irq *c = cpu_irq_of(cpu);
	irq_flush_c(c, tid, tgid);
	// A socket event of a tracked thread ends a held send start: it comes
	// after it (folded records, above).
	if (c)
		hold_flush(&c->send_held);
	// Inside a plain send/receive syscall the event is folded into that
	// syscall's record (one record instead of two). io_uring_enter (426)
	// may run several sends and receives, so those stand alone, as do
	// events outside any syscall (io_uring task work, io-wq workers).
	if (syscalls) {
		struct inflight *f = bpf_map_lookup_elem(&inflight, &tid);
		if (f && f->enter_ts) {
			f->sk = (__u64)sk;
			f->lport = lport;
			f->rport = rport;
			if (f->nr != 426)
				return;
		}
	}
	// Standalone, only what the join uses: data moved (not -EAGAIN).
	if (ret <= 0)
		return;
	if (kind == KIND_SEND_START && fold_records && c) {
		// Held for the send's first transmit (on_xmit).
		struct event *h = &c->send_held;
		fill_at(h, kind, tid, tgid, bpf_ktime_get_ns(), cpu);
		h->sk = (__u64)sk;
		h->lport = lport;
		h->rport = rport;
		h->ret = ret;
		return;
	}
	struct event e;
	fill_at(&e, kind, tid, tgid, bpf_ktime_get_ns(), cpu);
	e.sk = (__u64)sk;
	e.lport = lport;
	e.rport = rport;
	e.ret = ret;
	submit(&e);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tpbtf_sock_send_length, struct sock *sk, int ret, int flags) { on_sock_len(KIND_SOCK_SEND, sk, ret, true); return 0; }
SEC("tp_btf/sock_recv_length")
int BPF_PROG(tpbtf_sock_recv_length, struct sock *sk, int ret, int flags) { on_sock_len(KIND_SOCK_RECV, sk, ret, true); return 0; }
SEC("raw_tp/sock_send_length")
int rawtp_sock_send_length(struct bpf_raw_tracepoint_args *ctx) { on_sock_len(KIND_SOCK_SEND, (struct sock *)ctx->args[0], ctx->args[1], false); return 0; }
SEC("raw_tp/sock_recv_length")
int rawtp_sock_recv_length(struct bpf_raw_tracepoint_args *ctx) { on_sock_len(KIND_SOCK_RECV, (struct sock *)ctx->args[0], ctx->args[1], false); return 0; }
SEC("tracepoint/sock/sock_send_length")
int tp_sock_send_length(struct trace_event_raw_sock_msg_length *ctx) { on_sock_len(KIND_SOCK_SEND, (struct sock *)ctx->sk, ctx->ret, false); return 0; }
SEC("tracepoint/sock/sock_recv_length")
int tp_sock_recv_length(struct trace_event_raw_sock_msg_length *ctx) { on_sock_len(KIND_SOCK_RECV, (struct sock *)ctx->sk, ctx->ret, false); return 0; }
// Kernels without the sock_*_length tracepoints (before 6.3): the TCP
// functions' return. fexit sees the return value directly.
SEC("fexit/tcp_sendmsg")
int BPF_PROG(fexit_tcp_sendmsg, struct sock *sk, struct msghdr *msg, size_t size, int ret) { on_sock_len(KIND_SOCK_SEND, sk, ret, true); return 0; }
SEC("fexit/tcp_recvmsg")
int BPF_PROG(fexit_tcp_recvmsg, struct sock *sk, struct msghdr *msg, size_t len, int flags, int *addr_len, int ret) { on_sock_len(KIND_SOCK_RECV, sk, ret, true); return 0; }

// kprobe fallback: the socket at entry, the length at return, carried per
// thread (one TCP send or receive at a time per thread).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} kp_sk SEC(".maps");

static __always_inline void kp_enter(struct sock *sk)
{
	__u32 tid, tgid;
	if (!current_tracked(&tid, &tgid))
		return;
	__u64 v = (__u64)sk;
	bpf_map_update_elem(&kp_sk, &tid, &v, BPF_ANY);
}

static __always_inline void kp_return(__u16 kind, int ret)
{
	if (hooks_only)
		return;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *v = bpf_map_lookup_elem(&kp_sk, &tid);
	if (!v)
		return;
	struct sock *sk = (struct sock *)*v;
	bpf_map_delete_elem(&kp_sk, &tid);
	on_sock_len(kind, sk, ret, false);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kprobe_tcp_sendmsg, struct sock *sk) { kp_enter(sk); return 0; }
SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kretprobe_tcp_sendmsg, int ret) { kp_return(KIND_SOCK_SEND, ret); return 0; }
SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(kprobe_tcp_recvmsg, struct sock *sk) { kp_enter(sk); return 0; }
SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(kretprobe_tcp_recvmsg, int ret) { kp_return(KIND_SOCK_RECV, ret); return 0; }

/* ---- TCP send start: tcp:tcp_sendmsg_locked (in 6.18, not in 6.12), else tcp_sendmsg entry ---- */

// The send's start, in the sender's context: the boundary between the
// sender's user time and its network path when the syscall hooks are off.
// tcp_sendmsg_locked fires once per segment it fills (once for a small
// message); the join takes the first after the previous receive. Within
// a traced syscall the syscall's record already has the entry time, so
// only the socket is noted there.
static __always_inline void on_send_start(struct sock *sk, bool typed)
{
	// Same filtering and folding as a send's return; ret 1: always kept.
	on_sock_len(KIND_SEND_START, sk, 1, typed);
}

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(tpbtf_tcp_sendmsg_locked, const struct sock *sk) { on_send_start((struct sock *)sk, true); return 0; }
SEC("raw_tp/tcp_sendmsg_locked")
int rawtp_tcp_sendmsg_locked(struct bpf_raw_tracepoint_args *ctx) { on_send_start((struct sock *)ctx->args[0], false); return 0; }
SEC("fentry/tcp_sendmsg")
int BPF_PROG(fentry_tcp_sendmsg, struct sock *sk) { on_send_start(sk, true); return 0; }
SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kprobe_tcp_sendmsg_start, struct sock *sk) { on_send_start(sk, false); return 0; }

/* ---- data ready: sock:sk_data_ready (6.6+), else sock_def_readable ---- */

// Fires for the receiving socket, in softirq: on loopback inside the
// sender's send syscall, on the sender's CPU. Filtered by socket, not task.
static __always_inline void on_data_ready(struct sock *sk, bool typed)
{
	if (hooks_only || tracing_off())
		return;
	__u16 lport, rport;
	if (typed ? !sock_ports_btf(sk, &lport, &rport) : !sock_ports(sk, &lport, &rport))
		return;
	__u32 cpu = bpf_get_smp_processor_id();
	struct cpu_irq *c = cpu_irq_of(cpu);
	if (c && c->depth)
		c->followed = 1; // the network's time (on_irq_exit)
	__u64 id = bpf_get_current_pid_tgid();
	struct event e;
	fill_at(&e, KIND_DATA_READY, (__u32)id, id >> 32, bpf_ktime_get_ns(), cpu);
	e.sk = (__u64)sk;
	e.lport = lport;
	e.rport = rport;
	if (c && c->recv_held.kind) {
		// The segment received just before, in this interrupt, for this
		// socket: folded into this record (see "Folded records").
		struct event *h = &c->recv_held;
		if (h->lport == lport && h->rport == rport && h->tid == e.tid && h->tgid == e.tgid) {
			e.kind = KIND_NET_RECV_READY;
			e.arg0 = h->ts;
			e.arg1 = hold_pack(h);
			e.ret = h->ret;
			h->kind = 0;
		} else {
			hold_flush(h);
		}
	}
	submit(&e);
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(tpbtf_sk_data_ready, const struct sock *sk) { on_data_ready((struct sock *)sk, true); return 0; }
SEC("raw_tp/sk_data_ready")
int rawtp_sk_data_ready(struct bpf_raw_tracepoint_args *ctx) { on_data_ready((struct sock *)ctx->args[0], false); return 0; }
SEC("tracepoint/sock/sk_data_ready")
int tp_sk_data_ready(struct trace_event_raw_sk_data_ready *ctx) { on_data_ready((struct sock *)ctx->skaddr, false); return 0; }
SEC("fentry/sock_def_readable")
int BPF_PROG(fentry_sock_def_readable, struct sock *sk) { on_data_ready(sk, true); return 0; }
SEC("kprobe/sock_def_readable")
int BPF_KPROBE(kprobe_sock_def_readable, struct sock *sk) { on_data_ready(sk, false); return 0; }

/* ---- the packet's path: net:net_dev_start_xmit (or net_dev_queue), net:netif_receive_skb ---- */

// Each direction's network time is split at two points of its data
// segment: handed to the device (the sender's stack ends) and receive
// processing started (the receiver's stack begins). Only segments with
// payload are recorded: a pure ACK is on no round trip's critical path,
// and leaving it out keeps the records at one per data segment and side.
// The TCP sequence number goes with both records, so that user space
// pairs the receive with the transmit of the same segment, whatever else
// was in flight.

// tcp_payload is the payload of a TCP segment whose header is at th,
// with hdrs bytes of headers before it within len bytes of the packet.
static __always_inline __s32 tcp_payload(const __u8 *th, __u32 len, __u32 hdrs)
{
	__u32 all = hdrs + (th[12] >> 4) * 4;
	return len > all ? len - all : 0;
}

// on_xmit: net_dev_start_xmit fires in xmit_one (dev_hard_start_xmit),
// after the qdisc, in the sender's context (or the qdisc's softirq when
// it was deferred). The socket is the skb's owner: the ports are two
// loads away, the cheapest test, so an unfollowed packet costs nothing
// else. skb->data is at the link-layer header then.
static __always_inline void on_xmit(struct sk_buff *skb, struct net_device *dev, bool typed)
{
	if (hooks_only || tracing_off() || !skb)
		return;
	struct sock *sk = typed ? skb->sk : BPF_CORE_READ(skb, sk);
	__u16 lport, rport;
	if (typed ? !sock_ports_btf(sk, &lport, &rport) : !sock_ports(sk, &lport, &rport))
		return;
	// Typed pointers (tp_btf) are read with plain loads, the others with
	// the checked helper.
	__u16 fam = typed ? sk->__sk_common.skc_family : BPF_CORE_READ(sk, __sk_common.skc_family);
	if (fam != 2 /* AF_INET */ && fam != 10 /* AF_INET6 */)
		return;
	unsigned char *head = typed ? skb->head : BPF_CORE_READ(skb, head);
	unsigned char *data = typed ? skb->data : BPF_CORE_READ(skb, data);
	__u16 th_off = typed ? skb->transport_header : BPF_CORE_READ(skb, transport_header);
	__u32 len = typed ? skb->len : BPF_CORE_READ(skb, len);
	__u8 th[20];
	if (th_off == (__u16)~0U || bpf_probe_read_kernel(th, sizeof(th), head + th_off))
		return;
	__u32 hdrs = (__u32)(head + th_off - data); // link, network headers
	__s32 payload = tcp_payload(th, len, hdrs);
	if (payload <= 0)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 cpu = bpf_get_smp_processor_id();
	struct event e;
	fill_at(&e, KIND_NET_XMIT, (__u32)id, id >> 32, bpf_ktime_get_ns(), cpu);
	e.sk = (__u64)sk;
	e.lport = lport;
	e.rport = rport;
	e.arg0 = bpf_ntohl(*(__u32 *)&th[4]);
	e.arg1 = !dev ? 0 : typed ? dev->ifindex : BPF_CORE_READ(dev, ifindex);
	e.ret = payload;
	struct cpu_irq *c = cpu_irq_of(cpu);
	if (c && c->send_held.kind && !c->depth) {
		// The first segment of the send held on this CPU, in the
		// sender's own context: its start is folded into this record
		// (see "Folded records"). Another socket's segment leaves it.
		struct event *h = &c->send_held;
		if (h->sk == e.sk && h->tid == e.tid && h->tgid == e.tgid && h->lport == lport && h->rport == rport) {
			e.kind = KIND_SEND_XMIT;
			e.arg1 = hold_pack(&e);
			e.arg0 = h->ts;
			h->kind = 0;
		}
	}
	submit(&e);
}

// on_netif_receive: netif_receive_skb fires at the start of
// __netif_receive_skb_core, for every packet the machine receives (after
// GRO), in the receive softirq: on loopback and veth that is the
// sender's CPU, inside its send (the backlog processed at
// local_bh_enable). No socket is attached yet, so the ports are read from
// the packet: skb->data is at the network header (eth_type_trans pulled
// the link layer). One read covers an IPv4 header without options and
// the TCP header after it, or an IPv6 header and a TCP header right after
// it (a segment behind IPv6 extension headers is not recorded); IPv4
// options take a second read. The cheapest tests come first: the
// protocol, then the ports.
#define NET_HDR_READ 60
static __always_inline void on_netif_receive(struct sk_buff *skb, bool typed)
{
	if (hooks_only || tracing_off() || !skb)
		return;
	__u16 proto = typed ? skb->protocol : BPF_CORE_READ(skb, protocol);
	if (proto != bpf_htons(0x0800) && proto != bpf_htons(0x86DD))
		return;
	unsigned char *data = typed ? skb->data : BPF_CORE_READ(skb, data);
	__u8 b[NET_HDR_READ];
	if (bpf_probe_read_kernel(b, sizeof(b), data))
		return;
	__u32 off, len;
	if (proto == bpf_htons(0x0800)) {
		if ((b[0] >> 4) != 4 || b[9] != 6 /* IPPROTO_TCP */)
			return;
		off = (b[0] & 0xf) * 4;
		len = ((__u32)b[2] << 8) | b[3];
		if (off != 20) {
			if (off < 20 || bpf_probe_read_kernel(&b[20], 20, data + off))
				return;
		}
		off = 20; // where the TCP header is in b
	} else {
		if ((b[0] >> 4) != 6 || b[6] != 6)
			return;
		off = 40;
		len = 40 + (((__u32)b[4] << 8) | b[5]);
	}
	// off is 20 or 40: spelled out so the verifier sees constant offsets.
	const __u8 *th = off == 20 ? &b[20] : &b[40];
	__u16 sport = ((__u16)th[0] << 8) | th[1], dport = ((__u16)th[2] << 8) | th[3];
	// As the receiving socket sees them, and with the connection sample:
	// a segment of a connection not followed is not recorded (its
	// data-ready is not, so it would stand alone, for nothing).
	if (!conn_followed(dport, sport))
		return;
	__u32 hdrs = proto == bpf_htons(0x0800) ? (b[0] & 0xf) * 4 : 40;
	__s32 payload = tcp_payload(th, len, hdrs);
	if (payload <= 0)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 cpu = bpf_get_smp_processor_id();
	struct event e;
	fill_at(&e, KIND_NET_RECV, (__u32)id, id >> 32, bpf_ktime_get_ns(), cpu);
	e.lport = dport; // as the receiving socket sees them
	e.rport = sport;
	e.arg0 = ((__u32)th[4] << 24) | ((__u32)th[5] << 16) | ((__u32)th[6] << 8) | th[7];
	e.arg1 = typed ? skb->dev->ifindex : BPF_CORE_READ(skb, dev, ifindex);
	e.ret = payload;
	struct cpu_irq *c = cpu_irq_of(cpu);
	if (fold_records && c && c->depth) {
		// Held for the socket's data-ready (on_data_ready); a segment
		// already held never got one.
		hold_flush(&c->recv_held);
		__builtin_memcpy(&c->recv_held, &e, sizeof(e));
		return;
	}
	submit(&e);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(tpbtf_net_dev_start_xmit, const struct sk_buff *skb, const struct net_device *dev) { on_xmit((struct sk_buff *)skb, (struct net_device *)dev, true); return 0; }
SEC("raw_tp/net_dev_start_xmit")
int rawtp_net_dev_start_xmit(struct bpf_raw_tracepoint_args *ctx) { on_xmit((struct sk_buff *)ctx->args[0], (struct net_device *)ctx->args[1], false); return 0; }
SEC("tracepoint/net/net_dev_start_xmit")
int tp_net_dev_start_xmit(struct trace_event_raw_net_dev_start_xmit *ctx) { on_xmit((struct sk_buff *)ctx->skbaddr, 0, false); return 0; }
// net_dev_queue fires in __dev_queue_xmit before the qdisc: where
// net_dev_start_xmit cannot be hooked, the qdisc's time goes to the
// device part instead of the sender's stack.
SEC("tp_btf/net_dev_queue")
int BPF_PROG(tpbtf_net_dev_queue, struct sk_buff *skb) { on_xmit(skb, skb->dev, true); return 0; }
SEC("raw_tp/net_dev_queue")
int rawtp_net_dev_queue(struct bpf_raw_tracepoint_args *ctx) { struct sk_buff *skb = (struct sk_buff *)ctx->args[0]; on_xmit(skb, BPF_CORE_READ(skb, dev), false); return 0; }
SEC("tracepoint/net/net_dev_queue")
int tp_net_dev_queue(struct trace_event_raw_net_dev_template *ctx) { on_xmit((struct sk_buff *)ctx->skbaddr, 0, false); return 0; }
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(tpbtf_netif_receive_skb, struct sk_buff *skb) { on_netif_receive(skb, true); return 0; }
SEC("raw_tp/netif_receive_skb")
int rawtp_netif_receive_skb(struct bpf_raw_tracepoint_args *ctx) { on_netif_receive((struct sk_buff *)ctx->args[0], false); return 0; }
SEC("tracepoint/net/netif_receive_skb")
int tp_netif_receive_skb(struct trace_event_raw_net_dev_template *ctx) { on_netif_receive((struct sk_buff *)ctx->skbaddr, false); return 0; }

/* ---- CPU holders: who ran on a CPU while a tracked thread waited ---- */

// One slot per CPU: the tracked thread waiting for that CPU (woken onto
// it, or preempted on it) and the tasks that have held it since. Every
// sched_switch on the CPU while a thread waits charges the task switched
// out with the time since the last switch; the switch that brings the
// waiter in ends the wait and, if any holder was not the idle task, stores
// it in hold_ring for user space to read for the slowest round trips. One
// waiter per CPU: a second tracked thread that starts waiting for the same
// CPU meanwhile goes unnamed. A waiter that is migrated and runs elsewhere
// leaves its slot to be taken over after WAIT_STALE_NS.
// User space sizes the array to the possible CPUs.
struct cpu_wait {
	__u32 waiter; // tracked tid waiting, 0 if none
	__u32 holds_next; // this CPU's next slot in hold_ring (modulo hold_slots)
	__u64 seg;    // start of the current holder's stretch
	__u64 last;   // the last switch on this CPU, waiter or not
	struct hold rec;
	__u32 epoch;  // trace_epoch when this was last used (cpu_wait_of)
	__u32 pad;
	// Time this CPU ran tasks of other processes than self_tgid (the
	// idle task left out), since load, and the part of it that tracked
	// threads ran (a run's server): user space reads them to learn
	// whether other programs keep its CPUs busy (a run's join does).
	__u64 others_ns;
	__u64 others_tracked_ns;
};

// self_tgid is volleyscope's own process, whose threads are not others.
volatile const __u32 self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct cpu_wait);
} cpu_waits SEC(".maps");

// Finished waits, the newest kept: user space looks up the waits of a
// round trip when it becomes one of the slowest, seconds after it
// happened. A ring per CPU in one mmapable array, CPU c owning slots
// [c*hold_slots, (c+1)*hold_slots), written in turn (cpu_wait.holds_next):
// a wait ends in sched_switch, which does not nest on its CPU, so a plain
// store reserves the slot. An array slot written in place costs a fraction
// of a hash map update, and every preempted round trip of a tracked
// thread ends a wait. User space finds a wait by scanning for its key
// (probe.CPUHolders); a slot being rewritten reads as empty (key.tid 0
// while the record changes).
struct hold_slot {
	struct hold_key key; // key.tid 0: empty, or being written
	struct hold rec;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); // ncpu * hold_slots, set before load
	__type(key, __u32);
	__type(value, struct hold_slot);
} hold_ring SEC(".maps");

// hold_slots: slots per CPU in hold_ring, a power of two, set before load.
volatile const __u32 hold_slots = 1;

// Keeps struct hold, hold_key and hold_slot in the object's BTF for bpf2go -type.
const struct hold *unused_hold __attribute__((unused));
const struct hold_key *unused_hold_key __attribute__((unused));
const struct hold_slot *unused_hold_slot __attribute__((unused));

// A slot older than this is taken over: its waiter was migrated and ran
// elsewhere (a real wait this long is named by nothing else anyway).
#define WAIT_STALE_NS 100000000ULL

// cpu_wait_of is CPU cpu's waiter slot, emptied if it was last used in
// another trace_epoch: the switches of an off stretch were not seen.
static __always_inline struct cpu_wait *cpu_wait_of(__u32 cpu)
{
	struct cpu_wait *w = bpf_map_lookup_elem(&cpu_waits, &cpu);
	if (!w)
		return 0;
	__u32 ep = trace_epoch;
	if (w->epoch != ep) {
		w->epoch = ep;
		w->waiter = 0;
		w->last = 0;
	}
	return w;
}

static __always_inline void wait_start(__u32 cpu, __u32 tid, __u64 ts)
{
	struct cpu_wait *w = cpu_wait_of(cpu);
	if (!w)
		return;
	// First come keeps the slot: the server process's other threads
	// (Go's runtime threads among them) are tracked and woken on the same
	// CPU while a request's thread waits there.
	if (w->waiter && w->waiter != tid && ts - w->rec.since < WAIT_STALE_NS)
		return;
	w->waiter = tid;
	w->seg = ts;
	w->rec.since = ts;
	w->rec.other_ns = 0;
	w->rec.cpu = cpu;
	w->rec.n = 0;
}

// hold_add charges tid with ns of the wait. comm is a kernel address (the
// task's or the tracepoint record's): 16 bytes, NUL-terminated within
// them, read whole with the checked helper (user space stops at the NUL):
// the string variant copies byte by byte.
static __always_inline void hold_add(struct hold *r, __u32 tid, __u32 tgid, const char *comm, __u64 ns)
{
	__u32 n = r->n;
#pragma unroll
	for (int i = 0; i < HOLDERS; i++) {
		if (i < n && r->h[i].tid == tid) {
			r->h[i].ns += ns;
			return;
		}
	}
	if (n >= HOLDERS) {
		r->other_ns += ns;
		return;
	}
	struct holder *h = &r->h[n];
	h->tid = tid;
	h->tgid = tgid;
	h->ns = ns;
	if (bpf_probe_read_kernel(h->comm, sizeof(h->comm), comm) < 0)
		h->comm[0] = 0;
	r->n = n + 1;
}

// hold_keep stores the finished wait rec of tid, ended by its switch in
// at ts, in this CPU's next hold_ring slot. The key is cleared first and
// written last, so that user space never takes a half-written record for
// a whole one.
static __always_inline void hold_keep(struct cpu_wait *w, __u32 cpu, __u32 tid, __u64 ts, const struct hold *rec)
{
	__u32 k = cpu * hold_slots + (w->holds_next++ & (hold_slots - 1));
	struct hold_slot *s = bpf_map_lookup_elem(&hold_ring, &k);
	if (!s)
		return; // cannot happen: k < ncpu * hold_slots
	*(volatile __u32 *)&s->key.tid = 0;
	asm volatile("" ::: "memory");
	__builtin_memcpy(&s->rec, rec, sizeof(*rec));
	s->key.in_ts = ts;
	asm volatile("" ::: "memory");
	*(volatile __u32 *)&s->key.tid = tid;
}

// on_cpu_switch follows the waiter of this CPU, if any, through a switch
// from prev to next at ts. A tracked thread that switches in without
// being this CPU's waiter (its wake-up was not seen: the wake-up hooks are
// off, or another thread held the slot) gets the last holder alone: prev,
// for its whole stretch on the CPU, which user space clips to the wait;
// only an untracked prev, so that tracked threads handing the CPU to each
// other cost no map update.
static __always_inline void on_cpu_switch(__u32 cpu, __u64 ts, __u32 prev, __u32 prev_tgid, const char *prev_comm,
					  bool prev_tracked, __u32 next, bool next_tracked)
{
	struct cpu_wait *w = cpu_wait_of(cpu);
	if (!w)
		return;
	__u64 last = w->last;
	w->last = ts;
	if (prev && last) {
		// prev ran since the last switch here. Its process: the current
		// task's, when the hook cannot tell (prev is current here).
		__u32 tgid = prev_tgid ? prev_tgid : bpf_get_current_pid_tgid() >> 32;
		if (tgid != self_tgid) {
			w->others_ns += ts - last;
			if (prev_tracked)
				w->others_tracked_ns += ts - last;
		}
	}
	if (w->waiter && prev == w->waiter) {
		// It ran here after all (a wake-up of a thread still on its
		// CPU, or a missed switch in): no wait.
		w->waiter = 0;
	} else if (w->waiter) {
		hold_add(&w->rec, prev, prev_tgid, prev_comm, ts - w->seg);
		w->seg = ts;
		if (next == w->waiter) {
			w->waiter = 0;
			bool busy = false;
#pragma unroll
			for (int i = 0; i < HOLDERS; i++)
				if (i < w->rec.n && w->rec.h[i].tid != 0)
					busy = true;
			if (!busy && !w->rec.other_ns)
				return; // the CPU was idle: an exit from idle, no holder
			hold_keep(w, cpu, next, ts, &w->rec);
			return;
		}
	}
	if (!next_tracked || prev_tracked || prev == 0 || !last)
		return;
	struct hold r = { .since = last, .cpu = cpu };
	hold_add(&r, prev, prev_tgid, prev_comm, ts - last);
	hold_keep(w, cpu, next, ts, &r);
}

/* ---- scheduler ---- */

// cpu is the CPU the woken task is queued on, or -1 when the hook does
// not tell.
static __always_inline void on_wake(__u16 kind, __u32 pid, __u32 tgid, int cpu)
{
	if (!tid_tracked(pid))
		return;
	__u64 id = bpf_get_current_pid_tgid();
	struct event e;
	fill(&e, kind, (__u32)id, id >> 32);
	e.arg0 = pid;
	e.arg1 = tgid;
	e.ret = cpu;
	if (kind == KIND_WAKEUP && cpu >= 0)
		wait_start(cpu, pid, e.ts);
	submit(&e);
}

SEC("tp_btf/sched_waking")
int BPF_PROG(tpbtf_sched_waking, struct task_struct *p) { on_wake(KIND_WAKING, p->pid, p->tgid, -1); return 0; }
SEC("tp_btf/sched_wakeup")
int BPF_PROG(tpbtf_sched_wakeup, struct task_struct *p) { on_wake(KIND_WAKEUP, p->pid, p->tgid, p->thread_info.cpu); return 0; }
SEC("raw_tp/sched_waking")
int rawtp_sched_waking(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx->args[0];
	on_wake(KIND_WAKING, BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid), -1);
	return 0;
}
SEC("raw_tp/sched_wakeup")
int rawtp_sched_wakeup(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx->args[0];
	on_wake(KIND_WAKEUP, BPF_CORE_READ(p, pid), BPF_CORE_READ(p, tgid), BPF_CORE_READ(p, thread_info.cpu));
	return 0;
}
SEC("tracepoint/sched/sched_waking")
int tp_sched_waking(struct trace_event_raw_sched_wakeup_template *ctx) { on_wake(KIND_WAKING, ctx->pid, 0, ctx->target_cpu); return 0; }
SEC("tracepoint/sched/sched_wakeup")
int tp_sched_wakeup(struct trace_event_raw_sched_wakeup_template *ctx) { on_wake(KIND_WAKEUP, ctx->pid, 0, ctx->target_cpu); return 0; }

// on_switch runs for every context switch of the machine: it follows the
// CPU's waiter (on_cpu_switch), then records the switch if it concerns a
// tracked thread, and starts a wait when a tracked thread is preempted.
// prev_comm is a kernel address of the 16-byte comm. The tracepoint fires
// in __schedule on prev's CPU, before the switch: the current task is
// prev, so the record's task is prev's (prev_tgid 0: the hook cannot
// tell, ask the helper), and its time and CPU are the switch's. prev_sum and
// next_sum are the tasks' se.sum_exec_runtime, 0 where the hook cannot
// read them (classic tracepoint).
//
// A preempted thread's record carries in sk the time of its stretch on
// the CPU that the scheduler did not credit to it: the stretch's length
// less the sum_exec_runtime it gained (and, where the kernel keeps
// interrupt time apart, less the interrupts in it). A wake-up that
// preempts the running task stamps the run queue's clock and marks the
// next clock update to be skipped (rq_clock_skip_update), so the
// preempted task's time ends at the wake-up, and the time from there to
// this switch (the reschedule IPI's flight, the return to the scheduler)
// goes to the task that preempted it. That is when the scheduler
// considers it preempted, so user space starts the preemption there. A
// hypervisor's steal time (PARAVIRT_TIME_ACCOUNTING) is uncredited too.
static __always_inline void on_switch(__u32 prev, __u32 prev_tgid, const char *prev_comm, __u64 prev_sum,
				      __u32 next, __u64 next_sum, long prev_state)
{
	if (hooks_only || tracing_off())
		return;
	__u64 ts = bpf_ktime_get_ns();
	__u32 cpu = bpf_get_smp_processor_id();
	bool prev_tracked = tid_tracked(prev), next_tracked = tid_tracked(next);
	on_cpu_switch(cpu, ts, prev, prev_tgid, prev_comm, prev_tracked, next, next_tracked);
	if (!prev_tracked && !next_tracked)
		return;
	__u64 uncredited = 0;
	struct cpu_irq *c = cpu_irq_of(cpu);
	if (c) {
		hold_flush(&c->send_held); // the sender leaves the CPU: its send is over
		if (prev_tracked) {
			irq_flush_c(c, prev, prev_tgid);
			if (c->in_tid == prev && prev_state == 0 && prev_sum && prev_sum >= c->in_sum) {
				__u64 wall = ts - c->in_ts, credited = prev_sum - c->in_sum;
				if (irq_time_accounting)
					credited += c->stretch;
				if (wall > credited)
					uncredited = wall - credited;
			}
		}
		c->in_tid = 0;
		c->depth = 0; // no interrupt spans a switch (on_irq_entry)
		if (next_tracked && next_sum) {
			c->in_tid = next;
			c->in_ts = ts;
			c->in_sum = next_sum;
			c->stretch = 0;
		}
	}
	__u32 tgid = prev_tgid;
	if (!tgid)
		tgid = bpf_get_current_pid_tgid() >> 32;
	struct event e;
	fill_at(&e, KIND_SWITCH, prev, tgid, ts, cpu); // ts: the key of a finished wait in hold_ring
	e.sk = uncredited;
	e.arg0 = prev;
	e.arg1 = next;
	e.ret = prev_state;
	if (prev_tracked && prev_state == 0)
		wait_start(cpu, prev, ts);
	submit(&e);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(tpbtf_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	// prev_state is read from the task (the tracepoint's fourth argument
	// was added in 5.18); 0 means runnable, i.e. preempted.
	on_switch(prev->pid, prev->tgid, prev->comm, prev->se.sum_exec_runtime, next->pid, next->se.sum_exec_runtime,
		  preempt ? 0 : prev->__state);
	return 0;
}
SEC("raw_tp/sched_switch")
int rawtp_sched_switch(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *prev = (struct task_struct *)ctx->args[1];
	struct task_struct *next = (struct task_struct *)ctx->args[2];
	on_switch(BPF_CORE_READ(prev, pid), BPF_CORE_READ(prev, tgid), prev->comm, BPF_CORE_READ(prev, se.sum_exec_runtime),
		  BPF_CORE_READ(next, pid), BPF_CORE_READ(next, se.sum_exec_runtime), ctx->args[0] ? 0 : BPF_CORE_READ(prev, __state));
	return 0;
}
SEC("tracepoint/sched/sched_switch")
int tp_sched_switch(struct trace_event_raw_sched_switch *ctx) { on_switch(ctx->prev_pid, 0, ctx->prev_comm, 0, ctx->next_pid, 0, ctx->prev_state); return 0; }

static __always_inline void on_fork(__u32 parent_tgid, __u32 parent, __u32 child)
{
	// Fires for new threads as well as new processes (kernel_clone), in
	// the parent's context.
	if (hooks_only)
		return;
	if (!tid_bit(parent) && !bpf_map_lookup_elem(&tracked_tgids, &parent_tgid))
		return;
	// A new process (fork server child) or a new thread: follow both.
	__u8 one = 1;
	bpf_map_update_elem(&tracked_tgids, &child, &one, BPF_ANY);
	set_tracked(child, true);
	struct event e;
	fill(&e, KIND_FORK, parent, parent_tgid);
	e.arg0 = parent;
	e.arg1 = child;
	submit(&e);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tpbtf_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	on_fork(BPF_CORE_READ(parent, tgid), BPF_CORE_READ(parent, pid), BPF_CORE_READ(child, pid));
	return 0;
}
SEC("raw_tp/sched_process_fork")
int rawtp_sched_process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	on_fork(BPF_CORE_READ(parent, tgid), BPF_CORE_READ(parent, pid), BPF_CORE_READ(child, pid));
	return 0;
}
SEC("tracepoint/sched/sched_process_fork")
int tp_sched_process_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	on_fork(bpf_get_current_pid_tgid() >> 32, ctx->parent_pid, ctx->child_pid);
	return 0;
}

static __always_inline void on_exit(void)
{
	if (hooks_only)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	if (!tid_bit(tid))
		return;
	set_tracked(tid, false);
	bpf_map_delete_elem(&inflight, &tid);
	struct cpu_irq *c = this_cpu_irq();
	if (c)
		hold_flush(&c->send_held); // its last switch is no longer a tracked one's
	if (tid == tgid)
		bpf_map_delete_elem(&tracked_tgids, &tgid);
	struct event e;
	fill(&e, KIND_EXIT, tid, tgid);
	submit(&e);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tpbtf_sched_process_exit, struct task_struct *p) { on_exit(); return 0; }
SEC("raw_tp/sched_process_exit")
int rawtp_sched_process_exit(struct bpf_raw_tracepoint_args *ctx) { on_exit(); return 0; }
SEC("tracepoint/sched/sched_process_exit")
int tp_sched_process_exit(void *ctx) { on_exit(); return 0; }

/* ---- socket identity: sock:inet_sock_set_state ---- */

// Not switched off by trace_epoch, as fork and exit are not: a
// connection's open and close are rare, and the watch needs them to tell
// one connection on a port from the next.
static __always_inline void on_set_state(struct sock *sk, int oldstate, int newstate)
{
	if (hooks_only)
		return;
	__u16 lport, rport;
	if (!sock_ports(sk, &lport, &rport)) // cold path: probe reads are fine
		return;
	__u64 id = bpf_get_current_pid_tgid();
	struct event e;
	fill(&e, KIND_SOCK_STATE, (__u32)id, id >> 32);
	e.sk = (__u64)sk;
	e.lport = lport;
	e.rport = rport;
	e.arg0 = oldstate;
	e.arg1 = newstate;
	submit(&e);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tpbtf_inet_sock_set_state, const struct sock *sk, int oldstate, int newstate) { on_set_state((struct sock *)sk, oldstate, newstate); return 0; }
SEC("raw_tp/inet_sock_set_state")
int rawtp_inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx) { on_set_state((struct sock *)ctx->args[0], ctx->args[1], ctx->args[2]); return 0; }
SEC("tracepoint/sock/inet_sock_set_state")
int tp_inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx) { on_set_state((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate); return 0; }

/* ---- io_uring: submit and complete, keyed by user_data ---- */

SEC("tracepoint/io_uring/io_uring_submit_req")
int tp_io_uring_submit_req(struct trace_event_raw_io_uring_submit_req *ctx)
{
	__u32 tid, tgid;
	if (!current_tracked(&tid, &tgid))
		return 0;
	irq_flush(tid, tgid);
	struct event e;
	fill(&e, KIND_URING_SUBMIT, tid, tgid);
	e.arg0 = BPF_CORE_READ(ctx, user_data);
	e.arg1 = BPF_CORE_READ(ctx, opcode);
	submit(&e);
	return 0;
}

SEC("tracepoint/io_uring/io_uring_complete")
int tp_io_uring_complete(struct trace_event_raw_io_uring_complete *ctx)
{
	__u32 tid, tgid;
	if (!current_tracked(&tid, &tgid))
		return 0;
	irq_flush(tid, tgid);
	struct event e;
	fill(&e, KIND_URING_COMPLETE, tid, tgid);
	e.arg0 = BPF_CORE_READ(ctx, user_data);
	e.ret = BPF_CORE_READ(ctx, res);
	submit(&e);
	return 0;
}
