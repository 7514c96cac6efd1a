/* Header parsing with a cursor: Ethernet (one 802.1Q/802.1ad tag), IPv4 or
 * IPv6, then TCP or UDP. Each step either advances or names the reason the
 * packet is not ours. Nothing here writes to the packet.
 *
 * A frame Linux would drop before IPVS sees it (ip_rcv_core's checks, the
 * options ip_options_compile refuses, the martians ip_route_input_slow
 * refuses) is passed untouched, so the kernel drops and counts it the way it
 * always has; it never reaches the connection table. */
#ifndef LVSXDP_PARSE_H
#define LVSXDP_PARSE_H

#define ETH_P_IP_BE 0x0008	/* htons(0x0800) */
#define ETH_P_IPV6_BE 0xDD86	/* htons(0x86DD) */
#define ETH_P_8021Q_BE 0x0081	/* htons(0x8100) */
#define ETH_P_8021AD_BE 0xA888	/* htons(0x88A8) */
#define IP_MF_OFFSET_BE 0xFF3F	/* htons(IP_MF | IP_OFFSET) */

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

#define IPV4_OPT_MAX 40		/* IHL 15: 60 bytes, 20 of them the fixed header */

struct packet {
	struct ethhdr *eth;
	struct lvs_tuple tuple;		/* family, proto, cport, vport, caddr, vaddr */
	__u32 len;			/* the IP packet's length: what IPVS's byte
					 * counters count (not the Ethernet frame) */
	__u8 tcp_flags;
	__u8 ttl;			/* IPv4 TTL, IPv6 hop limit */
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* A 16-bit length field in host order, bounded for the verifier: up to
 * Linux 6.12 at least it learns nothing from a byte swap, and a packet
 * pointer plus an unbounded value is refused. The empty asm keeps LLVM from
 * dropping the mask it can prove useless. */
static __always_inline __u32 len16(__be16 v)
{
	__u32 n = bpf_ntohs(v);

	asm volatile("" : "+r"(n));
	return n & 0xffff;
}

/* The L4 header of an IP payload of l4_len bytes: it must fit in the IP
 * packet, not only in the frame (bytes past the IP length are Ethernet
 * padding, never ports: Linux drops such a packet). So must the whole TCP
 * header its data offset claims (tcp_v4_rcv), and a UDP length must lie
 * between its own header and the IP payload (__udp4_lib_rcv). */
static __always_inline int parse_l4(void *l4, __u32 l4_len, void *data_end, struct packet *pkt)
{
	if (pkt->tuple.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp))
			return LVS_R_TRUNCATED;
		if (tcp->doff < 5)
			return LVS_R_BAD_IP;
		if (tcp->doff * 4 > l4_len)
			return LVS_R_TRUNCATED;
		pkt->tuple.cport = tcp->source;
		pkt->tuple.vport = tcp->dest;
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		return -1;
	}
	if (pkt->tuple.proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		__u32 ulen;

		if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp))
			return LVS_R_TRUNCATED;
		ulen = len16(udp->len);
		if (ulen < sizeof(*udp) || ulen > l4_len)
			return LVS_R_BAD_IP;
		pkt->tuple.cport = udp->source;
		pkt->tuple.vport = udp->dest;
		return -1;
	}
	return LVS_R_NOT_TCP_UDP;
}

/* The options of an IPv4 header, as ip_options_compile reads them: EOL ends
 * the list, NOP is one byte, any other option has a length byte of at least
 * 2 that stays inside the options. They are copied to the stack first: a
 * walk over packet pointers would give the verifier one packet range per
 * option layout, and every state after it doubled. The copy's 16-bit words
 * are added to *sum (the bytes past optlen stay zero and add nothing). */
