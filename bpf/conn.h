/* Connections: IPVS's TCP state machine for connections whose replies do not
 * pass the director (DR: the "input only" table of ip_vs_proto_tcp.c), for
 * those whose replies do (NAT: the INPUT and OUTPUT tables), and the timeout
 * each state gives. */
#ifndef LVSXDP_CONN_H
#define LVSXDP_CONN_H

/* One row per TCP event, 4 bits per current state (sNO .. sSA), giving the
 * next state: tcp_states[] INPUT-ONLY rows of ip_vs_proto_tcp.c. */
#define TCP_ROW(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10) \
	((u64)(s0) | (u64)(s1) << 4 | (u64)(s2) << 8 | (u64)(s3) << 12 | \
	 (u64)(s4) << 16 | (u64)(s5) << 20 | (u64)(s6) << 24 | (u64)(s7) << 28 | \
	 (u64)(s8) << 32 | (u64)(s9) << 36 | (u64)(s10) << 40)
#define sNO LVS_S_NONE
#define sES LVS_S_ESTABLISHED
#define sSS LVS_S_SYN_SENT
#define sSR LVS_S_SYN_RECV
#define sFW LVS_S_FIN_WAIT
#define sTW LVS_S_TIME_WAIT
#define sCL LVS_S_CLOSE
#define sCW LVS_S_CLOSE_WAIT
#define sLA LVS_S_LAST_ACK
#define sLI LVS_S_LISTEN
#define sSA LVS_S_SYNACK
#define TCP_ON_SYN TCP_ROW(sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR)
#define TCP_ON_FIN TCP_ROW(sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW)
#define TCP_ON_ACK TCP_ROW(sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES)
#define TCP_ON_RST TCP_ROW(sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL)
/* NAT (-m): IPVS sees both directions of a masquerading real's connection
 * (it never has IP_VS_CONN_F_NOOUTPUT) and walks the INPUT rows with the
 * client's packets, the OUTPUT rows with the real's replies. The SYN row of
 * INPUT is INPUT-ONLY's. */
#define TCP_IN_FIN TCP_ROW(sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW)
#define TCP_IN_ACK TCP_ROW(sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES)
#define TCP_IN_RST TCP_ROW(sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR)
#define TCP_OUT_SYN TCP_ROW(sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR)
#define TCP_OUT_FIN TCP_ROW(sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW)
#define TCP_OUT_ACK TCP_ROW(sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES)
#define TCP_OUT_RST TCP_ROW(sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL)

static __always_inline u8 tcp_next_state(u8 state, u8 flags)
{
	u64 row;

	/* IPVS's precedence: RST, then SYN, FIN, ACK; a segment with none of
	 * them closes the connection (set_tcp_state's default). */
	if (flags & TCPF_RST)
		row = TCP_ON_RST;
	else if (flags & TCPF_SYN)
		row = TCP_ON_SYN;
	else if (flags & TCPF_FIN)
		row = TCP_ON_FIN;
	else if (flags & TCPF_ACK)
		row = TCP_ON_ACK;
	else
		return LVS_S_CLOSE;
	if (state > LVS_S_SYNACK)
		state = LVS_S_NONE;
	return (row >> (state * 4)) & 0xf;
}

/* A NAT connection's next state: output, a reply from the real; else a
 * packet from the client. Same precedence as tcp_next_state. */
static __always_inline u8 tcp_nat_next_state(u8 state, u8 flags, int output)
{
	u64 row;

	if (flags & TCPF_RST)
		row = output ? TCP_OUT_RST : TCP_IN_RST;
	else if (flags & TCPF_SYN)
		row = output ? TCP_OUT_SYN : TCP_ON_SYN;
	else if (flags & TCPF_FIN)
		row = output ? TCP_OUT_FIN : TCP_IN_FIN;
	else if (flags & TCPF_ACK)
		row = output ? TCP_OUT_ACK : TCP_IN_ACK;
	else
		return LVS_S_CLOSE;
	if (state > LVS_S_SYNACK)
		state = LVS_S_NONE;
	return (row >> (state * 4)) & 0xf;
}

static __always_inline u64 state_timeout(struct lvs_config *cfg, u8 state)
{
	/* masked rather than compared: the verifier then knows the bound */
	return cfg->timeout_ns[state & (LVS_S_SLOTS - 1)];
}

/* conn_reuse_mode=1: a SYN that finds a connection already in TIME_WAIT or
 * CLOSE starts a new connection (scheduled through the template). */
static __always_inline int conn_reusable(struct lvs_conn *c, struct packet *pkt)
{
	return pkt->tuple.proto == IPPROTO_TCP &&
	       (pkt->tcp_flags & (TCPF_SYN | TCPF_ACK | TCPF_RST)) == TCPF_SYN &&
	       (c->state == LVS_S_TIME_WAIT || c->state == LVS_S_CLOSE);
}

/* Where a connection was found (maps.h): the held tier or the embryonic,
 * LVS_TIER_HELD or LVS_TIER_NEW (filter.h). */

/* The packet's connection: held first (every packet of an established
 * connection), then embryonic. k4 is the IPv4 key, kept by the caller for a
 * later store or delete. The empty asm after each lookup keeps clang from
 * merging lookups into one call whose map depends on a branch: the verifier
 * inlines a hash lookup only where the map is known, and the inlined one is
 * much cheaper. */
