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
import os
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
VIP6 = "2001:db8:12::110"
CLIENT6 = "2001:db8:10::2"
DIRECTOR_CLIENT_SIDE6 = "2001:db8:10::1"
DIRECTOR_REAL_SIDE6 = "2001:db8:11::1"
REAL6 = "2001:db8:11::2"
# both families on one socket; an IPv4 peer shows as itself
_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 80)); s.listen(64)
while True:
    c, peer = s.accept()
    with c:
        c.recv(4096)
        c.sendall(f"real {peer[0].removeprefix('::ffff:')}\\n".encode())
"""


def real_arp_settings(ns: str) -> None:
    """LVS-DR's real: accept the VIP, never announce it, take packets whose
    source is not routed back here."""
    settings = []
    for conf in ("all", "default", "lo", "eth0", "eth1"):
        settings += [f"net.ipv4.conf.{conf}.arp_ignore=1",
                     f"net.ipv4.conf.{conf}.arp_announce=2",
                     f"net.ipv4.conf.{conf}.rp_filter=0"]
    run(ns, "sysctl", "-q", "-e", "-w", *settings)  # -e: NAT's real has no eth1


class TwoSegments:
    """ipvs.sh's DR lab: namespaces c (client), d (director), r (real)."""

    def __init__(self, tmp: Path, native: bool, method: str = "route",
                 prefix: str = "lxg") -> None:
        base = f"{prefix}{secrets.token_hex(2)}-"
        self.client, self.director, self.real = (f"{base}{n}" for n in "cdr")
        self.native = native
        self.method = method
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
        if self.method != "masq":
            run(None, "ip", "-n", r, "addr", "add", f"{VIP}/32", "dev", "lo")
        run(d, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        if self.method == "masq":
            # ipvs.sh's NAT: the real answers through its gateway, the
            # director, only; both families
            run(None, "ip", "-n", r, "link", "del", "eth1")
            run(None, "ip", "-n", r, "route", "add", "default", "via", DIRECTOR_REAL_SIDE,
                "dev", "eth0")
            for ns, addr, dev in ((c, CLIENT6, "br0"), (d, DIRECTOR_CLIENT_SIDE6, "eth0"),
                                  (d, DIRECTOR_REAL_SIDE6, "eth1"), (r, REAL6, "eth0")):
                run(None, "ip", "-n", ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
            run(None, "ip", "-n", d, "addr", "add", f"{VIP6}/128", "dev", "lo")
            run(None, "ip", "-n", c, "route", "add", VIP6, "via", DIRECTOR_CLIENT_SIDE6)
            run(None, "ip", "-n", r, "-6", "route", "add", "default", "via",
                DIRECTOR_REAL_SIDE6, "dev", "eth0")
            # bpf_fib_lookup forwards only where the kernel would
            run(d, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        if self.method == "tunnel":
            # ipvs.sh's TUN: the real decapsulates on tunl0 and answers
            # the client straight; GUE on GUE_PORT hands the inner packet
            # to tunl0 too, GRE arrives on gre0 (the fallback devices take
            # any tunnel's packets)
            for dev in ("tunl0", "gre0"):
                run(None, "ip", "-n", r, "link", "set", dev, "up")
                run(r, "sysctl", "-q", "-w", f"net.ipv4.conf.{dev}.rp_filter=0")
            run(None, "ip", "-n", r, "fou", "add", "port", str(GUE_PORT), "gue")
        if self.native:
            # a veth receives redirected frames only when its peer has an
            # XDP program; partial checksums do not survive native XDP
            attach_xdp_pass(r, "eth0")
            for dev in ("br0", "p-d"):
                run(c, "ethtool", "-K", dev, "tx", "off")
            if self.method == "masq":
                # replies are redirected to the client-facing side
                attach_xdp_pass(c, "p-d")
                run(r, "ethtool", "-K", "eth0", "tx", "off")
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

    def ask(self, vip: str = VIP) -> str | None:
        """One TCP connection from the client to VIP:80: the real's answer."""
        url = f"http://[{vip}]/" if ":" in vip else f"http://{vip}/"
        out = run(self.client, "curl", "-s", "-g", "--max-time", "3", "--http0.9", url,
                  check=False, timeout=10)
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


@pytest.mark.parametrize("arp_first", (True, False), ids=("real-arp-before", "real-arp-after"))
def test_nat_rewrites_to_the_real_and_translates_its_replies_back(tmp_path, mode, arp_first):
    """ipvs.sh's NAT: the real's default route is the director, which
    rewrites the client's packets to the real and the real's replies back
    to the VIP (IPv4 and IPv6)."""
    with TwoSegments(tmp_path, native=(mode == "native"), method="masq",
                     prefix="lxn") as lab:
        if arp_first:
            real_arp_settings(lab.real)
        lab.lvsxdp("up", "eth0", "eth1", "--mode", mode)
        for vip, real in ((VIP, REAL), (f"[{VIP6}]", f"[{REAL6}]")):
            lab.lvsxdp("ipvsadm", "-A", "-t", f"{vip}:80", "-s", "rr")
            lab.lvsxdp("ipvsadm", "-a", "-t", f"{vip}:80", "-r", f"{real}:80", "-m")
        if not arp_first:
            real_arp_settings(lab.real)
        lab.wait_for_real(REAL)
        lab.wait_for_real(REAL6)
        listing = lab.lvsxdp("ipvsadm", "-L", "-n").stdout
        assert f"  -> {REAL + ':80':<28} Masq    1      0          0" in listing
        # NAT: the real sees the client itself, and answers it from the VIP
        assert [lab.ask() for _ in range(ROUNDS)] == [f"real {CLIENT}"] * ROUNDS
        assert [lab.ask(VIP6) for _ in range(ROUNDS)] == [f"real {CLIENT6}"] * ROUNDS
        st = lab.status()
        for reason in ("no_route", "too_big", "no_real"):
            assert st["not_forwarded"][reason] == 0, reason
        stats = lab.lvsxdp("ipvsadm", "-L", "-n", "--stats", "--exact").stdout
        line = next(line for line in stats.splitlines() if f"-> {REAL}:80" in line)
        conns, inpkts, outpkts = (int(v) for v in line.split()[2:5])
        assert conns == ROUNDS and inpkts >= 3 * ROUNDS and outpkts >= 2 * ROUNDS, stats


GUE_PORT = 6080
# what the real decapsulates with, by what shows it in a fresh namespace
TUNNEL_MODULES = {"ipip": "tunl0", "ip_gre": "gre0", "fou": "fou"}


def _kernel_tunnels() -> set[str]:
    """The modules of TUNNEL_MODULES this kernel has, loaded."""
    name = f"lxt{secrets.token_hex(2)}"
    for module in TUNNEL_MODULES:
        run(None, "modprobe", "-q", module, check=False)
    run(None, "ip", "netns", "add", name)
    try:
        # a loaded ipip or ip_gre gives every namespace its fallback device
        have = {m for m, dev in TUNNEL_MODULES.items() if dev != "fou" and run(
            None, "ip", "-n", name, "link", "show", dev, check=False).returncode == 0}
        if run(None, "ip", "-n", name, "fou", "add", "port", str(GUE_PORT), "gue",
               check=False).returncode == 0:
            have.add("fou")
        return have
    finally:
        run(None, "ip", "netns", "del", name, check=False)


# About 5 minutes a case under TCG (6.1: 315 s generic, 277 s native; 248 s
# and 237 s before GUE and GRE joined IPIP): the kernel matrix's emulated VMs
# run one ARP order per mode (before in generic, after in native), not all four.
TUN_ARP_ORDERS = (("by-mode",) if os.environ.get("LVSXDP_TEST_SHORT") == "1"
                  else ("real-arp-before", "real-arp-after"))


# -i's tunnels after IPIP, switched with `ipvsadm -e` in one lab (a lab and
# `lvsxdp up` are most of a case's time under TCG). The real's kernel checks
# the checksums (UDP's before fou, gre_parse_header). Its fallback gre0
# takes GRE without a checksum only (ip_tunnel_rcv drops a C bit the device
# was not made for): GRE with one goes to a device made with icsum.
TUN_SWITCHES = (("gue", ["--tun-type", "gue", "--tun-port", str(GUE_PORT), "--tun-csum"],
                 f"gue:{GUE_PORT}:+c"),
                ("gre", ["--tun-type", "gre"], "gre:-c"),
                ("gre-csum", ["--tun-type", "gre", "--tun-csum"], "gre:+c"))
TUN_SWITCH_ROUNDS = 4


@pytest.mark.kernels  # the real side needs ipip, fou, ip_gre: Debian's kernels have them
@pytest.mark.parametrize("arp_order", TUN_ARP_ORDERS)
def test_tun_carries_the_client_in_ipip_gue_and_gre_to_a_real_that_answers_it_straight(
        tmp_path, mode, arp_order):
    """ipvs.sh's TUN: IPIP from the director's real-side address to the
    real, which decapsulates on tunl0 and answers the client itself; then
    the same real by GUE (fou, then tunl0) and by GRE (gre0; with its
    checksum, a GRE device that asks for one)."""
    have = _kernel_tunnels()
    if not have:
        pytest.skip("this kernel has no ipip, ip_gre or fou for the real to decapsulate "
                    "with: TUN end to end runs in the VMs of `make test-kernels`")
    assert have == set(TUNNEL_MODULES), f"a kernel with only {sorted(have)} of the tunnels"
    arp_first = (arp_order == "real-arp-before" if arp_order != "by-mode"
                 else mode == "generic")
    with TwoSegments(tmp_path, native=(mode == "native"), method="tunnel",
                     prefix="lxt") as lab:
        if arp_first:
            real_arp_settings(lab.real)
        lab.lvsxdp("up", "eth0", "eth1", "--mode", mode)
        lab.lvsxdp("ipvsadm", "-A", "-t", f"{VIP}:80", "-s", "rr")
        lab.lvsxdp("ipvsadm", "-a", "-i", "-t", f"{VIP}:80", "-r", f"{REAL}:80")
        if not arp_first:
            real_arp_settings(lab.real)
        lab.wait_for_real()
        info = lab.lvsxdp("ipvsadm", "-L", "-n", "--tun-info").stdout
        assert f"  -> {REAL + ':80':<28} Tunnel  ipip          1" in info
        assert [lab.ask() for _ in range(ROUNDS)] == [f"real {CLIENT}"] * ROUNDS
        conns = ROUNDS
        for name, opts, shown in TUN_SWITCHES:
            if name == "gre-csum":
                run(None, "ip", "-n", lab.real, "link", "add", "gre1", "type", "gre", "local",
                    REAL, "icsum")
                run(None, "ip", "-n", lab.real, "link", "set", "gre1", "up")
                run(lab.real, "sysctl", "-q", "-w", "net.ipv4.conf.gre1.rp_filter=0")
            lab.lvsxdp("ipvsadm", "-e", "-i", "-t", f"{VIP}:80", "-r", f"{REAL}:80", *opts)
            info = lab.lvsxdp("ipvsadm", "-L", "-n", "--tun-info").stdout
            assert f"  -> {REAL + ':80':<28} Tunnel  {shown:<13} 1" in info, info
            answers = [lab.ask() for _ in range(TUN_SWITCH_ROUNDS)]
            assert answers == [f"real {CLIENT}"] * TUN_SWITCH_ROUNDS, name
            conns += TUN_SWITCH_ROUNDS
        st = lab.status()
        assert st["not_forwarded"]["too_big"] == 0
        assert st["not_forwarded"]["no_headroom"] == 0
        stats = lab.lvsxdp("ipvsadm", "-L", "-n", "--stats", "--exact").stdout
        line = next(line for line in stats.splitlines() if f"-> {REAL}:80" in line)
        assert line.split()[2] == str(conns), stats


_UDP_ASK = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], 53))
s.send(b"query")
try:
    s.recv(100)
    print("answer")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("silence")
