/* lvsxdp: LVS/IPVS persistence and direct routing in XDP.
 *
 * The packet path reads like IPVS's: parse, find the connection, else
 * classify (firewall mark, VIP:port, the FTP rule, VIP:0), find or make the
 * persistence template, schedule, make the connection; then rewrite the MACs
 * (DR), count, transmit. Every packet that is not forwarded is counted with
 * its reason.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#include "lvsxdp_shared.h"
#include "parse.h"
#include "maps.h"
#include "stats.h"
#include "filter.h"
#include "sched.h"
#include "conn.h"
#include "persist.h"
#include "classify.h"
#include "fwd.h"

#ifdef LVSXDP_BENCH
#include "bench.h"
#endif

/* DR forwards like ip_forward: one hop less (ip_decrease_ttl's incremental
 * checksum, RFC 1624). The IP header is found again from the Ethernet header
 * rather than kept in pkt: a pointer at offset 14 or 18 in every state after
 * parsing would have the verifier walk the whole path twice. */
static __always_inline void dr_decrease_ttl(struct packet *pkt, void *data_end)
{
	void *l3 = pkt->eth + 1;

	if (pkt->eth->h_proto == ETH_P_8021Q_BE || pkt->eth->h_proto == ETH_P_8021AD_BE)
		l3 += sizeof(struct vlan_hdr);
	fwd_decrease_ttl(l3, data_end, pkt->tuple.family);
}

/* DR: to the real's MAC, from the egress interface's, as the kernel routes
 * to the real (lvs_real.ifindex, kept by the control plane); addresses and
 * ports are untouched (the real holds the VIP). A real behind the receiving
 * interface - every real of a one-NIC director - takes the XDP_TX fast path;
 * one behind another served interface is redirected there (tx_ports). The
 * receiving interface's MTU already held the frame; another's may not. */
static __always_inline int forward(struct xdp_md *ctx, struct packet *pkt, void *data_end,
				   struct lvs_real *r, u32 svc, int new_conn)
{
	int same = r->ifindex == ctx->ingress_ifindex;
	u32 prog = 0;

	/* NAT, tunnels and the ICMP error for an over-MTU packet are programs
	 * of their own (bpf/fwd.h), reached by one tail call site */
	if (r->fwd == LVS_FWD_MASQ)
		prog = LVS_PROG_NAT;
	else if (r->fwd == LVS_FWD_TUNNEL)
		prog = LVS_PROG_TUNNEL;
	else if (!same && pkt->len > r->mtu)
		prog = LVS_PROG_TOO_BIG;
	if (prog) {
		fwd_call(ctx, prog, LVS_REF_IDX(r->ref), svc, new_conn, r->mtu);
		return count_reason(prog == LVS_PROG_TOO_BIG ? LVS_R_TOO_BIG : LVS_R_NO_REAL,
				    XDP_DROP);
	}
	dr_decrease_ttl(pkt, data_end);
	__builtin_memcpy(pkt->eth->h_dest, r->mac, ETH_ALEN);
	__builtin_memcpy(pkt->eth->h_source, r->smac, ETH_ALEN);
	count_forward(svc, LVS_REF_IDX(r->ref), pkt->len, new_conn);
	if (same)
		return XDP_TX;
	return tx_ports.redirect_map(r->tx_slot, 0);
}

static __always_inline int mac_is(const u8 *a, const u8 *b)
{
	return *(u32 *)a == *(u32 *)b && *(u16 *)(a + 4) == *(u16 *)(b + 4);
}

/* The packet path. resumed: taken again after lvsxdp_sched_* walked this
 * packet's scheduler (bpf/sched.h). */
static __always_inline int lvs_packet(struct xdp_md *ctx, int resumed)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet pkt = {};
	struct lvs_config *cfg;
	struct lvs_filter *flt;
	struct lvs_service *svc;
	struct lvs_conn *c, fresh = {};
	struct lvs_conn4_key k4 = {};
	struct lvs_real *r;
	u32 zero = 0, svc_idx, ref, *vip_flags = 0, cslot;
	int reason, tier;
	u64 now;

#ifdef LVSXDP_BENCH
	bench_restore(data, data_end);
