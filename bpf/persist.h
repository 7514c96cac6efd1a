/* Persistence templates (ip_vs_sched_persist): the key a service's kind
 * gives, whether a template is still alive, and the bookkeeping that keeps a
 * template alive while connections it scheduled are. */
#ifndef LVSXDP_PERSIST_H
#define LVSXDP_PERSIST_H

#define FTP_PORT_BE 0x1500	/* htons(21) */

/* The template key of LVS-SEMANTICS.md: the client masked by -M, cport 0;
 * PPC keeps the service port, PCC (port 0), FTP and fwmark use port 0; a
 * fwmark template has proto 0 and the mark as its virtual address. */
static __always_inline void template_key(struct lvs_tuple *k, struct lvs_tuple *conn,
					 struct lvs_service *svc)
{
	k->family = conn->family;
	k->proto = conn->proto;
	k->cport = 0;
	k->pad = 0;
	k->vport = 0;
	k->caddr[0] = conn->caddr[0] & svc->netmask[0];
	k->caddr[1] = conn->caddr[1] & svc->netmask[1];
	k->caddr[2] = conn->caddr[2] & svc->netmask[2];
	k->caddr[3] = conn->caddr[3] & svc->netmask[3];
	if (svc->fwmark) {
		k->proto = 0;
		k->vaddr[0] = bpf_htonl(svc->fwmark);
		k->vaddr[1] = 0;
		k->vaddr[2] = 0;
		k->vaddr[3] = 0;
		return;
	}
	__builtin_memcpy(k->vaddr, conn->vaddr, 16);
	if (svc->vport == conn->vport && svc->vport != FTP_PORT_BE)
		k->vport = svc->vport;
}

/* IPVS re-arms a template whose timer fires while it controls connections.
 * Lazily: it died at the first step boundary expires + k * step at which no
 * connection it controls could still be alive (ctl_until). */
static __always_inline int template_alive(struct lvs_template *t, u64 now, u64 step)
{
	u64 steps;

	if (now < t->expires)
		return 1;
	if (t->ctl_until <= t->expires || step == 0)
		return 0;
	steps = (t->ctl_until - t->expires + step - 1) / step;
	return now < t->expires + steps * step;
}

/* A client's template: held (assured) first, then embryonic (maps.h).
 * filtered: the filter first (a new connection's client often has none); a
 * live connection's template mostly exists, and a filter read costs a miss
 * of its own in large tables. */
static __always_inline struct lvs_template *template_lookup(struct lvs_tuple *k, int *tier,
							    int filtered)
{
	struct lvs_template *t;
	u32 w = ~0u;

	*tier = LVS_TIER_NEW;
	if (filtered) {
		w = filter_maybe(LVS_FILTER_TEMPLATES, filter_hash_tuple(k));
		if (!w)
			return 0;
	}
	if (w & LVS_FILTER_HELD_BITS) {
		t = templates.lookup(k);
		asm volatile("" : "+r"(t));
		*tier = LVS_TIER_HELD;
		if (t)
			return t;
		*tier = LVS_TIER_NEW;
	}
	if (!(w & LVS_FILTER_NEW_BITS))
		return 0;
	t = tpl_new.lookup(k);
	asm volatile("" : "+r"(t));
	return t;
}

/* A template sends its client to its real unless that real was removed or
 * lost its MAC, or - with expire_quiescent_template - has weight 0. */
static __always_inline int template_usable(struct lvs_template *t, struct lvs_config *cfg)
{
	struct lvs_real *r = real_usable(t->real);

	if (!r || (t->flags & LVS_TPL_F_INVALID))
		return 0;
	if ((cfg->flags & LVS_CFG_F_EXPIRE_QUIESCENT_TEMPLATE) && r->weight == 0)
		return 0;
	return 1;
}

/* ip_vs_check_template: a template whose real was removed (in the trash),
 * or is quiescent under expire_quiescent_template, is invalidated by moving
 * it to port 65535, where `-L -c` lists it until its timer ends; the client
 * gets a new one. A real that is gone for good (slot reused) or lost its MAC
 * just gets replaced. */
static __always_inline void template_invalidate(struct lvs_tuple *k, struct lvs_template *t,
						int tier, struct lvs_config *cfg)
{
	u32 idx = LVS_REF_IDX(t->real);
	struct lvs_real *r = reals.lookup(&idx);
	struct lvs_template copy;
	struct lvs_tuple moved;

	if (!r || r->ref != t->real || (t->flags & LVS_TPL_F_INVALID))
		return;
	if (!(r->flags & LVS_REAL_F_TRASH) &&
	    !((cfg->flags & LVS_CFG_F_EXPIRE_QUIESCENT_TEMPLATE) && r->weight == 0 &&
	      (r->flags & LVS_REAL_F_AVAILABLE)))
		return;
	copy = *t;
	copy.flags |= LVS_TPL_F_INVALID;
	moved = *k;
	moved.vport = LVS_TPL_PORT_INVALID;
	filter_mark(LVS_FILTER_TEMPLATES, filter_hash_tuple(&moved), tier);
	if (tier == LVS_TIER_HELD)
		templates.update(&moved, &copy);
	else
		tpl_new.update(&moved, &copy);
}

/* The connection c may live until `expires`: make sure its template knows.
 * Pushed with slack so that a busy connection touches its template about once
 * per vouch_slack_ns, not on every packet. */
static __always_inline void template_vouch(struct lvs_conn *c, struct lvs_tuple *tuple,
					   struct lvs_service *svc, struct lvs_config *cfg)
{
	struct lvs_tuple k;
	struct lvs_template *t;
	u64 until = c->expires + cfg->vouch_slack_ns;
	int tier;

