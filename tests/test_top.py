"""`lvsxdp top`: what it shows is what the maps hold.

First on the real program's own maps (tests/harness.py, packets through
BPF_PROG_TEST_RUN): templates with the connections they control, client
networks, extension, filters and sorts, counters and rates, a frame that
fits 80x24, and hundreds of thousands of templates aggregated rather than
listed. Then over the lab, with real clients sending traffic: `lvsxdp top`
in a real terminal (tmux, read back with capture-pane) while the traffic
arrives, and `top --json` checked against the pinned maps. Lab namespaces
are lxt<hex>-*, removed whatever happens."""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import re
import secrets
import shlex
import subprocess
import threading
import time

import numpy as np
import packets as P
import pytest
from rich.console import Console

from lvsxdp import lab, plan, runtime, shared, snapshot, tables, top
from lvsxdp.lab import CLIENT_ADDRS, IFACE, REALS, SEED_PCC, VIP, LabError, Topology
from lvsxdp.model import Config

PCC = tuple(line.removeprefix("ipvsadm ") for line in SEED_PCC)
S = shared.NS


def frame(d, view: top.View | None = None, prev: top.Counters | None = None,
          now: int | None = None) -> dict:
    cur = top.sample(d.maps)
    read = top.read_tables(d.maps, d.config, cur.reals)
    return top.build(d.config, cur, prev, read, view or top.View(limit=0), now=now)


def connect(d, client: str, sport: int, dport: int, established: bool = True) -> None:
    for flags in ("S", "A") if established else ("S",):
        assert d.run(P.tcp(client, sport, dport, flags=flags))[0] == "XDP_TX"


def real_name(d, ref: int) -> str:
    return next(r.addrport() for s in d.config.services for r in s.reals if r.ref == ref)


def rows_by_client(data: dict) -> dict[str, dict]:
    rows = data["affinity"]["rows"]
    assert len({r["client"] for r in rows}) == len(rows), rows
    return {r["client"]: r for r in rows}


# -- on the program's maps --------------------------------------------------------

def test_affinity_shows_each_template_with_its_real_and_the_connections_it_controls(
        fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC)
    for port, dport in ((40000, 80), (40001, 8080), (40002, 22)):
        connect(d, "198.18.2.50", port, dport)
    connect(d, "198.18.2.51", 40000, 80, established=False)  # SYN only: active (SYN_RECV)

    data = frame(d)
    templates = {str(shared.words_addr(k.family, k.caddr)): t for k, t in d.templates()}
    rows = rows_by_client(data)
    assert set(rows) == set(templates) == {"198.18.2.50", "198.18.2.51"}
    for client, row in rows.items():
        assert row["real"] == real_name(d, templates[client].real)
        assert row["service"] == "TCP 198.18.2.1:0"
        assert 358 <= row["expire_in"] <= 360 and not row["extended"]
    assert rows["198.18.2.50"]["connections"] == 3
    assert rows["198.18.2.51"]["connections"] == 1
    assert data["templates"]["alive"] == 2 and data["templates"]["extended"] == 0
    assert data["connections"] == {"active": 4, "inactive": 0, "table_size": 4096}

    reals = {r["name"]: r for r in data["services"][0]["reals"]}
    r50 = real_name(d, templates["198.18.2.50"].real)
    r51 = real_name(d, templates["198.18.2.51"].real)
    assert r50 != r51  # rr over two new clients
    assert (reals[r50]["active"], reals[r50]["inactive"], reals[r50]["templates"]) == (3, 0, 1)
    assert (reals[r51]["active"], reals[r51]["inactive"], reals[r51]["templates"]) == (1, 0, 1)
    assert all(r["mac_known"] and r["available"] and r["weight"] == 1 for r in reals.values())
    # the default order: most connections first
    assert [r["client"] for r in data["affinity"]["rows"]] == ["198.18.2.50", "198.18.2.51"]


