"""Persistence packet by packet: PCC (`-t VIP:0 -p`) as the seed configures
it, and what an operator checks around it - templates that expire, are
extended while they control connections, and re-armed by new ones; -M; wrr;
quiescent, unreachable and removed reals; UDP, IPv6, VLAN; and a service
without persistence for contrast.

Each test runs the real program (BPF_PROG_TEST_RUN) and compares the whole
output frame and the action.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import shlex
import time

import packets as P
import pytest
from checks import (
    expect_forwarded,
    expect_left_alone,
    real_ref,
    reset,
    rewrite,
    template_key,
    tuple_key,
)

from lvsxdp import iptables, ipvsadm, runtime, shared, snapshot
from lvsxdp.runtime import monotonic_ns

# Runs on each kernel of the matrix too (make test-kernels).
pytestmark = pytest.mark.kernels

VIP = P.VIP
R100, R200 = "198.18.2.100", "198.18.2.200"
ALICE, BOB, CAROL = "198.18.1.50", "198.18.1.51", "198.18.3.50"
NS = shared.NS
STEP = 120 * NS  # the seed's extension step
SEED_PCC = (
    f"-A -t {VIP}:0 -s rr -p 360",
    f"-a -t {VIP}:0 -r {R100} -g",
    f"-a -t {VIP}:0 -r {R200} -g",
)


@pytest.fixture
def d(director):
    reset(director)
    return director


@pytest.fixture
def pcc(d):
    d.ipvsadm(*SEED_PCC)
    return d


def only_template(d):
    tpls = d.templates()
    assert len(tpls) == 1, f"expected one template, found {len(tpls)}"
    return tpls[0]


# -- the seed's PCC ------------------------------------------------------------

def test_pcc_sends_every_port_of_a_client_to_one_real(pcc):
    for sport, dport in [(40001, 80), (40002, 22), (40003, 443), (40004, 8080), (40005, 3306)]:
        expect_forwarded(pcc, P.tcp(ALICE, sport, dport), R200)
    key, tpl = only_template(pcc)
    # `ipvsadm -L -c` shows it as TCP ALICE:0 VIP:0 -> R200:0
    assert bytes(key) == bytes(template_key(ALICE, VIP))
    assert tpl.real == real_ref(pcc, R200)
    assert len(pcc.conns()) == 5


def test_pcc_first_client_goes_to_the_most_recently_added_real(pcc):
    # IPVS adds a real at the head of the list and rr starts there: the seed
    # adds .100 then .200, and its client "stays on .200".
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)


def test_pcc_second_client_is_scheduled_round_robin_to_the_other_real(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    expect_forwarded(pcc, P.tcp(BOB, 40000, 80), R100)
    expect_forwarded(pcc, P.tcp(CAROL, 40000, 80), R200)
    # and each keeps its real on its other ports
    expect_forwarded(pcc, P.tcp(BOB, 40001, 22), R100)
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 22), R200)


def test_packets_of_an_established_connection_follow_the_connection(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "S"), R200)
    # Point the template elsewhere: packets of the connection still go where
    # the connection was scheduled, as IPVS looks up the connection first.
    rewrite(pcc.maps.templates, template_key(ALICE, VIP), real=real_ref(pcc, R100))
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "PA", payload=b"GET / HTTP/1.0\r\n\r\n"),
                     R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "FA"), R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)
    conn = pcc.maps.conns.lookup(tuple_key("tcp", ALICE, 40000, VIP, 80))
    assert (conn.real, conn.state) == (real_ref(pcc, R200), shared.S["FIN_WAIT"])


def test_non_syn_tcp_of_an_unknown_connection_is_passed_unchanged(pcc):
    for flags in ("A", "PA", "FA", "R", "SR"):
        expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, flags), "XDP_PASS", "not_syn")
    assert pcc.conns() == [] and pcc.templates() == []


# -- template lifetime ---------------------------------------------------------

def age_template(d, client, expires, ctl_until):
    rewrite(d.maps.templates, template_key(client, VIP), expires=expires, ctl_until=ctl_until)


def test_expired_template_is_rescheduled_to_the_next_real_round_robin(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    now = monotonic_ns()
    rewrite(pcc.maps.conns, tuple_key("tcp", ALICE, 40000, VIP, 80), expires=now - NS)
    age_template(pcc, ALICE, expires=now - NS, ctl_until=now - NS)

    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R100)
    _, tpl = only_template(pcc)
    assert tpl.real == real_ref(pcc, R100)
    assert tpl.created >= now
    # the old connection is gone too: its next ACK is not ours
    expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, "A"), "XDP_PASS", "not_syn")


def test_template_past_its_timeout_is_extended_while_it_controls_a_live_connection(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "S"), R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)  # ESTABLISHED: 900 s
    conn = pcc.maps.conns.lookup(tuple_key("tcp", ALICE, 40000, VIP, 80))
    _, tpl = only_template(pcc)
    assert tpl.ctl_until >= conn.expires  # the template knows its connection's life
    # the persistence timeout ran out 10 s ago; the connection lives on
    age_template(pcc, ALICE, expires=monotonic_ns() - 10 * NS, ctl_until=tpl.ctl_until)

    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "PA", payload=b"more"), R200)


def wait_for_clock_past(seconds: int) -> None:
    """The data plane's clock starts at boot: a timestamp `seconds` in the past
    exists only once the machine has been up that long (a fresh VM of the
    kernel matrix may not have been)."""
    short = seconds * NS - monotonic_ns()
    if short > 0:
        time.sleep(short / NS)


@pytest.mark.parametrize(("controlled_s", "age_s", "alive"), [
    (1, 119, True),     # last connection died 1 s in: one 120 s step
    (1, 121, False),
    (120, 119, True),   # died exactly at the first boundary: no second step
    (120, 121, False),
    (121, 239, True),   # died just after it: two steps
    (121, 241, False),
    (300, 359, True),   # ceil(300 / 120) = 3 steps
    (300, 361, False),
], ids=lambda v: str(v))
def test_extended_template_dies_at_the_first_120s_step_after_its_last_connection(
        pcc, controlled_s, age_s, alive):
    """IPVS re-arms a template whose timer fires while it controls
    connections (the seed: in 2-minute steps) and drops it at the first
    firing that finds none: alive until expires + k * 120 s, k the least
    with expires + k * 120 s >= ctl_until."""
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    wait_for_clock_past(age_s + 1)
    expires = monotonic_ns() - age_s * NS
    ctl_until = expires + controlled_s * NS
    rewrite(pcc.maps.conns, tuple_key("tcp", ALICE, 40000, VIP, 80), expires=ctl_until)
    age_template(pcc, ALICE, expires=expires, ctl_until=ctl_until)

    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R200 if alive else R100)
    _, tpl = only_template(pcc)
    assert tpl.real == real_ref(pcc, R200 if alive else R100)


def test_new_connection_rearms_the_template_to_now_plus_the_persistence_timeout(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    _, first = only_template(pcc)
    age_template(pcc, ALICE, expires=monotonic_ns() + 5 * NS, ctl_until=first.ctl_until)

    before = monotonic_ns()
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 22), R200)
    after = monotonic_ns()
    _, tpl = only_template(pcc)
    assert before + 360 * NS <= tpl.expires <= after + 360 * NS
    assert (tpl.real, tpl.created) == (first.real, first.created)
    conn = pcc.maps.conns.lookup(tuple_key("tcp", ALICE, 40001, VIP, 22))
    assert tpl.ctl_until >= conn.expires


# -- persistent netmask (-M) ---------------------------------------------------

def test_netmask_on_a_non_persistent_service_is_taken_and_does_nothing(d):
    # ipvsadm 1.31 takes it (ipvs-golden/06-errors.txt) and neither lists nor saves it
    d.ipvsadm(f"-A -t {VIP}:80 -s rr -M 255.255.255.0")
    [svc] = d.config.services
    assert (svc.persistent, svc.netmask) == (False, 32)
    d.ipvsadm("-C")
    expect_left_alone(d, P.tcp(ALICE, 40000, 80), "XDP_PASS", "no_service")


def test_pcc_with_netmask_sends_a_client_network_to_one_real(d):
    d.ipvsadm(f"-A -t {VIP}:0 -s rr -p 360 -M 255.255.255.0",
              f"-a -t {VIP}:0 -r {R100} -g", f"-a -t {VIP}:0 -r {R200} -g")
    expect_forwarded(d, P.tcp(ALICE, 40000, 80), R200)
    expect_forwarded(d, P.tcp(BOB, 40000, 443), R200)      # same /24 as ALICE
    expect_forwarded(d, P.tcp(CAROL, 40000, 80), R100)     # another /24
    expect_forwarded(d, P.tcp("198.18.1.254", 50000, 22), R200)
    keys = sorted(bytes(k) for k, _ in d.templates())
    assert keys == sorted([bytes(template_key("198.18.1.0", VIP)),
                           bytes(template_key("198.18.3.0", VIP))])


def test_ipv6_pcc_with_a_prefix_netmask_sends_a_client_network_to_one_real(d):
    vip = P.VIP6
    d.ipvsadm(f"-A -t [{vip}]:0 -s rr -p -M 64",
              f"-a -t [{vip}]:0 -r [2001:db8:2::100] -g",
              f"-a -t [{vip}]:0 -r [2001:db8:2::200] -g")
    expect_forwarded(d, P.tcp("2001:db8:1::50", 40000, 80, dst=vip), "2001:db8:2::200")
    expect_forwarded(d, P.tcp("2001:db8:1::ffff:51", 40000, 80, dst=vip), "2001:db8:2::200")
    expect_forwarded(d, P.tcp("2001:db8:1:1::50", 40000, 80, dst=vip), "2001:db8:2::100")
    assert sorted(bytes(k) for k, _ in d.templates()) == sorted(
        [bytes(template_key("2001:db8:1::", vip)), bytes(template_key("2001:db8:1:1::", vip))])


# -- wrr -----------------------------------------------------------------------

def ipvs_wrr(dests: list[tuple[str, int]], n: int) -> list[str]:
    """ip_vs_wrr_schedule() transcribed: the next n decisions over IPVS's
    destination list (newest first), from a freshly configured service
    (mark at the list head, cw = mw)."""
    head = -1
    weights = [w for _, w in dests]
    di = functools.reduce(math.gcd, [w for w in weights if w > 0], 0) or 1
    mw = max(weights, default=0) - (di - 1)
    cl, cw = head, mw
    out = []
    for _ in range(n):
        assert mw > 0, "no destination available"
        dest = last = cl
        stop = None
        last_pass = restarted = False
        found = None
        while found is None:
            for i in range(dest + 1, len(dests)):   # list_for_each_entry_continue
                if weights[i] >= cw:
                    found = i
                    break
                assert i != stop, "all destinations overloaded"
            if found is not None:
                break
            dest = head
            cw -= di
            if cw <= 0:
                cw = mw
                assert not (last_pass or last == head), "all destinations overloaded"
                restarted = True
            last_pass = cw <= di
            if last_pass and restarted and last != head:
                stop = last
        cl = found
        out.append(dests[found][0])
    return out


def test_wrr_model_gives_the_textbook_sequence():
    assert ipvs_wrr([("a", 3), ("b", 1)], 8) == ["a", "a", "a", "b"] * 2
    assert ipvs_wrr([("a", 4), ("b", 3), ("c", 2)], 9) == list("aababcabc")


@pytest.mark.parametrize("added", [
    [(R100, 3), (R200, 1)],
    [(R100, 1), (R200, 3)],
    [(R100, 4), ("198.18.2.150", 3), (R200, 2)],
    [(R100, 6), ("198.18.2.150", 4), (R200, 2)],   # gcd 2
    [(R100, 2), ("198.18.2.150", 0), (R200, 5)],   # a quiescent real
], ids=lambda a: "-".join(str(w) for _, w in a))
def test_wrr_sends_new_clients_in_ipvs_wrr_order(d, added):
    d.macs[ipaddress.ip_address("198.18.2.150")] = bytes.fromhex("020000000150")
    d.ipvsadm(f"-A -t {VIP}:0 -s wrr -p 360",
              *(f"-a -t {VIP}:0 -r {addr} -g -w {w}" for addr, w in added))
    clients = [f"198.18.{10 + i // 250}.{1 + i % 250}" for i in range(60)]
    want = ipvs_wrr(list(reversed(added)), len(clients))  # IPVS adds at the head
    for client, real in zip(clients, want, strict=True):
        expect_forwarded(d, P.tcp(client, 40000, 80), real)
    # each client stays where wrr put it
    for client, real in zip(clients[:10], want, strict=False):
        expect_forwarded(d, P.tcp(client, 40001, 443), real)


# -- reals that cannot take new work -------------------------------------------

def test_quiescent_real_keeps_its_clients_but_gets_no_new_ones(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    pcc.ipvsadm(f"-e -t {VIP}:0 -r {R200} -g -w 0")
    for i in range(4):
        expect_forwarded(pcc, P.tcp(f"198.18.4.{i + 1}", 40000, 80), R100)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)   # its connection
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R200)       # its template


def test_expire_quiescent_template_moves_clients_off_a_weight_0_real(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    pcc.ipvsadm(f"-e -t {VIP}:0 -r {R200} -g -w 0")
    pcc.config.settings.expire_quiescent_template = True   # the sysctl
    pcc.apply()
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)   # connections continue
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R100)
    assert pcc.maps.templates.lookup(template_key(ALICE, VIP)).real == real_ref(pcc, R100)
    # ip_vs_check_template: the old one moved to port 65535, listed until it ends
    old = template_key(ALICE, VIP)
    old.vport = shared.TPL_PORT_INVALID
    tpl = pcc.maps.templates.lookup(old)
    assert tpl.real == real_ref(pcc, R200) and tpl.flags & shared.TPL_F_INVALID
    assert len(pcc.templates()) == 2


def test_real_whose_mac_is_unknown_gets_no_new_clients_and_its_clients_move(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    del pcc.macs[ipaddress.ip_address(R200)]
    pcc.apply()
    for i in range(4):
        expect_forwarded(pcc, P.tcp(f"198.18.4.{i + 1}", 40000, 80), R100)
    # nowhere to send its open connection...
    expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, "A"), "XDP_DROP", "real_gone")
    # ...and its template is rescheduled
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R100)
    assert pcc.maps.templates.lookup(template_key(ALICE, VIP)).real == real_ref(pcc, R100)


def test_removed_real_drops_its_connections_and_its_clients_move_on_next_syn(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    expect_forwarded(pcc, P.tcp(BOB, 40000, 80), R100)
    pcc.ipvsadm(f"-d -t {VIP}:0 -r {R200}")
    for flags in ("A", "PA", "S"):
        expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, flags), "XDP_DROP", "real_gone")
    expect_forwarded(pcc, P.tcp(BOB, 40000, 80, "A"), R100)
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 80), R100)
    assert pcc.maps.templates.lookup(template_key(ALICE, VIP)).real == real_ref(pcc, R100)


def conn_lines(d) -> list[str]:
    """`ipvsadm -L -n -c` of the director, without its two title lines."""
    snap = snapshot.read(d.maps, d.config)
    out = ipvsadm.format_list(d.config, ipvsadm.parse(["-L", "-n", "-c"]), snap)
    return sorted(" ".join(line.split()[2:]) for line in out.splitlines()[2:])


def test_a_removed_real_stays_in_the_trash_and_its_connections_resume_when_added_back(pcc):
    """LVS-SEMANTICS: a real removed with -d keeps its address in -L -c, its
    connections' packets are dropped, its templates are re-keyed to port
    65535 when next used; added back, it is revived and they resume."""
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "S"), R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)
    pcc.ipvsadm(f"-d -t {VIP}:0 -r {R200}")
    expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, "PA"), "XDP_DROP", "real_gone")
    assert conn_lines(pcc) == [
        f"ASSURED {ALICE}:0 {VIP}:0 {R200}:0",
        f"ESTABLISHED {ALICE}:40000 {VIP}:80 {R200}:80",
    ]
    # a new connection of the client: a new template; the old one re-keyed
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R100)
    assert conn_lines(pcc) == sorted([
        f"ESTABLISHED {ALICE}:40000 {VIP}:80 {R200}:80",
        f"NONE {ALICE}:0 {VIP}:0 {R100}:0",
        f"SYN_RECV {ALICE}:40001 {VIP}:443 {R100}:443",
        f"ASSURED {ALICE}:0 {VIP}:65535 {R200}:65535",
    ])
    # -L -n shows only the service's reals
    out = ipvsadm.format_list(pcc.config, ipvsadm.parse(["-L", "-n"]),
                              snapshot.read(pcc.maps, pcc.config))
    assert R200 not in out

    pcc.ipvsadm(f"-a -t {VIP}:0 -r {R200} -g")  # back: revived from the trash
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "PA"), R200)  # resumes
    expect_forwarded(pcc, P.tcp(ALICE, 40002, 22), R100)  # the client's new template holds
    assert pcc.config.trash == []


def test_expire_nodest_conn_forgets_the_connection_of_a_removed_real(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80), R200)
    pcc.ipvsadm(f"-d -t {VIP}:0 -r {R200}")
    pcc.config.settings.expire_nodest_conn = True   # the sysctl
    pcc.apply()
    expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, "A"), "XDP_DROP", "real_gone")
    assert pcc.maps.conns.lookup(tuple_key("tcp", ALICE, 40000, VIP, 80)) is None
    # the client's retransmitted SYN is then a new connection
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "S"), R100)


# -- other kinds of service and frame ------------------------------------------

def test_udp_pcc_sends_every_port_of_a_client_to_one_real(d):
    d.ipvsadm(f"-A -u {VIP}:0 -s rr -p", f"-a -u {VIP}:0 -r {R100} -g",
              f"-a -u {VIP}:0 -r {R200} -g")
    for sport, dport in [(5353, 53), (40000, 123), (40001, 5000), (5353, 53)]:
        expect_forwarded(d, P.udp(ALICE, sport, dport), R200)
    expect_forwarded(d, P.udp(BOB, 5353, 53), R100)
    assert sorted(bytes(k) for k, _ in d.templates()) == sorted(
        [bytes(template_key(ALICE, VIP, proto="udp")), bytes(template_key(BOB, VIP, proto="udp"))])
    assert {c.state for _, c in d.conns()} == {shared.S["UDP"]}
    # a TCP packet to the VIP is no UDP service's business
    expect_left_alone(d, P.tcp(ALICE, 40000, 80), "XDP_PASS", "no_service")


def test_ipv6_pcc_sends_every_port_of_a_client_to_one_real(d):
    vip = P.VIP6
    d.ipvsadm(f"-A -t [{vip}]:0 -s rr -p 360",
              f"-a -t [{vip}]:0 -r [2001:db8:2::100] -g",
              f"-a -t [{vip}]:0 -r [2001:db8:2::200] -g")
    alice, bob = "2001:db8:1::50", "2001:db8:1::51"
    for sport, dport in [(40001, 80), (40002, 22), (40003, 443)]:
        expect_forwarded(d, P.tcp(alice, sport, dport, dst=vip), "2001:db8:2::200")
    expect_forwarded(d, P.tcp(alice, 40001, 80, "A", dst=vip), "2001:db8:2::200")
    expect_forwarded(d, P.tcp(bob, 40001, 80, dst=vip), "2001:db8:2::100")
    assert sorted(bytes(k) for k, _ in d.templates()) == sorted(
        [bytes(template_key(alice, vip)), bytes(template_key(bob, vip))])


def test_ftp_rule_sends_passive_data_to_the_real_of_the_clients_control(d):
    """A persistent -t VIP:21 service also takes the VIP's TCP to port 20 and
    to unprivileged ports that no service of their own takes (passive data),
    with one template per client keyed as PCC's, <tcp, client, VIP, 0>."""
    d.ipvsadm(f"-A -t {VIP}:21 -s rr -p 360", f"-a -t {VIP}:21 -r {R100} -g",
              f"-a -t {VIP}:21 -r {R200} -g")
    expect_forwarded(d, P.tcp(ALICE, 40000, 21), R200)
    for i, dport in enumerate((2050, 20, 1024, 65535)):
        expect_forwarded(d, P.tcp(ALICE, 40001 + i, dport), R200)
    expect_forwarded(d, P.tcp(BOB, 40000, 2100), R100)   # data first: scheduled, same rule
    expect_forwarded(d, P.tcp(BOB, 40001, 21), R100)
    assert sorted(bytes(k) for k, _ in d.templates()) == sorted(
        [bytes(template_key(ALICE, VIP)), bytes(template_key(BOB, VIP))])
    assert len(d.conns()) == 7
    # privileged ports other than 20 are not FTP data, UDP never is
    expect_left_alone(d, P.tcp(ALICE, 40010, 22), "XDP_PASS", "no_service")
    expect_left_alone(d, P.tcp(ALICE, 40011, 1023), "XDP_PASS", "no_service")
    expect_left_alone(d, P.udp(ALICE, 40012, 2050), "XDP_PASS", "no_service")
    # a service of the port's own comes first
    d.ipvsadm(f"-A -t {VIP}:8080 -s rr", f"-a -t {VIP}:8080 -r {R100} -g")
    expect_forwarded(d, P.tcp(ALICE, 40013, 8080), R100)
    assert len(d.templates()) == 2


