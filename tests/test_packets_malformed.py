"""Frames that are broken or not ours: the director leaves them to the
kernel untouched (or drops them, for a VIP it cannot serve), counts each
under its one reason, and remembers nothing about them.

Each case runs the real program and compares the whole output frame, the
action and the change of every reason counter.
"""

from __future__ import annotations

import random

import packets as P
import pytest
from checks import expect_forwarded, reason_delta, reset, snapshot, tuple_key
from harness import CLIENT_MAC, DIRECTOR_MAC, mac_bytes
from scapy.layers.inet import GRE, ICMP, IP, TCP, IPOption
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

# Runs on each kernel of the matrix too (make test-kernels).
pytestmark = pytest.mark.kernels

VIP, VIP6 = P.VIP, P.VIP6
DEAD_VIP = "198.18.2.2"   # a service without any real
CLIENT, CLIENT6 = "198.18.1.50", "2001:db8:1::50"
R200 = "198.18.2.200"


@pytest.fixture
def d(director):
    reset(director)
    director.ipvsadm(
        f"-A -t {VIP}:0 -s rr -p 360",
        f"-a -t {VIP}:0 -r 198.18.2.100 -g", f"-a -t {VIP}:0 -r {R200} -g",
        f"-A -t [{VIP6}]:0 -s rr -p 360",
        f"-a -t [{VIP6}]:0 -r [2001:db8:2::100] -g",
        f"-A -t {DEAD_VIP}:0 -s rr -p 360",
    )
    return director


def eth(dst: str = DIRECTOR_MAC):
    return Ether(src=CLIENT_MAC, dst=dst)


def ip4(**kw):
    return eth() / IP(src=CLIENT, dst=VIP, **kw)


def ip6(**kw):
    return eth() / IPv6(src=CLIENT6, dst=VIP6, **kw)


def syn():
    return TCP(sport=40000, dport=80, flags="S")


