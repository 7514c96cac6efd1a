"""The director's agent: keeps real servers' MACs fresh and the maps tidy.

Started by `lvsxdp up`, in the director's network namespace. The data plane
does not depend on it for correctness of timeouts (expiry is checked on every
lookup), but the agent:
  - follows the served interfaces' MACs and MTUs (the ifaces map, and the
    VIP side's MAC in config) and the kernel's route to each real
    (routes.py: which served interface, or unreachable and why), asks the
    kernel to keep each real's neighbour entry on that interface resolved
    (managed neighbours) and writes route and MAC changes into the maps: a
    real whose MAC is lost, or that no served interface reaches, gets no
    new work until it is back. It reads them when the kernel's rtnetlink
    news says something changed (and every NET_RESYNC seconds in case), so
    that an idle director's agent asks the kernel nothing;
  - removes expired connections and dead templates, so tables and listings
    hold only live entries;
  - lowers each template's ctl_until to what its connections now need,
    exactly: the data plane lowers it itself when its last open connection
    closes, but cannot see a connection expire unseen;
  - estimates every service's and real's rates every 2 s, as IPVS's
    ip_vs_est.c does, for `ipvsadm -L --rate`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np

from . import load, netfilter, plan, routes, runtime, shared, snapshot, tables
from .director import apply_marks, kernel_mark_rules
from .model import ConfigError
from .snapshot import EST_INTERVAL, template_dead_at

log = logging.getLogger("lvsxdp.agent")
TICK = 0.25
SWEEP_EVERY = 1.0
# The sweep reads whole tables (about 0.5 s at a million templates): it runs
# at most this share of the time, so that big tables do not keep the agent
# from the reals' MACs. Expiry does not wait for it (the data plane checks).
SWEEP_SHARE = 0.1
NUD_MANAGED = 1  # NTF_EXT_MANAGED in NDA_FLAGS_EXT
# Routes and neighbours are read again when the kernel tells of a change
# (routes.NetWatch) or the configuration changes, and otherwise only this
# often, in case a change went untold: an idle agent asks the kernel nothing.
NET_RESYNC = 10.0


class Agent:
    def __init__(self) -> None:
        from pyroute2 import IPRoute  # noqa: PLC0415

        self.paths = runtime.paths()
        self.maps = runtime.Maps(self.paths.pins)
        self.ipr = IPRoute()
        self.cookie = runtime.netns_cookie()
        self.config_mtime = None
        self.config = runtime.load_config(self.paths)
        self.macs: dict = {}  # real address -> plan.Hop in the maps
        self.routes: dict = {}  # real address -> routes.Route
        self.netwatch = routes.NetWatch()  # before the first read: no news is lost
        self.next_net = 0.0
        self.ifaces = routes.served(self.ipr, routes.served_ports(self.maps))
        self.marks_in: tuple | None = None  # the mark rules the maps hold
        self.skipped_rules: list[dict] | None = None
        self.kernel_rules: list = []
        self.rules_watch = netfilter.Watch()
        self.reload = False
        self.managed: set = set()
        self.stop = False
        self.netns_ino = os.stat("/proc/self/ns/net").st_ino
        named = Path("/run/netns") / self.paths.key
        self.netns_path = named if named.exists() else None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        log.info("following the kernel's mangle rules by %s", self.rules_watch.how)
        self.refresh(force=True)
        (runtime.RUN_DIR / f"{self.paths.key}.ready").touch()
        next_sweep = 0.0
        next_estimate = time.monotonic() + EST_INTERVAL
        while not self.stop:
            if not self.still_ours():
                log.info("maps are gone or belong to another namespace: exiting")
                return
            try:
                self.refresh(force=self.reload)
                if time.monotonic() >= next_sweep:
                    started = time.monotonic()
                    self.sweep()
                    cost = time.monotonic() - started
                    next_sweep = started + max(SWEEP_EVERY, cost / SWEEP_SHARE)
                next_estimate = self.estimate(next_estimate)
            except Exception:  # keep the director tended; say what failed
                log.exception("agent pass failed")
            time.sleep(TICK)

    def _on_term(self, *_):
        self.stop = True

    def _on_hup(self, *_):
        # `systemctl reload`: read everything again at the next pass; the
        # maps change only where the configuration did
        log.info("SIGHUP: reading the configuration and the kernel's rules again")
        self.reload = True

    def still_ours(self) -> bool:
        """False once the maps are gone or another director owns them, or
        once our named namespace was deleted (`ip netns del` without
        `lvsxdp down`): then nobody can reach this director any more, and
        the agent, which alone keeps that namespace alive, cleans up."""
        try:
            if self.maps.read_config().netns_cookie != self.cookie:
                return False
        except OSError:
            return False
        if self.netns_path is not None:
            try:
                if os.stat(self.netns_path).st_ino != self.netns_ino:
                    raise FileNotFoundError
            except FileNotFoundError:
                log.info("network namespace %s was deleted: removing the director's pins",
                         self.paths.key)
                shutil.rmtree(self.paths.pins, ignore_errors=True)
                for leftover in (self.paths.runtime, self.paths.agent,
                                 runtime.RUN_DIR / f"{self.paths.key}.ready"):
                    leftover.unlink(missing_ok=True)
                return False
        return True

    # -- MACs ------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Brings the maps in line with the configuration, the reals' MACs
        and the kernel's mangle rules, whichever changed. One locked pass:
        the MACs are those of the configuration that is applied."""
        self.reload = False
        if self.rules_watch.due() or force:
            self.kernel_rules, skipped = kernel_mark_rules()
            if skipped != self.skipped_rules:
                for s in skipped:
                    log.warning("kernel mangle rule not followed: %s (%s)", s["rule"], s["why"])
                self.skipped_rules = skipped
                runtime.write_agent(self.paths, {"pid": os.getpid(),
                                                 "skipped_rules": skipped})
        kernel_rules = self.kernel_rules
        with runtime.locked(self.paths):
            try:
                mtime = self.paths.state.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = None
            changed = force or mtime != self.config_mtime
            if changed:
                self.config = runtime.load_config(self.paths)
                self.config_mtime = mtime
            addrs = {r.addr for s in self.config.services for r in s.reals}
            macs = self.macs
            if self.netwatch.changed() or changed or time.monotonic() >= self.next_net:
                self.follow_routes(addrs)
                self.ensure_managed()
                macs = routes.hops(self.ipr, self.routes, self.ifaces)
            marks_in = (kernel_rules, [r.to_dict() for r in self.config.mark_rules])
            if marks_in != self.marks_in:
                try:
                    apply_marks(self.maps, self.config, kernel_rules)
                except ConfigError as e:  # the tables in force stay as they were
                    log.error("mark rules not applied: %s", e)
                self.marks_in = marks_in
            if changed or macs != self.macs:
                for addr in addrs:
                    hop = macs.get(addr)
                    if self.macs.get(addr) != hop and hop and not hop.unreachable:
                        log.info("real %s MAC %s on ifindex %d", addr,
                                 hop.mac.hex(":") if hop.mac else "unknown", hop.ifindex)
                runtime.apply_plan(self.maps, plan.build(self.config, macs))
                self.macs = macs

    def follow_routes(self, addrs: set) -> None:
        """The kernel's route to every real, now; a real that becomes
        unreachable (or reachable again) is logged with the reason."""
        try:  # an interface's MAC or MTU may have changed
            ifaces = routes.served(self.ipr, routes.served_ports(self.maps))
            if ifaces != self.ifaces:
                changed = set(ifaces) - set(self.ifaces)
                for i in changed:
                    log.info("served interface %s: MAC %s, MTU %d", i.name, i.mac.hex(":"),
                             i.mtu)
                routes.write_ifaces(self.maps, ifaces)
                # a new MAC flushes the interface's neighbours, managed or not
                moved = {i.ifindex for i in changed}
                self.managed = {(a, ix) for a, ix in self.managed if ix not in moved}
            self.ifaces = ifaces
        except Exception as e:
            log.warning("served interfaces not read again: %s", e)
        new = {a: routes.route_to(self.ipr, a, self.ifaces) for a in addrs}
        for addr, r in new.items():
            old = self.routes.get(addr)
            if r.unreachable and (old is None or old.unreachable != r.unreachable):
                log.warning("real %s unreachable: %s", addr, r.unreachable)
            elif not r.unreachable and old is not None and old.unreachable:
                log.info("real %s reachable again (ifindex %d)", addr, r.ifindex)
        self.routes = new
        self.next_net = time.monotonic() + NET_RESYNC

    def ensure_managed(self) -> None:
        """A managed neighbour entry per real on its egress interface: the
        kernel resolves it and keeps it fresh, and marks it failed when the
        real stops answering."""
        want = {(a, r.ifindex) for a, r in self.routes.items() if not r.unreachable}
        for addr, ifindex in want - self.managed:
            with contextlib.suppress(Exception):
                existing = self.ipr.get_neighbours(ifindex=ifindex, dst=str(addr))
                if existing and existing[0]["state"] == 0x80:  # PERMANENT: leave it
                    self.managed.add((addr, ifindex))
                    continue
                family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
                self.ipr.neigh("replace", dst=str(addr), ifindex=ifindex, family=family,
                               NDA_FLAGS_EXT=NUD_MANAGED, state=0)
                self.managed.add((addr, ifindex))
        self.managed &= want

    # -- rates -------------------------------------------------------------
    def estimate(self, due: float) -> float:
        """Runs the rate estimator when it is due; returns when it is due
        next. Ticks keep to a 2-second grid, as IPVS's estimation kthread
        does (est_timer += 2 s): a late tick is followed by an early one, so
        on average they are the 2 s apart that the arithmetic assumes. After
        a long stall the grid starts again from now."""
        now = time.monotonic()
        if now < due:
            return due
        snapshot.estimate(self.maps, self.config)
        due += EST_INTERVAL
        return due if due > now - 8 * EST_INTERVAL else now + EST_INTERVAL

    # -- tidying -----------------------------------------------------------
    def sweep(self) -> None:
        sweep(self.maps, self.config, runtime.monotonic_ns())


