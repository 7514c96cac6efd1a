"""ICMP errors about connections, as IPVS sends them on (ip_vs_in_icmp,
ip_vs_out_icmp and their IPv6 twins), whole frames compared:
- an error from the client's side about a reply (a router's fragmentation
  needed or packet too big, the client's port unreachable) goes to the
  connection's real: NAT translated to the real's address and port, DR as
  the client's packets go;
- an error from the real's side about a NAT connection's packet to the real
  goes to the client, translated back to the VIP and the service's port.
The outer and quoted IPv4 header checksums, the ICMP checksum and the
quoted TCP checksum (where the quote holds it) are right afterwards. An
error creates and moves no connection; one that matches none goes on to the
kernel untouched."""

from __future__ import annotations

import ctypes

import pytest
from checks import reason_delta
from harness import CLIENT_MAC, DIRECTOR_MAC, REAL_MACS, ipaddr, mac_bytes
from natpackets import Nat, host, nat_director
from packets import forwarded_to
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lvsxdp.lab import run
from lvsxdp.plan import Hop

# Runs on each kernel of the matrix too (make test-kernels): the ICMP
# program's verifier acceptance is what differs.
pytestmark = pytest.mark.kernels

FAR = {4: "198.18.3.254", 6: "2001:db8:3::fe"}  # a router on the client's side
REAL_SIDE_ROUTER = {4: "198.18.2.254", 6: "2001:db8:2::fe"}


@pytest.fixture(scope="module")
def director():
    with nat_director("lxq") as d:
        yield d


def ip(src, dst, ttl=64, **kw):
    if ":" in dst:
        return IPv6(src=src, dst=dst, hlim=ttl)
    return IP(src=src, dst=dst, ttl=ttl, **kw)


def segment(src, dst, sport, dport, ttl=63, payload=b"") -> bytes:
    """An IP packet as a quote holds it."""
    return bytes(ip(src, dst, ttl, flags="DF") / TCP(sport=sport, dport=dport, flags="PA",
                                                        seq=100, ack=200) / payload)


def error(src, dst, quoted: bytes, kind: str = "unreach"):
    """An ICMP error from src to dst quoting `quoted` (IP and on)."""
    if ":" in dst:
        icmp = ICMPv6PacketTooBig(mtu=1280) if kind == "too big" else ICMPv6DestUnreach(code=4)
        return IPv6(src=src, dst=dst, hlim=64) / icmp / Raw(quoted)
    icmp = ICMP(type=3, code=4, nexthopmtu=1400) if kind == "too big" else ICMP(type=3, code=3)
    return IP(src=src, dst=dst, ttl=64) / icmp / Raw(quoted)


def one_hop_less(packet):
    packet = packet.copy()
    if IPv6 in packet:
        packet[IPv6].hlim -= 1
    else:
        packet[IP].ttl -= 1
    return packet


