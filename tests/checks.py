"""What the packet tests share: a clean slate for the module's Director,
map keys named the way `ipvsadm -L -c` names entries, and the two things a
packet can become (forwarded to a real, or left alone with a reason).

Every expectation compares the whole output frame and the action, never one
field of it.
"""

from __future__ import annotations

import ipaddress

from harness import REAL_MACS, Director, ipaddr, mac_bytes
from packets import forwarded_to

from lvsxdp import shared
from lvsxdp.model import Config

PROTOS = {"tcp": 6, "udp": 17}


def reset(d: Director) -> None:
    """No services, reals, connections or templates; the lab's MACs and the
    default timeouts. A test sharing the module's Director starts here.
    Counters are not reset: tests compare them before and after."""
    d.config = Config()
    d.macs = {ipaddr(a): mac_bytes(m) for a, m in REAL_MACS.items()}
    d.apply()
    for m in (d.maps.conns, d.maps.templates):
        for key in list(m.keys()):
            m.delete(key)
    # a fresh Config hands out the same real refs again: their connection
    # counts start at zero, as a new real's do
    for m in (d.maps.real_load, d.maps.real_load_fix):
        for key, _ in m.used():
            m.update(key, m.value_type())


def tuple_key(proto: str, client: str, cport: int, vip: str, vport: int) -> shared.Tuple:
    """A connection's key, <proto, client:cport, VIP:vport>; a template has
    cport 0 (and vport 0 for PCC)."""
    caddr, vaddr = ipaddress.ip_address(client), ipaddress.ip_address(vip)
    key = shared.Tuple(family=shared.AF_INET6 if vaddr.version == 6 else shared.AF_INET,
                       proto=PROTOS[proto], cport=shared.htons(cport),
                       vport=shared.htons(vport))
    shared.set_words(key.caddr, caddr)
    shared.set_words(key.vaddr, vaddr)
    return key


def template_key(client: str, vip: str, vport: int = 0, proto: str = "tcp") -> shared.Tuple:
    return tuple_key(proto, client, 0, vip, vport)


def real_ref(d: Director, addr: str) -> int:
    """The ref (generation << 16 | slot) templates and connections hold for
    a real server."""
    want = ipaddress.ip_address(addr)
    for svc in d.config.services:
        for r in svc.reals:
            if r.addr == want:
                return r.ref
    raise KeyError(addr)


def mac_of(d: Director, addr: str) -> bytes:
    return d.macs[ipaddress.ip_address(addr)]


def rewrite(m, key, **fields):
    """Changes fields of one map entry in place (ageing a template, say)."""
    value = m.lookup(key)
    assert value is not None, f"no entry for {key_text(key)} in {m.name}"
    for name, v in fields.items():
        setattr(value, name, v)
    m.update(key, value)
    return value


def key_text(key: shared.Tuple) -> str:
    c = shared.words_addr(key.family, key.caddr)
    v = shared.words_addr(key.family, key.vaddr)
    return f"{key.proto} {c}:{shared.ntohs(key.cport)} -> {v}:{shared.ntohs(key.vport)}"


def reason_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def _where(d: Director, got: tuple[str, bytes]) -> str:
    action, out = got
    if action == "XDP_TX":
        return f"XDP_TX to {d.real_of_mac(out[:6]) or out[:6].hex(':')}"
    return action


def expect_forwarded(d: Director, frame: bytes, real: str) -> None:
    """DR to `real`: XDP_TX, the real's MAC, ours as source, the rest intact."""
    got = d.run(frame)
    want = ("XDP_TX", forwarded_to(frame, mac_of(d, real)))
    assert got == want, f"expected XDP_TX to {real}, got {_where(d, got)}"


def expect_left_alone(d: Director, frame: bytes, action: str, reason: str) -> None:
    """The frame comes back untouched with `action`, and exactly the
    `reason` counter went up, by one."""
    before = d.reasons()
    got = d.run(frame)
    assert got == (action, frame), f"expected {action} untouched, got {_where(d, got)}"
    assert reason_delta(before, d.reasons()) == {reason: 1}


def snapshot(d: Director) -> dict[str, list]:
    """Every map the program may write (and the configuration it reads),
    as raw bytes, to show that a packet changed nothing. The ring is left
    out: only the control plane writes it."""
    out = {}
    for name in ("config", "vips", "services", "svc_conf", "reals", "sched_pos", "conns",
                 "templates", "svc_stats", "real_stats"):
        m = getattr(d.maps, name)
        rows = []
        for k, v in m.items():
            vb = b"".join(bytes(x) for x in v) if isinstance(v, list) else bytes(v)
            rows.append((bytes(k), vb))
        out[name] = sorted(rows)
    return out
