/* Scheduling a real for new work. The control plane compiles each
 * scheduler's decision sequence into a ring of real refs (rr: each
 * available real once; wrr: IPVS's weighted sequence), leaving out reals of
 * weight 0 and reals whose MAC is unknown; the data plane walks the ring with
 * one atomic counter per service. */
#ifndef LVSXDP_SCHED_H
#define LVSXDP_SCHED_H

/* Reals that may take new work: still in the service and reachable. */
static __always_inline struct lvs_real *real_usable(u32 ref)
{
	u32 idx = LVS_REF_IDX(ref);
	struct lvs_real *r = reals.lookup(&idx);
	const u16 want = LVS_REAL_F_AVAILABLE | LVS_REAL_F_MAC_VALID;

	if (!r || r->ref != ref || (r->flags & want) != want)
		return 0;
	return r;
}

/* A ring slot can point at a real that just lost its MAC (the agent has not
 * rebuilt the ring yet): try a few following slots before giving up. */
#define SCHED_TRIES 4

static __always_inline u32 schedule(u32 svc_idx, struct lvs_service *svc)
{
	u64 *pos = sched_pos.lookup(&svc_idx);
	u64 start;

	if (!pos || svc->ring_len == 0 || svc->ring_len > LVS_RING_SLOTS)
		return 0;
	start = __sync_fetch_and_add(pos, 1);
#pragma unroll
	for (int i = 0; i < SCHED_TRIES; i++) {
		u32 slot = svc->ring_off + (u32)((start + i) % svc->ring_len);
		u32 *ref = sched_ring.lookup(&slot);

		if (ref && real_usable(*ref))
			return *ref;
	}
	return 0;
}

#endif