static __always_inline int ipv4_options(struct xdp_md *ctx, __u32 off, struct iphdr *ip,
					__u32 *sum)
{
	__u8 opt[64] = {};	/* indices masked with 63: bounds the verifier sees */
	__u32 i, skip = 0, end = 0, optlen;

	/* IHL read again rather than passed: the walk's bounds on a register
	 * parse_ipv4 still uses would give every later state one copy per
	 * options length. */
	optlen = ip->ihl * 4 - sizeof(*ip) - 1;
	if (optlen >= IPV4_OPT_MAX)	/* only for the verifier: 1..40 bytes */
		return LVS_R_BAD_IP;
	asm volatile("" : "+r"(optlen));	/* + 1 after the bound, not before */
	optlen += 1;
	if (bpf_xdp_load_bytes(ctx, off, opt, optlen))
		return LVS_R_TRUNCATED;
#pragma unroll
	for (i = 0; i < IPV4_OPT_MAX / 2; i++)
		*sum += ((__u16 *)opt)[i];
	/* Byte by byte: skip counts the bytes left of the option being
	 * crossed, end is where the last option ends. The bytes past optlen
	 * are zeros, EOL, so the loop needs no optlen: an option running past
	 * the end shows as end > optlen afterwards. Neither skip nor end is an
	 * offset, so the verifier sees a handful of states a byte, not one per
	 * option layout. The barriers keep LLVM from turning the skipping into
	 * a jump, and the masks (useless to LLVM) bound the stack offsets. */
#pragma clang loop unroll(disable)
	for (i = 0; i < IPV4_OPT_MAX; i++) {
		__u32 type, len, next = i + 1;

		asm volatile("" : "+r"(i), "+r"(skip), "+r"(next));
		if (skip) {
			skip--;
			continue;
		}
		type = opt[i & 63];
		if (type == IPOPT_END)
			break;
		if (type == IPOPT_NOOP)
			continue;
		len = opt[next & 63];
		if (len < 2)
			return LVS_R_BAD_OPTIONS;
		skip = len - 1;
		end = i + len;
	}
	if (end > optlen)
		return LVS_R_BAD_OPTIONS;
	return -1;
}

/* ip_fast_csum's check: the ones' complement sum of the header, its own
 * checksum field included, is 0xffff. The fixed 20 bytes are inside the
 * frame once the header is; options add theirs in ipv4_options. */
static __always_inline __u32 ipv4_fixed_sum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	return sum;
}

static __always_inline int csum_folds_to_ones(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static __always_inline int parse_ipv4(struct xdp_md *ctx, __u32 l3_off, struct iphdr *ip,
				      void *data_end, struct packet *pkt)
{
	__u32 ihl, len, sum;
	int options = -1;

	if ((void *)(ip + 1) > data_end)
		return LVS_R_TRUNCATED;
	ihl = ip->ihl * 4;
	len = len16(ip->tot_len);
	if (ip->version != 4 || ihl < sizeof(*ip) || len < ihl)
		return LVS_R_BAD_IP;
	if ((void *)ip + len > data_end)
		return LVS_R_TRUNCATED;
	/* ihl <= 60: the verifier needs the bound to accept the variable offset */
	if (ihl > 60)
		return LVS_R_BAD_IP;
	sum = ipv4_fixed_sum(ip);
	if (ihl > sizeof(*ip)) {
		options = ipv4_options(ctx, l3_off + sizeof(*ip), ip, &sum);
		if (options >= 0 && options != LVS_R_BAD_OPTIONS)
			return options;
	}
	/* ip_rcv_core checks the sum first, ip_rcv_finish the options */
	if (!csum_folds_to_ones(sum))
		return LVS_R_BAD_CSUM;
	if (options >= 0)
		return options;
	/* A fragment's ports are in the first fragment only: it cannot be
	 * matched to a connection here, so the kernel gets it. */
	if (ip->frag_off & IP_MF_OFFSET_BE)
		return LVS_R_FRAGMENT;
	pkt->len = len;
	pkt->ttl = ip->ttl;
	pkt->tuple.family = LVS_AF_INET;
	pkt->tuple.proto = ip->protocol;
	pkt->tuple.caddr[0] = ip->saddr;
	pkt->tuple.vaddr[0] = ip->daddr;
	return parse_l4((void *)ip + ihl, len - ihl, data_end, pkt);
}

static __always_inline int parse_ipv6(struct ipv6hdr *ip6, void *data_end, struct packet *pkt)
{
	__u32 len;

	if ((void *)(ip6 + 1) > data_end)
		return LVS_R_TRUNCATED;
	if (ip6->version != 6)
		return LVS_R_BAD_IP;
	len = len16(ip6->payload_len);
	if ((void *)(ip6 + 1) + len > data_end)
		return LVS_R_TRUNCATED;
	/* Extension headers (fragments among them) are left to the kernel:
	 * only a TCP or UDP header right after the fixed header is ours. */
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP) {
		switch (ip6->nexthdr) {
		case 0: case 43: case 44: case 50: case 51: case 60: case 135:
			return LVS_R_IPV6_EXT;
		}
		return LVS_R_NOT_TCP_UDP;
	}
	pkt->len = sizeof(*ip6) + len;
	pkt->ttl = ip6->hop_limit;
	pkt->tuple.family = LVS_AF_INET6;
	pkt->tuple.proto = ip6->nexthdr;
	__builtin_memcpy(pkt->tuple.caddr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->tuple.vaddr, &ip6->daddr, 16);
	return parse_l4(ip6 + 1, len, data_end, pkt);
}

