/* Per-CPU counters: per service, per real, and per reason a packet was not
 * forwarded. Per-CPU so that the fast path never shares a cache line. */
#ifndef LVSXDP_STATS_H
#define LVSXDP_STATS_H

static __always_inline int count_reason(u32 reason, int action)
{
	u64 *n = reasons.lookup(&reason);

	if (n)
		*n += 1;
	return action;
}

static __always_inline void count_forward(u32 svc, u32 real_idx, u32 len, int new_conn)
{
	struct lvs_stats *s = svc_stats.lookup(&svc);

	if (s) {
		s->conns += new_conn;
		s->packets += 1;
		s->bytes += len;
	}
	s = real_stats.lookup(&real_idx);
	if (s) {
		s->conns += new_conn;
		s->packets += 1;
		s->bytes += len;
	}
}

#endif