def test_netmask_service_shows_client_networks_and_ppc_keeps_ports_apart(fresh_director):
    d = fresh_director
    d.ipvsadm("-A -t 198.18.2.1:443 -s rr -p 60 -M 255.255.255.0",
              "-a -t 198.18.2.1:443 -r 198.18.2.100 -g",
              "-A -t 198.18.2.1:80 -s rr -p 360", "-a -t 198.18.2.1:80 -r 198.18.2.200 -g")
    connect(d, "198.18.2.60", 40000, 443)
    connect(d, "198.18.2.61", 40000, 443)
    connect(d, "198.18.2.60", 40001, 80)

    rows = frame(d)["affinity"]["rows"]
    got = sorted((r["client"], r["service"], r["real"], r["connections"]) for r in rows)
    assert got == [("198.18.2.0/24", "TCP 198.18.2.1:443", "198.18.2.100:443", 2),
                   ("198.18.2.60", "TCP 198.18.2.1:80", "198.18.2.200:80", 1)]


def test_template_past_its_timeout_is_marked_extended_and_a_dead_one_is_gone(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC)
    connect(d, "198.18.2.50", 40000, 80)
    connect(d, "198.18.2.51", 40000, 80)
    now = runtime.monotonic_ns()
    for k, t in d.templates():
        t.expires = now - 10 * S
        if str(shared.words_addr(k.family, k.caddr)) == "198.18.2.51":
            t.ctl_until = 0  # no connection holds it any more: dead
        d.maps.templates.update(k, t)

    data = frame(d, now=now)
    (row,) = data["affinity"]["rows"]
    assert row["client"] == "198.18.2.50" and row["extended"]
    assert row["expire_in"] == 110  # the next 120 s step, as ipvsadm -L -c counts
    assert 900 < row["dies_in"] <= 1000  # while its ESTABLISHED connection may live
    assert data["templates"] == {**data["templates"], "alive": 1, "extended": 1}

    text = render_text(data)
    assert re.search(r"198\.18\.2\.50 .* 01:50\+", text), text


def test_filters_and_sorts_choose_the_rows(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC, "-A -t 198.18.2.1:443 -s rr -p 60 -M 255.255.255.0",
              "-a -t 198.18.2.1:443 -r 198.18.2.200 -g")
    for i, client in enumerate(("198.18.2.50", "198.18.2.51", "198.18.2.52", "198.18.3.9")):
        for c in range(i + 1):
            connect(d, client, 40000 + c, 80)
    connect(d, "198.18.2.70", 40000, 443, established=False)  # dies first

    def clients(**kw) -> list[str]:
        return [r["client"] for r in frame(d, top.View(**{"limit": 0, **kw}))["affinity"]["rows"]]

    # by connections, most first; of equals, the first to die first
    assert clients() == ["198.18.3.9", "198.18.2.52", "198.18.2.51", "198.18.2.0/24",
                         "198.18.2.50"]
    assert clients(sort="client") == ["198.18.2.0/24", "198.18.2.50", "198.18.2.51",
                                      "198.18.2.52", "198.18.3.9"]
    assert clients(sort="client", reverse=True) == clients(sort="client")[::-1]
    assert clients(service="198.18.2.1:443") == ["198.18.2.0/24"]
    assert clients(service="TCP 198.18.2.1:0", sort="client") == [
        "198.18.2.50", "198.18.2.51", "198.18.2.52", "198.18.3.9"]
    # rr: .50 and .52 went to one real, .51 and 198.18.3.9 to the other
    first = rows_by_client(frame(d))["198.18.2.50"]["real"]
    assert sorted(clients(real=first, service="198.18.2.1:0")) == [
        "198.18.2.50", "198.18.2.52"]
    # a client filter holds the networks it overlaps, either way round
    assert clients(client="198.18.2.0/24", sort="client") == [
        "198.18.2.0/24", "198.18.2.50", "198.18.2.51", "198.18.2.52"]
    assert clients(client="198.18.2.70", sort="client") == ["198.18.2.0/24"]
    assert clients(client="198.18.3.9") == ["198.18.3.9"]
    assert clients(limit=2) == ["198.18.3.9", "198.18.2.52"]
    data = frame(d, top.View(limit=2, service="198.18.2.1:0"))
    assert data["affinity"]["matching"] == 4 and len(data["affinity"]["rows"]) == 2
    with pytest.raises(runtime.RuntimeError_):
        frame(d, top.View(client="not-an-address"))


