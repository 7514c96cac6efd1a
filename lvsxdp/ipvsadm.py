"""`ipvsadm` command lines -> changes of a Config, and a Config (plus live
counters) -> ipvsadm's listings, byte for byte. Pure: no maps, no root.

The option surface and the messages follow ipvsadm 1.31 (ipvsadm.c); what
lvsxdp does not do yet is refused with one line naming it, and nothing is
changed.
"""

from __future__ import annotations

import ipaddress
import os
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
    "-h": "help", "--help": "help", "-v": "version", "--version": "version",
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
    "-j": "tun-type", "--tun-type": "tun-type", "--tun-port": "tun-port",
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
    "--tun-nocsum": "tun-nocsum", "--tun-csum": "tun-csum", "--tun-remcsum": "tun-remcsum",
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
    """What ipvsadm itself refuses (fail(2, ...)): exit 2."""
    return ConfigError(msg)


def _kernel(msg: str) -> ConfigError:
    """What the kernel refuses (ipvsadm prints strerror-like text, exits -1)."""
    return ConfigError(msg, 255)


TRY_HELP = "Try `ipvsadm -h' or 'ipvsadm --help' for more information."
# the OPTNAMES entry each option sets: given twice, ipvsadm refuses it
_OPT_OF = {"tcp-service": "service-address", "udp-service": "service-address",
           "fwmark-service": "service-address", "sctp-service": "service-address",
           "gatewaying": "forwarding-method", "ipip": "forwarding-method",
           "masquerading": "forwarding-method"}


def parse(argv: list[str]) -> Command:
    """Parses one ipvsadm command line (without the word ipvsadm), as popt
    does for ipvsadm 1.31: the command comes first, an option given twice is
    refused, -p takes the next word unless it starts with '-'."""
    cmd = Command()
    i = 0
    toks = list(argv)
    seen: set[str] = set()

    def set_op(op: str) -> None:
        if cmd.op:
            raise _fail("multiple commands specified")
        cmd.op = op

    def set_opt(name: str) -> None:
        optname = _OPT_OF.get(name, name)
        if optname in seen:
            raise _fail(f"multiple '{optname}' options specified")
        seen.add(optname)

    first = True
    while i < len(toks):
        tok = toks[i]
        i += 1
        if "=" in tok and tok.startswith("--"):
            name, _, val = tok.partition("=")
            toks.insert(i, val)
            tok = name
        # bundled short options: -Ln, -lnc, -tVIP, -p5 (popt accepts them)
        if re.fullmatch(r"-[A-Za-z0-9]{2,}", tok) and tok not in _FLAG_OPTIONS:
            if all(c in _SHORT_FLAGS for c in tok[1:]):
                toks[i:i] = [f"-{c}" for c in tok[2:]]
                tok = tok[:2]
            elif f"-{tok[1]}" in _ARG_OPTIONS or tok[1] == "p":
                toks[i:i] = [tok[2:]]
                tok = tok[:2]
        known = (tok in _COMMANDS or tok in _ARG_OPTIONS or tok in _FLAG_OPTIONS
                 or tok in ("-p", "--persistent"))
        if first and tok not in _COMMANDS:
            # ipvsadm reads the command first, and gives up on anything else
            raise ConfigError(TRY_HELP, 255)
        first = False
        if not known:
            raise ConfigError(f"{tok}: unknown option", 255)
        if tok in ("-p", "--persistent"):
            set_opt("persistent")
            cmd.persistent = 360
            if i < len(toks) and not toks[i].startswith("-"):
                cmd.persistent = _number(toks[i], 1, MAX_TIMEOUT,
                                         f"invalid timeout value `{toks[i]}' specified")
                i += 1
            continue
        if tok in _COMMANDS:
            set_op(_COMMANDS[tok])
            if cmd.op == "set":
                cmd.args = toks[i:i + 3]
                i += len(cmd.args)
                for a in cmd.args:
                    _number(a, 0, MAX_TIMEOUT, f"invalid timeout value `{a}' specified")
                if len(cmd.args) != 3:
                    raise _fail("--set option requires 3 timeout values")
            continue
        if tok in _ARG_OPTIONS:
            if i >= len(toks):
                raise ConfigError(f"{tok}: missing argument", 255)
            set_opt(_ARG_OPTIONS[tok])
            cmd.opts[_ARG_OPTIONS[tok]] = toks[i]
            i += 1
            continue
        set_opt(_FLAG_OPTIONS[tok])
        cmd.opts[_FLAG_OPTIONS[tok]] = True
    if not cmd.op:
        cmd.op = "list"  # ipvsadm alone lists
    if cmd.op in _ROWS:
        _opt_check(cmd, _ROWS[cmd.op], _CMDNAMES.get(cmd.op, cmd.op))
    return cmd


