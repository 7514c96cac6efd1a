"""Frames for packet tests, built with scapy."""

from __future__ import annotations

from harness import CLIENT_MAC, DIRECTOR_MAC
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

VIP = "198.18.2.1"
VIP6 = "2001:db8:2::1"


def tcp(src: str, sport: int, dport: int, flags: str = "S", dst: str = VIP,
        payload: bytes = b"", vlan: int | None = None, dst_mac: str = DIRECTOR_MAC) -> bytes:
    ip = IPv6(src=src, dst=dst) if ":" in dst else IP(src=src, dst=dst)
    l2 = Ether(src=CLIENT_MAC, dst=dst_mac)
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    return bytes(l2 / ip / TCP(sport=sport, dport=dport, flags=flags) / payload)


def udp(src: str, sport: int, dport: int, dst: str = VIP, payload: bytes = b"x") -> bytes:
    ip = IPv6(src=src, dst=dst) if ":" in dst else IP(src=src, dst=dst)
    return bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / ip / UDP(sport=sport, dport=dport)
                 / payload)


def ipv4_checksum(header: bytes) -> int:
    """RFC 791's header checksum of `header` (its checksum field as given)."""
    s = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def one_hop_less(frame: bytes) -> bytes:
    """The frame as ip_forward sends it on: IPv4 TTL - 1 with the header
    checksum computed afresh over the whole header, or IPv6 hop limit - 1."""
    out = bytearray(frame)
    l3 = 18 if frame[12:14] in (b"\x81\x00", b"\x88\xa8") else 14
    if out[l3] >> 4 == 4:
        ihl = (out[l3] & 0xF) * 4
        out[l3 + 8] -= 1
        out[l3 + 10:l3 + 12] = b"\0\0"
        out[l3 + 10:l3 + 12] = ipv4_checksum(bytes(out[l3:l3 + ihl])).to_bytes(2, "big")
    else:
        out[l3 + 7] -= 1
    return bytes(out)


def forwarded_to(frame: bytes, real_mac: bytes) -> bytes:
    """What DR makes of a frame: destination MAC the real's, source MAC the
    director's, one hop less (one_hop_less), every other byte unchanged."""
    director = bytes(int(x, 16) for x in DIRECTOR_MAC.split(":"))
    return real_mac + director + one_hop_less(frame)[12:]


def ip_len(frame: bytes) -> int:
    """The IP packet's length in a frame: what IPVS's (and lvsxdp's) byte
    counters count."""
    vlan = frame[12:14] in (b"\x81\x00", b"\x88\xa8")
    return len(frame) - (18 if vlan else 14)