def test_counters_and_rates_come_from_the_per_cpu_maps(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC)
    connect(d, "198.18.2.50", 40000, 80)
    prev = top.sample(d.maps)
    for _ in range(10):
        assert d.run(P.tcp("198.18.2.50", 40000, 80, flags="PA"))[0] == "XDP_TX"
    assert d.run(P.tcp("198.18.2.50", 40000, 81, dst="198.18.2.9"))[0] == "XDP_PASS"
    assert d.run(P.tcp("198.18.2.1", 40000, 80))[0] == "XDP_PASS"  # the VIP as source
    time.sleep(0.05)
    data = frame(d, prev=prev)
    dt = data["interval"]
    assert 0.04 < dt < 5

    def stats(m, i):
        return [sum(getattr(v, f) for v in m.lookup(ctypes.c_uint32(i)))
                for f in ("conns", "packets", "bytes")]

    svc = data["services"][0]
    assert [svc["conns"], svc["packets"], svc["bytes"]] == stats(d.maps.svc_stats, 0)
    (busy,) = [r for r in svc["reals"] if r["packets"]]
    idx = next(r.index for r in d.config.services[0].reals if r.addrport() == busy["name"])
    assert [busy["conns"], busy["packets"], busy["bytes"]] == stats(d.maps.real_stats, idx)
    assert busy["pps"] == pytest.approx(10 / dt, rel=0.01)
    assert busy["bps"] == pytest.approx(8 * (busy["bytes"] - int(prev.real[idx, 2])) / dt)
    assert busy["share"] == pytest.approx(1.0)
    assert data["forwarded"]["pps"] == pytest.approx(10 / dt, rel=0.01)
    assert data["forwarded"]["cps"] == 0
    reasons = {r["reason"]: r for r in data["not_forwarded"]}
    assert reasons["no_service"]["packets"] == 1 and reasons["no_service"]["action"] == "pass"
    assert reasons["no_service"]["pps"] == pytest.approx(1 / dt, rel=0.01)
    assert reasons["no_real"]["action"] == "drop"
    assert reasons["martian"]["packets"] == 1 and reasons["martian"]["action"] == "pass"
    assert [reasons[n]["action"] for n in ("bad_csum", "bad_options", "martian",
                                            "ttl_exceeded")] == ["pass"] * 4
    assert [reasons[n]["action"] for n in ("too_big", "no_route", "no_headroom")] == \
        ["drop"] * 3
    assert reasons["map_full"]["action"] == reasons["held_full"]["action"] == "forward"


def test_a_real_without_mac_and_a_quiescent_one_are_coloured(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC, "-e -t 198.18.2.1:0 -r 198.18.2.200 -g -w 0")
    d.macs.pop(ipaddress.ip_address("198.18.2.100"))
    d.apply()
    data = frame(d)
    reals = {r["address"]: r for r in data["services"][0]["reals"]}
    assert not reals["198.18.2.100"]["mac_known"] and reals["198.18.2.100"]["mac"] is None
    assert reals["198.18.2.200"]["weight"] == 0 and reals["198.18.2.200"]["mac_known"]
    console = Console(width=80, height=24, record=True, force_terminal=True,
                      color_system="standard", file=open(os.devnull, "w"))
    console.print(top.render(data, height=24))
    lines = {re.sub(r"\x1b\[[0-9;]*m", "", line).split()[1]: line
             for line in console.export_text(styles=True).splitlines() if "→" in line}
    red, yellow = "\x1b[31m", "\x1b[33m"
    assert lines["198.18.2.100:0"].count(red) >= 3  # address, weight, MAC "no"
    assert yellow in lines["198.18.2.200:0"] and red not in lines["198.18.2.200:0"]


def render_text(data: dict, width: int = 80, height: int = 24) -> str:
    console = Console(width=width, height=height, record=True, file=open(os.devnull, "w"))
    console.print(top.render(data, height=height))
    return console.export_text()


def test_a_frame_fits_80_by_24(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC, "-A -u 198.18.2.1:53 -s rr -p 360", "-a -u 198.18.2.1:53 -r 198.18.2.100 -g")
    for i in range(40):
        connect(d, f"198.18.2.{100 + i}", 40000, 80)
    text = render_text(frame(d, top.View(limit=24)))
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= 24, text
    assert max(len(line) for line in lines) <= 80, text
    assert lines[-1].lstrip().startswith("o sort") and "q quit" in lines[-1]
    assert any("→ 198.18.2.100:0" in line for line in lines)
    assert sum(1 for line in lines if line.startswith("198.18.2.1")) >= 10  # template rows


