"""`lvsxdp top`: the director live, the way htop shows a machine; and the
numbers behind it, which `top --json` prints and `lvsxdp metrics` serves.

Reading. Everything comes from the pinned maps, opened without bcc. The small
maps (per-CPU counters, reals, config) are read on every refresh. The two
large tables, templates and connections (up to millions of entries), are read
whole with BPF_MAP_LOOKUP_BATCH straight into numpy arrays, whose dtypes are
made from shared.py's ctypes mirrors (so they cannot drift from the header),
and aggregated there: connections per real, templates per real, and the
connections each template controls, by deriving every connection's template
key as persist.h does (agent.template_key, vectorised). Only the rows on
screen become Python objects.

A full read of the large tables costs the kernel about 0.3 us per entry, so
the live view reads them at most as often as keeps that under TABLE_CPU_SHARE
of one CPU (every refresh for small tables, every few seconds at a million
templates), in a thread of its own so that keys stay responsive; between
reads, times left are recomputed from the expiries read. Counters and rates
refresh on every tick.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass, field

import numpy as np

from . import bpfsys, runtime, shared
from .model import Config, Service
from .runtime import RuntimeError_
from .snapshot import template_expire_in
from .tables import (
    REAL,
    PerTemplate,
    ServiceParams,
    dead_at,
    is_active,
    read_connections,
    read_map,
    read_templates,
    template_keys,
)

# Reasons whose packets are dropped, and those whose packets are forwarded
# all the same (map_full: without an entry; held_full: left in the embryonic
# tier); the others are passed to the kernel (the hostile ones too: bad_csum,
# bad_options, martian, ttl_exceeded, which the kernel drops or answers).
DROP_REASONS = ("no_real", "real_gone", "too_big", "no_route", "no_headroom")
FORWARD_REASONS = ("map_full", "held_full")
SORTS = ("conns", "left", "client", "service", "real", "age")
# Sorts whose natural order is descending (most connections, newest first).
SORT_DESCENDING = ("conns",)
TABLE_CPU_SHARE = 0.05
# Colour thresholds of a template's time left (seconds until it dies).
LEFT_RED = 30
LEFT_YELLOW = 120
JSON_LIMIT = 100
ONCE_LIMIT = 20


# -- reading the maps -----------------------------------------------------------

def _percpu_sum(m: bpfsys.Map) -> np.ndarray:
    """A per-CPU array of u64 fields, summed over CPUs: (entries, fields)."""
    ncpu = bpfsys.possible_cpus()
    words = m.value_bytes // 8 // ncpu
    keys, values = read_map(m, np.dtype("<u4"), np.dtype(("<u8", (ncpu, words))))
    out = np.zeros((m.max_entries, words), np.uint64)
    out[keys] = values.sum(axis=1, dtype=np.uint64)
    return out


@dataclass
class Counters:
    """The small maps, read on every refresh."""

    at: int  # monotonic ns
    svc: np.ndarray  # (MAX_SERVICES, 3): conns, packets, bytes
    real: np.ndarray  # (MAX_REALS, 3)
    reasons: np.ndarray  # (len(REASONS),) packets
    reals: np.ndarray  # the reals map by index (REAL)
    cfg: shared.Config
    wall: float = 0.0  # time.time() of the read


def sample(maps: runtime.Maps) -> Counters:
    keys, reals = read_map(maps.reals, np.dtype("<u4"), REAL)
    by_index = np.zeros(shared.MAX_REALS, REAL)
    by_index[keys] = reals
    return Counters(at=runtime.monotonic_ns(), svc=_percpu_sum(maps.svc_stats),
                    real=_percpu_sum(maps.real_stats), reasons=_percpu_sum(maps.reasons)[:, 0],
                    reals=by_index, cfg=maps.read_config(), wall=time.time())


@dataclass
class Tables:
    """The templates and connections, aggregated."""

    at: int  # monotonic ns of the read
    step: int  # template extension step, ns
    keys: np.ndarray  # templates' keys (TUPLE)
    tpl: np.ndarray  # templates (TEMPLATE)
    dead_at: np.ndarray  # when each template stops holding its client (ns)
    control: np.ndarray  # live connections each template controls
    active: np.ndarray  # (MAX_REALS,) live active connections per real index (ActiveConn)
    inactive: np.ndarray  # (MAX_REALS,) the other live connections
    conn_table_size: int
    template_table_size: int
    cost: float = 0.0  # CPU seconds the read took
    # filled on demand: a sort key per template and sort name
    sort_keys: dict = field(default_factory=dict)


def read_tables(maps: runtime.Maps, config: Config, reals: np.ndarray | None = None,
                ) -> Tables:
    t0 = time.thread_time()
    step = maps.read_config().extend_ns
    if reals is None:
        keys, values = read_map(maps.reals, np.dtype("<u4"), REAL)
        reals = np.zeros(shared.MAX_REALS, REAL)
        reals[keys] = values
    tkeys, tpl = read_templates(maps)
    ckeys, conns = read_connections(maps)
    now = runtime.monotonic_ns()

    live = conns["expires"] > np.uint64(now)
    ckeys, conns = ckeys[live], conns[live]
    idx = conns["real"] & 0xFFFF
    ours = reals["ref"][idx] == conns["real"]
    est = is_active(conns["state"])
    active = np.bincount(idx[ours & est], minlength=shared.MAX_REALS)
    inactive = np.bincount(idx[ours & ~est], minlength=shared.MAX_REALS)

    params = ServiceParams.of(config)
    svc = np.minimum(conns["svc"], shared.MAX_SERVICES - 1)
    persistent = params.persistent[svc]
    control = PerTemplate(tkeys, template_keys(ckeys[persistent], svc[persistent],
                                                  params)).count()
    return Tables(at=now, step=step, keys=tkeys, tpl=tpl, dead_at=dead_at(tpl, step),
                  control=control, active=active, inactive=inactive,
                  conn_table_size=maps.conns.max_entries,
                  template_table_size=maps.templates.max_entries,
                  cost=time.thread_time() - t0)


# -- what to show ---------------------------------------------------------------

@dataclass
class View:
    """What the operator asked to see: sort, filters, how many rows."""

    sort: str = "conns"
    reverse: bool = False
    service: str | None = None
    real: str | None = None
    client: str | None = None
    limit: int | None = ONCE_LIMIT  # affinity rows; None or 0: all


def service_name(s: Service) -> str:
    """ipvsadm's name of a service, with one space: `TCP 198.18.2.1:0`."""
    return " ".join(s.name().split())