#endif
	reason = parse_packet(ctx, data, data_end, &pkt);
	if (reason >= 0) {
		/* an ICMP error may be about a connection (bpf/icmp.h) */
		if (reason == LVS_R_NOT_TCP_UDP)
			progs.call(ctx, LVS_PROG_ICMP);
		return count_reason(reason, XDP_PASS);
	}
	cfg = config.lookup(&zero);
	if (!cfg)
		return XDP_PASS;
	flt = filter.lookup(&zero);
	if (!flt)
		return XDP_PASS;
	if (!mac_is(pkt.eth->h_dest, cfg->mac)) {
		/* a masquerading real's reply to its gateway (bpf/nat.h) */
		if (cfg->flags & LVS_CFG_F_NAT)
			progs.call(ctx, LVS_PROG_NAT_REPLY);
		return count_reason(LVS_R_NOT_FOR_US, XDP_PASS);
	}
	if (martian(&pkt))
		return count_reason(LVS_R_MARTIAN, XDP_PASS);
	/* A SYN mostly opens a connection, and a SYN to no VIP (the host's own
	 * traffic, scans) can have none: the small, hot VIP set turns it away
	 * before the large connection tables are read. Exact, since a removed
	 * service's address stays in vips while its connections may live, and
	 * skipped when firewall-mark services make any address a service's. */
	if (pkt.tuple.proto == IPPROTO_TCP &&
	    (pkt.tcp_flags & (TCPF_SYN | TCPF_ACK | TCPF_RST)) == TCPF_SYN &&
	    !(cfg->flags & LVS_CFG_F_FWMARK)) {
		vip_flags = vip_lookup(&pkt);
		if (!vip_flags) {
			/* a masquerading real may open one to a client too */
			if (cfg->flags & LVS_CFG_F_NAT)
				progs.call(ctx, LVS_PROG_NAT_REPLY);
			return count_reason(LVS_R_NO_SERVICE, XDP_PASS);
		}
	}
	now = bpf_ktime_get_coarse_ns();

	/* A packet of a known connection. */
	c = conn_lookup(&pkt, &k4, &tier, flt, &cslot);
	if (c && now < c->expires && !conn_reusable(c, &pkt)) {
		u64 until;
		u8 state = c->state;

		r = real_usable(c->real);
		if (!r) {
			/* expire_nodest_conn: forget the connection so the
			 * client's next SYN is scheduled afresh. */
			if (cfg->flags & LVS_CFG_F_EXPIRE_NODEST_CONN)
				conn_forget(&pkt, &k4, tier);
			return count_reason(LVS_R_REAL_GONE, XDP_DROP);
		}
		/* before the state moves: a packet that goes nowhere changes nothing */
		if (ttl_exhausted(&pkt))
			return count_reason(LVS_R_TTL_EXCEEDED, XDP_PASS);
		if (pkt.tuple.proto == IPPROTO_TCP) {
			/* NAT sees the replies too: other rows (conn.h) */
			if (r->fwd == LVS_FWD_MASQ)
				state = tcp_nat_next_state(state, pkt.tcp_flags, 0);
			else
				state = tcp_next_state(state, pkt.tcp_flags);
		}
		until = now + state_timeout(cfg, state);
		svc_idx = c->svc;
		if (state != c->state) {
			/* A state with a shorter life (FIN, RST): the
			 * connection closed, its template may end sooner. */
			if (until < c->expires) {
				c->vouched = until;
				c->expires = until;
				svc = svc_conf.lookup(&svc_idx);
				if ((c->flags & LVS_CONN_F_OPEN) && svc &&
				    (svc->flags & LVS_SVC_F_PERSISTENT))
					template_close(c, &pkt.tuple, svc, cfg, now);
			}
			load_move(c->real, c->state, state);
			c->state = state;
		}
		c->expires = until;
		if (until > c->vouched) {
			svc = svc_conf.lookup(&svc_idx);
			if (svc && (svc->flags & LVS_SVC_F_PERSISTENT))
				template_vouch(c, &pkt.tuple, svc, cfg);
			else
				c->vouched = until + cfg->vouch_slack_ns;
		}
		/* An embryonic connection that proved itself is held from now on,
		 * and so is its template (last: c is gone once it moved). */
		if (tier == LVS_TIER_NEW && conn_settles(&pkt, state)) {
			struct lvs_conn held = *c;

			if (conn_settle(&pkt, &k4, &held, flt, cslot)) {
				count_reason(LVS_R_HELD_FULL, 0);
			} else {
				svc = svc_conf.lookup(&svc_idx);
				if (svc && (svc->flags & LVS_SVC_F_PERSISTENT))
					template_settle(&held, &pkt.tuple, svc, now);
			}
		}
		return forward(ctx, &pkt, data_end, r, svc_idx, 0);
	}

	/* A new connection: find its service as ip_vs_service_find does. */
	svc_idx = find_service(&pkt, cfg, vip_flags);
	if (svc_idx >= LVS_MAX_SERVICES) {
		if (cfg->flags & LVS_CFG_F_NAT)
			progs.call(ctx, LVS_PROG_NAT_REPLY);
		return count_reason(LVS_R_NO_SERVICE, XDP_PASS);
	}
	/* Only a SYN without RST starts a TCP connection (no sloppy_tcp). */
	if (pkt.tuple.proto == IPPROTO_TCP &&
	    (pkt.tcp_flags & (TCPF_SYN | TCPF_RST)) != TCPF_SYN)
		return count_reason(LVS_R_NOT_SYN, XDP_PASS);
	svc = svc_conf.lookup(&svc_idx);
	if (!svc || !(svc->flags & LVS_SVC_F_ACTIVE))
		return count_reason(LVS_R_NO_SERVICE, XDP_PASS);
	if (ttl_exhausted(&pkt))
		return count_reason(LVS_R_TTL_EXCEEDED, XDP_PASS);

	fresh.state = pkt.tuple.proto == IPPROTO_TCP ?
		      tcp_next_state(LVS_S_NONE, pkt.tcp_flags) : LVS_S_UDP;
	fresh.expires = now + state_timeout(cfg, fresh.state);
	fresh.vouched = fresh.expires + cfg->vouch_slack_ns;
	fresh.svc = svc_idx;
	if (svc->flags & LVS_SVC_F_PERSISTENT) {
		/* an open connection this one replaces (expired unseen) no
		 * longer keeps its template */
		if (c && (c->flags & LVS_CONN_F_OPEN) && c->svc == svc_idx)
			template_close(c, &pkt.tuple, svc, cfg, now);
		if (pkt.tuple.proto == IPPROTO_TCP)
			fresh.flags = LVS_CONN_F_OPEN;
		ref = persist_schedule(ctx, resumed, svc_idx, svc, &pkt.tuple, cfg, now,
				       fresh.vouched, fresh.flags & LVS_CONN_F_OPEN);
	} else
		ref = lvs_schedule(ctx, resumed, svc_idx, svc, &pkt.tuple);
	r = ref ? real_usable(ref) : 0;
	if (!r)
		return count_reason(LVS_R_NO_REAL, XDP_DROP);
	fresh.real = ref;
	/* A connection reused in TIME_WAIT or CLOSE leaves its real's count;
	 * a held one (reused, or expired) makes way for the new, embryonic. */
	if (c && now < c->expires)
		load_unbind(c->real, c->state);
	if (c && tier == LVS_TIER_HELD)
		conn_forget(&pkt, &k4, LVS_TIER_HELD);
	if (conn_store_new(&pkt, &k4, &fresh, flt, cslot))
		count_reason(LVS_R_MAP_FULL, 0);
	else
		load_bind(r, fresh.state);
	return forward(ctx, &pkt, data_end, r, svc_idx, 1);
}

