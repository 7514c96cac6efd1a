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
    assert f.conn_slots_set(held=True) >= filter_.SPARSE_SLOTS
    assert not f.sparse
    expect_forwarded(pcc, ack, R100)
    f.rebuild(pcc.maps)  # both rebuilt: only the keys the tables hold
    assert f.sparse and f.conn_slots_set(held=True) < filter_.SPARSE_SLOTS
    assert f.maybe(CONNS, key)  # read by the rebuilds


def test_user_space_inserts_store_their_bytes(pcc):
    key, tpl = tuple_key("udp", ALICE, 5353, VIP, 53), template_key(ALICE, VIP, proto="udp")
    pcc.maps.conns.update(key, shared.Conn(state=shared.S["UDP"]))
    pcc.maps.templates.update(tpl, shared.Template())
    assert both_generations(pcc, CONNS, key) == [True, True]
    assert both_generations(pcc, TEMPLATES, tpl) == [True, True]


def tiers_stored(d, kind, key) -> dict[str, list[bool]]:
    f = d.maps.filter_bytes
    return {name: [f.stored(kind, gen, key, tiers=(tier,)) for gen in (0, 1)]
            for name, tier in (("held", filter_.TIER_HELD), ("new", filter_.TIER_NEW))}


@pytest.mark.parametrize("client,vip,real", [(ALICE, VIP, R200),
                                             (ALICE6, VIP6, "2001:db8:2::200")])
def test_a_slot_tells_held_keys_from_embryonic_ones(pcc, client, vip, real):
    """A new connection and its template store their slots' embryonic bytes,
    the move to the held tier (the client's ACK) the held bytes; the
    rebuilds store each key in its tier's bytes only."""
    conn, tpl = tuple_key("tcp", client, 40020, vip, 80), template_key(client, vip)
    expect_forwarded(pcc, P.tcp(client, 40020, 80, dst=vip), real)
    for kind, key in ((CONNS, conn), (TEMPLATES, tpl)):
        assert tiers_stored(pcc, kind, key) == {"held": [False, False], "new": [True, True]}
    expect_forwarded(pcc, P.tcp(client, 40020, 80, "A", dst=vip), real)
    for kind, key in ((CONNS, conn), (TEMPLATES, tpl)):
        assert tiers_stored(pcc, kind, key) == {"held": [True, True], "new": [True, True]}
    for _ in range(2):
        pcc.maps.filter_bytes.rebuild(pcc.maps)
    for kind, key in ((CONNS, conn), (TEMPLATES, tpl)):
        assert tiers_stored(pcc, kind, key) == {"held": [True, True], "new": [False, False]}
    expect_forwarded(pcc, P.tcp(client, 40020, 80, "A", dst=vip), real)
    # the client's next connection finds the held template, its SYN no
    # held connection: the slot's held bytes are its neighbours' at most
    expect_forwarded(pcc, P.tcp(client, 40021, 80, dst=vip), real)


def test_a_syn_reads_the_held_tier_only_where_its_slot_says_held(pcc):
    """Trusted as the rest of the filter: a held connection written behind
    the filter's back whose slot says only "embryonic" is not found by a
    SYN (it makes a connection of its own in the embryonic tier); once the
    slot's held bytes are stored it is found, and reused as IPVS reuses a
    connection in TIME_WAIT."""
    f = pcc.maps.filter_bytes
    key = tuple_key("tcp", ALICE, 40030, VIP, 80)
    now = monotonic_ns()
    c = shared.Conn(expires=now + 600 * shared.NS, vouched=now + 600 * shared.NS,
                    real=real_ref(pcc, R100), svc=0, state=shared.S["TIME_WAIT"])
    k4 = pcc.maps.conns._key4(key)
    pcc.maps.conns.v4.update(k4, c)
    s = filter_.slot(key)
    for gen in (0, 1):
        f._mm[f._index(CONNS, gen, s, filter_.TIER_NEW)] = 1
    syn = P.tcp(ALICE, 40030, 80)
    expect_forwarded(pcc, syn, R200)  # the template's real: scheduled anew
    assert pcc.maps.conns.new4.lookup(k4) is not None
    assert pcc.maps.conns.v4.lookup(k4).state == shared.S["TIME_WAIT"]
    pcc.maps.conns.new4.delete(k4)
    for gen in (0, 1):
        f._mm[f._index(CONNS, gen, s, filter_.TIER_HELD)] = 1
    expect_forwarded(pcc, syn, R200)
    assert pcc.maps.conns.v4.lookup(k4) is None  # the held one made way
    assert pcc.maps.conns.new4.lookup(k4).state == shared.S["SYN_RECV"]


def test_embryonic_keys_leave_the_filter_sparse(pcc):
    """Sparse is judged on the held tier's bytes: a filter whose every slot
    says "embryonic: maybe" (a flood, a burst of new clients) is still read
    first by a non-SYN, which then skips the held table and finds an
    embryonic connection where there is one."""
    f = pcc.maps.filter_bytes
    key = tuple_key("tcp", ALICE, 40040, VIP, 80)
    expect_forwarded(pcc, P.tcp(ALICE, 40040, 80), R200)  # embryonic
    words = f._bytes()[:4 * shared.FILTER_SLOTS].reshape(-1, 4)
    words[:, 2:4] = 1  # every connection slot: embryonic, both generations
    del words
    f.rebuild(pcc.maps)
    assert f.conn_slots_set() == shared.FILTER_SLOTS
    assert f.sparse and f.conn_slots_set(held=True) < filter_.SPARSE_SLOTS
    expect_left_alone(pcc, P.tcp(ALICE, 40041, 80, "A"), "XDP_PASS", "not_syn")
    expect_forwarded(pcc, P.tcp(ALICE, 40040, 80, "A"), R200)  # established: held
    assert pcc.maps.conns.v4.lookup(pcc.maps.conns._key4(key)) is not None
