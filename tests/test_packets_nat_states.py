"""NAT (-m) connection state from both directions, as IPVS keeps it for a
masquerading real: the client's packets walk the INPUT rows of
ip_vs_proto_tcp.c's state table, the real's replies the OUTPUT rows (DR and
tunnels see only the client, and walk INPUT-ONLY: tests/test_tcp_states.py),
and a reply re-arms the connection for its state's timeout as a client's
packet does (handle_response, ip_vs_conn_put).

A plain-Python model of both tables is the oracle: the program and the model
get the same packets from both ends, and the connection's state and expiry
in the map must match; the frames are compared whole. The FIB the reply
program asks is a namespace's of this module's own (lxq<4 hex>), removed
whatever happens (test_packets_nat.client_side_namespace)."""

from __future__ import annotations

import ctypes
import random

import pytest
from checks import template_key
from harness import ipaddr
from natpackets import Nat, nat_director
from test_tcp_states import COLUMNS, NAMES, tcp_event

from lvsxdp import shared
from lvsxdp.runtime import monotonic_ns

NS = shared.NS

# ip_vs_proto_tcp.c, tcp_states[] (no secure_tcp): the INPUT and OUTPUT
# blocks, which a connection without IP_VS_CONN_F_NOOUTPUT (NAT) walks.
INPUT = {
    "syn": "sSR sES sES sSR sSR sSR sSR sSR sSR sSR sSR".split(),
    "fin": "sCL sCW sSS sTW sTW sTW sCL sCW sLA sLI sTW".split(),
    "ack": "sCL sES sSS sES sFW sTW sCL sCW sCL sLI sES".split(),
    "rst": "sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sSR".split(),
}
OUTPUT = {
    "syn": "sSS sES sSS sSR sSS sSS sSS sSS sSS sLI sSR".split(),
    "fin": "sTW sFW sSS sTW sFW sTW sCL sTW sLA sLI sTW".split(),
    "ack": "sES sES sSS sES sFW sTW sCL sCW sLA sES sES".split(),
    "rst": "sCL sCL sSS sCL sCL sTW sCL sCL sCL sCL sCL".split(),
}


def next_state(state: str, flags: str, output: bool) -> str:
    """set_tcp_state() on the INPUT (client) or OUTPUT (real) table; a
    segment with no known flag: CLOSE."""
    event = tcp_event(flags)
    if event is None:
        return "CLOSE"
    col = next(c for c in COLUMNS if NAMES[c] == state)
    return NAMES[(OUTPUT if output else INPUT)[event][COLUMNS.index(col)]]


class IpvsNatModel:
    """What IPVS does with one client's TCP connections to a masquerading
    real (conn_reuse_mode=1, no sloppy_tcp): per client port, a state or
    nothing. A reply of no connection is not IPVS's (ip_vs_out lets it go)."""

    def __init__(self) -> None:
        self.conns: dict[int, str] = {}

    def client(self, sport: int, flags: str) -> bool:
        state = self.conns.get(sport)
        syn_only = "S" in flags and "A" not in flags and "R" not in flags
        if state is not None and not (syn_only and state in ("TIME_WAIT", "CLOSE")):
            self.conns[sport] = next_state(state, flags, False)
            return True
        if "S" in flags and "R" not in flags:
            self.conns[sport] = next_state("NONE", flags, False)
            return True
        return False

    def reply(self, sport: int, flags: str) -> bool:
        state = self.conns.get(sport)
        if state is None:
            return False
        self.conns[sport] = next_state(state, flags, True)
        return True


def test_model_walks_both_ends_of_a_connection_through_input_and_output():
    m = IpvsNatModel()
    seen = []
    for end, flags in (("c", "S"), ("r", "SA"), ("c", "A"), ("c", "PA"), ("r", "PA"),
                       ("c", "FA"), ("r", "FA"), ("c", "A")):
        (m.client if end == "c" else m.reply)(1, flags)
        seen.append(m.conns[1])
    # the client closes first: CLOSE_WAIT, then the real's FIN: TIME_WAIT
    assert seen == ["SYN_RECV", "SYN_RECV", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED",
                    "CLOSE_WAIT", "TIME_WAIT", "TIME_WAIT"]


@pytest.fixture(scope="module")
def director():
    with nat_director("lxq") as d:
        yield d


@pytest.fixture(params=["ipv4", "ipv6"])
def nat(director, request):
    return Nat(director, request.param)


