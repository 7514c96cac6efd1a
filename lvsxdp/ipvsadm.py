"""`ipvsadm` command lines -> changes of a Config, and a Config (plus live
counters) -> ipvsadm's listings, byte for byte. Pure: no maps, no root.

The option surface and the messages follow ipvsadm 1.31 (ipvsadm.c); what
lvsxdp does not do yet is refused with one line naming it, and nothing is
changed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from . import shared
from .model import PROTOS, Config, ConfigError, RealServer, Service, format_addrport

SUPPORTED_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh")
KNOWN_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo",
                    "ovf", "mh")
MAX_TIMEOUT = 86400 * 31  # ipvsadm: persistence timeout up to 31 days
MAX_THRESHOLD = 2**31 - 1  # ipvsadm: -x and -y up to INT_MAX
FWD_NAMES = {"route": ("Route", "-g"), "tunnel": ("Tunnel", "-i"), "masq": ("Masq", "-m")}

# command options: short, long
_COMMANDS = {
    "-A": "add-service", "--add-service": "add-service",
    "-E": "edit-service", "--edit-service": "edit-service",
    "-D": "delete-service", "--delete-service": "delete-service",
    "-C": "clear", "--clear": "clear",
    "-R": "restore", "--restore": "restore",
    "-S": "save", "--save": "save",
    "-a": "add-server", "--add-server": "add-server",
    "-e": "edit-server", "--edit-server": "edit-server",
    "-d": "delete-server", "--delete-server": "delete-server",
    "-L": "list", "-l": "list", "--list": "list",
    "-Z": "zero", "--zero": "zero",
    "--set": "set",
    "-h": "help", "--help": "help",
    "--start-daemon": "start-daemon", "--stop-daemon": "stop-daemon",
}
# options taking an argument
_ARG_OPTIONS = {
    "-t": "tcp-service", "--tcp-service": "tcp-service",
    "-u": "udp-service", "--udp-service": "udp-service",
    "--sctp-service": "sctp-service",
    "-f": "fwmark-service", "--fwmark-service": "fwmark-service",
    "-s": "scheduler", "--scheduler": "scheduler",
    "-M": "netmask", "--netmask": "netmask",
    "-r": "real-server", "--real-server": "real-server",
    "-w": "weight", "--weight": "weight",
    "-x": "u-threshold", "--u-threshold": "u-threshold",
    "-y": "l-threshold", "--l-threshold": "l-threshold",
    "-b": "sched-flags", "--sched-flags": "sched-flags",
    "--pe": "pe", "--mcast-interface": "mcast-interface", "--syncid": "syncid",
    "-j": "tun-type", "--tun-type": "tun-type",
}
# flag options
_FLAG_OPTIONS = {
    "-g": "gatewaying", "--gatewaying": "gatewaying",
    "-i": "ipip", "--ipip": "ipip",
    "-m": "masquerading", "--masquerading": "masquerading",
    "-n": "numeric", "--numeric": "numeric",
    "-c": "connection", "--connection": "connection",
    "-6": "ipv6", "--ipv6": "ipv6",
    "-o": "ops", "--ops": "ops",
    "--stats": "stats", "--rate": "rate", "--exact": "exact",
    "--persistent-conn": "persistent-conn", "--thresholds": "thresholds",
    "--timeout": "timeout", "--sort": "sort", "--nosort": "nosort", "--daemon": "daemon",
    "-X": "exact", "--tun-info": "tun-info",
}
_SHORT_FLAGS = {k[1] for k in _FLAG_OPTIONS if len(k) == 2} | {
    k[1] for k in _COMMANDS if len(k) == 2
}


@dataclass
class Command:
    op: str = ""
    opts: dict = field(default_factory=dict)
    persistent: int | None = None  # -p given: timeout (default when bare)
    args: list = field(default_factory=list)  # --set's three numbers


def _fail(msg: str) -> ConfigError:
    return ConfigError(msg)


def parse(argv: list[str]) -> Command:
    """Parses one ipvsadm command line (without the word ipvsadm)."""
    cmd = Command()
    i = 0
    toks = list(argv)

    def set_op(op: str) -> None:
        if cmd.op and cmd.op != op:
            raise _fail("multiple commands specified")
        cmd.op = op

    while i < len(toks):
        tok = toks[i]
        i += 1
        if tok in ("-p", "--persistent"):
            cmd.persistent = 360
            if i < len(toks) and not toks[i].startswith("-"):
                cmd.persistent = _number(toks[i], 1, MAX_TIMEOUT,
                                         "illegal timeout for persistent service")
                i += 1
            continue
        if tok.startswith("-p") and not tok.startswith("--") and tok[2:].isdigit():
            cmd.persistent = _number(tok[2:], 1, MAX_TIMEOUT,
                                     "illegal timeout for persistent service")
            continue
        if "=" in tok and tok.startswith("--"):
            name, _, val = tok.partition("=")
            toks.insert(i, val)
            tok = name
        if tok in _COMMANDS:
            set_op(_COMMANDS[tok])
            if cmd.op == "set":
                cmd.args = toks[i:i + 3]
                if len(cmd.args) != 3:
                    raise _fail("--set requires three timeouts: tcp tcpfin udp")
                i += 3
            continue
        if tok in _ARG_OPTIONS:
            if i >= len(toks):
                raise _fail(f"option {tok} requires an argument")
            cmd.opts[_ARG_OPTIONS[tok]] = toks[i]
            i += 1
            continue
        if tok in _FLAG_OPTIONS:
            cmd.opts[_FLAG_OPTIONS[tok]] = True
            continue
        # bundled short options: -Ln, -lnc, -tVIP (popt accepts both)
        if re.fullmatch(r"-[A-Za-z0-9]{2,}", tok):
            if all(c in _SHORT_FLAGS for c in tok[1:]):
                toks[i:i] = [f"-{c}" for c in tok[1:]]
                continue
            if f"-{tok[1]}" in _ARG_OPTIONS:
                toks[i:i] = [f"-{tok[1]}", tok[2:]]
                continue
        raise _fail(f"unknown option: {tok}")
    if not cmd.op:
        if cmd.opts or cmd.persistent is not None:
            raise _fail("no command specified")
        cmd.op = "list"
    return cmd


def _number(text: str, lo: int, hi: int, msg: str) -> int:
    if not re.fullmatch(r"\d+", text or ""):
        raise _fail(msg)
    n = int(text)
    if not lo <= n <= hi:
        raise _fail(msg)
    return n


def _addrport(text: str, what: str, ipv6: bool) -> tuple[ipaddress._BaseAddress, int | None]:
    """`1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`, `2001:db8::1` (with -6)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", text)
    try:
        if m:
            addr = ipaddress.IPv6Address(m.group(1))
            port = m.group(2)
        elif text.count(":") > 1:
            addr, port = ipaddress.IPv6Address(text), None
        else:
            host, _, port = text.partition(":")
            addr = ipaddress.IPv4Address(host)
            port = port or None
            if text.endswith(":"):
                raise ValueError
    except ValueError:
        raise _fail(f"illegal {what} address[:port] specified") from None
    if port is not None:
        port = _number(port, 0, 65535, f"illegal {what} address[:port] specified")
    return addr, port


