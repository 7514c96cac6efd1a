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


def forwarded_to(frame: bytes, real_mac: bytes) -> bytes:
    """What DR makes of a frame: destination MAC the real's, source MAC the
    director's, every other byte unchanged."""
    director = bytes(int(x, 16) for x in DIRECTOR_MAC.split(":"))
    return real_mac + director + frame[12:]


def ip_len(frame: bytes) -> int:
    """The IP packet's length in a frame: what IPVS's (and lvsxdp's) byte
    counters count."""
    vlan = frame[12:14] in (b"\x81\x00", b"\x88\xa8")
    return len(frame) - (18 if vlan else 14)
