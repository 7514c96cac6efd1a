"""Direct routing to a real behind another interface of the director, end to
end: the kernel IPVS selftest's DR topology (tools/testing/selftests/net/
netfilter/ipvs.sh) with its addresses moved into 198.18.0.0/15. The client
(on a bridge) routes the VIP to the director; the director has a
client-facing and a real-facing veth; the real holds the VIP on lo and
answers the client straight on the client's segment:

    client 198.18.10.2 (br0) --- eth0 director eth1 --- eth0 real eth1 --- br0
                        198.18.10.1   198.18.11.1  198.18.11.2  198.18.10.3
                                      VIP 198.18.12.110 on lo (both)

`lvsxdp up eth0 eth1` serves both: a client's packets come in on eth0 and
leave by eth1 (bpf_redirect_map). Every test builds its own namespaces
lxg<4 hex>-* and removes them, and the processes it started, whatever
happens."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nsdirector import cli

from lvsxdp.lab import attach_xdp_pass, run

VIP = "198.18.12.110"
CLIENT = "198.18.10.2"
DIRECTOR_CLIENT_SIDE = "198.18.10.1"
DIRECTOR_REAL_SIDE = "198.18.11.1"
REAL = "198.18.11.2"
REAL_CLIENT_SIDE = "198.18.10.3"
ROUNDS = 10
_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(64)
while True:
    c, peer = s.accept()
    with c:
        c.recv(4096)
        c.sendall(f"real {peer[0]}\\n".encode())
"""


def real_arp_settings(ns: str) -> None:
    """LVS-DR's real: accept the VIP, never announce it, take packets whose
    source is not routed back here."""
    settings = []
    for conf in ("all", "default", "lo", "eth0", "eth1"):
        settings += [f"net.ipv4.conf.{conf}.arp_ignore=1",
                     f"net.ipv4.conf.{conf}.arp_announce=2",
                     f"net.ipv4.conf.{conf}.rp_filter=0"]
    run(ns, "sysctl", "-q", "-w", *settings)


