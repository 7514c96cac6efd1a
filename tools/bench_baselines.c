/* Baselines for tools/bench_xdp.py: what any XDP program pays before it does
 * anything of lvsxdp's. Both start with the same bench_restore() prologue as
 * the benchmark build of lvsxdp (bpf/bench.h, BENCH_ETH_W0/W1 from the tool),
 * so differences between them and lvsxdp are lvsxdp's own work. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/tcp.h>

#include "bench.h"

/* The floor: the test loop, the program call and the prologue. */
int bare_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	bench_restore(data, data_end);
	return XDP_TX;
}

/* The least a layer-4 forwarder must do: find the TCP header behind
 * Ethernet and IPv4 (bounds-checked, as the verifier demands), then send the
 * frame back out with its MACs swapped. */
int parse_swap_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *tcp;
	unsigned char mac[ETH_ALEN];

	bench_restore(data, data_end);
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->ihl < 5 || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	if (tcp->doff < 5)
		return XDP_PASS;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return XDP_TX;
}

/* parse_swap_tx plus what a per-packet route lookup would add: the kernel's
 * FIB and neighbour table asked for the destination (bpf_fib_lookup, main
 * table directly, as a DR director would ask for a real). lvsxdp caches
 * that answer per real instead (lvsxdp/routes.py); this case says what the
 * cache saves. The MACs are swapped whatever the answer, so the frame out
 * is parse_swap_tx's. */
int parse_fib_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *tcp;
	unsigned char mac[ETH_ALEN];
	long rc;

	bench_restore(data, data_end);
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->ihl < 5 || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	if (tcp->doff < 5)
		return XDP_PASS;
	fib.family = 2;	/* AF_INET */
	fib.l4_protocol = ip->protocol;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_DIRECT);
	if (rc < 0)
		return XDP_ABORTED;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return XDP_TX;
}

/* The minimal connection-tracking DR forwarder the issue measures lvsxdp's
 * known connection against: parse, one lookup of the 5-tuple in a hash table
 * as large as lvsxdp's IPv4 connection table (same key and value sizes), the
 * MACs from what it finds, XDP_TX. No state, no counters, no TTL. */
struct ct_key {
	u32 saddr;
	u32 daddr;
	u16 sport;
	u16 dport;
	u8 proto;
	u8 pad[3];
};

struct ct_val {
	u8 dmac[ETH_ALEN];
	u8 smac[ETH_ALEN];
	u8 pad[12];
};

BPF_HASH(ct, struct ct_key, struct ct_val, BENCH_CT_MAX);

int ct_dr_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ct_key k = {};
	struct ct_val *v;
	struct iphdr *ip;
	struct tcphdr *tcp;

	bench_restore(data, data_end);
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->ihl < 5 || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	if (tcp->doff < 5)
		return XDP_PASS;
	k.saddr = ip->saddr;
	k.daddr = ip->daddr;
	k.sport = tcp->source;
	k.dport = tcp->dest;
	k.proto = IPPROTO_TCP;
	v = ct.lookup(&k);
	if (!v)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, v->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, v->smac, ETH_ALEN);
	return XDP_TX;
}
