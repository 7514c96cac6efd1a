"""TCP connection states as IPVS keeps them in DR: the director sees only
the client's packets, so it walks the INPUT-ONLY rows of ip_vs_proto_tcp.c's
state table, and every packet re-arms the connection for its state's
timeout.

A plain-Python model of that table is the oracle: the program and the model
get the same packets (seeded random flag sequences, and every cell of the
table), and the connection's state and expiry in the map must match.
"""

from __future__ import annotations

import random

import packets as P
import pytest
from checks import expect_forwarded, expect_left_alone, reset, template_key, tuple_key

from lvsxdp import shared
from lvsxdp.runtime import monotonic_ns

# Runs on each kernel of the matrix too (make test-kernels).
pytestmark = pytest.mark.kernels

VIP = P.VIP
REAL = "198.18.2.100"
CLIENT = "198.18.1.50"
NS = shared.NS
TOLERANCE = 5_000_000  # ns: the coarse clock's tick, with room

# ip_vs_proto_tcp.c, tcp_states[], the INPUT-ONLY block (no secure_tcp).
COLUMNS = "sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA".split()
INPUT_ONLY = {
    "syn": "sSR sES sES sSR sSR sSR sSR sSR sSR sSR sSR".split(),
    "fin": "sCL sFW sSS sTW sFW sTW sCL sCW sLA sLI sTW".split(),
    "ack": "sCL sES sSS sES sFW sTW sCL sCW sCL sLI sES".split(),
    "rst": "sCL sCL sCL sSR sCL sCL sCL sCL sLA sLI sCL".split(),
}
NAMES = {
    "sNO": "NONE", "sES": "ESTABLISHED", "sSS": "SYN_SENT", "sSR": "SYN_RECV",
    "sFW": "FIN_WAIT", "sTW": "TIME_WAIT", "sCL": "CLOSE", "sCW": "CLOSE_WAIT",
    "sLA": "LAST_ACK", "sLI": "LISTEN", "sSA": "SYNACK",
}
TIMEOUTS = {  # seconds: ip_vs_proto_tcp.c tcp_timeouts
    "NONE": 2, "ESTABLISHED": 900, "SYN_SENT": 120, "SYN_RECV": 60, "FIN_WAIT": 120,
    "TIME_WAIT": 120, "CLOSE": 10, "CLOSE_WAIT": 60, "LAST_ACK": 30, "LISTEN": 120,
    "SYNACK": 120,
}


def tcp_event(flags: str) -> str | None:
    """tcp_state_idx(): RST wins, then SYN, FIN, ACK."""
    for flag, event in (("R", "rst"), ("S", "syn"), ("F", "fin"), ("A", "ack")):
        if flag in flags:
            return event
    return None


def next_state(state: str, flags: str) -> str:
    """set_tcp_state() on the INPUT-ONLY table; no known flag: CLOSE."""
    event = tcp_event(flags)
    if event is None:
        return "CLOSE"
    col = next(c for c in COLUMNS if NAMES[c] == state)
    return NAMES[INPUT_ONLY[event][COLUMNS.index(col)]]


class IpvsTcpModel:
    """What IPVS does with one client's TCP packets (DR, conn_reuse_mode=1,
    no sloppy_tcp): per 5-tuple, a state or nothing."""

    def __init__(self) -> None:
        self.conns: dict[int, str] = {}

    def packet(self, sport: int, flags: str) -> bool:
        """True when the packet is forwarded (belongs to a connection)."""
        state = self.conns.get(sport)
        syn_only = "S" in flags and "A" not in flags and "R" not in flags
        if state is not None and not (syn_only and state in ("TIME_WAIT", "CLOSE")):
            self.conns[sport] = next_state(state, flags)
            return True
        # only a SYN without RST is scheduled as a new connection
        if "S" in flags and "R" not in flags:
            self.conns[sport] = next_state("NONE", flags)
            return True
        return False


def test_model_walks_a_plain_connection_through_the_input_only_states():
    m = IpvsTcpModel()
    seen = []
    for flags in ("S", "A", "PA", "FA", "A", "S", "R", "S", "A", "R"):
        m.packet(1, flags)
        seen.append(m.conns[1])
    # a RST leaves SYN_RECV as it is (rst row, sSR column)
    assert seen == ["SYN_RECV", "ESTABLISHED", "ESTABLISHED", "FIN_WAIT", "FIN_WAIT",
                    "SYN_RECV", "SYN_RECV", "SYN_RECV", "ESTABLISHED", "CLOSE"]