def test_vlan_tag_is_kept_in_the_forwarded_frame(pcc):
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "S", vlan=7), R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A", vlan=7), R200)
    # the tag is not part of the connection: untagged packets of it follow
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "PA", payload=b"x"), R200)
    assert len(pcc.conns()) == 1


def test_non_persistent_service_balances_connections_round_robin_without_templates(d):
    d.ipvsadm(f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {R100} -g",
              f"-a -t {VIP}:80 -r {R200} -g")
    for i, real in enumerate([R200, R100, R200, R100, R200]):
        expect_forwarded(d, P.tcp(ALICE, 40000 + i, 80), real)
    expect_forwarded(d, P.tcp(ALICE, 40000, 80, "A"), R200)
    expect_forwarded(d, P.tcp(ALICE, 40001, 80, "A"), R100)
    assert d.templates() == []
    assert len(d.conns()) == 5
    # only port 80 is this service's
    expect_left_alone(d, P.tcp(ALICE, 40000, 22), "XDP_PASS", "no_service")


def test_full_size_frame_is_forwarded_byte_for_byte(pcc):
    payload = bytes(range(256)) * 5 + bytes(180)   # a 1514-byte frame
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "S"), R200)
    frame = P.tcp(ALICE, 40000, 80, "PA", payload=payload)
    assert len(frame) == 1514
    expect_forwarded(pcc, frame, R200)