def match_service(text: str, s: Service) -> bool:
    t = " ".join(text.split()).lower()
    name = service_name(s).lower()
    if t in (name, name.split(" ", 1)[1], str(s.index)):
        return True
    return bool(s.fwmark) and t in (str(s.fwmark), f"fwm{s.fwmark}", f"fwm {s.fwmark}")


def match_real(text: str, r) -> bool:
    t = text.strip().lower()
    return t in (str(r.addr).lower(), r.addrport().lower())


def parse_client(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise RuntimeError_(f"not an address or network: {text!r}") from None


def _client_mask(tables: Tables, config: Config, text: str) -> np.ndarray:
    """Templates whose client network and the given address or network
    overlap (a client network of -M 255.255.255.0 holds its clients)."""
    net = parse_client(text)
    family = shared.AF_INET if net.version == 4 else shared.AF_INET6
    words = np.array(shared.addr_words(net.network_address), np.uint32)
    fmask = np.array(shared.addr_words(net.netmask), np.uint32)
    if family == shared.AF_INET:
        fmask[1:] = 0
    svc_mask = ServiceParams.of(config).mask[np.minimum(tables.tpl["svc"],
                                                        shared.MAX_SERVICES - 1)]
    caddr = tables.keys["caddr"]
    inside = ((caddr & fmask) == words).all(axis=1)
    holds = ((words & svc_mask) == caddr).all(axis=1)
    return (tables.keys["family"] == family) & (inside | holds)


def _addr_key(keys: np.ndarray) -> np.ndarray:
    """A u64 that orders client addresses (first 8 bytes, IPv6 after IPv4)."""
    b = keys["caddr"][:, :2].copy().view(np.uint8).reshape(-1, 8)
    hi = np.zeros(len(keys), np.uint64)
    for i in range(8):
        hi = (hi << np.uint64(8)) | b[:, i].astype(np.uint64)
    return (hi >> np.uint64(1)) | ((keys["family"] == shared.AF_INET6).astype(np.uint64)
                                   << np.uint64(63))


def sort_key(tables: Tables, sort: str) -> np.ndarray:
    """One u64 per template that orders the rows for `sort`, ascending."""
    if sort in tables.sort_keys:
        return tables.sort_keys[sort]
    t = tables.tpl
    if sort == "left":
        key = tables.dead_at
    elif sort == "conns":
        c = np.minimum(tables.control, 0xFFFFF).astype(np.uint64)
        left_ms = (np.maximum(tables.dead_at, tables.at) - np.uint64(tables.at)) // np.uint64(
            1_000_000)
        key = ((np.uint64(0xFFFFF) - c) << np.uint64(44)) | np.minimum(
            left_ms, np.uint64((1 << 44) - 1))
    elif sort == "client":
        key = _addr_key(tables.keys)
    elif sort == "age":
        key = np.uint64(2**64 - 1) - t["created"]  # newest first
    else:
        field_ = (t["svc"].astype(np.uint64) if sort == "service"
                  else (t["real"] & 0xFFFF).astype(np.uint64))
        key = (field_ << np.uint64(48)) | (_addr_key(tables.keys) >> np.uint64(16))
    tables.sort_keys[sort] = key
    return key


