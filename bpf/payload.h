// The layout of the watch's payload records (payload.c). bpf2go generates
// it as bpf.PayloadPayload (-type payload); naturally aligned with
// explicit padding, so that it is the same on every architecture.
#ifndef PAYLOAD_H
#define PAYLOAD_H

// PAYLOAD_CAP is how many bytes of a send (or receive) are captured: the
// whole of a small request (a RESP GET or SET of a short key, a memcached
// get, a load tool's HTTP GET with its headers) and the start of the next
// one when several share a send, while the copy stays one short read.
#define PAYLOAD_CAP 256

struct payload {
	__u64 ts;    // the syscall's exit, bpf_ktime_get_ns()
	__u64 sk;    // struct sock address
	__s64 total; // the syscall's return: the bytes sent or received
	__u32 tid;
	__u32 tgid;
	__u16 lport; // local port, host order
	__u16 rport; // remote port, host order
	__u16 cap;   // bytes of data captured (≤ PAYLOAD_CAP)
	__u8 recv;   // 1: a receive; 0: a send
	__u8 pad;
	__u32 nr;    // syscall number
	__u32 pad2;
	__u8 data[PAYLOAD_CAP];
};

#endif