def _service_key(cmd: Command) -> tuple[tuple, dict]:
    """The service a command names: its Config key and the fields it sets."""
    kinds = [k for k in ("tcp-service", "udp-service", "fwmark-service", "sctp-service")
             if k in cmd.opts]
    if len(kinds) > 1:
        raise _fail("multiple service types specified")
    if not kinds:
        raise _fail(f"You need to supply the 'service-address' option for the '{cmd.op}' command")
    kind = kinds[0]
    text = cmd.opts[kind]
    if kind == "sctp-service":
        raise _fail("SCTP services are not supported by lvsxdp")
    if kind == "fwmark-service":
        mark = _number(text, 1, 0xFFFFFFFF, "illegal fwmark specified")
        family = shared.AF_INET6 if cmd.opts.get("ipv6") else shared.AF_INET
        return ("fwm", family, mark), {"proto": "", "addr": None, "port": 0, "fwmark": mark,
                                       "family": family}
    addr, port = _addrport(text, "virtual server", bool(cmd.opts.get("ipv6")))
    proto = "tcp" if kind == "tcp-service" else "udp"
    port = port or 0
    family = shared.AF_INET6 if addr.version == 6 else shared.AF_INET
    return (proto, addr, port), {"proto": proto, "addr": addr, "port": port, "family": family}


_SERVICE_ONLY = ("scheduler", "netmask", "sched-flags", "pe")
_SERVER_ONLY = ("real-server", "weight", "gatewaying", "ipip", "masquerading", "u-threshold",
                "l-threshold", "tun-type")


def _check_options(cmd: Command, allowed: tuple[str, ...]) -> None:
    for name in cmd.opts:
        if name not in allowed and name != "ipv6":
            raise _fail(f"Illegal '{name}' option with the '{cmd.op}' command")
    if cmd.persistent is not None and "persistent" not in allowed:
        raise _fail(f"Illegal 'persistent' option with the '{cmd.op}' command")


