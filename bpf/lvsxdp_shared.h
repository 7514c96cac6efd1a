/* Every struct and constant that user space also reads.
 *
 * lvsxdp/shared.py mirrors this file with ctypes; tests/test_shared_layout.py
 * compares both against what the compiler made of it, so a change here that
 * is not made there fails the suite.
 */
#ifndef LVSXDP_SHARED_H
#define LVSXDP_SHARED_H

/* Capacities of the array maps. The hash tables (conns, templates) are sized
 * by `lvsxdp up` through LVSXDP_CONN_MAX / LVSXDP_TPL_MAX. */
#define LVS_MAX_SERVICES 256
#define LVS_MAX_REALS 4096
/* Slots of one scheduling ring. Each service owns two rings so that the
 * control plane can write a new one while packets still read the old. */
#define LVS_RING_SLOTS 4096

#define LVS_AF_INET 2
#define LVS_AF_INET6 10

/* A connection, and a persistence template, are both keyed like IPVS keys
 * them: <proto, caddr, cport, vaddr, vport>. Addresses are 16 bytes so one
 * code path serves IPv4 (first word, rest zero) and IPv6. A template has
 * cport 0; a firewall-mark template has proto 0 (IPPROTO_IP) and the mark,
 * in network order, as its vaddr - exactly what `ipvsadm -L -c` prints. */
struct lvs_tuple {
	__u8 family;
	__u8 proto;
	__be16 cport;
	__be16 vport;
	__u16 pad;
	__u32 caddr[4];
	__u32 vaddr[4];
};

/* "May be present" filters (bpf/filter.h): per kind (connections, templates),
 * tier (held, embryonic) and generation, one byte per slot of a hash of the
 * key; 0 in both generations means no table of that kind and tier holds the
 * key. A slot's four bytes are one word: [tier][generation]. built: the
 * generation the agent's last finished rebuild filled (packets never read
 * it). One value, so that one lookup finds it all. 65,536 slots a kind
 * (512 KB in all, 256 KB before the tiers were told apart) stay in cache:
 * 524,288 (2 MB) measured slower for new flows (peerbench c 2.2-2.3 against
 * 1.9 x Katran), their reads and stores missing as often as the table reads
 * they save. Past some 65,000 keys of a kind and tier it says "maybe" for
 * most keys and costs one cached read more than no filter. */
#ifndef LVS_FILTER_BITS
#define LVS_FILTER_BITS 16
#endif
#define LVS_FILTER_SLOTS (1 << LVS_FILTER_BITS)		/* per kind and generation */
#define LVS_FILTER_CONNS 0
#define LVS_FILTER_TEMPLATES 1

struct lvs_filter {
	__u8 slots[8 * LVS_FILTER_SLOTS];	/* [kind][slot][tier][generation] */
	__u32 built;
	/* Set by the agent while few connection slots say "held" (lvsxdp/
	 * filter.py): the filter then answers "not held" for most unknown keys
	 * and stays in cache, so a non-SYN reads it before the held tier
	 * (bpf/conn.h). A word of its own: the agent stores it alone. */
	__u32 sparse;
};

/* An IPv4 connection's key. A known connection's packet costs one hash
 * lookup, and hashing 16 bytes instead of lvs_tuple's 40 is a quarter of
 * the fast path; IPv6 connections use lvs_tuple. */
struct lvs_conn4_key {
	__u32 caddr;
	__u32 vaddr;
	__be16 cport;
	__be16 vport;
	__u8 proto;
	__u8 pad[3];
};

/* A VIP: which kinds of service it has, so a packet to a VIP costs only the
 * lookups that can match (the FTP rule and the port-0 catch-all). */
struct lvs_vip_key {
	__u8 family;
	__u8 pad[3];
	__u32 addr[4];
};
#define LVS_VIP_F_TCP0 (1 << 0)	/* -t VIP:0 exists */
#define LVS_VIP_F_UDP0 (1 << 1)	/* -u VIP:0 exists */
#define LVS_VIP_F_FTP (1 << 2)	/* -t VIP:21 exists */

/* Service lookup key. A firewall-mark service has only family and mark. */
struct lvs_svc_key {
	__u32 fwmark;
	__u8 family;
	__u8 proto;
	__be16 vport;
	__u32 vaddr[4];
};

#define LVS_SVC_F_ACTIVE (1 << 0)
#define LVS_SVC_F_PERSISTENT (1 << 1)
#define LVS_SVC_F_SCHED_FALLBACK (1 << 2)	/* -b sh-fallback, mh-fallback */
#define LVS_SVC_F_SCHED_PORT (1 << 3)		/* -b sh-port, mh-port */

