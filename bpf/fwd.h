/* What the forwarding programs other than DR share (nat.h, tunnel.h,
 * icmp.h): the hand-over from the packet path, finding the headers again,
 * incremental checksums (RFC 1624), one hop less, and the way out.
 *
 * These run as programs of their own, tail-called by the packet path once
 * it has found or made the connection (bcc has no BPF-to-BPF calls, and the
 * packet path is near the verifier's limits): each parses the frame again,
 * which costs less than sharing a state the verifier would have to carry. */
#ifndef LVSXDP_FWD_H
#define LVSXDP_FWD_H

#define IP_DF_BE 0x0040		/* htons(IP_DF) */
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41
#define IPPROTO_ICMP_ 1
#define IPPROTO_ICMPV6_ 58

/* The packet path's side: what the program it calls needs, then the call.
 * Returns XDP_DROP, for the caller to count, only when the call failed (no
 * such program loaded). */
static __always_inline int fwd_call(struct xdp_md *ctx, u32 prog, u32 real_idx, u32 svc,
				    int new_conn, u32 mtu)
{
	u32 zero = 0;
	struct lvs_fwd_scratch *s = fwd_scratch.lookup(&zero);

	if (s) {
		s->real = real_idx;
		s->svc = svc;
		s->new_conn = new_conn;
		s->mtu = mtu;
		__builtin_memset(s->err_src, 0, sizeof(s->err_src));
		progs.call(ctx, prog);
	}
	return XDP_DROP;
}

static __always_inline int fwd_too_big(struct xdp_md *ctx, u32 mtu)
{
	fwd_call(ctx, LVS_PROG_TOO_BIG, 0, 0, 0, mtu);
	return count_reason(LVS_R_TOO_BIG, XDP_DROP);
}

static __always_inline int has_vlan(struct ethhdr *eth)
{
	return eth->h_proto == ETH_P_8021Q_BE || eth->h_proto == ETH_P_8021AD_BE;
}

static __always_inline __u32 csum_fold32(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

/* A checksum field after words summing to `delta` replaced others (delta:
 * the new words plus the ones' complements of the old). */
static __always_inline __u16 csum_apply(__u16 check, __u32 delta)
{
	return ~csum_fold32((__u16)~check + delta);
}

static __always_inline __u32 csum_delta16(__u16 old, __u16 new)
{
	return (__u16)~old + (__u32)new;
}

static __always_inline __u32 csum_delta32(__u32 old, __u32 new)
{
	return csum_delta16(old & 0xffff, new & 0xffff) + csum_delta16(old >> 16, new >> 16);
}

/* One hop less (ip_forward, IPVS's decrement_ttl), the IPv4 header
 * checksum updated as ip_decrease_ttl does. */
static __always_inline void fwd_decrease_ttl(void *l3, void *data_end, int family)
{
	if (family == LVS_AF_INET) {
		struct iphdr *ip = l3;
		u32 check;

		if ((void *)(ip + 1) > data_end)
			return;
		check = ip->check;
		check += bpf_htons(0x0100);
		ip->check = check + (check >= 0xffff);
		ip->ttl--;
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return;
		ip6->hop_limit--;
	}
}

/* Out to the real as DR sends it: its MAC, the egress interface's, XDP_TX
 * when that interface is the receiving one, else the devmap. */
static __always_inline int fwd_to_real(struct xdp_md *ctx, struct ethhdr *eth,
				       struct lvs_real *r)
{
	__builtin_memcpy(eth->h_dest, r->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, r->smac, ETH_ALEN);
	if (r->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return tx_ports.redirect_map(r->tx_slot, 0);
}

/* The frame's reals entry and the hand-over; 0 when there is none. */
static __always_inline struct lvs_real *fwd_real(struct lvs_fwd_scratch **sp)
{
	u32 zero = 0, idx;
	struct lvs_fwd_scratch *s = fwd_scratch.lookup(&zero);

	if (!s)
		return 0;
	*sp = s;
	idx = s->real;
	return reals.lookup(&idx);
}

#endif