def random_flags(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return "".join(f for f in "FSRPAU" if rng.random() < 0.4)
    return rng.choice(["S", "SA", "A", "A", "PA", "PA", "FA", "F", "R", "RA", ""])


@pytest.mark.parametrize("seed", range(4))
def test_state_and_expiry_follow_the_input_and_output_tables(nat, seed):
    rng = random.Random(seed)
    model = IpvsNatModel()
    for sport in range(41000, 41004):
        for _ in range(30):
            if sport not in model.conns:
                flags, end = rng.choice(["S", "S", "A"]), "c"
            else:
                flags, end = random_flags(rng), rng.choice("cr")
            if end == "c":
                clock = nat.from_client(sport, flags, model.client(sport, flags))
            else:
                clock = nat.from_real(sport, flags, model.reply(sport, flags))
            nat.check(sport, model.conns.get(sport), clock)


def connection_in(director, sport: int, state: str) -> tuple[Nat, IpvsNatModel]:
    """A NAT connection in `state` (written into it: a handshake alone
    reaches few states), and the model holding the same."""
    nat = Nat(director, "ipv4")
    nat.from_client(sport, "S", True)
    key = nat.key(sport)
    conn = director.maps.conns.lookup(key)
    conn.state = shared.S[state]
    director.maps.conns.update(key, conn)
    model = IpvsNatModel()
    model.conns[sport] = state
    return nat, model


@pytest.mark.parametrize("state", [NAMES[c] for c in COLUMNS if c != "sNO"])
@pytest.mark.parametrize("flags", ["S", "SA", "F", "FA", "A", "R", "RA", "P", ""])
def test_every_cell_of_the_output_table(director, state, flags):
    """Each state meets each kind of reply."""
    nat, model = connection_in(director, 42000, state)
    clock = nat.from_real(42000, flags, model.reply(42000, flags))
    nat.check(42000, model.conns[42000], clock)


@pytest.mark.parametrize("state", ["ESTABLISHED", "FIN_WAIT", "TIME_WAIT", "CLOSE_WAIT"])
@pytest.mark.parametrize("flags", ["F", "FA", "A", "R"])
def test_the_clients_packets_of_a_nat_connection_walk_the_input_table(director, state, flags):
    """Where INPUT differs from DR's INPUT-ONLY: a client's FIN in
    ESTABLISHED is CLOSE_WAIT (the real may still send), not FIN_WAIT."""
    nat, model = connection_in(director, 42001, state)
    clock = nat.from_client(42001, flags, model.client(42001, flags))
    nat.check(42001, model.conns[42001], clock)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_ipvsadm_lists_the_states_a_real_and_its_client_close_through(director, family):
    nat = Nat(director, family)
    want = []
    for sport, steps in ((43000, [("c", "S"), ("r", "SA"), ("c", "A"), ("c", "FA"),
                                  ("r", "FA")]),
                         (43001, [("c", "S"), ("r", "SA"), ("c", "A"), ("r", "FA")]),
                         (43002, [("c", "S"), ("r", "SA"), ("r", "R")])):
        model = IpvsNatModel()
        for end, flags in steps:
            if end == "c":
                nat.from_client(sport, flags, model.client(sport, flags))
            else:
                nat.from_real(sport, flags, model.reply(sport, flags))
        want.append((sport, model.conns[sport]))
    # client closed first: TIME_WAIT once the real's FIN came; the real
    # first: FIN_WAIT; the real's RST: CLOSE - each with its own timeout
    assert [s for _, s in want] == ["TIME_WAIT", "FIN_WAIT", "CLOSE"]
    rows = nat.listing().splitlines()[2:]
    client, real = ipaddr(nat.client), ipaddr(nat.real)
    for sport, state in want:
        fmt = (lambda a, p: f"[{a}]:{p}") if client.version == 6 else (lambda a, p: f"{a}:{p}")
        row = next(r for r in rows if fmt(client, sport) in r)
        # the whole timeout, or a second less once the clock moved on
        timeout = shared.DEFAULT_TIMEOUTS[state]
        expire = [f"{t // 60:02d}:{t % 60:02d}" for t in (timeout, timeout - 1)]
        assert row.split()[1] in expire and row.split()[2] == state
        assert row.split()[-1] == fmt(real, 8080)


def test_the_reals_active_and_inactive_counts_follow_its_replies(director):
    nat = Nat(director, "ipv4")
    idx = ctypes.c_uint32(director.config.services[0].reals[0].index)

    def load():
        entry = director.maps.real_load.lookup(idx)
        return entry.active, entry.inactive

    nat.from_client(44000, "S", True)
    nat.from_real(44000, "SA", True)
    nat.from_client(44000, "A", True)
    assert load() == (1, 0)
    nat.from_real(44000, "R", True)  # OUTPUT rst: ESTABLISHED -> CLOSE
    assert load() == (0, 1)


def test_a_reply_re_arms_a_udp_connection_and_assures_its_template(director):
    nat = Nat(director, "ipv4", persistent=True, proto="udp")
    nat.from_client(45000, "", True)
    tpl = director.maps.templates.lookup(template_key(nat.client, nat.vip, 80, "udp"))
    assert tpl is not None and not tpl.flags & shared.TPL_F_ASSURED
    # age the connection, then let the real answer: UDP's timeout again
    conn = nat.conn(45000)
    conn.expires = monotonic_ns() + 5 * NS
    director.maps.conns.update(nat.key(45000), conn)
    clock = nat.from_real(45000, "", True)
    nat.check(45000, "UDP", clock)
    # ip_vs_control_assure_ct: a UDP reply assures the template
    tpl = director.maps.templates.lookup(template_key(nat.client, nat.vip, 80, "udp"))
    assert tpl.flags & shared.TPL_F_ASSURED
    assert "ASSURED" in nat.listing()


def test_a_reply_of_an_expired_connection_goes_on_untranslated(director):
    nat = Nat(director, "ipv4")
    nat.from_client(46000, "S", True)
    conn = nat.conn(46000)
    conn.expires = monotonic_ns() - NS
    director.maps.conns.update(nat.key(46000), conn)
    before = director.reasons()["no_service"]
    # ip_vs_out finds no connection: the packet continues as the kernel's
    nat.from_real(46000, "SA", False)
    assert director.reasons()["no_service"] == before + 1
    assert nat.conn(46000).state == shared.S["SYN_RECV"]
