/* Classification of a new connection: which service it belongs to, in the
 * order of ip_vs_service_find: firewall mark, <proto, VIP, port>, the FTP
 * rule, <proto, VIP, 0>. */
#ifndef LVSXDP_CLASSIFY_H
#define LVSXDP_CLASSIFY_H

#define FTP_DATA_PORT 20

/* The firewall mark iptables' mangle PREROUTING rules would give this
 * packet, from the compiled tables: the class of its destination (and, if a
 * rule tests it, its source) from LPM tries, the class of its protocol and
 * port from an array, the mark of that combination from a hash. */
static __always_inline u32 classify_mark(struct packet *pkt)
{
	struct lvs_mark_addr_key ak = {};
	struct lvs_mark_key mk = {};
	struct lvs_mark_cfg *mc;
	u32 zero = 0, slot, *cls, *mark;

	mc = mark_cfg.lookup(&zero);
	if (!mc || !(mc->flags & LVS_MARK_F_ACTIVE) || pkt->tuple.family != LVS_AF_INET)
		return 0;
	mk.gen = mc->gen & 1;
	ak.prefixlen = 64;
	ak.gen = mk.gen;
	ak.addr = pkt->tuple.vaddr[0];
	cls = mark_dst.lookup(&ak);
	if (!cls)
		return 0;
	mk.dst = *cls;
	if (mc->flags & LVS_MARK_F_SRC) {
		ak.addr = pkt->tuple.caddr[0];
		cls = mark_src.lookup(&ak);
		if (!cls)
			return 0;
		mk.src = *cls;
	}
	slot = mk.gen * LVS_MARK_PORT_SLOTS + (pkt->tuple.proto == IPPROTO_UDP ? 65536 : 0) +
	       bpf_ntohs(pkt->tuple.vport);
	cls = mark_port.lookup(&slot);
	if (!cls)
		return 0;
	mk.port = *cls;
	mark = mark_combo.lookup(&mk);
	return mark ? *mark : 0;
}

static __always_inline u32 service_index(struct lvs_svc_key *k)
{
	u32 *idx = services.lookup(k);

	return idx ? *idx : LVS_MAX_SERVICES;
}

/* The flags of the VIP the packet is addressed to, or NULL: no VIP. */
static __always_inline u32 *vip_lookup(struct packet *pkt)
{
	struct lvs_vip_key vk = {};

	vk.family = pkt->tuple.family;
	__builtin_memcpy(vk.addr, pkt->tuple.vaddr, 16);
	return vips.lookup(&vk);
}

/* Returns the service index, or LVS_MAX_SERVICES for none. vip_flags: the
 * packet's vip_lookup if the caller made it, else NULL. Marks are looked at
 * only when a firewall-mark service exists: without one no mark can match. */
static __always_inline u32 find_service(struct packet *pkt, struct lvs_config *cfg,
					u32 *vip_flags)
{
	struct lvs_svc_key k = {};
	u32 mark = (cfg->flags & LVS_CFG_F_FWMARK) ? classify_mark(pkt) : 0;
	u32 idx;
	u16 dport;

	k.family = pkt->tuple.family;
	if (mark) {
		k.fwmark = mark;
		idx = service_index(&k);
		if (idx < LVS_MAX_SERVICES)
			return idx;
		k.fwmark = 0;
	}
	if (!vip_flags)
		vip_flags = vip_lookup(pkt);
	if (!vip_flags)
		return LVS_MAX_SERVICES;

	k.proto = pkt->tuple.proto;
	k.vport = pkt->tuple.vport;
	__builtin_memcpy(k.vaddr, pkt->tuple.vaddr, 16);
	idx = service_index(&k);
	if (idx < LVS_MAX_SERVICES)
		return idx;

	/* Passive FTP data reaches a -t VIP:21 service: port 20 or unprivileged. */
	dport = bpf_ntohs(pkt->tuple.vport);
	if (pkt->tuple.proto == IPPROTO_TCP && (*vip_flags & LVS_VIP_F_FTP) &&
	    (dport == FTP_DATA_PORT || dport >= 1024)) {
		k.vport = FTP_PORT_BE;
		idx = service_index(&k);
		if (idx < LVS_MAX_SERVICES)
			return idx;
	}

	if ((pkt->tuple.proto == IPPROTO_TCP && (*vip_flags & LVS_VIP_F_TCP0)) ||
	    (pkt->tuple.proto == IPPROTO_UDP && (*vip_flags & LVS_VIP_F_UDP0))) {
		k.vport = 0;
		return service_index(&k);
	}
	return LVS_MAX_SERVICES;
}

#endif