def _top(key: np.ndarray, rows: np.ndarray, n: int, reverse: bool) -> np.ndarray:
    """The n rows (indices) first in key order, in that order."""
    k = key[rows]
    if reverse:
        k = ~k
    if n and n < len(rows):
        part = np.argpartition(k, n - 1)[:n]
        return rows[part[np.argsort(k[part], kind="stable")]]
    return rows[np.argsort(k, kind="stable")]


def _rate(cur: np.ndarray, prev: np.ndarray | None, dt: float) -> np.ndarray | None:
    if prev is None or dt <= 0:
        return None
    delta = np.where(cur >= prev, cur - prev, cur)  # a slot reset to zero
    return delta.astype(np.float64) / dt


def _seconds(ns: int) -> int:
    return max(0, int(ns) // shared.NS)


def build(config: Config, cur: Counters, prev: Counters | None, tables: Tables | None,
          view: View | None, now: int | None = None, info: dict | None = None,
          netns: str | None = None, agent_alive: bool | None = None,
          skipped: list | None = None) -> dict:
    """The frame's data: what `top` draws and `top --json` prints (view
    None: no affinity rows, for metrics)."""
    if now is None:
        now = max(cur.at, tables.at) if tables is not None else cur.at
    info = info or {}
    dt = (cur.at - prev.at) / shared.NS if prev is not None else 0.0
    svc_rate = _rate(cur.svc, prev.svc if prev else None, dt)
    real_rate = _rate(cur.real, prev.real if prev else None, dt)
    reason_rate = _rate(cur.reasons, prev.reasons if prev else None, dt)
    if real_rate is not None:  # a real in a reused slot starts from zero
        reused = prev.reals["ref"] != cur.reals["ref"]
        real_rate[reused] = cur.real[reused] / dt

    def rates(r, i):
        if r is None:
            return {"cps": None, "pps": None, "bps": None}
        return {"cps": float(r[i, 0]), "pps": float(r[i, 1]), "bps": float(r[i, 2] * 8)}

    alive = None
    if tables is not None:
        alive = tables.dead_at > np.uint64(now)
        tpl_real = tables.tpl["real"]
        tpl_idx = tpl_real & 0xFFFF
        ok = alive & (cur.reals["ref"][tpl_idx] == tpl_real)
        tpl_per_real = np.bincount(tpl_idx[ok], minlength=shared.MAX_REALS)
        tpl_per_svc = np.bincount(np.minimum(tables.tpl["svc"][alive], shared.MAX_SERVICES - 1),
                                  minlength=shared.MAX_SERVICES)

    services = []
    for s in config.services:
        reals = []
        svc_pps = float(svc_rate[s.index, 1]) if svc_rate is not None else None
        for r in s.reals:
            m = cur.reals[r.index]
            here = int(m["ref"]) == r.ref and m["flags"] & shared.REAL_F_AVAILABLE
            mac_known = bool(here and m["flags"] & shared.REAL_F_MAC_VALID)
            row = {
                "address": str(r.addr), "port": r.port, "name": r.addrport(),
                "weight": int(m["weight"]) if here else r.weight,
                "available": bool(here), "mac_known": mac_known,
                "mac": bytes(m["mac"]).hex(":") if mac_known else None,
                "active": None, "inactive": None, "templates": None,
                "conns": int(cur.real[r.index, 0]), "packets": int(cur.real[r.index, 1]),
                "bytes": int(cur.real[r.index, 2]),
                **rates(real_rate, r.index), "share": None,
            }
            if tables is not None:
                row["active"] = int(tables.active[r.index]) if here else 0
                row["inactive"] = int(tables.inactive[r.index]) if here else 0
                row["templates"] = int(tpl_per_real[r.index]) if here else 0
            if svc_pps and row["pps"] is not None:
                row["share"] = row["pps"] / svc_pps
            reals.append(row)
        services.append({
            "name": service_name(s), "index": s.index,
            "protocol": s.proto.upper() if not s.fwmark else "FWM",
            "address": str(s.addr) if s.addr is not None else None, "port": s.port,
            "fwmark": s.fwmark, "scheduler": s.scheduler, "persistent": s.persistent,
            "timeout": s.timeout if s.persistent else None,
            "netmask": s.netmask if s.persistent else None,
            "conns": int(cur.svc[s.index, 0]), "packets": int(cur.svc[s.index, 1]),
            "bytes": int(cur.svc[s.index, 2]), **rates(svc_rate, s.index),
            "templates": int(tpl_per_svc[s.index]) if tables is not None else None,
            "active": sum(r["active"] or 0 for r in reals) if tables is not None else None,
            "inactive": sum(r["inactive"] or 0 for r in reals) if tables is not None else None,
            "reals": reals,
        })

    total = cur.svc.sum(axis=0)
    total_rate = svc_rate.sum(axis=0) if svc_rate is not None else None
    not_fwd = []
    for i, name in enumerate(shared.REASONS):
        not_fwd.append({
            "reason": name, "action": "drop" if name in DROP_REASONS else
            ("forward" if name in FORWARD_REASONS else "pass"),
            "packets": int(cur.reasons[i]),
            "pps": float(reason_rate[i]) if reason_rate is not None else None,
        })
    uptime = _seconds(now - cur.cfg.started) if cur.cfg.started else None
    data = {
        "director": {
            "netns": netns, "iface": info.get("iface"), "mode": info.get("mode"),
            "prog_id": info.get("prog_id"), "agent_pid": info.get("agent_pid"),
            "agent_alive": agent_alive, "uptime": uptime,
            # kernel mangle rules lvsxdp cannot follow: their packets get no
            # firewall-mark service
            "kernel_rules_skipped": list(skipped or []),
        },
        "time": cur.wall,
        "interval": round(dt, 3) if prev is not None else None,
        "forwarded": {
            "conns": int(total[0]), "packets": int(total[1]), "bytes": int(total[2]),
            "cps": float(total_rate[0]) if total_rate is not None else None,
            "pps": float(total_rate[1]) if total_rate is not None else None,
            "bps": float(total_rate[2] * 8) if total_rate is not None else None,
        },
        "not_forwarded": not_fwd,
        "services": services,
        "connections": None,
        "templates": None,
        "affinity": None,
    }
    if tables is None:
        return data
    data["connections"] = {"active": int(tables.active.sum()),
                           "inactive": int(tables.inactive.sum()),
                           "table_size": tables.conn_table_size}
    data["templates"] = {"alive": int(np.count_nonzero(alive)),
                         "extended": int(np.count_nonzero(
                             alive & (tables.tpl["expires"] <= np.uint64(now)))),
                         "table_size": tables.template_table_size,
                         "read_age": round((now - tables.at) / shared.NS, 3),
                         "read_cost": round(tables.cost, 4)}
    if view is not None:
        data["affinity"] = affinity(config, tables, alive, view, now)
    return data


def _filters(config: Config, tables: Tables, view: View, rows: np.ndarray) -> np.ndarray:
    keep = rows
    if view.service:
        slots = [s.index for s in config.services if match_service(view.service, s)]
        keep = keep & np.isin(tables.tpl["svc"], slots)
    if view.real:
        refs = [r.ref for s in config.services for r in s.reals if match_real(view.real, r)]
        keep = keep & np.isin(tables.tpl["real"], refs)
    if view.client:
        keep = keep & _client_mask(tables, config, view.client)
    return keep


def affinity(config: Config, tables: Tables, alive: np.ndarray, view: View, now: int) -> dict:
    """The affinity table: the first `view.limit` live templates in the
    view's order, with the filters applied."""
    if view.sort not in SORTS:
        raise RuntimeError_(f"unknown sort {view.sort!r} ({', '.join(SORTS)})")
    rows = np.flatnonzero(_filters(config, tables, view, alive))
    order = _top(sort_key(tables, view.sort), rows, view.limit or 0, view.reverse)
    svcs = {s.index: s for s in config.services}
    reals = {r.ref: r for s in config.services for r in s.reals}
    out = []
    for i in order:
        k, t = tables.keys[i], tables.tpl[i]
        tpl = shared.Template(expires=int(t["expires"]), ctl_until=int(t["ctl_until"]))
        s = svcs.get(int(t["svc"]))
        client = shared.words_addr(int(k["family"]), k["caddr"])
        if s is not None and s.netmask < client.max_prefixlen:
            client = f"{client}/{s.netmask}"
        r = reals.get(int(t["real"]))
        out.append({
            "client": str(client), "service": service_name(s) if s else "?",
            "real": r.addrport() if r else "?",
            "expire_in": template_expire_in(tpl, tables.step, now),
            "dies_in": _seconds(int(tables.dead_at[i]) - now),
            "extended": now >= int(t["expires"]),
            "connections": int(tables.control[i]),
            "age": _seconds(now - int(t["created"])),
        })
    return {"sort": view.sort, "reverse": view.reverse,
            "filter": {"service": view.service, "real": view.real, "client": view.client},
            "matching": len(rows), "rows": out}


# -- drawing --------------------------------------------------------------------

def human(n: float | None, unit: str = "") -> str:
    """1234 -> 1.2k; None (not measured yet) -> '-'."""
    if n is None:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.1f}{suffix}{unit}" if v < 100 else f"{v:.0f}{suffix}{unit}"
    return f"{n:.0f}{unit}" if n >= 10 or n == int(n) else f"{n:.1f}{unit}"


