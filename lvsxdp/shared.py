"""ctypes mirrors of bpf/lvsxdp_shared.h (tests/test_shared_layout.py keeps
them in step with what the compiler makes of the header)."""

from __future__ import annotations

import ctypes
import ipaddress
import socket

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

MAX_SERVICES = 256
MAX_REALS = 4096
RING_SLOTS = 4096

AF_INET = 2
AF_INET6 = 10

VIP_F_TCP0 = 1 << 0
VIP_F_UDP0 = 1 << 1
VIP_F_FTP = 1 << 2

SVC_F_ACTIVE = 1 << 0
SVC_F_PERSISTENT = 1 << 1
SVC_F_SCHED_FALLBACK = 1 << 2
SVC_F_SCHED_PORT = 1 << 3

SCHED_RR = 0
SCHED_WRR = 1
SCHED_LC = 2
SCHED_WLC = 3
SCHED_SED = 4
SCHED_NQ = 5
SCHED_SH = 6
SCHED_DH = 7
SCHED_MH = 8
SCHEDULERS = {"rr": SCHED_RR, "wrr": SCHED_WRR, "lc": SCHED_LC, "wlc": SCHED_WLC,
              "sed": SCHED_SED, "nq": SCHED_NQ, "sh": SCHED_SH, "dh": SCHED_DH, "mh": SCHED_MH}
SH_TAB_SIZE = 256
MH_TAB_SIZE = 4093

REAL_F_AVAILABLE = 1 << 0
REAL_F_MAC_VALID = 1 << 1
REAL_F_TRASH = 1 << 2

FWD_ROUTE = 0
FWD_MASQ = 1
FWD_TUNNEL = 2
FWDS = {"route": FWD_ROUTE, "masq": FWD_MASQ, "tunnel": FWD_TUNNEL}
TUN_IPIP = 0
TUN_GUE = 1
TUN_GRE = 2
TUN_TYPES = {"ipip": TUN_IPIP, "gue": TUN_GUE, "gre": TUN_GRE}
TUN_F_CSUM = 1 << 0
TUN_F_REMCSUM = 1 << 1
MAX_IFACES = 64

# Kernels without may_goto walk a scheduler in a program of its own
# (bpf/sched.h): LVS_SCHED_CHUNK steps a call; the programs it tail-calls.
SCHED_CHUNK = 256
PROG_RESUME = 0
PROG_SCHED_SEQ = 1
PROG_SCHED_LEAST = 2
PROG_SCHED_FALLBACK = 3
PROG_NAT = 4
PROG_NAT_REPLY = 5
PROG_TUNNEL = 6
PROG_TOO_BIG = 7
PROG_ICMP = 8
PROGS = 9
# The program in each slot of the progs array.
PROG_NAMES = {PROG_RESUME: "lvsxdp_resume", PROG_SCHED_SEQ: "lvsxdp_sched_seq",
              PROG_SCHED_LEAST: "lvsxdp_sched_least",
              PROG_SCHED_FALLBACK: "lvsxdp_sched_fallback", PROG_NAT: "lvsxdp_nat",
              PROG_NAT_REPLY: "lvsxdp_nat_reply", PROG_TUNNEL: "lvsxdp_tunnel",
              PROG_TOO_BIG: "lvsxdp_too_big", PROG_ICMP: "lvsxdp_icmp"}

CFG_F_EXPIRE_NODEST_CONN = 1 << 0
CFG_F_EXPIRE_QUIESCENT_TEMPLATE = 1 << 1
CFG_F_FWMARK = 1 << 2
CFG_F_NAT = 1 << 3

# IPVS's TCP states (include/uapi/linux/ip_vs.h order), then UDP's one state.
STATES = [
    "NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK", "UDP",
]
S = {name: i for i, name in enumerate(STATES)}
# What IPVS counts in ActiveConn (tcp_state_active): every other state, and
# UDP, is InActConn.
ACTIVE_STATES = (S["ESTABLISHED"], S["SYN_SENT"], S["SYN_RECV"])

# Default timeouts, seconds (ip_vs_proto_tcp.c tcp_timeouts, udp 300).
DEFAULT_TIMEOUTS = {
    "NONE": 2, "ESTABLISHED": 900, "SYN_SENT": 120, "SYN_RECV": 60,
    "FIN_WAIT": 120, "TIME_WAIT": 120, "CLOSE": 10, "CLOSE_WAIT": 60,
    "LAST_ACK": 30, "LISTEN": 120, "SYNACK": 120, "UDP": 300,
}