def _number(text: str, lo: int, hi: int, msg: str) -> int:
    if not re.fullmatch(r"\d+", text or ""):
        raise _fail(msg)
    n = int(text)
    if not lo <= n <= hi:
        raise _fail(msg)
    return n


# -- names: /etc/services and /etc/hosts only --------------------------------
# ipvsadm asks getservbyname/getservbyport and gethostbyname/gethostbyaddr,
# which may ask DNS. lvsxdp reads the two local files and nothing else: a
# name they do not know is an error in a command line, and an address or a
# port they do not name is printed as a number.

def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _services() -> dict[tuple[str, str], int]:
    """(name or alias, proto) -> port, and ("#port", proto) -> first name."""
    table: dict = {}
    for line in _read(os.environ.get("LVSXDP_SERVICES", "/etc/services")).splitlines():
        words = line.split("#")[0].split()
        if len(words) < 2 or "/" not in words[1]:
            continue
        port, _, proto = words[1].partition("/")
        if not port.isdigit():
            continue
        for name in words[:1] + words[2:]:
            table.setdefault((name, proto), int(port))
        table.setdefault((f"#{int(port)}", proto), words[0])
    return table


def _hosts() -> list[tuple[str, list[str]]]:
    out = []
    for line in _read(os.environ.get("LVSXDP_HOSTS", "/etc/hosts")).splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2:
            out.append((words[0], words[1:]))
    return out


def port_name(port: int, proto: str) -> str:
    """getservbyport's name of port, else the number."""
    name = _services().get((f"#{port}", proto)) if port else None
    return name or str(port)


def host_name(addr) -> str:
    """The first /etc/hosts name of addr, else the address."""
    for text, names in _hosts():
        try:
            if ipaddress.ip_address(text.split("%")[0]) == addr:
                return names[0]
        except ValueError:
            continue
    return str(addr)


def _host_addr(name: str, version: int):
    for text, names in _hosts():
        if name in names:
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                continue
            if addr.version == version:
                return addr
    raise ValueError(name)


def _addrport(text: str, what: str, ipv6: bool, proto: str = "tcp"
              ) -> tuple[ipaddress._BaseAddress, int | None]:
    """`1.2.3.4`, `1.2.3.4:80`, `VIP:http`, `host:80` (from /etc/hosts),
    `[2001:db8::1]:80`, `2001:db8::1` (with -6)."""
    bad = f"illegal {what} address[:port] specified"
    m = re.fullmatch(r"\[([^]]+)\](?::([^:]*))?", text)
    try:
        if m:
            addr = ipaddress.IPv6Address(m.group(1))
            port = m.group(2)
        elif text.count(":") > 1:
            addr, port = ipaddress.IPv6Address(text), None
        else:
            host, sep, port = text.partition(":")
            if sep and not port:
                raise ValueError
            try:
                addr = ipaddress.IPv4Address(host)
            except ValueError:
                if re.fullmatch(r"[\d.]+", host):
                    raise
                addr = _host_addr(host, 4)
            port = port or None
    except ValueError:
        raise _fail(bad) from None
    if port is not None:
        if not port.isdigit():
            named = _services().get((port, proto))
            if named is None:
                raise _fail(bad)
            port = str(named)
        port = _number(port, 0, 65535, bad)
    return addr, port


def _service_key(cmd: Command) -> tuple[tuple, dict]:
    """The service a command names: its Config key and the fields it sets."""
    kinds = [k for k in ("tcp-service", "udp-service", "fwmark-service", "sctp-service")
             if k in cmd.opts]
    if not kinds:
        raise _fail(f"You need to supply the 'service-address' option for the '{cmd.op}' command")
    kind = kinds[0]
    text = cmd.opts[kind]
    if kind == "sctp-service":
        raise _kernel("lvsxdp balances TCP and UDP only: not SCTP")
    if kind == "fwmark-service":
        mark = _number(text, 1, 0xFFFFFFFF, f"invalid fwmark value `{text}' specified")
        family = shared.AF_INET6 if cmd.opts.get("ipv6") else shared.AF_INET
        return ("fwm", family, mark), {"proto": "", "addr": None, "port": 0, "fwmark": mark,
                                       "family": family}
    proto = "tcp" if kind == "tcp-service" else "udp"
    addr, port = _addrport(text, "virtual server", bool(cmd.opts.get("ipv6")), proto)
    port = port or 0
    family = shared.AF_INET6 if addr.version == 6 else shared.AF_INET
    return (proto, addr, port), {"proto": proto, "addr": addr, "port": port, "family": family}


