"""keepalived.conf's LVS part, read as keepalived 2.2 reads it.

The file becomes plain dataclasses (VirtualServer, RealServer, Checker):
no I/O beyond reading the files, nothing applied. `include` (globs, paths
relative to the including file), `@id` / `@^id` conditional lines, `$NAME=value`
parameters, `virtual_server_group` (address ranges, fwmarks) and keepalived's
defaults are keepalived's (check_parser.c, check_data.c's
validate_check_config). What keepalived would only warn about comes back as
warnings; what it would skip (a bad address, a bad number, an unknown
keyword) is an error here, and one error refuses the whole file: a running
director is never left half-configured by a typo.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from . import ipvsadm
from .model import Config, ConfigError

DEFAULT_CONF = "/etc/keepalived/keepalived.conf"
DEFAULT_DELAY_LOOP = 60.0  # KEEPALIVED_DEFAULT_DELAY
DEFAULT_CONNECT_TIMEOUT = 5.0
PERSISTENCE_DEFAULT = 360  # IPVS_SVC_PERSISTENT_TIMEOUT
CHECKERS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "UDP_CHECK", "PING_CHECK",
            "DNS_CHECK", "SMTP_CHECK", "FILE_CHECK")
# DNS_CHECK's `type` words (check_dns.c's DNS_TYPE table) and their codes
DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
# keepalived's list (check_parser.c); lvsxdp's own ipvsadm refuses those it lacks
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed",
              "nq")
# url regex_options keepalived passes to PCRE2 that Python's re has
REGEX_OPTIONS = {"caseless": re.IGNORECASE, "multiline": re.MULTILINE, "dotall": re.DOTALL,
                 "extended": re.VERBOSE}
MAX_BODY = 1 << 20  # what an HTTP_GET reads of a body
WEIGHT_LIMIT = 65535  # a real's weight is 16 bits in lvsxdp's maps
# Checkers keepalived has and lvsxdp does not run: such a real is refused
# rather than silently never checked.
OTHER_CHECKERS = ("BFD_CHECK",)
# Top-level blocks and keywords of other keepalived parts (VRRP, BFD, global
# settings): read past, named once in a warning.
IGNORED_TOP = ("global_defs", "vrrp_instance", "vrrp_sync_group", "vrrp_script",
               "vrrp_track_process", "static_ipaddress", "static_routes",
               "static_rules", "linkbeat_interfaces", "garp_group", "bfd_instance", "SSL",
               "net_namespace", "net_namespace_ipvs", "instance", "use_pid_dir",
               "child_wait_time", "vrrp_track_file", "track_process")
# keepalived keywords inside an LVS block that change nothing lvsxdp does
# (mail, SNMP, warm-up spreading, one-packet for UDP...): accepted, named once.
IGNORED_IN_VS = ("smtp_alert", "ha_suspend", "virtualhost", "warmup", "ops",
                 "lvs_notify_fifo", "notify_fifo", "nat_mask", "log_all_failures")
IGNORED_IN_CHECK = ("log_all_failures", "warmup", "enable_ssl", "fwmark", "close",
                    "smtp_alert", "user", "require_reply", "send", "protocol",
                    "http_protocol", "virtualhost", "enable_sni")


@dataclass
class Url:
    path: str = "/"
    digest: str | None = None  # MD5 of the body, hex
    status_codes: list[tuple[int, int]] = field(default_factory=list)  # ranges; [] = 2xx
    virtualhost: str | None = None
    regex: re.Pattern | None = None  # the body must match it (regex_no_match: must not)
    regex_no_match: bool = False
    regex_min_offset: int = 0
    regex_max_offset: int = 0  # 0: the body's end

    def status_ok(self, code: int) -> bool:
        if not self.status_codes:
            return 200 <= code <= 299
        return any(lo <= code <= hi for lo, hi in self.status_codes)


@dataclass
class TrackFile:
    """A top-level `track_file NAME { file PATH; weight N [reverse]; init_file
    [VALUE] [overwrite] }` (keepalived's track_file.c)."""

    name: str
    where: str
    path: str = ""
    weight: int = 1
    reverse: bool = False
    init_value: int | None = None  # init_file: written at start when missing
    init_overwrite: bool = False


@dataclass
class Checker:
    kind: str  # one of CHECKERS
    where: str  # "FILE:LINE" of its block, for the log
    connect_ip: str | None = None
    connect_port: int | None = None
    bindto: str | None = None
    bind_port: int | None = None
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    delay_loop: float | None = None
    alpha: bool | None = None
    virtualhost: str | None = None
    urls: list[Url] = field(default_factory=list)
    misc_path: str | None = None
    misc_timeout: float | None = None
    misc_dynamic: bool = False
    payload: bytes = b""  # UDP_CHECK's datagram
    require_reply: bool = False  # UDP_CHECK: silence is a failure
    reply_pattern: bytes = b""  # what the reply's first octets must be, if given
    reply_mask: bytes = b""  # per octet, the bits that require_reply's x nibbles leave free
    min_reply_length: int = 0  # checked only with a reply_pattern, as keepalived does
    max_reply_length: int = 255  # keepalived's default (UINT8_MAX)
    dns_type: str = "SOA"  # keepalived's defaults: an SOA query for the root
    dns_name: str = "."
    helo_name: str = "smtpchecker.keepalived.org"  # keepalived's SMTP_DEFAULT_HELO
    track_file: TrackFile | None = None  # FILE_CHECK's
    file_weight: int | None = None  # None: the track_file's weight and reverse
    file_reverse: bool = False
    base_weight: int = 0  # the real's configured weight, which the file's value moves

    def identity(self) -> tuple:
        """What makes two checkers the same one across a reload."""
        d = dict(vars(self))
        d.pop("where")
        return tuple(sorted((k, repr(v)) for k, v in d.items()))


@dataclass
class Fwd:
    """A forwarding method as `lvs_method` gives it: DR, NAT, or TUN with
    keepalived 2.2's `type ipip|gue|gre`, `port` and `nocsum|csum|remcsum`."""

    method: str  # "DR", "NAT", "TUN"
    tun_type: str = "ipip"
    tun_port: int = 0
    csum: str = "nocsum"

    def words(self) -> list[str]:
        """ipvsadm's words for it: `-g`, `-m`, `-i --tun-type gue ...`."""
        if self.method == "NAT":
            return ["-m"]
        if self.method == "DR":
            return ["-g"]
        if self.tun_type == "gue":
            return ["-i", "--tun-type", "gue", "--tun-port", str(self.tun_port),
                    f"--tun-{self.csum}"]
        if self.tun_type == "gre":
            return ["-i", "--tun-type", "gre", f"--tun-{self.csum}"]
        return ["-i"]


@dataclass
class RealServer:
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    where: str
    # None until validation: the virtual server's when the real was
    # declared, else its final one (keepalived's alloc_rs, then
    # validate_check_config)
    fwd: Fwd | None = None
    weight: int | None = None  # None: the virtual server's weight (default 1)
    inhibit: bool | None = None
    alpha: bool | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    delay_loop: float | None = None
    connect_timeout: float | None = None
    u_threshold: int = 0
    l_threshold: int = 0
    notify_up: str | None = None
    notify_down: str | None = None
    checkers: list[Checker] = field(default_factory=list)

    def name(self) -> str:
        a = f"[{self.addr}]" if self.addr.version == 6 else str(self.addr)
        return f"{a}:{self.port}"


@dataclass
class Service:
    """One IPVS service a virtual server stands for (a group makes several)."""

    proto: str  # "tcp", "udp"; "" for a fwmark
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    port: int
    fwmark: int = 0
    ipv6: bool = False

    def spec(self) -> list[str]:
        """The service's ipvsadm words: `-t 198.18.2.1:80`, `-f 10 -6`."""
        if self.fwmark:
            return ["-f", str(self.fwmark)] + (["-6"] if self.ipv6 else [])
        a = f"[{self.addr}]" if self.addr.version == 6 else str(self.addr)
        return ["-t" if self.proto == "tcp" else "-u", f"{a}:{self.port}"]

    def key(self) -> tuple:
        """The key lvsxdp's model gives this service (model.Service.key)."""
        if self.fwmark:
            return ("fwm", 10 if self.ipv6 else 2, self.fwmark)
        return (self.proto, self.addr, self.port)

    def name(self) -> str:
        if self.fwmark:
            return f"FWM {self.fwmark}"
        a = f"[{self.addr}]" if self.addr.version == 6 else str(self.addr)
        return f"{a}:{self.port}"


@dataclass
class VirtualServer:
    where: str
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    port: int = 0
    fwmark: int = 0
    group: str | None = None
    services: list[Service] = field(default_factory=list)  # filled by validation
    proto: str = ""
    sched: str = ""
    fwd: Fwd | None = None  # None until set; validation's default is NAT
    persistence_timeout: int = 0
    granularity: str | None = None
    ip_family: str | None = None
    delay_loop: float = DEFAULT_DELAY_LOOP
    weight: int = 1  # default weight of its reals
    inhibit: bool = False
    alpha: bool = False
    omega: bool = False
    retry: int | None = None
    delay_before_retry: float | None = None
    connect_timeout: float | None = None
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: str | None = None
    quorum_down: str | None = None
    sorry_server: tuple | None = None  # (addr, port)
    sorry_fwd: Fwd | None = None
    sorry_inhibit: bool = False
    sched_flags: list[str] = field(default_factory=list)
    reals: list[RealServer] = field(default_factory=list)

    def name(self) -> str:
        """How keepalived's log names it (format_vs)."""
        if self.group:
            return f"[{self.group}]:{self.port}"
        if self.fwmark:
            return f"FWM {self.fwmark}"
        return trio(self.addr, self.proto, self.port)

    def real_name(self, rs: RealServer | tuple) -> str:
        """How keepalived's log names a real or the sorry server (format_rs)."""
        addr, port = (rs.addr, rs.port) if isinstance(rs, RealServer) else rs
        return trio(addr, self.proto, port)

    def service_words(self) -> list[str]:
        """ipvsadm's words for the service itself, after -A/-E and its spec."""
        words = ["-s", self.sched]
        if self.sched_flags:
            words += ["-b", ",".join(self.sched_flags)]
        if self.persistence_timeout:
            words += ["-p", str(self.persistence_timeout)]
            if self.granularity:
                words += ["-M", self.granularity]
        return words


def trio(addr, proto: str, port: int) -> str:
    """keepalived's inet_sockaddrtotrio: `[198.18.2.1]:tcp:80`."""
    return f"[{addr}]:{proto or 'none'}:{port}"


@dataclass
class KeepalivedConf:
    virtual_servers: list[VirtualServer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # keywords read past, each once
    files: list[str] = field(default_factory=list)


class ConfError(ConfigError):
    """A keepalived.conf lvsxdp will not run; the message is keepalived's
    `(FILE: Line N) what`."""


# -- reading: files, includes, @conditionals, $parameters, tokens -------------

@dataclass
class _Token:
    text: str
    file: str
    line: int
    eol: bool = False  # the last word of its line


def _config_id() -> str:
    # keepalived's default config id is the host's name up to the first dot
    return socket.gethostname().split(".")[0]


class _Reader:
    def __init__(self, config_id: str | None) -> None:
        self.config_id = config_id if config_id is not None else _config_id()
        self.params: dict[str, str] = {}
        self.tokens: list[_Token] = []
        self.files: list[str] = []
        self.warnings: list[str] = []
        self.depth = 0
        self.track_files: dict[str, TrackFile] = {}

    def error(self, file: str, line: int, msg: str) -> ConfError:
        return ConfError(f"({file}: Line {line}) {msg}")

    def warn(self, s: _Stmt, msg: str) -> None:
        self.warnings.append(f"({s.file}: Line {s.line}) {msg}")

    def read(self, path: str, file: str = "", line: int = 0) -> None:
        if self.depth > 8:
            raise self.error(file, line, f"include depth exceeded reading {path}")
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            if file:
                raise self.error(file, line, f"cannot read include file {path}: {why}") from None
            raise ConfError(f"Configuration file '{path}' is not a regular non "
                            f"executable file ({why})") from None
        self.files.append(path)
        self.depth += 1
        for n, raw in enumerate(text.splitlines(), 1):
            self._line(path, n, raw)
        self.depth -= 1

    def _line(self, file: str, n: int, raw: str) -> None:
        text = _strip_comment(raw).strip()
        if not text:
            return
        if text.startswith("@"):
            # @id: only for that config id; @^id: for every other one
            word, _, rest = text.partition(" ")
            neg = word.startswith("@^")
            name = word[2:] if neg else word[1:]
            if (name == self.config_id) == neg:
                return
            text = rest.strip()
            if not text:
                return
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", text)
        if m:
            self.params[m.group(1)] = self._substitute(m.group(2), file, n)
            return
        text = self._substitute(text, file, n)
        words = _split(text, lambda msg: self.error(file, n, msg))
        if words and words[0] == "include":
            if len(words) != 2:
                raise self.error(file, n, "include takes one file name or pattern")
            self._include(words[1], file, n)
            return
        for w in words:
            self.tokens.append(_Token(w, file, n))
        if self.tokens and words:
            self.tokens[-1].eol = True

    def _substitute(self, text: str, file: str, n: int) -> str:
        def value(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            if name not in self.params:
                return m.group(0)  # keepalived leaves an undefined name as written
            return self.params[name]

        for _ in range(10):  # a parameter may name another one
            new = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", value,
                         text)
            if new == text:
                return new
            text = new
        raise self.error(file, n, "parameter substitution loops")

    def _include(self, pattern: str, file: str, n: int) -> None:
        base = os.path.dirname(os.path.abspath(file))
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        matches = sorted(glob.glob(full))
        if not matches:
            if glob.has_magic(pattern):
                return  # keepalived: a pattern that matches nothing is no error
            raise self.error(file, n, f"Unable to find include file {pattern}")
        for path in matches:
            if os.path.isdir(path):
                continue
            self.read(path, file, n)


def _strip_comment(line: str) -> str:
    quoted = False
    for i, c in enumerate(line):
        if c == '"':
            quoted = not quoted
        elif c in "#!" and not quoted:
            return line[:i]
    return line


def _split(text: str, error) -> list[str]:
    """Words of a line; `{` and `}` are words of their own; "quoted words"
    keep their spaces."""
    words: list[str] = []
    cur: list[str] = []
    quoted = False
    had_quote = False
    for c in text:
        if quoted:
            if c == '"':
                quoted = False
            else:
                cur.append(c)
        elif c == '"':
            quoted = had_quote = True
        elif c.isspace() or c in "{}":
            if cur or had_quote:
                words.append("".join(cur))
                cur, had_quote = [], False
            if c in "{}":
                words.append(c)
        else:
            cur.append(c)
    if quoted:
        raise error("unterminated quoted string")
    if cur or had_quote:
        words.append("".join(cur))
    return words


# -- statements: a keyword, its values, and its block --------------------------

@dataclass
class _Stmt:
    words: list[str]
    file: str
    line: int
    block: list[_Stmt] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _statements(tokens: list[_Token], r: _Reader) -> list[_Stmt]:
    pos = 0

    def block(top: bool, opener: _Token | None) -> list[_Stmt]:
        nonlocal pos
        out: list[_Stmt] = []
        cur: _Stmt | None = None
        while pos < len(tokens):
            t = tokens[pos]
            pos += 1
            if t.text == "}":
                if top:
                    raise r.error(t.file, t.line, "Extra '}' found")
                return out
            if t.text == "{":
                if cur is None:
                    raise r.error(t.file, t.line, "'{' without a keyword before it")
                cur.block = block(False, t)
                cur = None
                continue
            if cur is None:
                cur = _Stmt([t.text], t.file, t.line)
                out.append(cur)
            else:
                cur.words.append(t.text)
            if t.eol and not (pos < len(tokens) and tokens[pos].text == "{"):
                cur = None
        if not top:
            raise r.error(opener.file, opener.line, "Missing '}' at end of configuration "
                          "block opened here")
        return out

    return block(True, None)


# -- values --------------------------------------------------------------------

def _arg(s: _Stmt, r: _Reader, i: int = 1) -> str:
    if len(s.words) <= i:
        raise r.error(s.file, s.line, f"*** Configuration line starting `{s.words[0]}` is "
                      f"missing a parameter after keyword `{s.words[i - 1]}` at word "
                      f"position {i + 1}")
    return s.words[i]


def _uint(s: _Stmt, r: _Reader, lo: int = 0, hi: int = 2**32 - 1, i: int = 1) -> int:
    text = _arg(s, r, i)
    if text.startswith("-"):
        raise r.error(s.file, s.line, f"{s.words[0]}: negative number '{text}'")
    if not re.fullmatch(r"\d+", text):
        raise r.error(s.file, s.line, f"{s.words[0]}: invalid number '{text}'")
    if not lo <= int(text) <= hi:
        raise r.error(s.file, s.line, f"{s.words[0]}: number '{text}' outside range "
                      f"[{lo}, {hi}]")
    return int(text)


def _seconds(s: _Stmt, r: _Reader, lo: float = 0.0) -> float:
    """A time in seconds: keepalived 2.2 takes decimals (to microseconds)."""
    text = _arg(s, r)
    if not re.fullmatch(r"\d+(\.\d{1,6})?", text):
        raise r.error(s.file, s.line, f"{s.words[0]}: invalid number '{text}'")
    value = float(text)
    if value < lo:
        raise r.error(s.file, s.line, f"{s.words[0]}: number '{text}' outside range "
                      f"[{lo:g}, ...]")
    return value


def _addr(text: str, s: _Stmt, r: _Reader, what: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise r.error(s.file, s.line, f"Invalid {what} IP address {text}") from None


def _port(text: str, s: _Stmt, r: _Reader) -> int:
    if not re.fullmatch(r"\d+", text) or int(text) > 65535:
        raise r.error(s.file, s.line, f"Invalid port {text}")
    return int(text)


# -- the LVS blocks ------------------------------------------------------------

def parse(path: str, config_id: str | None = None) -> KeepalivedConf:
    """Reads keepalived.conf at path (with its includes) into a
    KeepalivedConf, or raises ConfError naming the file and line."""
    r = _Reader(config_id)
    r.read(path)
    return _interpret(_statements(r.tokens, r), r)


def parse_text(text: str, name: str = "keepalived.conf",
               config_id: str | None = None) -> KeepalivedConf:
    """The same from a string (includes relative to the current directory)."""
    r = _Reader(config_id)
    r.files.append(name)
    for n, raw in enumerate(text.splitlines(), 1):
        r._line(name, n, raw)
    return _interpret(_statements(r.tokens, r), r)


def _interpret(stmts: list[_Stmt], r: _Reader) -> KeepalivedConf:
    conf = KeepalivedConf(files=list(r.files), warnings=r.warnings)
    groups: dict[str, list[Service | tuple]] = {}
    group_where: dict[str, _Stmt] = {}
    ignored: dict[str, None] = {}
    for s in stmts:
        kw = s.words[0]
        if kw == "virtual_server_group":
            name = _arg(s, r)
            groups[name] = _group(s, r)
            group_where[name] = s
        elif kw == "virtual_server":
            conf.virtual_servers.append(_virtual_server(s, r, ignored))
        elif kw == "track_file":
            tf = _track_file(s, r)
            r.track_files[tf.name] = tf
        elif kw in IGNORED_TOP or kw.startswith("vrrp_"):
            ignored.setdefault(kw)
        else:
            raise r.error(s.file, s.line, f"Unknown keyword '{kw}'")
    for vs in conf.virtual_servers:
        _validate(vs, groups, conf, r)
    _check_unique(conf, r)
    conf.ignored = list(ignored)
    _dry_run(conf)
    return conf


def _track_file(s: _Stmt, r: _Reader) -> TrackFile:
    tf = TrackFile(_arg(s, r), s.where)
    for e in s.block or []:
        kw = e.words[0]
        if kw == "file":
            tf.path = _arg(e, r)
        elif kw == "weight":
            tf.weight, tf.reverse = _file_weight(e, r)
        elif kw == "init_file":
            words = e.words[1:]
            tf.init_overwrite = "overwrite" in words
            words = [w for w in words if w != "overwrite"]
            if len(words) > 1 or (words and not re.fullmatch(r"-?\d+", words[0])):
                raise r.error(e.file, e.line, f"track file init_file {' '.join(e.words[1:])}"
                              " is invalid")
            tf.init_value = int(words[0]) if words else 0
        else:
            raise r.error(e.file, e.line, f"Unknown keyword '{kw}'")
    if not tf.path:
        raise r.error(s.file, s.line, f"No file set for track_file {tf.name}")
    return tf


def _file_weight(s: _Stmt, r: _Reader) -> tuple[int, bool]:
    """`weight N [reverse|noreverse]` of a track_file or a FILE_CHECK."""
    text = _arg(s, r)
    if not re.fullmatch(r"-?\d+", text) or abs(int(text)) > WEIGHT_LIMIT:
        raise r.error(s.file, s.line, f"weight for track file must be in [-{WEIGHT_LIMIT}.."
                      f"{WEIGHT_LIMIT}] inclusive")
    if len(s.words) > 2 and s.words[2] not in ("reverse", "noreverse"):
        raise r.error(s.file, s.line, f"unknown track file weight option {s.words[2]}")
    return int(text), len(s.words) > 2 and s.words[2] == "reverse"


def _group(s: _Stmt, r: _Reader) -> list:
    """A virtual_server_group's entries: (addr, port) pairs (ranges
    expanded, as IPVS gets one service per address) and ("fwmark", N)."""
    entries: list = []
    family = None
    for e in s.block or []:
        if e.words[0] == "fwmark":
            entries.append(("fwmark", _uint(e, r, 1)))
            continue
        text = e.words[0]
        port = _port(e.words[1], e, r) if len(e.words) > 1 else 0
        first, dash, last = text.partition("-")
        start = _addr(first, e, r, "virtual server group")
        if family is not None and family != start.version:
            raise r.error(e.file, e.line, f"Cannot mix IPv4 and IPv6 in virtual server group "
                          f"- {s.words[1]}")
        family = start.version
        if not dash:
            entries.append((start, port))
            continue
        # keepalived: the range's end replaces the last byte (IPv4) or the
        # last 16 bits (IPv6, in hex)
        width = 8 if start.version == 4 else 16
        try:
            end = int(last, 10 if start.version == 4 else 16)
        except ValueError:
            raise r.error(e.file, e.line, f"Invalid virtual server group IP address "
                          f"{text}") from None
        low = int(start) & ((1 << width) - 1)
        if end >= 1 << width:
            raise r.error(e.file, e.line, f"End address of range exceeds limit for address "
                          f"family - {text} - skipping")
        if end <= low:
            raise r.error(e.file, e.line, f"Address range end is not greater than address "
                          f"range start - {text} - skipping")
        for i in range(end - low + 1):
            entries.append((start + i, port))
    return entries


def _virtual_server(s: _Stmt, r: _Reader, ignored: dict) -> VirtualServer:
    vs = VirtualServer(where=s.where)
    first = _arg(s, r)
    if first == "group":
        vs.group = _arg(s, r, 2)
    elif first == "fwmark":
        vs.fwmark = _uint(s, r, 1, 2**32 - 1, 2)
    else:
        vs.addr = _addr(first, s, r, "virtual server")
        vs.port = _port(_arg(s, r, 2), s, r)
    if s.block is None:
        raise r.error(s.file, s.line, "virtual_server without a '{' block")
    for e in s.block:
        kw = e.words[0]
        if kw == "real_server":
            vs.reals.append(_real_server(e, r, ignored, vs.fwd))
        elif kw == "sorry_server":
            vs.sorry_server = (_addr(_arg(e, r), e, r, "sorry server"),
                               _port(e.words[2], e, r) if len(e.words) > 2 else 0)
            vs.sorry_fwd = vs.fwd
        elif kw == "sorry_server_inhibit":
            vs.sorry_inhibit = True
        elif kw in ("lb_algo", "lvs_sched"):
            vs.sched = _arg(e, r)
            if vs.sched not in SCHEDULERS:
                raise r.error(e.file, e.line, f"Invalid lvs_scheduler '{vs.sched}'")
        elif kw in ("lb_kind", "lvs_method"):
            vs.fwd = _method(e, r, "virtual")
        elif kw == "sorry_server_lvs_method":
            if vs.sorry_server is None:
                raise r.error(e.file, e.line, "sorry_server forwarding used without "
                              "sorry_server")
            vs.sorry_fwd = _method(e, r, "sorry")
        elif kw == "persistence_timeout":
            if len(e.words) > 1 and e.words[1] == "0":
                # keepalived refuses 0 and goes on without persistence: so does lvsxdp
                r.warn(e, "persistence_timeout invalid")
            else:
                vs.persistence_timeout = (_uint(e, r, 1, ipvsadm.MAX_TIMEOUT)
                                          if len(e.words) > 1 else PERSISTENCE_DEFAULT)
        elif kw == "persistence_granularity":
            vs.granularity = _arg(e, r)
            # keepalived: a granularity makes the service persistent
            vs.persistence_timeout = vs.persistence_timeout or PERSISTENCE_DEFAULT
        elif kw == "protocol":
            proto = _arg(e, r).upper()
            if proto == "SCTP":
                raise r.error(e.file, e.line, "lvsxdp has no SCTP services (protocol SCTP)")
            if proto not in ("TCP", "UDP"):
                raise r.error(e.file, e.line, f"Unknown protocol {_arg(e, r)}")
            vs.proto = proto.lower()
        elif kw == "ip_family":
            fam = _arg(e, r)
            if fam not in ("inet", "inet6"):
                raise r.error(e.file, e.line, f"unknown address family {fam}")
            vs.ip_family = fam
        elif kw == "weight":
            vs.weight = _weight(e, r, 1, "Virtual")
        elif kw == "inhibit_on_failure":
            vs.inhibit = _bool(e, r)
        elif kw == "alpha":
            vs.alpha = _bool(e, r)
        elif kw == "omega":
            vs.omega = _bool(e, r)
        elif kw == "quorum":
            vs.quorum = _uint(e, r, 1)
        elif kw == "hysteresis":
            vs.hysteresis = _uint(e, r, 0)
        elif kw == "quorum_up":
            vs.quorum_up = " ".join(e.words[1:])
        elif kw == "quorum_down":
            vs.quorum_down = " ".join(e.words[1:])
        elif _timing(vs, e, r):
            pass
        elif kw in ("sh-port", "sh-fallback", "mh-port", "mh-fallback", "flag-1", "flag-2"):
            # IP_VS_SVC_F_SCHED1 is sh's and mh's fallback, SCHED2 their port
            vs.sched_flags.append(kw)
        elif kw == "flag-3":
            raise r.error(e.file, e.line, "flag-3: no lvsxdp scheduler has a third flag")
        elif kw == "hashed":
            pass  # IPVS sets it itself
        elif kw in IGNORED_IN_VS:
            ignored.setdefault(kw)
        else:
            raise r.error(e.file, e.line, f"Unknown keyword '{kw}'")
    return vs


def _timing(target, s: _Stmt, r: _Reader) -> bool:
    """The check timings a virtual server, a real server and a checker all
    take (the nearest one wins); False for any other keyword."""
    kw = s.words[0]
    if kw in ("retry", "nb_get_retry"):
        # a checker may retry 0 times; a server's default must be >= 1
        target.retry = _uint(s, r) if isinstance(target, Checker) else _retry(s, r)
    elif kw in ("delay_before_retry", "connect_timeout"):
        setattr(target, kw, _seconds(s, r))
    elif kw == "delay_loop":
        target.delay_loop = max(_seconds(s, r), 1e-3)
    else:
        return False
    return True


def _method(s: _Stmt, r: _Reader, what: str) -> Fwd:
    """`lvs_method NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`,
    read as keepalived 2.2's svr_forwarding_handler reads it: the tunnel
    words are read (and checked) whatever the method, and only a tunnel
    uses them."""
    err = lambda msg: r.error(s.file, s.line, msg)  # noqa: E731
    method = _arg(s, r)
    if method not in ("DR", "NAT", "TUN"):
        raise err(f"PARSER : unknown [{method}] routing method for {what} server.")
    fwd = Fwd(method)
    words = s.words[2:]
    i = 0
    while i < len(words):
        word = words[i]
        if word == "type":
            if i + 1 == len(words):
                raise err(f"Missing tunnel type for {what} server.")
            if words[i + 1] not in ("ipip", "gue", "gre"):
                raise err(f"Unknown tunnel type {words[i + 1]} for {what} server.")
            fwd.tun_type = words[i + 1]
            i += 1
        elif word == "port":
            if i + 1 == len(words):
                raise err(f"Missing port for {what} server gue tunnel.")
            text = words[i + 1]
            if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= 65535:
                raise err(f"Invalid gue tunnel port {text} for {what} server.")
            fwd.tun_port = int(text)
            i += 1
        elif word in ("nocsum", "csum", "remcsum"):
            fwd.csum = word
        else:
            raise err(f"Invalid tunnel option {word} for {what} server.")
        i += 1
    if (fwd.tun_type == "gue") != (fwd.tun_port != 0):
        raise err("gue tunnels require port, otherwise cannot have port.")
    if fwd.tun_type == "ipip" and fwd.csum != "nocsum":
        raise err("ipip tunnels do not support checksum option.")
    if fwd.tun_type == "gre" and fwd.csum == "remcsum":
        raise err("gre tunnels do not support remote checksum option.")
    if method != "TUN":
        return Fwd(method)
    return fwd


def _weight(s: _Stmt, r: _Reader, lo: int, what: str) -> int:
    text = _arg(s, r)
    if not re.fullmatch(r"\d+", text) or not lo <= int(text) <= WEIGHT_LIMIT:
        raise r.error(s.file, s.line, f"{what} server weight {text} is outside range "
                      f"{lo}-{WEIGHT_LIMIT}")
    return int(text)


def _retry(s: _Stmt, r: _Reader) -> int:
    text = _arg(s, r)
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise r.error(s.file, s.line, f"retry value invalid - {text}")
    return int(text)


def _bool(s: _Stmt, r: _Reader) -> bool:
    if len(s.words) == 1:
        return True
    word = s.words[1].lower()
    if word in ("on", "true", "yes"):
        return True
    if word in ("off", "false", "no"):
        return False
    raise r.error(s.file, s.line, f"{s.words[0]}: invalid boolean '{s.words[1]}'")


def _real_server(s: _Stmt, r: _Reader, ignored: dict, fwd: Fwd | None) -> RealServer:
    rs = RealServer(addr=_addr(_arg(s, r), s, r, "real server"),
                    port=_port(s.words[2], s, r) if len(s.words) > 2 else 0, where=s.where,
                    fwd=fwd)
    for e in s.block or []:
        kw = e.words[0]
        if kw == "weight":
            rs.weight = _weight(e, r, 0, "Real")
        elif kw == "inhibit_on_failure":
            rs.inhibit = _bool(e, r)
        elif kw == "alpha":
            rs.alpha = _bool(e, r)
        elif _timing(rs, e, r):
            pass
        elif kw == "lvs_method":
            rs.fwd = _method(e, r, "real")
        elif kw == "uthreshold":
            rs.u_threshold = _uint(e, r, 0, ipvsadm.MAX_THRESHOLD)
        elif kw == "lthreshold":
            rs.l_threshold = _uint(e, r, 0, ipvsadm.MAX_THRESHOLD)
        elif kw == "notify_up":
            rs.notify_up = " ".join(e.words[1:])
        elif kw == "notify_down":
            rs.notify_down = " ".join(e.words[1:])
        elif kw in CHECKERS:
            rs.checkers += _checkers(e, r, ignored)
        elif kw in OTHER_CHECKERS:
            raise r.error(e.file, e.line, f"lvsxdp does not run {kw} (it runs "
                          f"{', '.join(CHECKERS)})")
        elif kw in IGNORED_IN_VS:
            ignored.setdefault(kw)
        else:
            raise r.error(e.file, e.line, f"Unknown keyword '{kw}'")
    return rs


def _checkers(s: _Stmt, r: _Reader, ignored: dict) -> list[Checker]:
    """A checker block; an SMTP_CHECK's old `host { }` sub-blocks each make
    a checker of their own, with the block's other settings, as keepalived
    2.2 splits them."""
    if s.words[0] != "SMTP_CHECK" or not any(e.words[0] == "host" for e in s.block or []):
        return [_checker(s, r, ignored)]
    rest = [e for e in s.block or [] if e.words[0] != "host"]
    out = []
    for e in s.block or []:
        if e.words[0] == "host":
            r.warn(e, "SMTP_CHECK host block is deprecated - please use a separate "
                   "SMTP_CHECK for each host")
            out.append(_checker(_Stmt(s.words, s.file, s.line, rest + (e.block or [])), r,
                                ignored))
    return out


def _hex(s: _Stmt, r: _Reader, what: str, wildcards: bool = False) -> tuple[bytes, bytes]:
    """Octets as keepalived's read_hex_str reads them: two hex digits an
    octet, or one before a space ("1 02" is 01 02); with wildcards an x
    nibble matches anything. Returns the octets and their don't-care mask."""
    text = " ".join(s.words[1:])
    if not text:
        raise r.error(s.file, s.line, f"UDP_CHECK {what} requires a {what}")
    digit = "[0-9a-fA-F" + ("xX" if wildcards else "") + "]"
    if not re.fullmatch(rf"\s*({digit}{digit}?\s*)+", text):
        raise r.error(s.file, s.line, f"Invalid hex string for UDP_CHECK {what}")
    data, mask = bytearray(), bytearray()
    for group in text.split():
        for i in range(0, len(group), 2):
            pair = group[i:i + 2]
            data.append(int(re.sub("[xX]", "0", pair), 16))
            mask.append(int(re.sub("[0-9a-fA-F]", "0", pair).replace("x", "f")
                            .replace("X", "f"), 16))
    return bytes(data), bytes(mask)


def _checker(s: _Stmt, r: _Reader, ignored: dict) -> Checker:
    c = Checker(kind=s.words[0], where=s.where)
    http = c.kind in ("HTTP_GET", "SSL_GET")
    for e in s.block or []:
        kw = e.words[0]
        if c.kind == "FILE_CHECK" and kw not in ("track_file", "weight"):
            raise r.error(e.file, e.line, f"Unknown keyword '{kw}'")
        if kw == "connect_ip":
            c.connect_ip = str(_addr(_arg(e, r), e, r, "connect_ip"))
        elif kw == "connect_port":
            c.connect_port = _port(_arg(e, r), e, r)
        elif kw == "bindto":
            c.bindto = str(_addr(_arg(e, r), e, r, "bindto"))
        elif kw == "bind_port":
            c.bind_port = _port(_arg(e, r), e, r)
        elif _timing(c, e, r):
            pass
        elif kw == "alpha":
            c.alpha = _bool(e, r)
        elif kw == "url" and http:
            c.urls.append(_url(e, r))
        elif kw == "virtualhost" and http:
            c.virtualhost = _arg(e, r)
        elif kw == "misc_path" and c.kind == "MISC_CHECK":
            c.misc_path = " ".join(e.words[1:])
        elif kw == "misc_timeout" and c.kind == "MISC_CHECK":
            c.misc_timeout = _seconds(e, r)
        elif kw == "misc_dynamic" and c.kind == "MISC_CHECK":
            c.misc_dynamic = True
        elif c.kind == "UDP_CHECK" and kw == "payload":
            c.payload = _hex(e, r, "payload")[0]
        elif c.kind == "UDP_CHECK" and kw == "require_reply":
            c.require_reply = True
            if len(e.words) > 1:
                c.reply_pattern, c.reply_mask = _hex(e, r, "reply", wildcards=True)
        elif c.kind == "UDP_CHECK" and kw in ("min_reply_length", "max_reply_length"):
            setattr(c, kw, _uint(e, r, 0, 65535))
        elif c.kind == "DNS_CHECK" and kw == "type":
            t = _arg(e, r).upper()
            if t not in DNS_TYPES:
                raise r.error(e.file, e.line, f"DNS_CHECK: unknown type '{e.words[1]}' "
                              f"(one of {', '.join(DNS_TYPES)})")
            c.dns_type = t
        elif c.kind == "DNS_CHECK" and kw == "name":
            c.dns_name = _dns_name(e, r)
        elif c.kind == "SMTP_CHECK" and kw == "helo_name":
            c.helo_name = _arg(e, r)
        elif c.kind == "FILE_CHECK" and kw == "track_file":
            name = _arg(e, r)
            if name not in r.track_files:
                raise r.error(e.file, e.line, f"track_file {name} not found")
            c.track_file = r.track_files[name]
        elif c.kind == "FILE_CHECK" and kw == "weight":
            c.file_weight, c.file_reverse = _file_weight(e, r)
        elif kw in IGNORED_IN_CHECK:
            ignored.setdefault(kw)
        else:
            raise r.error(e.file, e.line, f"Unknown keyword '{kw}'")
    if http and not c.urls:
        raise r.error(s.file, s.line, f"{c.kind} has no url")
    if c.kind == "MISC_CHECK" and not c.misc_path:
        raise r.error(s.file, s.line, "MISC_CHECK has no misc_path")
    if c.kind == "FILE_CHECK":
        if c.track_file is None:
            raise r.error(s.file, s.line, "FILE_CHECK has no track_file specified")
        if not c.file_weight:  # 0 or unset: the track_file's
            c.file_weight, c.file_reverse = c.track_file.weight, c.track_file.reverse
        # the file's value counts at once: no alpha, no retries (check_file.c)
        c.alpha, c.retry = False, 0
    if c.min_reply_length > c.max_reply_length:
        raise r.error(s.file, s.line, f"UDP_CHECK min_reply_length {c.min_reply_length} > "
                      f"max_reply_length {c.max_reply_length}")
    return c


def _dns_name(s: _Stmt, r: _Reader) -> str:
    name = _arg(s, r)
    labels = name.rstrip(".").split(".") if name != "." else []
    if len(name) > 253 or any(not 0 < len(x.encode()) <= 63 for x in labels):
        raise r.error(s.file, s.line, f"DNS_CHECK: invalid name '{name}'")
    return name


def _url(s: _Stmt, r: _Reader) -> Url:
    u = Url(path="")
    pattern, flags = None, 0
    for e in s.block or []:
        kw = e.words[0]
        if kw == "path":
            u.path = _arg(e, r)
        elif kw == "digest":
            d = _arg(e, r).lower()
            if not re.fullmatch(r"[0-9a-f]{32}", d):
                raise r.error(e.file, e.line, f"digest '{e.words[1]}' is not an MD5 in hex")
            u.digest = d
        elif kw == "status_code":
            for word in e.words[1:]:
                lo, dash, hi = word.partition("-")
                if not re.fullmatch(r"\d{3}", lo) or (dash and not re.fullmatch(r"\d{3}", hi)):
                    raise r.error(e.file, e.line, f"Invalid HTTP_GET status code '{word}'")
                u.status_codes.append((int(lo), int(hi) if dash else int(lo)))
            if len(e.words) == 1:
                _arg(e, r)
        elif kw == "virtualhost":
            u.virtualhost = _arg(e, r)
        elif kw == "regex":
            pattern = " ".join(e.words[1:]) or _arg(e, r)
        elif kw == "regex_no_match":
            u.regex_no_match = True
        elif kw == "regex_options":
            for word in e.words[1:]:
                if word not in REGEX_OPTIONS:
                    raise r.error(e.file, e.line, f"Unknown regex option {word} (lvsxdp "
                                  f"takes {', '.join(REGEX_OPTIONS)})")
                flags |= REGEX_OPTIONS[word]
        elif kw in ("regex_min_offset", "regex_max_offset"):
            setattr(u, kw, _uint(e, r, 0, MAX_BODY))
        elif kw == "regex_stack":
            _uint(e, r)  # PCRE2's match stack size: nothing to size in Python's re
        elif kw == "fast_recovery":
            raise r.error(e.file, e.line, f"lvsxdp does not check url {kw}")
        else:
            raise r.error(e.file, e.line, f"Unknown keyword '{kw}'")
    if not u.path:
        raise r.error(s.file, s.line, "HTTP/SSL_GET checker url has no path")
    if pattern is not None:
        try:
            u.regex = re.compile(pattern.encode(), flags)
        except re.error as e:
            raise r.error(s.file, s.line, f"Invalid regex: '{pattern}' at offset {e.pos}: "
                          f"{e.msg}") from None
    if u.regex_max_offset and u.regex_min_offset > u.regex_max_offset:
        raise r.error(s.file, s.line, "regex min offset > max offset")
    return u


# -- keepalived's validation (validate_check_config) --------------------------

def _validate(vs: VirtualServer, groups: dict, conf: KeepalivedConf, r: _Reader) -> None:
    file, _, line = vs.where.rpartition(":")
    err = lambda msg: r.error(file, int(line), msg)  # noqa: E731
    warn = lambda msg: conf.warnings.append(f"({file}: Line {line}) {msg}")  # noqa: E731
    if vs.group is not None:
        if vs.group not in groups:
            raise err(f"Virtual server group {vs.group} not found")
        entries = groups[vs.group]
    elif vs.fwmark:
        entries = [("fwmark", vs.fwmark)]
    else:
        entries = [(vs.addr, vs.port)]
    if not vs.reals:
        raise err(f"Virtual server {vs.name()} has no real servers")
    has_addrs = any(a != "fwmark" for a, _ in entries)
    if has_addrs and not vs.proto:
        warn(f"Virtual server {vs.name()}: no protocol set - defaulting to UDP")
        vs.proto = "udp"
    if not has_addrs and vs.proto:
        warn(f"Warning: Virtual server {vs.name()}: protocol specified for fwmark - "
             "protocol will be ignored")
        vs.proto = ""
    if has_addrs and not vs.persistence_timeout and any(p == 0 for a, p in entries
                                                         if a != "fwmark"):
        warn(f"Virtual server {vs.name()}: zero port only valid for persistent services - "
             "setting")
        vs.persistence_timeout = PERSISTENCE_DEFAULT
    if not vs.sched:
        warn(f"Virtual server {vs.name()}: no scheduler set, setting default 'wlc'")
        vs.sched = "wlc"
    if vs.fwd is None and (any(rs.fwd is None for rs in vs.reals)
                           or (vs.sorry_server and vs.sorry_fwd is None)):
        warn(f"Virtual server {vs.name()}: no forwarding method set, setting default NAT")
        vs.fwd = Fwd("NAT")
    for rs in vs.reals:
        if rs.fwd is None:
            rs.fwd = vs.fwd
    if vs.sorry_server and vs.sorry_fwd is None:
        vs.sorry_fwd = vs.fwd
    # a fwmark has no address: its family is ip_family's, else its reals'
    # (keepalived's vs_end_handler)
    ipv6 = (vs.ip_family == "inet6") if vs.ip_family else (
        any(a.version == 6 for a, _ in entries if a != "fwmark") if has_addrs
        else all(rs.addr.version == 6 for rs in vs.reals))
    vs.services = [Service(proto="", addr=None, port=0, fwmark=p, ipv6=ipv6) if a == "fwmark"
                   else Service(proto=vs.proto, addr=a, port=p, ipv6=a.version == 6)
                   for a, p in entries]
    seen = set()
    reals = []
    for rs in vs.reals:
        if (rs.addr, rs.port) in seen:
            warn(f"VS {vs.name()}: real server {vs.real_name(rs)} is duplicated - removing "
                 "second rs")
            continue
        seen.add((rs.addr, rs.port))
        reals.append(rs)
        if rs.weight is None:
            rs.weight = vs.weight
        for default in ("inhibit", "alpha", "retry", "delay_before_retry", "delay_loop",
                        "connect_timeout"):
            if getattr(rs, default) is None:
                setattr(rs, default, getattr(vs, default))
        for c in rs.checkers:
            _checker_defaults(c, rs)
    vs.reals = reals
    total = sum(rs.weight for rs in vs.reals)
    if vs.quorum > total:
        warn(f"Warning - quorum {vs.quorum} for {vs.name()} exceeds total weight of real "
             f"servers {total}, reducing quorum to {total}")
        vs.quorum = total
    if vs.hysteresis >= vs.quorum and vs.quorum:
        warn(f"Virtual server {vs.name()}: hysteresis {vs.hysteresis} >= quorum {vs.quorum}; "
             f"setting hysteresis to {vs.quorum - 1}")
        vs.hysteresis = vs.quorum - 1
    # DR and TUN: a real's port is the service's (0 for a fwmark): keepalived
    # resets it, and real_words uses the service's. NAT keeps the real's own
    # port, the service's when it has none.
    if not vs.group and not vs.fwmark:
        for rs in vs.reals:
            if rs.fwd.method == "NAT":
                rs.port = rs.port or vs.port
                continue
            if rs.port and rs.port != vs.port:
                warn(f"WARNING - virtual server {vs.name()} and real server {vs.real_name(rs)} "
                     "ports don't match - resetting")
            rs.port = vs.port
    if vs.granularity is not None:
        vs.granularity = _granularity(vs, err)
    flags = []
    for f in vs.sched_flags:
        if f in ("flag-1", "flag-2") and vs.sched in ("sh", "mh"):
            f = f"{vs.sched}-{'fallback' if f == 'flag-1' else 'port'}"
        if f.split("-")[0] != vs.sched:
            raise err(f"{f} only applies to the {f.split('-')[0]} scheduler"
                      if f[:2] in ("sh", "mh") else f"{f}: no meaning for scheduler {vs.sched}")
        if f not in flags:
            flags.append(f)
    vs.sched_flags = flags


def _granularity(vs: VirtualServer, err) -> str:
    text = vs.granularity
    if any(s.ipv6 for s in vs.services):
        if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= 128:
            raise err(f"persistence_granularity {text}: an IPv6 prefix length 1-128")
        return text
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise err(f"persistence_granularity {text}: not an IPv4 netmask") from None
    return text


def _checker_defaults(c: Checker, rs: RealServer) -> None:
    """keepalived's checker defaults: the real's, else the checker kind's."""
    c.base_weight = rs.weight
    if c.kind == "FILE_CHECK":
        # keepalived watches the file with inotify; a poll every second
        # (or delay_loop, when shorter) stands in for it
        c.delay_loop, c.delay_before_retry = min(rs.delay_loop, 1.0), 0.0
        c.connect_timeout = 0.0
        return
    if c.alpha is None:
        c.alpha = rs.alpha
    if c.delay_loop is None:
        c.delay_loop = rs.delay_loop
    if c.retry is None:
        # TCP_CHECK and HTTP/SSL_GET retry once by default, MISC_CHECK never
        c.retry = rs.retry if rs.retry is not None else (0 if c.kind == "MISC_CHECK" else 1)
    if c.delay_before_retry is None:
        c.delay_before_retry = (rs.delay_before_retry if rs.delay_before_retry is not None
                                else 1.0 if c.kind != "MISC_CHECK" else c.delay_loop)
    if c.connect_timeout is None:
        c.connect_timeout = (rs.connect_timeout if rs.connect_timeout is not None
                             else DEFAULT_CONNECT_TIMEOUT)
    if c.misc_timeout is None and c.kind == "MISC_CHECK":
        c.misc_timeout = c.delay_loop


def _check_unique(conf: KeepalivedConf, r: _Reader) -> None:
    owner: dict[tuple, VirtualServer] = {}
    for vs in conf.virtual_servers:
        for svc in vs.services:
            if svc.key() in owner:
                file, _, line = vs.where.rpartition(":")
                raise r.error(file, int(line), f"Virtual server {svc.name()} is already "
                              f"defined at {owner[svc.key()].where}")
            owner[svc.key()] = vs


def _dry_run(conf: KeepalivedConf) -> None:
    """Every service and real through lvsxdp's own ipvsadm, on an empty
    table: what lvsxdp refuses (a scheduler it lacks, a weight too large)
    is refused now, with the line that asked for it."""
    config = Config()
    for vs in conf.virtual_servers:
        file, _, line = vs.where.rpartition(":")
        try:
            for svc in vs.services:
                config = ipvsadm.apply(config, ipvsadm.parse(
                    ["-A", *svc.spec(), *vs.service_words()]))
                for rs in vs.reals:
                    config = ipvsadm.apply(config, ipvsadm.parse(real_words("-a", svc, rs)))
        except ConfigError as e:
            raise ConfError(f"({file}: Line {line}) virtual server {vs.name()}: {e}") from None


def real_port(svc: Service, rs: RealServer | tuple, fwd: Fwd) -> int:
    """The port lvsxdp's model gives the real in svc: a masquerading real's
    own (the service's when it has none), else the service's (0 for a
    fwmark), as ipvsadm -a gives it."""
    port = rs.port if isinstance(rs, RealServer) else rs[1]
    return port if fwd.method == "NAT" and port else svc.port


def real_words(op: str, svc: Service, rs: RealServer | tuple, weight: int | None = None,
               fwd: Fwd | None = None) -> list[str]:
    """ipvsadm's words for a real (a RealServer, or a sorry server's
    (addr, port) with its fwd) of svc: `-a -t VIP:80 -r RIP:80 -g -w 1`."""
    if isinstance(rs, RealServer):
        addr, w, fwd = rs.addr, rs.weight, fwd or rs.fwd
        thresholds = []
        if rs.u_threshold:
            thresholds += ["-x", str(rs.u_threshold)]
        if rs.l_threshold:
            thresholds += ["-y", str(rs.l_threshold)]
    else:
        (addr, _), w, thresholds = rs, 1, []
    fwd = fwd or Fwd("DR")
    port = real_port(svc, rs, fwd)
    a = f"[{addr}]" if addr.version == 6 else str(addr)
    words = [op, *svc.spec(), "-r", f"{a}:{port}" if port else a]
    if op != "-d":
        words += [*fwd.words(), "-w", str(w if weight is None else weight), *thresholds]
    return words
