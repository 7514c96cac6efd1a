"""IPVS's schedulers and real thresholds, decision by decision.

The oracle is IPVS transcribed into plain Python, kept apart from lvsxdp's
own code: the destination list (newest first), ip_vs_lc/wlc/sed/nq's scans,
ip_vs_sh/dh's 256-bucket tables and their hash_32, ip_vs_mh's permutation and
population with a SipHash written from the SipHash paper, and the
OVERLOAD flag as ip_vs_bind_dest, ip_vs_unbind_dest and __ip_vs_update_dest
move it. The real program (BPF_PROG_TEST_RUN) and the oracle see the same
sequence of new clients, ACKs, FINs, expiries and configuration changes, and
every decision is compared (whole output frames, or a drop for lack of a
real). An lvsxdp real whose MAC is unknown is, for the oracle, a real that
cannot take new work (as if it were overloaded), kept in every table.

Then `ipvsadm -s/-b/-x/-y` parsing, errors and `-S`/`-R`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import math
import random
import shlex
from dataclasses import dataclass, field

import packets as P
import pytest
from checks import expect_left_alone, mac_of, reset, rewrite, template_key, tuple_key
from harness import Director, kernel_loops, mac_bytes

from lvsxdp import agent, ipvsadm, load, shared
from lvsxdp.model import Config, ConfigError
from lvsxdp.runtime import monotonic_ns

# Runs on each kernel of the matrix too (make test-kernels).
pytestmark = pytest.mark.kernels

VIP = P.VIP
NS = shared.NS
M32 = 0xFFFFFFFF


# -- the oracle --------------------------------------------------------------

@dataclass
class Dest:
    """struct ip_vs_dest, the parts schedulers read."""

    addr: str
    weight: int
    last_weight: int
    u_threshold: int = 0
    l_threshold: int = 0
    activeconns: int = 0
    inactconns: int = 0
    overload: bool = False
    reachable: bool = True  # lvsxdp: its MAC is known

    def totalconns(self) -> int:  # ip_vs_dest_totalconns
        return self.activeconns + self.inactconns

    def cannot_take_new(self) -> bool:
        return self.overload or not self.reachable


@dataclass
class Ipvs:
    """One IPVS service: its destination list and scheduler."""

    sched: str
    flags: set = field(default_factory=set)
    port: int = 0  # the service's, which DR reals carry too
    dests: list[Dest] = field(default_factory=list)
    rr_last: int = -1  # ip_vs_rr's sched_data: the list head

    def find(self, addr: str) -> Dest:
        return next(d for d in self.dests if d.addr == addr)

    # ip_vs_add_dest / ip_vs_edit_dest -> __ip_vs_update_dest
    def add(self, addr: str, weight: int = 1, x: int = 0, y: int = 0) -> None:
        self.dests.insert(0, Dest(addr, weight, weight, x, y))

    def edit(self, addr: str, weight: int | None = None, x: int | None = None,
             y: int | None = None) -> None:
        d = self.find(addr)
        if weight is not None:
            if weight != 0:
                d.last_weight = weight
            d.weight = weight
        x = d.u_threshold if x is None else x
        if x == 0 or x > d.u_threshold:
            d.overload = False
        d.u_threshold = x
        d.l_threshold = d.l_threshold if y is None else y

    def remove(self, addr: str) -> None:
        self.dests.remove(self.find(addr))

    # ip_vs_bind_dest, set_tcp_state, ip_vs_unbind_dest
    def bind(self, d: Dest) -> None:
        d.inactconns += 1  # IP_VS_CONN_F_INACTIVE is in every dest's conn_flags
        if d.u_threshold != 0 and d.totalconns() >= d.u_threshold:
            d.overload = True

    def activate(self, d: Dest) -> None:
        """The first TCP packet: NONE -> SYN_RECV, an active state
        (tcp_state_active: SYN_SENT, SYN_RECV, ESTABLISHED)."""
        d.inactconns -= 1
        d.activeconns += 1

    def deactivate(self, d: Dest) -> None:
        d.activeconns -= 1
        d.inactconns += 1

    def unbind(self, d: Dest, active: bool) -> None:
        if active:
            d.activeconns -= 1
        else:
            d.inactconns -= 1
        if d.l_threshold != 0:
            if d.totalconns() < d.l_threshold:
                d.overload = False
        elif d.u_threshold != 0:
            if d.totalconns() * 4 < d.u_threshold * 3:
                d.overload = False
        else:
            d.overload = False

    # -- the schedulers ------------------------------------------------------
    def schedule(self, client: str, cport: int, vaddr: str) -> Dest | None:
        return getattr(self, f"_{self.sched}")(client, cport, vaddr)

    def _rr(self, *_):
        n = len(self.dests)
        for step in range(1, n + 2):  # round to the last one itself
            i = (self.rr_last + step) % (n + 1)  # the list with its head
            if i == n:
                continue
            d = self.dests[i]
            if not d.cannot_take_new() and d.weight > 0:
                self.rr_last = i
                return d
        return None

    def _lc(self, *_):
        least, loh = None, 0
        for d in self.dests:
            if d.cannot_take_new() or d.weight == 0:
                continue
            doh = (d.activeconns << 8) + d.inactconns
            if least is None or doh < loh:
                least, loh = d, doh
        return least

    def _wlc(self, *_, overhead=lambda d: (d.activeconns << 8) + d.inactconns):
        it = iter(self.dests)
        for d in it:
            if not d.cannot_take_new() and d.weight > 0:
                least, loh = d, overhead(d)
                break
        else:
            return None
        for d in it:
            if d.cannot_take_new():
                continue
            doh = overhead(d)
            if loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least

    def _sed(self, *_):
        return self._wlc(overhead=lambda d: d.activeconns + 1)

    def _nq(self, *_):
        least, loh = None, 0
        for d in self.dests:
            if d.cannot_take_new() or not d.weight:
                continue
            doh = d.activeconns + 1
            if d.activeconns == 0:
                return d
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least

    def unavailable(self, d: Dest) -> bool:  # ip_vs_sh.c, ip_vs_mh.c is_unavailable
        return d.weight <= 0 or d.cannot_take_new()

    def sh_buckets(self) -> list[Dest | None]:
        """ip_vs_sh_reassign, walking the list with its head."""
        buckets = []
        p, count = -1, 0  # -1: the list head
        for _ in range(256):
            if not self.dests:
                buckets.append(None)
                continue
            if p == -1:
                p = 0
            d = self.dests[p]
            buckets.append(d)
            count += 1
            if count >= d.weight:
                p = p + 1 if p + 1 < len(self.dests) else -1
                count = 0
        return buckets

    def _sh(self, client, cport, _vaddr):
        s = self.sh_buckets()
        port = cport if "sh-port" in self.flags else 0

        def hashkey(offset):
            return (offset + hash_32(port + fold(client), 8)) & 255

        ihash = hashkey(0)
        d = s[ihash]
        if "sh-fallback" not in self.flags:
            return None if d is None or self.unavailable(d) else d
        if d is None:
            return None
        if not self.unavailable(d):
            return d
        for offset in range(256):
            d = s[hashkey((offset + ihash) % 256)]
            if d is None:
                break
            if not self.unavailable(d):
                return d
        return None

    def _dh(self, _client, _cport, vaddr):
        buckets = [self.dests[i % len(self.dests)] if self.dests else None for i in range(256)]
        d = buckets[hash_32(fold(vaddr), 8)]
        if d is None or d.weight <= 0 or d.cannot_take_new():
            return None
        return d

    def mh_lookup(self) -> list[Dest | None]:
        """ip_vs_mh_gcd_weight, _shift_weight, _permutate, _populate."""
        size = 4093
        g = 0
        for d in self.dests:
            if d.last_weight > 0:
                g = math.gcd(d.last_weight, g) if g > 0 else d.last_weight
        if g < 1:
            return [None] * size
        mw = max(d.last_weight for d in self.dests) // g
        rshift = max(mw.bit_length() - 6, 0)
        setup = []
        for d in self.dests:
            offset = mh_hashkey(d.addr, self.port, MH_KEY1, 0) % size
            skip = mh_hashkey(d.addr, self.port, MH_KEY2, 0) % (size - 1) + 1
            lw = d.last_weight
            setup.append({"perm": offset, "skip": skip,
                          "turns": ((lw // g) >> rshift) or int(lw != 0)})
        lookup = [None] * size
        table = set()
        n, dt_count, p = 0, 0, -1
        while n < size:
            if p == -1:
                p = 0
            i = 0
            while p != -1:
                ds = setup[i]
                if ds["turns"] < 1:
                    p = p + 1 if p + 1 < len(self.dests) else -1
                    i += 1
                    continue
                c = ds["perm"]
                while c in table:
                    ds["perm"] += ds["skip"]
                    if ds["perm"] >= size:
                        ds["perm"] -= size
                    c = ds["perm"]
                table.add(c)
                lookup[c] = self.dests[p]
                n += 1
                if n == size:
                    return lookup
                dt_count += 1
                if dt_count >= ds["turns"]:
                    dt_count = 0
                    p = p + 1 if p + 1 < len(self.dests) else -1
                    i += 1
        return lookup

    def _mh(self, client, cport, _vaddr):
        lookup = self.mh_lookup()
        port = cport if "mh-port" in self.flags else 0
        ihash = mh_hashkey(client, port, MH_KEY1, 0) % 4093
        d = lookup[ihash]
        if "mh-fallback" not in self.flags:
            return None if d is None or self.unavailable(d) else d
        if d is None:
            return None
        if not self.unavailable(d):
            return d
        for offset in range(4093):
            roffset = (offset + ihash) % 4093
            d = lookup[mh_hashkey(client, port, MH_KEY1, roffset) % 4093]
            if d is None:
                break
            if not self.unavailable(d):
                return d
        return None


def hash_32(val: int, bits: int) -> int:
    """include/linux/hash.h: val * GOLDEN_RATIO_32, top bits."""
    return ((val * 0x61C88647) & M32) >> (32 - bits)


def fold(addr: str) -> int:
    a = ipaddress.ip_address(addr)
    if a.version == 4:
        return int(a)
    words = [int.from_bytes(a.packed[i:i + 4], "big") for i in range(0, 16, 4)]
    return words[0] ^ words[1] ^ words[2] ^ words[3]


def siphash(key: bytes, msg: bytes, c: int, d: int) -> int:
    """SipHash-c-d as the SipHash paper describes it (64-bit result)."""
    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & (2**64 - 1)

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def sipround():
        v[0] = (v[0] + v[1]) & (2**64 - 1)
        v[1] = rotl(v[1], 13) ^ v[0]
        v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & (2**64 - 1)
        v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & (2**64 - 1)
        v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & (2**64 - 1)
        v[1] = rotl(v[1], 17) ^ v[2]
        v[2] = rotl(v[2], 32)

    blocks = len(msg) // 8
    for i in range(blocks):
        m = int.from_bytes(msg[8 * i:8 * i + 8], "little")
        v[3] ^= m
        for _ in range(c):
            sipround()
        v[0] ^= m
    last = (len(msg) & 0xFF) << 56 | int.from_bytes(msg[8 * blocks:], "little")
    v[3] ^= last
    for _ in range(c):
        sipround()
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(d):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


# generate_hash_secret(): hsiphash_key_t is two unsigned longs, each the value
MH_KEY1 = (2654435761).to_bytes(8, "little") * 2
MH_KEY2 = (2654446892).to_bytes(8, "little") * 2


def mh_hashkey(addr: str, port: int, key: bytes, offset: int) -> int:
    """ip_vs_mh_hashkey: hsiphash, which a 64-bit kernel computes as
    SipHash-1-3 truncated to 32 bits, of v = offset + port + address."""
    v = (offset + port + fold(addr)) & M32
    return siphash(key, v.to_bytes(4, "little"), 1, 3) & M32


def test_siphash_gives_the_papers_test_vector():
    key = bytes(range(16))
    assert siphash(key, bytes(range(15)), 2, 4) == 0xA129CA6149BE45E5


# -- driving the program and the oracle together ------------------------------

R = [f"198.18.2.{100 + i}" for i in range(12)]


# Each way this kernel can build the walks (bpf/sched.h): they must decide alike.
@pytest.fixture(scope="module", params=kernel_loops())
def director(request):
    d = Director(loops=request.param)
    yield d
    d.close()


@pytest.fixture
def d(director):
    reset(director)  # real_load and real_load_fix too: a fresh Config reuses the refs
    for addr in R:
        director.macs[ipaddress.ip_address(addr)] = mac_bytes(
            f"02:00:00:00:{int(addr.split('.')[-1]):02x}:00")
    return director


def decide(d, frame: bytes) -> str | None:
    """The real a new connection went to, its whole frame checked; None for
    a drop because no real could take it."""
    before = d.reasons()
    action, out = d.run(frame)
    if action == "XDP_DROP":
        assert out == frame
        assert {k: v - before[k] for k, v in d.reasons().items() if v != before[k]} == \
            {"no_real": 1}
        return None
    assert action == "XDP_TX", action
    real = d.real_of_mac(out[:6])
    assert real is not None
    assert out == P.forwarded_to(frame, mac_of(d, real))
    return real


class Pair:
    """The program and the oracle, one service, driven together."""

    def __init__(self, d, sched: str | None, flags: str = "", vip: str = VIP, port: int = 80,
                 proto: str = "t", persistent: str = ""):
        self.d, self.vip, self.port, self.proto = d, vip, port, proto
        self.svc = f"-{proto} {vip}:{port}" if ":" not in vip else f"-{proto} [{vip}]:{port}"
        self.ipvs = Ipvs(sched or "wlc", set(flags.split(",")) - {""}, port)
        s = f" -s {sched}" if sched else ""  # ipvsadm's default: wlc
        b = f" -b {flags}" if flags else ""
        d.ipvsadm(f"-A {self.svc}{s}{b}{persistent}")
        # (client, cport) -> [Dest, its TCP state as IPVS's input-only table has it]
        self.conns: dict[tuple, list] = {}
        self.cport = 10000

    def add(self, addr: str, weight: int = 1, x: int = 0, y: int = 0) -> None:
        opts = (f" -x {x}" if x else "") + (f" -y {y}" if y else "")
        self.d.ipvsadm(f"-a {self.svc} -r {addr} -g -w {weight}{opts}")
        self.ipvs.add(addr, weight, x, y)

    def edit(self, addr: str, weight: int | None = None, x: int | None = None,
             y: int | None = None) -> None:
        opts = "".join(f" {o} {v}" for o, v in (("-w", weight), ("-x", x), ("-y", y))
                       if v is not None)
        self.d.ipvsadm(f"-e {self.svc} -r {addr} -g{opts}")
        self.ipvs.edit(addr, weight, x, y)

    def remove(self, addr: str) -> None:
        self.d.ipvsadm(f"-d {self.svc} -r {addr}")
        self.ipvs.remove(addr)

    def reachable(self, addr: str, yes: bool) -> None:
        ip = ipaddress.ip_address(addr)
        if yes:
            self.d.macs[ip] = mac_bytes(f"02:00:00:00:{int(addr.split('.')[-1]):02x}:00")
        else:
            self.d.macs.pop(ip, None)
        self.d.apply()
        self.ipvs.find(addr).reachable = yes

    def frame(self, client: str, cport: int, flags: str = "S", vip: str | None = None) -> bytes:
        vip = vip or self.vip
        if self.proto == "u":
            return P.udp(client, cport, self.port, dst=vip)
        return P.tcp(client, cport, self.port, flags, dst=vip)

    def new(self, client: str, cport: int | None = None, vip: str | None = None) -> str | None:
        """A new connection: both decide, the decisions must agree."""
        if cport is None:
            self.cport += 1
            cport = self.cport
        want = self.ipvs.schedule(client, cport, vip or self.vip)
        got = decide(self.d, self.frame(client, cport, vip=vip))
        assert got == (want.addr if want else None), \
            f"{self.ipvs.sched}: {client}:{cport} went to {got}, IPVS sends it to " \
            f"{want.addr if want else None}; loads " + \
            ", ".join(f"{x.addr} w{x.weight} {x.activeconns}/{x.inactconns}"
                      f"{' OVL' if x.overload else ''}{'' if x.reachable else ' NOMAC'}"
                      f" (lvsxdp {self.load_of(x)})" for x in self.ipvs.dests)
        if want:
            self.ipvs.bind(want)
            if self.proto == "t":
                self.ipvs.activate(want)
            self.conns[client, cport] = [want, "SYN_RECV" if self.proto == "t" else "UDP"]
        return got

    def packet(self, key, flags: str) -> bool:
        """A packet of a connection: to its real, or dropped (unchanged) while
        the real is unreachable."""
        dest, _ = self.conns[key]
        if dest.reachable:
            assert decide(self.d, self.frame(*key, flags)) == dest.addr
            return True
        expect_left_alone(self.d, self.frame(*key, flags), "XDP_DROP", "real_gone")
        return False

    def ack(self, key) -> None:
        """SYN_RECV -> ESTABLISHED: active before and after."""
        _, state = self.conns[key]
        assert state == "SYN_RECV"
        if self.packet(key, "A"):
            self.conns[key][1] = "ESTABLISHED"

    def fin(self, key) -> None:
        """ESTABLISHED -> FIN_WAIT: inactive from now on."""
        dest, state = self.conns[key]
        assert state == "ESTABLISHED"
        if self.packet(key, "FA"):
            self.ipvs.deactivate(dest)
            self.conns[key][1] = "FIN_WAIT"

    def expire(self, key) -> None:
        """The connection times out; the agent's sweep notices."""
        dest, state = self.conns.pop(key)
        ckey = tuple_key("tcp" if self.proto == "t" else "udp", key[0], key[1], self.vip,
                         self.port)
        rewrite(self.d.maps.conns, ckey, expires=monotonic_ns() - 1)
        agent.sweep(self.d.maps, self.d.config, monotonic_ns())
        self.ipvs.unbind(dest, state in ("SYN_RECV", "ESTABLISHED"))

    def load_of(self, dest: Dest) -> tuple[int, int]:
        """What the program counts for one of this service's reals."""
        ref = next(r.ref for s in self.d.config.services for r in s.reals
                   if str(r.addr) == dest.addr and s.key()[1:] ==
                   (ipaddress.ip_address(self.vip), self.port))
        return load.real_load(self.d.maps, ref)

    def check_counts(self) -> None:
        """The program's counts of every real are IPVS's."""
        for dest in self.ipvs.dests:
            assert self.load_of(dest) == (dest.activeconns, dest.inactconns), dest.addr