REASONS = [
    "not_ip", "truncated", "bad_ip", "fragment", "ipv6_ext", "not_tcp_udp",
    "not_for_us", "no_service", "not_syn", "no_real", "real_gone", "map_full", "held_full",
    "bad_csum", "bad_options", "martian", "ttl_exceeded", "too_big", "no_route", "no_headroom",
]
R = {name: i for i, name in enumerate(REASONS)}

NS = 1_000_000_000


class Tuple(ctypes.Structure):
    _fields_ = [
        ("family", u8), ("proto", u8), ("cport", u16), ("vport", u16), ("pad", u16),
        ("caddr", u32 * 4), ("vaddr", u32 * 4),
    ]


# "May be present" filters (bpf/filter.h, lvsxdp/filter.py).
FILTER_BITS = 16
FILTER_SLOTS = 1 << FILTER_BITS
FILTER_CONNS = 0
FILTER_TEMPLATES = 1


class Filter(ctypes.Structure):
    _fields_ = [("slots", u8 * (8 * FILTER_SLOTS)), ("built", u32),
                ("sparse", u32)]


class Conn4Key(ctypes.Structure):
    _fields_ = [
        ("caddr", u32), ("vaddr", u32), ("cport", u16), ("vport", u16), ("proto", u8),
        ("pad", u8 * 3),
    ]


class VipKey(ctypes.Structure):
    _fields_ = [("family", u8), ("pad", u8 * 3), ("addr", u32 * 4)]


class SvcKey(ctypes.Structure):
    _fields_ = [
        ("fwmark", u32), ("family", u8), ("proto", u8), ("vport", u16), ("vaddr", u32 * 4),
    ]


class Service(ctypes.Structure):
    _fields_ = [
        ("netmask", u32 * 4), ("timeout_ns", u64), ("fwmark", u32), ("ring_off", u32),
        ("ring_len", u32), ("vport", u16), ("flags", u8), ("sched", u8), ("family", u8),
        ("proto", u8), ("pad", u8 * 6),
    ]


class Real(ctypes.Structure):
    _fields_ = [
        ("ref", u32), ("svc", u16), ("weight", u16), ("mac", u8 * 6), ("flags", u16),
        ("addr", u32 * 4), ("port", u16), ("family", u8), ("fwd", u8),
        ("u_threshold", u32), ("l_threshold", u32),
        ("ifindex", u32), ("smac", u8 * 6), ("tx_slot", u16), ("mtu", u32),
        ("tun_saddr", u32 * 4), ("tun_port", u16), ("tun_type", u8), ("tun_flags", u8),
        ("pad2", u32),
    ]


class Iface(ctypes.Structure):
    _fields_ = [("mac", u8 * 6), ("slot", u16), ("mtu", u32)]


class NatRev(ctypes.Structure):
    _fields_ = [("vaddr", u32 * 4), ("vport", u16), ("svc", u16), ("real", u32),
                ("cmac", u8 * 6), ("pad", u16), ("cifindex", u32)]


class FwdScratch(ctypes.Structure):
    _fields_ = [("real", u32), ("mtu", u32), ("svc", u16), ("new_conn", u8), ("pad", u8),
                ("pad2", u32), ("err_src", u32 * 4)]


class Load(ctypes.Structure):
    _fields_ = [("active", ctypes.c_int64), ("inactive", ctypes.c_int64), ("ref", u32),
                ("overload", u32)]


class LoadFix(ctypes.Structure):
    _fields_ = [("active", ctypes.c_int64), ("inactive", ctypes.c_int64), ("ref", u32),
                ("pad", u32)]


class Conn(ctypes.Structure):
    _fields_ = [
        ("expires", u64), ("vouched", u64), ("real", u32), ("svc", u16), ("state", u8),
        ("flags", u8),
    ]


TPL_F_ASSURED = 1 << 0
TPL_F_INVALID = 1 << 1
TPL_F_REARMED = 1 << 2
TPL_PORT_INVALID = 0xFFFF
CONN_F_OPEN = 1 << 0

# The tables whose kind changed once (bpf/maps.h: LRU -> held hash): a pinned
# one of the other kind is from an older lvsxdp.
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_LRU_HASH = 9
MAP_KINDS = {
    "conns4": BPF_MAP_TYPE_HASH, "conns6": BPF_MAP_TYPE_HASH, "templates": BPF_MAP_TYPE_HASH,
    "syn4": BPF_MAP_TYPE_LRU_HASH, "syn6": BPF_MAP_TYPE_LRU_HASH,
    "tpl_new": BPF_MAP_TYPE_LRU_HASH, "nat_rev": BPF_MAP_TYPE_HASH,
}