class TwoSegments:
    """ipvs.sh's DR lab: namespaces c (client), d (director), r (real)."""

    def __init__(self, tmp: Path, native: bool) -> None:
        base = f"lxg{secrets.token_hex(2)}-"
        self.client, self.director, self.real = (f"{base}{n}" for n in "cdr")
        self.native = native
        self.env = {"LVSXDP_STATE_DIR": str(tmp / "state"), "LVSXDP_RUN_DIR": str(tmp / "run")}
        self.made: list[str] = []
        self.server: subprocess.Popen | None = None

    def __enter__(self) -> TwoSegments:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def build(self) -> None:
        c, d, r = self.client, self.director, self.real
        for ns in (c, d, r):
            run(None, "ip", "netns", "add", ns)
            self.made.append(ns)
            run(None, "ip", "-n", ns, "link", "set", "lo", "up")
        run(None, "ip", "-n", c, "link", "add", "br0", "type", "bridge", "forward_delay", "0",
            "stp_state", "0")
        for port, peer, far in (("p-d", d, "eth0"), ("p-r", r, "eth1")):
            run(None, "ip", "-n", c, "link", "add", port, "type", "veth", "peer", "name", far,
                "netns", peer)
            run(None, "ip", "-n", c, "link", "set", port, "master", "br0", "up")
            run(None, "ip", "-n", peer, "link", "set", far, "up")
        run(None, "ip", "-n", d, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0",
            "netns", r)
        run(None, "ip", "-n", d, "link", "set", "eth1", "up")
        run(None, "ip", "-n", r, "link", "set", "eth0", "up")
        run(None, "ip", "-n", c, "link", "set", "br0", "up")
        run(None, "ip", "-n", c, "addr", "add", f"{CLIENT}/24", "dev", "br0")
        run(None, "ip", "-n", c, "route", "add", VIP, "via", DIRECTOR_CLIENT_SIDE, "dev", "br0")
        run(None, "ip", "-n", d, "addr", "add", f"{DIRECTOR_CLIENT_SIDE}/24", "dev", "eth0")
        run(None, "ip", "-n", d, "addr", "add", f"{DIRECTOR_REAL_SIDE}/24", "dev", "eth1")
        run(None, "ip", "-n", d, "addr", "add", f"{VIP}/32", "dev", "lo")
        run(None, "ip", "-n", r, "addr", "add", f"{REAL}/24", "dev", "eth0")
        run(None, "ip", "-n", r, "addr", "add", f"{REAL_CLIENT_SIDE}/24", "dev", "eth1")
        run(None, "ip", "-n", r, "addr", "add", f"{VIP}/32", "dev", "lo")
        run(d, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        if self.native:
            # a veth receives redirected frames only when its peer has an
            # XDP program; partial checksums do not survive native XDP
            attach_xdp_pass(r, "eth0")
            for dev in ("br0", "p-d"):
                run(c, "ethtool", "-K", dev, "tx", "off")
        self.server = subprocess.Popen(["ip", "netns", "exec", r, sys.executable, "-c", _SERVER],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait(5)
        if self.director in self.made:
            with contextlib.suppress(OSError, subprocess.SubprocessError, AssertionError):
                self.lvsxdp("down", "eth0", "--flush", check=False)
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []

    def lvsxdp(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        import os  # noqa: PLC0415

        return cli(dict(os.environ, **self.env), self.director, *args, check=check)

    def status(self) -> dict:
        return json.loads(self.lvsxdp("status", "--json", check=False).stdout)

    def wait_for_real(self, addr: str = REAL, timeout: float = 10) -> None:
        """Until the agent has resolved the real's MAC on its interface."""
        deadline = time.monotonic() + timeout
        while addr in (st := self.status())["reals_unreachable"]:
            assert time.monotonic() < deadline, st["reals_unreachable"]
            time.sleep(0.2)

    def ask(self) -> str | None:
        """One TCP connection from the client to VIP:80: the real's answer."""
        out = run(self.client, "curl", "-s", "--max-time", "3", "--http0.9",
                  f"http://{VIP}/", check=False, timeout=10)
        return out.stdout.strip() or None


@pytest.fixture(params=("generic", "native"))
def mode(request) -> str:
    return request.param


@pytest.mark.parametrize("arp_first", (True, False), ids=("real-arp-before", "real-arp-after"))
def test_dr_reaches_a_real_behind_the_real_facing_interface(tmp_path, mode, arp_first):
    with TwoSegments(tmp_path, native=(mode == "native")) as lab:
        if arp_first:
            real_arp_settings(lab.real)
        out = lab.lvsxdp("up", "eth0", "eth1", "--mode", mode).stdout
        assert "on eth0 eth1" in out
        lab.lvsxdp("ipvsadm", "-A", "-t", f"{VIP}:80", "-s", "rr")
        lab.lvsxdp("ipvsadm", "-a", "-t", f"{VIP}:80", "-r", REAL, "-g")
        if not arp_first:
            real_arp_settings(lab.real)
        lab.wait_for_real()
        st = lab.status()
        assert st["ifaces"] == ["eth0", "eth1"] and st["mode"] == mode
        answers = [lab.ask() for _ in range(ROUNDS)]
        # direct routing: the real sees the client itself
        assert answers == [f"real {CLIENT}"] * ROUNDS
        st = lab.status()
        assert st["not_forwarded"]["too_big"] == 0
        assert st["not_forwarded"]["no_real"] == 0
        stats = lab.lvsxdp("ipvsadm", "-L", "-n", "--stats", "--exact").stdout
        line = next(line for line in stats.splitlines() if f"-> {REAL}:80" in line)
        assert line.split()[2] == str(ROUNDS), stats  # Conns


def test_status_names_the_reals_no_served_interface_reaches(tmp_path):
    with TwoSegments(tmp_path, native=False) as lab:
        # a segment the director routes to but lvsxdp does not serve
        run(None, "ip", "-n", lab.director, "link", "add", "eth2", "type", "veth", "peer",
            "name", "eth3")
        run(None, "ip", "-n", lab.director, "link", "set", "eth2", "up")
        run(None, "ip", "-n", lab.director, "addr", "add", "198.18.13.1/24", "dev", "eth2")
        real_arp_settings(lab.real)
        lab.lvsxdp("up", "eth0", "eth1", "--mode", "generic")
        lab.lvsxdp("ipvsadm", "-A", "-t", f"{VIP}:80", "-s", "rr")
        for addr in (REAL, "198.18.13.2", "198.18.14.2"):
            lab.lvsxdp("ipvsadm", "-a", "-t", f"{VIP}:80", "-r", addr, "-g")
        lab.wait_for_real()
        why = lab.status()["reals_unreachable"]
        assert why == {
            "198.18.13.2": "routed via eth2, which lvsxdp does not serve "
                           "(`lvsxdp up eth0 eth1 eth2`)",
            "198.18.14.2": "no route (Network is unreachable)",
        }
        status = lab.lvsxdp("status", check=False)
        assert status.returncode == 1
        assert ("PROBLEM   real 198.18.14.2 UNREACHABLE: no route (Network is unreachable)"
                in status.stdout.splitlines())
        # the reachable real takes every connection: rr passes over the others
        assert [lab.ask() for _ in range(4)] == [f"real {CLIENT}"] * 4
        # down detaches every served interface
        lab.lvsxdp("down", "eth0")
        for iface in ("eth0", "eth1"):
            link = json.loads(run(None, "ip", "-n", lab.director, "-j", "-d", "link", "show",
                                  iface).stdout)[0]
            assert "xdp" not in link, iface
