"""The lab itself, without lvsxdp: the LVS-DR topology is right, and it
leaves nothing behind however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lvsxdp import lab
from lvsxdp.lab import CLIENT_ADDRS, IFACE, REALS, VIP, LabError, Topology


def lab_namespaces(prefix: str) -> list[str]:
    return sorted(p.name for p in Path("/run/netns").glob(f"{prefix}*"))


def alive(pid: int) -> bool:
    return lab._start_time(pid) is not None


def test_clients_reach_each_real_directly_and_the_director_owns_the_vip():
    with Topology(lab.unique_prefix()) as topo:
        for addr in CLIENT_ADDRS:
            assert topo.curl(addr, f"http://{REALS['r1']}/") == "r1"
            assert topo.curl(addr, f"http://{REALS['r2']}:8080/") == "r2"
            # no NAT anywhere: the real sees the client's own address
            assert topo.curl(addr, f"http://{REALS['r1']}/client") == f"r1 {addr}"
            assert topo.tcp_banner(addr, 22, addr=REALS["r2"]) == "SSH-2.0-r2"

        # Only the director answers ARP for the VIP; the reals hold it on lo.
        lab.run(topo.client, "ping", "-c", "1", "-W", "2", VIP)
        neigh = lab.run(topo.client, "ip", "neigh", "show", VIP).stdout.split()
        director_mac = lab.run(topo.director, "cat", f"/sys/class/net/{IFACE}/address")
        assert neigh[neigh.index("lladdr") + 1] == director_mac.stdout.strip()
        for ns in topo.reals.values():
            assert f"inet {VIP}/32" in lab.run(ns, "ip", "addr", "show", "dev", "lo").stdout
            for conf in ("all", "lo", IFACE):
                got = lab.run(ns, "sysctl", "-n", f"net.ipv4.conf.{conf}.arp_ignore",
                              f"net.ipv4.conf.{conf}.arp_announce",
                              f"net.ipv4.conf.{conf}.rp_filter").stdout.split()
                assert got == ["1", "2", "0"], conf


def test_native_lab_lets_the_director_xdp_tx_to_the_bridge():
    with Topology(lab.unique_prefix(), native=True) as topo:
        port = topo._port(topo.director)
        assert lab.xdp_mode(topo.switch, port) == "native"
        assert lab.xdp_mode(topo.director, IFACE) is None
        for ns, ifname in ((topo.client, IFACE), (topo.switch, port)):
            features = lab.run(ns, "ethtool", "-k", ifname).stdout
            assert "tx-checksumming: off" in features, (ns, ifname)
        assert topo.curl(CLIENT_ADDRS[0], f"http://{REALS['r1']}/") == "r1"


def test_teardown_after_an_error_leaves_no_namespace_and_no_process():
    prefix = lab.unique_prefix()
    with pytest.raises(RuntimeError, match="a test failing"), \
            Topology(prefix, native=True) as topo:
        pids = [pid for pid, _, _ in topo.processes]
        assert len(lab_namespaces(prefix)) == 5
        assert all(alive(pid) for pid in pids)
        workdir = topo.workdir
        raise RuntimeError("a test failing inside the lab")
    assert lab_namespaces(prefix) == []
    assert not any(alive(pid) for pid in pids)
    assert not workdir.exists()
    topo.close()  # again: nothing to do, no error


def test_a_failed_build_removes_what_it_had_made(monkeypatch):
    prefix = lab.unique_prefix()
    real_start = Topology._start_server

    def start_then_fail(self, name, ns):
        real_start(self, name, ns)
        if name == "r2":
            raise LabError("injected failure")

    monkeypatch.setattr(Topology, "_start_server", start_then_fail)
    topo = Topology(prefix)
    with pytest.raises(LabError, match="injected"), topo:
        pass
    assert len(topo.processes) == 2
    assert lab_namespaces(prefix) == []
    assert not any(alive(pid) for pid, _, _ in topo.processes)


def test_never_takes_over_namespaces_it_did_not_create():
    prefix = lab.unique_prefix()
    with Topology(prefix) as first:
        with pytest.raises(LabError, match="already exist"), Topology(prefix):
            pass
        # the second one's teardown left the first one's namespaces alone
        assert len(lab_namespaces(prefix)) == 5
        assert first.curl(CLIENT_ADDRS[0], f"http://{REALS['r2']}/") == "r2"
    assert lab_namespaces(prefix) == []


def test_sigterm_tears_the_lab_down():
    prefix = lab.unique_prefix()
    code = ("import sys, time\n"
            "from lvsxdp.lab import Topology\n"
            f"with Topology({prefix!r}) as t:\n"
            "    print(*(p for p, _, _ in t.processes), flush=True)\n"
            "    time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        servers = [int(p) for p in child.stdout.readline().split()]
        assert len(servers) == 4 and len(lab_namespaces(prefix)) == 5  # servers, vsftpd
        os.kill(child.pid, signal.SIGTERM)
        assert child.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
            lab.down(prefix)  # the child's lab, which it cannot clean up now, processes too
    deadline = time.monotonic() + 5
    while any(alive(p) for p in servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab_namespaces(prefix) == []
    assert not any(alive(p) for p in servers)
