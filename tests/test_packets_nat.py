"""NAT (-m) through the program, whole frames compared: the client's packet
goes to the real's address and port, one hop less, checksums right; the
real's reply comes back from the VIP and the service's port, to the client
by the kernel's route (bpf_fib_lookup), out of the interface that route
names (a redirect). IPv4 and IPv6, TCP and UDP.

The FIB the program asks is the one of a network namespace this module
enters and removes (natpackets.nat_director)."""

from __future__ import annotations

import ctypes

import pytest
from harness import CLIENT_MAC, DIRECTOR_MAC
from natpackets import (
    CLIENT,
    CLIENT6,
    REAL,
    REAL6,
    REAL_MAC,
    REAL_MAC6,
    VIP,
    VIP6,
    frame,
    host,
    nat_director,
)
from scapy.layers.inet import TCP, UDP

# Runs on each kernel of the matrix too (make test-kernels): bpf_fib_lookup
# and the tail-called programs are what differ.
pytestmark = pytest.mark.kernels


@pytest.fixture(scope="module")
def d():
    with nat_director() as d:
        yield d


FAMILIES = [(CLIENT, VIP, REAL, REAL_MAC), (CLIENT6, VIP6, REAL6, REAL_MAC6)]


@pytest.mark.parametrize("client,vip,real,real_mac", FAMILIES, ids=("ipv4", "ipv6"))
def test_a_connection_goes_to_the_reals_port_and_its_replies_come_back_from_the_vip(
        d, client, vip, real, real_mac):
    d.ipvsadm("-C", f"-A -t {host(vip)}:80 -s rr",
              f"-a -t {host(vip)}:80 -r {host(real)}:8080 -m")
    syn = frame(client, vip, TCP(sport=40000, dport=80, flags="S", seq=7))
    assert d.run(syn) == ("XDP_TX", frame(client, real, TCP(sport=40000, dport=8080, flags="S",
                                                             seq=7),
                                           src_mac=DIRECTOR_MAC, dst_mac=real_mac, ttl=63))
    # the real answers its gateway; the client gets it from VIP:80, by its route
    synack = frame(real, client, TCP(sport=8080, dport=40000, flags="SA", seq=9, ack=8),
                   src_mac=real_mac)
    assert d.run(synack) == ("XDP_REDIRECT", frame(
        vip, client, TCP(sport=80, dport=40000, flags="SA", seq=9, ack=8),
        src_mac=d.out_mac, dst_mac=CLIENT_MAC, ttl=63))
    ack = frame(client, vip, TCP(sport=40000, dport=80, flags="A", seq=8, ack=10) / b"GET /")
    assert d.run(ack) == ("XDP_TX", frame(
        client, real, TCP(sport=40000, dport=8080, flags="A", seq=8, ack=10) / b"GET /",
        src_mac=DIRECTOR_MAC, dst_mac=real_mac, ttl=63))
    # InPkts and OutPkts, as ipvsadm --stats shows them
    idx = ctypes.c_uint32(d.config.services[0].reals[0].index)
    stats = d.maps.real_stats.lookup(idx)
    assert (sum(s.packets for s in stats), sum(s.out_packets for s in stats)) == (2, 1)
    assert sum(s.out_bytes for s in stats) == len(synack) - 14


@pytest.mark.parametrize("udp_check", (None, 0), ids=("with-checksum", "without-checksum"))
def test_udp_keeps_a_missing_ipv4_checksum_missing(d, udp_check):
    d.ipvsadm("-C", f"-A -u {VIP}:53 -s rr", f"-a -u {VIP}:53 -r {REAL}:5353 -m")
    sport = 40001 if udp_check is None else 40011
    query = frame(CLIENT, VIP, UDP(sport=sport, dport=53, chksum=udp_check) / b"q")
    want = frame(CLIENT, REAL, UDP(sport=sport, dport=5353, chksum=udp_check) / b"q",
                 src_mac=DIRECTOR_MAC, dst_mac=REAL_MAC, ttl=63)
    assert d.run(query) == ("XDP_TX", want)
    answer = frame(REAL, CLIENT, UDP(sport=5353, dport=sport, chksum=udp_check) / b"a",
                   src_mac=REAL_MAC)
    assert d.run(answer) == ("XDP_REDIRECT", frame(
        VIP, CLIENT, UDP(sport=53, dport=sport, chksum=udp_check) / b"a", src_mac=d.out_mac,
        dst_mac=CLIENT_MAC, ttl=63))


def test_a_real_without_a_port_keeps_the_one_the_client_asked_for(d):
    # a port-0 service with a real of port 0: ip_vs_sched_persist keeps the port
    d.ipvsadm("-C", f"-A -t {VIP}:0 -s rr -p 60", f"-a -t {VIP}:0 -r {REAL}:0 -m")
    for port in (22, 443):
        syn = frame(CLIENT, VIP, TCP(sport=40002, dport=port, flags="S"))
        assert d.run(syn) == ("XDP_TX", frame(CLIENT, REAL, TCP(sport=40002, dport=port,
                                                                  flags="S"),
                                               src_mac=DIRECTOR_MAC, dst_mac=REAL_MAC, ttl=63))


def test_a_packet_from_a_real_that_is_no_reply_goes_on_to_the_kernel(d):
    d.ipvsadm("-C", f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {REAL}:8080 -m")
    before = d.reasons()["no_service"]
    stray = frame(REAL, CLIENT, TCP(sport=8080, dport=40003, flags="SA"), src_mac=REAL_MAC)
    assert d.run(stray) == ("XDP_PASS", stray)
    assert d.reasons()["no_service"] == before + 1
