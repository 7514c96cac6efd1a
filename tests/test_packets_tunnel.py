"""Tunnelling (-i) through the program, whole frames compared: IPIP for
IPv4, ip6ip6 for IPv6, GUE (UDP to --tun-port, a 4-byte GUE header) with
and without its checksum; the outer header from the director's address on
the way to the real, carrying the inner's DSCP/ECN, TTL and DF. A packet
that the tunnel's headers make larger than the egress MTU is answered with
ICMP fragmentation needed / packet too big, as IPVS answers it - and so is
one over the MTU on the way to a DR real."""

from __future__ import annotations

import socket

import pytest
from harness import CLIENT_MAC, DIRECTOR_MAC, Director, ipaddr, mac_bytes
from packets import one_hop_less
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lvsxdp import shared
from lvsxdp.plan import Hop

# Runs on each kernel of the matrix too (make test-kernels): the tail-called
# programs, bpf_xdp_adjust_head/_tail and the checksum loop are verified there.
pytestmark = pytest.mark.kernels

VIP, VIP6 = "198.18.2.1", "2001:db8:2::1"
CLIENT, CLIENT6 = "198.18.2.50", "2001:db8:2::50"
REAL, REAL6 = "198.18.4.100", "2001:db8:4::100"
TUN_SRC, TUN_SRC6 = "198.18.2.2", "2001:db8:2::2"
REAL_MAC = "02:00:00:00:04:00"


@pytest.fixture(scope="module")
def d():
    d = Director()
    for addr, src in ((REAL, TUN_SRC), (REAL6, TUN_SRC6)):
        d.macs[ipaddr(addr)] = Hop(mac=mac_bytes(REAL_MAC), ifindex=1,
                                   smac=mac_bytes(DIRECTOR_MAC), slot=0, mtu=1500, saddr=src)
    yield d
    d.close()


def host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def configure(d: Director, vip: str, real: str, tunnel: str = "") -> None:
    d.ipvsadm("-C", f"-A -t {host(vip)}:80 -s rr", f"-a -t {host(vip)}:80 -r {host(real)} -i "
              + tunnel)


def gue_sport(client: str, cport: int, vip: str, vport: int, proto: int = 6) -> int:
    """The outer source port bpf/tunnel.h picks for a flow."""
    h = proto ^ (socket.htons(cport) << 16 | socket.htons(vport))
    for c, v in zip(shared.addr_words(ipaddr(client)), shared.addr_words(ipaddr(vip)),
                    strict=True):
        h ^= c ^ v
    h = (h * 0x9E3779B1) & 0xFFFFFFFF
    return ((h * (61000 - 32768)) >> 32) + 32768


def test_ipip_carries_the_packet_one_hop_less_from_the_directors_address(d):
    configure(d, VIP, REAL)
    inner = IP(src=CLIENT, dst=VIP, tos=0x2B, flags="DF") / TCP(sport=40000, dport=80,
                                                                flags="S")
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / inner)
    # ECN CE (0x2b & 3 == 3) goes out as ECT(0), DSCP kept; DF and TTL copied
    want = bytes(Ether(src=DIRECTOR_MAC, dst=REAL_MAC)
                 / IP(src=TUN_SRC, dst=REAL, tos=0x2A, flags="DF", id=0, ttl=63, proto=4)
                 / Raw(one_hop_less(syn)[14:]))
    assert d.run(syn) == ("XDP_TX", want)


def test_ip6ip6_for_an_ipv6_real(d):
    configure(d, VIP6, REAL6)
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IPv6(src=CLIENT6, dst=VIP6, tc=0x20)
                / TCP(sport=40000, dport=80, flags="S"))
    want = bytes(Ether(src=DIRECTOR_MAC, dst=REAL_MAC)
                 / IPv6(src=TUN_SRC6, dst=REAL6, tc=0x20, hlim=63, nh=41,
                        plen=len(syn) - 14)) + one_hop_less(syn)[14:]
    assert d.run(syn) == ("XDP_TX", want)


@pytest.mark.parametrize("csum", ("--tun-nocsum", "--tun-csum"))
@pytest.mark.parametrize("client,vip,real,src", [(CLIENT, VIP, REAL, TUN_SRC),
                                                  (CLIENT6, VIP6, REAL6, TUN_SRC6)],
                         ids=("ipv4", "ipv6"))
def test_gue_to_the_tunnel_port_with_the_checksum_asked_for(d, csum, client, vip, real, src):
    configure(d, vip, real, f"--tun-type gue --tun-port 6080 {csum}")
    ip = IPv6(src=client, dst=vip) if ":" in vip else IP(src=client, dst=vip)
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / ip
                / TCP(sport=40001, dport=80, flags="S") / b"data")
    inner = one_hop_less(syn)[14:]
    gue = bytes([0, 41 if ":" in vip else 4, 0, 0])
    udp = UDP(sport=gue_sport(client, 40001, vip, 80), dport=6080,
              chksum=None if csum == "--tun-csum" else 0)
    outer = IPv6(src=src, dst=real, hlim=63) if ":" in vip else \
        IP(src=src, dst=real, ttl=63, id=0)
    want = bytes(Ether(src=DIRECTOR_MAC, dst=REAL_MAC) / outer / udp / Raw(gue + inner))
    assert d.run(syn) == ("XDP_TX", want)


def test_a_tunnelled_packet_over_the_mtu_is_answered_with_fragmentation_needed(d):
    configure(d, VIP, REAL)
    # 1481 + 20 bytes of IPIP > 1500: IPVS reports 1480
    big = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP, flags="DF")
                / TCP(sport=40002, dport=80, flags="S") / (b"x" * (1481 - 40)))
    quote = one_hop_less(big)[14:14 + 548]
    icmp = ICMP(type=3, code=4, nexthopmtu=1480) / Raw(quote)
    want = bytes(Ether(src=DIRECTOR_MAC, dst=CLIENT_MAC)
                 / IP(src=VIP, dst=CLIENT, tos=0xC0, id=0, ttl=64, proto=1) / icmp)
    before = d.reasons()["too_big"]
    assert d.run(big) == ("XDP_TX", want)
    assert d.reasons()["too_big"] == before + 1
    # without DF IPVS would fragment; XDP cannot: dropped, counted
    nodf = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP)
                 / TCP(sport=40003, dport=80, flags="S") / (b"x" * (1481 - 40)))
    assert d.run(nodf) == ("XDP_DROP", nodf)


def test_an_ipv6_packet_over_the_mtu_to_a_dr_real_is_answered_with_packet_too_big(d):
    d.macs[ipaddr("2001:db8:4::200")] = Hop(mac=mac_bytes(REAL_MAC), ifindex=7,
                                            smac=mac_bytes(DIRECTOR_MAC), slot=0, mtu=1280)
    d.ipvsadm("-C", f"-A -t [{VIP6}]:80 -s rr", f"-a -t [{VIP6}]:80 -r 2001:db8:4::200 -g")
    big = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IPv6(src=CLIENT6, dst=VIP6)
                / TCP(sport=40004, dport=80, flags="S") / (b"x" * 1300))
    quote = one_hop_less(big)[14:14 + 1232]
    want = bytes(Ether(src=DIRECTOR_MAC, dst=CLIENT_MAC) / IPv6(src=VIP6, dst=CLIENT6, hlim=64)
                 / ICMPv6PacketTooBig(mtu=1280) / Raw(quote))
    assert d.run(big) == ("XDP_TX", want)
