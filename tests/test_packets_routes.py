"""Direct routing the way the kernel routes to the real: a real behind the
receiving interface takes XDP_TX, one behind another served interface is
redirected into tx_ports with that interface's MAC as the source, a packet
larger than the egress MTU is never sent (counted too_big), and a real no
served interface reaches gets no work.

BPF_PROG_TEST_RUN runs the program on the loopback device (ingress ifindex
1): a real whose egress is ifindex 1 is "behind the receiving interface".
A redirect is reported as XDP_REDIRECT with the rewritten frame; the
kernel does not send it in this mode."""

from __future__ import annotations

import ctypes

import pytest
from harness import Director, ipaddr, mac_bytes
from packets import VIP, VIP6, forwarded_to, one_hop_less, tcp

from lvsxdp.plan import Hop

REAL = "198.18.2.100"
REAL6 = "2001:db8:2::100"
REAL_MAC = mac_bytes("02:00:00:00:01:00")
EGRESS_MAC = mac_bytes("02:00:00:00:00:02")  # the real-facing interface's
EGRESS_IFINDEX = 7  # any interface but the receiving one (lo, 1)
SLOT = 1


@pytest.fixture
def d():
    d = Director()
    # slot 1 of tx_ports: an interface that exists here (the kernel checks)
    d.maps.tx_ports.update(ctypes.c_uint32(SLOT), ctypes.c_uint32(1))
    yield d
    d.close()


def behind_another_interface(d: Director, addr: str, mtu: int = 1500) -> None:
    d.macs[ipaddr(addr)] = Hop(mac=REAL_MAC, ifindex=EGRESS_IFINDEX, smac=EGRESS_MAC,
                               slot=SLOT, mtu=mtu)


def redirected_to(frame: bytes) -> bytes:
    return REAL_MAC + EGRESS_MAC + one_hop_less(frame)[12:]


def test_a_real_behind_the_receiving_interface_takes_xdp_tx(d):
    d.ipvsadm(f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {REAL}:80 -g")
    frame = tcp("198.18.2.50", 40000, 80)
    assert d.run(frame) == ("XDP_TX", forwarded_to(frame, REAL_MAC))


@pytest.mark.parametrize("client,vip,real", [("198.18.2.50", VIP, REAL),
                                             ("2001:db8:2::50", VIP6, REAL6)])
def test_a_real_behind_another_interface_is_redirected_from_that_interfaces_mac(
        d, client, vip, real):
    behind_another_interface(d, real)
    host = f"[{vip}]" if ":" in vip else vip
    d.ipvsadm(f"-A -t {host}:80 -s rr", f"-a -t {host}:80 -r {real} -g")
    syn = tcp(client, 40000, 80, dst=vip)
    assert d.run(syn) == ("XDP_REDIRECT", redirected_to(syn))
    # the connection's next packets go the same way
    ack = tcp(client, 40000, 80, flags="A", dst=vip, payload=b"GET /")
    assert d.run(ack) == ("XDP_REDIRECT", redirected_to(ack))
    real_entry = next(r for _, r in d.maps.reals.used() if r.flags)
    assert (real_entry.ifindex, real_entry.tx_slot, bytes(real_entry.smac)) == (
        EGRESS_IFINDEX, SLOT, EGRESS_MAC)


def test_a_packet_larger_than_the_egress_mtu_is_never_sent_and_is_counted(d):
    behind_another_interface(d, REAL, mtu=100)
    d.ipvsadm(f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {REAL} -g")
    fits = tcp("198.18.2.50", 40000, 80, payload=b"x" * (100 - 40))  # IP length 100
    assert d.run(fits) == ("XDP_REDIRECT", redirected_to(fits))
    big = tcp("198.18.2.50", 40000, 80, flags="A", payload=b"x" * (101 - 40))
    action, out = d.run(big)
    assert (action, out) == ("XDP_DROP", big)
    assert d.reasons()["too_big"] == 1


def test_the_mtu_is_not_checked_when_the_frame_leaves_by_the_interface_it_came_in_on(d):
    # the receiving interface held the frame (a one-NIC director's path)
    d.macs[ipaddr(REAL)] = Hop(mac=REAL_MAC, ifindex=1, smac=EGRESS_MAC, slot=0, mtu=100)
    d.ipvsadm(f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {REAL} -g")
    big = tcp("198.18.2.50", 40000, 80, payload=b"x" * 200)
    assert d.run(big) == ("XDP_TX", redirected_to(big))
    assert d.reasons()["too_big"] == 0


def test_a_real_no_served_interface_reaches_gets_no_connection(d):
    d.macs[ipaddr(REAL)] = Hop(mac=None, ifindex=9, unreachable="routed via eth9, which "
                               "lvsxdp does not serve")
    d.macs[ipaddr("198.18.2.200")] = Hop(mac=REAL_MAC, ifindex=1,
                                         smac=mac_bytes("02:00:00:00:00:01"), mtu=1500)
    d.ipvsadm(f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {REAL} -g",
              f"-a -t {VIP}:80 -r 198.18.2.200 -g")
    for port in range(40000, 40004):
        frame = tcp("198.18.2.50", port, 80)
        assert d.run(frame) == ("XDP_TX", forwarded_to(frame, REAL_MAC))
    d.ipvsadm(f"-d -t {VIP}:80 -r 198.18.2.200")
    frame = tcp("198.18.2.51", 40000, 80)
    assert d.run(frame) == ("XDP_DROP", frame)
    assert d.reasons()["no_real"] == 1