def sweep(maps: runtime.Maps, config, now: int) -> dict:
    """Removes expired connections and dead templates, and lowers each live
    template's ctl_until to the latest `vouched` of the live connections it
    controls; then corrects the reals' connection counts. One batched read
    of each table, whole-table arithmetic in numpy: only the entries that
    change cost a call each. Returns what it did, by kind."""
    done = {"conns_deleted": 0, "templates_deleted": 0, "templates_lowered": 0,
            "nat_deleted": 0}
    step = maps.read_config().extend_ns
    # the "may be present" filters are rebuilt from the reads below, so
    # that keys deleted or evicted since the last rebuild stop costing
    # lookups (bpf/filter.h): the spare generation is cleared before them
    gen = maps.filter_bytes.begin_rebuild()
    # NAT's reverse entries before the connections: an entry is made after
    # its connection, so every one read here has its connection in the
    # later read unless that connection is gone.
    nkeys, nrev = tables.read_map(maps.nat_rev, tables.TUPLE, tables.NAT_REV)
    # Templates are read before connections: a connection that vouches after
    # this read changes its template, which the re-read before a write sees.
    tkeys, tpl, theld = tables.read_templates(maps, tiers=True)
    ckeys, conns, cheld = tables.read_connections(maps, tiers=True)
    maps.filter_bytes.finish_rebuild(gen, ckeys, tkeys, cheld, theld)

    expired = conns["expires"] <= np.uint64(now)
    for i in np.flatnonzero(expired):
        k = shared.Tuple.from_buffer_copy(ckeys[i].tobytes())
        fresh = maps.conns.lookup(k)
        if fresh is not None and now >= fresh.expires and maps.conns.delete(k):
            done["conns_deleted"] += 1
    ckeys, conns = ckeys[~expired], conns[~expired]
    if len(nkeys):
        live = {k.tobytes() for k in ckeys}
        for i, want in enumerate(tables.nat_conn_keys(nkeys, nrev)):
            if want.tobytes() not in live and maps.nat_rev.delete(
                    shared.Tuple.from_buffer_copy(nkeys[i].tobytes())):
                done["nat_deleted"] += 1

    params = tables.ServiceParams.of(config)
    svc = np.minimum(conns["svc"], shared.MAX_SERVICES - 1)
    held = params.persistent[svc]
    owners = tables.template_keys(ckeys[held], svc[held], params)
    vouched = conns["vouched"][held]
    per_template = tables.PerTemplate(tkeys, owners)
    need = per_template.latest(vouched)
    # A template whose timer already runs a step lives to the step's end
    # (IPVS checks its connections when the timer fires): never below
    # min(ctl_until, now), which persist.h's template_alive turns into that.
    need = np.maximum(need, np.minimum(tpl["ctl_until"], np.uint64(now)))
    is_open = (conns["flags"][held] & shared.CONN_F_OPEN) != 0
    n_open = per_template.count(is_open)
    closing = per_template.latest(vouched, ~is_open)

    dead = np.uint64(now) >= tables.dead_at(tpl, step)
    for i in np.flatnonzero(dead | (need < tpl["ctl_until"])):
        k = shared.Tuple.from_buffer_copy(tkeys[i].tobytes())
        fresh = maps.templates.lookup(k)
        if fresh is None:
            continue
        if dead[i]:
            if now >= template_dead_at(fresh, step) and maps.templates.delete(k):
                done["templates_deleted"] += 1
        elif (fresh.expires, fresh.ctl_until) == (int(tpl["expires"][i]),
                                                 int(tpl["ctl_until"][i])):
            fresh.ctl_until = int(need[i])
            fresh.n_open, fresh.closing_until = int(n_open[i]), int(closing[i])
            maps.templates.update(k, fresh)
            done["templates_lowered"] += 1
    # each real's connection counts, exact again (lc, wlc, sed, nq, -x/-y)
    load.recount(maps, config, now, conns)
    return done


def main() -> None:
    runtime.setup_logging("lvsxdp-agent")
    try:
        agent = Agent()
    except Exception as e:
        log.error("cannot start: %s", e)
        sys.exit(1)
    agent.run()


if __name__ == "__main__":
    main()