def clients(n: int, seed: int = 1, v6: bool = False) -> list[str]:
    rnd = random.Random(seed)
    if v6:
        return [str(ipaddress.IPv6Address((0x20010DB8 << 96) | rnd.getrandbits(64)))
                for _ in range(n)]
    return [str(ipaddress.IPv4Address((198 << 24) | (18 << 16) | rnd.getrandbits(16) | 1))
            for _ in range(n)]


def random_run(pair: Pair, rnd: random.Random, steps: int, reals: list[str],
               weights=(0, 1, 2, 3, 5), reach: bool = True) -> dict:
    """Random new connections, ACKs, FINs, expiries, weight changes and lost
    MACs, the same for both; every scheduling decision compared."""
    seen: dict = {}
    pool = clients(40, rnd.randrange(1000))
    for _ in range(steps):
        what = rnd.choices(["new", "ack", "fin", "expire", "weight", "mac"],
                           [10, 6, 2, 2, 1, 1 if reach else 0])[0]
        syn = [k for k, (_, state) in pair.conns.items() if state == "SYN_RECV"]
        est = [k for k, (_, state) in pair.conns.items() if state == "ESTABLISHED"]
        if what == "new":
            real = pair.new(rnd.choice(pool))
            seen[real] = seen.get(real, 0) + 1
        elif what == "ack" and syn:
            pair.ack(rnd.choice(syn))
        elif what == "fin" and est:
            pair.fin(rnd.choice(est))
        elif what == "expire" and pair.conns:
            pair.expire(rnd.choice(sorted(pair.conns)))
        elif what == "weight":
            pair.edit(rnd.choice(reals), weight=rnd.choice(weights))
        elif what == "mac":
            addr = rnd.choice(reals)
            pair.reachable(addr, not pair.ipvs.find(addr).reachable)
    pair.check_counts()
    return seen