/* The schedulers (bpf/sched.h). rr and wrr walk a ring holding their
 * decision sequence; lc, wlc, sed and nq scan a ring holding the service's
 * reals in IPVS's list order; sh and dh index a ring holding IPVS's
 * 256-bucket table, mh one holding its Maglev lookup table. */
#define LVS_SCHED_RR 0
#define LVS_SCHED_WRR 1
#define LVS_SCHED_LC 2
#define LVS_SCHED_WLC 3
#define LVS_SCHED_SED 4
#define LVS_SCHED_NQ 5
#define LVS_SCHED_SH 6
#define LVS_SCHED_DH 7
#define LVS_SCHED_MH 8
#define LVS_SH_TAB_SIZE 256	/* IP_VS_SH_TAB_SIZE, IP_VS_DH_TAB_SIZE */
#define LVS_MH_TAB_SIZE 4093	/* IP_VS_MH_TAB_SIZE (CONFIG_IP_VS_MH_TAB_INDEX 12) */

/* One service (an `ipvsadm -A` line), at index svc in svc_conf. */
struct lvs_service {
	__u32 netmask[4];	/* -M, applied to the client before template lookup */
	__u64 timeout_ns;	/* -p; 0 for a service without persistence */
	__u32 fwmark;		/* -f; 0 for -t / -u services */
	__u32 ring_off;		/* first slot of the ring packets read now */
	__u32 ring_len;		/* slots in use in that ring; 0: no real can take work */
	__be16 vport;
	__u8 flags;		/* LVS_SVC_F_* */
	__u8 sched;		/* LVS_SCHED_*: how the ring is read */
	__u8 family;
	__u8 proto;		/* 0 for a firewall-mark service */
	__u8 pad[6];
};

/* A real server of one service (an `ipvsadm -a` line), at index real & 0xffff
 * in reals. Templates and connections hold the whole ref: its upper half is a
 * generation, so a slot reused by another real never inherits old clients. */
#define LVS_REAL_F_AVAILABLE (1 << 0)	/* member of its service */
#define LVS_REAL_F_MAC_VALID (1 << 1)	/* the neighbour table knows its MAC */
#define LVS_REAL_F_TRASH (1 << 2)	/* removed (-d), kept while connections or
					 * templates may still name it: IPVS's
					 * trash. Not available: its packets are
					 * dropped; `-a` of it again revives it. */
#define LVS_REF_IDX(ref) ((ref) & 0xffff)

#define LVS_FWD_ROUTE 0		/* -g, direct routing */
#define LVS_FWD_MASQ 1		/* -m, NAT (bpf/nat.h) */
#define LVS_FWD_TUNNEL 2	/* -i, IP-in-IP, GUE or GRE (bpf/tunnel.h) */

/* --tun-type, numbered as IPVS numbers them (IP_VS_CONN_F_TUNNEL_TYPE_*) */
#define LVS_TUN_IPIP 0		/* IPv4 in IPv4; IPv6 in IPv6 for an IPv6 real */
#define LVS_TUN_GUE 1		/* in UDP with a 4-byte GUE header */
#define LVS_TUN_GRE 2		/* behind a GRE header */
/* --tun-csum etc. (IP_VS_TUNNEL_ENCAP_FLAG_*) */
#define LVS_TUN_F_CSUM (1 << 0)
#define LVS_TUN_F_REMCSUM (1 << 1)

struct lvs_real {
	__u32 ref;
	__u16 svc;
	__u16 weight;
	__u8 mac[6];
	__u16 flags;		/* LVS_REAL_F_* */
	__u32 addr[4];
	__be16 port;
	__u8 family;
	__u8 fwd;		/* LVS_FWD_* */
	__u32 u_threshold;	/* -x: no new connections from this many on (0: no limit) */
	__u32 l_threshold;	/* -y: new ones again below this many (0: 3/4 of -x) */
	/* Where the kernel routes to the real (__ip_vs_get_out_rt with
	 * IP_VS_RT_MODE_KNOWN_NH: the route's interface, the real's own MAC on
	 * it), cached by the control plane from the FIB and the neighbour
	 * table so that no packet pays a FIB lookup. mac above is that MAC. */
	__u32 ifindex;		/* egress interface; the receiving one: XDP_TX */
	__u8 smac[6];		/* the egress interface's MAC: the frame's source */
	__u16 tx_slot;		/* the egress interface in tx_ports (bpf_redirect_map) */
	__u32 mtu;		/* the egress interface's: a larger packet is not sent */
	/* -i: the director's address on the egress interface, the outer
	 * packet's source (chosen by the control plane as the kernel chooses
	 * a source for the route to the real) */
	__u32 tun_saddr[4];
	__be16 tun_port;	/* --tun-port (GUE) */
	__u8 tun_type;		/* LVS_TUN_* */
	__u8 tun_flags;		/* LVS_TUN_F_* */
	__u32 pad2;
};

