package probe

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/volleyscope/volleyscope/bpf"
)

// Kind is the type of a kernel event.
type Kind uint16

// Event kinds; the fields each one fills are described on Event.
const (
	KindSyscall       Kind = 1  // completed syscall of a tracked thread: TS = exit, Arg0 = entry time, Arg1 = nr, Ret, SK/ports of the socket it touched
	KindSockSend      Kind = 2  // sock_send_length (or fexit/kretprobe tcp_sendmsg), where no send-start hook works: SK, ports, Ret = bytes
	KindSockRecv      Kind = 3  // sock_recv_length (or tcp_recvmsg) that moved data, outside a traced syscall: same
	KindDataReady     Kind = 4  // sk_data_ready (or sock_def_readable) on the receiving socket; TID = current (softirq: often the sender)
	KindWaking        Kind = 5  // sched_waking of a tracked thread: TID = waker, Arg0 = woken tid, Arg1 = woken tgid
	KindWakeup        Kind = 6  // sched_wakeup: same fields
	KindSwitch        Kind = 7  // sched_switch involving a tracked thread: Arg0 = prev tid, Arg1 = next tid, Ret = prev state (0: preempted)
	KindFork          Kind = 8  // sched_process_fork of a tracked process: Arg0 = parent tid, Arg1 = child pid
	KindExit          Kind = 9  // sched_process_exit of a tracked thread
	KindSockState     Kind = 10 // inet_sock_set_state: SK, ports, Arg0 = old, Arg1 = new TCP state
	KindUringSubmit   Kind = 11 // io_uring_submit_req: Arg0 = user_data, Arg1 = opcode
	KindUringComplete Kind = 12 // io_uring_complete: Arg0 = user_data, Ret = res
	KindSendStart     Kind = 13 // a TCP send starts (tcp_sendmsg_locked, or tcp_sendmsg entry): SK, ports; TID = sender
	KindIrq           Kind = 14 // interrupts of tracked thread TID since its previous record: Arg0 = first one's start, TS = last one's end, SK = their total ns, Arg1 = the longest (an Interrupt), Ret = how many
	KindNetXmit       Kind = 15 // a data segment of a followed socket handed to a device (net_dev_start_xmit, or net_dev_queue): SK, ports (the sender's socket), Arg0 = TCP sequence number, Arg1 = ifindex, Ret = payload bytes
	KindNetRecv       Kind = 16 // receive processing of a data segment to or from a followed port starts (netif_receive_skb): ports as the receiving socket sees them, Arg0, Arg1, Ret as KindNetXmit; TID = current (softirq)

	// Records that fold two of the above into one in the kernel. Run
	// hands each to its callback as the two events it holds (expand): no
	// Event a consumer sees has these kinds.
	KindNetRecvReady Kind = 17 // a KindNetRecv and the KindDataReady it led to: the data-ready's fields, Arg0 = the receive's TS, Arg1 = its Arg0 | its Arg1 << 32, Ret = its Ret
	KindSendXmit     Kind = 18 // a KindSendStart and the KindNetXmit that followed it: the transmit's fields, Arg0 = the send start's TS, Arg1 = the transmit's Arg0 | Arg1 << 32
)

// A KindSwitch record's SK is, for a preempted prev, the time at the end
// of its stretch on the CPU that the scheduler did not credit to it: its
// preemption began that long before the switch (probe.c, on_switch).

var kindNames = map[Kind]string{
	KindSyscall: "syscall", KindSockSend: "sock_send", KindSockRecv: "sock_recv", KindDataReady: "data_ready",
	KindWaking: "waking", KindWakeup: "wakeup", KindSwitch: "switch", KindFork: "fork", KindExit: "exit",
	KindSockState: "sock_state", KindUringSubmit: "uring_submit", KindUringComplete: "uring_complete",
	KindSendStart: "send_start", KindIrq: "irq", KindNetXmit: "net_xmit", KindNetRecv: "net_recv",
	KindNetRecvReady: "net_recv_ready", KindSendXmit: "send_xmit",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind_%d", uint16(k))
}