def apply(config: Config, cmd: Command) -> Config:
    """The configuration after cmd. Raises ConfigError, leaving config as it
    was, for anything ipvsadm (or lvsxdp) refuses."""
    new = config.copy()
    op = cmd.op
    if op == "clear":
        _check_options(cmd, ())
        for svc in new.services:
            new.trash_reals(svc, svc.reals)
        new.services = []
    elif op in ("add-service", "edit-service"):
        _check_options(cmd, ("tcp-service", "udp-service", "fwmark-service", "sctp-service",
                             "scheduler", "netmask", "persistent", "sched-flags", "pe", "ops"))
        _service_change(new, cmd)
    elif op == "delete-service":
        _check_options(cmd, ("tcp-service", "udp-service", "fwmark-service", "sctp-service"))
        key, _ = _service_key(cmd)
        svc = new.find_service(key)
        if svc is None:
            raise _fail("No such service")
        new.trash_reals(svc, svc.reals)
        new.services.remove(svc)
    elif op in ("add-server", "edit-server", "delete-server"):
        _check_options(cmd, ("tcp-service", "udp-service", "fwmark-service", "sctp-service")
                       + _SERVER_ONLY)
        _server_change(new, cmd)
    elif op == "set":
        _check_options(cmd, ())
        tcp, tcpfin, udp = (_number(a, 0, MAX_TIMEOUT, "illegal timeout value") for a in cmd.args)
        # ipvsadm --set: 0 leaves that timeout as it is
        if tcp:
            new.settings.tcp = tcp
        if tcpfin:
            new.settings.tcpfin = tcpfin
        if udp:
            new.settings.udp = udp
    else:
        raise _fail(f"ipvsadm {op} is not a configuration change")
    new.assign_slots()
    return new


def _service_change(new: Config, cmd: Command) -> None:
    key, fields = _service_key(cmd)
    existing = new.find_service(key)
    # ipvsadm's own checks come before the kernel's (exists / not found)
    if not fields.get("fwmark") and fields["port"] == 0 and cmd.persistent is None:
        raise _fail("Zero port specified for non-persistent service")
    for unsupported in ("pe", "ops"):
        if unsupported in cmd.opts:
            raise _fail(f"option --{unsupported} is not supported by lvsxdp yet")
    sched_flags = []
    if "sched-flags" in cmd.opts:
        # -b is checked against -s, or the scheduler the service keeps
        sched_flags = _parse_sched_flags(cmd.opts["sched-flags"], cmd.opts.get(
            "scheduler", existing.scheduler if existing and cmd.op == "edit-service" else "wlc"))
    if "netmask" in cmd.opts and cmd.persistent is None:
        raise _fail("netmask (-M) is only meaningful for a persistent service")
    netmask = _netmask(cmd.opts["netmask"], fields["family"]) if "netmask" in cmd.opts else None
    if cmd.op == "add-service" and existing is not None:
        raise _fail("Service already exists")
    if cmd.op == "edit-service" and existing is None:
        raise _fail("No such service")
    sched = cmd.opts.get("scheduler", existing.scheduler if existing else "wlc")
    if sched not in KNOWN_SCHEDULERS:
        raise _fail(f"Scheduler not found: ip_vs_{sched}.ko")
    if sched not in SUPPORTED_SCHEDULERS:
        raise _fail(f"scheduler {sched} is not supported by lvsxdp yet "
                    f"(supported: {', '.join(SUPPORTED_SCHEDULERS)})")
    svc = existing or Service(**fields)
    svc.scheduler = sched
    # like ipvsadm, an -E without -b clears the flags
    svc.sched_flags = sched_flags
    svc.persistent = cmd.persistent is not None
    if svc.persistent:
        svc.timeout = cmd.persistent
    # like ipvsadm, an -E without -M means the full mask again
    full = 128 if svc.family == shared.AF_INET6 else 32
    svc.netmask = netmask if netmask is not None else full
    if existing is None:
        new.services.append(svc)


# ipvsadm's parse_sched_flags: IP_VS_SVC_F_SCHED1..3, by the names each
# scheduler gives them (print_sched_flags); sh-* and mh-* only with their
# scheduler.
_PARSE_FLAG_BITS = {"flag-1": 1, "flag-2": 2, "flag-3": 4, "sh-fallback": 1, "sh-port": 2,
                    "mh-fallback": 1, "mh-port": 2}


