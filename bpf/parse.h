/* Header parsing with a cursor: Ethernet (one 802.1Q/802.1ad tag), IPv4 or
 * IPv6, then TCP or UDP. Each step either advances or names the reason the
 * packet is not ours. Nothing here writes to the packet. */
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

struct packet {
	struct ethhdr *eth;
	struct lvs_tuple tuple;		/* family, proto, cport, vport, caddr, vaddr */
	__u32 len;			/* the IP packet's length: what IPVS's byte
					 * counters count (not the Ethernet frame) */
	__u8 tcp_flags;
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
 * padding, never ports: Linux drops such a packet). */
static __always_inline int parse_l4(void *l4, __u32 l4_len, void *data_end, struct packet *pkt)
{
	if (pkt->tuple.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp))
			return LVS_R_TRUNCATED;
		if (tcp->doff < 5)
			return LVS_R_BAD_IP;
		pkt->tuple.cport = tcp->source;
		pkt->tuple.vport = tcp->dest;
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		return -1;
	}
	if (pkt->tuple.proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp))
			return LVS_R_TRUNCATED;
		pkt->tuple.cport = udp->source;
		pkt->tuple.vport = udp->dest;
		return -1;
	}
	return LVS_R_NOT_TCP_UDP;
}

static __always_inline int parse_ipv4(struct iphdr *ip, void *data_end, struct packet *pkt)
{
	__u32 ihl, len;

	if ((void *)(ip + 1) > data_end)
		return LVS_R_TRUNCATED;
	ihl = ip->ihl * 4;
	len = len16(ip->tot_len);
	if (ip->version != 4 || ihl < sizeof(*ip) || len < ihl)
		return LVS_R_BAD_IP;
	if ((void *)ip + len > data_end)
		return LVS_R_TRUNCATED;
	/* A fragment's ports are in the first fragment only: it cannot be
	 * matched to a connection here, so the kernel gets it. */
	if (ip->frag_off & IP_MF_OFFSET_BE)
		return LVS_R_FRAGMENT;
	pkt->len = len;
	pkt->tuple.family = LVS_AF_INET;
	pkt->tuple.proto = ip->protocol;
	pkt->tuple.caddr[0] = ip->saddr;
	pkt->tuple.vaddr[0] = ip->daddr;
	/* ihl <= 60: the verifier needs the bound to accept the variable offset */
	if (ihl > 60)
		return LVS_R_BAD_IP;
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
	pkt->tuple.family = LVS_AF_INET6;
	pkt->tuple.proto = ip6->nexthdr;
	__builtin_memcpy(pkt->tuple.caddr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->tuple.vaddr, &ip6->daddr, 16);
	return parse_l4(ip6 + 1, len, data_end, pkt);
}

/* Returns -1 when pkt describes a TCP or UDP packet, else an LVS_R_* reason. */
static __always_inline int parse_packet(void *data, void *data_end, struct packet *pkt)
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
		return parse_ipv4(l3, data_end, pkt);
	if (proto == ETH_P_IPV6_BE)
		return parse_ipv6(l3, data_end, pkt);
	return LVS_R_NOT_IP;
}

#endif