// Event is one decoded kernel record (struct event in bpf/volley.h). It is
// fixed-size and pointer-free, so decoding allocates nothing.
type Event struct {
	TS    uint64 // bpf_ktime_get_ns(): CLOCK_MONOTONIC ns, the load generator's clock
	SK    uint64 // struct sock address, 0 if none
	Arg0  uint64
	Arg1  uint64
	TID   uint32 // current task's thread id when the event fired
	TGID  uint32
	Ret   int32
	CPU   uint16
	Kind  Kind
	Lport uint16 // socket's local port, host order
	Rport uint16 // socket's remote port, host order
	_     uint32
}

// EventSize is the size of a record: sizeof(struct event), from the type
// bpf2go generated (bpf.ProbeEvent).
const EventSize = int(unsafe.Sizeof(bpf.ProbeEvent{}))

// Offsets of struct event's fields, from bpf.ProbeEvent. The last field,
// seq, is the per-CPU rings' commit marker (offSeq, rings.go); Event has
// no use for it.
const (
	offTS    = unsafe.Offsetof(bpf.ProbeEvent{}.Ts)
	offSK    = unsafe.Offsetof(bpf.ProbeEvent{}.Sk)
	offArg0  = unsafe.Offsetof(bpf.ProbeEvent{}.Arg0)
	offArg1  = unsafe.Offsetof(bpf.ProbeEvent{}.Arg1)
	offTID   = unsafe.Offsetof(bpf.ProbeEvent{}.Tid)
	offTGID  = unsafe.Offsetof(bpf.ProbeEvent{}.Tgid)
	offRet   = unsafe.Offsetof(bpf.ProbeEvent{}.Ret)
	offCPU   = unsafe.Offsetof(bpf.ProbeEvent{}.Cpu)
	offKind  = unsafe.Offsetof(bpf.ProbeEvent{}.Kind)
	offLport = unsafe.Offsetof(bpf.ProbeEvent{}.Lport)
	offRport = unsafe.Offsetof(bpf.ProbeEvent{}.Rport)
)

// ErrShortRecord is returned for a record of the wrong size.
var ErrShortRecord = fmt.Errorf("probe: record is not %d bytes", EventSize)

// Decode fills e from one raw record (little-endian, the layout of struct
// event).
func Decode(b []byte, e *Event) error {
	if len(b) != EventSize {
		return fmt.Errorf("%w: got %d", ErrShortRecord, len(b))
	}
	le := binary.LittleEndian
	e.TS = le.Uint64(b[offTS:])
	e.SK = le.Uint64(b[offSK:])
	e.Arg0 = le.Uint64(b[offArg0:])
	e.Arg1 = le.Uint64(b[offArg1:])
	e.TID = le.Uint32(b[offTID:])
	e.TGID = le.Uint32(b[offTGID:])
	e.Ret = int32(le.Uint32(b[offRet:]))
	e.CPU = le.Uint16(b[offCPU:])
	e.Kind = Kind(le.Uint16(b[offKind:]))
	e.Lport = le.Uint16(b[offLport:])
	e.Rport = le.Uint16(b[offRport:])
	return nil
}

// expandLast is expand for the last event of batch, in place: a folded
// record becomes its two events, which needs one more slot than
// len(batch) (the caller keeps it free).
func expandLast(batch []Event) []Event {
	last := len(batch) - 1
	switch batch[last].Kind {
	case KindNetRecvReady, KindSendXmit:
	default:
		return batch
	}
	e := batch[last]
	batch = batch[:last]
	expand(&e, func(x *Event) { batch = append(batch, *x) })
	return batch
}

