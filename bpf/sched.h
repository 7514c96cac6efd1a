/* Scheduling a real for new work, as IPVS's schedulers do (ip_vs_rr.c,
 * ip_vs_wrr.c, ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c, ip_vs_nq.c, ip_vs_sh.c,
 * ip_vs_dh.c, ip_vs_mh.c), and the per-real connection counts and overload
 * flag (-x/-y) that the load-based ones and every threshold read.
 *
 * The control plane compiles each service's scheduler into a ring of real
 * refs (lvsxdp/plan.py):
 *   rr, wrr        the decision sequence, over reals of weight > 0 whose MAC
 *                  is known; one atomic counter per service walks it
 *   lc wlc sed nq  the reals of weight > 0 with a known MAC, in IPVS's list
 *                  order; scanned whole for the least loaded
 *   sh, dh         IPVS's 256-bucket table, over every real of the service
 *   mh             IPVS's Maglev lookup table (4093 slots), likewise
 * A real in a slot still gets new work only if it takes it now: reachable,
 * weight > 0, not overloaded (real_takes_new).
 *
 * The walks go as far as IPVS's do (a whole ring, a whole table: up to 4096
 * steps) and end on the ring's length, which the verifier does not know.
 * bcc cannot load bpf_loop() callbacks or BPF-to-BPF calls, so a walk is a
 * plain loop, in a program of its own: the packet path saves the walk
 * (struct lvs_sched_walk) in a per-CPU scratch entry and tail-calls
 * lvsxdp_sched_seq, _least or _fallback, which ends by tail-calling
 * lvsxdp_resume: the packet path once more, which takes the decision from
 * the scratch entry where it would have scheduled. Nothing before that point
 * writes state, so running it twice is invisible. Only new connections that
 * the first step (sched_begin) does not settle pay for it: rr's and wrr's
 * next slot, sh, dh and mh's bucket are settled there.
 *
 * Why out of line: inline, each of the ~100 distinct verifier states that
 * reach the scheduler walks the loop; with may_goto that took the 6.12
 * verifier past its limit of 1M instructions, and with loops bounded by a
 * constant a few loops of 128 are past it on any kernel. Entered with one
 * state, a walk costs the verifier a few 10k instructions.
 *
 * The loops themselves, two ways; `lvsxdp up` picks one (lvsxdp/loader.py):
 * - may_goto (Linux 6.9 and later): guarded by can_loop, so that the
 *   verifier checks the body until it converges; one run walks it all. The
 *   counters stay free of constant bounds (a counter compared with a
 *   constant is tracked exactly, iteration by iteration).
 * - bounded (any kernel with bounded loops): LVS_SCHED_CHUNK steps per run,
 *   the program tail-calling itself to go on (4096 / 256 = 16 calls at
 *   most; the kernel allows 33). */
#ifndef LVSXDP_SCHED_H
#define LVSXDP_SCHED_H

#ifdef LVSXDP_MAY_GOTO
/* true until the kernel's budget of iterations runs out (may_goto, spelled
 * in bytes for compilers older than LLVM 19; bpf_experimental.h's can_loop) */
#define can_loop							\
	({ __label__ l_break, l_continue;				\
	int ret = 1;							\
	asm volatile goto("1:.byte 0xe5;				\
		      .byte 0;						\
		      .long ((%l[l_break] - 1b - 8) / 8) & 0xffff;	\
		      .short 0"						\
		      :::: l_break);					\
	goto l_continue;						\
	l_break: ret = 0;						\
	l_continue:;							\
	ret;								\
	})
/* i from `from` on, until the walk ends or the kernel's budget does */
#define WALK_LOOP(i, from) for (u32 i = (from); can_loop; i++)
#else
/* LVS_SCHED_CHUNK steps from `from` on: the constant-bounded counter j_ is
 * what the verifier follows */
#define WALK_LOOP(i, from)						\
	for (u32 j_ = 0, i = (from); j_ < LVS_SCHED_CHUNK; j_++, i++)
#endif

