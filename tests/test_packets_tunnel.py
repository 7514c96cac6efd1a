"""Tunnelling (-i) through the program, whole frames compared: IPIP for
IPv4, ip6ip6 for IPv6, GUE (UDP to --tun-port, a 4-byte GUE header) and GRE
(a GRE header naming the inner protocol) with and without their checksums,
which scapy computes afresh; the outer header from the director's address on
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
from scapy.layers.l2 import GRE, Dot1Q, Ether
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


def outer_ip(vip: str, src: str, real: str, **kw):
    return IPv6(src=src, dst=real, hlim=63, **kw) if ":" in vip else \
        IP(src=src, dst=real, ttl=63, id=0, **kw)


@pytest.mark.parametrize("csum", ("--tun-nocsum", "--tun-csum", "--tun-remcsum"))
@pytest.mark.parametrize("client,vip,real,src", [(CLIENT, VIP, REAL, TUN_SRC),
                                                  (CLIENT6, VIP6, REAL6, TUN_SRC6)],
                         ids=("ipv4", "ipv6"))
def test_gre_names_the_inner_protocol_and_checksums_with_tun_csum(d, csum, client, vip, real,
                                                                   src):
    """ipvs_gre_encap: flags and protocol, and with --tun-csum the C bit and
    the checksum over the GRE header and the inner packet; no key, no
    sequence number. IPVS's GRE ignores --tun-remcsum: no checksum."""
    configure(d, vip, real, f"--tun-type gre {csum}")
    ip = IPv6(src=client, dst=vip) if ":" in vip else IP(src=client, dst=vip)
    # an odd length: the checksum's last word is padded
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / ip
                / TCP(sport=40005, dport=80, flags="S") / b"odd")
    gre = GRE(proto=0x86DD if ":" in vip else 0x0800, chksum_present=csum == "--tun-csum")
    want = bytes(Ether(src=DIRECTOR_MAC, dst=REAL_MAC) / outer_ip(vip, src, real) / gre
                 / Raw(one_hop_less(syn)[14:]))
    got = d.run(syn)
    assert got == ("XDP_TX", want)
    outer = IPv6(got[1][14:]) if ":" in vip else IP(got[1][14:])
    assert outer[GRE].chksum_present == (csum == "--tun-csum")
    assert (outer.nh if ":" in vip else outer.proto) == 47


def test_gue_with_tun_remcsum_checksums_as_tun_csum_does(d):
    """IPVS adds GUE's remote checksum option only to a packet whose inner
    checksum is left to the hardware; a forwarded one has it complete and
    goes with the UDP checksum, as with --tun-csum."""
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP)
                / TCP(sport=40006, dport=80, flags="S") / b"data")
    configure(d, VIP, REAL, "--tun-type gue --tun-port 6080 --tun-csum")
    with_csum = d.run(syn)
    configure(d, VIP, REAL, "--tun-type gue --tun-port 6080 --tun-remcsum")
    assert d.run(syn) == with_csum
    udp = UDP(sport=gue_sport(CLIENT, 40006, VIP, 80), dport=6080)
    want = bytes(Ether(src=DIRECTOR_MAC, dst=REAL_MAC) / outer_ip(VIP, TUN_SRC, REAL) / udp
                 / Raw(bytes([0, 4, 0, 0]) + one_hop_less(syn)[14:]))
    assert with_csum == ("XDP_TX", want)


@pytest.mark.parametrize("tunnel", ("--tun-type gue --tun-port 6080 --tun-csum",
                                    "--tun-type gre --tun-csum"), ids=("gue", "gre"))
@pytest.mark.parametrize("size", (5, 6, 1201, 1438, 1439))
def test_a_udp_datagram_without_checksum_is_read_for_the_tunnels_checksum(d, tunnel, size):
    """Its headers give no sum of the payload: the program reads it, every
    length modulo 8 to the last odd byte, not the Ethernet padding after a
    short one, and the outer checksum is as IPVS computes it."""
    payload = bytes((i * 7 + size) & 0xFF for i in range(size))
    dgram = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP, flags="DF")
                  / UDP(sport=40007, dport=80, chksum=0) / payload)
    padding = b"\xa5" * max(0, 60 - len(dgram))
    d.ipvsadm("-C", f"-A -u {VIP}:80 -s rr", f"-a -u {VIP}:80 -r {REAL} -i {tunnel}")
    inner = Raw(one_hop_less(dgram)[14:])
    if "gue" in tunnel:
        encap = UDP(sport=gue_sport(CLIENT, 40007, VIP, 80, proto=17), dport=6080) \
            / Raw(bytes([0, 4, 0, 0]))
    else:
        encap = GRE(proto=0x0800, chksum_present=1)
    want = bytes(Ether(src=DIRECTOR_MAC, dst=REAL_MAC)
                 / outer_ip(VIP, TUN_SRC, REAL, flags="DF") / encap / inner)
    # the padding stays behind the outer packet, outside its length
    assert d.run(dgram + padding) == ("XDP_TX", want + padding)


def test_gre_moves_the_vlan_tag_to_the_front(d):
    configure(d, VIP6, REAL6, "--tun-type gre --tun-csum")
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / Dot1Q(vlan=12, prio=3)
                / IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=40008, dport=80, flags="S"))
    inner = one_hop_less(syn)[18:]
    want = bytes(Ether(src=DIRECTOR_MAC, dst=REAL_MAC) / Dot1Q(vlan=12, prio=3)
                 / outer_ip(VIP6, TUN_SRC6, REAL6) / GRE(proto=0x86DD, chksum_present=1)
                 / Raw(inner))
    assert d.run(syn) == ("XDP_TX", want)


def test_the_mtu_leaves_room_for_gre_and_its_checksum(d):
    """__ip_vs_get_out_rt: the MTU less the outer header and gre_calc_hlen."""
    for tunnel, room in (("--tun-type gre --tun-nocsum", 24), ("--tun-type gre --tun-csum", 28)):
        configure(d, VIP, REAL, tunnel)
        fits = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP, flags="DF")
                     / TCP(sport=40009, dport=80, flags="S") / (b"x" * (1500 - room - 40)))
        assert d.run(fits)[0] == "XDP_TX"
        big = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP, flags="DF")
                    / TCP(sport=40010, dport=80, flags="S") / (b"x" * (1501 - room - 40)))
        action, out = d.run(big)
        assert action == "XDP_TX" and ICMP in Ether(out)
        assert Ether(out)[ICMP].nexthopmtu == 1500 - room, tunnel


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
