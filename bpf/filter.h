/* "May be present" filters in front of the connection and template tables.
 *
 * A key that is in no table costs a random read of each large table it is
 * looked up in (bucket arrays of megabytes: a cache and TLB miss each), and
 * the new-flow paths look up keys that are mostly absent: a SYN's connection
 * (held, then embryonic), a new client's template (held, then embryonic), a
 * non-SYN of no connection. One byte per slot of a hash of the key, in a map
 * small enough to stay in cache, answers "absent" for most of those with one
 * read.
 *
 * Never "absent" for a present key:
 * - every insert into a table of the kind stores 1 in the key's slot of both
 *   generations before the insert (a reader on another CPU that could find
 *   the entry finds the byte: x86 keeps stores in order);
 * - the agent rebuilds the generation packets do not read (lvsxdp/filter.py):
 *   clears it, waits for an RCU grace period (every program run that may have
 *   stored before the clear has ended, its insert done), reads the tables,
 *   stores 1 for each key, then has packets read that generation. A key
 *   inserted later was stored after the clear. Byte stores, never a
 *   read-modify-write of a word, so no store of another CPU is lost. Deleted
 *   and evicted keys keep their 1 until the next rebuild: a false "maybe"
 *   costs only the lookups there were before.
 * - LVS_FILTER_OFF in ctl (a filter made next to tables that an older lvsxdp
 *   filled, until `up` rebuilds it): every table is read.
 */
#ifndef LVSXDP_FILTER_H
#define LVSXDP_FILTER_H

/* A multiplicative hash of the key's fields as lvs_tuple holds them (an IPv4
 * key: the first address words, the others zero); lvsxdp/filter.py computes
 * the same with numpy. The top bits are the best mixed: they pick the slot. */
static __always_inline u32 filter_hash(u32 caddr, u32 vaddr, u32 ports, u32 proto)
{
	u32 h = caddr * 0x9E3779B1u;

	h = (h ^ vaddr) * 0x85EBCA77u;
	h = (h ^ ports) * 0xC2B2AE3Du;
	h = (h ^ proto) * 0x27D4EB2Fu;
	return h >> (32 - LVS_FILTER_BITS);
}

static __always_inline u32 filter_hash_tuple(struct lvs_tuple *t)
{
	return filter_hash(t->caddr[0] ^ t->caddr[1] ^ t->caddr[2] ^ t->caddr[3],
			   t->vaddr[0] ^ t->vaddr[1] ^ t->vaddr[2] ^ t->vaddr[3],
			   (u32)t->cport | (u32)t->vport << 16, t->proto);
}

static __always_inline u32 filter_hash_conn4(struct lvs_conn4_key *k)
{
	return filter_hash(k->caddr, k->vaddr, (u32)k->cport | (u32)k->vport << 16, k->proto);
}

static __always_inline struct lvs_filter *filter_get(void)
{
	u32 zero = 0;

	return filter.lookup(&zero);
}

/* 0: no table of this kind holds a key of this slot. Indices are masked:
 * the verifier then knows they are inside slots. */
static __always_inline int filter_has(struct lvs_filter *f, u32 kind, u32 slot)
{
	u64 ctl = f->ctl;

	return f->slots[((kind * 2 + (ctl & LVS_FILTER_GEN)) * LVS_FILTER_SLOTS + slot) &
			(4 * LVS_FILTER_SLOTS - 1)] | (ctl & LVS_FILTER_OFF);
}

/* Before every insert of a key of this kind (see above). */
static __always_inline void filter_set(struct lvs_filter *f, u32 kind, u32 slot)
{
	u32 i = (kind * 2 * LVS_FILTER_SLOTS + slot) & (4 * LVS_FILTER_SLOTS - 1);

	*(volatile u8 *)&f->slots[i] = 1;
	*(volatile u8 *)&f->slots[(i + LVS_FILTER_SLOTS) & (4 * LVS_FILTER_SLOTS - 1)] = 1;
}

/* The same for callers that do not have the filter at hand (templates). */
static __always_inline int filter_maybe(u32 kind, u32 slot)
{
	struct lvs_filter *f = filter_get();

	return !f || filter_has(f, kind, slot);
}

static __always_inline void filter_mark(u32 kind, u32 slot)
{
	struct lvs_filter *f = filter_get();

	if (f)
		filter_set(f, kind, slot);
}

#endif