/* Reals that may carry packets: still in the service and reachable. */
static __always_inline struct lvs_real *real_usable(u32 ref)
{
	u32 idx = LVS_REF_IDX(ref);
	struct lvs_real *r = reals.lookup(&idx);
	const u16 want = LVS_REAL_F_AVAILABLE | LVS_REAL_F_MAC_VALID;

	if (!r || r->ref != ref || (r->flags & want) != want)
		return 0;
	return r;
}

/* -- connection counts ------------------------------------------------------ */

/* IPVS binds a new connection as inactive (a real's conn_flags carry
 * IP_VS_CONN_F_INACTIVE) and counts a TCP one active while its state is
 * ESTABLISHED, SYN_SENT or SYN_RECV (set_tcp_state, tcp_state_active): a
 * client's SYN already makes it active. UDP connections stay inactive. */
static __always_inline int conn_is_active(u8 state)
{
	return state >= LVS_S_ESTABLISHED && state <= LVS_S_SYN_RECV;
}

struct real_load {
	struct lvs_load *own;	/* the data plane's entry, 0 when it is another real's */
	s64 active;
	s64 inactive;
};

static __always_inline void load_read(u32 ref, struct real_load *l)
{
	u32 idx = LVS_REF_IDX(ref);
	struct lvs_load *a = real_load.lookup(&idx);
	struct lvs_load_fix *f = real_load_fix.lookup(&idx);
	s64 active = 0, inactive = 0;

	l->own = 0;
	if (a && a->ref == ref) {
		l->own = a;
		active = a->active;
		inactive = a->inactive;
	}
	if (f && f->ref == ref) {
		active += f->active;
		inactive += f->inactive;
	}
	l->active = active > 0 ? active : 0;
	l->inactive = inactive > 0 ? inactive : 0;
}

/* IP_VS_DEST_F_OVERLOAD, evaluated when it is read. IPVS sets it when a new
 * connection brings the real to -x connections (ip_vs_bind_dest) and clears
 * it when one ends below -y, or below 3/4 of -x without a -y
 * (ip_vs_unbind_dest), or when -x is removed or raised (__ip_vs_update_dest).
 * Here the data plane sets it, and lifts it the first time it finds one of
 * those true. */
static __always_inline int real_overloaded(struct lvs_real *r, struct real_load *l)
{
	struct lvs_load *a = l->own;
	u32 u = r->u_threshold, lower = r->l_threshold;
	s64 total = l->active + l->inactive;

	if (!a || !a->overload)
		return 0;
	if (u && u <= a->overload &&
	    (lower ? total >= lower : total * 4 >= (s64)u * 3))
		return 1;
	a->overload = 0;
	return 0;
}

/* A real that may take a new connection or template now: reachable,
 * weight > 0 (quiescent otherwise), not overloaded. Fills l with its load
 * when its scheduler or its threshold needs it. */
static __always_inline struct lvs_real *real_takes_new(u32 ref, struct real_load *l, int need_load)
{
	struct lvs_real *r = real_usable(ref);

	if (!r || r->weight == 0)
		return 0;
	if (!need_load && !r->u_threshold)
		return r;
	load_read(ref, l);
	return real_overloaded(r, l) ? 0 : r;
}

/* A connection to r was created (ip_vs_bind_dest). */
static __always_inline void load_bind(struct lvs_real *r, u8 state)
{
	u32 idx = LVS_REF_IDX(r->ref);
	struct lvs_load *a = real_load.lookup(&idx);
	struct real_load l;

	if (!a)
		return;
	if (a->ref != r->ref) {
		/* a new real in this slot: the old one's count is not its */
		a->active = 0;
		a->inactive = 0;
		a->overload = 0;
		a->ref = r->ref;
	}
	if (conn_is_active(state))
		__sync_fetch_and_add(&a->active, 1);
	else
		__sync_fetch_and_add(&a->inactive, 1);
	if (r->u_threshold) {
		load_read(r->ref, &l);
		if (l.active + l.inactive >= r->u_threshold)
			a->overload = r->u_threshold;
	}
}

/* A live connection of ref is replaced by a new one (TIME_WAIT or CLOSE
 * reused). Expired connections are not counted down here: the agent's
 * recount already left them out. */
