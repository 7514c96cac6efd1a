/* NAT (-m), as ip_vs_nat_xmit and ip_vs_out do it: the client's packet goes
 * to the real's address and port (checksums updated incrementally), and the
 * real's reply - the director is its gateway - comes back from the VIP and
 * the service's port. The connection table is the packet path's; nat_rev
 * maps each connection's reply tuple back to the VIP. */
#ifndef LVSXDP_NAT_H
#define LVSXDP_NAT_H

/* OutPkts and OutBytes: a reply translated back. */
static __always_inline void count_reply(u32 svc, u32 real_idx, u32 len)
{
	struct lvs_stats *s = svc_stats.lookup(&svc);

	if (s) {
		s->out_packets += 1;
		s->out_bytes += len;
	}
	s = real_stats.lookup(&real_idx);
	if (s) {
		s->out_packets += 1;
		s->out_bytes += len;
	}
}

/* Rewrites one end of the packet: the destination (to_real: the client's
 * packet) or the source (the reply), address and port, with the IPv4
 * header's and the TCP or UDP checksum. Returns 0, -1 when a header is not
 * in the frame. */
static __always_inline int nat_rewrite(void *l3, void *data_end, struct packet *pkt,
				       int to_real, const __u32 *addr, __be16 port)
{
	__u32 delta = 0;
	__be16 *p;
	void *l4;
	int i;

	if (pkt->tuple.family == LVS_AF_INET) {
		struct iphdr *ip = l3;
		__be32 *a;

		if ((void *)(ip + 1) > data_end)
			return -1;
		a = to_real ? &ip->daddr : &ip->saddr;
		delta = csum_delta32(*a, addr[0]);
		ip->check = csum_apply(ip->check, delta);
		*a = addr[0];
		l4 = l3 + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = l3;
		__u32 *a;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		a = to_real ? (__u32 *)&ip6->daddr : (__u32 *)&ip6->saddr;
#pragma unroll
		for (i = 0; i < 4; i++) {
			delta += csum_delta32(a[i], addr[i]);
			a[i] = addr[i];
		}
		l4 = ip6 + 1;
	}
	if (l4 + sizeof(struct udphdr) > data_end)
		return -1;
	p = (__be16 *)l4 + (to_real ? 1 : 0);
	delta += csum_delta16(*p, port);
	*p = port;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		tcp->check = csum_apply(tcp->check, delta);
	} else {
		struct udphdr *udp = l4;

		/* an IPv4 datagram without a checksum keeps none; a sum
		 * that comes out 0 is sent as 0xffff (CSUM_MANGLED_0) */
		if (udp->check || pkt->tuple.family != LVS_AF_INET) {
			udp->check = csum_apply(udp->check, delta);
			if (!udp->check)
				udp->check = 0xffff;
		}
	}
	return 0;
}

/* LVS_PROG_NAT: the client's packet of a connection to a masquerading real,
 * once the packet path has found or made the connection. */
int lvsxdp_nat(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lvs_fwd_scratch *s = 0;
	struct lvs_nat_rev rev = {}, *known;
	struct lvs_tuple key = {};
	struct packet pkt = {};
	struct lvs_real *r;
	__be16 rport;
	void *l3;

	if (parse_packet(ctx, data, data_end, &pkt) >= 0)
		return count_reason(LVS_R_TRUNCATED, XDP_DROP);
	r = fwd_real(&s);
	if (!r || !s)
		return count_reason(LVS_R_NO_REAL, XDP_DROP);
	if (r->ifindex != ctx->ingress_ifindex && pkt.len > r->mtu)
		return fwd_too_big(ctx, r->mtu);
	/* A real without a port of its own (a port-0 or firewall-mark
	 * service) takes the port the client asked for (ip_vs_sched_persist). */
	rport = r->port ? r->port : pkt.tuple.vport;
	key.family = pkt.tuple.family;
	key.proto = pkt.tuple.proto;
	key.cport = rport;
	key.vport = pkt.tuple.cport;
	__builtin_memcpy(key.caddr, r->addr, 16);
	__builtin_memcpy(key.vaddr, pkt.tuple.caddr, 16);
	known = nat_rev.lookup(&key);
	if (s->new_conn || !known || known->real != r->ref) {
		__builtin_memcpy(rev.vaddr, pkt.tuple.vaddr, 16);
		rev.vport = pkt.tuple.vport;
		rev.svc = s->svc;
		rev.real = r->ref;
		__builtin_memcpy(rev.cmac, pkt.eth->h_source, ETH_ALEN);
		rev.cifindex = ctx->ingress_ifindex;
		if (nat_rev.update(&key, &rev))
			count_reason(LVS_R_MAP_FULL, 0);
	}
	l3 = pkt.eth + 1;
	if (has_vlan(pkt.eth))
		l3 += sizeof(struct vlan_hdr);
	if (nat_rewrite(l3, data_end, &pkt, 1, r->addr, rport))
		return count_reason(LVS_R_TRUNCATED, XDP_DROP);
	fwd_decrease_ttl(l3, data_end, pkt.tuple.family);
	count_forward(s->svc, LVS_REF_IDX(r->ref), pkt.len, s->new_conn);
	return fwd_to_real(ctx, pkt.eth, r);
}