def template_key(conn_key: shared.Tuple, svc) -> shared.Tuple:
    """persist.h's template_key for one connection: the oracle."""
    k = shared.Tuple(family=conn_key.family, proto=conn_key.proto)
    mask = plan.netmask_words(svc)
    for i in range(4):
        k.caddr[i] = conn_key.caddr[i] & mask[i]
    if svc.fwmark:
        k.proto = 0
        k.vaddr[0] = int.from_bytes(svc.fwmark.to_bytes(4, "big"), "little")
        return k
    for i in range(4):
        k.vaddr[i] = conn_key.vaddr[i]
    if shared.ntohs(conn_key.vport) == svc.port and svc.port != plan.FTP_PORT:
        k.vport = conn_key.vport
    return k



def test_template_keys_match_the_agents(fresh_director):
    """The vectorised key derivation against persist.h's, written out one
    key at a time (template_key below), over
    services of every kind (PCC, PPC, FTP, -M, firewall mark, IPv6)."""
    d = fresh_director
    d.ipvsadm("-A -t 198.18.2.1:0 -s rr -p 360", "-A -t 198.18.2.1:80 -s rr -p 60",
              "-A -t 198.18.2.1:21 -s rr -p 60", "-A -u 198.18.2.1:53 -s rr -p 60 -M 255.255.0.0",
              "-A -f 10 -s rr -p 60", "-A -t [2001:db8:2::1]:443 -s rr -p 60 -M 64")
    config = d.config
    params = tables.ServiceParams.of(config)
    rng = np.random.default_rng(7)
    keys, svcs, want = [], [], []
    for i in range(600):
        svc = config.services[i % len(config.services)]
        k = shared.Tuple(family=svc.family, proto=17 if svc.proto == "udp" else 6,
                         cport=shared.htons(int(rng.integers(1024, 65535))),
                         vport=shared.htons(int(rng.choice([80, 21, 20, 443, 53, 2000]))))
        for w in range(4 if svc.family == shared.AF_INET6 else 1):
            k.caddr[w] = int(rng.integers(0, 2**32))
            k.vaddr[w] = int(rng.integers(0, 2**32))
        keys.append(bytes(k))
        svcs.append(svc.index)
        want.append(bytes(template_key(k, svc)))
    got = tables.template_keys(np.frombuffer(b"".join(keys), tables.TUPLE), np.array(svcs), params)
    assert [bytes(g) for g in got.view("V40").ravel()] == want