static __always_inline void load_unbind(u32 ref, u8 state)
{
	u32 idx = LVS_REF_IDX(ref);
	struct lvs_load *a = real_load.lookup(&idx);

	if (!a || a->ref != ref)
		return;
	if (conn_is_active(state))
		__sync_fetch_and_add(&a->active, -1);
	else
		__sync_fetch_and_add(&a->inactive, -1);
}

/* A connection of ref changed state; IPVS moves it between the active and
 * inactive counts when it enters or leaves an active state. */
static __always_inline void load_move(u32 ref, u8 from, u8 to)
{
	u32 idx = LVS_REF_IDX(ref);
	struct lvs_load *a;
	s64 d;

	if (conn_is_active(from) == conn_is_active(to))
		return;
	a = real_load.lookup(&idx);
	if (!a || a->ref != ref)
		return;
	d = conn_is_active(to) ? 1 : -1;
	__sync_fetch_and_add(&a->active, d);
	__sync_fetch_and_add(&a->inactive, -d);
}

/* -- rings ------------------------------------------------------------------ */

static __always_inline u32 ring_at(struct lvs_service *svc, u32 i)
{
	u32 slot = svc->ring_off + i;
	u32 *ref;

	if (i >= svc->ring_len)
		return 0;
	ref = sched_ring.lookup(&slot);
	return ref ? *ref : 0;
}

/* -- the walks ----------------------------------------------------------------
 * Each *_step() takes step i of its walk and returns 1 when the walk is over,
 * its decision (a real's ref, or 0) in w->best. */

/* rr, wrr: the next slot whose real takes new work. A skipped slot (an
 * overloaded real, one that just lost its MAC) is passed for good, as
 * IPVS's rr and wrr move their mark past it. */
static __always_inline int seq_step(u32 svc_idx, struct lvs_service *svc,
				    struct lvs_sched_walk *w, u32 i)
{
	u32 n = svc->ring_len;
	struct real_load l;
	u64 *pos;
	u32 ref;

	if (i >= n || n > LVS_RING_SLOTS)
		return 1;
	ref = ring_at(svc, (u32)((w->start + i) % n));
	if (!ref || !real_takes_new(ref, &l, 0))
		return 0;
	pos = sched_pos.lookup(&svc_idx);
	if (i && pos)
		__sync_fetch_and_add(pos, i);
	w->best = ref;
	return 1;
}

/* lc, wlc, sed, nq: the least loaded real, the first in list order among
 * equals. Overheads as IPVS computes them:
 *   lc, wlc   active * 256 + inactive (ip_vs_dest_conn_overhead), wlc per weight
 *   sed, nq   active + 1, per weight; nq first takes any real with no active
 * "a/wa < b/wb" is compared as a * wb < b * wa, in 64 bits as IPVS does. */
static __always_inline int least_step(struct lvs_service *svc, u8 kind, struct lvs_sched_walk *w,
				      u32 i)
{
	struct real_load l;
	struct lvs_real *r;
	u64 oh, wt;
	u32 ref;

	if (i >= svc->ring_len)
		return 1;
	ref = ring_at(svc, i);
	r = ref ? real_takes_new(ref, &l, 1) : 0;
	if (!r)
		return 0;
	if (kind == LVS_SCHED_SED || kind == LVS_SCHED_NQ) {
		if (kind == LVS_SCHED_NQ && l.active == 0) {
			w->best = ref;
			return 1;
		}
		oh = l.active + 1;
	} else {
		oh = (l.active << 8) + l.inactive;
	}
	wt = kind == LVS_SCHED_LC ? 1 : r->weight;
	if (!w->best || w->best_oh * wt > oh * w->best_w) {
		w->best = ref;
		w->best_oh = oh;
		w->best_w = wt;
	}
	return 0;
}

/* -- hashing schedulers ----------------------------------------------------- */

#define GOLDEN_RATIO_32 0x61C88647

/* hash_32() of include/linux/hash.h (no arch override on x86; renamed: the
 * kernel's headers bcc reads may declare theirs) */
static __always_inline u32 lvs_hash_32(u32 val, u32 bits)
{
	return (val * GOLDEN_RATIO_32) >> (32 - bits);
}

/* An address as ip_vs_sh/dh/mh fold it: IPv4 as is, IPv6 as the xor of its
 * words; in host order. */