/* A NAT connection's key as the client's packets key it, from a tuple of
 * its reply direction (real -> client: a reply as parsed, or a quote of the
 * director's packet to the real, inverted) and its nat_rev entry. */
static __always_inline void nat_conn_key(struct lvs_tuple *out, struct lvs_tuple *reply,
					 struct lvs_nat_rev *n)
{
	out->family = reply->family;
	out->proto = reply->proto;
	out->cport = reply->vport;
	out->vport = n->vport;
	__builtin_memcpy(out->caddr, reply->vaddr, 16);
	__builtin_memcpy(out->vaddr, n->vaddr, 16);
}

/* The template c's client sticks to, ASSURED (ip_vs_control_assure_ct): a
 * reply makes it so for UDP, as ESTABLISHED does for TCP. */
static __always_inline void template_assure(struct lvs_conn *c, struct lvs_tuple *tuple,
					    struct lvs_service *svc)
{
	struct lvs_template *t;
	struct lvs_tuple k;
	int tier;

	template_key(&k, tuple, svc);
	t = template_lookup(&k, &tier, 0);
	if (t && t->real == c->real && !(t->flags & LVS_TPL_F_ASSURED))
		t->flags |= LVS_TPL_F_ASSURED;
}

/* What a reply does to its connection (handle_response: the OUTPUT rows of
 * the TCP table, then ip_vs_conn_put re-arms the timer with the state's
 * timeout), with the packet path's bookkeeping for a state change: a
 * closed connection's shorter life shortens its template's, the real's
 * active and inactive counts follow, and the template vouched for. A reply
 * does not move an embryonic connection to the held tier: the client's
 * next packet does. */
static __always_inline void nat_reply_state(struct lvs_conn *c, struct lvs_tuple *ct,
					    u8 tcp_flags, struct lvs_config *cfg, u64 now)
{
	struct lvs_service *svc;
	u32 svc_idx = c->svc;
	u8 state = c->state;
	u64 until;

	if (ct->proto == IPPROTO_TCP)
		state = tcp_nat_next_state(state, tcp_flags, 1);
	until = now + state_timeout(cfg, state);
	svc = svc_conf.lookup(&svc_idx);
	if (state != c->state) {
		if (until < c->expires) {
			c->vouched = until;
			c->expires = until;
			if ((c->flags & LVS_CONN_F_OPEN) && svc &&
			    (svc->flags & LVS_SVC_F_PERSISTENT))
				template_close(c, ct, svc, cfg, now);
		}
		load_move(c->real, c->state, state);
		c->state = state;
		if (state == LVS_S_ESTABLISHED && svc && (svc->flags & LVS_SVC_F_PERSISTENT))
			template_assure(c, ct, svc);
	}
	c->expires = until;
	if (ct->proto != IPPROTO_TCP && svc && (svc->flags & LVS_SVC_F_PERSISTENT))
		template_assure(c, ct, svc);
	if (until > c->vouched) {
		if (svc && (svc->flags & LVS_SVC_F_PERSISTENT))
			template_vouch(c, ct, svc, cfg);
		else
			c->vouched = until + cfg->vouch_slack_ns;
	}
}

/* The way to a NAT connection's client (to: its address, family: the
 * packet's) for a packet of len bytes from the VIP, as the kernel routes it
 * (bpf_fib_lookup; the caller set fib's protocol and ports): the egress
 * interface, fib holding its MAC and the next hop's. When the kernel knows
 * the route but not the neighbour - it never saw the client, XDP took its
 * packets - the client's previous hop is where its packet came from. 0,
 * with *reason, when the packet cannot take that way. */
static __always_inline struct lvs_iface *nat_client_hop(struct xdp_md *ctx,
							struct bpf_fib_lookup *fib,
							struct lvs_nat_rev *n, const __u32 *to,
							u8 family, u32 len, u32 *reason)
{
	struct lvs_iface *out;
	u32 out_idx;
	int rc;

	fib->family = family;
	fib->tot_len = len;
	fib->ifindex = ctx->ingress_ifindex;
	if (family == LVS_AF_INET) {
		fib->ipv4_src = n->vaddr[0];
		fib->ipv4_dst = to[0];
	} else {
		__builtin_memcpy(fib->ipv6_src, n->vaddr, 16);
		__builtin_memcpy(fib->ipv6_dst, to, 16);
	}
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	*reason = LVS_R_NO_ROUTE;
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		*reason = LVS_R_TOO_BIG;
		return 0;
	}
	out_idx = fib->ifindex;
	out = ifaces.lookup(&out_idx);
	if (!out)
		return 0;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && out_idx == n->cifindex) {
		__builtin_memcpy(fib->dmac, n->cmac, ETH_ALEN);
		__builtin_memcpy(fib->smac, out->mac, ETH_ALEN);
	} else if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		return 0;
	}
	return out;
}