def test_a_million_templates_are_counted_and_only_the_top_rows_listed():
    """1,048,576 templates and 100,000 connections written straight into the
    maps; counts and the connections each template controls are checked
    against a plain count, and only `limit` rows come out."""
    from harness import Director  # noqa: PLC0415

    d = Director(conn_max=1 << 18, tpl_max=1 << 20)
    try:
        d.ipvsadm(*PCC)
        refs = [r.ref for r in d.config.services[0].reals]
        n, m, clients = 1_000_000, 100_000, 30011
        keys = np.zeros(n, tables.TUPLE)
        keys["family"], keys["proto"] = shared.AF_INET, 6
        addrs = (np.arange(n, dtype=np.uint32) + (10 << 24)).astype(">u4").view("<u4")
        keys["caddr"][:, 0] = addrs
        keys["vaddr"][:, 0] = shared.addr_words(ipaddress.ip_address(VIP))[0]
        now = runtime.monotonic_ns()
        tpl = np.zeros(n, tables.TEMPLATE)
        tpl["expires"] = now + (np.arange(n) % 360 + 5).astype(np.uint64) * S
        tpl["expires"][::4] = now - S  # a quarter is dead: timed out, no connection
        tpl["created"], tpl["svc"] = now, 0
        tpl["real"] = np.where(np.arange(n) % 2 == 0, refs[0], refs[1])
        d.maps.templates_held.write_raw(keys, tpl, n)
        ck = np.zeros(m, tables.CONN4_KEY)
        idx = (np.arange(m) * 7) % clients  # about 3 connections per client
        ck["caddr"] = addrs[idx]
        ck["vaddr"] = keys["vaddr"][0, 0]
        ck["cport"] = np.arange(m) % 65535 + 1
        ck["vport"], ck["proto"] = shared.htons(80), 6
        conns = np.zeros(m, tables.CONN)
        conns["expires"], conns["svc"], conns["state"] = now + 900 * S, 0, 1
        conns["real"] = tpl["real"][idx]
        d.maps.conns.v4.write_raw(ck, conns, m)

        t0 = time.perf_counter()
        data = frame(d, top.View(limit=20), now=now)
        took = time.perf_counter() - t0
        per_tpl = np.bincount(idx, minlength=n)
        alive = np.arange(n) % 4 != 0
        assert data["templates"]["alive"] == n - n // 4
        assert data["connections"]["active"] == m
        rows = data["affinity"]["rows"]
        assert len(rows) == 20 and data["affinity"]["matching"] == n - n // 4
        assert [r["connections"] for r in rows] == sorted(per_tpl[alive])[::-1][:20]
        for r in rows:
            i = int.from_bytes(ipaddress.ip_address(r["client"]).packed, "big") - (10 << 24)
            assert r["connections"] == per_tpl[i]
        read = top.read_tables(d.maps, d.config)
        order = np.argsort(read.keys["caddr"][:, 0].byteswap())  # by client address
        assert np.array_equal(read.control[order], per_tpl)
        held = {r["name"]: r["templates"] for r in data["services"][0]["reals"]}
        assert sorted(held.values()) == [n // 4, n // 2]  # the dead quarter was refs[0]'s
        assert took < 10, f"{took:.1f} s for a frame of 1M templates"
    finally:
        d.close()


# -- the command, without a director ------------------------------------------------

def lvsxdp_env(**extra) -> dict:
    return {**os.environ, **{k: str(v) for k, v in extra.items()}}


@pytest.mark.parametrize("args", [["top"], ["top", "--once"], ["top", "--json"]])
def test_without_a_director_top_says_so_in_one_line_and_fails(args, tmp_path):
    key = f"lxt{secrets.token_hex(3)}"
    env = lvsxdp_env(LVSXDP_NETNS=key, LVSXDP_PIN_ROOT=tmp_path / "pins",
                     LVSXDP_STATE_DIR=tmp_path / "state", LVSXDP_RUN_DIR=tmp_path / "run")
    res = subprocess.run([lab.lvsxdp_bin(), *args], env=env, capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        f"lvsxdp: no director is running in network namespace {key} "
        "(start one with `lvsxdp up IFACE`)"]


# -- over the lab, with real traffic --------------------------------------------------

@pytest.fixture(scope="module")
def labdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("top")
    with Topology(f"lxt{secrets.token_hex(2)}-", native=True, state_dir=tmp / "state",
                  run_dir=tmp / "run") as t:
        t.lvsxdp("up", IFACE, "--mode", "native")
        for line in SEED_PCC:
            t.ipvsadm(line)
        wait_for_macs(t)
        yield t


def wait_for_macs(topo: Topology, timeout: float = 15) -> None:
    """Until the agent has every real's MAC: before that, a real gets no new
    clients, and rr over the four clients would not give each real two."""
    deadline = time.monotonic() + timeout
    while True:
        data = json.loads(topo.lvsxdp("top", "--json", "--interval", "0").stdout)
        if all(r["mac_known"] for s in data["services"] for r in s["reals"]):
            return
        assert time.monotonic() < deadline, f"MACs still unknown: {data['services']}"
        time.sleep(0.2)


class Traffic(threading.Thread):
    """Clients fetching from the VIP in a loop, until stopped."""

    def __init__(self, topo: Topology, clients=CLIENT_ADDRS) -> None:
        super().__init__(daemon=True)
        self.topo, self.clients = topo, clients
        self.halt = threading.Event()
        self.answers: dict[str, set] = {a: set() for a in clients}

    def run(self) -> None:
        while not self.halt.is_set():
            for addr in self.clients:
                try:
                    self.answers[addr].add(self.topo.curl(addr, f"http://{VIP}/", timeout=2))
                except LabError:
                    self.answers[addr].add(None)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=20)


@pytest.fixture
def traffic(labdir):
    t = Traffic(labdir)
    t.start()
    yield t
    t.stop()


def lab_env(topo: Topology) -> dict:
    return {"LVSXDP_STATE_DIR": str(topo.state_dir), "LVSXDP_RUN_DIR": str(topo.run_dir)}


