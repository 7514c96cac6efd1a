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

#ifdef BENCH_EMB_GATE
/* The embryonic store's gate (tools/bench_xdp.py --gate): what one insert of
 * a new connection costs in an LRU hash as large as syn4 (16 B key, 24 B
 * value), full and evicting or not full, against the same insert into a
 * 2-way set-associative array of the same capacity with a seqlock per way
 * (bpf/emb.h's protocol). Each program parses as ct_dr_tx and builds the
 * key; gate_parse stops there, so that the difference is the insert. */
struct gate_val {
	u64 expires;
	u64 vouched;
	u32 real;
	u16 svc;
	u8 state;
	u8 flags;
};

struct gate_way {
	u64 seq;	/* 0 never written, odd being written, even stable */
	struct ct_key key;
	struct gate_val val;
	u8 pad[16];
};

struct gate_set {
	struct gate_way way[2];
};

#define GATE_LRU_MAX 262144
#ifndef GATE_SET_BITS
#define GATE_SET_BITS 17
#endif
BPF_TABLE("lru_hash", struct ct_key, struct gate_val, gate_lru_full, GATE_LRU_MAX);
BPF_TABLE("lru_hash", struct ct_key, struct gate_val, gate_lru_empty, GATE_LRU_MAX);
#ifndef GATE_EMB_FLAGS
#define GATE_EMB_FLAGS BPF_F_MMAPABLE
#endif
BPF_F_TABLE("array", u32, struct gate_set, gate_emb_full, 1 << GATE_SET_BITS, GATE_EMB_FLAGS);
BPF_F_TABLE("array", u32, struct gate_set, gate_emb_empty, 1 << GATE_SET_BITS, GATE_EMB_FLAGS);
BPF_ARRAY(gate_lost, u64, 1);

static __always_inline int gate_key(struct xdp_md *ctx, struct ct_key *k)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *tcp;

	bench_restore(data, data_end);
	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -1;
	if (ip->ihl < 5 || ip->protocol != IPPROTO_TCP)
		return -1;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return -1;
	if (tcp->doff < 5)
		return -1;
	k->saddr = ip->saddr;
	k->daddr = ip->daddr;
	k->sport = tcp->source;
	k->dport = tcp->dest;
	k->proto = IPPROTO_TCP;
	return 0;
}

static __always_inline void gate_val_new(struct gate_val *v, u64 now)
{
	v->expires = now + 60000000000ULL;
	v->vouched = v->expires;
	v->real = 1;
	v->svc = 0;
	v->state = 3;
	v->flags = 1;
}

int gate_parse(struct xdp_md *ctx)
{
	struct ct_key k = {};
	struct gate_val v = {};

	if (gate_key(ctx, &k))
		return XDP_PASS;
	gate_val_new(&v, bpf_ktime_get_coarse_ns());
	asm volatile("" : : "r"(&k), "r"(&v) : "memory");
	return XDP_TX;
}

int gate_lru_full_prog(struct xdp_md *ctx)
{
	struct ct_key k = {};
	struct gate_val v = {};

	if (gate_key(ctx, &k))
		return XDP_PASS;
	gate_val_new(&v, bpf_ktime_get_coarse_ns());
	if (gate_lru_full.update(&k, &v))
		return XDP_DROP;
	return XDP_TX;
}

int gate_lru_empty_prog(struct xdp_md *ctx)
{
	struct ct_key k = {};
	struct gate_val v = {};

	if (gate_key(ctx, &k))
		return XDP_PASS;
	gate_val_new(&v, bpf_ktime_get_coarse_ns());
	if (gate_lru_empty.update(&k, &v))
		return XDP_DROP;
	return XDP_TX;
}


static __always_inline u32 gate_hash(struct ct_key *k)
{
	u32 h = (k->saddr ^ 0x5bd1e995u) * 0x9E3779B1u;

	h = (h ^ k->daddr) * 0x85EBCA77u;
	h = (h ^ ((u32)k->sport | (u32)k->dport << 16)) * 0xC2B2AE3Du;
	h = (h ^ k->proto ^ 0x5bd1e995u) * 0x27D4EB2Fu;
	return h >> (32 - GATE_SET_BITS);
}