def test_a_removed_services_address_stays_known_while_its_connections_may_live(pcc):
    """A SYN to no VIP is turned away before the connection tables are read;
    a deleted service's VIP is still one while its reals sit in the trash:
    its connections' packets, a retransmitted SYN too, meet the trash rule
    (dropped) and are not passed as to no service."""
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "S"), R200)
    expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, "S", dst="198.18.2.9"), "XDP_PASS",
                      "no_service")
    pcc.ipvsadm(f"-D -t {VIP}:0")
    for flags in ("S", "A"):
        expect_left_alone(pcc, P.tcp(ALICE, 40000, 80, flags), "XDP_DROP", "real_gone")
    expect_left_alone(pcc, P.tcp(BOB, 40000, 80, "S"), "XDP_PASS", "no_service")


def test_a_mark_service_in_the_trash_keeps_its_connections_on_any_address(d):
    """With a firewall-mark service any address can be a service's: the VIP
    set cannot turn a SYN away, also after the service was removed."""
    rules = iptables.parse(shlex.split("-t mangle -A PREROUTING -d 198.18.2.9 -p tcp "
                                       "--dport 80 -j MARK --set-mark 5")).rules
    runtime.apply_marks(d.maps, iptables.compile_rules(rules, "eth0"))
    d.ipvsadm("-A -f 5 -s rr -p", f"-a -f 5 -r {R100} -g")
    expect_forwarded(d, P.tcp(ALICE, 40000, 80, "S", dst="198.18.2.9"), R100)
    d.ipvsadm("-D -f 5")
    expect_left_alone(d, P.tcp(ALICE, 40000, 80, "S", dst="198.18.2.9"), "XDP_DROP", "real_gone")
