/* "May be present" filters in front of the connection and template tables.
 *
 * A key that is in no table costs a random read of each large table it is
 * looked up in (bucket arrays of megabytes: a cache and TLB miss each), and
 * the new-flow paths look up keys that are mostly absent: a SYN's connection
 * (held, then embryonic), a new client's template (held, then embryonic), a
 * non-SYN of no connection (its embryonic tier). One byte per slot of a hash
 * of the key, in a map small enough to stay in cache while the tables are
 * small, answers "absent" for most of those with one read. Where the key is
 * mostly present (a non-SYN's held tier, a live connection's template) the
 * tables are read first: with large tables the filter's read misses too
 * (conn.h, persist.h).
 *
 * Never "absent" for a present key:
 * - every insert into a table of the kind stores 1 in the key's slot of both
 *   generations before the insert (a reader on another CPU that could find
 *   the entry finds the byte: x86 keeps stores in order);
 * - packets read both generations; the agent rebuilds one at a time, the
 *   other being complete (lvsxdp/filter.py): it clears it, waits for an RCU
 *   grace period (every program run that may have stored before the clear
 *   has ended, its insert done), reads the tables and stores 1 for each key.
 *   A key inserted later was stored after the clear. Byte stores, never a
 *   read-modify-write of a word, so no store of another CPU is lost.
 *   Deleted and evicted keys keep their 1 until both generations were
 *   rebuilt since: a false "maybe" costs only the lookups there were before.
 * - a filter made next to tables an older lvsxdp filled starts all 1s
 *   (`up`): every key may be present until the agent has rebuilt it.
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

/* The tiers (maps.h): a slot tells a held key from an embryonic one. A new
 * flow's key mostly collides with embryonic keys only (a flood, a burst of
 * new clients: the held tier holds established connections and assured
 * templates), and its embryonic lookup costs little (the insert that
 * follows reads the same bucket), where a held table's lookup is a cache
 * and TLB miss of its own (README, "Where the nanoseconds go"). */
#define LVS_TIER_HELD 0
#define LVS_TIER_NEW 1

/* A slot's four bytes are one word, little-endian:
 * slots[((kind * LVS_FILTER_SLOTS + slot) * 2 + tier) * 2 + generation]:
 * one 32-bit load reads both tiers' both generations, a 16-bit store
 * writes one tier's two. Indices are masked: the verifier then knows they
 * are inside slots. */
#define LVS_FILTER_WORD(kind, slot) \
	(((kind) * LVS_FILTER_SLOTS + (slot)) * 4 & ((8 * LVS_FILTER_SLOTS - 1) & ~3u))
#define LVS_FILTER_HELD_BITS 0x0000ffffu
#define LVS_FILTER_NEW_BITS 0xffff0000u

/* 0: no table of this kind holds a key of this slot; a tier's bits
 * (LVS_FILTER_*_BITS) 0: no table of that tier does. Either generation
 * will do: the one being rebuilt may lack keys, the other has them all, and
 * neither says "absent" for a key that is present. No control word to
 * read: one load, one line. */
static __always_inline u32 filter_word(struct lvs_filter *f, u32 kind, u32 slot)
{
	return *(volatile u32 *)&f->slots[LVS_FILTER_WORD(kind, slot)];
}

/* Before every insert of a key of this kind into this tier (see above): 1
 * in both generations. Only ever 1s: a store that overlaps another's loses
 * none. */
static __always_inline void filter_set(struct lvs_filter *f, u32 kind, u32 slot, int tier)
{
	*(volatile u16 *)&f->slots[LVS_FILTER_WORD(kind, slot) + (tier & 1) * 2] = 0x0101;
}

/* The same for callers that do not have the filter at hand (templates);
 * without the filter any key may be in either tier. */
static __always_inline u32 filter_maybe(u32 kind, u32 slot)
{
	struct lvs_filter *f = filter_get();

	return f ? filter_word(f, kind, slot) : ~0u;
}

static __always_inline void filter_mark(u32 kind, u32 slot, int tier)
{
	struct lvs_filter *f = filter_get();

	if (f)
		filter_set(f, kind, slot, tier);
}

#endif