def apply(config: Config, cmd: Command) -> Config:
    """The configuration after cmd. Raises ConfigError, leaving config as it
    was, for anything ipvsadm (or lvsxdp) refuses."""
    new = config.copy()
    op = cmd.op
    if op == "clear":
        for svc in new.services:
            new.trash_reals(svc, svc.reals)
        new.services = []
    elif op in ("add-service", "edit-service"):
        _service_change(new, cmd)
    elif op == "delete-service":
        key, _ = _service_key(cmd)
        svc = new.find_service(key)
        if svc is None:
            raise _kernel("No such service")
        new.trash_reals(svc, svc.reals)
        new.services.remove(svc)
    elif op in ("add-server", "edit-server", "delete-server"):
        _server_change(new, cmd)
    elif op == "set":
        tcp, tcpfin, udp = (int(a) for a in cmd.args)
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
    if cmd.opts.get("ops") and fields["proto"] != "udp" and not fields.get("fwmark"):
        raise _fail("One-Packet Scheduling is only for UDP virtual services")
    if "pe" in cmd.opts:
        raise _kernel("lvsxdp has no persistence engines (--pe)")
    if "ops" in cmd.opts:
        raise _kernel("lvsxdp has no one-packet scheduling (-o)")
    sched_flags = []
    if "sched-flags" in cmd.opts:
        # -b is checked against -s, or the scheduler the service keeps
        sched_flags = _parse_sched_flags(cmd.opts["sched-flags"], cmd.opts.get(
            "scheduler", existing.scheduler if existing and cmd.op == "edit-service" else "wlc"))
    netmask = _netmask(cmd.opts["netmask"], fields["family"]) if "netmask" in cmd.opts else None
    if cmd.persistent is None:
        netmask = None  # IPVS keeps it, but only a persistent service uses or shows it
    if cmd.op == "add-service" and existing is not None:
        raise _kernel("Service already exists")
    if cmd.op == "edit-service" and existing is None:
        raise _kernel("No such service")
    sched = cmd.opts.get("scheduler", existing.scheduler if existing else "wlc")
    if sched not in KNOWN_SCHEDULERS:
        raise _kernel("Scheduler or persistence engine not found")
    if sched not in SUPPORTED_SCHEDULERS:
        raise _kernel(f"lvsxdp has no scheduler {sched} ({' '.join(SUPPORTED_SCHEDULERS)})")
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
    """ipvsadm's parse_netmask: a prefix length for IPv6, for IPv4 what
    inet_aton reads (`33` is 0.0.0.33). lvsxdp masks by prefix: a mask with
    holes is refused."""
    bad = _fail("illegal virtual server persistent mask specified")
    if family == shared.AF_INET6:
        if not text.isdigit() or not 0 <= int(text) <= 128:
            raise bad
        return int(text)
    mask = _inet_aton(text)
    if mask is None:
        raise bad
    inv = ~mask & 0xFFFFFFFF
    if inv & (inv + 1):
        raise _fail(f"lvsxdp: a persistent netmask must be contiguous ({text} is not)")
    return 32 - inv.bit_length()