def mmss(s: int) -> str:
    return f"{s // 60:02d}:{s % 60:02d}"


def duration(s: int | None) -> str:
    if s is None:
        return "-"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def left_style(row: dict) -> str:
    """A template's time left: red when it dies within LEFT_RED seconds,
    yellow within LEFT_YELLOW (its last extension step), else plain."""
    if row["dies_in"] <= LEFT_RED:
        return "red"
    if row["dies_in"] <= LEFT_YELLOW:
        return "yellow"
    return ""


def render(data: dict, height: int = 24, status: str = "", keys: bool = True):
    """The frame as rich renderables; fits `height` lines (the affinity
    table gets what the header and services leave)."""
    from rich.console import Group  # noqa: PLC0415 - rich only where drawn
    from rich.table import Table
    from rich.text import Text

    d = data["director"]
    head = Text()
    head.append("lvsxdp top ", style="bold")
    head.append(f"{d['netns'] or '?'} {d['iface'] or '?'} {d['mode'] or '?'} XDP")
    if d["prog_id"]:
        head.append(f" prog {d['prog_id']}")
    head.append(f"  up {duration(d['uptime'])}")
    if d["agent_alive"] is False:
        head.append("  agent NOT RUNNING", style="bold red")
    head.append("  " + time.strftime("%H:%M:%S", time.localtime(data["time"])))

    f = data["forwarded"]
    line2 = Text(f"fwd {human(f['pps'])} pps {human(f['bps'], 'b/s')}  "
                 f"new {human(f['cps'])}/s")
    c, t = data["connections"], data["templates"]
    if c is not None:
        line2.append(f"  conns {c['active']} act {c['inactive']} inact")
    if t is not None:
        line2.append(f"  templates {t['alive']}")
        if t["extended"]:
            line2.append(f" ({t['extended']} ext)", style="magenta")
    line3 = Text("not fwd ")
    shown = [r for r in data["not_forwarded"] if r["packets"]]
    if not shown:
        line3.append("none")
    for i, r in enumerate(shown):
        style = "red" if r["action"] == "drop" or r["reason"] == "map_full" else ""
        if style and not r["pps"]:
            style = "dark_orange"  # dropped before, not now
        line3.append(("  " if i else "") + f"{r['reason']} {human(r['pps'])}/s "
                     f"({human(r['packets'])})", style=style)

    svc_table = Table(box=None, padding=(0, 1), pad_edge=False, expand=False,
                      header_style="bold", show_edge=False)
    svc_table.add_column("Service / real", no_wrap=True, overflow="ellipsis", min_width=16,
                         max_width=30)
    for name in ("W", "Act", "InAct", "Tmpl", "pps", "bps", "Share", "MAC"):
        svc_table.add_column(name, justify="right", no_wrap=True)
    for s in data["services"]:
        desc = f"{s['name']} {s['scheduler']}"
        if s["persistent"]:
            desc += f" p{s['timeout']}"
            if s["netmask"] is not None and s["netmask"] < (32 if ":" not in (
                    s["address"] or "") else 128):
                desc += f"/{s['netmask']}"
        svc_table.add_row(Text(desc, style="bold"), "", _n(s["active"]), _n(s["inactive"]),
                          _n(s["templates"]), human(s["pps"]), human(s["bps"]), "", "")
        if not s["reals"]:
            svc_table.add_row(Text("  no real servers", style="red"))
        for r in s["reals"]:
            style = ""
            if not r["available"] or not r["mac_known"]:
                style = "red"
            elif r["weight"] == 0:
                style = "yellow"  # quiescent: no new work
            share = f"{r['share'] * 100:.0f}%" if r["share"] is not None else "-"
            svc_table.add_row(Text(f" → {r['name']}", style=style),
                              Text(str(r["weight"]), style=style), _n(r["active"]),
                              _n(r["inactive"]), _n(r["templates"]), human(r["pps"]),
                              human(r["bps"]), share,
                              Text("yes", style="") if r["mac_known"] else
                              Text("no", style="red"))
    skipped = d.get("kernel_rules_skipped") or []
    used = 3 + len(skipped) + 1 + sum(1 + max(1, len(s["reals"])) for s in data["services"])

    parts = [head, line2, line3]
    for rule in skipped:
        parts.append(Text(f"kernel rule NOT FOLLOWED: {rule['rule']} ({rule['why']})",
                          style="bold red", no_wrap=True, overflow="ellipsis"))
    parts.append(svc_table)
    a = data["affinity"]
    if a is not None:
        title = Text("Affinity", style="bold")
        title.append(f" {a['matching']} shown of {t['alive']}" if _filtered(a) else "")
        title.append(f"  sort {a['sort']}{'↑' if _ascending(a) else '↓'}")
        for k, v in a["filter"].items():
            if v:
                title.append(f"  {k}={v}", style="cyan")
        if t["read_age"] >= 2:
            title.append(f"  read {t['read_age']:.0f}s ago", style="dim")
        title.append("  + extended", style="magenta")
        aff = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold",
                    show_edge=False)
        aff.add_column("Client", no_wrap=True, overflow="ellipsis", min_width=13, max_width=24)
        aff.add_column("Service", no_wrap=True, overflow="ellipsis", min_width=10, max_width=22)
        aff.add_column("Real", no_wrap=True, overflow="ellipsis", min_width=10, max_width=22)
        aff.add_column("Left", justify="right", no_wrap=True, min_width=6)
        aff.add_column("Conns", justify="right", no_wrap=True)
        aff.add_column("Age", justify="right", no_wrap=True)
        room = max(0, height - used - 2 - (1 if keys or status else 0))
        for row in a["rows"][:room]:
            left = Text(mmss(row["expire_in"]), style=left_style(row))
            left.append("+" if row["extended"] else " ", style="magenta")
            aff.add_row(row["client"], row["service"], row["real"], left,
                        str(row["connections"]), duration(row["age"]))
        parts += [title, aff]
    else:
        parts.append(Text("Affinity: reading the tables…", style="bold"))
    if keys or status:
        foot = Text(status, style="reverse") if status else Text()
        if keys:
            foot.append(("  " if status else "") + "o sort  i invert  v service  r real  "
                        "/ client  x clear  p pause  q quit", style="dim")
        parts.append(foot)
    return Group(*parts)


