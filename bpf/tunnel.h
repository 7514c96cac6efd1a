/* IP tunnelling (-i), as ip_vs_tunnel_xmit and ip_vs_tunnel_xmit_v6 do it:
 * the client's packet, one hop less, inside a new IP header from the
 * director's address on the egress interface to the real's - IPv4 in IPv4
 * (IPIP), IPv6 in IPv6 (ip6ip6) - or, with --tun-type gue, inside UDP to
 * --tun-port with a 4-byte GUE header. The outer header takes the inner's
 * DSCP (ECN as INET_ECN_encapsulate has it), TTL and, for IPv4, DF. */
#ifndef LVSXDP_TUNNEL_H
#define LVSXDP_TUNNEL_H

#define GUE_LEN (sizeof(struct udphdr) + 4)
/* udp_flow_src_port's range (ip_local_port_range's default) */
#define GUE_SPORT_MIN 32768
#define GUE_SPORT_MAX 61000

/* The ones' complement sum of the whole inner packet, from its headers
 * alone: a valid IPv4 header sums to 0xffff, a TCP or UDP segment with a
 * valid checksum to the complement of its pseudo-header. Returns -1 where
 * that does not hold (an IPv4 UDP datagram without a checksum). */
static __always_inline long inner_sum(void *l3, void *data_end, struct packet *pkt)
{
	__u32 sum = 0, l4_len;
	__u16 *w;
	int i;

	if (pkt->tuple.family == LVS_AF_INET) {
		struct iphdr *ip = l3;
		struct udphdr *udp;

		if ((void *)(ip + 1) > data_end)
			return -1;
		l4_len = pkt->len - ip->ihl * 4;
		udp = l3 + ip->ihl * 4;
		if ((void *)(udp + 1) > data_end)
			return -1;
		if (pkt->tuple.proto == IPPROTO_UDP && !udp->check)
			return -1;
		w = (__u16 *)&ip->saddr;
#pragma unroll
		for (i = 0; i < 4; i++)
			sum += w[i];
		sum += bpf_htons(pkt->tuple.proto) + bpf_htons(l4_len);
		return (__u16)~csum_fold32(sum);
	}
	{
		struct ipv6hdr *ip6 = l3;
		__u32 hsum = 0;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		w = (__u16 *)ip6;
#pragma unroll
		for (i = 0; i < 20; i++)
			hsum += w[i];
		w = (__u16 *)&ip6->saddr;
#pragma unroll
		for (i = 0; i < 16; i++)
			sum += w[i];
		sum += bpf_htons(pkt->tuple.proto) + ip6->payload_len;
		return csum_fold32(hsum + (__u16)~csum_fold32(sum));
	}
}

/* INET_ECN_encapsulate: the outer header carries the inner's DSCP and ECN,
 * a congestion mark (CE) as ECT(0). */
static __always_inline __u8 ecn_encapsulate(__u8 tos)
{
	return (tos & 3) == 3 ? (tos & ~3) | 2 : tos;
}