@pytest.fixture(params=["no persistence", "PCC"])
def d(director, request):
    reset(director)
    if request.param == "PCC":
        director.ipvsadm(f"-A -t {VIP}:0 -s rr -p 360", f"-a -t {VIP}:0 -r {REAL} -g")
    else:
        director.ipvsadm(f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {REAL} -g")
    return director


def send(d, sport: int, flags: str, forwarded: bool) -> tuple[int, int]:
    """Runs one packet, checks its fate, returns the clock around it."""
    frame = P.tcp(CLIENT, sport, 80, flags)
    before = monotonic_ns()
    if forwarded:
        expect_forwarded(d, frame, REAL)
    else:
        expect_left_alone(d, frame, "XDP_PASS", "not_syn")
    return before, monotonic_ns()


def check_conn(d, sport: int, want: str | None, clock: tuple[int, int],
               timeouts: dict[str, int] = TIMEOUTS) -> None:
    conn = d.maps.conns.lookup(tuple_key("tcp", CLIENT, sport, VIP, 80))
    if want is None:
        assert conn is None
        return
    assert conn is not None
    assert shared.STATES[conn.state] == want
    before, after = clock
    timeout = timeouts[want] * NS
    assert before + timeout - TOLERANCE <= conn.expires <= after + timeout + TOLERANCE
    if d.config.services[0].persistent:
        # the template outlives every connection it controls
        tpl = d.maps.templates.lookup(template_key(CLIENT, VIP))
        assert tpl.ctl_until >= conn.expires


def random_flags(rng: random.Random) -> str:
    """Mostly what clients send, sometimes any combination at all."""
    if rng.random() < 0.25:
        return "".join(f for f in "FSRPAU" if rng.random() < 0.4)
    return rng.choice(["S", "S", "A", "A", "PA", "PA", "FA", "F", "R", "RA", "SA", "SF", ""])


@pytest.mark.parametrize("seed", range(6))
def test_connection_state_and_expiry_follow_the_input_only_table(d, seed):
    rng = random.Random(seed)
    model = IpvsTcpModel()
    for sport in range(41000, 41006):
        for _ in range(30):
            flags = rng.choice(["S", "S", "S", "A"]) if sport not in model.conns \
                else random_flags(rng)
            forwarded = model.packet(sport, flags)
            clock = send(d, sport, flags, forwarded)
            check_conn(d, sport, model.conns.get(sport), clock)
    assert len(d.conns()) == len(model.conns)


@pytest.mark.parametrize("state", [NAMES[c] for c in COLUMNS if c != "sNO"])
@pytest.mark.parametrize("flags", ["S", "F", "A", "R", "SA", "FA", "RA", "SF", "P", ""])
def test_every_cell_of_the_input_only_table(d, state, flags):
    """Each state (written into the connection, since a client alone never
    reaches some of them) meets each kind of segment."""
    send(d, 42000, "S", True)
    key = tuple_key("tcp", CLIENT, 42000, VIP, 80)
    conn = d.maps.conns.lookup(key)
    conn.state = shared.S[state]
    d.maps.conns.update(key, conn)
    model = IpvsTcpModel()
    model.conns[42000] = state
    forwarded = model.packet(42000, flags)
    clock = send(d, 42000, flags, forwarded)
    check_conn(d, 42000, model.conns.get(42000), clock)


def test_ipvsadm_set_changes_the_established_and_fin_timeouts(d):
    d.ipvsadm("--set 100 50 0")   # 0 keeps udp as it is
    timeouts = {**TIMEOUTS, "ESTABLISHED": 100, "FIN_WAIT": 50}
    for flags, state in (("S", "SYN_RECV"), ("A", "ESTABLISHED"), ("FA", "FIN_WAIT")):
        clock = send(d, 43000, flags, True)
        check_conn(d, 43000, state, clock, timeouts)


def test_udp_connection_lives_for_the_udp_timeout(director):
    reset(director)
    director.ipvsadm("--set 0 0 30", f"-A -u {VIP}:0 -s rr -p",
                     f"-a -u {VIP}:0 -r {REAL} -g")
    for _ in range(3):
        before = monotonic_ns()
        expect_forwarded(director, P.udp(CLIENT, 5353, 53), REAL)
        after = monotonic_ns()
        conn = director.maps.conns.lookup(tuple_key("udp", CLIENT, 5353, VIP, 53))
        assert shared.STATES[conn.state] == "UDP"
        assert before + 30 * NS - TOLERANCE <= conn.expires <= after + 30 * NS + TOLERANCE