/* A reply too large for the way to its client: the kernel's forwarding
 * (ip_forward, ip6_forward) answers it before IPVS would translate it -
 * ICMP fragmentation needed (DF set) or packet too big to the real, from
 * the director's address toward the real (the route's source, as icmp_send
 * picks it; the VIP where the control plane has none), quoting the reply
 * as it came (bpf/icmp.h). An IPv4 reply without DF the kernel would
 * fragment, which XDP cannot: dropped, counted too_big (passed on, the
 * kernel would forward it untranslated, from the real's address). */
static __always_inline int nat_reply_too_big(struct xdp_md *ctx, struct lvs_nat_rev *n, u32 mtu)
{
	u32 zero = 0, idx = LVS_REF_IDX(n->real);
	struct lvs_fwd_scratch *s = fwd_scratch.lookup(&zero);
	struct lvs_real *r = reals.lookup(&idx);

	if (s) {
		s->mtu = mtu;
		if (r && r->ref == n->real &&
		    (r->tun_saddr[0] | r->tun_saddr[1] | r->tun_saddr[2] | r->tun_saddr[3]))
			__builtin_memcpy(s->err_src, r->tun_saddr, 16);
		else
			__builtin_memcpy(s->err_src, n->vaddr, 16);
		progs.call(ctx, LVS_PROG_TOO_BIG);
	}
	return count_reason(LVS_R_TOO_BIG, XDP_DROP);
}

/* LVS_PROG_NAT_REPLY: a packet the packet path found no service for, which
 * may be a masquerading real's reply: from the VIP and the service's port
 * again, to the client by the kernel's route (bpf_fib_lookup). Only a live
 * connection's reply is translated, as ip_vs_out finds one or lets the
 * packet go on untouched; anything else goes on to the kernel as before. */
int lvsxdp_nat_reply(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	struct lvs_iface *in, *out;
	struct lvs_nat_rev *n;
	struct lvs_config *cfg;
	struct lvs_conn *c;
	struct lvs_conn4_key k4 = {};
	struct packet pkt = {}, cpkt = {};
	u32 zero = 0, ifindex = ctx->ingress_ifindex, out_idx, reason;
	int same, tier;
	u64 now;
	void *l3;

	if (parse_packet(ctx, data, data_end, &pkt) >= 0)
		return count_reason(LVS_R_TRUNCATED, XDP_PASS);
	cfg = config.lookup(&zero);
	if (!cfg)
		return XDP_PASS;
	n = nat_rev.lookup(&pkt.tuple);
	in = ifaces.lookup(&ifindex);
	if (!n || !in || !mac_is(pkt.eth->h_dest, in->mac)) {
		if (mac_is(pkt.eth->h_dest, cfg->mac))
			return count_reason(LVS_R_NO_SERVICE, XDP_PASS);
		return count_reason(LVS_R_NOT_FOR_US, XDP_PASS);
	}
	if (ttl_exhausted(&pkt))
		return count_reason(LVS_R_TTL_EXCEEDED, XDP_PASS);
	nat_conn_key(&cpkt.tuple, &pkt.tuple, n);
	now = bpf_ktime_get_coarse_ns();
	c = conn_find(&cpkt, &k4, &tier);
	if (!c || now >= c->expires || c->real != n->real)
		return count_reason(LVS_R_NO_SERVICE, XDP_PASS);
	fib.l4_protocol = pkt.tuple.proto;
	fib.sport = n->vport;
	fib.dport = pkt.tuple.vport;
	out = nat_client_hop(ctx, &fib, n, pkt.tuple.vaddr, pkt.tuple.family, pkt.len, &reason);
	if (!out) {
		if (reason == LVS_R_TOO_BIG)
			return nat_reply_too_big(ctx, n, fib.mtu_result);
		return count_reason(reason, XDP_DROP);
	}
	out_idx = fib.ifindex;
	nat_reply_state(c, &cpkt.tuple, pkt.tcp_flags, cfg, now);
	l3 = pkt.eth + 1;
	if (has_vlan(pkt.eth))
		l3 += sizeof(struct vlan_hdr);
	if (nat_rewrite(l3, data_end, &pkt, 0, n->vaddr, n->vport))
		return count_reason(LVS_R_TRUNCATED, XDP_DROP);
	fwd_decrease_ttl(l3, data_end, pkt.tuple.family);
	if ((void *)(pkt.eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(pkt.eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(pkt.eth->h_source, fib.smac, ETH_ALEN);
	count_reply(n->svc, LVS_REF_IDX(n->real), pkt.len);
	same = out_idx == ifindex;
	if (same)
		return XDP_TX;
	return tx_ports.redirect_map(out->slot, 0);
}

#endif
