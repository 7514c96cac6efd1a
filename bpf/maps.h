/* The director's maps, all pinned under LVSXDP_PIN_DIR so that user space
 * reads and writes them without this program, and so that a reloaded program
 * (`lvsxdp up` again) finds every template and connection where it was.
 * LVSXDP_PIN_DIR, LVSXDP_CONN_MAX and LVSXDP_TPL_MAX come from `lvsxdp up`. */
#ifndef LVSXDP_MAPS_H
#define LVSXDP_MAPS_H

#define PIN(name) LVSXDP_PIN_DIR "/" #name

/* bcc's BPF_DEVMAP has no pinned form: its struct (so that bcc turns
 * redirect_map() into bpf_redirect_map on this map) in a pinned section.
 * Values are ifindexes (struct bpf_devmap_val without a program). */
#define LVS_DEVMAP_PINNED(_name, _max_entries, _pinned) \
struct _name##_table_t { \
	u32 key; \
	u32 leaf; \
	u64 (*redirect_map)(int, int); \
	u32 max_entries; \
}; \
__attribute__((section("maps/devmap:" _pinned))) \
struct _name##_table_t _name = { .max_entries = (_max_entries) }

BPF_TABLE_PINNED("array", u32, struct lvs_config, config, 1, PIN(config));
BPF_TABLE_PINNED("hash", struct lvs_vip_key, u32, vips, LVS_MAX_SERVICES, PIN(vips));
BPF_TABLE_PINNED("hash", struct lvs_svc_key, u32, services, LVS_MAX_SERVICES, PIN(services));
BPF_TABLE_PINNED("array", u32, struct lvs_service, svc_conf, LVS_MAX_SERVICES, PIN(svc_conf));
BPF_TABLE_PINNED("array", u32, struct lvs_real, reals, LVS_MAX_REALS, PIN(reals));
/* The served interfaces (slot -> ifindex): DR to a real behind another
 * interface than the receiving one is a bpf_redirect_map into this. */
LVS_DEVMAP_PINNED(tx_ports, LVS_MAX_IFACES, PIN(tx_ports));
/* Two rings per service: slots [svc * 2 * N, svc * 2 * N + 2 * N). */
BPF_TABLE_PINNED("array", u32, u32, sched_ring, LVS_MAX_SERVICES * 2 * LVS_RING_SLOTS, PIN(sched_ring));
BPF_TABLE_PINNED("array", u32, u64, sched_pos, LVS_MAX_SERVICES, PIN(sched_pos));
/* Connections per real (struct lvs_load): the data plane's count, and the
 * agent's correction from counting the connection table. */
BPF_TABLE_PINNED("array", u32, struct lvs_load, real_load, LVS_MAX_REALS, PIN(real_load));
BPF_TABLE_PINNED("array", u32, struct lvs_load_fix, real_load_fix, LVS_MAX_REALS,
		 PIN(real_load_fix));
/* Connections and templates live in two tiers, so that a flood of new flows
 * can only ever displace other new flows (README, "Floods"):
 * - embryonic (syn4, syn6, tpl_new): LRU tables. Every new connection starts
 *   here, and the template it creates too. A SYN flood, retransmitted or not,
 *   churns these and nothing else.
 * - held (conns4, conns6, templates): plain hash tables, which never evict.
 *   A connection moves here when the client's ACK establishes it (UDP: at its
 *   second packet), and its template with it (IPVS's ASSURED). When a held
 *   table is full the newcomer stays embryonic: a live entry is never dropped
 *   for a new one, as IPVS never drops one. The agent removes expired held
 *   entries; an entry found expired is replaced in place. */
#define LVS_MIN_TIER 4096
#define LVS_TIER_SIZE(held) ((held) / 4 > LVS_MIN_TIER ? (held) / 4 : \
			     ((held) < LVS_MIN_TIER ? (held) : LVS_MIN_TIER))
#define LVSXDP_SYN_MAX LVS_TIER_SIZE(LVSXDP_CONN_MAX)
#define LVSXDP_TPL_NEW_MAX LVS_TIER_SIZE(LVSXDP_TPL_MAX)
/* Memory: the IPv6 connections and the held templates take memory as they
 * fill (BPF_F_NO_PREALLOC): preallocated at the defaults they were 174 of
 * the maps' 385 MB, empty or not. The IPv4 connection table stays
 * preallocated: allocated on use, the known-connection path measured about
 * 6% slower (tools/bench_xdp.py, a_established per call; README,
 * "Performance"). The flags only decide how a table is created: tables
 * pinned by an earlier lvsxdp keep theirs until `down --flush`. The
 * LVSXDP_*_FLAGS defines let tools/bench_xdp.py -D measure either way. */
