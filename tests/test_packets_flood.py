"""Spoofed SYN floods of 10x the tables against established connections
and their templates, packet by packet (the small version of tools/flood.py,
which does it to real TCP clients of a lab director).

An established connection and an ASSURED template live in the held tables,
which never evict; a flood only churns the embryonic ones. What a flood can
do is fill the held tables (a SYN then a blind ACK makes an established
connection, in IPVS too); a connection established after that stays
embryonic, counted as held_full, and is still forwarded.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct

import packets as P
import pytest
from checks import mac_of, real_ref, reset, template_key
from harness import scaled

from lvsxdp import shared

pytestmark = pytest.mark.kernels

VIP = P.VIP
R100, R200 = "198.18.2.100", "198.18.2.200"
HELD = max(64, scaled(256))  # --conns and --templates under test (64 in the VMs)
CLIENTS = [f"198.18.1.{50 + i}" for i in range(8)]
PER_CLIENT = 4
FLOOD_NET = int(ipaddress.ip_address("198.19.0.0"))
SYN, ACK = 0x02, 0x10


def frame(src: int, sport: int, flags: int, seq: int) -> bytes:
    """Ethernet/IPv4/TCP to VIP:80 (struct, not scapy: a flood is many)."""
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, 1 if flags & ACK else 0, 5 << 4, flags,
                      64240, 0, 0)
    hdr = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src,
                      int(ipaddress.ip_address(VIP)))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]
    mac = bytes.fromhex(P.DIRECTOR_MAC.replace(":", ""))
    return mac + bytes.fromhex(P.CLIENT_MAC.replace(":", "")) + b"\x08\x00" + hdr + tcp


def flood(d, pattern: str, flows: int, seed: int) -> dict[str, int]:
    rnd = random.Random(seed)
    actions: dict[str, int] = {}
    for f in range(flows):
        src, sport, seq = FLOOD_NET + f, rnd.randrange(1024, 65536), rnd.getrandbits(31)
        sends = [SYN] + {"syn": [], "syn2": [SYN], "synack": [ACK]}[pattern]
        for flags in sends:
            act, _ = d.run(frame(src, sport, flags, seq + (flags == ACK)))
            actions[act] = actions.get(act, 0) + 1
    return actions


@pytest.fixture(scope="module")
def small():
    from harness import Director  # noqa: PLC0415

    d = Director(conn_max=HELD, tpl_max=HELD)
    yield d
    d.close()


@pytest.fixture
def pcc(small):
    reset(small)
    small.ipvsadm(f"-A -t {VIP}:0 -s rr -p 360", f"-a -t {VIP}:0 -r {R100} -g",
                  f"-a -t {VIP}:0 -r {R200} -g")
    return small


def establish(d) -> dict[tuple[str, int], str]:
    """Each client's connections (SYN, then the handshake's ACK): the real
    each went to."""
    real_of = {}
    for i, client in enumerate(CLIENTS):
        for j in range(PER_CLIENT):
            port = 40000 + i * 10 + j
            act, out = d.run(P.tcp(client, port, 80, "S"))
            assert act == "XDP_TX"
            real = d.real_of_mac(out[:6])
            assert d.run(P.tcp(client, port, 80, "A")) == (
                "XDP_TX", P.forwarded_to(P.tcp(client, port, 80, "A"), mac_of(d, real)))
            real_of[(client, port)] = real
    return real_of


def held_counts(d) -> tuple[int, int]:
    return len(d.maps.conns.v4.used()), len(d.maps.templates.held.used())


@pytest.mark.parametrize("pattern", ["syn", "syn2", "synack"])
def test_a_flood_of_10x_the_tables_keeps_every_established_connection_and_template(
        pcc, pattern):
    real_of = establish(pcc)
    assert held_counts(pcc) == (len(real_of), len(CLIENTS))
    tpl_real = {c: pcc.maps.templates.lookup(template_key(c, VIP)).real for c in CLIENTS}
    for t in pcc.maps.templates.held.items():
        assert t[1].flags & shared.TPL_F_ASSURED

    flood(pcc, pattern, 10 * 2 * HELD, seed=len(pattern))

    for (client, port), real in real_of.items():
        segment = P.tcp(client, port, 80, "PA", payload=b"GET / HTTP/1.1\r\n\r\n")
        assert pcc.run(segment) == ("XDP_TX", P.forwarded_to(segment, mac_of(pcc, real))), \
            f"{client}:{port} lost its connection to {real}"
    for client in CLIENTS:
        assert pcc.maps.templates.lookup(template_key(client, VIP)).real == tpl_real[client]
        # a new connection of the client follows its template
        syn = P.tcp(client, 50000, 80, "S")
        real = real_of[(client, 40000 + CLIENTS.index(client) * 10)]
        assert pcc.run(syn) == ("XDP_TX", P.forwarded_to(syn, mac_of(pcc, real)))
        assert tpl_real[client] == real_ref(pcc, real)
    # a client never seen before is still served
    syn = P.tcp("198.18.3.77", 1234, 80, "S")
    assert pcc.run(syn)[0] == "XDP_TX"


def test_with_the_held_tables_full_a_new_connection_stays_embryonic_and_is_forwarded(pcc):
    real_of = establish(pcc)
    before = pcc.reasons()["held_full"]
    flood(pcc, "synack", 4 * HELD, seed=7)  # blind ACKs fill the held tables
    assert held_counts(pcc)[0] == HELD  # (templates settle with their connection)
    for (client, port), real in real_of.items():
        ack = P.tcp(client, port, 80, "A")
        assert pcc.run(ack) == ("XDP_TX", P.forwarded_to(ack, mac_of(pcc, real)))

    late = "198.18.3.90"
    act, out = pcc.run(P.tcp(late, 3000, 80, "S"))
    assert act == "XDP_TX"
    real = pcc.real_of_mac(out[:6])
    ack = P.tcp(late, 3000, 80, "A")
    assert pcc.run(ack) == ("XDP_TX", P.forwarded_to(ack, mac_of(pcc, real)))
    assert pcc.reasons()["held_full"] > before
    key = shared.Conn4Key()
    key.caddr = int.from_bytes(ipaddress.ip_address(late).packed, "little")
    key.vaddr = int.from_bytes(ipaddress.ip_address(VIP).packed, "little")
    key.cport, key.vport, key.proto = socket.htons(3000), socket.htons(80), 6
    assert pcc.maps.conns.new4.lookup(key).state == shared.S["ESTABLISHED"]
    assert pcc.maps.conns.v4.lookup(key) is None
    data = P.tcp(late, 3000, 80, "PA", payload=b"x")
    assert pcc.run(data) == ("XDP_TX", P.forwarded_to(data, mac_of(pcc, real)))