	template_key(&k, tuple, svc);
	t = template_lookup(&k, &tier, 0);
	if (t && t->real == c->real) {
		if (t->ctl_until < until)
			t->ctl_until = until;
		if (!(c->flags & LVS_CONN_F_OPEN) && t->closing_until < until)
			t->closing_until = until;
	}
	c->vouched = until;
}

/* The open connection c closed (its life got shorter: FIN, RST) or is
 * gone: it no longer counts in its template's n_open; when it was the last
 * open one, the template's ctl_until drops to what the closed ones need, as
 * IPVS's template drops when its timer finds no connection. Never below the
 * step its timer runs now (min(ctl_until, now)): a re-armed template lives
 * to the end of its step. */
static __always_inline void template_close(struct lvs_conn *c, struct lvs_tuple *tuple,
					   struct lvs_service *svc, struct lvs_config *cfg,
					   u64 now)
{
	struct lvs_tuple k;
	struct lvs_template *t;
	u64 need;
	int tier;

	c->flags &= ~LVS_CONN_F_OPEN;
	template_key(&k, tuple, svc);
	t = template_lookup(&k, &tier, 0);
	if (!t || t->real != c->real)
		return;
	if (c->expires > now && t->closing_until < c->vouched)
		t->closing_until = c->vouched;
	if (!t->n_open)
		return;
	__sync_fetch_and_add(&t->n_open, -1);
	if (t->n_open)
		return;
	need = t->ctl_until < now ? t->ctl_until : now;
	if (need < t->closing_until)
		need = t->closing_until;
	if (need < t->ctl_until)
		t->ctl_until = need;
}

/* The real for a new connection of a persistent service: the template's, or
 * a newly scheduled one with a new template. Refreshes the template as
 * ip_vs_sched_persist does (each new connection re-arms its timeout), and
 * records that the new connection lives until conn_until (and, open: that it
 * counts in n_open). */
static __always_inline u32 persist_schedule(struct xdp_md *ctx, int resumed,
					     u32 svc_idx, struct lvs_service *svc,
					     struct lvs_tuple *tuple, struct lvs_config *cfg,
					     u64 now, u64 conn_until, u32 open)
{
	struct lvs_tuple k;
	struct lvs_template *t;
	struct lvs_template fresh = {};
	u32 ref;
	int tier, err;

	template_key(&k, tuple, svc);
	t = template_lookup(&k, &tier, 1);
	if (t && template_alive(t, now, cfg->extend_ns) && template_usable(t, cfg)) {
		/* IPVS re-arms a template whose timer found connections with
		 * the step as its timeout, which each new connection then
		 * refreshes: a template alive past its expiry was re-armed */
		if (now >= t->expires && cfg->extend_ns)
			t->flags |= LVS_TPL_F_REARMED;
		t->expires = now + ((t->flags & LVS_TPL_F_REARMED) ? cfg->extend_ns :
				    svc->timeout_ns);
		if (t->ctl_until < conn_until)
			t->ctl_until = conn_until;
		if (open)
			__sync_fetch_and_add(&t->n_open, 1);
		return t->real;
	}
	if (t && template_alive(t, now, cfg->extend_ns))
		template_invalidate(&k, t, tier, cfg);
	ref = lvs_schedule(ctx, resumed, svc_idx, svc, tuple);
	if (!ref)
		return 0;
	fresh.expires = now + svc->timeout_ns;
	fresh.ctl_until = conn_until;
	fresh.created = now;
	fresh.real = ref;
	fresh.svc = svc_idx;
	fresh.n_open = open;
	/* A new template is embryonic, as its connection is; one that replaces
	 * a dead or invalid held template takes its place there (else the old
	 * would shadow it). */
	tier = t && tier == LVS_TIER_HELD ? LVS_TIER_HELD : LVS_TIER_NEW;
	filter_mark(LVS_FILTER_TEMPLATES, filter_hash_tuple(&k), tier);
	if (tier == LVS_TIER_HELD)
		err = templates.update(&k, &fresh);
	else
		err = tpl_new.update(&k, &fresh);
	if (err)
		count_reason(LVS_R_MAP_FULL, 0);
	return ref;
}

/* The connection c of a persistent service settled (conn_settle): its
 * template moves to the held tier, ASSURED once a TCP connection of it was
 * established (IPVS lists a template NONE until then, and a UDP one always:
 * its replies, which would assure it, never pass a DR director). A template
 * the embryonic tier lost meanwhile is made again for c's real. */
static __always_inline void template_settle(struct lvs_conn *c, struct lvs_tuple *tuple,
					    struct lvs_service *svc, u64 now)
{
	struct lvs_tuple k;
	struct lvs_template *t, copy = {};
	u16 assured = tuple->proto == IPPROTO_TCP ? LVS_TPL_F_ASSURED : 0;
	int err;

	template_key(&k, tuple, svc);
	t = templates.lookup(&k);
	if (t) {
		if (t->real == c->real)
			t->flags |= assured;
		return;
	}
	t = tpl_new.lookup(&k);
	if (t) {
		if (t->real != c->real)
			return;
		copy = *t;
	} else {
		copy.expires = now + svc->timeout_ns;
		copy.ctl_until = c->vouched;
		copy.created = now;
		copy.real = c->real;
		copy.svc = c->svc;
		copy.n_open = (c->flags & LVS_CONN_F_OPEN) ? 1 : 0;
	}
	copy.flags |= assured;
	/* a move, as conn_settle's */
	filter_mark(LVS_FILTER_TEMPLATES, filter_hash_tuple(&k), LVS_TIER_HELD);
	err = templates.insert(&k, &copy);
	if (err) {
		count_reason(LVS_R_HELD_FULL, 0);
		return;
	}
	tpl_new.delete(&k);
}

#endif