/* A served interface (ifaces, keyed by ifindex): whose MAC a NAT reply is
 * sent to, and its slot in tx_ports. */
struct lvs_iface {
	__u8 mac[6];
	__u16 slot;
	__u32 mtu;
};

/* NAT (-m): what a reply from the real is translated back to. Keyed by the
 * reply's own tuple as the parser reads it (lvs_tuple: caddr/cport the
 * real's address and port, vaddr/vport the client's). */
struct lvs_nat_rev {
	__u32 vaddr[4];		/* the VIP the client asked */
	__be16 vport;
	__u16 svc;
	__u32 real;		/* ref */
	__u8 cmac[6];		/* the client's previous hop, as its packet came in:
				 * used when the FIB knows the route but not yet
				 * the neighbour */
	__u16 pad;
	__u32 cifindex;		/* the interface the client's packet came in on */
};

/* The hand-over from the packet path to the forwarding programs it
 * tail-calls (NAT, tunnel, ICMP too big): per CPU, written just before the
 * call within one packet's run. */
struct lvs_fwd_scratch {
	__u32 real;		/* index in reals */
	__u32 mtu;		/* LVS_PROG_TOO_BIG: the MTU to report */
	__u16 svc;
	__u8 new_conn;
	__u8 pad;
	__u32 pad2;
	/* LVS_PROG_TOO_BIG for a NAT reply, which the kernel's forwarding
	 * answers (ip_forward, ip6_forward) rather than IPVS: the error's
	 * source, the director's address toward the real; the packet is quoted
	 * as it came. All zero: IPVS's answer (the packet's destination as
	 * source, the quote one hop less). */
	__u32 err_src[4];
};

/* The interfaces `lvsxdp up` serves, by slot in tx_ports: the first (slot 0)
 * is the VIP side, the others are where reals may be. */
#define LVS_MAX_IFACES 64

/* Connections of a real as IPVS counts them for its schedulers and
 * thresholds: active (TCP in ESTABLISHED, SYN_SENT, SYN_RECV) and inactive
 * (every other TCP state, and UDP). Templates do not count.
 * The data plane keeps real_load with atomic adds when it creates a
 * connection or moves one into or out of an active state; it cannot see a connection
 * expire, so the agent counts the connection table every sweep and writes
 * the difference into real_load_fix. A real's load is the sum of both, each
 * only while its ref is the real's (a reused slot starts from nothing). */
struct lvs_load {
	__s64 active;
	__s64 inactive;
	__u32 ref;
	__u32 overload;		/* the -x that made the real overloaded; 0: it is not */
};

struct lvs_load_fix {
	__s64 active;
	__s64 inactive;
	__u32 ref;
	__u32 pad;
};

/* IPVS's TCP states, numbered as in include/uapi/linux/ip_vs.h, and one more
 * for UDP, whose connections have a single state. */
#define LVS_S_NONE 0
#define LVS_S_ESTABLISHED 1
#define LVS_S_SYN_SENT 2
#define LVS_S_SYN_RECV 3
#define LVS_S_FIN_WAIT 4
#define LVS_S_TIME_WAIT 5
#define LVS_S_CLOSE 6
#define LVS_S_CLOSE_WAIT 7
#define LVS_S_LAST_ACK 8
#define LVS_S_LISTEN 9
#define LVS_S_SYNACK 10
#define LVS_S_UDP 11
#define LVS_S_COUNT 12
#define LVS_S_SLOTS 16	/* timeout table size: a state masked with 15 indexes it */

/* One connection (5-tuple) and the real it goes to. */
/* lvs_conn.flags */
#define LVS_CONN_F_OPEN (1 << 0)	/* counted in its template's n_open */

struct lvs_conn {
	__u64 expires;		/* ns, CLOCK_MONOTONIC_COARSE */
	__u64 vouched;		/* what this connection last pushed into its
				 * template's ctl_until (always >= expires) */
	__u32 real;		/* ref */
	__u16 svc;
	__u8 state;		/* LVS_S_* */
	__u8 flags;
};

/* One persistence template: a client (or client network) and the real it
 * sticks to. expires is the persistence timeout, re-armed by each new
 * connection the template schedules. ctl_until bounds from above when the
 * connections it controls expire: while one may still be alive at expiry the
 * template is extended in steps (cfg.extend_ns) rather than dropped. */
