"""What the maps say now: connections, templates and counters read from the
pinned maps (no bcc), in the terms of ipvsadm's listings."""

from __future__ import annotations

import ipaddress

from . import shared
from .ipvsadm import Entry, RealCounts, Snapshot
from .model import Config, format_addrport
from .runtime import Maps, monotonic_ns

PROTO_NAMES = {6: "TCP", 17: "UDP", 0: "IP"}


def template_dead_at(t: shared.Template, step_ns: int) -> int:
    """When a template stops sending its client to its real (persist.h's
    template_alive, in closed form)."""
    if t.ctl_until <= t.expires or step_ns == 0:
        return t.expires
    steps = -(-(t.ctl_until - t.expires) // step_ns)
    return t.expires + steps * step_ns


def template_expire_in(t: shared.Template, step_ns: int, now: int) -> int:
    """Seconds until the template's timer would next fire, as IPVS shows it:
    the persistence timeout, then each extension step."""
    if now < t.expires:
        return (t.expires - now) // shared.NS
    steps = (now - t.expires) // step_ns + 1 if step_ns else 0
    return (t.expires + steps * step_ns - now) // shared.NS


def _addr(family: int, words, port: int) -> str:
    return format_addrport(shared.words_addr(family, words), port)


def read(maps: Maps, config: Config) -> Snapshot:
    now = monotonic_ns()
    cfg = maps.read_config()
    step = cfg.extend_ns
    reals = {}
    real_by_index = {}
    for svc in config.services:
        for r in svc.reals:
            real_by_index[r.index] = r
            reals[r.index] = RealCounts()
    snap = Snapshot(conn_table_size=maps.conns.max_entries, reals=reals)

    for k, c in maps.conns.items():
        if now >= c.expires:
            continue
        idx = shared.ref_index(c.real)
        real = real_by_index.get(idx)
        counts = reals.get(idx)
        if counts is not None and real is not None and real.ref == c.real:
            if c.state == shared.S["ESTABLISHED"]:
                counts.active += 1
            else:
                counts.inactive += 1
        vport = shared.ntohs(k.vport)
        dest = "?"
        if real is not None:
            dest = format_addrport(real.addr, real.port or vport)
        state = "UDP" if c.state == shared.S["UDP"] else shared.STATES[c.state]
        snap.entries.append(Entry(
            proto=PROTO_NAMES.get(k.proto, str(k.proto)),
            expire=(c.expires - now) // shared.NS,
            state=state,
            source=_addr(k.family, k.caddr, shared.ntohs(k.cport)),
            virtual=_addr(k.family, k.vaddr, vport),
            destination=dest,
        ))

    for k, t in maps.templates.items():
        if now >= template_dead_at(t, step):
            continue
        idx = shared.ref_index(t.real)
        real = real_by_index.get(idx)
        counts = reals.get(idx)
        if counts is not None and real is not None and real.ref == t.real:
            counts.persistent += 1
        if k.proto == 0:  # firewall mark: IPVS shows the mark as an IPv4 address
            virtual = format_addrport(ipaddress.IPv4Address(shared.words_addr(
                shared.AF_INET, k.vaddr).packed), 0)
        else:
            virtual = _addr(k.family, k.vaddr, shared.ntohs(k.vport))
        snap.entries.append(Entry(
            proto=PROTO_NAMES.get(k.proto, str(k.proto)),
            expire=template_expire_in(t, step, now),
            state="NONE",
            source=_addr(k.family, k.caddr, 0),
            virtual=virtual,
            destination=real.addrport() if real is not None else "?",
        ))
    return snap