"""


def test_a_nat_reals_port_unreachable_reaches_the_client_from_the_vip(tmp_path):
    """ip_vs_out_icmp: the real refuses a datagram (nothing listens on its
    port 53); its ICMP error, translated back to the VIP and the service's
    port, is what the client's socket connected to VIP:53 hears."""
    with TwoSegments(tmp_path, native=False, method="masq", prefix="lxq") as lab:
        real_arp_settings(lab.real)
        lab.lvsxdp("up", "eth0", "eth1", "--mode", "generic")
        for vip, real in ((VIP, REAL), (f"[{VIP6}]", f"[{REAL6}]")):
            lab.lvsxdp("ipvsadm", "-A", "-u", f"{vip}:53", "-s", "rr")
            lab.lvsxdp("ipvsadm", "-a", "-u", f"{vip}:53", "-r", f"{real}:53", "-m")
        lab.wait_for_real(REAL)
        lab.wait_for_real(REAL6)
        for vip in (VIP, VIP6):
            out = run(lab.client, sys.executable, "-c", _UDP_ASK, vip, timeout=10)
            assert out.stdout.strip() == "refused", vip
        stats = lab.lvsxdp("ipvsadm", "-L", "-n", "--stats", "--exact").stdout
        line = next(line for line in stats.splitlines() if f"-> {REAL}:53" in line)
        assert line.split()[2:5] == ["1", "1", "1"], stats  # Conns InPkts OutPkts