def _parse_sched_flags(text: str, sched: str) -> list[str]:
    bits = 0
    words = [w for w in text.split(",") if w]  # strtok: empty words are skipped
    if not words:
        raise _fail(f"invalid scheduler flag `{text}'")
    for flag in words:
        if flag not in _PARSE_FLAG_BITS:
            raise _fail(f"invalid scheduler flag `{flag}'")
        if flag[:3] in ("sh-", "mh-") and flag[:2] != sched:
            raise _fail(f"incompatible scheduler flag `{flag}'")
        bits |= _PARSE_FLAG_BITS[flag]
    if sched in ("sh", "mh"):
        names = (f"{sched}-fallback", f"{sched}-port", "flag-3")
    else:
        names = ("flag-1", "flag-2", "flag-3")
    return [name for i, name in enumerate(names) if bits & (1 << i)]


def _netmask(text: str, family: int) -> int:
    try:
        if family == shared.AF_INET6:
            n = int(text)
            if not 0 <= n <= 128:
                raise ValueError
            return n
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        raise _fail("illegal virtual server persistent mask") from None


def _server_change(new: Config, cmd: Command) -> None:
    key, _ = _service_key(cmd)
    svc = new.find_service(key)
    if "real-server" not in cmd.opts:
        raise _fail(f"You need to supply the 'real-server' option for the '{cmd.op}' command")
    addr, port = _addrport(cmd.opts["real-server"], "real server", bool(cmd.opts.get("ipv6")))
    fwd = "route"
    if cmd.opts.get("ipip"):
        fwd = "tunnel"
    if cmd.opts.get("masquerading"):
        fwd = "masq"
    if fwd != "route":
        raise _fail(f"forwarding method {FWD_NAMES[fwd][1]} is not supported by lvsxdp yet "
                    "(supported: -g, direct routing)")
    if "tun-type" in cmd.opts:
        raise _fail("option --tun-type is not supported by lvsxdp yet")
    upper = lower = None
    if "u-threshold" in cmd.opts:
        upper = _number(cmd.opts["u-threshold"], 0, MAX_THRESHOLD, "illegal u_threshold specified")
    if "l-threshold" in cmd.opts:
        lower = _number(cmd.opts["l-threshold"], 0, MAX_THRESHOLD, "illegal l_threshold specified")
    if svc is None:
        raise _fail("Service not defined")
    if (addr.version == 6) != (svc.family == shared.AF_INET6):
        raise _fail("real server and virtual service address families differ")
    # Not masquerading: the real port is the service port (ipvsadm does this).
    port = svc.port
    existing = svc.find_real(addr, port)
    if cmd.op == "delete-server":
        if existing is None:
            raise _fail("No such destination")
        svc.reals.remove(existing)
        new.trash_reals(svc, [existing])
        return
    weight = None
    if "weight" in cmd.opts:
        weight = _number(cmd.opts["weight"], 0, 65535, "illegal weight specified")
    # ip_vs_add_dest and ip_vs_edit_dest refuse -y above -x (ERANGE) before
    # they look for the destination; -e keeps what it does not name
    keep = existing if cmd.op == "edit-server" and existing is not None else RealServer(addr, 0)
    upper = keep.u_threshold if upper is None else upper
    lower = keep.l_threshold if lower is None else lower
    if lower > upper:
        raise _fail("Numerical result out of range")
    if cmd.op == "add-server":
        if existing is not None:
            raise _fail("Destination already exists")
        weight = 1 if weight is None else weight
        # IPVS adds a destination at the head of the service's list: listings
        # show the newest first, and rr starts with it.
        real = RealServer(addr=addr, port=port, weight=weight, fwd=fwd,
                          u_threshold=upper, l_threshold=lower, last_weight=weight)
        trashed = new.revive(svc, addr, port)
        if trashed is not None:  # its connections and templates resume
            real.index, real.ref = trashed.index, trashed.ref
        svc.reals.insert(0, real)
    else:
        if existing is None:
            raise _fail("No such destination")
        if weight is not None:
            # IPVS keeps the latest weight > 0 (ip_vs_mh builds with it)
            if weight or existing.weight:
                existing.last_weight = weight or existing.weight
            existing.weight = weight
        existing.fwd = fwd
        existing.u_threshold = upper
        existing.l_threshold = lower


# -- listings ----------------------------------------------------------------
# ipvsadm 1.31's list_all, list_service, list_conn, list_timeout and
# list_daemon (ipvsadm.c), with its printf formats kept verbatim: _printf
# only drops C's `ll` length modifier, which Python's % does not take.
# Addresses and ports are always printed as with -n (ipvsadm without -n asks
# the resolver and /etc/services; lvsxdp never does).