int lvsxdp_main(struct xdp_md *ctx)
{
	return lvs_packet(ctx, 0);
}

/* The packet path again, once lvsxdp_sched_* has made its decision. */
int lvsxdp_resume(struct xdp_md *ctx)
{
	return lvs_packet(ctx, 1);
}

/* One chunk of a scheduler's walk (bpf/sched.h), then on with the walk, or
 * back to the packet path with the decision. One program per kind of walk:
 * each is verified on its own, a third of the work. */
static __always_inline int sched_chunk(struct xdp_md *ctx, u32 prog)
{
	u32 zero = 0, svc_idx;
	struct lvs_sched_scratch *s = sched_scratch.lookup(&zero);
	struct lvs_service *svc;
	int over;

	if (!s)
		return count_reason(LVS_R_NO_REAL, XDP_DROP);
	svc_idx = s->svc;
	svc = svc_conf.lookup(&svc_idx);
	if (!svc)
		return count_reason(LVS_R_NO_REAL, XDP_DROP);
	if (prog == LVS_PROG_SCHED_SEQ)
		over = walk_seq(svc_idx, svc, &s->walk, s->walk.next);
	else if (prog == LVS_PROG_SCHED_LEAST)
		over = walk_least(svc, svc->sched, &s->walk, s->walk.next);
	else if (svc->sched == LVS_SCHED_SH)	/* constants: one bucket rule a loop */
		over = walk_fallback(svc, LVS_SCHED_SH, &s->walk, s->walk.next);
	else
		over = walk_fallback(svc, LVS_SCHED_MH, &s->walk, s->walk.next);
	if (!over)
		progs.call(ctx, prog);
	/* the walk is over (or the kernel allows no more calls: the best so far) */
	s->done = 1;
	progs.call(ctx, LVS_PROG_RESUME);
	return count_reason(LVS_R_NO_REAL, XDP_DROP);
}

int lvsxdp_sched_seq(struct xdp_md *ctx)
{
	return sched_chunk(ctx, LVS_PROG_SCHED_SEQ);
}

int lvsxdp_sched_least(struct xdp_md *ctx)
{
	return sched_chunk(ctx, LVS_PROG_SCHED_LEAST);
}

int lvsxdp_sched_fallback(struct xdp_md *ctx)
{
	return sched_chunk(ctx, LVS_PROG_SCHED_FALLBACK);
}

/* Forwarding other than DR, each a program the packet path tail-calls. */
#include "nat.h"
#include "tunnel.h"
#include "icmp.h"
