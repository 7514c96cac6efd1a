/* IP tunnelling (-i), as ip_vs_tunnel_xmit and ip_vs_tunnel_xmit_v6 do it:
 * the client's packet, one hop less, inside a new IP header from the
 * director's address on the egress interface to the real's - IPv4 in IPv4
 * (IPIP), IPv6 in IPv6 (ip6ip6) - or, with --tun-type gue, inside UDP to
 * --tun-port with a 4-byte GUE header, or, with --tun-type gre, behind a GRE
 * header naming the inner protocol (ipvs_gre_encap: no key, no sequence
 * number; the checksum with --tun-csum only). The outer header takes the
 * inner's DSCP (ECN as INET_ECN_encapsulate has it), TTL and, for IPv4, DF. */
#ifndef LVSXDP_TUNNEL_H
#define LVSXDP_TUNNEL_H

#define GUE_LEN (sizeof(struct udphdr) + 4)
/* udp_flow_src_port's range (ip_local_port_range's default) */
#define GUE_SPORT_MIN 32768
#define GUE_SPORT_MAX 61000
#define IPPROTO_GRE_ 47
#define GRE_CSUM_BE 0x0080	/* htons(GRE_CSUM): the C bit */
#define GRE_LEN 4		/* flags and version, protocol */
#define GRE_CSUM_LEN 4		/* the checksum and a reserved half */
/* The longest inner packet whose bytes inner_sum_read reads (a 9000-byte
 * jumbo frame's), and the longest one Ethernet pads (to 60 bytes): bounds of
 * its loops, for the verifier. */
#ifndef INNER_READ_MAX
#define INNER_READ_MAX 9000
#endif
#define INNER_PADDED_MAX 46

/* The 32-bit halves of 16 bytes the caller has bounds-checked, added up: a
 * ones' complement sum of their 16-bit words, to be folded. */
static __always_inline __u64 sum_16_bytes(void *p)
{
	__u64 a = *(__u64 *)p, b = *(__u64 *)(p + 8);

	return (a & 0xffffffff) + (a >> 32) + (b & 0xffffffff) + (b >> 32);
}

/* The ones' complement sum of an inner packet's bytes, read 16 at a
 * time, for a packet whose headers do not give it (an IPv4 UDP datagram
 * without a checksum), into *out. Returns -1 for a packet longer than
 * INNER_READ_MAX, or one with more than padding after it in the frame. The
 * sum goes out apart from the verdict: a test of the sum's range would make
 * the verifier tell each turn of the loop's way out apart (precision). */
static __always_inline int inner_sum_read(void *l3, void *data_end, __u32 len, __u32 *out)
{
	__u64 sum = 0;
	__u32 i;
	void *p = l3;

	if (len > INNER_READ_MAX)
		return -1;
	/* The last len % 16 bytes first, so that nothing after the loops
	 * needs the cursor (see lvsxdp_tunnel). The frame holds the whole
	 * packet (parse_packet checked). */
	if (len & 8) {
		__u64 *t = l3 + (len & ~15);

		if ((void *)(t + 1) > data_end)
			return -1;
		sum += (*t & 0xffffffff) + (*t >> 32);
	}
	if (len & 4) {
		__u32 *t = l3 + (len & ~7);

		if ((void *)(t + 1) > data_end)
			return -1;
		sum += *t;
	}
	if (len & 2) {
		__u16 *t = l3 + (len & ~3);

		if ((void *)(t + 1) > data_end)
			return -1;
		sum += *t;
	}
	if (len & 1) {
		/* len & ~1, not len - 1: 6.1's verifier loses the bound of
		 * a 32-bit subtraction */
		__u8 *t = l3 + (len & ~1);

		if ((void *)(t + 1) > data_end)
			return -1;
		sum += *t;
	}
	/* Where the packet ends with the frame, 16 bytes a turn and one
	 * test: the verifier keeps a state for each test it cannot decide
	 * (8192 at most) and walks some of what follows from each. */
	if (data_end - l3 == len) {
#pragma clang loop unroll(disable)
		for (i = 0; i < INNER_READ_MAX / 16; i++) {
			if (p + 16 > data_end)
				break;
			sum += sum_16_bytes(p);
			p += 16;
		}
	} else if (len <= INNER_PADDED_MAX) {
		len /= 16;
#pragma clang loop unroll(disable)
		for (i = 0; i < INNER_PADDED_MAX / 16; i++) {
			if (p + 16 > data_end || i >= len)
				break;
			sum += sum_16_bytes(p);
			p += 16;
		}
	} else {
		return -1;
	}
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	*out = csum_fold32(sum);
	return 0;
}

/* The ones' complement sum of the whole inner packet, from its headers
 * alone where it can: a valid IPv4 header sums to 0xffff, a TCP or UDP
 * segment with a valid checksum to the complement of its pseudo-header. An
 * IPv4 UDP datagram without a checksum is read (inner_sum_read). Into *out;
 * -1 when there is none. */
static __always_inline int inner_sum(void *l3, void *data_end, struct packet *pkt, __u32 *out)
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
			return inner_sum_read(l3, data_end, pkt->len, out);
		w = (__u16 *)&ip->saddr;
