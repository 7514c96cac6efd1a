"""What the NAT packet tests share: a director whose reply program asks the
FIB of a network namespace of the test's own (prefix + 4 hex: one veth, the
client side, with an address there and the client's MAC in its neighbour
table), entered for the test's time and removed whatever happens; frames
from either end."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets

from checks import tuple_key
from harness import CLIENT_MAC, DIRECTOR_MAC, Director, ipaddr, mac_bytes
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from lvsxdp import ipvsadm, shared, snapshot
from lvsxdp.lab import run
from lvsxdp.runtime import monotonic_ns

VIP, VIP6 = "198.18.2.1", "2001:db8:2::1"
CLIENT, CLIENT6 = "198.18.3.50", "2001:db8:3::50"
REAL, REAL6 = "198.18.2.100", "2001:db8:2::100"
REAL_MAC = "02:00:00:00:01:00"
REAL_MAC6 = "02:00:00:00:01:06"
ROUTER, ROUTER6 = "198.18.3.1", "2001:db8:3::1"  # the director's address on the client side
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


@contextlib.contextmanager
def client_side_namespace(prefix: str = "lxn"):
    """This process in a namespace (prefix + 4 hex) whose FIB routes the
    clients out of a veth (lxnc) whose ifindex and MAC are returned; back in
    its own afterwards."""
    ns = f"{prefix}{secrets.token_hex(2)}"
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    run(None, "ip", "netns", "add", ns)
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", "lxnc", "type", "veth", "peer", "name", "lxnp"],
            ["link", "set", "lxnc", "up"], ["link", "set", "lxnp", "up"],
            ["addr", "add", "198.18.3.1/24", "dev", "lxnc"],
            ["addr", "add", "2001:db8:3::1/64", "dev", "lxnc", "nodad"],
            ["neigh", "replace", CLIENT, "lladdr", CLIENT_MAC, "dev", "lxnc", "nud",
             "permanent"],
            ["neigh", "replace", CLIENT6, "lladdr", CLIENT_MAC, "dev", "lxnc", "nud",
             "permanent"],
        ):
            run(None, "ip", "-n", ns, *cmd)
        # bpf_fib_lookup forwards only where the kernel would
        run(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        try:
            link = json.loads(run(None, "ip", "-j", "link", "show", "lxnc").stdout)[0]
            yield link["ifindex"], mac_bytes(link["address"])
        finally:
            _setns(home)
    finally:
        os.close(home)
        run(None, "ip", "netns", "del", ns, check=False)


@contextlib.contextmanager
def nat_director(prefix: str = "lxn", mtu: int = 1500):
    """A Director serving lo (slot 0, the receiving interface) and the
    client-side veth (slot 1) of a client_side_namespace; d.out_mac is the
    veth's MAC, d.out_ifindex its ifindex."""
    with client_side_namespace(prefix) as (out_ifindex, out_mac):
        d = Director()
        try:
            u32 = ctypes.c_uint32
            d.out_mac, d.out_ifindex = out_mac, out_ifindex
            d.maps.tx_ports.update(u32(0), u32(1))
            d.maps.tx_ports.update(u32(1), u32(out_ifindex))
            for ifindex, mac, slot in ((1, mac_bytes(DIRECTOR_MAC), 0),
                                       (out_ifindex, d.out_mac, 1)):
                entry = shared.Iface(slot=slot, mtu=mtu)
                entry.mac[:] = list(mac)
                d.maps.ifaces.update(u32(ifindex), entry)
            d.macs[ipaddr(REAL)] = mac_bytes(REAL_MAC)
            d.macs[ipaddr(REAL6)] = mac_bytes(REAL_MAC6)
            yield d
        finally:
            d.close()


def frame(src, dst, l4, src_mac=CLIENT_MAC, dst_mac=DIRECTOR_MAC, ttl=64) -> bytes:
    ip = IPv6(src=src, dst=dst, hlim=ttl) if ":" in dst else IP(src=src, dst=dst, ttl=ttl)
    return bytes(Ether(src=src_mac, dst=dst_mac) / ip / l4)


def host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr




FAMILIES = {"ipv4": (CLIENT, VIP, REAL, REAL_MAC), "ipv6": (CLIENT6, VIP6, REAL6, REAL_MAC6)}
TOLERANCE = 5_000_000  # ns: the coarse clock's tick, with room


class Nat:
    """One family's NAT service on the module's director, and both ends of
    its connections."""

    def __init__(self, d: Director, family: str, persistent: bool = False,
                 proto: str = "tcp") -> None:
        self.d = d
        self.client, self.vip, self.real, self.real_mac = FAMILIES[family]
        self.proto = proto
        flag = "-t" if proto == "tcp" else "-u"
        p = " -p 360" if persistent else ""
        d.ipvsadm("-C", f"-A {flag} {host(self.vip)}:80 -s rr{p}",
                  f"-a {flag} {host(self.vip)}:80 -r {host(self.real)}:8080 -m")
        for m in (d.maps.conns, d.maps.templates, d.maps.nat_rev):
            for key in list(m.keys()):
                m.delete(key)
        # the same refs again: their connection counts start at zero
        for m in (d.maps.real_load, d.maps.real_load_fix):
            for key, _ in m.used():
                m.update(key, m.value_type())

    def l4(self, sport, dport, flags):
        if self.proto == "udp":
            return UDP(sport=sport, dport=dport) / b"x"
        return TCP(sport=sport, dport=dport, flags=flags)

    def from_client(self, sport: int, flags: str, forwarded: bool) -> tuple[int, int]:
        """The client's packet; checks it went to the real (or was left to
        the kernel), returns the clock around it."""
        pkt = frame(self.client, self.vip, self.l4(sport, 80, flags))
        before = monotonic_ns()
        got = self.d.run(pkt)
        after = monotonic_ns()
        if forwarded:
            assert got == ("XDP_TX", frame(self.client, self.real, self.l4(sport, 8080, flags),
                                           src_mac=DIRECTOR_MAC, dst_mac=self.real_mac, ttl=63))
        else:
            assert got == ("XDP_PASS", pkt)
        return before, after

    def from_real(self, sport: int, flags: str, translated: bool) -> tuple[int, int]:
        """The real's reply; checks it went to the client from the VIP (or
        on to the kernel untouched), returns the clock around it."""
        pkt = frame(self.real, self.client, self.l4(8080, sport, flags), src_mac=self.real_mac)
        before = monotonic_ns()
        got = self.d.run(pkt)
        after = monotonic_ns()
        if translated:
            assert got == ("XDP_REDIRECT", frame(self.vip, self.client, self.l4(80, sport, flags),
                                                 src_mac=self.d.out_mac, dst_mac=CLIENT_MAC,
                                                 ttl=63))
        else:
            assert got == ("XDP_PASS", pkt)
        return before, after

    def key(self, sport: int) -> shared.Tuple:
        return tuple_key(self.proto, self.client, sport, self.vip, 80)

    def conn(self, sport: int):
        return self.d.maps.conns.lookup(self.key(sport))

    def check(self, sport: int, want: str | None, clock: tuple[int, int]) -> None:
        conn = self.conn(sport)
        if want is None:
            assert conn is None
            return
        assert conn is not None
        assert shared.STATES[conn.state] == want
        before, after = clock
        timeout = shared.DEFAULT_TIMEOUTS[want] * shared.NS
        assert before + timeout - TOLERANCE <= conn.expires <= after + timeout + TOLERANCE

    def listing(self) -> str:
        return ipvsadm.format_list(self.d.config, ipvsadm.parse(["-L", "-n", "-c"]),
                                   snapshot.read(self.d.maps, self.d.config))