static __always_inline int gate_same(struct ct_key *a, struct ct_key *b)
{
	return *(u64 *)a == *(u64 *)b && *((u64 *)a + 1) == *((u64 *)b + 1);
}

/* Insert: the way with the key, else an unused or dead one, else the one
 * that expires first; claimed with cmpxchg seq even -> odd, written, seq
 * even again. A lost race gives up (the caller counts it). */
static __always_inline int gate_emb_insert(struct gate_set *s, struct ct_key *k,
					   struct gate_val *v, u64 now)
{
	struct gate_way *w0 = &s->way[0], *w1 = &s->way[1], *w;
	u64 q0 = *(volatile u64 *)&w0->seq, q1 = *(volatile u64 *)&w1->seq, q;

	if (q0 && !(q0 & 1) && gate_same(&w0->key, k))
		w = w0, q = q0;
	else if (q1 && !(q1 & 1) && gate_same(&w1->key, k))
		w = w1, q = q1;
	else if (!q0 || (!(q0 & 1) && w0->val.expires <= now))
		w = w0, q = q0;
	else if (!q1 || (!(q1 & 1) && w1->val.expires <= now))
		w = w1, q = q1;
	else if (w0->val.expires <= w1->val.expires)
		w = w0, q = q0;
	else
		w = w1, q = q1;
	if ((q & 1) || __sync_val_compare_and_swap(&w->seq, q, q + 1) != q)
		return -1;
	w->key = *k;
	w->val = *v;
	__sync_fetch_and_add(&w->seq, 1);
	return 0;
}

int gate_emb_full_prog(struct xdp_md *ctx)
{
	struct ct_key k = {};
	struct gate_val v = {};
	struct gate_set *s;
	u64 now = bpf_ktime_get_coarse_ns();
	u32 idx;

	if (gate_key(ctx, &k))
		return XDP_PASS;
	gate_val_new(&v, now);
	idx = gate_hash(&k);
	s = gate_emb_full.lookup(&idx);
	if (!s)
		return XDP_PASS;
	if (gate_emb_insert(s, &k, &v, now)) {
		u32 zero = 0;
		u64 *lost = gate_lost.lookup(&zero);

		if (lost)
			__sync_fetch_and_add(lost, 1);
		return XDP_DROP;
	}
	return XDP_TX;
}

int gate_emb_empty_prog(struct xdp_md *ctx)
{
	struct ct_key k = {};
	struct gate_val v = {};
	struct gate_set *s;
	u64 now = bpf_ktime_get_coarse_ns();
	u32 idx;

	if (gate_key(ctx, &k))
		return XDP_PASS;
	gate_val_new(&v, now);
	idx = gate_hash(&k);
	s = gate_emb_empty.lookup(&idx);
	if (!s)
		return XDP_PASS;
	if (gate_emb_insert(s, &k, &v, now)) {
		u32 zero = 0;
		u64 *lost = gate_lost.lookup(&zero);

		if (lost)
			__sync_fetch_and_add(lost, 1);
		return XDP_DROP;
	}
	return XDP_TX;
}

/* The floor of any insert into the store: find the set and read a way's
 * sequence word (one random line of the array). */
int gate_emb_read_prog(struct xdp_md *ctx)
{
	struct ct_key k = {};
	struct gate_val v = {};
	struct gate_set *s;
	u64 now = bpf_ktime_get_coarse_ns();
	u32 idx;

	if (gate_key(ctx, &k))
		return XDP_PASS;
	gate_val_new(&v, now);
	idx = gate_hash(&k);
	s = gate_emb_full.lookup(&idx);
	if (!s)
		return XDP_PASS;
	if (*(volatile u64 *)&s->way[0].seq == 1)
		return XDP_DROP;
	return XDP_TX;
}
#endif