/* A source no host may have, or a destination no service may have:
 * ip_route_input_slow's martians (0/8, loopback, multicast, class E and the
 * limited broadcast as a source, the multicast and broadcast destinations),
 * IPv6's unspecified, loopback and multicast sources (ip6_rcv_core), and a
 * packet that claims to come from the address it is sent to (a local source
 * fib_validate_source refuses on the wire). */
static __always_inline int martian(const struct packet *pkt)
{
	const __u32 *s = pkt->tuple.caddr, *d = pkt->tuple.vaddr;

	if (pkt->tuple.family == LVS_AF_INET) {
		__u8 s0 = s[0] & 0xff, d0 = d[0] & 0xff;	/* first octets */

		return s0 == 0 || s0 == 127 || s0 >= 224 || s[0] == d[0] ||
		       (d0 & 0xf0) == 224 || d[0] == 0xffffffff;
	}
	if ((s[0] & 0xff) == 0xff || (d[0] & 0xff) == 0xff)	/* ff00::/8 */
		return 1;
	if ((s[0] | s[1] | s[2]) == 0 && (s[3] == 0 || s[3] == bpf_htonl(1)))
		return 1;					/* ::, ::1 */
	return s[0] == d[0] && s[1] == d[1] && s[2] == d[2] && s[3] == d[3];
}

/* ip_forward's and IPVS's DR rule (__ip_vs_get_out_rt, decrement_ttl): a
 * packet with no hop left is not forwarded; the kernel answers it with ICMP
 * time exceeded. */
static __always_inline int ttl_exhausted(const struct packet *pkt)
{
	return pkt->ttl <= 1;
}

/* Returns -1 when pkt describes a TCP or UDP packet, else an LVS_R_* reason. */
static __always_inline int parse_packet(struct xdp_md *ctx, void *data, void *data_end,
					struct packet *pkt)
{
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	__be16 proto;

	pkt->eth = eth;
	if (l3 > data_end)
		return LVS_R_TRUNCATED;
	proto = eth->h_proto;
	if (proto == ETH_P_8021Q_BE || proto == ETH_P_8021AD_BE) {
		struct vlan_hdr *vlan = l3;

		if ((void *)(vlan + 1) > data_end)
			return LVS_R_TRUNCATED;
		proto = vlan->proto;
		l3 = vlan + 1;
	}
	if (proto == ETH_P_IP_BE)
		return parse_ipv4(ctx, l3 - data, l3, data_end, pkt);
	if (proto == ETH_P_IPV6_BE)
		return parse_ipv6(l3, data_end, pkt);
	return LVS_R_NOT_IP;
}

#endif
