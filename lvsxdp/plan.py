"""Config -> the exact map entries the data plane reads. Pure.

Scheduling is compiled here: each service's ring holds the sequence of real
refs its scheduler would hand out (ip_vs_rr.c, ip_vs_wrr.c), over the reals
that can take new work (weight > 0, MAC known).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass, field

from . import shared
from .model import Config, RealServer, Service

FTP_PORT = 21


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


def ring(svc: Service, usable: list[RealServer]) -> list[int]:
    """The scheduler's decision sequence over usable reals (list order)."""
    live = [r for r in usable if r.weight > 0]
    if not live:
        return []
    if svc.scheduler == "rr":
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


def build(config: Config, macs: dict, ifindex: int = 0, own_mac: bytes = bytes(6),
          flags_extra: int = 0) -> Plan:
    """macs: real address -> 6-byte MAC (absent or None: unknown)."""
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
            mac = macs.get(r.addr)
            real = shared.Real(ref=r.ref, svc=svc.index, weight=r.weight,
                               flags=shared.REAL_F_AVAILABLE, port=shared.htons(r.port),
                               family=svc.family, fwd=shared.FWD_ROUTE)
            shared.set_words(real.addr, r.addr)
            if mac:
                real.mac[:] = list(mac)
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
        for i, w in enumerate(netmask_words(svc)):
            s.netmask[i] = w
        s.ring_len = len(plan.rings[svc.index])
        plan.svc_conf[svc.index] = s
    return plan
