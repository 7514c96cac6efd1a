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

/* A client's template: held (assured) first, then embryonic (maps.h). */
static __always_inline struct lvs_template *template_lookup(struct lvs_tuple *k, int *tier)
{
	struct lvs_template *t = templates.lookup(k);

	asm volatile("" : "+r"(t));
	*tier = LVS_TIER_HELD;
	if (t)
		return t;
	*tier = LVS_TIER_NEW;
	t = tpl_new.lookup(k);
	asm volatile("" : "+r"(t));
	return t;
}

/* A template sends its client to its real unless that real was removed or
 * lost its MAC, or - with expire_quiescent_template - has weight 0. */
static __always_inline int template_usable(struct lvs_template *t, struct lvs_config *cfg)
{
	struct lvs_real *r = real_usable(t->real);

	if (!r)
		return 0;
	if ((cfg->flags & LVS_CFG_F_EXPIRE_QUIESCENT_TEMPLATE) && r->weight == 0)
		return 0;
	return 1;
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
	t = template_lookup(&k, &tier);
	if (t && t->real == c->real && t->ctl_until < until)
		t->ctl_until = until;
	c->vouched = until;
}

/* The real for a new connection of a persistent service: the template's, or
 * a newly scheduled one with a new template. Refreshes the template as
 * ip_vs_sched_persist does (each new connection re-arms its timeout), and
 * records that the new connection lives until conn_until. */
static __always_inline u32 persist_schedule(struct xdp_md *ctx, int resumed,
					     u32 svc_idx, struct lvs_service *svc,
					     struct lvs_tuple *tuple, struct lvs_config *cfg,
					     u64 now, u64 conn_until)
{
	struct lvs_tuple k;
	struct lvs_template *t;
	struct lvs_template fresh = {};
	u32 ref;
	int tier, err;

	template_key(&k, tuple, svc);
	t = template_lookup(&k, &tier);
	if (t && template_alive(t, now, cfg->extend_ns) && template_usable(t, cfg)) {
		t->expires = now + svc->timeout_ns;
		if (t->ctl_until < conn_until)
			t->ctl_until = conn_until;
		return t->real;
	}
	ref = lvs_schedule(ctx, resumed, svc_idx, svc, tuple);
	if (!ref)
		return 0;
	fresh.expires = now + svc->timeout_ns;
	fresh.ctl_until = conn_until;
	fresh.created = now;
	fresh.real = ref;
	fresh.svc = svc_idx;
	/* A new template is embryonic, as its connection is; one that replaces
	 * a dead or invalid held template takes its place there (else the old
	 * would shadow it). */
	if (t && tier == LVS_TIER_HELD)
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
	}
	copy.flags |= assured;
	if (templates.insert(&k, &copy)) {
		count_reason(LVS_R_HELD_FULL, 0);
		return;
	}
	tpl_new.delete(&k);
}

#endif
