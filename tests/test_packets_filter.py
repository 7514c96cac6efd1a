"""The "may be present" filters in front of the connection and template
tables (bpf/filter.h, lvsxdp/filter.py): the data plane stores a key's byte
where user space's hash says it is, packets trust a 0 (they read no table),
a rebuild of one generation while packets read both forgets deleted keys
once both were rebuilt and keeps present ones, and a filter of all 1s (made
next to tables it knows nothing of) has every table read."""

from __future__ import annotations

import packets as P
import pytest
from checks import expect_forwarded, expect_left_alone, real_ref, reset, template_key, tuple_key

from lvsxdp import filter as filter_
from lvsxdp import shared
from lvsxdp.runtime import monotonic_ns

VIP, VIP6 = P.VIP, P.VIP6
R100, R200 = "198.18.2.100", "198.18.2.200"
ALICE, ALICE6 = "198.18.1.50", "2001:db8:1::50"
CONNS, TEMPLATES = shared.FILTER_CONNS, shared.FILTER_TEMPLATES


@pytest.fixture
def pcc(director):
    reset(director)
    director.ipvsadm(f"-A -t {VIP}:0 -s rr -p 360", f"-a -t {VIP}:0 -r {R100} -g",
                     f"-a -t {VIP}:0 -r {R200} -g",
                     f"-A -t [{VIP6}]:0 -s rr -p 360",
                     f"-a -t [{VIP6}]:0 -r [2001:db8:2::100] -g",
                     f"-a -t [{VIP6}]:0 -r [2001:db8:2::200] -g")
    for _ in range(2):  # what earlier tests left, in both generations
        director.maps.filter_bytes.rebuild(director.maps)
    return director


def both_generations(d, kind, key) -> list[bool]:
    return [d.maps.filter_bytes.stored(kind, gen, key) for gen in (0, 1)]


@pytest.mark.parametrize("client,vip,real", [(ALICE, VIP, R200),
                                             (ALICE6, VIP6, "2001:db8:2::200")])
def test_a_new_client_stores_its_connection_and_template_where_user_space_looks(
        pcc, client, vip, real):
    conn, tpl = tuple_key("tcp", client, 40000, vip, 80), template_key(client, vip)
    assert both_generations(pcc, CONNS, conn) == [False, False]
    assert both_generations(pcc, TEMPLATES, tpl) == [False, False]
    expect_forwarded(pcc, P.tcp(client, 40000, 80, dst=vip), real)
    assert both_generations(pcc, CONNS, conn) == [True, True]
    assert both_generations(pcc, TEMPLATES, tpl) == [True, True]
    # established: moved to the held tier, still found there
    expect_forwarded(pcc, P.tcp(client, 40000, 80, "A", dst=vip), real)
    expect_forwarded(pcc, P.tcp(client, 40000, 80, "PA", dst=vip), real)
    assert pcc.maps.conns.lookup(conn).state == shared.S["ESTABLISHED"]


def test_rebuilds_forget_deleted_keys_and_keep_the_others(pcc):
    f = pcc.maps.filter_bytes
    kept, gone = (tuple_key("tcp", ALICE, p, VIP, 80) for p in (40000, 40001))
    for port in (40000, 40001):
        expect_forwarded(pcc, P.tcp(ALICE, port, 80), R200)
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)  # held now
    assert pcc.maps.conns.delete(gone)
    gen = f.built ^ 1
    f.rebuild(pcc.maps)
    assert f.built == gen
    assert both_generations(pcc, CONNS, kept) == [True, True]
    # the generation rebuilt forgot it, the other (complete before) not yet
    assert f.stored(CONNS, gen, gone) is False and f.stored(CONNS, gen ^ 1, gone)
    f.rebuild(pcc.maps)
    assert not f.maybe(CONNS, gone)
    assert f.maybe(CONNS, kept) and f.maybe(TEMPLATES, template_key(ALICE, VIP))
    expect_forwarded(pcc, P.tcp(ALICE, 40000, 80, "A"), R200)
    expect_left_alone(pcc, P.tcp(ALICE, 40001, 80, "A"), "XDP_PASS", "not_syn")