def in_stats(d, real: str):
    idx = ctypes.c_uint32(next(r.index for r in d.config.services[0].reals
                               if str(r.addr) == real))
    stats = d.maps.real_stats.lookup(idx)
    return (sum(s.conns for s in stats), sum(s.packets for s in stats),
            sum(s.out_packets for s in stats))


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_a_reals_port_unreachable_reaches_the_client_from_the_vip(director, family):
    nat = Nat(director, family)
    nat.from_client(40000, "S", True)
    conn = nat.conn(40000)
    before = in_stats(director, nat.real)
    # the real refuses the director's packet to it (client -> real:8080)
    refused = segment(nat.client, nat.real, 40000, 8080, payload=b"GET /")
    err = Ether(src=nat.real_mac, dst=DIRECTOR_MAC) / error(nat.real, nat.client, refused)
    # the client gets back the very packet it sent (to VIP:80), from the VIP
    sent = segment(nat.client, nat.vip, 40000, 80, payload=b"GET /")
    want = Ether(src=director.out_mac, dst=CLIENT_MAC) / one_hop_less(
        error(nat.vip, nat.client, sent))
    assert director.run(bytes(err)) == ("XDP_REDIRECT", bytes(want))
    # OutPkts as handle_response_icmp counts it; the connection as it was
    assert in_stats(director, nat.real) == (before[0], before[1], before[2] + 1)
    after = nat.conn(40000)
    assert (after.state, after.expires) == (conn.state, conn.expires)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_a_client_side_routers_too_big_reaches_the_real_translated(director, family):
    nat = Nat(director, family)
    v = 6 if family == "ipv6" else 4
    nat.from_client(40001, "S", True)
    nat.from_real(40001, "SA", True)
    conn = nat.conn(40001)
    before = in_stats(director, nat.real)
    reply = segment(nat.vip, nat.client, 80, 40001, payload=b"x" * 1300)
    real_sent = segment(nat.real, nat.client, 8080, 40001, payload=b"x" * 1300)
    # a router quotes the IPv4 header and 8 bytes (RFC 792), IPv6 the lot
    cut = 28 if v == 4 else len(reply)
    err = Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / error(FAR[v], nat.vip, reply[:cut],
                                                          "too big")
    want = Ether(src=DIRECTOR_MAC, dst=nat.real_mac) / one_hop_less(
        error(FAR[v], nat.real, real_sent[:cut], "too big"))
    assert director.run(bytes(err)) == ("XDP_TX", bytes(want))
    assert in_stats(director, nat.real) == (before[0], before[1] + 1, before[2])
    after = nat.conn(40001)
    assert (after.state, after.expires) == (conn.state, conn.expires)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_a_client_side_error_reaches_a_direct_routing_real_as_the_clients_packets_do(
        director, family):
    nat = Nat(director, family)
    director.ipvsadm("-C", f"-A -t {host(nat.vip)}:80 -s rr",
                     f"-a -t {host(nat.vip)}:80 -r {host(nat.real)} -g")
    v = 6 if family == "ipv6" else 4
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / ip(nat.client, nat.vip) /
                TCP(sport=40002, dport=80, flags="S"))
    assert director.run(syn) == ("XDP_TX", forwarded_to(syn, mac_bytes(nat.real_mac)))
    # the real answered the client directly, from the VIP; a router refused it
    reply = segment(nat.vip, nat.client, 80, 40002, payload=b"x" * 1300)
    err = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / error(FAR[v], nat.vip, reply,
                                                                "too big"))
    assert director.run(err) == ("XDP_TX", forwarded_to(err, mac_bytes(nat.real_mac)))


def test_errors_go_to_the_real_of_their_own_connection(director):
    nat = Nat(director, "ipv4")
    other = "198.18.2.200"
    director.ipvsadm(f"-a -t {nat.vip}:80 -r {other}:8080 -m")
    director.macs[ipaddr(other)] = mac_bytes(REAL_MACS[other])
    director.apply()
    reals = {}
    for sport in (40010, 40011):
        syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / ip(nat.client, nat.vip) /
                    TCP(sport=sport, dport=80, flags="S"))
        action, out = director.run(syn)
        assert action == "XDP_TX"
        reals[sport] = str(IP(out[14:]).dst)
    assert sorted(reals.values()) == sorted([nat.real, other])
    for sport, real in reals.items():
        reply = segment(nat.vip, nat.client, 80, sport)
        err = Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / error(FAR[4], nat.vip, reply[:28])
        want = Ether(src=DIRECTOR_MAC, dst=REAL_MACS[real]) / one_hop_less(
            error(FAR[4], real, segment(real, nat.client, 8080, sport)[:28]))
        assert director.run(bytes(err)) == ("XDP_TX", bytes(want))


@pytest.mark.parametrize("case", ["no connection", "expired", "echo", "quote of udp",
                                  "other port"])
def test_an_icmp_packet_of_no_connection_goes_on_to_the_kernel_and_makes_none(director, case):
    nat = Nat(director, "ipv4")
    nat.from_client(40020, "S", True)
    if case == "expired":
        conn = nat.conn(40020)
        conn.expires = 1
        director.maps.conns.update(nat.key(40020), conn)
    if case == "echo":
        packet = IP(src=nat.client, dst=nat.vip) / ICMP(type=8) / b"ping"
    elif case == "quote of udp":
        quoted = bytes(IP(src=nat.vip, dst=nat.client, ttl=63) /
                       Raw(bytes.fromhex("0050" "9c54" "0010" "0000")))
        packet = error(FAR[4], nat.vip, quoted[:9] + b"\x11" + quoted[10:])
    else:
        sport = 40021 if case == "other port" else 40020
        packet = error(FAR[4], nat.vip, segment(nat.vip, nat.client, 80, sport)[:28])
        if case == "no connection":
            packet = error(FAR[4], nat.vip, segment(nat.vip, "198.18.3.99", 80, 40020)[:28])
    frame = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / packet)
    conns = sorted(bytes(k) + bytes(v) for k, v in director.maps.conns.items())
    before = director.reasons()
    assert director.run(frame) == ("XDP_PASS", frame)
    assert reason_delta(before, director.reasons()) == {"not_tcp_udp": 1}
    assert sorted(bytes(k) + bytes(v) for k, v in director.maps.conns.items()) == conns