_BIG_DATAGRAM = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER: IP_PMTUDISC_DO, DF set
try:
    s.sendto(b"x" * 1300, (sys.argv[1], 53))
except OSError:  # the path MTU the director reported is known here now
    pass
"""


def test_the_director_follows_a_served_interfaces_new_mac_and_mtu(tmp_path):
    """The agent reads the served interfaces again: after a MAC change on
    either side the client's packets and the real's replies are the
    director's again, and a smaller MTU toward the real answers a datagram
    that fit before with fragmentation needed."""
    with TwoSegments(tmp_path, native=False, method="masq", prefix="lxq") as lab:
        real_arp_settings(lab.real)
        lab.lvsxdp("up", "eth0", "eth1", "--mode", "generic")
        lab.lvsxdp("ipvsadm", "-A", "-t", f"{VIP}:80", "-s", "rr")
        lab.lvsxdp("ipvsadm", "-a", "-t", f"{VIP}:80", "-r", f"{REAL}:80", "-m")
        lab.lvsxdp("ipvsadm", "-A", "-u", f"{VIP}:53", "-s", "rr")
        lab.lvsxdp("ipvsadm", "-a", "-u", f"{VIP}:53", "-r", f"{REAL}:53", "-m")
        lab.wait_for_real()
        assert lab.ask() == f"real {CLIENT}"
        for dev, mac in (("eth0", "02:00:00:00:aa:00"), ("eth1", "02:00:00:00:aa:01")):
            run(None, "ip", "-n", lab.director, "link", "set", dev, "address", mac)
        run(None, "ip", "-n", lab.client, "neigh", "flush", "dev", "br0")
        run(None, "ip", "-n", lab.real, "neigh", "flush", "dev", "eth0")
        deadline = time.monotonic() + 10
        while lab.ask() != f"real {CLIENT}":
            assert time.monotonic() < deadline, lab.status()["not_forwarded"]
            time.sleep(0.3)
        assert [lab.ask() for _ in range(3)] == [f"real {CLIENT}"] * 3

        run(lab.client, sys.executable, "-c", _BIG_DATAGRAM, VIP, timeout=10)
        assert lab.status()["not_forwarded"]["too_big"] == 0
        run(None, "ip", "-n", lab.director, "link", "set", "eth1", "mtu", "1280")
        deadline = time.monotonic() + 10
        while lab.status()["not_forwarded"]["too_big"] == 0:
            assert time.monotonic() < deadline
            run(lab.client, sys.executable, "-c", _BIG_DATAGRAM, VIP, timeout=10)
            time.sleep(0.3)
        # the client's kernel took the director's word for the path's MTU
        route = run(lab.client, "ip", "route", "get", VIP).stdout
        assert "mtu 1280" in route, route