#define LVS_TPL_F_ASSURED (1 << 0)	/* a TCP connection of it was established */
#define LVS_TPL_F_REARMED (1 << 2)	/* its timer fired with connections left: its
					 * timeout is the step from then on */
#define LVS_TPL_F_INVALID (1 << 1)	/* re-keyed to port 65535 as its real was
					 * removed (ip_vs_check_template): listed,
					 * never used, until its timer ends */
#define LVS_TPL_PORT_INVALID 0xffff

struct lvs_template {
	__u64 expires;
	__u64 ctl_until;
	__u64 created;
	__u32 real;
	__u16 svc;
	__u16 flags;
	/* So that the data plane lowers ctl_until itself when connections
	 * close (the agent's sweep makes it exact): how many TCP connections
	 * of it have not yet closed (LVS_CONN_F_OPEN), and the latest a closed
	 * one may live. When the last open one closes, ctl_until drops to
	 * closing_until. */
	__u64 closing_until;
	__u32 n_open;
	__u32 pad;
};

/* Director-wide settings (one entry). */
#define LVS_CFG_F_EXPIRE_NODEST_CONN (1 << 0)
#define LVS_CFG_F_EXPIRE_QUIESCENT_TEMPLATE (1 << 1)
/* Some firewall-mark service exists (or one in the trash): any address may
 * be a service's, so the VIP set cannot turn a packet away early. */
#define LVS_CFG_F_FWMARK (1 << 2)
#define LVS_CFG_F_NAT (1 << 3)	/* some real masquerades: look for its replies */

struct lvs_config {
	__u64 timeout_ns[LVS_S_SLOTS];	/* per connection state (--set) */
	__u64 extend_ns;		/* template extension step: 120 s */
	__u64 vouch_slack_ns;		/* see lvs_conn.vouched */
	__u8 mac[6];			/* the director NIC's */
	__u16 flags;			/* LVS_CFG_F_* */
	__u32 ifindex;
	__u64 netns_cookie;		/* which network namespace owns these maps */
	__u64 started;			/* when `up` first ran (ns, coarse monotonic) */
};

/* Firewall marks (classify.h): iptables mangle PREROUTING rules compiled
 * into one class per dimension and a table of marks per class combination.
 * Every table exists twice (gen 0 and 1): user space fills the generation
 * packets do not read, then switches mark_cfg.gen. */
#define LVS_MARK_PORT_SLOTS (2 * 65536)		/* per generation: tcp, udp */
#define LVS_MARK_COMBOS 131072
#define LVS_MARK_PREFIXES 65536
#define LVS_MARK_F_ACTIVE (1 << 0)		/* some rule can mark a packet */
#define LVS_MARK_F_SRC (1 << 1)			/* some rule tests the source */

struct lvs_mark_cfg {
	__u32 flags;
	__u32 gen;
};

/* LPM trie key: prefixlen counts the bits after it (32 for gen + pad, then
 * the IPv4 prefix). iptables rules apply to IPv4 only. */
struct lvs_mark_addr_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 pad[3];
	__u32 addr;
};

struct lvs_mark_key {
	__u32 gen;
	__u32 dst;	/* class of the destination address */
	__u32 src;	/* class of the source address (0 when no rule tests it) */
	__u32 port;	/* class of protocol and destination port */
};

/* Counters, per CPU. DR and tunnels see only the client's direction: their
 * out-counters stay 0, as IPVS's do; NAT counts the reals' replies there. */
struct lvs_stats {
	__u64 conns;
	__u64 packets;
	__u64 bytes;
	__u64 out_packets;
	__u64 out_bytes;
};

/* Rate estimates of one service or real (`ipvsadm -L --rate`), as IPVS's
 * ip_vs_est.c makes them: every 2 s the agent sums the per-CPU counters and
 * moves each rate a quarter of the way to the last 2 s's rate. Only the agent
 * and `ipvsadm -Z` write these; the data plane never reads them. */
struct lvs_est {
	__u64 last_conns;	/* counter sums at the previous tick */
	__u64 last_packets;
	__u64 last_bytes;
	__u64 cps;		/* scaled by 2^10, as IPVS scales them */
	__u64 pps;		/* scaled by 2^10 */
	__u64 bps;		/* scaled by 2^5 */
	__u32 owner;		/* whose estimate: a real's ref, a service's id */
	__u32 zeroed;		/* bumped by `ipvsadm -Z`: an agent pass that
				 * read an older value drops its result */
};

/* A scheduler's walk over its ring (bpf/sched.h), kept in one place so that
 * kernels without may_goto can go on with it in another program. */
