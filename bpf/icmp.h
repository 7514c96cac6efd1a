/* A packet larger than the way to its real allows (the egress MTU, less a
 * tunnel's headers) is answered as IPVS answers it (ensure_mtu_is_adequate):
 * ICMP fragmentation needed, or ICMPv6 packet too big, with that MTU, from
 * the address the client asked for, back out of the receiving interface to
 * the MAC the packet came from. A NAT reply larger than the way to its
 * client is answered as ip_forward answers it, from the director's address
 * toward the real (lvs_fwd_scratch.err_src). The error quotes what icmp_send and
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
	__u32 zero = 0, mtu, quote, want, sum = 0, i, forwarded;
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
	forwarded = s->err_src[0] | s->err_src[1] | s->err_src[2] | s->err_src[3];
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
	 * one hop less already (__ip_vs_get_out_rt); ip_forward checks
	 * before it takes the hop */
	if (!forwarded)
		fwd_decrease_ttl(l3, data_end, pkt.tuple.family);
	if ((void *)(pkt.eth + 1) > data_end)
		return XDP_DROP;
	/* back to where it came from, from the address it went to */
	__builtin_memcpy(mac, pkt.eth->h_source, ETH_ALEN);
	__builtin_memcpy(mac + ETH_ALEN, pkt.eth->h_dest, ETH_ALEN);
	if (forwarded)
		__builtin_memcpy(saddr, s->err_src, 16);
	else
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

/* -- ICMP errors about connections ------------------------------------------
 *
 * An ICMP error quotes the packet it is about; IPVS matches the quote to a
 * connection and sends the error on where that packet's sender is
 * (ip_vs_in_icmp, ip_vs_out_icmp and their IPv6 twins):
 * - the quote is a reply the client side refused (a router's fragmentation
 *   needed, the client's port unreachable: VIP -> client): the error goes to
 *   the connection's real by its forwarding method - DR as the client's
 *   packets go, NAT translated to the real's address and port
 *   (ip_vs_icmp_xmit). A tunnelled real's error is left to the kernel: the
 *   tunnel program takes TCP and UDP only.
 * - the quote is a NAT connection's packet to its real (client -> real),
 *   refused on the real's side: the error goes to the client translated
 *   back, from the VIP (handle_response_icmp).
 * IPv4 takes destination unreachable, source quench and time exceeded, as
 * IPVS does; IPv6 every error type. An error never creates or moves a
 * connection, and one that matches none goes on to the kernel untouched. */

#define ICMP_DEST_UNREACH_ 3
#define ICMP_SOURCE_QUENCH_ 4
#define ICMP_TIME_EXCEEDED_ 11
#define ICMPV6_INFOMSG_MASK_ 0x80

/* Where the headers of an ICMP error are: the outer IP header, the ICMP
 * header, the quoted IP header and its ports. */
struct icmp_error {
	void *l3;
	__u8 *icmp;
	void *quote;
	__be16 *ports;
	__u32 len;		/* the outer IP packet's length */
	__u32 ports_off;	/* where the ports are, from the outer IP header */
	__u8 ttl;
	__u8 v6;
	__u8 proto;		/* the quoted packet's */
};

/* The error's headers and the quoted packet's tuple, inverted (key: its
 * destination as caddr/cport, its source as vaddr/vport - the connection's
 * key for a quoted reply, nat_rev's for a quoted packet to a real).
 * Returns 0, or -1 when the packet is no ICMP error quoting a TCP or UDP
 * header with its ports. */
static __always_inline int icmp_error_parse(void *data_end, struct ethhdr *eth,
					    struct icmp_error *e, struct lvs_tuple *key)
{
	void *l3 = eth + 1;
	__u8 *icmp;

	if (has_vlan(eth))
		l3 += sizeof(struct vlan_hdr);
	e->l3 = l3;
	if (l3 + 1 > data_end)
		return -1;
	e->v6 = (*(__u8 *)l3 >> 4) == 6;
	if (!e->v6) {
		struct iphdr *ip = l3, *q;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_ICMP_)
			return -1;
		e->len = len16(ip->tot_len);
		e->ttl = ip->ttl;
		icmp = l3 + ip->ihl * 4;
		if ((void *)(icmp + 8) > data_end)
			return -1;
		if (icmp[0] != ICMP_DEST_UNREACH_ && icmp[0] != ICMP_SOURCE_QUENCH_ &&
		    icmp[0] != ICMP_TIME_EXCEEDED_)
			return -1;
		q = (struct iphdr *)(icmp + 8);
		if ((void *)(q + 1) > data_end || q->version != 4 || q->ihl < 5 ||
		    (q->frag_off & bpf_htons(0x1fff)))
			return -1;
		key->family = LVS_AF_INET;
		key->proto = q->protocol;
		key->caddr[0] = q->daddr;
		key->vaddr[0] = q->saddr;
		e->ports = (void *)q + q->ihl * 4;
		e->ports_off = ip->ihl * 4 + 8 + q->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = l3, *q6;

		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_ICMPV6_)
			return -1;
		e->len = sizeof(*ip6) + len16(ip6->payload_len);
		e->ttl = ip6->hop_limit;
		icmp = (__u8 *)(ip6 + 1);
		if ((void *)(icmp + 8) > data_end || (icmp[0] & ICMPV6_INFOMSG_MASK_))
			return -1;
		q6 = (struct ipv6hdr *)(icmp + 8);
		if ((void *)(q6 + 1) > data_end)
			return -1;
		key->family = LVS_AF_INET6;
		key->proto = q6->nexthdr;
		__builtin_memcpy(key->caddr, &q6->daddr, 16);
		__builtin_memcpy(key->vaddr, &q6->saddr, 16);
		e->ports = (__be16 *)(q6 + 1);
		e->ports_off = 2 * sizeof(*ip6) + 8;
	}
	e->icmp = icmp;
	e->quote = icmp + 8;
	e->proto = key->proto;
	if (key->proto != IPPROTO_TCP && key->proto != IPPROTO_UDP)
		return -1;
	if ((void *)(e->ports + 2) > data_end)
		return -1;
	key->cport = e->ports[1];
	key->vport = e->ports[0];
	return 0;
}