def _inet_aton(text: str) -> int | None:
    """glibc's inet_aton: a, a.b, a.b.c or a.b.c.d, each part decimal, octal
    or hex, the last filling what is left."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    nums = []
    for part in parts:
        try:
            nums.append(int(part, 0) if not re.fullmatch(r"0\d+", part) else int(part, 8))
        except ValueError:
            return None
    last_bits = 8 * (5 - len(nums))
    if any(n > 255 or n < 0 for n in nums[:-1]) or not 0 <= nums[-1] < (1 << last_bits):
        return None
    value = 0
    for n in nums[:-1]:
        value = value << 8 | n
    return value << last_bits | nums[-1]


# ipvsadm's tunnel names (tunnames), flag letters (tunflags) and options
# (tun_flags_opts), by IPVS's numbers
TUN_NAMES = ("ipip", "gue", "gre")
TUN_FLAG_NAMES = ("-c", "+c", "r+c")
TUN_FLAG_OPTS = ("--tun-nocsum", "--tun-csum", "--tun-remcsum")
_TUN_OPTS = ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
# tunnel_types_v_options: per type, tun-port tun-nocsum tun-csum tun-remcsum
_TUN_ROWS = {"ipip": "xxxx", "gue": "+111", "gre": "x111"}


def _forwarding(cmd: Command) -> tuple[str, dict]:
    """-g / -i / -m and the tunnel options, checked as ipvsadm checks them
    (parse_options, then process_options' tunnel_opt_check); returns the
    method and the RealServer fields of a tunnel."""
    tun_type = cmd.opts.get("tun-type", "ipip")
    if tun_type not in TUN_NAMES:
        raise _fail("illegal tunnel type specified")
    tun_port = 0
    if "tun-port" in cmd.opts:
        tun_port = _number(cmd.opts["tun-port"], 1, 65535, "illegal tunnel port specified")
    fwd = "tunnel" if cmd.opts.get("ipip") else "masq" if cmd.opts.get("masquerading") \
        else "route"
    tun_given = "tun-type" in cmd.opts or any(o in cmd.opts for o in _TUN_OPTS)
    if tun_given and fwd != "tunnel":
        raise _fail("Tunnel options conflict with forward method")
    if fwd != "tunnel":
        return fwd, {"tun_type": "ipip", "tun_port": 0, "tun_flags": 0}
    last = None
    for opt, rule in zip(_TUN_OPTS, _TUN_ROWS[tun_type], strict=True):
        if opt not in cmd.opts:
            if rule == "+":
                raise _fail(f"You need to supply the '{opt}' option for the '{tun_type}' "
                            "tunnel type")
            continue
        if rule == "x":
            raise _fail(f"Illegal '{opt}' option with the '{tun_type}' tunnel type")
        if rule == "1":
            if last is not None:
                raise _fail(f"The option '{opt}' conflicts with the '{last}' option in the "
                            f"'{tun_type}' tunnel type")
            last = opt
    # IPVS keeps the flag it is given: GRE ignores --tun-remcsum (no
    # checksum), GUE's forwarded packets get --tun-csum's (bpf/tunnel.h)
    flags = shared.TUN_F_CSUM if "tun-csum" in cmd.opts else \
        shared.TUN_F_REMCSUM if "tun-remcsum" in cmd.opts else 0
    return fwd, {"tun_type": tun_type, "tun_port": tun_port, "tun_flags": flags}


def _tun_info(r) -> str:
    """fwd_tun_info: what --tun-info shows of a real."""
    if r.fwd != "tunnel":
        return "n/a"
    if r.tun_type == "gue":
        return f"gue:{r.tun_port}:{TUN_FLAG_NAMES[r.tun_flags]}"
    if r.tun_type == "gre":
        return f"gre:{TUN_FLAG_NAMES[r.tun_flags]}"
    return r.tun_type


def _tun_rule(r) -> str:
    """print_tunnel_rule's tail: what -S adds after -w for a tunnel."""
    if r.fwd != "tunnel":
        return ""
    if r.tun_type == "gue":
        return f" --tun-type gue --tun-port {r.tun_port} {TUN_FLAG_OPTS[r.tun_flags]}"
    if r.tun_type == "gre":
        return f" --tun-type gre {TUN_FLAG_OPTS[r.tun_flags]}"
    return f" --tun-type {r.tun_type}"


def _server_change(new: Config, cmd: Command) -> None:
    key, _ = _service_key(cmd)
    svc = new.find_service(key)
    if "real-server" not in cmd.opts:
        raise _fail(f"You need to supply the 'real-server' option for the '{cmd.op}' command")
    addr, port = _addrport(cmd.opts["real-server"], "real server", bool(cmd.opts.get("ipv6")),
                           key[0] if key[0] != "fwm" else "tcp")
    # ipvsadm reads every value before the kernel sees the line
    weight = None
    if "weight" in cmd.opts:
        weight = _number(cmd.opts["weight"], 0, MAX_THRESHOLD, "illegal weight specified")
        if weight > 65535:
            raise _fail("illegal weight specified (lvsxdp: 0-65535)")
    upper = lower = None
    if "u-threshold" in cmd.opts:
        upper = _number(cmd.opts["u-threshold"], 0, MAX_THRESHOLD, "illegal u_threshold specified")
    if "l-threshold" in cmd.opts:
        lower = _number(cmd.opts["l-threshold"], 0, MAX_THRESHOLD, "illegal l_threshold specified")
    fwd, tun = _forwarding(cmd)
    if svc is None:
        raise _kernel("Service not defined")
    if (addr.version == 6) != (svc.family == shared.AF_INET6):
        if fwd != "tunnel":
            raise _fail("Different address family is allowed only for tunneling servers")
        raise _kernel("lvsxdp tunnels IPv4 in IPv4 and IPv6 in IPv6 only: the real and the "
                      "service differ in address family")
    # Not masquerading: the real port is the service port (ipvsadm does this).
    # -d names a masquerading real by the port it gives, as ipvsadm's -d does.
    given = port
    if fwd != "masq" or port is None:
        port = svc.port
    existing = svc.find_real(addr, port)
    if cmd.op == "delete-server" and given is not None:
        existing = svc.find_real(addr, given) or existing
    if cmd.op == "delete-server":
        if existing is None:
            raise _kernel("No such destination")
        svc.reals.remove(existing)
        new.trash_reals(svc, [existing])
        return
    # ip_vs_add_dest and ip_vs_edit_dest refuse -y above -x (ERANGE) before
    # they look for the destination; -e keeps what it does not name
    keep = existing if cmd.op == "edit-server" and existing is not None else RealServer(addr, 0)
    upper = keep.u_threshold if upper is None else upper
    lower = keep.l_threshold if lower is None else lower
    if lower > upper:
        raise _kernel("Numerical result out of range")
    if cmd.op == "add-server":
        if existing is not None:
            raise _kernel("Destination already exists")
        weight = 1 if weight is None else weight
        # IPVS adds a destination at the head of the service's list: listings
        # show the newest first, and rr starts with it.
        real = RealServer(addr=addr, port=port, weight=weight, fwd=fwd,
                          u_threshold=upper, l_threshold=lower, last_weight=weight, **tun)
        trashed = new.revive(svc, addr, port)
        if trashed is not None:  # its connections and templates resume
            real.index, real.ref = trashed.index, trashed.ref
        svc.reals.insert(0, real)
    else:
        if existing is None:
            raise _kernel("No such destination")
        if weight is not None:
            # IPVS keeps the latest weight > 0 (ip_vs_mh builds with it)
            if weight or existing.weight:
                existing.last_weight = weight or existing.weight
            existing.weight = weight
        existing.fwd = fwd
        for name, value in tun.items():
            setattr(existing, name, value)
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
    out_packets: int = 0  # --stats, NAT only: replies translated back
    out_bytes: int = 0


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
# the other rows: '+' required
_ROWS = {
    "add-service": "xx+   " + "x" * 15 + "   " + "x" * 10,
    "edit-service": "xx+   " + "x" * 15 + "   " + "x" * 10,
    "delete-service": "xx+" + "x" * 31,
    "clear": "x" * 34,
    "add-server": "xx+xxx+    " + "x" * 18 + "     ",
    "edit-server": "xx+xxx+    " + "x" * 18 + "     ",
    "delete-server": "xx+xxx+" + "x" * 27,
    "set": "x" * 34,
    "restore": "x" * 34,
    "save": " " + "x" * 33,
    "zero": _ZERO_ROW,
    "list": _LIST_ROW,
}
# ipvsadm.c's cmdnames, where they are not lvsxdp's
_CMDNAMES = {"clear": "flush"}


def _opt_check(cmd: Command, row: str, cmdname: str) -> set[str]:
    """ipvsadm's generic_opt_check for one command; returns the names (from
    OPTNAMES) of the options given."""
    given = {_OPTC[name] for name in cmd.opts if name in _OPTC}
    if cmd.persistent is not None:
        given.add(OPTNAMES.index("persistent"))
    last = None
    for j in range(len(OPTNAMES)):
        if j not in given:
            if row[j] == "+":
                raise _fail(f"You need to supply the '{OPTNAMES[j]}' option for the "
                            f"'{cmdname}' command")
            continue
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
            raise ConfigError("No such service", 1)
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


def _name(addr, port: int, proto: str, numeric: bool) -> str:
    """addrport_to_anyname: numbers with -n, else the names /etc/hosts and
    /etc/services give (a firewall-mark service's reals: any protocol's)."""
    if numeric:
        return format_addrport(addr, port)
    host = host_name(addr)
    if proto:
        service = port_name(port, proto)
    else:
        service = next((n for n in (port_name(port, "tcp"), port_name(port, "udp"))
                        if n != str(port)), str(port))
    return f"[{host}]:{service}" if addr.version == 6 else f"{host}:{service}"


def _svc_name(svc: Service, numeric: bool = True) -> str:
    """print_service_entry's svc_name (not -S's)."""
    if svc.fwmark:
        if svc.family == shared.AF_INET6:
            return _printf("FWM  %u IPv6", svc.fwmark)
        return _printf("FWM  %u", svc.fwmark)
    name = _printf("%-4s %s", svc.proto.upper(), _name(svc.addr, svc.port, svc.proto, numeric))
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
    numeric = "numeric" in opts
    name = _svc_name(svc, numeric)
    c = snap.services.get(svc.index, RealCounts())
    if "stats" in opts:
        line = _printf("%-33s", name) + "".join(
            print_largenum(v, exact) for v in (c.conns, c.packets, c.out_packets, c.bytes,
                                               c.out_bytes))
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
        dname = _name(r.addr, r.port, svc.proto, numeric)
        dname = dname if r.addr.version == 6 else dname[:28]
        rc = snap.reals.get(r.index, RealCounts())
        if "stats" in opts:
            lines.append(_printf("  -> %-28s", dname) + "".join(
                print_largenum(v, exact) for v in (rc.conns, rc.packets, rc.out_packets,
                                                   rc.bytes, rc.out_bytes))
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
            lines.append(_printf("  -> %-28s %-7s %-13s %-6d %-10u %-10u\n", dname,
                                 FWD_NAMES[r.fwd][0], _tun_info(r), r.weight, rc.active,
                                 rc.inactive))
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
        raise _kernel("No such service")
    return [svc]


def format_save(config: Config, cmd: Command | None = None) -> str:
    """`ipvsadm -S [-n]`: lines that `ipvsadm -R` reads back, in the order
    of `ipvsadm -L`. Like ipvsadm, no -x/-y: a restore loses thresholds."""
    numeric = cmd is None or bool(cmd.opts.get("numeric"))
    lines = []
    for svc in _glibc_msort(config.services, _cmp_services):
        if svc.fwmark:
            name = f"-f {svc.fwmark}" + (" -6" if svc.family == shared.AF_INET6 else "")
        else:
            name = f"-{svc.proto[0]} {_name(svc.addr, svc.port, svc.proto, numeric)}"
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
        for r in _glibc_msort(svc.reals, _cmp_dests):
            lines.append(f"-a {name} -r {_name(r.addr, r.port, svc.proto, numeric)} "
                         f"{FWD_NAMES[r.fwd][1]} -w {r.weight}{_tun_rule(r)}")
    return "".join(line + "\n" for line in lines)


def restore(config: Config, text: str) -> tuple[Config, list[str]]:
    """`ipvsadm -R`: each line of text (as `ipvsadm -S` writes them) on its
    own, as ipvsadm does: a bad line is reported (its message in the list
    returned) and skipped, the others apply."""
    import shlex  # noqa: PLC0415

    new = config
    errors = []
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            errors.append(str(e))
            continue
        if not words:
            continue
        if words[0] == "ipvsadm":
            words = words[1:]
        try:
            cmd = parse(words)
            if cmd.op in ("list", "save", "restore", "zero", "help", "version", "start-daemon",
                          "stop-daemon"):
                raise _fail(f"ipvsadm -R: {cmd.op} is not a rule")
            new = apply(new, cmd)
        except ConfigError as e:
            errors.append(str(e))
    return new, errors


VERSION = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)"
# ipvsadm 1.31's usage, verbatim: lvsxdp refuses -i, -m, --pe, -o, SCTP,
# lblc, lblcr, fo, ovf and the sync daemon with a line that says so.
HELP = VERSION + """
Usage:
  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] \
[--pe persistence_engine] [-b sched-flags]
  ipvsadm -D virtual-service
  ipvsadm -C
  ipvsadm -R
  ipvsadm -S [-n]
  ipvsadm -a|e virtual-service -r server-address [options]
  ipvsadm -d virtual-service -r server-address
  ipvsadm -L|l [virtual-service] [options]
  ipvsadm -Z [virtual-service]
  ipvsadm --set tcp tcpfin udp
  ipvsadm --start-daemon {master|backup} [daemon-options]
  ipvsadm --stop-daemon {master|backup}
  ipvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine may be sip,
                                      not set by default.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
Daemon Options:
  --syncid sid                        syncid for connection sync (default=255)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
"""