CASES = {
    # L2
    "arp": (eth() / ARP(psrc=CLIENT, pdst=VIP), "not_ip"),
    "lldp": (eth() / Raw(b"\x02\x07\x04" + bytes(43)), "not_ip"),
    "arp-in-vlan": (eth() / Dot1Q(vlan=7) / ARP(pdst=VIP), "not_ip"),
    "vlan-tag-cut": (bytes(eth() / Dot1Q(vlan=7) / IP(src=CLIENT, dst=VIP) / syn())[:16],
                     "truncated"),
    "ethernet-header-only": (bytes(ip4() / syn())[:14], "truncated"),
    # IPv4
    "ipv4-header-cut": (bytes(ip4() / syn())[:14 + 12], "truncated"),
    "ipv4-version-5": (ip4(version=5) / syn(), "bad_ip"),
    "ipv4-version-6": (ip4(version=6) / syn(), "bad_ip"),
    "ipv4-ihl-4": (ip4(ihl=4) / syn(), "bad_ip"),
    "ipv4-ihl-0": (ip4(ihl=0) / syn(), "bad_ip"),
    "ipv4-tot-len-below-header": (ip4(len=16) / syn(), "bad_ip"),
    "ipv4-tot-len-past-frame": (ip4(len=1000) / syn(), "truncated"),
    "ipv4-ihl-past-frame": (ip4(ihl=15, len=60) / Raw(bytes(20)), "truncated"),
    "ipv4-more-fragments": (ip4(flags="MF") / syn(), "fragment"),
    "ipv4-fragment-offset": (ip4(frag=185) / syn(), "fragment"),
    "ipv4-last-fragment": (ip4(frag=1) / Raw(b"tail of a datagram"), "fragment"),
    # L4 over IPv4
    "tcp-header-cut": (ip4(proto=6) / Raw(bytes(12)), "truncated"),
    "udp-header-cut": (ip4(proto=17) / Raw(bytes(4)), "truncated"),
    "tcp-doff-4": (ip4() / TCP(sport=40000, dport=80, flags="S", dataofs=4), "bad_ip"),
    "tcp-doff-0": (ip4() / TCP(sport=40000, dport=80, flags="S", dataofs=0), "bad_ip"),
    "icmp-to-vip": (ip4() / ICMP(), "not_tcp_udp"),
    "gre-to-vip": (ip4() / GRE() / IP(), "not_tcp_udp"),
    "sctp-to-vip": (ip4(proto=132) / Raw(bytes(12)), "not_tcp_udp"),
    # IPv6
    "ipv6-header-cut": (bytes(ip6() / syn())[:14 + 30], "truncated"),
    "ipv6-version-4": (ip6(version=4) / syn(), "bad_ip"),
    "ipv6-payload-past-frame": (ip6(plen=1000) / syn(), "truncated"),
    "ipv6-hop-by-hop": (ip6() / IPv6ExtHdrHopByHop() / syn(), "ipv6_ext"),
    "ipv6-fragment": (ip6() / IPv6ExtHdrFragment() / syn(), "ipv6_ext"),
    "ipv6-routing": (ip6() / IPv6ExtHdrRouting() / syn(), "ipv6_ext"),
    "ipv6-destination-options": (ip6() / IPv6ExtHdrDestOpt() / syn(), "ipv6_ext"),
    "ipv6-tcp-header-cut": (ip6(nh=6) / Raw(bytes(12)), "truncated"),
    "icmpv6-to-vip": (ip6() / ICMPv6EchoRequest(), "not_tcp_udp"),
    # ours to parse, not ours to serve
    "other-host-mac": (P.tcp(CLIENT, 40000, 80, dst_mac="02:00:00:00:00:42"), "not_for_us"),
    "broadcast-mac": (P.tcp(CLIENT, 40000, 80, dst_mac="ff:ff:ff:ff:ff:ff"), "not_for_us"),
    "unknown-vip": (P.tcp(CLIENT, 40000, 80, dst="198.18.2.9"), "no_service"),
    "unknown-vip6": (P.tcp(CLIENT6, 40000, 80, dst="2001:db8:2::9"), "no_service"),
    "udp-to-tcp-only-vip": (P.udp(CLIENT, 5353, 53), "no_service"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_or_foreign_frame_is_passed_untouched_with_its_reason(d, case):
    frame, reason = CASES[case]
    frame = bytes(frame)
    before_reasons, before_maps = d.reasons(), snapshot(d)
    assert d.run(frame) == ("XDP_PASS", frame)
    assert reason_delta(before_reasons, d.reasons()) == {reason: 1}
    assert snapshot(d) == before_maps


def test_vip_without_a_real_drops_new_connections_as_no_real(d):
    frame = P.tcp(CLIENT, 40000, 80, dst=DEAD_VIP)
    before_reasons, before_maps = d.reasons(), snapshot(d)
    assert d.run(frame) == ("XDP_DROP", frame)
    assert reason_delta(before_reasons, d.reasons()) == {"no_real": 1}
    assert snapshot(d) == before_maps


def test_frame_shorter_than_an_ethernet_header_never_reaches_the_program(d):
    # BPF_PROG_TEST_RUN refuses it (EINVAL), as a NIC never delivers one.
    with pytest.raises(OSError):
        d.run(bytes(13))


def test_ipv4_with_options_to_the_vip_is_forwarded_intact(d):
    """IHL 6: the TCP header starts 24 bytes in. The connection must carry
    the real ports, so the program read them from the right place."""
    frame = bytes(ip4(options=[IPOption(b"\x01\x01\x01\x01")]) / syn())
    assert frame[14] == 0x46
    expect_forwarded(d, frame, R200)
    assert [bytes(k) for k, _ in d.conns()] == [bytes(tuple_key("tcp", CLIENT, 40000, VIP, 80))]
    ack = bytes(ip4(options=[IPOption(b"\x01\x01\x01\x01")])
                / TCP(sport=40000, dport=80, flags="A"))
    expect_forwarded(d, ack, R200)


def test_ipv4_with_maximum_options_is_forwarded_intact(d):
    frame = bytes(ip4(options=[IPOption(b"\x01" * 40)]) / syn())
    assert frame[14] == 0x4F
    expect_forwarded(d, frame, R200)
    assert [bytes(k) for k, _ in d.conns()] == [bytes(tuple_key("tcp", CLIENT, 40000, VIP, 80))]


def garbage(rng: random.Random) -> bytes:
    """Random bytes of a random length, most of them behind just enough of
    a header to get further into the parser: our MAC, perhaps a VLAN tag, an
    IP ethertype, a plausible first IP byte, a length that fits. Addresses
    stay random, so none is a VIP."""
    n = rng.randrange(14, 400)
    body = bytearray(rng.randbytes(n))
    depth = rng.randrange(4)
    if depth == 0:
        return bytes(body)
    body[0:6] = mac_bytes(DIRECTOR_MAC)
    l3 = 14
    if n >= 18 and rng.random() < 0.25:
        body[12:14] = rng.choice([b"\x81\x00", b"\x88\xa8"])
        l3 = 18
    ethertype = rng.choice([b"\x08\x00", b"\x08\x00", b"\x86\xdd", b"\x08\x06"])
    body[l3 - 2:l3] = ethertype
    if depth >= 2 and n > l3:
        body[l3] = rng.choice([0x45, 0x45, 0x46, 0x4F, 0x44, 0x60, 0x00])
    if depth == 3 and ethertype == b"\x08\x00" and n >= l3 + 20:
        body[l3 + 2:l3 + 4] = (n - l3).to_bytes(2, "big")   # total length fits
        body[l3 + 6:l3 + 8] = rng.choice([b"\x00\x00", b"\x40\x00"])  # not a fragment
        body[l3 + 9] = rng.choice([6, 17, 1, 47])
    if depth == 3 and ethertype == b"\x86\xdd" and n >= l3 + 40:
        body[l3] = 0x60
        body[l3 + 4:l3 + 6] = (n - l3 - 40).to_bytes(2, "big")  # payload length fits
        body[l3 + 6] = rng.choice([6, 17, 58, 0, 44])
    return bytes(body)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_garbage_is_never_transmitted_and_changes_no_map(d, seed):
    rng = random.Random(seed)
    before_maps = snapshot(d)
    for i in range(150):
        frame = garbage(rng)
        before = d.reasons()
        got = d.run(frame)
        delta = reason_delta(before, d.reasons())
        assert got == ("XDP_PASS", frame), f"frame {i}: {frame.hex()}"
        assert list(delta.values()) == [1], f"frame {i}: {frame.hex()}: {delta}"
    assert snapshot(d) == before_maps