class Tmux:
    """A terminal of its own (tmux server on a private socket), 80x24."""

    def __init__(self) -> None:
        self.socket = f"lxt{secrets.token_hex(3)}"

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=10, check=check)

    def start(self, argv: list[str], env: dict) -> None:
        cmd = shlex.join(["env", *[f"{k}={v}" for k, v in env.items()], *argv])
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "top", cmd)

    def screen(self, colours: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", "top").stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def running(self) -> bool:
        return self.tmux("has-session", "-t", "top", check=False).returncode == 0

    def wait_for(self, what, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if what(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"not on screen within {timeout} s:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def tmux():
    t = Tmux()
    yield t
    t.close()


def real_rows(screen: str) -> dict[str, list[str]]:
    """Real rows of the services table: name -> W Act InAct Tmpl pps bps Share MAC."""
    out = {}
    for line in screen.splitlines():
        m = re.match(r"\s*→ (\S+)\s+(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).split()
    return out


def affinity_rows(screen: str) -> dict[str, list[str]]:
    """Template rows: client -> Service (2 words) Real Left Conns Age."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Client"))
    out = {}
    for line in lines[start + 1:]:
        words = line.split()
        if words and re.match(r"\d+\.\d+\.\d+\.\d+", words[0]):
            out[words[0]] = words[1:]
    return out


def live_templates(topo: Topology) -> dict[str, str]:
    """client -> real (addr:port) of the live templates, read from the maps."""
    config = Config.from_json((topo.state_dir / f"{topo.director}.json").read_text())
    reals = {r.ref: r.addrport() for s in config.services for r in s.reals}
    with runtime.Maps(runtime.Paths(topo.director).pins) as maps:
        step = maps.read_config().extend_ns
        now = runtime.monotonic_ns()
        return {str(shared.words_addr(k.family, k.caddr)): reals[t.real]
                for k, t in maps.templates.items()
                if now < snapshot.template_dead_at(t, step)}


def test_top_in_a_terminal_shows_the_director_live_while_traffic_arrives(labdir, traffic,
                                                                         tmux):
    topo = labdir
    started = time.monotonic()
    tmux.start([lab.lvsxdp_bin(), "-n", topo.director, "top"], lab_env(topo))
    tmux.wait_for(lambda s: "lvsxdp top" in s, timeout=5)
    first_frame = time.monotonic() - started

    def busy(screen: str) -> bool:
        reals = real_rows(screen)
        try:
            rows = affinity_rows(screen)
        except StopIteration:
            return False
        return (set(rows) >= set(CLIENT_ADDRS) and len(reals) == 2
                and all(r[4] not in ("-", "0") for r in reals.values()))

    screen = tmux.wait_for(busy)
    lines = screen.rstrip("\n").splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 80
    assert f"lvsxdp top {topo.director} {IFACE} native XDP" in lines[0]
    assert "TCP 198.18.2.1:0 rr p360" in screen
    reals = real_rows(screen)
    assert set(reals) == {f"{a}:0" for a in REALS.values()}
    for w, act, inact, tmpl, pps, bps, share, mac in reals.values():
        assert (w, tmpl, mac) == ("1", "2", "yes")  # rr: two of the four clients each
        assert int(act) + int(inact) >= 1 and pps != "0" and bps != "0" and share != "-"
    templates = live_templates(topo)
    rows = affinity_rows(screen)
    for client in CLIENT_ADDRS:
        service, real, left, conns = rows[client][:2], rows[client][2], rows[client][3], \
            rows[client][4]
        assert service == ["TCP", "198.18.2.1:0"]
        assert real == templates[client]
        assert re.fullmatch(r"0[56]:\d\d", left)
        assert int(conns) >= 1
    # every answer came from the real the screen shows for that client
    for client, answers in traffic.answers.items():
        assert {lab.real_in(a) for a in answers} == {
            next(n for n, a in REALS.items() if f"{a}:0" == templates[client])}

    # the numbers move while traffic arrives
    before = screen.splitlines()[1]
    tmux.wait_for(lambda s: s.splitlines()[1] != before, timeout=10)

    tmux.keys("o")  # sort by time left
    tmux.wait_for(lambda s: "sort left↑" in s, timeout=3)
    tmux.keys("/")
    tmux.keys("-l", CLIENT_ADDRS[2])
    tmux.wait_for(lambda s: f"client: {CLIENT_ADDRS[2]}_" in s, timeout=3)
    tmux.keys("Enter")
    screen = tmux.wait_for(lambda s: f"client={CLIENT_ADDRS[2]}" in s, timeout=3)
    assert set(affinity_rows(screen)) == {CLIENT_ADDRS[2]}
    tmux.keys("x")
    tmux.wait_for(lambda s: set(affinity_rows(s)) >= set(CLIENT_ADDRS), timeout=3)
    tmux.keys("v")
    tmux.wait_for(lambda s: "service=TCP 198.18.2.1:0" in s, timeout=3)
    tmux.keys("p")
    paused = tmux.wait_for(lambda s: "PAUSED" in s, timeout=3)
    time.sleep(1.5)
    assert tmux.screen().splitlines()[:3] == paused.splitlines()[:3]  # frozen
    tmux.keys("p")
    tmux.wait_for(lambda s: "PAUSED" not in s, timeout=3)
    tmux.keys("q")
    deadline = time.monotonic() + 5
    while tmux.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux.running(), "q did not quit"
    assert first_frame < 3, f"first frame after {first_frame:.2f} s"


def test_json_is_what_the_maps_hold(labdir):
    topo = labdir
    t = Traffic(topo)
    t.start()
    try:
        time.sleep(1)
        live = json.loads(topo.lvsxdp("top", "--json", "--interval", "1").stdout)
    finally:
        t.stop()
    assert live["interval"] == pytest.approx(1, abs=0.3)
    assert live["forwarded"]["pps"] > 0 and live["forwarded"]["bps"] > 0
    assert any(r["pps"] > 0 for r in live["services"][0]["reals"])
    assert live["director"]["iface"] == IFACE and live["director"]["mode"] == "native"
    assert live["director"]["agent_alive"] is True and live["director"]["uptime"] >= 1

    time.sleep(0.5)  # traffic has stopped: the maps hold still
    data = json.loads(topo.lvsxdp("top", "--json", "--interval", "0", "--limit", "0").stdout)
    assert data["interval"] is None and data["forwarded"]["pps"] is None
    templates = live_templates(topo)
    rows = {r["client"]: r for r in data["affinity"]["rows"]}
    assert {c: r["real"] for c, r in rows.items()} == templates
    config = Config.from_json((topo.state_dir / f"{topo.director}.json").read_text())
    with runtime.Maps(runtime.Paths(topo.director).pins) as maps:
        now = runtime.monotonic_ns()
        conns = [(k, c) for k, c in maps.conns.items() if now < c.expires]
        per_client = {}
        for k, _ in conns:
            addr = str(shared.words_addr(k.family, k.caddr))
            per_client[addr] = per_client.get(addr, 0) + 1
        assert {c: r["connections"] for c, r in rows.items()} == per_client
        svc = config.services[0]
        got = data["services"][0]
        for r in svc.reals:
            row = next(x for x in got["reals"] if x["name"] == r.addrport())
            stats = maps.real_stats.lookup(ctypes.c_uint32(r.index))
            assert [row["conns"], row["packets"], row["bytes"]] == [
                sum(getattr(v, f) for v in stats) for f in ("conns", "packets", "bytes")]
            mine = [c for _, c in conns if c.real == r.ref]
            assert row["active"] == sum(c.state == shared.S["ESTABLISHED"] for c in mine)
            assert row["inactive"] == len(mine) - row["active"]
            assert row["templates"] == sum(v == r.addrport() for v in templates.values())
            assert row["mac_known"] and row["weight"] == r.weight
            real = maps.reals.lookup(ctypes.c_uint32(r.index))
            assert row["mac"] == bytes(real.mac).hex(":")
        stats = maps.svc_stats.lookup(ctypes.c_uint32(svc.index))
        assert got["packets"] == sum(v.packets for v in stats) == data["forwarded"]["packets"]
        for i, reason in enumerate(data["not_forwarded"]):
            now_count = sum(v.value for v in maps.reasons.lookup(ctypes.c_uint32(i)))
            assert reason["reason"] == shared.REASONS[i]
            assert reason["packets"] <= now_count  # ARP and the like may still arrive
    assert data["templates"]["alive"] == len(templates)
    assert data["connections"]["active"] + data["connections"]["inactive"] == len(conns)


def test_once_prints_one_frame(labdir):
    topo = labdir
    t0 = time.monotonic()
    res = topo.lvsxdp("top", "--once", "--interval", "0")
    took = time.monotonic() - t0
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"lvsxdp top {topo.director} {IFACE} native XDP")
    assert any(line.startswith("TCP 198.18.2.1:0 rr p360") for line in lines)
    assert set(affinity_rows(res.stdout)) == set(live_templates(topo))
    assert not any("q quit" in line for line in lines)  # no keys: it is not interactive
    assert took < 5