def test_icmpv6_informational_messages_go_on_to_the_kernel(director):
    nat = Nat(director, "ipv6")
    nat.from_client(40030, "S", True)
    frame = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) /
                  IPv6(src=nat.client, dst=nat.vip) / ICMPv6EchoRequest())
    assert director.run(frame) == ("XDP_PASS", frame)


def test_an_error_about_a_reply_with_no_hop_left_goes_to_the_kernel(director):
    nat = Nat(director, "ipv4")
    nat.from_client(40040, "S", True)
    reply = segment(nat.vip, nat.client, 80, 40040)
    err = IP(src=FAR[4], dst=nat.vip, ttl=1) / ICMP(type=3, code=3) / Raw(reply[:28])
    frame = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / err)
    before = director.reasons()
    assert director.run(frame) == ("XDP_PASS", frame)
    assert reason_delta(before, director.reasons()) == {"ttl_exceeded": 1}


# -- a reply too large for the way to its client -------------------------------

@pytest.fixture
def narrow_client_side(director):
    """The client side's MTU at 1400 for one test."""
    run(None, "ip", "link", "set", "lxnc", "mtu", "1400")
    try:
        yield 1400
    finally:
        run(None, "ip", "link", "set", "lxnc", "mtu", "1500")


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_a_reply_over_the_client_sides_mtu_is_answered_as_ip_forward_answers_it(
        director, narrow_client_side, family):
    """The kernel's forwarding checks the MTU before IPVS translates: the
    real gets fragmentation needed (DF) or packet too big, from the
    director's address toward it, quoting its reply as it came."""
    nat = Nat(director, family)
    director.macs[ipaddr(nat.real)] = Hop(mac=mac_bytes(nat.real_mac), ifindex=1,
                                          smac=mac_bytes(DIRECTOR_MAC), slot=0, mtu=1500,
                                          saddr=REAL_SIDE_ROUTER[6 if ":" in nat.real else 4])
    director.apply()
    nat.from_client(40050, "S", True)
    nat.from_real(40050, "SA", True)
    nat.from_client(40050, "A", True)
    conn = nat.conn(40050)
    big = bytes(Ether(src=nat.real_mac, dst=DIRECTOR_MAC)
                / ip(nat.real, nat.client, 64, flags="DF")
                / TCP(sport=8080, dport=40050, flags="PA") / (b"x" * 1410))
    src = REAL_SIDE_ROUTER[6 if ":" in nat.real else 4]
    if ":" in nat.real:
        err = IPv6(src=src, dst=nat.real, hlim=64) / ICMPv6PacketTooBig(mtu=1400) / Raw(
            big[14:14 + 1232])
    else:
        err = IP(src=src, dst=nat.real, tos=0xC0, id=0, ttl=64, proto=1) / ICMP(
            type=3, code=4, nexthopmtu=1400) / Raw(big[14:14 + 548])
    before = director.reasons()["too_big"]
    assert director.run(big) == ("XDP_TX", bytes(Ether(src=DIRECTOR_MAC, dst=nat.real_mac)
                                                 / err))
    assert director.reasons()["too_big"] == before + 1
    # dropped before IPVS saw it: the connection as it was
    after = nat.conn(40050)
    assert (after.state, after.expires) == (conn.state, conn.expires)
    # one that fits goes through
    fits = bytes(Ether(src=nat.real_mac, dst=DIRECTOR_MAC) / ip(nat.real, nat.client, 64)
                 / TCP(sport=8080, dport=40050, flags="PA") / (b"x" * 1300))
    assert director.run(fits)[0] == "XDP_REDIRECT"


def test_an_ipv4_reply_over_the_mtu_without_df_is_dropped_not_sent_untranslated(
        director, narrow_client_side):
    nat = Nat(director, "ipv4")
    nat.from_client(40051, "S", True)
    big = bytes(Ether(src=nat.real_mac, dst=DIRECTOR_MAC) / ip(nat.real, nat.client, 64)
                / TCP(sport=8080, dport=40051, flags="SA") / (b"x" * 1410))
    before = director.reasons()["too_big"]
    assert director.run(big) == ("XDP_DROP", big)
    assert director.reasons()["too_big"] == before + 1