struct lvs_sched_walk {
	__u64 start;		/* rr, wrr: the sequence position taken */
	__u64 best_oh;		/* lc wlc sed nq: the best overhead so far */
	__u64 best_w;		/* ... and its weight */
	__u32 best;		/* the decision (or the best so far): a ref, 0 for none */
	__u32 next;		/* the step to go on from */
	__u32 key;		/* sh, mh: the client's hash key */
	__u32 h;		/* sh, mh: the client's bucket */
};

/* The per-CPU hand-over between the packet path and lvsxdp_sched_* (kernels
 * without may_goto): the walk of one packet's new connection. */
struct lvs_sched_scratch {
	struct lvs_tuple tuple;	/* whose walk it is */
	struct lvs_sched_walk walk;
	__u32 svc;
	__u32 done;		/* walk.best is the decision for tuple in svc */
};

/* Steps of a walk per run of lvsxdp_sched_*: 4096-slot rings take 16 tail
 * calls at most (the kernel allows 33), and 256 steps verify quickly. */
#define LVS_SCHED_CHUNK 256
/* The programs in the progs array (tail calls). */
#define LVS_PROG_RESUME 0
#define LVS_PROG_SCHED_SEQ 1		/* rr, wrr */
#define LVS_PROG_SCHED_LEAST 2		/* lc, wlc, sed, nq */
#define LVS_PROG_SCHED_FALLBACK 3	/* sh, mh with -b *-fallback */
#define LVS_PROG_NAT 4			/* -m: the client's packet to the real (bpf/nat.h) */
#define LVS_PROG_NAT_REPLY 5		/* -m: the real's reply back to the client */
#define LVS_PROG_TUNNEL 6		/* -i (bpf/tunnel.h) */
#define LVS_PROG_TOO_BIG 7		/* ICMP fragmentation needed / packet too big (bpf/icmp.h) */
#define LVS_PROG_ICMP 8			/* an ICMP error about a connection (bpf/icmp.h) */
#define LVS_PROGS 9

/* Why a packet was not forwarded: every such packet is counted by reason. */
#define LVS_R_NOT_IP 0		/* not IPv4/IPv6 (ARP, LLDP, ...): pass */
#define LVS_R_TRUNCATED 1	/* a header runs past the frame, or an L4 header past the
				 * IP length: pass */
#define LVS_R_BAD_IP 2		/* bad version, IHL or length, TCP data offset < 5, UDP
				 * length outside 8..IP payload: pass */
#define LVS_R_FRAGMENT 3	/* IP fragment, ports unknown: pass */
#define LVS_R_IPV6_EXT 4	/* IPv6 extension header: pass */
#define LVS_R_NOT_TCP_UDP 5	/* other L4 protocol: pass */
#define LVS_R_NOT_FOR_US 6	/* destination MAC is not the NIC's: pass */
#define LVS_R_NO_SERVICE 7	/* no service matches: pass */
#define LVS_R_NOT_SYN 8		/* TCP without SYN (or with RST) for no known connection: pass */
#define LVS_R_NO_REAL 9		/* service has no real that can take work: drop */
#define LVS_R_REAL_GONE 10	/* connection's real was removed or lost its MAC: drop */
#define LVS_R_MAP_FULL 11	/* a connection or template could not be stored: forwarded anyway */
#define LVS_R_HELD_FULL 12	/* an established connection or its template stayed embryonic:
				 * the held table is full (maps.h): forwarded */
#define LVS_R_BAD_CSUM 13	/* IPv4 header checksum wrong (ip_rcv_core drops it): pass */
#define LVS_R_BAD_OPTIONS 14	/* IPv4 options malformed (ip_options_compile refuses): pass */
#define LVS_R_MARTIAN 15	/* source no host may have (0/8, loopback, multicast, 240/4,
				 * ::, ::1, ff00::/8, the destination itself) or a multicast
				 * or broadcast destination: pass, the kernel drops it */
#define LVS_R_TTL_EXCEEDED 16	/* TTL or hop limit <= 1 at the forward: pass, the kernel
				 * sends ICMP time exceeded */
#define LVS_R_TOO_BIG 17		/* larger than the egress interface's MTU (after a tunnel's
				 * headers): answered with ICMP fragmentation needed / packet
				 * too big as IPVS does; an IPv4 packet without DF (IPVS
				 * would fragment it) is dropped */
#define LVS_R_NO_ROUTE 18	/* a NAT reply whose client the FIB has no route (or
				 * neighbour) to: drop */
#define LVS_R_NO_HEADROOM 19	/* no room to prepend a tunnel's or an ICMP error's
				 * headers (bpf_xdp_adjust_head failed): drop */
#define LVS_R_COUNT 20

#endif