// expand hands fn the events of one decoded record e: e itself, or for a
// folded record (KindNetRecvReady, KindSendXmit) the two records it
// folds, earlier first, each field as the kernel would have written it
// unfolded (bpf/probe.c: on_netif_receive, on_data_ready, on_sock_len,
// on_xmit). It reuses e for both.
func expand(e *Event, fn func(*Event)) {
	switch e.Kind {
	case KindNetRecvReady:
		ready := *e
		*e = Event{TS: ready.Arg0, Arg0: ready.Arg1 & 0xffffffff, Arg1: ready.Arg1 >> 32, TID: ready.TID, TGID: ready.TGID,
			Ret: ready.Ret, CPU: ready.CPU, Kind: KindNetRecv, Lport: ready.Lport, Rport: ready.Rport}
		fn(e)
		*e = Event{TS: ready.TS, SK: ready.SK, TID: ready.TID, TGID: ready.TGID, CPU: ready.CPU, Kind: KindDataReady,
			Lport: ready.Lport, Rport: ready.Rport}
		fn(e)
	case KindSendXmit:
		xmit := *e
		// A send start's Ret is always 1 (on_send_start).
		*e = Event{TS: xmit.Arg0, SK: xmit.SK, TID: xmit.TID, TGID: xmit.TGID, Ret: 1, CPU: xmit.CPU, Kind: KindSendStart,
			Lport: xmit.Lport, Rport: xmit.Rport}
		fn(e)
		xmit.Kind, xmit.Arg0, xmit.Arg1 = KindNetXmit, xmit.Arg1&0xffffffff, xmit.Arg1>>32
		*e = xmit
		fn(e)
	default:
		fn(e)
	}
}

// Encode writes e in the record layout (seq 0); the recorder and tests use
// it. b must hold EventSize bytes.
func Encode(b []byte, e *Event) {
	le := binary.LittleEndian
	le.PutUint64(b[offTS:], e.TS)
	le.PutUint64(b[offSK:], e.SK)
	le.PutUint64(b[offArg0:], e.Arg0)
	le.PutUint64(b[offArg1:], e.Arg1)
	le.PutUint32(b[offTID:], e.TID)
	le.PutUint32(b[offTGID:], e.TGID)
	le.PutUint32(b[offRet:], uint32(e.Ret))
	le.PutUint16(b[offCPU:], e.CPU)
	le.PutUint16(b[offKind:], uint16(e.Kind))
	le.PutUint16(b[offLport:], e.Lport)
	le.PutUint16(b[offRport:], e.Rport)
	le.PutUint32(b[offSeq:], 0)
}

// ShiftTimes adds d to every field of e that is a time on the clock of
// the host that recorded it: TS, KindSyscall's Arg0 (entry),
// KindIrq's Arg0 (the first interrupt's start), and a folded record's
// Arg0 (its first record's TS; Run never hands one on, but a stream
// of raw records may hold them). A source on another host
// maps its events onto the controller's clock with it. Durations stay as
// they are (KindIrq's and KindSwitch's SK), and so does every other
// field: no other kind carries a time (bpf/probe.c: fill, on_syscall_exit,
// irq_flush, on_data_ready, on_xmit).
func (e *Event) ShiftTimes(d int64) {
	e.TS += uint64(d)
	switch e.Kind {
	case KindSyscall, KindIrq, KindNetRecvReady, KindSendXmit:
		e.Arg0 += uint64(d)
	}
}

// OnSocketSide says whether the socket e names is the server's (its local
// port is serverPort) or a client's (its remote port is); ok is false for
// an event that names no socket, or when both ports are serverPort (a
// client bound to the server's port number cannot be told apart by
// ports). Every kind that names a socket gives its ports as that socket
// sees them, the socket being on the host the event fired on: the
// sender's for KindNetXmit, KindSendStart and KindSockSend, the
// receiver's for KindNetRecv (read from the packet and swapped),
// KindDataReady and KindSockRecv. So when two "hosts" are namespaces of
// one kernel, whose probe sees both, each keeps the events of its own
// side. TID is no guide there: a KindDataReady or KindNetRecv often
// runs in the sender's softirq, on the other side's thread.
func (e *Event) OnSocketSide(serverPort uint16) (server, ok bool) {
	if serverPort == 0 || !e.Kind.namesSocket() {
		return false, false
	}
	l, r := e.Lport == serverPort, e.Rport == serverPort
	switch {
	case l && !r:
		return true, true
	case r && !l:
		return false, true
	}
	return false, false
}

// namesSocket says whether events of kind k carry a socket's ports
// (KindSyscall's only when the syscall touched one: zero ports otherwise).
func (k Kind) namesSocket() bool {
	switch k {
	case KindSyscall, KindSockSend, KindSockRecv, KindDataReady, KindSockState, KindSendStart, KindNetXmit, KindNetRecv,
		KindNetRecvReady, KindSendXmit:
		return true
	}
	return false
}
