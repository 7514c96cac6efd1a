"""The big tables (templates, connections) read whole, as numpy arrays: one
batched read each, no Python object per entry. Shared by the agent's sweep
and by `lvsxdp top`/`metrics`, which must stay cheap at a million entries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import bpfsys, plan, shared
from .model import Config

TUPLE = np.dtype(shared.Tuple)
CONN4_KEY = np.dtype(shared.Conn4Key)
CONN = np.dtype(shared.Conn)
TEMPLATE = np.dtype(shared.Template)
REAL = np.dtype(shared.Real)
NAT_REV = np.dtype(shared.NatRev)
ESTABLISHED = shared.S["ESTABLISHED"]


def is_active(state: np.ndarray) -> np.ndarray:
    """ActiveConn's states (shared.ACTIVE_STATES), elementwise."""
    return np.isin(state, shared.ACTIVE_STATES)


def read_map(m: bpfsys.Map, key_dtype: np.dtype, value_dtype: np.dtype,
          ) -> tuple[np.ndarray, np.ndarray]:
    """Every entry of a map, as two numpy arrays (one batched read)."""
    cap = m.max_entries + 4096  # a table that changes while read may repeat a few
    keys = np.empty(cap, key_dtype)
    values = np.empty(cap, value_dtype)
    n = m.read_raw(keys, values)
    return keys[:n], values[:n]


def read_connections(maps, tiers: bool = False):
    """Every connection table (IPv4, IPv6; held and embryonic) as one: keys
    (TUPLE; IPv4 keys widened) and values (CONN); with tiers, also which
    rows are held (bool)."""
    parts4 = [read_map(maps.conns.v4, CONN4_KEY, CONN),
              read_map(maps.conns.new4, CONN4_KEY, CONN)]
    parts6 = [read_map(maps.conns.v6, TUPLE, CONN), read_map(maps.conns.new6, TUPLE, CONN)]
    k4, c4 = (np.concatenate(a) for a in zip(*parts4, strict=True))
    k6, c6 = (np.concatenate(a) for a in zip(*parts6, strict=True))
    ckeys = np.zeros(len(k4) + len(k6), TUPLE)
    ckeys["family"][:len(k4)] = shared.AF_INET
    for name in ("proto", "cport", "vport"):
        ckeys[name][:len(k4)] = k4[name]
    ckeys["caddr"][:len(k4), 0] = k4["caddr"]
    ckeys["vaddr"][:len(k4), 0] = k4["vaddr"]
    ckeys[len(k4):] = k6
    if not tiers:
        return ckeys, np.concatenate([c4, c6])
    held = np.concatenate([np.ones(len(parts4[0][0]), bool), np.zeros(len(parts4[1][0]), bool),
                           np.ones(len(parts6[0][0]), bool), np.zeros(len(parts6[1][0]), bool)])
    return ckeys, np.concatenate([c4, c6]), held


def read_templates(maps, tiers: bool = False):
    """Both template tables (held and embryonic) as one: keys (TUPLE) and
    values (TEMPLATE); with tiers, also which rows are held (bool)."""
    held_part = read_map(maps.templates.held, TUPLE, TEMPLATE)
    new_part = read_map(maps.templates.new, TUPLE, TEMPLATE)
    k, t = zip(held_part, new_part, strict=True)
    if not tiers:
        return np.concatenate(k), np.concatenate(t)
    held = np.concatenate([np.ones(len(held_part[0]), bool), np.zeros(len(new_part[0]), bool)])
    return np.concatenate(k), np.concatenate(t), held


def named_refs(maps, now: int) -> set[int]:
    """The real refs that live connections and templates name (what keeps
    a removed real in the trash)."""
    _, conns = read_connections(maps)
    _, tpl = read_templates(maps)
    step = maps.read_config().extend_ns
    live_c = conns["real"][conns["expires"] > np.uint64(now)]
    live_t = tpl["real"][dead_at(tpl, step) > np.uint64(now)]
    return set(np.unique(np.concatenate([live_c, live_t])).tolist())


def dead_at(tpl: np.ndarray, step: int) -> np.ndarray:
    """snapshot.template_dead_at for every template at once."""
    exp = tpl["expires"]
    if not step:
        return exp.copy()
    over = np.maximum(tpl["ctl_until"], exp) - exp
    steps = (over + np.uint64(step - 1)) // np.uint64(step)
    return exp + steps * np.uint64(step)


def live_counts(maps, now: int) -> tuple[int, int]:
    """How many connections and templates have not expired at now (what
    `ipvsadm -L -n -c` lists): one batched read of each table."""
    _, conns = read_connections(maps)
    _, tpl = read_templates(maps)
    step = maps.read_config().extend_ns
    return (int(np.count_nonzero(conns["expires"] > np.uint64(now))),
            int(np.count_nonzero(dead_at(tpl, step) > np.uint64(now))))