# -- lc, wlc, sed, nq ----------------------------------------------------------

@pytest.mark.parametrize("sched", ["lc", "wlc", "sed", "nq"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_load_schedulers_pick_what_ipvs_picks_as_connections_come_and_go(d, sched, seed):
    rnd = random.Random(seed)
    pair = Pair(d, sched)
    reals = R[:5]
    for addr, w in zip(reals, [1, 3, 0, 2, 5], strict=True):
        pair.add(addr, w)
    seen = random_run(pair, rnd, 160, reals)
    assert len([r for r in seen if r]) >= 2, seen


def test_wlc_is_the_default_scheduler_and_weighs_active_256_times_inactive(d):
    pair = Pair(d, None)
    assert d.config.services[0].scheduler == "wlc"
    pair.add(R[0], 1)
    pair.add(R[1], 1)
    assert pair.new("198.18.1.1") == R[1]  # the list head
    pair.ack(("198.18.1.1", pair.cport))
    pair.fin(("198.18.1.1", pair.cport))   # R[1]: 1 inactive = 1
    assert pair.new("198.18.1.2") == R[0]  # 1 vs 0; R[0]: 1 active (SYN_RECV) = 256
    for i in range(3, 8):                  # R[1] fills with inactive ones first
        assert pair.new(f"198.18.1.{i}") == R[1]
        pair.ack((f"198.18.1.{i}", pair.cport))
        pair.fin((f"198.18.1.{i}", pair.cport))
    pair.check_counts()


def test_nq_sends_to_a_real_with_no_active_connection_first(d):
    pair = Pair(d, "nq")
    pair.add(R[0], 1)
    pair.add(R[1], 100)
    key = ("198.18.1.1", 10001)
    assert pair.new(*key) == R[1]
    pair.ack(key)
    # R[1] now has one active; R[0] is idle and takes the next, despite weights
    assert pair.new("198.18.1.2") == R[0]


def test_udp_connections_count_as_inactive(d):
    pair = Pair(d, "wlc", proto="u", port=53)
    pair.add(R[0], 1)
    pair.add(R[1], 2)
    for i in range(6):
        pair.new(f"198.18.1.{i + 1}")
    pair.check_counts()
    assert {x.activeconns for x in pair.ipvs.dests} == {0}


def test_a_reused_time_wait_connection_leaves_its_reals_count(d):
    pair = Pair(d, "lc")
    pair.add(R[0], 1)
    pair.add(R[1], 1)
    key = ("198.18.1.1", 10001)
    assert pair.new(*key) == R[1]
    pair.ack(key)
    pair.fin(key)
    rewrite(d.maps.conns, tuple_key("tcp", *key, VIP, 80), state=shared.S["TIME_WAIT"])
    # the client's next SYN on the same ports is a new connection
    # (conn_reuse_mode); IPVS only hurries the old one's timer
    # (ip_vs_conn_expire_now), so it still counts while the new is scheduled
    old = pair.conns.pop(key)[0]
    assert pair.new(*key) == R[0]
    pair.ipvs.unbind(old, False)
    pair.check_counts()


def test_load_scheduler_uses_the_agents_recount_after_connections_expire(d):
    pair = Pair(d, "lc")
    pair.add(R[0], 1)
    pair.add(R[1], 1)
    keys = [("198.18.1.1", 10001 + i) for i in range(6)]
    for key in keys:
        pair.new(*key)
    for key in keys[:3]:
        pair.ack(key)
    # expire everything R[1] has: its count drops only once the agent counted
    for key in [k for k in keys if pair.conns[k][0].addr == R[1]]:
        pair.expire(key)
    pair.check_counts()
    for _ in range(4):
        pair.new("198.18.1.9")


# -- thresholds -----------------------------------------------------------------

@pytest.mark.parametrize("sched", ["rr", "lc", "wlc", "sed", "nq", "sh", "mh"])
def test_overloaded_real_gets_no_new_connections_until_below_its_lower_threshold(d, sched):
    pair = Pair(d, sched, {"sh": "sh-fallback", "mh": "mh-fallback"}.get(sched, ""))
    pair.add(R[0], 1)
    pair.add(R[1], 1, x=3, y=1)
    rnd = random.Random(5)
    pool = clients(20, 7)
    for _ in range(40):
        pair.new(rnd.choice(pool))
        r1 = pair.ipvs.find(R[1])
        if r1.overload and rnd.random() < 0.5:
            # R[1]'s connections end one by one: new work again only below 1
            mine = [k for k, (dst, _) in pair.conns.items() if dst is r1]
            if mine:
                pair.expire(mine[0])
    pair.check_counts()


def test_upper_threshold_without_lower_lifts_below_three_quarters(d):
    pair = Pair(d, "rr")
    pair.add(R[0], 1)
    pair.add(R[1], 1, x=4)
    keys = []
    for i in range(8):
        pair.new(f"198.18.1.{i + 1}")
        keys.append((f"198.18.1.{i + 1}", pair.cport))
    r1 = pair.ipvs.find(R[1])
    assert r1.overload and r1.totalconns() == 4
    mine = [k for k in keys if pair.conns[k][0] is r1]
    pair.expire(mine[0])  # 3 left: 3 * 4 < 4 * 3 is false, still overloaded
    assert r1.overload
    assert {pair.new(f"198.18.3.{i}") for i in range(3)} == {R[0]}
    pair.expire(mine[1])  # 2 left: lifted
    assert not r1.overload
    assert pair.new("198.18.3.9") == R[1]
    pair.check_counts()


def test_raising_or_removing_the_upper_threshold_lifts_overload(d):
    pair = Pair(d, "rr")
    pair.add(R[0], 1)
    pair.add(R[1], 1, x=1)
    assert pair.new("198.18.1.1") == R[1]
    assert pair.new("198.18.1.2") == R[0]
    assert pair.new("198.18.1.3") == R[0]   # R[1] is overloaded
    pair.edit(R[1], x=2)                     # raised: lifted (__ip_vs_update_dest)
    assert pair.new("198.18.1.4") == R[1]   # now 2 = -x: overloaded again
    assert pair.new("198.18.1.5") == R[0]
    pair.edit(R[1], x=1)                     # lowered: stays overloaded
    assert pair.new("198.18.1.6") == R[0]
    pair.edit(R[1], x=0)                     # removed: lifted
    assert pair.new("198.18.1.7") == R[1]
    pair.check_counts()


def test_wrr_skips_overloaded_reals_in_its_sequence(d):
    d.ipvsadm(f"-A -t {VIP}:80 -s wrr", f"-a -t {VIP}:80 -r {R[0]} -g -w 1",
              f"-a -t {VIP}:80 -r {R[1]} -g -w 2 -x 2", f"-a -t {VIP}:80 -r {R[2]} -g -w 3")
    # IPVS's wrr sequence over R2 (3), R1 (2), R0 (1): R2 R2 R1 R2 R1 R0; R1
    # is overloaded after its second connection and then skipped
    got = [decide(d, P.tcp(f"198.18.1.{i + 1}", 10000, 80)) for i in range(12)]
    assert got == [R[2], R[2], R[1], R[2], R[1], R[0],
                   R[2], R[2], R[2], R[0], R[2], R[2]]


def test_persistent_clients_keep_going_to_an_overloaded_real(d):
    alice, bob = "198.18.1.50", "198.18.1.51"
    d.ipvsadm(f"-A -t {VIP}:0 -s rr -p 360", f"-a -t {VIP}:0 -r {R[0]} -g",
              f"-a -t {VIP}:0 -r {R[1]} -g -x 1")
    assert decide(d, P.tcp(alice, 40000, 80)) == R[1]       # R[1] now overloaded
    assert decide(d, P.tcp(bob, 40000, 80)) == R[0]
    assert decide(d, P.tcp("198.18.1.52", 40000, 80)) == R[0]
    for port in (40001, 40002):  # the template still points at R[1]
        assert decide(d, P.tcp(alice, port, 443)) == R[1]
    ref = next(r.ref for r in d.config.services[0].reals if str(r.addr) == R[1])
    assert load.real_load(d.maps, ref) == (3, 0)  # three SYN_RECV: active
    assert d.maps.templates.lookup(template_key(alice, VIP)).real == ref


# -- sh -------------------------------------------------------------------------

SH_FLAGS = ["", "sh-port", "sh-fallback", "sh-fallback,sh-port"]


@pytest.mark.parametrize("flags", SH_FLAGS)
def test_sh_sends_each_client_where_ipvs_does_and_keeps_it_there(d, flags):
    pair = Pair(d, "sh", flags)
    for addr, w in zip(R[:5], [1, 3, 0, 2, 1], strict=True):
        pair.add(addr, w)
    pool = clients(120, 11)
    first = {c: pair.new(c, 20000 + i) for i, c in enumerate(pool)}
    assert len(set(first.values()) - {None}) >= 3
    if "sh-port" not in flags:  # same client, any port: same real
        for c in pool[:30]:
            assert pair.new(c) == first[c]


@pytest.mark.parametrize("flags", SH_FLAGS)
def test_sh_fallback_passes_over_weight_0_overloaded_and_unreachable_reals(d, flags):
    pair = Pair(d, "sh", flags)
    for addr in R[:4]:
        pair.add(addr, 2, x=3 if addr == R[1] else 0)
    pool = clients(60, 12)
    for c in pool:
        pair.new(c)   # R[1] gets overloaded on the way
    pair.edit(R[2], weight=0)
    pair.reachable(R[3], False)
    got = [pair.new(c) for c in pool + clients(60, 13)]
    assert (None in got) != ("sh-fallback" in flags)
    assert not {R[1], R[2], R[3]} & set(got)
    pair.reachable(R[3], True)
    for c in pool:
        pair.new(c)


def test_sh_hashes_ipv6_clients_by_their_folded_address(d):
    vip = P.VIP6
    pair = Pair(d, "sh", "sh-port", vip=vip)
    reals6 = [f"2001:db8:2::{100 + i:x}" for i in range(3)]
    for i, addr in enumerate(reals6):
        d.macs[ipaddress.ip_address(addr)] = mac_bytes(f"02:00:00:06:00:{i:02x}")
        pair.add(addr, i + 1)
    for c in clients(60, 14, v6=True):
        pair.new(c)


def test_sh_with_persistence_schedules_the_template(d):
    pair = Pair(d, "sh", persistent=" -p 360", port=0)
    for addr in R[:3]:
        pair.add(addr, 1)
    for c in clients(30, 15):
        real = pair.new(c, 40000)
        assert decide(d, P.tcp(c, 40001, 443)) == real  # every port, one real


# -- dh -------------------------------------------------------------------------

def test_dh_sends_each_destination_where_ipvs_does(d):
    """One service per destination address, the same reals in each: every
    service's table is the same, the bucket is the destination's."""
    pairs = []
    for i in range(24):
        vip = f"198.18.{4 + i // 200}.{1 + i % 200}"
        pair = Pair(d, "dh", vip=vip)
        for addr, w in zip(R[:5], [1, 2, 0, 1, 4], strict=True):
            pair.add(addr, w)
        pairs.append(pair)
    got = {}
    for pair in pairs:
        for c in clients(3, 16):
            got.setdefault(pair.vip, set()).add(pair.new(c))
    assert all(len(v) == 1 for v in got.values())  # the client does not matter
    assert len({next(iter(v)) for v in got.values()}) >= 3
    # a destination whose real cannot take it is dropped (no dh fallback)
    lost = next(iter(got[pairs[0].vip])) or R[0]
    del d.macs[ipaddress.ip_address(lost)]
    d.apply()
    for pair in pairs:
        pair.ipvs.find(lost).reachable = False
        pair.new("198.18.1.1")


# -- mh -------------------------------------------------------------------------

MH_FLAGS = ["", "mh-port", "mh-fallback", "mh-fallback,mh-port"]


@pytest.mark.parametrize("flags", MH_FLAGS)
def test_mh_sends_each_client_where_ipvs_does(d, flags):
    pair = Pair(d, "mh", flags)
    for addr, w in zip(R[:6], [1, 2, 3, 1, 1, 4], strict=True):
        pair.add(addr, w)
    for i, c in enumerate(clients(150, 21)):
        pair.new(c, 30000 + i)
    # quiesced, overloaded, unreachable: no fallback drops its clients,
    # mh-fallback rehashes them
    pair.edit(R[0], weight=0)
    pair.edit(R[1], x=1)
    pair.reachable(R[2], False)
    got = [pair.new(c, 31000 + i) for i, c in enumerate(clients(150, 21))]
    assert (None in got) != ("mh-fallback" in flags)
    assert not {R[0], R[2]} & set(got)


def ring_reals(d) -> list[str]:
    """The first service's ring as the data plane holds it, by real address."""
    svc = d.config.services[0]
    addr = {r.ref: str(r.addr) for r in svc.reals}
    s = d.maps.svc_conf.lookup(ctypes.c_uint32(svc.index))
    return [addr[d.maps.sched_ring.lookup(ctypes.c_uint32(s.ring_off + i)).value]
            for i in range(s.ring_len)]


@pytest.mark.parametrize("sched", ["sh", "dh", "mh"])
def test_hash_tables_are_ipvss_tables(d, sched):
    pair = Pair(d, sched)
    for addr, w in zip(R[:4], [1, 2, 5, 0], strict=True):
        pair.add(addr, w)
    want = {"sh": pair.ipvs.sh_buckets,
            "dh": lambda: [pair.ipvs.dests[i % 4] for i in range(256)],
            "mh": pair.ipvs.mh_lookup}[sched]()
    assert ring_reals(d) == [x.addr for x in want]


def test_mh_table_weighs_reals_and_keeps_a_quiesced_ones_slots(d):
    pair = Pair(d, "mh")
    for addr, w in zip(R[:3], [1, 2, 5], strict=True):
        pair.add(addr, w)
    ring = ring_reals(d)
    shares = [ring.count(a) / len(ring) for a in R[:3]]
    assert shares[2] > shares[1] > shares[0]
    pair.edit(R[0], weight=0)   # IPVS builds with the last weight: nothing moves
    assert ring_reals(d) == ring
    pair.edit(R[0], weight=2)   # a new weight: a new table
    assert ring_reals(d) != ring
    assert ring_reals(d) == [x.addr for x in pair.ipvs.mh_lookup()]


def test_mh_removing_a_real_moves_few_other_clients(d):
    pair = Pair(d, "mh")
    for addr in R[:8]:
        pair.add(addr, 1)
    pool = clients(400, 22)
    before = {c: pair.new(c) for c in pool}
    pair.remove(R[3])
    after = {c: pair.new(c) for c in pool}
    kept = [c for c in pool if before[c] != R[3]]
    moved = [c for c in kept if after[c] != before[c]]
    assert all(after[c] != R[3] for c in pool)
    # Maglev: the removed real's clients are spread, the others mostly stay
    assert len(moved) / len(kept) < 0.15, (len(moved), len(kept))


# -- the agent's recount --------------------------------------------------------

def test_recount_is_exact_and_a_reused_real_slot_starts_from_nothing(d):
    pair = Pair(d, "wlc")
    pair.add(R[0], 1)
    pair.add(R[1], 1)
    for i in range(10):
        pair.new(f"198.18.1.{i + 1}")
    for key in sorted(pair.conns)[:4]:
        pair.ack(key)
    # the data plane's own entry says otherwise; the recount puts it right
    r0 = next(r for r in d.config.services[0].reals if str(r.addr) == R[0])
    rewrite(d.maps.real_load, ctypes.c_uint32(r0.index), active=7, inactive=9)
    done = load.recount(d.maps, d.config, monotonic_ns())
    assert done["recounted"] == 2
    pair.check_counts()
    # R[0] leaves; R[5] takes its slot with a new generation: nothing inherited
    for key in [k for k, (dst, _) in pair.conns.items() if dst.addr == R[0]]:
        del pair.conns[key]
    pair.remove(R[0])
    d.config.purge_trash(set())  # nothing names it any more: out of the trash
    pair.add(R[5], 1)
    r5 = next(r for r in d.config.services[0].reals if str(r.addr) == R[5])
    assert r5.index == r0.index and r5.ref != r0.ref
    assert load.real_load(d.maps, r5.ref) == (0, 0)
    for i in range(6):
        pair.new(f"198.18.3.{i + 1}")
    pair.check_counts()


def test_recount_skips_when_no_service_reads_the_counts(d):
    d.ipvsadm(f"-A -t {VIP}:80 -s rr", f"-a -t {VIP}:80 -r {R[0]} -g")
    assert load.recount(d.maps, d.config, monotonic_ns()) == {"recounted": 0}


# -- ipvsadm -s -b -x -y ------------------------------------------------------------

def configure(lines, config=None):
    config = config or Config()
    for line in lines:
        config = ipvsadm.apply(config, ipvsadm.parse(shlex.split(line)))
    return config


@pytest.mark.parametrize("sched", ["rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh"])
def test_every_implemented_scheduler_is_accepted(sched):
    svc = configure([f"-A -t {VIP}:80 -s {sched}"]).services[0]
    assert svc.scheduler == sched


@pytest.mark.parametrize(("line", "flags"), [
    ("-s sh -b sh-port", ["sh-port"]),
    ("-s sh -b sh-port,sh-fallback", ["sh-fallback", "sh-port"]),
    ("-s sh -b flag-1", ["sh-fallback"]),
    ("-s sh -b ,sh-port,", ["sh-port"]),
    ("-s mh -b mh-fallback,mh-port", ["mh-fallback", "mh-port"]),
    ("-s mh -b flag-2,flag-3", ["mh-port", "flag-3"]),
    ("-s rr -b flag-2", ["flag-2"]),
    ("-b flag-1", ["flag-1"]),
    ("-s sh --sched-flags=sh-port", ["sh-port"]),
])
def test_sched_flags_are_read_as_ipvsadm_reads_them(line, flags):
    assert configure([f"-A -t {VIP}:80 {line}"]).services[0].sched_flags == flags


@pytest.mark.parametrize(("line", "message"), [
    ("-A -t 198.18.2.1:80 -s rr -b sh-port", "incompatible scheduler flag `sh-port'"),
    ("-A -t 198.18.2.1:80 -b mh-fallback", "incompatible scheduler flag `mh-fallback'"),
    ("-A -t 198.18.2.1:80 -s sh -b mh-port", "incompatible scheduler flag `mh-port'"),
    ("-A -t 198.18.2.1:80 -s sh -b sh-portx", "invalid scheduler flag `sh-portx'"),
    ("-A -t 198.18.2.1:80 -s sh -b ,", "invalid scheduler flag `,'"),
    ("-A -t 198.18.2.1:80 -s sh -b", "-b: missing argument"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -x -1", "illegal u_threshold specified"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -x 2147483648", "illegal u_threshold specified"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -y ten", "illegal l_threshold specified"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -x 10 -y 11", "Numerical result out of range"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -y 5", "Numerical result out of range"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.100 -x 10 -y 11", "Numerical result out of range"),
    ("-e -t 198.18.2.1:0 -r 198.18.2.100 -y 1", "Numerical result out of range"),
    ("-A -t 198.18.2.1:80 -s lblc", "lvsxdp has no scheduler lblc"),
    ("-A -t 198.18.2.1:80 -s foo", "Scheduler or persistence engine not found"),
    ("-A -t 198.18.2.1:80 -x 5", "Illegal 'u-threshold' option with the 'add-service' command"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -b sh-port",
     "Illegal 'sched-flags' option with the 'add-server' command"),
])
def test_bad_scheduler_and_threshold_options_are_refused_in_ipvsadms_words(line, message):
    config = configure([f"-A -t {VIP}:0 -s rr -p 360", f"-a -t {VIP}:0 -r 198.18.2.100 -g"])
    before = config.to_json()
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        ipvsadm.apply(config, ipvsadm.parse(shlex.split(line)))
    assert config.to_json() == before


def test_thresholds_are_set_kept_by_e_and_changed_by_x_and_y():
    config = configure([f"-A -t {VIP}:80 -s wlc", f"-a -t {VIP}:80 -r {R[0]} -g -x 100 -y 50"])
    r = config.services[0].reals[0]
    assert (r.u_threshold, r.l_threshold) == (100, 50)
    config = configure([f"-e -t {VIP}:80 -r {R[0]} -g -w 3"], config)
    r = config.services[0].reals[0]
    assert (r.weight, r.u_threshold, r.l_threshold) == (3, 100, 50)
    config = configure([f"-e -t {VIP}:80 -r {R[0]} -g -x 0 -y 0"], config)
    r = config.services[0].reals[0]
    assert (r.u_threshold, r.l_threshold) == (0, 0)


def test_edit_service_without_b_clears_the_flags_as_ipvsadm_does():
    config = configure([f"-A -t {VIP}:80 -s sh -b sh-port"])
    config = configure([f"-E -t {VIP}:80 -s sh"], config)
    assert config.services[0].sched_flags == []
    config = configure([f"-E -t {VIP}:80 -b sh-fallback"], config)  # keeps sh
    assert (config.services[0].scheduler, config.services[0].sched_flags) == \
        ("sh", ["sh-fallback"])


def test_quiescing_keeps_the_last_weight_for_mh():
    config = configure([f"-A -t {VIP}:80 -s mh", f"-a -t {VIP}:80 -r {R[0]} -g -w 4",
                        f"-e -t {VIP}:80 -r {R[0]} -g -w 0"])
    r = config.services[0].reals[0]
    assert (r.weight, r.last_weight) == (0, 4)
    config = configure([f"-a -t {VIP}:80 -r {R[1]} -g -w 0"], config)
    assert config.services[0].reals[0].last_weight == 0  # added with 0: not in the table


SAVED = [
    f"-A -t {VIP}:80 -s sh -b sh-fallback,sh-port",
    f"-a -t {VIP}:80 -r {R[0]}:80 -g -w 1 -x 100 -y 50",
    f"-a -t {VIP}:80 -r {R[1]}:80 -g -w 2",
    f"-A -t {VIP}:0 -s mh -p 360 -b mh-port",
    f"-a -t {VIP}:0 -r {R[0]}:0 -g -w 3 -x 7",
    f"-A -u {VIP}:53 -s wlc",
    f"-a -u {VIP}:53 -r {R[2]}:53 -g -w 1",
]


def test_save_writes_b_as_ipvsadm_and_restore_reads_it_back():
    config = configure(SAVED)
    text = ipvsadm.format_save(config)
    # ipvsadm -S sorts services and reals and leaves -x/-y out
    assert text.splitlines() == [SAVED[3], SAVED[4].replace(" -x 7", ""), SAVED[0],
                                 SAVED[1].replace(" -x 100 -y 50", ""), SAVED[2], SAVED[5],
                                 SAVED[6]]
    again, errors = ipvsadm.restore(Config(), text)
    assert errors == []
    assert ipvsadm.format_save(again) == text
    assert sorted((s.scheduler, s.sched_flags) for s in again.services) == \
        [("mh", ["mh-port"]), ("sh", ["sh-fallback", "sh-port"]), ("wlc", [])]


def test_a_service_without_s_is_wlc_and_saves_as_wlc():
    config = configure([f"-A -t {VIP}:80", f"-a -t {VIP}:80 -r {R[0]} -g"])
    assert ipvsadm.format_save(config).splitlines()[0] == f"-A -t {VIP}:80 -s wlc"


# -- walks longer than one chunk -------------------------------------------------
# Kernels without may_goto walk LVS_SCHED_CHUNK (256) steps per run of
# lvsxdp_sched (bpf/sched.h); these walks take several, and must decide as
# the inline walk does, and as IPVS does.

MANY = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.18.8.1")) + i))
        for i in range(600)]


def add_many(pair: Pair, reals: list[str], reachable: set[str] | None = None) -> None:
    """The reals in one configuration change (one plan, not 600)."""
    for addr in reals:
        pair.ipvs.add(addr, 1, 0, 0)
        ip = ipaddress.ip_address(addr)
        if reachable is None or addr in reachable:
            n = int(ip) & 0xFFFF
            pair.d.macs[ip] = mac_bytes(f"02:00:00:01:{n >> 8:02x}:{n & 0xFF:02x}")
        else:
            pair.d.macs.pop(ip, None)
            pair.ipvs.find(addr).reachable = False
    pair.d.ipvsadm(*(f"-a {pair.svc} -r {addr} -g -w 1" for addr in reals))


@pytest.mark.parametrize("sched", ["lc", "wlc", "nq"])
def test_least_loaded_of_600_reals_is_found_across_chunks(d, sched):
    pair = Pair(d, sched)
    add_many(pair, MANY)
    rnd = random.Random(7)
    # every real but the last few gets a connection: the scan's best is
    # found in its last chunk, then ties are broken in list order
    for _ in range(len(MANY) + 20):
        pair.new(rnd.choice(clients(40, 3)))
    for key in list(pair.conns)[:200]:
        pair.ack(key)
    for _ in range(30):
        pair.new(rnd.choice(clients(40, 4)))
    pair.check_counts()


def test_mh_fallback_walks_hundreds_of_buckets_to_a_reachable_real(d):
    pair = Pair(d, "mh", "mh-fallback")
    add_many(pair, MANY[:400], reachable={MANY[123], MANY[377]})
    got = {pair.new(c, 40000 + i) for i, c in enumerate(clients(40, 9))}
    assert got == {MANY[123], MANY[377]}