#pragma unroll
		for (i = 0; i < 4; i++)
			sum += w[i];
		sum += bpf_htons(pkt->tuple.proto) + bpf_htons(l4_len);
		*out = (__u16)~csum_fold32(sum);
		return 0;
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
		*out = csum_fold32(hsum + (__u16)~csum_fold32(sum));
		return 0;
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
	__u32 hdr, encap, sum = 0, h, i;
	__u16 *w;
	__u32 isum = 0;
	int have_isum = 0;
	__u8 tos, ttl, vlan, l2[6];
	__be16 df = 0, sport = 0;
	int v6, gue, gre, csum;
	void *l3, *outer;

	if (parse_packet(ctx, data, data_end, &pkt) >= 0)
		return count_reason(LVS_R_TRUNCATED, XDP_DROP);
	r = fwd_real(&s);
	if (!r || !s)
		return count_reason(LVS_R_NO_REAL, XDP_DROP);
	v6 = pkt.tuple.family == LVS_AF_INET6;
	gue = r->tun_type == LVS_TUN_GUE;
	gre = r->tun_type == LVS_TUN_GRE;
	/* GUE checksums its UDP header with --tun-csum and --tun-remcsum
	 * alike (ip_vs_tunnel_xmit's udp_set_csum): remote checksum offload
	 * adds its option only to a packet whose inner checksum is left to
	 * the hardware (CHECKSUM_PARTIAL), never to a forwarded one, and XDP
	 * sees only those. GRE's checksum is --tun-csum's alone. */
	csum = gre ? r->tun_flags & LVS_TUN_F_CSUM
		   : gue && (r->tun_flags & (LVS_TUN_F_CSUM | LVS_TUN_F_REMCSUM));
	encap = gue ? GUE_LEN : gre ? GRE_LEN + (csum ? GRE_CSUM_LEN : 0) : 0;
	hdr = (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) + encap;
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
	/* the EtherType (and a tag) move to the front with the MACs; the
	 * inner Ethernet header stays ahead of the inner packet, overwritten.
	 * Read before inner_sum: no packet pointer may live past its loop,
	 * whose every way out knows the frame a word longer, or the verifier
	 * walks the rest of the program once for each of them. */
	if ((void *)pkt.eth + 12 + sizeof(l2) > data_end)
		return XDP_DROP;
	__builtin_memcpy(l2, (void *)pkt.eth + 12, sizeof(l2));
	if (csum)
		have_isum = inner_sum(l3, data_end, &pkt, &isum) == 0;
	if (gre && csum && !have_isum) {
		/* longer than inner_sum reads: IPVS would checksum it, this
		 * one goes without (its header the shorter, so it fits) */
		csum = 0;
		hdr -= GRE_CSUM_LEN;
	}
	if (gue) {
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
	if (data + 12 + sizeof(l2) > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, r->mac, ETH_ALEN);
	__builtin_memcpy(data + ETH_ALEN, r->smac, ETH_ALEN);
	__builtin_memcpy(data + 12, l2, sizeof(l2));
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
		o->protocol = gue ? IPPROTO_UDP : gre ? IPPROTO_GRE_ : IPPROTO_IPIP_;
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
		outer += sizeof(struct iphdr);
	} else {
		struct ipv6hdr *o = outer;

		if ((void *)(o + 1) > data_end)
			return XDP_DROP;
		*(__be32 *)o = bpf_htonl(0x60000000 | (__u32)tos << 20);
		o->payload_len = bpf_htons(pkt.len + hdr - sizeof(struct ipv6hdr));
		o->nexthdr = gue ? IPPROTO_UDP : gre ? IPPROTO_GRE_ : IPPROTO_IPV6_;
		o->hop_limit = ttl;
		__builtin_memcpy(&o->saddr, r->tun_saddr, 16);
		__builtin_memcpy(&o->daddr, r->addr, 16);
		w = (__u16 *)&o->saddr;
#pragma unroll
		for (i = 0; i < 16; i++)
			sum += w[i];
		outer += sizeof(struct ipv6hdr);
	}
	if (gue) {
		struct udphdr *udp = outer;
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
		if (have_isum) {
			sum += bpf_htons(IPPROTO_UDP) + bpf_htons(ulen);
			sum += udp->source + udp->dest + udp->len;
			sum += *(__u16 *)g + *(__u16 *)(g + 2) + isum;
			udp->check = ~csum_fold32(sum);
			if (!udp->check)
				udp->check = 0xffff;
		}
	} else if (gre) {
		/* gre_build_header: the inner protocol as an EtherType */
		__be16 *g = outer;

		if ((void *)(g + 4) > data_end)
			return XDP_DROP;
		g[0] = csum ? GRE_CSUM_BE : 0;
		g[1] = v6 ? ETH_P_IPV6_BE : ETH_P_IP_BE;
		if (csum) {
			/* over the GRE header and the whole inner packet, and
			 * unlike UDP's a checksum of 0 stays 0 */
			g[2] = ~csum_fold32((__u32)g[0] + g[1] + isum);
			g[3] = 0;
		}
	}
	count_forward(s->svc, LVS_REF_IDX(r->ref), pkt.len, s->new_conn);
	if (r->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return tx_ports.redirect_map(r->tx_slot, 0);
}

#endif
