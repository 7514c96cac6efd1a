"""A template's life kept by the data plane alone (no agent runs here), as
LVS-SEMANTICS.md says IPVS keeps it: the template's timer fires at its
persistence timeout; with no connection left it is dropped, else re-armed
for one step (120 s, the seed's) and checked again at the step's end. A
connection that closed still counts until its own FIN_WAIT timeout.

What the tests check is when the template stops sending its client to its
real: snapshot.template_dead_at (persist.h's template_alive in closed form),
and the real the client's next connection goes to."""

from __future__ import annotations

import packets as P
import pytest
from checks import expect_forwarded, reset, rewrite, template_key, tuple_key

from lvsxdp import agent, shared, snapshot
from lvsxdp.runtime import monotonic_ns

pytestmark = pytest.mark.kernels

VIP = P.VIP
R100, R200 = "198.18.2.100", "198.18.2.200"
ALICE = "198.18.1.50"
NS = shared.NS
STEP = 120 * NS
TIMEOUT = 360 * NS


@pytest.fixture
def pcc(director):
    reset(director)
    director.ipvsadm(f"-A -t {VIP}:0 -s rr -p 360", f"-a -t {VIP}:0 -r {R100} -g",
                     f"-a -t {VIP}:0 -r {R200} -g")
    return director


def template(d):
    return d.maps.templates.lookup(template_key(ALICE, VIP))


def conn(d, port):
    return d.maps.conns.lookup(tuple_key("tcp", ALICE, port, VIP, 80))


def run(d, port, *flags):
    for f in flags:
        expect_forwarded(d, P.tcp(ALICE, port, 80, f), R200)


def dead_at(d) -> int:
    return snapshot.template_dead_at(template(d), STEP)


def test_one_short_connection_leaves_the_template_its_360_s(pcc):
    """The issue's case: 960 s before (the ESTABLISHED 900 s bound kept)."""
    t0 = monotonic_ns()
    run(pcc, 40000, "S", "A", "PA")
    assert dead_at(pcc) >= t0 + 900 * NS  # an open connection holds it
    assert template(pcc).n_open == 1
    run(pcc, 40000, "FA")
    t = template(pcc)
    assert t.n_open == 0 and t.ctl_until == conn(pcc, 40000).vouched
    assert t.ctl_until < t.expires  # FIN_WAIT's 120 s end before the 360 s
    assert dead_at(pcc) == t.expires <= monotonic_ns() + TIMEOUT


def test_the_template_waits_for_its_last_open_connection(pcc):
    run(pcc, 40000, "S", "A")
    run(pcc, 40001, "S", "A")
    assert template(pcc).n_open == 2
    run(pcc, 40000, "FA")
    t = template(pcc)
    assert t.n_open == 1
    assert t.ctl_until >= conn(pcc, 40001).vouched  # 40001 still holds it
    run(pcc, 40001, "R")
    t = template(pcc)
    assert t.n_open == 0
    # the closed ones: 40000 in FIN_WAIT (120 s) outlives 40001 in CLOSE (10 s)
    assert t.ctl_until == conn(pcc, 40000).vouched == t.closing_until


def test_a_fin_again_does_not_count_twice(pcc):
    run(pcc, 40000, "S", "A")
    run(pcc, 40001, "S", "A")
    run(pcc, 40000, "FA")
    run(pcc, 40000, "FA")  # retransmitted: the connection stays closed
    run(pcc, 40000, "A")
    assert template(pcc).n_open == 1


def test_a_re_armed_template_lives_to_the_end_of_its_step(pcc):
    """ipvs-golden/05-timeouts.txt: once its timer runs steps, a template
    whose last connection ends is dropped when the step ends, not at once."""
    run(pcc, 40000, "S", "A")
    now = monotonic_ns()
    # the persistence timeout ran out 100 s ago: the timer runs a step
    # that ends in 20 s; the connection would have kept it 900 s
    rewrite(pcc.maps.templates, template_key(ALICE, VIP), expires=now - 100 * NS,
            ctl_until=now + 800 * NS)
    run(pcc, 40000, "R")  # CLOSE: 10 s
    t = template(pcc)
    assert t.n_open == 0
    assert dead_at(pcc) == t.expires + STEP  # the current step's end
    expect_forwarded(pcc, P.tcp(ALICE, 40001, 443), R200)  # still its real


def test_the_agents_sweep_also_keeps_a_re_armed_template_to_its_steps_end(pcc):
    run(pcc, 40000, "S", "A")
    now = monotonic_ns()
    rewrite(pcc.maps.templates, template_key(ALICE, VIP), expires=now - 100 * NS,
            ctl_until=now + 800 * NS)
    # the connection expired unseen (the data plane never learns it)
    rewrite(pcc.maps.conns, tuple_key("tcp", ALICE, 40000, VIP, 80), expires=now - NS)
    done = agent.sweep(pcc.maps, pcc.config, now)
    assert (done["conns_deleted"], done["templates_deleted"]) == (1, 0)
    t = template(pcc)
    assert (t.ctl_until, t.n_open) == (now, 0)
    assert dead_at(pcc) == t.expires + STEP
    # and once the step is over, it goes
    done = agent.sweep(pcc.maps, pcc.config, t.expires + STEP)
    assert done["templates_deleted"] == 1


def test_a_connection_that_expired_unseen_gives_way_without_holding_the_template(pcc):
    run(pcc, 40000, "S", "A")
    now = monotonic_ns()
    rewrite(pcc.maps.conns, tuple_key("tcp", ALICE, 40000, VIP, 80), expires=now - NS,
            vouched=now - NS)
    run(pcc, 40000, "S")  # the same ports again: a new connection
    assert template(pcc).n_open == 1
    run(pcc, 40000, "A", "FA")
    assert template(pcc).n_open == 0


def test_once_re_armed_a_new_connection_refreshes_the_template_to_the_step(pcc):
    """IPVS: the timer that found connections re-arms with the step, and
    the template's timeout stays the step; a new connection refreshes it to
    the step, not to -p (ipvs-golden/05-timeouts.txt)."""
    run(pcc, 40000, "S", "A")
    fresh = monotonic_ns()
    run(pcc, 40001, "S")  # before its timer ran out: -p again
    t = template(pcc)
    assert fresh + TIMEOUT <= t.expires <= monotonic_ns() + TIMEOUT
    assert not t.flags & shared.TPL_F_REARMED
    now = monotonic_ns()
    rewrite(pcc.maps.templates, template_key(ALICE, VIP), expires=now - 10 * NS)
    before = monotonic_ns()
    run(pcc, 40002, "S")  # past it, alive because 40000 lives: re-armed
    t = template(pcc)
    assert t.flags & shared.TPL_F_REARMED
    assert before + STEP <= t.expires <= monotonic_ns() + STEP
    before = monotonic_ns()
    run(pcc, 40003, "S")  # and every new connection after: the step
    assert before + STEP <= template(pcc).expires <= monotonic_ns() + STEP