@dataclass
class RealCounts:
    """Counters of one real server, or of one service (then active,
    inactive and persistent stay 0): what `ipvsadm -L` shows of it."""

    active: int = 0  # ActiveConn: connections in ESTABLISHED, SYN_SENT, SYN_RECV
    inactive: int = 0  # InActConn: every other connection (UDP's too, as in IPVS)
    persistent: int = 0  # PersistConn: live templates pointing at it
    conns: int = 0  # --stats: connections scheduled, packets and bytes forwarded
    packets: int = 0
    bytes: int = 0
    cps: int = 0  # --rate: ip_vs_est.c's estimates, already decoded
    pps: int = 0
    bps: int = 0


@dataclass
class Entry:
    """One row of `ipvsadm -L -c`: a connection or a template."""

    proto: str  # "TCP", "UDP", "IP"
    expire: int  # seconds left
    state: str
    source: str
    virtual: str
    destination: str
    template: bool = False


@dataclass
class Snapshot:
    """What the maps say right now, for listings."""

    conn_table_size: int = 4096
    reals: dict[int, RealCounts] = field(default_factory=dict)  # by real index
    services: dict[int, RealCounts] = field(default_factory=dict)  # by service index
    entries: list[Entry] = field(default_factory=list)


HEADER = "IP Virtual Server version 1.2.1 (size={size})"

# ipvsadm.c's optnames, in OPTC_ order: generic_opt_check walks them in this
# order, which decides the option an error names.
OPTNAMES = (
    "numeric", "connection", "service-address", "scheduler", "persistent", "netmask",
    "real-server", "forwarding-method", "weight", "u-threshold", "l-threshold",
    "mcast-interface", "timeout", "daemon", "stats", "rate", "thresholds", "persistent-conn",
    "nosort", "syncid", "exact", "ops", "pe", "sched-flags", "mcast-group", "mcast-port",
    "mcast-ttl", "sync-maxlen", "tun-info", "tun-type", "tun-port", "tun-nocsum", "tun-csum",
    "tun-remcsum",
)
# Command.opts names -> index in OPTNAMES (-6 and --sort are not options there)
_OPTC = {
    "numeric": 0, "connection": 1, "tcp-service": 2, "udp-service": 2, "fwmark-service": 2,
    "sctp-service": 2, "scheduler": 3, "netmask": 5, "real-server": 6, "gatewaying": 7,
    "ipip": 7, "masquerading": 7, "weight": 8, "u-threshold": 9, "l-threshold": 10,
    "mcast-interface": 11, "timeout": 12, "daemon": 13, "stats": 14, "rate": 15,
    "thresholds": 16, "persistent-conn": 17, "nosort": 18, "syncid": 19, "exact": 20,
    "ops": 21, "pe": 22, "sched-flags": 23, "mcast-group": 24, "mcast-port": 25,
    "mcast-ttl": 26, "sync-maxlen": 27, "tun-info": 28, "tun-type": 29, "tun-port": 30,
    "tun-nocsum": 31, "tun-csum": 32, "tun-remcsum": 33,
}
# commands_v_options' rows for `list` and `zero`, one character per OPTNAMES
# entry: 'x' illegal, '1' only one of them, ' ' optional.
_LIST_ROW = " 11" + "x" * 9 + "11" + " " * 7 + "x" * 7 + " " + "x" * 5
_ZERO_ROW = "xx " + "x" * 31


def _opt_check(cmd: Command, row: str, cmdname: str) -> set[str]:
    """ipvsadm's generic_opt_check for one command; returns the names (from
    OPTNAMES) of the options given."""
    given = {_OPTC[name] for name in cmd.opts if name in _OPTC}
    if cmd.persistent is not None:
        given.add(OPTNAMES.index("persistent"))
    last = None
    for j in sorted(given):
        if row[j] == "x":
            raise _fail(f"Illegal '{OPTNAMES[j]}' option with the '{cmdname}' command")
        if row[j] == "1":
            if last is not None:
                raise _fail(f"The option '{OPTNAMES[j]}' conflicts with the "
                            f"'{OPTNAMES[last]}' option in the '{cmdname}' command")
            last = j
    return {OPTNAMES[j] for j in given}


def _printf(fmt: str, *args) -> str:
    return re.sub(r"(%[-0-9*]*)ll", r"\1", fmt) % args


