"""Each real's connections as IPVS counts them for its schedulers (lc, wlc,
sed, nq) and thresholds (-x/-y): active (TCP in ESTABLISHED, SYN_SENT or
SYN_RECV) and inactive (every other TCP state, and UDP).

The data plane counts into real_load as it creates connections and moves
them into or out of an active state; it cannot see a connection expire. recount(), run
by the agent every sweep, counts the connection table and writes what
real_load is off by into real_load_fix; the data plane reads the sum
(bpf/sched.h load_read). Exact when nothing changed during the count; a
connection made or moved while the table was being read is counted twice
until the next sweep.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import plan, shared, tables
from .tables import is_active


def needed(config) -> bool:
    """Whether any service reads the counts: a load-based scheduler, or a
    real with an upper threshold."""
    return any(svc.scheduler in plan.LOAD_SCHEDULERS or any(r.u_threshold for r in svc.reals)
               for svc in config.services)


def connection_counts(conns: np.ndarray) -> dict[int, tuple[int, int]]:
    """real ref -> (active, inactive) over live connections (CONN values)."""
    # ref * 2 + 1 for an active connection, ref * 2 for an inactive one
    kind = conns["real"].astype(np.uint64) * 2 + is_active(conns["state"])
    counted = dict(zip(*(a.tolist() for a in np.unique(kind, return_counts=True)),
                       strict=True))
    refs = {k >> 1 for k in counted}
    return {ref: (counted.get(ref * 2 + 1, 0), counted.get(ref * 2, 0)) for ref in refs}


def recount(maps, config, now: int, conns: np.ndarray | None = None) -> dict:
    """Corrects every real's count from the connection table (only when some
    service reads the counts). conns: the live connections, when the caller
    (the agent's sweep) has just read them; a connection made between that
    read and this one's read of real_load is then missing until the next
    sweep. Returns what it did."""
    if not needed(config):
        return {"recounted": 0}
    u32 = ctypes.c_uint32
    reals = [r for svc in config.services for r in svc.reals]
    # the data plane's counts before the table: a connection made after this
    # read and seen by the count is counted twice until the next sweep
    before = {}
    for r in reals:
        a = maps.real_load.lookup(u32(r.index))
        before[r.index] = (a.active, a.inactive) if a is not None and a.ref == r.ref else (0, 0)
    if conns is None:
        _, conns = tables.read_connections(maps)
        conns = conns[conns["expires"] > np.uint64(now)]
    counts = connection_counts(conns)
    written = 0
    for r in reals:
        active, inactive = counts.get(r.ref, (0, 0))
        fix = shared.LoadFix(active=active - before[r.index][0],
                             inactive=inactive - before[r.index][1], ref=r.ref)
        old = maps.real_load_fix.lookup(u32(r.index))
        if old is None or bytes(old) != bytes(fix):
            maps.real_load_fix.update(u32(r.index), fix)
            written += 1
    return {"recounted": len(reals), "fixes_written": written}


def real_load(maps, ref: int) -> tuple[int, int]:
    """(active, inactive) of a real as the data plane reads them now."""
    idx = ctypes.c_uint32(shared.ref_index(ref))
    active = inactive = 0
    a = maps.real_load.lookup(idx)
    if a is not None and a.ref == ref:
        active, inactive = a.active, a.inactive
    f = maps.real_load_fix.lookup(idx)
    if f is not None and f.ref == ref:
        active, inactive = active + f.active, inactive + f.inactive
    return max(active, 0), max(inactive, 0)