#ifndef LVSXDP_CONNS4_FLAGS
#define LVSXDP_CONNS4_FLAGS 0
#endif
#ifndef LVSXDP_CONNS6_FLAGS
#define LVSXDP_CONNS6_FLAGS BPF_F_NO_PREALLOC
#endif
#ifndef LVSXDP_TPL_FLAGS
#define LVSXDP_TPL_FLAGS BPF_F_NO_PREALLOC
#endif
BPF_TABLE_PINNED("hash", struct lvs_conn4_key, struct lvs_conn, conns4, LVSXDP_CONN_MAX,
		 PIN(conns4), LVSXDP_CONNS4_FLAGS);
BPF_TABLE_PINNED("hash", struct lvs_tuple, struct lvs_conn, conns6, LVSXDP_CONN_MAX,
		 PIN(conns6), LVSXDP_CONNS6_FLAGS);
BPF_TABLE_PINNED("hash", struct lvs_tuple, struct lvs_template, templates, LVSXDP_TPL_MAX,
		 PIN(templates), LVSXDP_TPL_FLAGS);
/* The embryonic tier keeps the common LRU list: per-CPU lists
 * (BPF_F_NO_COMMON_LRU) measured slower for new flows (peerbench b 1.4 ->
 * 1.6, c 2.5 -> 3.0, d 2.0 -> 2.9 x Katran) and give a one-CPU flood only
 * its CPU's share of the tier. */
BPF_TABLE_PINNED("lru_hash", struct lvs_conn4_key, struct lvs_conn, syn4, LVSXDP_SYN_MAX,
		 PIN(syn4));
BPF_TABLE_PINNED("lru_hash", struct lvs_tuple, struct lvs_conn, syn6, LVSXDP_SYN_MAX,
		 PIN(syn6));
BPF_TABLE_PINNED("lru_hash", struct lvs_tuple, struct lvs_template, tpl_new, LVSXDP_TPL_NEW_MAX,
		 PIN(tpl_new));
/* The "may be present" filters of the connection and template tables
 * (bpf/filter.h): both kinds, both generations, and the control word. User
 * space maps it (BPF_F_MMAPABLE) to store single bytes: a word written
 * through the syscall would overwrite bytes the data plane stored meanwhile. */
BPF_TABLE_PINNED("array", u32, struct lvs_filter, filter, 1, PIN(filter), BPF_F_MMAPABLE);
BPF_TABLE_PINNED("array", u32, struct lvs_mark_cfg, mark_cfg, 1, PIN(mark_cfg));
BPF_TABLE_PINNED("lpm_trie", struct lvs_mark_addr_key, u32, mark_dst, LVS_MARK_PREFIXES,
		 PIN(mark_dst), BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct lvs_mark_addr_key, u32, mark_src, LVS_MARK_PREFIXES,
		 PIN(mark_src), BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("array", u32, u32, mark_port, 2 * LVS_MARK_PORT_SLOTS, PIN(mark_port));
BPF_TABLE_PINNED("hash", struct lvs_mark_key, u32, mark_combo, LVS_MARK_COMBOS, PIN(mark_combo));
BPF_TABLE_PINNED("percpu_array", u32, struct lvs_stats, svc_stats, LVS_MAX_SERVICES, PIN(svc_stats));
BPF_TABLE_PINNED("percpu_array", u32, struct lvs_stats, real_stats, LVS_MAX_REALS, PIN(real_stats));
BPF_TABLE_PINNED("percpu_array", u32, u64, reasons, LVS_R_COUNT, PIN(reasons));
/* Rate estimates (struct lvs_est): written by the agent, read by ipvsadm -L --rate. */
BPF_TABLE_PINNED("array", u32, struct lvs_est, svc_est, LVS_MAX_SERVICES, PIN(svc_est));
BPF_TABLE_PINNED("array", u32, struct lvs_est, real_est, LVS_MAX_REALS, PIN(real_est));
/* Kernels without may_goto schedule in a program of their own
 * (bpf/sched.h): the programs to tail-call, and each CPU's walk. */
BPF_TABLE_PINNED("prog", u32, u32, progs, LVS_PROGS, PIN(progs));
BPF_TABLE_PINNED("percpu_array", u32, struct lvs_sched_scratch, sched_scratch, 1,
		 PIN(sched_scratch));
/* Forwarding other than DR (nat.h, tunnel.h, icmp.h): the served interfaces
 * by ifindex, the reverse of each NAT connection, and the hand-over to the
 * programs the packet path tail-calls. nat_rev takes memory only as NAT
 * connections come (a director without NAT pays nothing) and never evicts:
 * the agent removes the entries whose connection is gone. */
BPF_TABLE_PINNED("hash", u32, struct lvs_iface, ifaces, LVS_MAX_IFACES, PIN(ifaces));
BPF_TABLE_PINNED("hash", struct lvs_tuple, struct lvs_nat_rev, nat_rev, 2 * LVSXDP_CONN_MAX,
		 PIN(nat_rev), BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("percpu_array", u32, struct lvs_fwd_scratch, fwd_scratch, 1, PIN(fwd_scratch));

#endif
