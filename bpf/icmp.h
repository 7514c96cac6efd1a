/* A packet larger than the way to its real allows (the egress MTU, less a
 * tunnel's headers) is answered as IPVS answers it (ensure_mtu_is_adequate):
 * ICMP fragmentation needed, or ICMPv6 packet too big, with that MTU, from
 * the address the client asked for, back out of the receiving interface to
 * the MAC the packet came from. The error quotes what icmp_send and
 * icmp6_send quote: the packet's first 548 bytes (576 less the headers),
 * or its first 1232 (1280 less the headers). An IPv4 packet without DF is
 * not answered: IPVS would fragment it, which XDP cannot; it is dropped. */
#ifndef LVSXDP_ICMP_H
#define LVSXDP_ICMP_H

#define ICMP_QUOTE_MAX 548	/* 576 - sizeof(iphdr) - sizeof(icmphdr) */
#define ICMP6_QUOTE_MAX 1232	/* IPV6_MIN_MTU - sizeof(ipv6hdr) - sizeof(icmp6hdr) */
#define ICMP_ERR_TTL 64		/* sysctl_ip_default_ttl, IPv6's default hop limit */

/* The ones' complement sum of the bytes from p to the end of the frame, an
 * odd last byte padded with zero (at most 1280 bytes: what the errors hold). */
static __always_inline __u32 sum_to_end(void *p, void *data_end)
{
	__u32 sum = 0;
	int i;

#pragma clang loop unroll(disable)
	for (i = 0; i < 640; i++) {
		if (p + 2 > data_end)
			break;
		sum += *(__u16 *)p;
		p += 2;
	}
	if (p + 1 <= data_end)
		sum += *(__u8 *)p;
	return sum;
}

/* LVS_PROG_TOO_BIG: the MTU to report is in fwd_scratch. */
int lvsxdp_too_big(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lvs_fwd_scratch *s;
	struct packet pkt = {};
	__u8 mac[12], vlan, tos = 0;
	__u32 zero = 0, mtu, quote, want, sum = 0, i;
	__u32 saddr[4] = {}, daddr[4] = {};
	int v6, room;
	__u16 *w;
	void *l3;

	if (parse_packet(ctx, data, data_end, &pkt) >= 0)
		return count_reason(LVS_R_TOO_BIG, XDP_DROP);
	s = fwd_scratch.lookup(&zero);
	if (!s)
		return count_reason(LVS_R_TOO_BIG, XDP_DROP);
	mtu = s->mtu;
	v6 = pkt.tuple.family == LVS_AF_INET6;
	vlan = has_vlan(pkt.eth);
	l3 = pkt.eth + 1;
	if (vlan)
		l3 += sizeof(struct vlan_hdr);
	if (!v6) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end || !(ip->frag_off & IP_DF_BE))
			return count_reason(LVS_R_TOO_BIG, XDP_DROP);
		tos = (ip->tos & 0x1e) | 0xc0;	/* RT_TOS | IPTOS_PREC_INTERNETCONTROL */
	}
	/* the quote is the packet as IPVS sees it when it checks the MTU:
	 * one hop less already (__ip_vs_get_out_rt) */
	fwd_decrease_ttl(l3, data_end, pkt.tuple.family);
	if ((void *)(pkt.eth + 1) > data_end)
		return XDP_DROP;
	/* back to where it came from, from the address it went to */
	__builtin_memcpy(mac, pkt.eth->h_source, ETH_ALEN);
	__builtin_memcpy(mac + ETH_ALEN, pkt.eth->h_dest, ETH_ALEN);
	__builtin_memcpy(saddr, pkt.tuple.vaddr, 16);
	__builtin_memcpy(daddr, pkt.tuple.caddr, 16);
	quote = v6 ? ICMP6_QUOTE_MAX : ICMP_QUOTE_MAX;
	if (pkt.len < quote)
		quote = pkt.len;
	room = v6 ? sizeof(struct ipv6hdr) + 8 : sizeof(struct iphdr) + 8;

	if (bpf_xdp_adjust_head(ctx, -room))
		return count_reason(LVS_R_NO_HEADROOM, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 12 + 6 + 28 > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, mac, 12);
	if (v6) {
		if (data + 12 + 6 + 48 > data_end)
			return XDP_DROP;
		__builtin_memcpy(data + 12, data + 12 + 48, 6);
	} else {
		__builtin_memcpy(data + 12, data + 12 + 28, 6);
	}
	/* what the error is: its headers and the quote, no more */
	want = (vlan ? 18 : 14) + room + quote;
	if (data + want < data_end &&
	    bpf_xdp_adjust_tail(ctx, (int)want - (int)(data_end - data)))
		return count_reason(LVS_R_NO_HEADROOM, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	l3 = data + sizeof(struct ethhdr);
	if (vlan)
		l3 += sizeof(struct vlan_hdr);
	if (!v6) {
		struct iphdr *ip = l3;
		__u8 *icmp = (__u8 *)(ip + 1);

		if ((void *)(icmp + 8) > data_end)
			return XDP_DROP;
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = tos;
		ip->tot_len = bpf_htons(room + quote);
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = ICMP_ERR_TTL;
		ip->protocol = IPPROTO_ICMP_;
		ip->check = 0;
		ip->saddr = saddr[0];
		ip->daddr = daddr[0];
		w = (__u16 *)ip;
#pragma unroll
		for (i = 0; i < 10; i++)
			sum += w[i];
		ip->check = ~csum_fold32(sum);
		icmp[0] = 3;	/* ICMP_DEST_UNREACH */
		icmp[1] = 4;	/* ICMP_FRAG_NEEDED */
		*(__u16 *)(icmp + 2) = 0;
		*(__u16 *)(icmp + 4) = 0;
		*(__be16 *)(icmp + 6) = bpf_htons(mtu);
		sum = sum_to_end(icmp, data_end);
		*(__u16 *)(icmp + 2) = ~csum_fold32(sum);
	} else {
		struct ipv6hdr *ip6 = l3;
		__u8 *icmp = (__u8 *)(ip6 + 1);

		if ((void *)(icmp + 8) > data_end)
			return XDP_DROP;
		*(__be32 *)ip6 = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(8 + quote);
		ip6->nexthdr = IPPROTO_ICMPV6_;
		ip6->hop_limit = ICMP_ERR_TTL;
		__builtin_memcpy(&ip6->saddr, saddr, 16);
		__builtin_memcpy(&ip6->daddr, daddr, 16);
		icmp[0] = 2;	/* ICMPV6_PKT_TOOBIG */
		icmp[1] = 0;
		*(__u16 *)(icmp + 2) = 0;
		*(__be32 *)(icmp + 4) = bpf_htonl(mtu);
		w = (__u16 *)&ip6->saddr;
#pragma unroll
		for (i = 0; i < 16; i++)
			sum += w[i];
		sum += bpf_htons(8 + quote) + bpf_htons(IPPROTO_ICMPV6_);
		sum += sum_to_end(icmp, data_end);
		*(__u16 *)(icmp + 2) = ~csum_fold32(sum);
	}
	count_reason(LVS_R_TOO_BIG, 0);
	return XDP_TX;
}

#endif