static __always_inline u32 addr_fold(const u32 *a, u8 family)
{
	if (family == LVS_AF_INET)
		return bpf_ntohl(a[0]);
	return bpf_ntohl(a[0] ^ a[1] ^ a[2] ^ a[3]);
}

#define ROL64(x, n) (((x) << (n)) | ((x) >> (64 - (n))))
#define SIPROUND(v0, v1, v2, v3) do { \
	v0 += v1; v1 = ROL64(v1, 13); v1 ^= v0; v0 = ROL64(v0, 32); \
	v2 += v3; v3 = ROL64(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROL64(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROL64(v1, 17); v1 ^= v2; v2 = ROL64(v2, 32); \
	} while (0)

/* hsiphash() of one u32 on a 64-bit kernel (SipHash-1-3, lib/siphash.c),
 * with ip_vs_mh's key: both words k. */
static __always_inline u32 hsiphash_u32(u32 data, u64 k)
{
	u64 v0 = 0x736f6d6570736575ULL ^ k;
	u64 v1 = 0x646f72616e646f6dULL ^ k;
	u64 v2 = 0x6c7967656e657261ULL ^ k;
	u64 v3 = 0x7465646279746573ULL ^ k;
	u64 b = ((u64)4 << 56) | data;

	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return (u32)((v0 ^ v1) ^ (v2 ^ v3));
}

#define MH_HASH1 2654435761ULL	/* generate_hash_secret() */

/* The buckets -b sh-fallback and mh-fallback try after the client's own
 * bucket h, k = 0 .. table size - 1:
 *   sh  ip_vs_sh_get_fallback adds the offset to the hash of the offset:
 *       bucket (2 * h + k) & 255
 *   mh  ip_vs_mh_get_fallback hashes the client again with the offset:
 *       hsiphash(key + (h + k) % 4093) % 4093 */
static __always_inline u32 fallback_bucket(u8 sched, u32 key, u32 h, u32 k)
{
	if (sched == LVS_SCHED_SH)
		return (2 * h + k) & (LVS_SH_TAB_SIZE - 1);
	return hsiphash_u32((h + k) % LVS_MH_TAB_SIZE + key, MH_HASH1) % LVS_MH_TAB_SIZE;
}

/* sh, mh with -b *-fallback: the first real that takes the client in the
 * buckets IPVS tries after the client's own (as many as the table has). */
static __always_inline int fallback_step(struct lvs_service *svc, u8 kind,
					 struct lvs_sched_walk *w, u32 k)
{
	struct real_load l;
	u32 ref;

	if (k >= svc->ring_len)
		return 1;
	ref = ring_at(svc, fallback_bucket(kind, w->key, w->h, k));
	if (!ref)
		return 1;
	if (!real_takes_new(ref, &l, 0))
		return 0;
	w->best = ref;
	return 1;
}

/* Starts the walk of packet t in service svc, whose scheduler is kind (read
 * once: each read of the map is a new unknown to the verifier): returns 1
 * when the decision is made without a walk (in w->best). */
static __always_inline int sched_begin(u32 svc_idx, struct lvs_service *svc, u8 kind,
				       struct lvs_tuple *t, struct lvs_sched_walk *w)
{
	struct real_load l;
	u32 port, ref;
	u64 *pos;

	w->best = 0;
	w->best_oh = 0;
	w->best_w = 1;
	switch (kind) {
	case LVS_SCHED_RR:
	case LVS_SCHED_WRR:
		pos = sched_pos.lookup(&svc_idx);
		if (!pos || svc->ring_len == 0)
			return 1;
		w->start = __sync_fetch_and_add(pos, 1);
		/* the first slot mostly takes it: settle that here (with tail
		 * calls, the packet is spared them) */
		w->next = 1;
		return seq_step(svc_idx, svc, w, 0);
	case LVS_SCHED_LC:
	case LVS_SCHED_WLC:
	case LVS_SCHED_SED:
	case LVS_SCHED_NQ:
		return 0;
	case LVS_SCHED_DH:
		/* the destination's bucket, no fallback */
		ref = ring_at(svc, lvs_hash_32(addr_fold(t->vaddr, t->family), 8));
		if (ref && real_takes_new(ref, &l, 0))
			w->best = ref;
		return 1;
	case LVS_SCHED_SH:
	case LVS_SCHED_MH:
		/* the client's address (with -b *-port, plus its port): sh
		 * hash_32 to 8 bits, mh hsiphash into the Maglev table */
		port = (svc->flags & LVS_SVC_F_SCHED_PORT) ? bpf_ntohs(t->cport) : 0;
		w->key = port + addr_fold(t->caddr, t->family);
		w->h = kind == LVS_SCHED_SH ? lvs_hash_32(w->key, 8) :
		       hsiphash_u32(w->key, MH_HASH1) % LVS_MH_TAB_SIZE;
		ref = ring_at(svc, w->h);
		if (!ref)
			return 1;
		if (real_takes_new(ref, &l, 0)) {
			w->best = ref;
			return 1;
		}
		return !(svc->flags & LVS_SVC_F_SCHED_FALLBACK);
	}
	return 1;
}

/* Walks from step `from` on: return 1 when the walk is over, 0 when it
 * stopped at the end of its chunk (w->next says where to go on). */
static __always_inline int walk_seq(u32 svc_idx, struct lvs_service *svc,
				    struct lvs_sched_walk *w, u32 from)
{
	WALK_LOOP(i, from) {
		if (seq_step(svc_idx, svc, w, i))
			return 1;
	}
	w->next = from + LVS_SCHED_CHUNK;
	return 0;
}

static __always_inline int walk_least(struct lvs_service *svc, u8 kind,
				      struct lvs_sched_walk *w, u32 from)
{
	WALK_LOOP(i, from) {
		if (least_step(svc, kind, w, i))
			return 1;
	}
	w->next = from + LVS_SCHED_CHUNK;
	return 0;
}

static __always_inline int walk_fallback(struct lvs_service *svc, u8 kind,
					 struct lvs_sched_walk *w, u32 from)
{
	WALK_LOOP(i, from) {
		if (fallback_step(svc, kind, w, i))
			return 1;
	}
	w->next = from + LVS_SCHED_CHUNK;
	return 0;
}

/* Which walk a scheduler takes: LVS_PROG_SCHED_* (and its program). */
static __always_inline u32 walk_of(u8 kind)
{
	switch (kind) {
	case LVS_SCHED_RR:
	case LVS_SCHED_WRR:
		return LVS_PROG_SCHED_SEQ;
	case LVS_SCHED_LC:
	case LVS_SCHED_WLC:
	case LVS_SCHED_SED:
	case LVS_SCHED_NQ:
		return LVS_PROG_SCHED_LEAST;
	}
	return LVS_PROG_SCHED_FALLBACK;
}

/* (no __builtin_memcmp: LLVM leaves it a call to memcmp, which BPF lacks) */
static __always_inline int tuple_eq(struct lvs_tuple *a, struct lvs_tuple *b)
{
	u64 *x = (u64 *)a, *y = (u64 *)b;

	_Static_assert(sizeof(*a) == 40, "lvs_tuple is five words");
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) |
		(x[4] ^ y[4])) == 0;
}

/* The real for new work of packet t in service svc, 0 for none. A walk goes
 * on in lvsxdp_sched_*, and this packet's path is taken again from the start
 * in lvsxdp_resume, which finds the decision here. */
static __always_inline u32 lvs_schedule(struct xdp_md *ctx, int resumed, u32 svc_idx,
					struct lvs_service *svc, struct lvs_tuple *t)
{
	u32 zero = 0;
	struct lvs_sched_scratch *s = sched_scratch.lookup(&zero);
	u8 kind = svc->sched;

	if (!s)
		return 0;
	if (resumed && s->done && s->svc == svc_idx && tuple_eq(&s->tuple, t)) {
		s->done = 0;
		return s->walk.best;
	}
	__builtin_memset(s, 0, sizeof(*s));
	if (sched_begin(svc_idx, svc, kind, t, &s->walk))
		return s->walk.best;
	__builtin_memcpy(&s->tuple, t, sizeof(*t));
	s->svc = svc_idx;
	progs.call(ctx, walk_of(kind));
	return 0;	/* no programs to call: the packet is dropped as no_real */
}

#endif