/* Translates an ICMP error in place, as ip_vs_nat_icmp(_v6) does: to_real
 * (an error about a reply, for the real): the outer destination, the
 * quote's source address and port become the real's; else (an error about
 * a packet to the real, for the client) the outer source, the quote's
 * destination address and port become the VIP's. The checksums follow
 * incrementally: the outer IPv4 header's, the quoted IPv4 header's, the
 * ICMP one (with IPv6's pseudo-header), and - where the quote holds it -
 * the quoted TCP or UDP checksum, which IPVS leaves as it was: the client
 * gets back the very packet it sent. Returns 0, -1 when a header is not in
 * the frame. */
static __always_inline int icmp_translate(void *data_end, struct icmp_error *e, int to_real,
					  const __u32 *addr, __be16 port)
{
	__u32 d_out = 0, d_quote = 0, d_icmp, d_l4;
	__be16 *p = e->ports + (to_real ? 0 : 1);
	__u16 *check;
	int i;

	if ((void *)(e->ports + 2) > data_end || (void *)(e->icmp + 8) > data_end)
		return -1;
	if (!e->v6) {
		struct iphdr *ip = e->l3, *q = e->quote;
		__be32 *a, *qa;
		__u16 old;

		if ((void *)(ip + 1) > data_end || (void *)(q + 1) > data_end)
			return -1;
		a = to_real ? &ip->daddr : &ip->saddr;
		qa = to_real ? &q->saddr : &q->daddr;
		d_out = csum_delta32(*a, addr[0]);
		ip->check = csum_apply(ip->check, d_out);
		*a = addr[0];
		d_quote = csum_delta32(*qa, addr[0]);
		*qa = addr[0];
		old = q->check;
		q->check = csum_apply(q->check, d_quote);
		/* the ICMP sum covers the quoted header: its address and checksum */
		d_icmp = d_quote + csum_delta16(old, q->check);
		d_out = 0;	/* no pseudo-header in ICMP's sum */
	} else {
		struct ipv6hdr *ip6 = e->l3, *q6 = e->quote;
		__u32 *a, *qa;

		if ((void *)(ip6 + 1) > data_end || (void *)(q6 + 1) > data_end)
			return -1;
		a = to_real ? (__u32 *)&ip6->daddr : (__u32 *)&ip6->saddr;
		qa = to_real ? (__u32 *)&q6->saddr : (__u32 *)&q6->daddr;
#pragma unroll
		for (i = 0; i < 4; i++) {
			d_out += csum_delta32(a[i], addr[i]);
			a[i] = addr[i];
			d_quote += csum_delta32(qa[i], addr[i]);
			qa[i] = addr[i];
		}
		d_icmp = d_quote;
	}
	d_l4 = d_quote + csum_delta16(*p, port);
	d_icmp += csum_delta16(*p, port);
	*p = port;
	/* the quoted TCP or UDP checksum, where the quote reaches it; an IPv4
	 * datagram without one keeps none */
	check = 0;
	if (e->proto == IPPROTO_TCP && e->ports_off + 18 <= e->len)
		check = (__u16 *)e->ports + 8;
	else if (e->proto == IPPROTO_UDP && e->ports_off + 8 <= e->len)
		check = (__u16 *)e->ports + 3;
	if (check && (void *)(check + 1) <= data_end &&
	    (*check || e->v6 || e->proto == IPPROTO_TCP)) {
		__u16 old = *check, new = csum_apply(old, d_l4);

		if (!new && e->proto == IPPROTO_UDP)
			new = 0xffff;
		*check = new;
		d_icmp += csum_delta16(old, new);
	}
	*(__u16 *)(e->icmp + 2) = csum_apply(*(__u16 *)(e->icmp + 2), d_icmp + d_out);
	return 0;
}