def test_packets_trust_the_filter_unless_it_says_maybe_everywhere(pcc):
    """Connections written behind the filter's back (as in tables an older
    lvsxdp filled): a non-SYN reads the held tier first and finds its
    connection there; an embryonic one is not found until the filter says
    "maybe" for every key (`up` next to such tables), or was rebuilt."""
    f = pcc.maps.filter_bytes
    f.sparse = False  # as `up` next to such tables leaves it (all_maybe, below)
    held, new = (tuple_key("tcp", ALICE, p, VIP, 80) for p in (40002, 40003))
    now = monotonic_ns()
    real = next(r.ref for r in pcc.config.services[0].reals if str(r.addr) == R100)
    for key, m, state in ((held, pcc.maps.conns.v4, "ESTABLISHED"),
                          (new, pcc.maps.conns.new4, "SYN_RECV")):
        c = shared.Conn(expires=now + 60 * shared.NS, vouched=now + 60 * shared.NS,
                        real=real, svc=0, state=shared.S[state])
        m.update(pcc.maps.conns._key4(key), c)
        assert not f.maybe(CONNS, key)
    expect_forwarded(pcc, P.tcp(ALICE, 40002, 80, "A"), R100)
    ack = P.tcp(ALICE, 40003, 80, "A")
    expect_left_alone(pcc, ack, "XDP_PASS", "not_syn")
    f.all_maybe()
    expect_forwarded(pcc, ack, R100)  # and established: held from now on
    for _ in range(2):
        f.rebuild(pcc.maps)
        expect_forwarded(pcc, ack, R100)
    assert both_generations(pcc, CONNS, new) == [True, True]
    assert not f.maybe(CONNS, tuple_key("tcp", ALICE, 40004, VIP, 80))


def test_a_sparse_filter_is_read_before_the_held_tier_and_the_agent_says_when(pcc):
    """While few connection slots are set, a non-SYN reads the filter first:
    a held connection written behind its back is then not found (a flood of
    unknown ACKs costs a cached read each); the rebuild that finds half of
    the slots set or more turns that off, and the held tier is read first
    again."""
    f = pcc.maps.filter_bytes
    assert f.sparse  # the fixture's rebuilds found few keys
    key = tuple_key("tcp", ALICE, 40010, VIP, 80)
    real = real_ref(pcc, R100)
    now = monotonic_ns()
    c = shared.Conn(expires=now + 600 * shared.NS, vouched=now + 600 * shared.NS,
                    real=real, svc=0, state=shared.S["ESTABLISHED"])
    pcc.maps.conns.v4.update(pcc.maps.conns._key4(key), c)
    assert not f.maybe(CONNS, key)
    ack = P.tcp(ALICE, 40010, 80, "A")
    expect_left_alone(pcc, ack, "XDP_PASS", "not_syn")
    f.sparse = False
    expect_forwarded(pcc, ack, R100)
    f.sparse = True
    # a rebuild that finds half of the slots set or more: here the
    # all-1s generation the first rebuild after all_maybe leaves alone
    f.all_maybe()
    assert not f.sparse
    f.rebuild(pcc.maps)
    assert f.conn_slots_set() >= filter_.SPARSE_SLOTS
    assert not f.sparse
    expect_forwarded(pcc, ack, R100)
    f.rebuild(pcc.maps)  # both rebuilt: only the keys the tables hold
    assert f.sparse and f.conn_slots_set() < filter_.SPARSE_SLOTS
    assert f.maybe(CONNS, key)  # read by the rebuilds


def test_user_space_inserts_store_their_bytes(pcc):
    key, tpl = tuple_key("udp", ALICE, 5353, VIP, 53), template_key(ALICE, VIP, proto="udp")
    pcc.maps.conns.update(key, shared.Conn(state=shared.S["UDP"]))
    pcc.maps.templates.update(tpl, shared.Template())
    assert both_generations(pcc, CONNS, key) == [True, True]
    assert both_generations(pcc, TEMPLATES, tpl) == [True, True]