def _n(v) -> str:
    return "-" if v is None else str(v)


def _filtered(a: dict) -> bool:
    return any(a["filter"].values())


def _ascending(a: dict) -> bool:
    return (a["sort"] not in SORT_DESCENDING) != a["reverse"]


# -- the commands -----------------------------------------------------------------

def _director():
    """This namespace's director: (paths, maps), or a one-line error."""
    p = runtime.paths()
    maps = runtime.running_maps(p)
    if maps is None:
        raise RuntimeError_(f"no director is running in network namespace {p.key} "
                            "(start one with `lvsxdp up IFACE`)")
    return p, maps


def _context(p: runtime.Paths) -> dict:
    from .director import agent_alive  # noqa: PLC0415

    info = runtime.read_runtime(p) or {}
    return {"info": info, "netns": p.key, "agent_alive": agent_alive(info),
            "skipped": runtime.read_agent(p).get("skipped_rules", [])}


def frame(view: View, interval: float) -> dict:
    """One frame's data, rates measured over `interval` seconds (0: none)."""
    p, maps = _director()
    with maps:
        config = runtime.load_config_readonly(p)
        prev = None
        if interval > 0:
            prev = sample(maps)
            time.sleep(interval)
        cur = sample(maps)
        tables = read_tables(maps, config, cur.reals)
    return build(config, cur, prev, tables, view, **_context(p))