/* The error about a reply goes to the connection's real. */
static __always_inline int icmp_to_real(struct xdp_md *ctx, void *data_end, struct ethhdr *eth,
					struct icmp_error *e, struct lvs_conn *c,
					struct lvs_tuple *key)
{
	struct lvs_real *r = real_usable(c->real);
	__be16 rport;

	if (!r)
		return count_reason(LVS_R_REAL_GONE, XDP_DROP);
	if (r->fwd == LVS_FWD_TUNNEL)
		return count_reason(LVS_R_NOT_TCP_UDP, XDP_PASS);
	if (e->ttl <= 1)
		return count_reason(LVS_R_TTL_EXCEEDED, XDP_PASS);
	/* never fragmented: XDP cannot, and no error answers an error */
	if (r->ifindex != ctx->ingress_ifindex && e->len > r->mtu)
		return count_reason(LVS_R_TOO_BIG, XDP_DROP);
	if (r->fwd == LVS_FWD_MASQ) {
		rport = r->port ? r->port : key->vport;
		if (icmp_translate(data_end, e, 1, r->addr, rport))
			return count_reason(LVS_R_TRUNCATED, XDP_DROP);
	}
	fwd_decrease_ttl(e->l3, data_end, e->v6 ? LVS_AF_INET6 : LVS_AF_INET);
	count_forward(c->svc, LVS_REF_IDX(r->ref), e->len, 0);
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	return fwd_to_real(ctx, eth, r);
}

/* The error about a NAT connection's packet to its real goes to the
 * client, from the VIP. */
static __always_inline int icmp_to_client(struct xdp_md *ctx, void *data_end, struct ethhdr *eth,
					  struct icmp_error *e, struct lvs_nat_rev *n,
					  struct lvs_tuple *key)
{
	struct bpf_fib_lookup fib = {};
	struct lvs_iface *out;
	u32 reason, out_idx;
	__u32 to[4] = {};

	if (e->ttl <= 1)
		return count_reason(LVS_R_TTL_EXCEEDED, XDP_PASS);
	/* to the outer destination, the quoted packet's source: the client */
	__builtin_memcpy(to, key->vaddr, 16);
	fib.l4_protocol = e->v6 ? IPPROTO_ICMPV6_ : IPPROTO_ICMP_;
	out = nat_client_hop(ctx, &fib, n, to, key->family, e->len, &reason);
	if (!out)
		return count_reason(reason, XDP_DROP);
	out_idx = fib.ifindex;
	if (icmp_translate(data_end, e, 0, n->vaddr, n->vport))
		return count_reason(LVS_R_TRUNCATED, XDP_DROP);
	fwd_decrease_ttl(e->l3, data_end, key->family);
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	count_reply(n->svc, LVS_REF_IDX(n->real), e->len);
	if (out_idx == ctx->ingress_ifindex)
		return XDP_TX;
	return tx_ports.redirect_map(out->slot, 0);
}

/* LVS_PROG_ICMP: an IP packet that is neither TCP nor UDP (the packet path
 * parsed it that far); an ICMP error about a connection goes on as IPVS
 * sends it, anything else to the kernel as before. */
int lvsxdp_icmp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct icmp_error e = {};
	struct packet cpkt = {};
	struct lvs_conn4_key k4 = {};
	struct lvs_config *cfg;
	struct lvs_iface *in;
	struct lvs_nat_rev *n;
	struct lvs_conn *c;
	u32 zero = 0, ifindex = ctx->ingress_ifindex;
	int tier;
	u64 now;

	if ((void *)(eth + 1) > data_end)
		return count_reason(LVS_R_NOT_TCP_UDP, XDP_PASS);
	cfg = config.lookup(&zero);
	if (!cfg || icmp_error_parse(data_end, eth, &e, &cpkt.tuple))
		return count_reason(LVS_R_NOT_TCP_UDP, XDP_PASS);
	/* to the director: the VIP side's MAC, or a served interface's (a
	 * masquerading real's gateway); counted as before this program was */
	in = ifaces.lookup(&ifindex);
	if (!mac_is(eth->h_dest, cfg->mac) && !(in && mac_is(eth->h_dest, in->mac)))
		return count_reason(LVS_R_NOT_TCP_UDP, XDP_PASS);
	now = bpf_ktime_get_coarse_ns();
	c = conn_find(&cpkt, &k4, &tier);
	if (c && now < c->expires)
		return icmp_to_real(ctx, data_end, eth, &e, c, &cpkt.tuple);
	n = nat_rev.lookup(&cpkt.tuple);
	if (n) {
		struct packet conn = {};

		nat_conn_key(&conn.tuple, &cpkt.tuple, n);
		c = conn_find(&conn, &k4, &tier);
		if (c && now < c->expires && c->real == n->real)
			return icmp_to_client(ctx, data_end, eth, &e, n, &cpkt.tuple);
	}
	return count_reason(LVS_R_NOT_TCP_UDP, XDP_PASS);
}

#endif