class Template(ctypes.Structure):
    _fields_ = [
        ("expires", u64), ("ctl_until", u64), ("created", u64), ("real", u32), ("svc", u16),
        ("flags", u16), ("closing_until", u64), ("n_open", u32), ("pad", u32),
    ]


class Config(ctypes.Structure):
    _fields_ = [
        ("timeout_ns", u64 * 16), ("extend_ns", u64), ("vouch_slack_ns", u64),
        ("mac", u8 * 6), ("flags", u16), ("ifindex", u32), ("netns_cookie", u64),
        ("started", u64),
    ]


MARK_PORT_SLOTS = 2 * 65536
MARK_COMBOS = 131072
MARK_PREFIXES = 65536
MARK_F_ACTIVE = 1 << 0
MARK_F_SRC = 1 << 1


class MarkCfg(ctypes.Structure):
    _fields_ = [("flags", u32), ("gen", u32)]


class MarkAddrKey(ctypes.Structure):
    _fields_ = [("prefixlen", u32), ("gen", u8), ("pad", u8 * 3), ("addr", u32)]


class MarkKey(ctypes.Structure):
    _fields_ = [("gen", u32), ("dst", u32), ("src", u32), ("port", u32)]


class Stats(ctypes.Structure):
    _fields_ = [("conns", u64), ("packets", u64), ("bytes", u64), ("out_packets", u64),
                ("out_bytes", u64)]


class Est(ctypes.Structure):
    _fields_ = [
        ("last_conns", u64), ("last_packets", u64), ("last_bytes", u64), ("cps", u64),
        ("pps", u64), ("bps", u64), ("owner", u32), ("zeroed", u32),
    ]


class SchedWalk(ctypes.Structure):
    _fields_ = [
        ("start", u64), ("best_oh", u64), ("best_w", u64), ("best", u32), ("next", u32),
        ("key", u32), ("h", u32),
    ]


class SchedScratch(ctypes.Structure):
    _fields_ = [("tuple", Tuple), ("walk", SchedWalk), ("svc", u32), ("done", u32)]


# Every pinned map: name -> (key type, value type).
MAPS = {
    "config": (u32, Config),
    "vips": (VipKey, u32),
    "services": (SvcKey, u32),
    "svc_conf": (u32, Service),
    "reals": (u32, Real),
    "sched_ring": (u32, u32),
    "sched_pos": (u32, u64),
    "real_load": (u32, Load),
    "real_load_fix": (u32, LoadFix),
    "conns4": (Conn4Key, Conn),
    "conns6": (Tuple, Conn),
    "templates": (Tuple, Template),
    "syn4": (Conn4Key, Conn),
    "syn6": (Tuple, Conn),
    "tpl_new": (Tuple, Template),
    "filter": (u32, Filter),
    "mark_cfg": (u32, MarkCfg),
    "mark_dst": (MarkAddrKey, u32),
    "mark_src": (MarkAddrKey, u32),
    "mark_port": (u32, u32),
    "mark_combo": (MarkKey, u32),
    "svc_stats": (u32, Stats),
    "real_stats": (u32, Stats),
    "reasons": (u32, u64),
    "svc_est": (u32, Est),
    "real_est": (u32, Est),
    "progs": (u32, u32),
    "tx_ports": (u32, u32),
    "sched_scratch": (u32, SchedScratch),
    "ifaces": (u32, Iface),
    "nat_rev": (Tuple, NatRev),
    "fwd_scratch": (u32, FwdScratch),
}


def ref_index(ref: int) -> int:
    return ref & 0xFFFF


def addr_words(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[int]:
    """An address as the data plane holds it: four u32 in network byte order,
    an IPv4 address in the first word."""
    raw = addr.packed + bytes(16 - len(addr.packed))
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)]


def words_addr(family: int, words) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = b"".join(int(w).to_bytes(4, "little") for w in words)
    if family == AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw)


def set_words(arr, addr) -> None:
    for i, w in enumerate(addr_words(addr)):
        arr[i] = w


def htons(port: int) -> int:
    return socket.htons(port)


def ntohs(port: int) -> int:
    return socket.ntohs(port)
