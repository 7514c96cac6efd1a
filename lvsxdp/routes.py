"""Where the kernel routes to each real server, for direct routing.

IPVS sends a DR packet the way the kernel routes to the real
(__ip_vs_get_out_rt with IP_VS_RT_MODE_KNOWN_NH): out of the route's
interface, to the real's own MAC there - any interface, not only the one the
packet came in on. lvsxdp asks the kernel the same (a route lookup, then the
neighbour table on that interface) and caches the answer per real in the
reals map, so that no packet pays a FIB lookup. Only interfaces lvsxdp
serves (`lvsxdp up IFACE...`) can carry a real's packets: a real that no
route reaches, or that is reached only through another interface, is
unreachable, with the reason.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass

from . import shared
from .plan import Hop

RTN_UNICAST, RTN_LOCAL = 1, 2
RTN_NAMES = {3: "a broadcast address", 4: "an anycast address", 5: "a multicast address",
             6: "a blackhole route", 7: "an unreachable route", 8: "a prohibit route",
             9: "a throw route", 10: "a NAT route"}
# REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT: the MAC is there
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80


# The kernel's rtnetlink groups whose news can change a real's hop: links
# (an interface's MAC, MTU, state), neighbours (a real's MAC found, changed,
# failed), addresses and routes (which interface reaches a real, from what).
RTMGRP_LINK, RTMGRP_NEIGH = 0x1, 0x4
RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
HOP_GROUPS = (RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
              | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE)


class NetWatch:
    """Whether anything that decides a real's hop may have changed since the
    last call: the kernel's own rtnetlink notifications (as keepalived and
    routing daemons follow the kernel), so that an idle director asks the
    kernel nothing. The messages are not parsed: any news means "read the
    routes and neighbours again", and a lost one (the socket's buffer ran
    over: ENOBUFS) means the same."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, HOP_GROUPS))

    def changed(self) -> bool:
        news = False
        while True:
            try:
                if not self.sock.recv(65536):
                    return news
            except BlockingIOError:
                return news
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
            news = True

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Iface:
    """An interface lvsxdp serves: slot 0 is the VIP side."""
    name: str
    ifindex: int
    mac: bytes
    mtu: int
    slot: int


def served(ipr, links: list) -> list[Iface]:
    """The served interfaces, by name or ifindex, in slot order."""
    out = []
    for slot, link in enumerate(links):
        msg = ipr.link("get", **({"index": link} if isinstance(link, int) else
                                 {"ifname": link}))[0]
        mac = bytes.fromhex((msg.get_attr("IFLA_ADDRESS") or "").replace(":", ""))
        out.append(Iface(msg.get_attr("IFLA_IFNAME"), msg["index"], mac,
                         msg.get_attr("IFLA_MTU") or 1500, slot))
    return out


def write_ifaces(maps, ifaces: list[Iface]) -> None:
    """The served interfaces into the ifaces map (whose MAC a NAT reply is
    sent to, and from), and the VIP side's MAC into config: what the data
    plane takes as addressed to the director. Interfaces no longer served
    leave the map."""
    keep = {i.ifindex for i in ifaces}
    for key in list(maps.ifaces.keys()):
        if key.value not in keep:
            maps.ifaces.delete(key)
    for i in ifaces:
        entry = shared.Iface(slot=i.slot, mtu=i.mtu)
        entry.mac[:] = list(i.mac)
        maps.ifaces.update(ctypes.c_uint32(i.ifindex), entry)
    vip_side = next((i for i in ifaces if i.slot == 0), None)
    if vip_side is not None:
        cfg = maps.read_config()
        if bytes(cfg.mac) != vip_side.mac:
            cfg.mac[:] = list(vip_side.mac)
            maps.config.update(ctypes.c_uint32(0), cfg)


def served_ports(maps) -> list[int]:
    """The ifindexes in tx_ports, in slot order: what the running director
    serves (`lvsxdp up` writes them)."""
    out = []
    for slot in range(maps.tx_ports.max_entries):
        try:
            v = maps.tx_ports.lookup(ctypes.c_uint32(slot))
        except OSError:
            v = None
        if v is None or not v.value:
            break
        out.append(v.value)
    return out


@dataclass(frozen=True)
class Route:
    """The kernel's route to a real: its interface, or why there is none."""
    ifindex: int = 0
    unreachable: str = ""
    src: str = ""  # the address the kernel would send from (RTA_PREFSRC)


def route_to(ipr, addr, ifaces: list[Iface]) -> Route:
    """The egress interface of the kernel's route to addr, as `ip route get`
    finds it; unreachable when none, or one lvsxdp does not serve."""
    from pyroute2 import NetlinkError  # noqa: PLC0415

    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        msg = ipr.route("get", dst=str(addr), family=family)[0]
    except NetlinkError as e:
        return Route(unreachable=f"no route ({os.strerror(e.code or errno.ENETUNREACH)})")
    kind = msg["type"]
    if kind == RTN_LOCAL:
        return Route(unreachable="a local address of the director (LVS Local forwarding "
                                 "is not supported)")
    if kind != RTN_UNICAST:
        return Route(unreachable=f"routed to {RTN_NAMES.get(kind, f'route type {kind}')}")
    oif = msg.get_attr("RTA_OIF") or 0
    if not any(i.ifindex == oif for i in ifaces):
        try:
            name = socket.if_indextoname(oif)
        except OSError:
            name = f"ifindex {oif}"
        return Route(oif, f"routed via {name}, which lvsxdp does not serve "
                          f"(`lvsxdp up {' '.join([*(i.name for i in ifaces), name])}`)")
    return Route(oif, src=msg.get_attr("RTA_PREFSRC") or "")


def neighbours(ipr, ifindex: int, addrs) -> dict:
    """MACs the kernel's neighbour table has for these addresses on ifindex."""
    out = {}
    for n in ipr.get_neighbours(ifindex=ifindex):
        dst = n.get_attr("NDA_DST")
        mac = n.get_attr("NDA_LLADDR")
        if dst is None or mac is None or not n["state"] & NUD_USABLE:
            continue
        addr = ipaddress.ip_address(dst)
        if addr in addrs:
            out[addr] = bytes.fromhex(mac.replace(":", ""))
    return out


def hops(ipr, routes: dict, ifaces: list[Iface]) -> dict:
    """Each real's Hop from its route (addr -> Route) and the neighbour
    table of its egress interface; mac None while the kernel has not
    resolved it (the agent's managed neighbour entries make it)."""
    by_index = {i.ifindex: i for i in ifaces}
    out = {}
    for ifindex, iface in by_index.items():
        want = {a for a, r in routes.items() if r.ifindex == ifindex and not r.unreachable}
        if not want:
            continue
        macs = neighbours(ipr, ifindex, want)
        for addr in want:
            out[addr] = Hop(mac=macs.get(addr), ifindex=ifindex, smac=iface.mac,
                            slot=iface.slot, mtu=iface.mtu, saddr=routes[addr].src)
    for addr, r in routes.items():
        if r.unreachable:
            out[addr] = Hop(mac=None, ifindex=r.ifindex, unreachable=r.unreachable)
    return out


def resolve(ipr, addrs, ifaces: list[Iface]) -> dict:
    """addr -> Hop for every address, asking the kernel now."""
    return hops(ipr, {a: route_to(ipr, a, ifaces) for a in addrs}, ifaces)