def once(view: View, interval: float, as_json: bool) -> None:
    import json  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    console = Console()
    height = console.size.height if console.is_terminal else 10**6
    if view.limit is None:
        view.limit = JSON_LIMIT if as_json else min(ONCE_LIMIT, height)
    data = frame(view, interval)
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    console.print(render(data, height=height, keys=False))


class TableReader(threading.Thread):
    """Reads the large tables in the background, as often as the CPU share
    allows, so that a refresh of the counters and keys never wait for it."""

    def __init__(self, interval: float, share: float = TABLE_CPU_SHARE) -> None:
        super().__init__(daemon=True, name="lvsxdp-top-tables")
        self.interval = interval
        self.share = share
        self.latest: Tables | None = None
        self.error: str | None = None
        self.paused = False
        self.stop = False
        self.wake = threading.Event()
        self.notify_r, self.notify_w = os.pipe()  # a byte per read, for the view's select

    def run(self) -> None:
        while not self.stop:
            cost = 0.0
            if not self.paused:
                t0 = time.thread_time()
                try:
                    p = runtime.paths()
                    maps = runtime.running_maps(p)
                    if maps is None:
                        self.error = "director stopped"
                    else:
                        with maps:
                            self.latest = read_tables(maps, runtime.load_config_readonly(
                                p, warn=False))
                        self.error = None
                except (OSError, RuntimeError_) as e:
                    self.error = str(e)
                cost = time.thread_time() - t0
                with contextlib.suppress(OSError):
                    os.write(self.notify_w, b".")
            self.wake.wait(max(self.interval - cost, cost / self.share - cost))
            self.wake.clear()


