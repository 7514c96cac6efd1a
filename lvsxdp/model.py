"""The director's configuration as an LVS operator knows it: services, their
real servers, timeouts. Plain dataclasses, no I/O; saved as JSON.

A Service or RealServer also carries the map slot it occupies (index, and for
a real its ref with a generation), so that a change rewrites only what it
changes and templates never follow a reused slot to another real.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
from dataclasses import dataclass, field

from . import shared

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PERSISTENCE = 360  # IPVS_SVC_PERSISTENT_TIMEOUT
DEFAULT_EXTEND = 120  # the seed's 2-minute extension step
PROTOS = {"tcp": 6, "udp": 17}


class ConfigError(ValueError):
    """A change the configuration refuses; the message is one line for the
    operator, in ipvsadm's words where ipvsadm has them. code is the exit
    status ipvsadm gives it: 2 for what ipvsadm itself refuses, 255 for what
    the kernel refuses (ipvsadm exits -1), 1 where list_service fails."""

    def __init__(self, msg: str, code: int = 2) -> None:
        super().__init__(msg)
        self.code = code


@dataclass
class RealServer:
    addr: Address
    port: int
    weight: int = 1
    fwd: str = "route"  # "route" (-g), "masq" (-m), "tunnel" (-i)
    tun_type: str = "ipip"  # -i: "ipip" (ip6ip6 for IPv6), "gue" or "gre"
    tun_port: int = 0  # --tun-port (gue)
    tun_flags: int = 0  # shared.TUN_F_CSUM (--tun-csum) or TUN_F_REMCSUM (--tun-remcsum)
    u_threshold: int = 0  # -x: no new connections at this many (0: no limit)
    l_threshold: int = 0  # -y: take new ones again below this many
    last_weight: int = 0  # the latest weight > 0 (mh keeps a quiesced real's table slots)
    index: int = -1
    ref: int = 0

    def key(self) -> tuple:
        return (self.addr, self.port)

    def addrport(self) -> str:
        return format_addrport(self.addr, self.port)


@dataclass
class Service:
    proto: str  # "tcp" | "udp"; "" for a firewall-mark service
    addr: Address | None
    port: int
    fwmark: int = 0
    family: int = shared.AF_INET
    scheduler: str = "wlc"
    persistent: bool = False
    timeout: int = DEFAULT_PERSISTENCE
    netmask: int = 32  # prefix length (-M)
    sched_flags: list[str] = field(default_factory=list)  # -b: sh-port, mh-fallback, ...
    reals: list[RealServer] = field(default_factory=list)
    index: int = -1

    def key(self) -> tuple:
        if self.fwmark:
            return ("fwm", self.family, self.fwmark)
        return (self.proto, self.addr, self.port)

    def name(self) -> str:
        """How ipvsadm names it in -L: `TCP  198.18.2.1:0`, `FWM  10`."""
        if self.fwmark:
            return f"FWM  {self.fwmark}"
        return f"{self.proto.upper()}  {format_addrport(self.addr, self.port)}"

    def find_real(self, addr: Address, port: int) -> RealServer | None:
        for r in self.reals:
            if r.key() == (addr, port):
                return r
        return None


@dataclass
class Settings:
    """Director-wide settings: `ipvsadm --set` and the IPVS sysctls."""

    tcp: int = shared.DEFAULT_TIMEOUTS["ESTABLISHED"]
    tcpfin: int = shared.DEFAULT_TIMEOUTS["FIN_WAIT"]
    udp: int = shared.DEFAULT_TIMEOUTS["UDP"]
    extend: int = DEFAULT_EXTEND
    expire_nodest_conn: bool = False
    expire_quiescent_template: bool = False


@dataclass
class Config:
    services: list[Service] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    generation: int = 0  # last generation handed to a real slot
    # `lvsxdp iptables -t mangle ...` rules (iptables.MarkRule), applied after
    # the kernel's own mangle PREROUTING rules
    mark_rules: list = field(default_factory=list)
    # IPVS's trash: reals removed (-d, -D, -C) while connections or templates
    # may still name them, under a copy of their service's key (no slot of
    # its own). They keep their slot and ref: `-L -c` still shows their
    # address, and an `-a` of the same real revives them, so that their
    # connections resume. Emptied by purge_trash once nothing names them.
    trash: list[Service] = field(default_factory=list)

    def copy(self) -> Config:
        return copy.deepcopy(self)

    def find_service(self, key: tuple) -> Service | None:
        for s in self.services:
            if s.key() == key:
                return s
        return None

    # -- the trash ---------------------------------------------------------
    def trash_reals(self, svc: Service, reals: list[RealServer]) -> None:
        """Moves removed reals of svc to the trash (ip_vs_dest_trash)."""
        reals = [r for r in reals if r.index >= 0]
        if not reals:
            return
        ghost = next((g for g in self.trash if g.key() == svc.key()), None)
        if ghost is None:
            ghost = Service(proto=svc.proto, addr=svc.addr, port=svc.port, fwmark=svc.fwmark,
                            family=svc.family)
            self.trash.append(ghost)
        ghost.reals.extend(reals)

    def revive(self, svc: Service, addr: Address, port: int) -> RealServer | None:
        """The trashed real of svc with this address and port, taken out of
        the trash (ip_vs_trash_get_dest), or None."""
        for ghost in self.trash:
            if ghost.key() == svc.key():
                real = ghost.find_real(addr, port)
                if real is not None:
                    ghost.reals.remove(real)
                    if not ghost.reals:
                        self.trash.remove(ghost)
                    return real
        return None

    def purge_trash(self, named: set[int] | None) -> None:
        """Frees trashed reals whose ref no live connection or template
        names (named: those refs; None: nothing runs, every one goes)."""
        for ghost in self.trash:
            ghost.reals = [r for r in ghost.reals if named is not None and r.ref in named]
        self.trash = [g for g in self.trash if g.reals]

    def trashed(self) -> list[tuple[Service, RealServer]]:
        return [(g, r) for g in self.trash for r in g.reals]

    # -- slots -------------------------------------------------------------
    def assign_slots(self) -> None:
        """Gives every service and real without a slot the lowest free one."""
        used = {s.index for s in self.services if s.index >= 0}
        for s in self.services:
            if s.index < 0:
                s.index = _lowest_free(used, shared.MAX_SERVICES, "services")
                used.add(s.index)
        used = {r.index for s in self.services + self.trash for r in s.reals if r.index >= 0}
        for s in self.services:
            for r in s.reals:
                if r.index < 0:
                    r.index = _lowest_free(used, shared.MAX_REALS, "real servers")
                    used.add(r.index)
                    self.generation = self.generation % 0xFFFF + 1
                    r.ref = (self.generation << 16) | r.index

    # -- JSON --------------------------------------------------------------
    def to_json(self) -> str:
        def enc(o):
            if isinstance(o, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                return str(o)
            raise TypeError(o)

        raw = dataclasses.asdict(self)
        raw["mark_rules"] = [r.to_dict() for r in self.mark_rules]
        return json.dumps(raw, default=enc, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        raw = json.loads(text)
        def service(s: dict) -> Service:
            reals = [
                RealServer(**{**r, "addr": ipaddress.ip_address(r["addr"])})
                for r in s.pop("reals", [])
            ]
            addr = ipaddress.ip_address(s["addr"]) if s.get("addr") else None
            return Service(**{**s, "addr": addr, "reals": reals})

        services = [service(s) for s in raw.get("services", [])]
        from .iptables import MarkRule  # noqa: PLC0415 - iptables imports model

        return cls(
            services=services,
            settings=Settings(**raw.get("settings", {})),
            generation=raw.get("generation", 0),
            mark_rules=[MarkRule.from_dict(r) for r in raw.get("mark_rules", [])],
            trash=[service(s) for s in raw.get("trash", [])],
        )


def _lowest_free(used: set[int], limit: int, what: str) -> int:
    for i in range(limit):
        if i not in used:
            return i
    raise ConfigError(f"Too many {what} (at most {limit})")


def format_addrport(addr: Address | None, port: int) -> str:
    if isinstance(addr, ipaddress.IPv6Address):
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"
