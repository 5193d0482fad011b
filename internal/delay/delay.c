//go:build ignore

// A test-only network-path delay: a tc program (tcx egress, or ingress:
// both see the packet from its link-layer header) that busy-waits
// delay_ns on every data-carrying TCP segment of one direction of one
// connection. This kernel has no netem (CONFIG_NET_SCH_NETEM is off), and
// on loopback egress runs inside the sender's send system call, so the
// delay lands in the sender's *_net component of the breakdown: a known
// truth to check the breakdown against.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Set before load: match segments whose TCP source (match_sport != 0) or
// destination (match_dport != 0) port is this one, host order.
volatile const __u16 match_sport = 0;
volatile const __u16 match_dport = 0;
volatile const __u64 delay_ns = 0;

// delayed counts the segments that were held back, so the test can check
// that the injector saw its traffic.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} delayed SEC(".maps");

struct spin_ctx {
	__u64 until;
};

static long spin_step(__u64 i, void *data)
{
	struct spin_ctx *c = data;
	return bpf_ktime_get_ns() >= c->until; // 1 stops the loop
}

SEC("tc")
int delay_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return TC_ACT_UNSPEC;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return TC_ACT_UNSPEC;
	if (match_sport && bpf_ntohs(tcp->source) != match_sport)
		return TC_ACT_UNSPEC;
	if (match_dport && bpf_ntohs(tcp->dest) != match_dport)
		return TC_ACT_UNSPEC;
	// Only segments with payload: pure ACKs are not on the round trip's path.
	__u32 hdrs = ip->ihl * 4 + tcp->doff * 4;
	if (bpf_ntohs(ip->tot_len) <= hdrs)
		return TC_ACT_UNSPEC;

	struct spin_ctx c = { .until = bpf_ktime_get_ns() + delay_ns };
	bpf_loop(1 << 23, spin_step, &c, 0);
	__u32 k = 0;
	__u64 *n = bpf_map_lookup_elem(&delayed, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