/* LVS_PROG_TUNNEL */
int lvsxdp_tunnel(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lvs_fwd_scratch *s = 0;
	struct packet pkt = {};
	struct lvs_real *r;
	__u32 hdr, sum = 0, h, i;
	__u16 *w;
	long isum = -1;
	__u8 tos, ttl, vlan;
	__be16 df = 0, sport = 0;
	int v6, gue;
	void *l3, *outer;

	if (parse_packet(ctx, data, data_end, &pkt) >= 0)
		return count_reason(LVS_R_TRUNCATED, XDP_DROP);
	r = fwd_real(&s);
	if (!r || !s)
		return count_reason(LVS_R_NO_REAL, XDP_DROP);
	v6 = pkt.tuple.family == LVS_AF_INET6;
	gue = r->tun_type == LVS_TUN_GUE;
	hdr = (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) + (gue ? GUE_LEN : 0);
	if (pkt.len + hdr > r->mtu)
		return fwd_too_big(ctx, r->mtu > hdr ? r->mtu - hdr : 0);
	vlan = has_vlan(pkt.eth);
	l3 = pkt.eth + 1;
	if (vlan)
		l3 += sizeof(struct vlan_hdr);
	fwd_decrease_ttl(l3, data_end, pkt.tuple.family);
	if (v6) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return XDP_DROP;
		tos = bpf_ntohs(*(__be16 *)ip6) >> 4;
		ttl = ip6->hop_limit;
	} else {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end)
			return XDP_DROP;
		tos = ip->tos;
		ttl = ip->ttl;
		df = ip->frag_off & IP_DF_BE;
	}
	tos = ecn_encapsulate(tos);
	if (gue) {
		if (r->tun_flags & LVS_TUN_F_CSUM)
			isum = inner_sum(l3, data_end, &pkt);
		/* the flow picks the source port, so that the real's
		 * receive side spreads flows over its queues */
		h = pkt.tuple.proto ^ ((__u32)pkt.tuple.cport << 16 | pkt.tuple.vport);
#pragma unroll
		for (i = 0; i < 4; i++)
			h ^= pkt.tuple.caddr[i] ^ pkt.tuple.vaddr[i];
		h *= 0x9e3779b1;
		sport = bpf_htons((__u16)((((__u64)h * (GUE_SPORT_MAX - GUE_SPORT_MIN)) >> 32) +
					  GUE_SPORT_MIN));
	}

	if (bpf_xdp_adjust_head(ctx, -(int)hdr))
		return count_reason(LVS_R_NO_HEADROOM, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* the Ethernet header (and tag) moves to the front; the inner one
	 * stays ahead of the inner packet to be overwritten */
	if (data + 12 + 6 + 20 > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, r->mac, ETH_ALEN);
	__builtin_memcpy(data + ETH_ALEN, r->smac, ETH_ALEN);
	if (hdr == sizeof(struct iphdr)) {
		__builtin_memcpy(data + 12, data + 12 + sizeof(struct iphdr), 6);
	} else if (hdr == sizeof(struct iphdr) + GUE_LEN) {
		if (data + 12 + 6 + sizeof(struct iphdr) + GUE_LEN > data_end)
			return XDP_DROP;
		__builtin_memcpy(data + 12, data + 12 + sizeof(struct iphdr) + GUE_LEN, 6);
	} else if (hdr == sizeof(struct ipv6hdr)) {
		if (data + 12 + 6 + sizeof(struct ipv6hdr) > data_end)
			return XDP_DROP;
		__builtin_memcpy(data + 12, data + 12 + sizeof(struct ipv6hdr), 6);
	} else {
		if (data + 12 + 6 + sizeof(struct ipv6hdr) + GUE_LEN > data_end)
			return XDP_DROP;
		__builtin_memcpy(data + 12, data + 12 + sizeof(struct ipv6hdr) + GUE_LEN, 6);
	}
	outer = data + sizeof(struct ethhdr);
	if (vlan)
		outer += sizeof(struct vlan_hdr);
	if (!v6) {
		struct iphdr *o = outer;

		if ((void *)(o + 1) > data_end)
			return XDP_DROP;
		o->version = 4;
		o->ihl = 5;
		o->tos = tos;
		o->tot_len = bpf_htons(pkt.len + hdr);
		o->id = 0;
		o->frag_off = df;
		o->ttl = ttl;
		o->protocol = gue ? IPPROTO_UDP : IPPROTO_IPIP_;
		o->check = 0;
		o->saddr = r->tun_saddr[0];
		o->daddr = r->addr[0];
		w = (__u16 *)o;
#pragma unroll
		for (i = 0; i < 10; i++)
			sum += w[i];
		o->check = ~csum_fold32(sum);
		/* the UDP pseudo-header from here on */
		sum = 0;
#pragma unroll
		for (i = 6; i < 10; i++)
			sum += w[i];
	} else {
		struct ipv6hdr *o = outer;

		if ((void *)(o + 1) > data_end)
			return XDP_DROP;
		*(__be32 *)o = bpf_htonl(0x60000000 | (__u32)tos << 20);
		o->payload_len = bpf_htons(pkt.len + hdr - sizeof(struct ipv6hdr));
		o->nexthdr = gue ? IPPROTO_UDP : IPPROTO_IPV6_;
		o->hop_limit = ttl;
		__builtin_memcpy(&o->saddr, r->tun_saddr, 16);
		__builtin_memcpy(&o->daddr, r->addr, 16);
		w = (__u16 *)&o->saddr;
#pragma unroll
		for (i = 0; i < 16; i++)
			sum += w[i];
	}
	if (gue) {
		struct udphdr *udp = outer + (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
		__u8 *g = (__u8 *)(udp + 1);
		__u16 ulen = pkt.len + GUE_LEN;

		if ((void *)(g + 4) > data_end)
			return XDP_DROP;
		udp->source = sport;
		udp->dest = r->tun_port;
		udp->len = bpf_htons(ulen);
		udp->check = 0;
		g[0] = 0;	/* version 0, no options */
		g[1] = v6 ? IPPROTO_IPV6_ : IPPROTO_IPIP_;
		g[2] = 0;
		g[3] = 0;
		if (isum >= 0) {
			sum += bpf_htons(IPPROTO_UDP) + bpf_htons(ulen);
			sum += udp->source + udp->dest + udp->len;
			sum += *(__u16 *)g + *(__u16 *)(g + 2) + (__u32)isum;
			udp->check = ~csum_fold32(sum);
			if (!udp->check)
				udp->check = 0xffff;
		}
	}
	count_forward(s->svc, LVS_REF_IDX(r->ref), pkt.len, s->new_conn);
	if (r->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return tx_ports.redirect_map(r->tx_slot, 0);
}

#endif