@dataclass
class ServiceParams:
    """Per service slot, what persist.h's template_key needs."""

    persistent: np.ndarray  # bool
    fwmark: np.ndarray  # the mark as template vaddr[0]
    port: np.ndarray  # host order; -1: keep no port (port 0, FTP)
    mask: np.ndarray  # (MAX_SERVICES, 4) netmask words

    @classmethod
    def of(cls, config: Config) -> ServiceParams:
        n = shared.MAX_SERVICES
        p = cls(np.zeros(n, bool), np.zeros(n, np.uint32), np.full(n, -1, np.int32),
                np.full((n, 4), 0xFFFFFFFF, np.uint32))
        for s in config.services:
            if not 0 <= s.index < n:
                continue
            p.persistent[s.index] = s.persistent
            p.fwmark[s.index] = int.from_bytes(s.fwmark.to_bytes(4, "big"), "little")
            p.port[s.index] = s.port if s.port not in (0, plan.FTP_PORT) else -1
            p.mask[s.index] = plan.netmask_words(s)
        return p


def _ntohs(a: np.ndarray) -> np.ndarray:
    return a.astype(np.uint16).byteswap()


def template_keys(conn_keys: np.ndarray, svc: np.ndarray, params: ServiceParams) -> np.ndarray:
    """agent.template_key for every connection at once: the key of the
    template that scheduled it (conn_keys: TUPLE, svc: service slots)."""
    k = np.zeros(len(conn_keys), TUPLE)
    fw = params.fwmark[svc] != 0
    k["family"] = conn_keys["family"]
    k["proto"] = np.where(fw, 0, conn_keys["proto"])
    k["caddr"] = conn_keys["caddr"] & params.mask[svc]
    vaddr = conn_keys["vaddr"].copy()
    vaddr[fw] = 0
    vaddr[fw, 0] = params.fwmark[svc][fw]
    k["vaddr"] = vaddr
    keep = ~fw & (_ntohs(conn_keys["vport"]).astype(np.int32) == params.port[svc])
    k["vport"] = np.where(keep, conn_keys["vport"], 0)
    return k


def _hash(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each 40-byte TUPLE key (matches are verified)."""
    words = np.ascontiguousarray(keys).view("<u8").reshape(-1, TUPLE.itemsize // 8)
    h = np.full(len(keys), 0x9E3779B97F4A7C15, np.uint64)
    with np.errstate(over="ignore"):
        for i in range(words.shape[1]):
            h ^= words[:, i]
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    return h


def _join(tkeys: np.ndarray, ckeys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Connections grouped by the template key they derive: (group of each
    connection, group of each template or -1, number of groups)."""
    hc = _hash(ckeys)
    uniq, first, inverse = np.unique(hc, return_index=True, return_inverse=True)
    pos_of = np.full(len(tkeys), -1, np.int64)
    ht = _hash(tkeys)
    # Most templates control no connection: a table of hash bits rules them
    # out before the (cache-missing) binary search.
    bits = np.uint64((1 << max(16, min(24, (8 * len(uniq)).bit_length()))) - 1)
    seen = np.zeros(int(bits) + 1, bool)
    seen[uniq & bits] = True
    cand = np.flatnonzero(seen[ht & bits])
    pos = np.minimum(np.searchsorted(uniq, ht[cand]), len(uniq) - 1)
    found = uniq[pos] == ht[cand]
    hit, pos = cand[found], pos[found]
    same = (ckeys[first[pos]].view("V40") == np.ascontiguousarray(tkeys[hit]).view("V40")).ravel()
    pos_of[hit[same]] = pos[same]
    return inverse.ravel(), pos_of, len(uniq)


class PerTemplate:
    """Connections grouped by the template key they derive (ckeys, one per
    connection), matched once against the templates (tkeys): then each
    aggregate per template, over all the connections or those a mask picks,
    is one numpy pass (the sweep takes three)."""

    def __init__(self, tkeys: np.ndarray, ckeys: np.ndarray) -> None:
        self.templates = len(tkeys)
        self.empty = not len(ckeys) or not len(tkeys)
        if not self.empty:
            self.inverse, self.pos, self.groups = _join(tkeys, ckeys)
            self.matched = self.pos >= 0

    def count(self, where: np.ndarray | None = None) -> np.ndarray:
        """How many of the connections (where true) each template has:
        IPVS's n_control for all of them."""
        out = np.zeros(self.templates, np.int64)
        if self.empty:
            return out
        inverse = self.inverse if where is None else self.inverse[where]
        counts = np.bincount(inverse, minlength=self.groups)
        out[self.matched] = counts[self.pos[self.matched]]
        return out

    def latest(self, values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """The largest value of the connections (where true) each template
        has (0: none)."""
        out = np.zeros(self.templates, np.uint64)
        if self.empty:
            return out
        inverse, values = (self.inverse, values) if where is None else \
            (self.inverse[where], values[where])
        most = np.zeros(self.groups, np.uint64)
        np.maximum.at(most, inverse, values.astype(np.uint64))
        out[self.matched] = most[self.pos[self.matched]]
        return out


def nat_conn_keys(nkeys: np.ndarray, nrev: np.ndarray) -> np.ndarray:
    """The connection (TUPLE) each NAT reverse entry (bpf/nat.h: keyed by the
    reply's tuple) belongs to."""
    out = np.zeros(len(nkeys), TUPLE)
    for name in ("family", "proto"):
        out[name] = nkeys[name]
    out["cport"] = nkeys["vport"]
    out["caddr"] = nkeys["vaddr"]
    out["vport"] = nrev["vport"]
    out["vaddr"] = nrev["vaddr"]
    return out
