"""What the maps say now: connections, templates, counters and rate
estimates read from the pinned maps (no bcc), in the terms of ipvsadm's
listings; and the two writers of the estimates: the agent's 2-second tick
(ip_vs_est.c's arithmetic) and `ipvsadm -Z`.

Where the rates live: in two pinned array maps, svc_est and real_est (one
struct lvs_est per service and per real slot), not in a file under RUN_DIR.
The agent writes an entry with one syscall, so a reader never sees half of
it and never races a rename; an entry carries the estimator's whole state
(the sums at the last tick and the scaled averages), so a restarted agent
carries on where the last one stopped; and `ipvsadm -Z` resets an entry in
place, as IPVS's ip_vs_zero_estimator does.
"""

from __future__ import annotations

import ctypes
import zlib

from . import shared
from .ipvsadm import Entry, RealCounts, Snapshot
from .model import Config, Service, format_addrport
from .runtime import Maps, monotonic_ns

# ip_vs_proto_name
PROTO_NAMES = {0: "IP", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
EST_INTERVAL = 2.0  # seconds between two estimator ticks (IPVS: 2 s)
U64 = (1 << 64) - 1


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(proto, f"IP_{proto}")


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


# -- counters and rates ------------------------------------------------------

def stats_sum(per_cpu) -> tuple[int, int, int]:
    """(conns, packets, bytes) of one per-CPU stats entry, summed over CPUs
    as IPVS sums its cpustats (u64, wrapping)."""
    if per_cpu is None:
        return 0, 0, 0
    return (sum(s.conns for s in per_cpu) & U64, sum(s.packets for s in per_cpu) & U64,
            sum(s.bytes for s in per_cpu) & U64)


def _s64(x: int) -> int:
    x &= U64
    return x - (1 << 64) if x >> 63 else x


def _ewma(avg: int, rate: int) -> int:
    """avg += ((s64)rate - (s64)avg) >> 2, in u64 as the kernel does it."""
    return (avg + (_s64(rate - avg) >> 2)) & U64


def est_tick(e: shared.Est, conns: int, packets: int, nbytes: int) -> None:
    """One 2-second step of ip_vs_chain_estimation for one entry: the rate of
    the last 2 s (cps and pps scaled by 2^10, so << 9; bps by 2^5, so << 4)
    and avg += (rate - avg) / 4. DR has no out-direction: no out-rates."""
    rate = ((conns - e.last_conns) & U64) << 9 & U64
    e.last_conns = conns
    e.cps = _ewma(e.cps, rate)
    rate = ((packets - e.last_packets) & U64) << 9 & U64
    e.last_packets = packets
    e.pps = _ewma(e.pps, rate)
    rate = ((nbytes - e.last_bytes) & U64) << 4 & U64
    e.last_bytes = nbytes
    e.bps = _ewma(e.bps, rate)


def est_rates(e: shared.Est) -> tuple[int, int, int]:
    """ip_vs_read_estimator: (cps, pps, bps), rounded as IPVS rounds them."""
    return (e.cps + 0x1FF) >> 10, (e.pps + 0x1FF) >> 10, (e.bps + 0xF) >> 5


def service_owner(svc: Service) -> int:
    """A service's id in svc_est (reals use their ref): a slot reused by
    another service does not inherit the old one's rates."""
    return zlib.crc32(repr(svc.key()).encode()) or 1


def estimate_entry(stats_map, est_map, index: int, owner: int) -> shared.Est | None:
    """The agent's tick for one service or real slot. Returns what it wrote,
    or None when `ipvsadm -Z` reset the entry while this tick was reading:
    the next tick starts from the zeroed entry."""
    key = ctypes.c_uint32(index)
    e = est_map.lookup(key)
    seen = e.zeroed
    conns, packets, nbytes = stats_sum(stats_map.lookup(key))
    if e.owner != owner or conns < e.last_conns or packets < e.last_packets \
            or nbytes < e.last_bytes:
        # A new service or real in this slot (its counters started from 0
        # when it was added), or counters zeroed since the last tick: count
        # from 0, with no history, as a new IPVS estimator does.
        e = shared.Est(owner=owner, zeroed=seen)
    est_tick(e, conns, packets, nbytes)
    if est_map.lookup(key).zeroed != seen:
        return None
    est_map.update(key, e)
    return e


def estimate(maps: Maps, config: Config) -> int:
    """One estimator tick over every service and real; returns how many
    entries it wrote."""
    n = 0
    for svc in config.services:
        n += estimate_entry(maps.svc_stats, maps.svc_est, svc.index,
                            service_owner(svc)) is not None
        for r in svc.reals:
            n += estimate_entry(maps.real_stats, maps.real_est, r.index, r.ref) is not None
    return n


def _zero_entry(stats_map, est_map, index: int) -> None:
    key = ctypes.c_uint32(index)
    # Counters first: an agent tick between the two writes sees them go
    # down and starts afresh; the other order would show, for 2 s, the old
    # totals as one burst.
    stats_map.update(key, shared.Stats())
    e = est_map.lookup(key)
    est_map.update(key, shared.Est(owner=e.owner, zeroed=(e.zeroed + 1) & 0xFFFFFFFF))


def zero(maps: Maps, services: list[Service]) -> None:
    """`ipvsadm -Z`: each service's counters and rates and those of its
    reals (ip_vs_zero_service). A packet the data plane counts on another
    CPU at the very instant of the write may survive it."""
    for svc in services:
        for r in svc.reals:
            _zero_entry(maps.real_stats, maps.real_est, r.index)
        _zero_entry(maps.svc_stats, maps.svc_est, svc.index)


def _counts(stats_map, est_map, index: int, owner: int) -> RealCounts:
    key = ctypes.c_uint32(index)
    conns, packets, nbytes = stats_sum(stats_map.lookup(key))
    c = RealCounts(conns=conns, packets=packets, bytes=nbytes)
    per_cpu = stats_map.lookup(key)
    if per_cpu is not None:  # NAT's replies (DR and tunnels have none, as in IPVS)
        c.out_packets = sum(s.out_packets for s in per_cpu) & U64
        c.out_bytes = sum(s.out_bytes for s in per_cpu) & U64
    e = est_map.lookup(key)
    if e is not None and e.owner == owner:
        c.cps, c.pps, c.bps = est_rates(e)
    return c


# -- the snapshot ------------------------------------------------------------

def read(maps: Maps, config: Config, now: int | None = None) -> Snapshot:
    """Everything `ipvsadm -L` shows, as of now (the data plane's clock)."""
    now = monotonic_ns() if now is None else now
    cfg = maps.read_config()
    step = cfg.extend_ns
    real_by_index = {}
    svc_by_index = {}
    snap = Snapshot(conn_table_size=maps.conns.max_entries)
    for svc in config.services:
        svc_by_index[svc.index] = svc
        snap.services[svc.index] = _counts(maps.svc_stats, maps.svc_est, svc.index,
                                           service_owner(svc))
        for r in svc.reals:
            real_by_index[r.index] = r
            snap.reals[r.index] = _counts(maps.real_stats, maps.real_est, r.index, r.ref)
    trashed = {r.index: (ghost, r) for ghost, r in config.trashed()}
    for idx, (_, r) in trashed.items():
        real_by_index[idx] = r  # -L -c still names a removed real

    for k, c in maps.conns.items():
        if now >= c.expires:
            continue
        idx = shared.ref_index(c.real)
        real = real_by_index.get(idx)
        if real is not None and real.ref != c.real:
            real = None
        counts = snap.reals.get(idx)
        if real is not None and counts is not None:
            if c.state in shared.ACTIVE_STATES:
                counts.active += 1
            else:
                counts.inactive += 1
        vport = shared.ntohs(k.vport)
        dest = "?"
        if real is not None:
            # ip_vs_sched_persist: dport is the packet's port; ip_vs_schedule:
            # the real's port, if it has one
            svc = svc_by_index.get(c.svc)
            persistent = svc is not None and svc.persistent
            dest = format_addrport(real.addr, vport if persistent else real.port or vport)
        state = "UDP" if c.state == shared.S["UDP"] else shared.STATES[c.state]
        snap.entries.append(Entry(
            proto=proto_name(k.proto),
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
        if real is not None and real.ref != t.real:
            real = None
        if real is not None and idx in snap.reals:
            snap.reals[idx].persistent += 1
        vport = shared.ntohs(k.vport)
        # ip_vs_check_template re-keyed it: dport 65535 too
        dport = shared.TPL_PORT_INVALID if t.flags & shared.TPL_F_INVALID else vport
        snap.entries.append(Entry(
            proto=proto_name(k.proto),
            expire=template_expire_in(t, step, now),
            # ip_vs_state_name names a template's own states, whatever its
            # protocol: NONE, or ASSURED once a TCP connection it controls
            # was ESTABLISHED (a UDP one only on a reply, never seen in DR)
            state="ASSURED" if t.flags & shared.TPL_F_ASSURED else "NONE",
            template=True,
            source=_addr(k.family, k.caddr, 0),
            # a firewall-mark template holds the mark, in network order, as
            # its address: 0.0.0.10 (IPv4), [0:a::] (IPv6)
            virtual=_addr(k.family, k.vaddr, vport),
            # a template's dport is the real's port for a port's own
            # template (PPC), 0 for port 0, FTP and marks: its key's vport
            destination=format_addrport(real.addr, dport) if real is not None else "?",
        ))
    return snap