def print_largenum(i: int, exact: bool = False) -> str:
    """ipvsadm's print_largenum: 9 columns, K/M/G/T above 8 digits unless
    --exact (which widens the column instead)."""
    if exact:
        n = len(str(i))
        return _printf("%*llu", 9 if n <= 8 else n + 1, i)
    if i < 100000000:  # less than 100 million
        return _printf("%9llu", i)
    if i < 1000000000:  # less than 1 billion
        return _printf("%8lluK", i // 1000)
    if i < 100000000000:  # less than 100 billion
        return _printf("%8lluM", i // 1000000)
    if i < 100000000000000:  # less than 100 trillion
        return _printf("%8lluG", i // 1000000000)
    return _printf("%8lluT", i // 1000000000000)


def format_list(config: Config, cmd: Command, snap: Snapshot) -> str:
    """`ipvsadm -L` with every option ipvsadm 1.31 has for it."""
    opts = _opt_check(cmd, _LIST_ROW, "list")
    if (opts & {"connection", "timeout", "daemon"} and opts & {"stats", "rate", "thresholds"}) \
            or (opts & {"timeout", "daemon"} and "persistent-conn" in opts):
        raise _fail("options conflicts in the list command")
    if "connection" in opts:
        return format_connections(snap, persistent_conn="persistent-conn" in opts)
    if "timeout" in opts:
        s = config.settings
        return _printf("Timeout (tcp tcpfin udp): %d %d %d\n", s.tcp, s.tcpfin, s.udp)
    if "daemon" in opts:
        return ""  # list_daemon prints a line per running sync daemon: lvsxdp has none
    if "service-address" in opts:
        key, _ = _service_key(cmd)
        svc = config.find_service(key)
        if svc is None:
            raise _fail("No such service")
        # list_service: no version line
        return _title(opts) + _service_entry(svc, opts, snap)
    services = config.services
    if "nosort" not in opts:
        services = _glibc_msort(services, _cmp_services)
    out = HEADER.format(size=snap.conn_table_size) + "\n" + _title(opts)
    return out + "".join(_service_entry(svc, opts, snap) for svc in services)


def _title(opts: set[str]) -> str:
    """print_title."""
    if "stats" in opts:
        return _printf("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
                       "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes",
                       "OutBytes")
    if "rate" in opts:
        return _printf("%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
                       "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    if "thresholds" in opts:
        return _printf("%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n",
                       "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn",
                       "InActConn")
    if "persistent-conn" in opts:
        return _printf("%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n",
                       "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn",
                       "InActConn")
    if "tun-info" in opts:
        return ("Prot LocalAddress:Port Scheduler Flags\n"
                "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn "
                "InActConn\n")
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def _svc_name(svc: Service) -> str:
    """print_service_entry's svc_name (not -S's)."""
    if svc.fwmark:
        if svc.family == shared.AF_INET6:
            return _printf("FWM  %u IPv6", svc.fwmark)
        return _printf("FWM  %u", svc.fwmark)
    name = _printf("%-4s %s", svc.proto.upper(), format_addrport(svc.addr, svc.port))
    return name if svc.family == shared.AF_INET6 else name[:33]


# -b names by the flag bit they set (IP_VS_SVC_F_SCHED1..3), as
# print_sched_flags reads them back for each scheduler
_SCHED_FLAG_BITS = {"sh": ("sh-fallback", "sh-port"), "mh": ("mh-fallback", "mh-port")}
_GENERIC_FLAGS = ("flag-1", "flag-2", "flag-3")
_FLAG_BIT = {"flag-1": 0, "sh-fallback": 0, "mh-fallback": 0, "flag-2": 1, "sh-port": 1,
             "mh-port": 1, "flag-3": 2}


def _sched_flags(svc: Service) -> str:
    """print_sched_flags: the -b flags, by bit, named for the scheduler."""
    bits = {_FLAG_BIT[f] for f in svc.sched_flags if f in _FLAG_BIT}
    names = _SCHED_FLAG_BITS.get(svc.scheduler, _GENERIC_FLAGS)
    return ",".join(names[b] for b in sorted(bits) if b < len(names))


def _service_entry(svc: Service, opts: set[str], snap: Snapshot) -> str:
    """print_service_entry: the service's line, then its reals' lines."""
    exact = "exact" in opts
    name = _svc_name(svc)
    c = snap.services.get(svc.index, RealCounts())
    if "stats" in opts:
        line = _printf("%-33s", name) + "".join(
            print_largenum(v, exact) for v in (c.conns, c.packets, 0, c.bytes, 0))
    elif "rate" in opts:
        line = _printf("%-33s", name) + "".join(
            print_largenum(v, exact) for v in (c.cps, c.pps, 0, c.bps, 0))
    else:
        line = _printf("%s %s", name, svc.scheduler)
        flags = _sched_flags(svc)
        if flags:
            line += f" ({flags})"
        if svc.persistent:
            line += _printf(" persistent %u", svc.timeout)
            if svc.family == shared.AF_INET6:
                if svc.netmask != 128:
                    line += _printf(" mask %i", svc.netmask)
            elif svc.netmask != 32:
                mask = ipaddress.IPv4Network(f"0.0.0.0/{svc.netmask}").netmask
                line += _printf(" mask %s", mask)
    lines = [line + "\n"]
    reals = svc.reals if "nosort" in opts else _glibc_msort(svc.reals, _cmp_dests)
    for r in reals:
        dname = r.addrport() if r.addr.version == 6 else r.addrport()[:28]
        rc = snap.reals.get(r.index, RealCounts())
        if "stats" in opts:
            lines.append(_printf("  -> %-28s", dname) + "".join(
                print_largenum(v, exact) for v in (rc.conns, rc.packets, 0, rc.bytes, 0))
                + "\n")
        elif "rate" in opts:
            # cps and the pps are %8llu here, never abbreviated (ipvsadm's own quirk)
            lines.append(_printf("  -> %-28s %8llu %8llu %8llu", dname, rc.cps, rc.pps, 0)
                         + print_largenum(rc.bps, exact) + print_largenum(0, exact) + "\n")
        elif "thresholds" in opts:
            lines.append(_printf("  -> %-28s %-10u %-10u %-10u %-10u\n", dname, r.u_threshold,
                                 r.l_threshold, rc.active, rc.inactive))
        elif "persistent-conn" in opts:
            lines.append(_printf("  -> %-28s %-9u %-11u %-10u %-10u\n", dname, r.weight,
                                 rc.persistent, rc.active, rc.inactive))
        elif "tun-info" in opts:
            # fwd_tun_info is NULL for all but tunnels: "n/a"
            lines.append(_printf("  -> %-28s %-7s %-13s %-6d %-10u %-10u\n", dname,
                                 FWD_NAMES[r.fwd][0], "n/a", r.weight, rc.active, rc.inactive))
        else:
            lines.append(_printf("  -> %-28s %-7s %-6d %-10u %-10u\n", dname,
                                 FWD_NAMES[r.fwd][0], r.weight, rc.active, rc.inactive))
    return "".join(lines)


# -- ipvsadm's order: libipvs's comparisons, glibc's qsort -------------------

def _int(x: int) -> int:
    """A C unsigned difference stored in an int (ipvs_cmp_* do this)."""
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def _addr_cmp(a, b) -> int:
    """ipvs_cmp_*'s address step: word by word, as ints."""
    wa, wb = a.packed, b.packed
    r = 0
    for i in range(0, len(wa), 4):
        r = _int(int.from_bytes(wa[i:i + 4], "big") - int.from_bytes(wb[i:i + 4], "big"))
        if r:
            break
    return r


def _cmp_services(s1: Service, s2: Service) -> int:
    """libipvs's ipvs_cmp_services. A firewall-mark service reaches ipvsadm
    with protocol, address and port 0."""
    r = _int(s1.fwmark - s2.fwmark) or s1.family - s2.family
    if r or s1.fwmark:
        return r
    r = PROTOS.get(s1.proto, 0) - PROTOS.get(s2.proto, 0)
    return r or _addr_cmp(s1.addr, s2.addr) or s1.port - s2.port


def _cmp_dests(d1: RealServer, d2: RealServer) -> int:
    """libipvs's ipvs_cmp_dests."""
    return _addr_cmp(d1.addr, d2.addr) or d1.port - d2.port


def _glibc_msort(items: list, cmp) -> list:
    """glibc's qsort as Debian 12's glibc runs it (msort_with_tmp): a top-down
    merge sort taking from the left run while cmp <= 0. Any sort agrees for a
    consistent comparison; ipvs_cmp_* are not (int overflow between addresses
    2^31 apart), and then this is the order ipvsadm prints."""
    if len(items) <= 1:
        return list(items)
    n1 = len(items) // 2
    b1, b2 = _glibc_msort(items[:n1], cmp), _glibc_msort(items[n1:], cmp)
    out = []
    i = j = 0
    while i < len(b1) and j < len(b2):
        if cmp(b1[i], b2[j]) <= 0:
            out.append(b1[i])
            i += 1
        else:
            out.append(b2[j])
            j += 1
    return out + b1[i:] + b2[j:]


def format_connections(snap: Snapshot, persistent_conn: bool = False) -> str:
    """list_conn and print_conn. lvsxdp has no persistence engine (--pe), so a
    row never has the pe columns, even under their --persistent-conn header
    (print_conn prints them only for an entry that has pe data)."""
    out = "IPVS connection entries\n"
    if persistent_conn:
        out += _printf("pro expire %-11s %-18s %-18s %-18s %-16s %s\n", "state", "source",
                       "virtual", "destination", "pe name", "pe_data")
    else:
        out += _printf("pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual",
                       "destination")
    for e in snap.entries:
        expire = _printf("%02d:%02d", e.expire // 60, e.expire % 60)
        out += _printf("%-3s %-6s %-11s %-18s %-18s %s\n", e.proto, expire, e.state, e.source,
                       e.virtual, e.destination)
    return out


def zero_targets(config: Config, cmd: Command) -> list[Service]:
    """The services `ipvsadm -Z [service]` zeroes (their reals with them):
    the one named, or all. Nothing but a service goes with -Z."""
    opts = _opt_check(cmd, _ZERO_ROW, "zero")
    if "service-address" not in opts:
        return list(config.services)
    key, _ = _service_key(cmd)
    svc = config.find_service(key)
    if svc is None:
        raise _fail("No such service")
    return [svc]


def format_save(config: Config) -> str:
    """`ipvsadm -S -n`: lines that `ipvsadm -R` reads back."""
    lines = []
    for svc in config.services:
        if svc.fwmark:
            name = f"-f {svc.fwmark}"
        else:
            name = f"-{svc.proto[0]} {format_addrport(svc.addr, svc.port)}"
        line = f"-A {name} -s {svc.scheduler}"
        if svc.persistent:
            line += f" -p {svc.timeout}"
            full = 128 if svc.family == shared.AF_INET6 else 32
            if svc.netmask != full:
                mask = svc.netmask if svc.family == shared.AF_INET6 else \
                    ipaddress.IPv4Network(f"0.0.0.0/{svc.netmask}").netmask
                line += f" -M {mask}"
        if svc.sched_flags:
            line += f" -b {','.join(svc.sched_flags)}"
        lines.append(line)
        # Oldest first: -R adds each at the head again, so the list (and the
        # order rr walks it in) comes back as it was. ipvsadm prints the
        # kernel's order, which a restore reverses.
        for r in reversed(svc.reals):
            line = f"-a {name} -r {r.addrport()} {FWD_NAMES[r.fwd][1]} -w {r.weight}"
            # ipvsadm -S leaves thresholds out (a restore loses them); lvsxdp
            # writes them so that -R brings them back
            if r.u_threshold:
                line += f" -x {r.u_threshold}"
            if r.l_threshold:
                line += f" -y {r.l_threshold}"
            lines.append(line)
    return "".join(line + "\n" for line in lines)


def restore(config: Config, text: str) -> Config:
    """`ipvsadm -R`: every line of text (as `ipvsadm -S` writes them) or
    nothing - the first bad line leaves config as it was."""
    import shlex  # noqa: PLC0415

    new = config
    for n, line in enumerate(text.splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "ipvsadm":
            words = words[1:]
        try:
            cmd = parse(words)
            if cmd.op in ("list", "save", "restore", "zero", "help"):
                raise _fail(f"ipvsadm {cmd.op} cannot be restored")
            new = apply(new, cmd)
        except ConfigError as e:
            raise _fail(f"line {n}: {e}") from None
    return new


HELP = """\
lvsxdp ipvsadm takes ipvsadm's command lines:
  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  ipvsadm -D virtual-service
  ipvsadm -C
  ipvsadm -R < rules
  ipvsadm -S [-n]
  ipvsadm -a|e virtual-service -r server-address [-g] [-w weight] [-x upper] [-y lower]
  ipvsadm -d virtual-service -r server-address
  ipvsadm -L|l [virtual-service] [-n] [-c] [--stats|--rate|--thresholds|--persistent-conn]
                [--exact] [--timeout] [--daemon] [--tun-info] [--nosort]
  ipvsadm -Z [virtual-service]
  ipvsadm --set tcp tcpfin udp
virtual-service: -t|u service-address | -f fwmark
schedulers: rr wrr lc wlc (the default) sed nq sh dh mh;
sched-flags: sh-fallback sh-port mh-fallback mh-port; forwarding: -g (direct routing)
"""