static __always_inline struct lvs_conn *conn_lookup(struct packet *pkt, struct lvs_conn4_key *k4,
						    int *tier, struct lvs_filter *flt, u32 *slot)
{
	struct lvs_conn *c;
	/* A SYN mostly opens a connection: the filter before both tiers. Any
	 * other packet mostly belongs to an established one: while the filter
	 * is sparse (few held connections: it says "held: absent" for most
	 * unknown keys and stays in cache) it is read first all the same, which
	 * turns away a flood of unknown non-SYNs with a cached read (and one
	 * embryonic lookup where its slot says "embryonic"); once it is not (the
	 * agent judges, lvsxdp/filter.py), the held tier first, as the
	 * filter's read then misses like a table's (tools/bench_xdp.py's
	 * scale: 1,204 -> 1,394 ns per packet at a million connections), and
	 * the filter before the embryonic tier. */
	int first = flt->sparse || (pkt->tuple.proto == IPPROTO_TCP &&
		    (pkt->tcp_flags & (TCPF_SYN | TCPF_ACK | TCPF_RST)) == TCPF_SYN);
	u32 w = 0;

	*tier = LVS_TIER_NEW;
	if (pkt->tuple.family == LVS_AF_INET) {
		k4->caddr = pkt->tuple.caddr[0];
		k4->vaddr = pkt->tuple.vaddr[0];
		k4->cport = pkt->tuple.cport;
		k4->vport = pkt->tuple.vport;
		k4->proto = pkt->tuple.proto;
		*slot = filter_hash_conn4(k4);
		if (first) {
			w = filter_word(flt, LVS_FILTER_CONNS, *slot);
			if (!w)
				return 0;
		}
		/* read first: the held table only where a held key may be */
		if (!first || (w & LVS_FILTER_HELD_BITS)) {
			*tier = LVS_TIER_HELD;
			c = conns4.lookup(k4);
			asm volatile("" : "+r"(c));
			if (c)
				return c;
			*tier = LVS_TIER_NEW;
		}
		if (!first)
			w = filter_word(flt, LVS_FILTER_CONNS, *slot);
		if (!(w & LVS_FILTER_NEW_BITS))
			return 0;
		c = syn4.lookup(k4);
		asm volatile("" : "+r"(c));
		return c;
	}
	*slot = filter_hash_tuple(&pkt->tuple);
	if (first) {
		w = filter_word(flt, LVS_FILTER_CONNS, *slot);
		if (!w)
			return 0;
	}
	if (!first || (w & LVS_FILTER_HELD_BITS)) {
		*tier = LVS_TIER_HELD;
		c = conns6.lookup(&pkt->tuple);
		asm volatile("" : "+r"(c));
		if (c)
			return c;
		*tier = LVS_TIER_NEW;
	}
	if (!first)
		w = filter_word(flt, LVS_FILTER_CONNS, *slot);
	if (!(w & LVS_FILTER_NEW_BITS))
		return 0;
	c = syn6.lookup(&pkt->tuple);
	asm volatile("" : "+r"(c));
	return c;
}

/* conn_lookup for the programs that only read a connection (NAT replies,
 * ICMP errors): the filter fetched here, the slot not kept. */
static __always_inline struct lvs_conn *conn_find(struct packet *pkt, struct lvs_conn4_key *k4,
						  int *tier)
{
	struct lvs_filter *flt = filter_get();
	u32 slot;

	if (!flt)
		return 0;
	return conn_lookup(pkt, k4, tier, flt, &slot);
}

/* A new connection starts embryonic. slot: its filter slot (conn_lookup). */
static __always_inline int conn_store_new(struct packet *pkt, struct lvs_conn4_key *k4,
					  struct lvs_conn *c, struct lvs_filter *flt, u32 slot)
{
	filter_set(flt, LVS_FILTER_CONNS, slot, LVS_TIER_NEW);
	if (pkt->tuple.family == LVS_AF_INET)
		return syn4.update(k4, c);
	return syn6.update(&pkt->tuple, c);
}

static __always_inline void conn_forget(struct packet *pkt, struct lvs_conn4_key *k4, int tier)
{
	if (tier == LVS_TIER_HELD) {
		if (pkt->tuple.family == LVS_AF_INET)
			conns4.delete(k4);
		else
			conns6.delete(&pkt->tuple);
		return;
	}
	if (pkt->tuple.family == LVS_AF_INET)
		syn4.delete(k4);
	else
		syn6.delete(&pkt->tuple);
}

/* An embryonic connection that has proved itself: TCP once the client's ACK
 * made it ESTABLISHED, UDP at its second packet. */
static __always_inline int conn_settles(struct packet *pkt, u8 state)
{
	return pkt->tuple.proto != IPPROTO_TCP || state == LVS_S_ESTABLISHED;
}

/* Moves a settled connection (c: a copy, the embryonic entry is deleted) to
 * the held tier. Never evicts: with the held
 * table full it stays embryonic (and tries again at its next packet).
 * Returns 0 when it moved. */
static __always_inline int conn_settle(struct packet *pkt, struct lvs_conn4_key *k4,
				       struct lvs_conn *c, struct lvs_filter *flt, u32 slot)
{
	int err;

	/* a move: the held tier's bytes of the key's slot */
	filter_set(flt, LVS_FILTER_CONNS, slot, LVS_TIER_HELD);
	if (pkt->tuple.family == LVS_AF_INET)
		err = conns4.insert(k4, c);
	else
		err = conns6.insert(&pkt->tuple, c);
	if (err)
		return err;
	conn_forget(pkt, k4, LVS_TIER_NEW);
	return 0;
}

#endif
