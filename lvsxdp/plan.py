"""Config -> the exact map entries the data plane reads. Pure.

Scheduling is compiled here into each service's ring of real refs
(bpf/sched.h reads it):
  rr, wrr        the sequence the scheduler hands out (ip_vs_rr.c,
                 ip_vs_wrr.c), over reals of weight > 0 whose MAC is known
  lc wlc sed nq  those same reals, in IPVS's list order, for the data plane
                 to compare their loads
  sh, dh         IPVS's 256-bucket table (ip_vs_sh_reassign,
                 ip_vs_dh_reassign), over every real of the service
  mh             IPVS's Maglev lookup table (ip_vs_mh_permutate, _populate)
The hash tables keep reals of weight 0 or with an unknown MAC, as IPVS keeps
them in its tables: the data plane passes them over (or falls back, with
-b sh-fallback / mh-fallback), and every other client keeps its real.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass, field

from . import shared
from .model import Config, RealServer, Service

FTP_PORT = 21


@dataclass(frozen=True)
class Hop:
    """How DR reaches a real: the way the kernel routes to it
    (__ip_vs_get_out_rt with IP_VS_RT_MODE_KNOWN_NH: the route's interface,
    and the real's own MAC on that interface, gateway or not)."""
    mac: bytes | None          # the real's MAC on ifindex; None: not resolved (yet)
    ifindex: int = 0           # egress interface
    smac: bytes = bytes(6)     # its MAC
    slot: int = 0              # its slot in tx_ports
    mtu: int = 0               # its MTU
    unreachable: str = ""      # why no interface lvsxdp serves reaches the real
    saddr: str = ""            # the route's source: the director's address there (-i)


def hop_of(value, ifindex: int, own_mac: bytes) -> Hop:
    """A hop from a MAC alone: the real sits behind the VIP-side interface."""
    if isinstance(value, Hop):
        return value
    return Hop(mac=value or None, ifindex=ifindex, smac=own_mac, slot=0, mtu=0xFFFF)


@dataclass
class Plan:
    config: shared.Config
    vips: dict[bytes, tuple[shared.VipKey, int]] = field(default_factory=dict)
    services: dict[bytes, tuple[shared.SvcKey, int]] = field(default_factory=dict)
    svc_conf: dict[int, shared.Service] = field(default_factory=dict)
    reals: dict[int, shared.Real] = field(default_factory=dict)
    rings: dict[int, list[int]] = field(default_factory=dict)


def timeouts_ns(config: Config) -> list[int]:
    t = dict(shared.DEFAULT_TIMEOUTS)
    t["ESTABLISHED"] = config.settings.tcp
    t["FIN_WAIT"] = config.settings.tcpfin
    t["UDP"] = config.settings.udp
    out = [0] * 16
    for name, seconds in t.items():
        out[shared.S[name]] = seconds * shared.NS
    return out


def netmask_words(svc: Service) -> list[int]:
    if svc.family == shared.AF_INET6:
        net = ipaddress.IPv6Network(f"::/{svc.netmask}").netmask
    else:
        net = ipaddress.IPv4Network(f"0.0.0.0/{svc.netmask}").netmask
    words = shared.addr_words(net)
    if svc.family == shared.AF_INET:
        words[1:] = [0, 0, 0]
    return words


LOAD_SCHEDULERS = ("lc", "wlc", "sed", "nq")
HASH_SCHEDULERS = ("sh", "dh", "mh")


def ring(svc: Service, usable: list[RealServer]) -> list[int]:
    """The service's ring: usable are its reals whose MAC is known (list
    order)."""
    if svc.scheduler == "sh":
        return sh_table(svc.reals)
    if svc.scheduler == "dh":
        return dh_table(svc.reals)
    if svc.scheduler == "mh":
        return mh_table(svc.reals)
    live = [r for r in usable if r.weight > 0]
    if not live:
        return []
    if svc.scheduler in ("rr", *LOAD_SCHEDULERS):
        return [r.ref for r in live]
    # wrr: passes with a current weight stepping down from the largest by the
    # gcd; each pass takes, in list order, every real at least that heavy.
    g = 0
    for r in live:
        g = math.gcd(g, r.weight)
    mw = max(r.weight for r in live)
    seq = []
    cw = mw
    while cw > 0:
        seq.extend(r.ref for r in live if r.weight >= cw)
        cw -= g
    if len(seq) > shared.RING_SLOTS:
        # Too long to store: keep the proportions, scaled down.
        scale = shared.RING_SLOTS / len(seq)
        scaled = [dataclasses.replace(r, weight=max(1, int(r.weight * scale))) for r in live]
        return ring(svc, scaled)[: shared.RING_SLOTS]
    return seq


def sched_flag_bits(svc: Service) -> int:
    """-b as the data plane reads it: fallback and port, for sh and mh."""
    bits = 0
    for flag in svc.sched_flags:
        if flag == f"{svc.scheduler}-fallback":
            bits |= shared.SVC_F_SCHED_FALLBACK
        elif flag == f"{svc.scheduler}-port":
            bits |= shared.SVC_F_SCHED_PORT
    return bits


# -- hash tables ----------------------------------------------------------------

GOLDEN_RATIO_32 = 0x61C88647
MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
MH_HASH1 = 2654435761  # generate_hash_secret(): both words of each key
MH_HASH2 = 2654446892
MH_TAB_BITS = 6  # IP_VS_MH_TAB_BITS: CONFIG_IP_VS_MH_TAB_INDEX / 2


def hash_32(val: int, bits: int) -> int:
    """include/linux/hash.h's hash_32 (x86 has no arch override)."""
    return ((val * GOLDEN_RATIO_32) & MASK32) >> (32 - bits)


def addr_fold(addr) -> int:
    """An address as ip_vs_sh/dh/mh fold it, in host order: IPv4 as is,
    IPv6 as the xor of its four words."""
    raw = addr.packed
    out = 0
    for i in range(0, len(raw), 4):
        out ^= int.from_bytes(raw[i:i + 4], "big")
    return out


def _rol64(x: int, n: int) -> int:
    return ((x << n) | (x >> (64 - n))) & MASK64


def hsiphash_u32(data: int, key: int) -> int:
    """hsiphash() of one u32 on a 64-bit kernel: SipHash-1-3 (lib/siphash.c),
    key words both `key`."""
    v0 = 0x736F6D6570736575 ^ key
    v1 = 0x646F72616E646F6D ^ key
    v2 = 0x6C7967656E657261 ^ key
    v3 = 0x7465646279746573 ^ key
    b = (4 << 56) | (data & MASK32)

    def rnd():
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & MASK64
        v1 = _rol64(v1, 13) ^ v0
        v0 = _rol64(v0, 32)
        v2 = (v2 + v3) & MASK64
        v3 = _rol64(v3, 16) ^ v2
        v0 = (v0 + v3) & MASK64
        v3 = _rol64(v3, 21) ^ v0
        v2 = (v2 + v1) & MASK64
        v1 = _rol64(v1, 17) ^ v2
        v2 = _rol64(v2, 32)

    v3 ^= b
    rnd()
    v0 ^= b
    v2 ^= 0xFF
    rnd()
    rnd()
    rnd()
    return (v0 ^ v1 ^ v2 ^ v3) & MASK32


def sh_table(reals: list[RealServer]) -> list[int]:
    """ip_vs_sh_reassign: the 256 buckets dealt round the list, each real
    `weight` consecutive buckets at a time (one when its weight is 0)."""
    if not reals:
        return []
    out, i, count = [], 0, 0
    for _ in range(shared.SH_TAB_SIZE):
        r = reals[i]
        out.append(r.ref)
        count += 1
        if count >= r.weight:
            i, count = (i + 1) % len(reals), 0
    return out


def dh_table(reals: list[RealServer]) -> list[int]:
    """ip_vs_dh_reassign: the 256 buckets dealt round the list, one each."""
    if not reals:
        return []
    return [reals[i % len(reals)].ref for i in range(shared.SH_TAB_SIZE)]


def mh_last_weight(r: RealServer) -> int:
    """IPVS builds the Maglev table with each real's last non-zero weight,
    so that quiescing a real (-w 0) does not move anybody else's clients."""
    return r.weight if r.weight > 0 else r.last_weight


def mh_table(reals: list[RealServer]) -> list[int]:
    """ip_vs_mh_reassign: every real's preference list (offset and skip from
    hsiphash of its address and port), weights reduced by their gcd and
    shifted to at most 6 bits, then each real in list order takes its turns
    at its next free preferred slot until all 4093 are taken."""
    size = shared.MH_TAB_SIZE
    weights = [mh_last_weight(r) for r in reals]
    g = 0
    for w in weights:
        if w > 0:
            g = math.gcd(g, w)
    if g < 1:
        return []
    shift = max(0, (max(weights) // g).bit_length() - MH_TAB_BITS)
    perm, skip, turns = [], [], []
    for r, w in zip(reals, weights, strict=True):
        key = (r.port + addr_fold(r.addr)) & MASK32
        perm.append(hsiphash_u32(key, MH_HASH1) % size)
        skip.append(hsiphash_u32(key, MH_HASH2) % (size - 1) + 1)
        turns.append((w // g) >> shift or int(w != 0))
    table = [0] * size
    taken = [False] * size
    n = 0
    while True:
        for i, r in enumerate(reals):
            for _ in range(turns[i]):
                c = perm[i]
                while taken[c]:
                    c = perm[i] = (c + skip[i]) % size
                taken[c] = True
                table[c] = r.ref
                n += 1
                if n == size:
                    return table


def build(config: Config, macs: dict, ifindex: int = 0, own_mac: bytes = bytes(6),
          flags_extra: int = 0) -> Plan:
    """macs: real address -> its Hop, or a 6-byte MAC on the VIP-side
    interface (ifindex, own_mac); absent or None: unknown."""
    cfg = shared.Config()
    for i, ns in enumerate(timeouts_ns(config)):
        cfg.timeout_ns[i] = ns
    cfg.extend_ns = config.settings.extend * shared.NS
    cfg.vouch_slack_ns = shared.NS
    cfg.mac[:] = list(own_mac)
    cfg.ifindex = ifindex
    cfg.flags = flags_extra
    if config.settings.expire_nodest_conn:
        cfg.flags |= shared.CFG_F_EXPIRE_NODEST_CONN
    if config.settings.expire_quiescent_template:
        cfg.flags |= shared.CFG_F_EXPIRE_QUIESCENT_TEMPLATE
    plan = Plan(config=cfg)

    for svc in config.services:
        if svc.fwmark:
            cfg.flags |= shared.CFG_F_FWMARK
        proto = 0 if svc.fwmark else {"tcp": 6, "udp": 17}[svc.proto]
        if not svc.fwmark:
            vk = shared.VipKey(family=svc.family)
            shared.set_words(vk.addr, svc.addr)
            flags = plan.vips.get(bytes(vk), (vk, 0))[1]
            if svc.port == 0:
                flags |= shared.VIP_F_TCP0 if svc.proto == "tcp" else shared.VIP_F_UDP0
            if svc.port == FTP_PORT and svc.proto == "tcp":
                flags |= shared.VIP_F_FTP
            plan.vips[bytes(vk)] = (vk, flags)
        sk = shared.SvcKey(fwmark=svc.fwmark, family=svc.family, proto=proto,
                           vport=shared.htons(svc.port))
        if svc.addr is not None:
            shared.set_words(sk.vaddr, svc.addr)
        plan.services[bytes(sk)] = (sk, svc.index)

        usable = []
        for r in svc.reals:
            hop = hop_of(macs.get(r.addr), ifindex, own_mac)
            real = shared.Real(ref=r.ref, svc=svc.index, weight=r.weight,
                               flags=shared.REAL_F_AVAILABLE, port=shared.htons(r.port),
                               family=svc.family, fwd=shared.FWDS[r.fwd],
                               u_threshold=r.u_threshold, l_threshold=r.l_threshold,
                               tun_type=shared.TUN_TYPES[r.tun_type],
                               tun_port=shared.htons(r.tun_port), tun_flags=r.tun_flags)
            shared.set_words(real.addr, r.addr)
            if r.fwd == "masq":
                cfg.flags |= shared.CFG_F_NAT
            # a tunnel needs the director's address on the way to the real
            tunnel_ok = r.fwd != "tunnel" or bool(hop.saddr)
            if hop.saddr:
                shared.set_words(real.tun_saddr, ipaddress.ip_address(hop.saddr))
            if hop.mac and not hop.unreachable and tunnel_ok:
                real.mac[:] = list(hop.mac)
                real.smac[:] = list(hop.smac)
                real.ifindex, real.tx_slot, real.mtu = hop.ifindex, hop.slot, hop.mtu
                real.flags |= shared.REAL_F_MAC_VALID
                usable.append(r)
            plan.reals[r.index] = real
        plan.rings[svc.index] = ring(svc, usable)

        s = shared.Service(timeout_ns=svc.timeout * shared.NS if svc.persistent else 0,
                           fwmark=svc.fwmark, vport=shared.htons(svc.port),
                           flags=shared.SVC_F_ACTIVE, sched=shared.SCHEDULERS[svc.scheduler],
                           family=svc.family, proto=proto)
        if svc.persistent:
            s.flags |= shared.SVC_F_PERSISTENT
        s.flags |= sched_flag_bits(svc)
        for i, w in enumerate(netmask_words(svc)):
            s.netmask[i] = w
        s.ring_len = len(plan.rings[svc.index])
        plan.svc_conf[svc.index] = s

    # The trash: removed reals keep their slot, address and ref, not
    # available (their connections' packets are dropped) until revived.
    live = {svc.key(): svc.index for svc in config.services}
    for ghost, r in config.trashed():
        # The data plane turns away packets to no VIP before it looks for
        # their connection: a removed service's address stays known (no
        # service under it) while connections of it may live.
        if ghost.fwmark:
            cfg.flags |= shared.CFG_F_FWMARK
        else:
            vk = shared.VipKey(family=ghost.family)
            shared.set_words(vk.addr, ghost.addr)
            plan.vips.setdefault(bytes(vk), (vk, 0))
        real = shared.Real(ref=r.ref, svc=live.get(ghost.key(), shared.MAX_SERVICES - 1),
                           weight=r.weight, flags=shared.REAL_F_TRASH,
                           port=shared.htons(r.port), family=ghost.family, fwd=shared.FWD_ROUTE)
        shared.set_words(real.addr, r.addr)
        plan.reals[r.index] = real
    return plan
