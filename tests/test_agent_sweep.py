"""The agent's tidying against the real program's maps: expired connections
go, dead templates go, and a template held only by a connection the client
closed is released at that connection's FIN_WAIT timeout, not its old
ESTABLISHED one (the data plane lowers it itself at the close; the agent
makes it exact where the data plane cannot see: connections that expired
unseen)."""

import ctypes

import packets as P

from lvsxdp import agent, runtime, shared, snapshot

PCC = ("-A -t 198.18.2.1:0 -s rr -p 360", "-a -t 198.18.2.1:0 -r 198.18.2.100 -g",
       "-a -t 198.18.2.1:0 -r 198.18.2.200 -g")
S = shared.NS


def only(items):
    assert len(items) == 1, items
    return items[0]


def test_closed_connection_releases_its_template_at_fin_timeout(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC)
    for flags in ("S", "A", "PA"):
        assert d.run(P.tcp("198.18.2.50", 40000, 80, flags=flags))[0] == "XDP_TX"
    now = runtime.monotonic_ns()
    _, t = only(d.templates())
    assert t.ctl_until >= now + 899 * S  # ESTABLISHED: 900 s

    assert d.run(P.tcp("198.18.2.50", 40000, 80, flags="FA"))[0] == "XDP_TX"
    _, c = only(d.conns())
    assert shared.STATES[c.state] == "FIN_WAIT"
    _, t = only(d.templates())
    assert (t.ctl_until, t.n_open) == (c.vouched, 0)  # the data plane lowered it

    # what the data plane did is exact: the agent has nothing to lower
    done = agent.sweep(d.maps, d.config, runtime.monotonic_ns())
    assert done == {"conns_deleted": 0, "templates_deleted": 0, "templates_lowered": 0,
                    "nat_deleted": 0}
    _, t = only(d.templates())
    _, c = only(d.conns())
    assert t.ctl_until == c.vouched
    assert now + 119 * S <= t.ctl_until <= now + 122 * S  # FIN_WAIT 120 s + slack


def test_expired_connection_and_dead_template_are_removed(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC)
    assert d.run(P.tcp("198.18.2.50", 40000, 80))[0] == "XDP_TX"
    now = runtime.monotonic_ns()
    k, c = only(d.conns())
    c.expires = now - 1
    d.maps.conns.update(k, c)

    done = agent.sweep(d.maps, d.config, now)
    assert done == {"conns_deleted": 1, "templates_deleted": 0, "templates_lowered": 1,
                    "nat_deleted": 0}
    assert d.conns() == []
    k, t = only(d.templates())
    # no connection holds it: it dies at its timeout
    assert (t.ctl_until, t.n_open) == (now, 0)
    assert snapshot.template_dead_at(t, d.maps.read_config().extend_ns) == t.expires

    t.expires, t.ctl_until = now - 1, 0  # its timer fired with no connection
    d.maps.templates.update(k, t)
    assert agent.sweep(d.maps, d.config, now)["templates_deleted"] == 1
    assert d.templates() == []


def test_template_past_its_timeout_is_kept_while_a_connection_lives(fresh_director):
    d = fresh_director
    d.ipvsadm(*PCC)
    for flags in ("S", "A"):
        assert d.run(P.tcp("198.18.2.50", 40000, 80, flags=flags))[0] == "XDP_TX"
    now = runtime.monotonic_ns()
    k, t = only(d.templates())
    t.expires = now - 10 * S  # persistence timeout ran out 10 s ago
    d.maps.templates.update(k, t)

    assert agent.sweep(d.maps, d.config, now) == {
        "conns_deleted": 0, "templates_deleted": 0, "templates_lowered": 0,
                    "nat_deleted": 0}
    _, t = only(d.templates())
    step = d.maps.read_config().extend_ns
    assert step == 120 * S
    # extended in 120 s steps past the live connection's expiry
    dead_at = snapshot.template_dead_at(t, step)
    assert (dead_at - t.expires) % step == 0
    assert dead_at >= t.ctl_until
    assert snapshot.template_expire_in(t, step, now) == 110

    # and a new connection of that client still goes to the same real
    real_before = t.real
    act, out = d.run(P.tcp("198.18.2.50", 40001, 443))
    assert act == "XDP_TX"
    real = d.maps.reals.lookup(ctypes.c_uint32(shared.ref_index(real_before)))
    assert out == P.forwarded_to(P.tcp("198.18.2.50", 40001, 443), bytes(real.mac))


def test_nat_reverse_entries_go_with_their_connections(fresh_director):
    d = fresh_director
    d.ipvsadm("-A -t 198.18.2.1:80 -s rr", "-a -t 198.18.2.1:80 -r 198.18.2.100:8080 -m")
    assert d.run(P.tcp("198.18.2.50", 40000, 80))[0] == "XDP_TX"
    k, rev = only(d.maps.nat_rev.items())
    assert (shared.ntohs(k.cport), shared.ntohs(k.vport), shared.ntohs(rev.vport)) == (
        8080, 40000, 80)
    now = runtime.monotonic_ns()
    assert agent.sweep(d.maps, d.config, now)["nat_deleted"] == 0
    assert len(d.maps.nat_rev.items()) == 1
    ck, c = only(d.conns())
    c.expires = now - 1
    d.maps.conns.update(ck, c)
    done = agent.sweep(d.maps, d.config, now)
    assert (done["conns_deleted"], done["nat_deleted"]) == (1, 1)
    assert d.maps.nat_rev.items() == []