@contextlib.contextmanager
def _keyboard(notify: int):
    """Keys one at a time (cbreak, no echo) while the view runs; yields a
    function that waits up to a timeout for keys or a byte on notify, and
    returns the keys pressed."""
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    old = termios.tcgetattr(fd) if fd is not None else None
    if fd is not None:
        tty.setcbreak(fd)

    def keys(timeout: float) -> str:
        fds = [notify] + ([fd] if fd is not None else [])
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if notify in ready:
            os.read(notify, 4096)
        return os.read(fd, 64).decode(errors="ignore") if fd in ready else ""

    try:
        yield keys
    finally:
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)


class Live:
    """The interactive view: counters every interval, tables from the
    reader, keys at once."""

    def __init__(self, view: View, interval: float) -> None:
        self.view = view
        self.interval = interval
        self.paused = False
        self.prompt: str | None = None  # client filter being typed
        self.message = ""
        self.prev: Counters | None = None
        self.cur: Counters | None = None
        self.now: int | None = None
        self.config = Config()
        self.context: dict = {}
        self.reader = TableReader(interval)

    def tick(self) -> None:
        p = runtime.paths()
        try:
            maps = runtime.running_maps(p)
        except (OSError, RuntimeError_) as e:
            maps, self.message = None, str(e)
        if maps is None:
            self.message = self.message or "director stopped"
            return
        with maps:
            cur = sample(maps)
        try:
            self.config = runtime.load_config(p)
            damaged = ""
        except RuntimeError_ as e:  # on the screen, not on stderr under it
            self.config, damaged = runtime.load_config_readonly(p, warn=False), str(e)
        self.context = _context(p)
        if self.cur is not None and self.cur.cfg.netns_cookie == cur.cfg.netns_cookie \
                and self.cur.cfg.started == cur.cfg.started:
            self.prev = self.cur
        else:
            self.prev = None  # first tick, or another director: no rates yet
        self.cur, self.now = cur, cur.at
        self.message = self.reader.error or damaged

    def status(self) -> str:
        if self.prompt is not None:
            return f"client: {self.prompt}_"
        if self.message:
            return self.message
        return "PAUSED" if self.paused else ""

    def draw(self, console):
        if self.cur is None:
            from rich.text import Text  # noqa: PLC0415

            return Text(self.status() or "reading…")
        self.view.limit = max(1, console.size.height)  # rows for the screen, not all
        try:
            data = build(self.config, self.cur, self.prev, self.reader.latest, self.view,
                         now=self.now, **self.context)
        except RuntimeError_ as e:  # a filter that cannot be read
            self.view.client, self.message = None, str(e)
            data = build(self.config, self.cur, self.prev, self.reader.latest, self.view,
                         now=self.now, **self.context)
        return render(data, height=console.size.height, status=self.status())

    def key(self, k: str) -> bool:
        """Handles one key; False to quit."""
        v = self.view
        if self.prompt is not None:
            if k in ("\r", "\n"):
                v.client, self.prompt = self.prompt.strip() or None, None
                if v.client:
                    try:
                        parse_client(v.client)
                    except RuntimeError_ as e:
                        v.client, self.message = None, str(e)
            elif k == "\x1b":
                self.prompt = None
            elif k in ("\x7f", "\b"):
                self.prompt = self.prompt[:-1]
            elif k.isprintable():
                self.prompt += k
            return True
        self.message = ""
        if k in ("q", "\x03"):
            return False
        if k == "o":
            v.sort = SORTS[(SORTS.index(v.sort) + 1) % len(SORTS)]
            v.reverse = False
        elif k == "i":
            v.reverse = not v.reverse
        elif k in ("p", " "):
            self.paused = not self.paused
            self.reader.paused = self.paused
        elif k == "v":
            names = [service_name(s) for s in self.config.services]
            v.service = _cycle(names, v.service)
        elif k == "r":
            svcs = [s for s in self.config.services
                    if not v.service or match_service(v.service, s)]
            v.real = _cycle(list(dict.fromkeys(r.addrport() for s in svcs for r in s.reals)),
                            v.real)
        elif k == "/":
            self.prompt = ""
        elif k == "x":
            v.service = v.real = v.client = None
        return True

    def run(self) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.live import Live as RichLive  # noqa: PLC0415

        console = Console()
        self.tick()
        self.reader.start()
        next_tick = time.monotonic() + min(self.interval, 0.5)  # rates soon
        try:
            with _keyboard(self.reader.notify_r) as keys, RichLive(console=console, screen=True,
                                               auto_refresh=False) as live:
                live.update(self.draw(console), refresh=True)
                while True:
                    pressed = keys(next_tick - time.monotonic())
                    for k in pressed:
                        if not self.key(k):
                            return
                    if time.monotonic() >= next_tick:
                        next_tick += self.interval
                        if next_tick < time.monotonic():
                            next_tick = time.monotonic() + self.interval
                        if not self.paused:
                            self.tick()
                    live.update(self.draw(console), refresh=True)
        except KeyboardInterrupt:
            pass
        finally:
            self.reader.stop = True
            self.reader.wake.set()


def _cycle(options: list[str], current: str | None) -> str | None:
    """The next of options after current; None (all) after the last."""
    if current not in options:
        return options[0] if options else None
    i = options.index(current) + 1
    return options[i] if i < len(options) else None


def main(view: View, interval: float, once_: bool = False, as_json: bool = False) -> None:
    if view.client:
        parse_client(view.client)
    if once_ or as_json:
        once(view, interval, as_json)
        return
    _, maps = _director()  # one clear line when there is none
    maps.close()
    if view.limit is None:
        view.limit = 0  # the screen decides
    Live(view, max(interval, 0.1)).run()
