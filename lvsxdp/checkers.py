"""keepalived's health checkers, run by lvsxdp itself, and the daemon that
turns their verdicts into the director's table (`lvsxdp keepalived`).

Probes (one attempt each): TCP_CHECK (a connect), HTTP_GET and SSL_GET (a
GET per url: status code, MD5 digest of the body), MISC_CHECK (a command;
misc_dynamic: exit 2-255 sets the weight to status - 2), UDP_CHECK (a
datagram: down on an ICMP port unreachable, or without the reply
require_reply asks for), PING_CHECK (an ICMP/ICMPv6 echo), DNS_CHECK (a
query over UDP: up on a reply with its id and NOERROR), SMTP_CHECK (220
banner, HELO, 250, QUIT). A checker runs every
delay_loop; a failure of a real that was up is retried `retry` times,
delay_before_retry apart, before the real goes down; a real is up when every
one of its checkers is. What keepalived would do with IPVS happens to
lvsxdp's table through director.edit(): a real down is removed (or, with
inhibit_on_failure, set to weight 0); a virtual server below its quorum
gets its sorry_server instead of its reals.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import random
import re
import select
import shlex
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field

from . import ipvsadm, keepalived, shared
from .keepalived import Checker, KeepalivedConf, RealServer, VirtualServer
from .model import Config, ConfigError

log = logging.getLogger("lvsxdp.keepalived")
USER_AGENT = "KeepAliveClient"  # what keepalived's HTTP_GET sends
MAX_BODY = keepalived.MAX_BODY
# a real without a port: the checker's well-known one (keepalived's
# SMTP_DEFAULT_PORT, DNS_DEFAULT_PORT)
DEFAULT_PORTS = {"SMTP_CHECK": 25, "DNS_CHECK": 53}


@dataclass
class Verdict:
    ok: bool
    why: str = ""
    weight: int | None = None  # misc_dynamic's weight


# -- probes --------------------------------------------------------------------

def _target(c: Checker, addr, port: int) -> tuple[str, int]:
    return (c.connect_ip or str(addr), c.connect_port or port)


def _connect(c: Checker, host: str, port: int,
             kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket to the checked real, bound as bindto/bind_port say. UDP's is
    connected too, so that an ICMP error comes back as ECONNREFUSED."""
    family = _family(host)
    s = socket.socket(family, kind)
    try:
        s.settimeout(c.connect_timeout)
        if c.bindto or c.bind_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((c.bindto or ("::" if family == socket.AF_INET6 else "0.0.0.0"),
                    c.bind_port or 0))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def _where(host: str, port: int) -> str:
    return f"[{host}]:tcp:{port}"


def probe(c: Checker, addr, port: int) -> Verdict:
    """One attempt of checker c against the real addr:port."""
    if c.kind == "MISC_CHECK":
        return _misc(c)
    if c.kind == "FILE_CHECK":
        return _file(c)
    host, port = _target(c, addr, port or DEFAULT_PORTS.get(c.kind, 0))
    if c.kind == "UDP_CHECK":
        return _udp(c, host, port)
    if c.kind == "PING_CHECK":
        return _ping(c, host)
    if c.kind == "DNS_CHECK":
        return _dns(c, host, port)
    if c.kind == "SMTP_CHECK":
        return _smtp(c, host, port)
    # a connection per url, as keepalived makes one per request; TCP_CHECK
    # is the connection alone
    for url in c.urls or [None]:
        try:
            s = _connect(c, host, port)
        except OSError as e:
            return Verdict(False, f"TCP connection to {_where(host, port)} failed "
                                  f"({e.strerror or e})")
        try:
            if url is None:
                continue
            if c.kind == "SSL_GET":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # keepalived does not verify either
                s = ctx.wrap_socket(s, server_hostname=url.virtualhost or c.virtualhost)
            verdict = _http_get(c, s, host, port, url)
            if not verdict.ok:
                return verdict
        except (OSError, ssl.SSLError) as e:
            return Verdict(False, f"{c.kind} to {_where(host, port)} failed ({e})")
        finally:
            s.close()
    return Verdict(True)


def _http_get(c: Checker, s: socket.socket, host: str, port: int,
              url: keepalived.Url) -> Verdict:
    vhost = url.virtualhost or c.virtualhost or (f"[{host}]" if ":" in host else host)
    hostport = vhost if port in (80, 443) else f"{vhost}:{port}"
    s.sendall(f"GET {url.path} HTTP/1.0\r\nUser-Agent: {USER_AGENT}\r\n"
              f"Host: {hostport}\r\n\r\n".encode())
    data = b""
    head_end = -1
    length = None
    while len(data) < MAX_BODY:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if head_end < 0:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                for line in data[:head_end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length" and value.strip().isdigit():
                        length = int(value.strip())
        if head_end >= 0 and length is not None and len(data) >= head_end + 4 + length:
            break
    what = f"{c.kind} to {_where(host, port)}{url.path}"
    if head_end < 0:
        return Verdict(False, f"{what}: no HTTP header received")
    status = data[:data.find(b"\r\n")].split()
    if len(status) < 2 or not status[1].isdigit():
        return Verdict(False, f"{what}: not an HTTP status line")
    code = int(status[1])
    if not url.status_ok(code):
        return Verdict(False, f"{what}: HTTP status code {code}")
    body = data[head_end + 4:]
    if length is not None:
        body = body[:length]
    if url.regex is not None:
        found = url.regex.search(body[:url.regex_max_offset or len(body)],
                                 url.regex_min_offset) is not None
        if found == url.regex_no_match:
            return Verdict(False, f"{what}: regex {url.regex.pattern.decode()!r} "
                                  f"{'matched' if found else 'did not match'}")
    if url.digest:
        got = hashlib.md5(body).hexdigest()  # noqa: S324 - keepalived's digest is MD5
        if got != url.digest:
            return Verdict(False, f"{what}: MD5 digest {got} is not {url.digest}")
    return Verdict(True)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _udp(c: Checker, host: str, port: int) -> Verdict:
    where = f"[{host}]:udp:{port}"
    try:
        s = _connect(c, host, port, socket.SOCK_DGRAM)
    except OSError as e:
        return Verdict(False, f"UDP connection to {where} failed ({e.strerror or e})")
    with s:
        try:
            s.send(c.payload)
            s.settimeout(c.connect_timeout)
            # one octet more than allowed tells a reply that is too long
            reply = s.recv(c.max_reply_length + 1)
        except TimeoutError:
            # no ICMP error within connect_timeout: keepalived takes silence as up
            # unless a reply is required
            if c.require_reply:
                return Verdict(False, f"UDP check to {where} failed (no reply)")
            return Verdict(True)
        except OSError as e:
            return Verdict(False, f"UDP check to {where} failed ({e.strerror or e})")
    # keepalived (check_udp.c) judges a reply only against a given pattern: its
    # length within bounds, and as many octets as both have equal outside the
    # pattern's x nibbles
    if c.reply_pattern:
        if not c.min_reply_length <= len(reply) <= c.max_reply_length:
            return Verdict(False, f"UDP check to {where} failed (reply length {len(reply)})")
        for got, want, free in zip(reply, c.reply_pattern, c.reply_mask, strict=False):
            if (got ^ want) & ~free & 0xFF:
                return Verdict(False, f"UDP check to {where} reply data mismatch")
    return Verdict(True)


def _icmp_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ping(c: Checker, host: str) -> Verdict:
    v6 = ":" in host
    family, proto = ((socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6
                     else (socket.AF_INET, socket.IPPROTO_ICMP))
    echo, reply_type = (128, 129) if v6 else (8, 0)
    ident, seq = random.getrandbits(16), random.getrandbits(16)
    data = b"lvsxdp keepalived PING_CHECK"
    packet = struct.pack("!BBHHH", echo, 0, 0, ident, seq) + data
    if not v6:  # the kernel sums ICMPv6 itself (it needs the pseudo header)
        packet = packet[:2] + struct.pack("!H", _icmp_sum(packet)) + packet[4:]
    where = f"[{host}]"
    try:
        s = socket.socket(family, socket.SOCK_RAW, proto)
    except OSError as e:
        return Verdict(False, f"ICMP connection to {where} failed ({e.strerror or e})")
    with s:
        try:
            if c.bindto:
                s.bind((c.bindto, 0))
            s.connect((host, 0))
            s.send(packet)
            deadline = time.monotonic() + c.connect_timeout
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                got = s.recv(65535)
                if not v6:  # a raw IPv4 socket hands over the IP header too
                    got = got[(got[0] & 0x0F) * 4:]
                if len(got) >= 8 and got[0] == reply_type and \
                        struct.unpack("!HH", got[4:8]) == (ident, seq):
                    return Verdict(True)
        except OSError as e:
            return Verdict(False, f"ICMP connection to {where} failed ({e.strerror or e})")
    return Verdict(False, f"ICMP connection to {where} failed (no echo reply)")


def dns_query(qid: int, name: str, qtype: str) -> bytes:
    """A DNS query as keepalived's DNS_CHECK sends it: recursion desired,
    one question of class IN."""
    labels = [x for x in name.rstrip(".").split(".") if x] if name != "." else []
    qname = b"".join(bytes([len(x.encode())]) + x.encode() for x in labels) + b"\0"
    return (struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname
            + struct.pack("!HH", keepalived.DNS_TYPES[qtype], 1))


RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _dns(c: Checker, host: str, port: int) -> Verdict:
    where = f"DNS_CHECK ([{host}]:udp:{port})"
    qid = random.getrandbits(16)
    try:
        s = _connect(c, host, port, socket.SOCK_DGRAM)
    except OSError as e:
        return Verdict(False, f"{where} failed to connect ({e.strerror or e})")
    with s:
        try:
            s.send(dns_query(qid, c.dns_name, c.dns_type))
            deadline = time.monotonic() + c.connect_timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                s.settimeout(left)
                reply = s.recv(65535)
                # a stray or late datagram, or a query (QR clear), is not this
                # query's answer: keepalived reads on
                if len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == qid \
                        and reply[2] & 0x80:
                    break
        except TimeoutError:
            return Verdict(False, f"{where} failed (timeout)")
        except OSError as e:
            return Verdict(False, f"{where} failed to read socket ({e.strerror or e})")
    flags = struct.unpack("!H", reply[2:4])[0]
    rcode = flags & 0x000F
    if rcode:
        return Verdict(False, f"{where} RCODE error ({RCODES.get(rcode, rcode)})")
    return Verdict(True)


def _smtp_reply(f) -> tuple[int, str]:
    """An SMTP reply, its continuation lines (`250-...`) read past."""
    while True:
        line = f.readline(4096).decode("latin-1")
        if not line:
            return 0, "connection closed"
        if len(line) < 4 or not line[:3].isdigit():
            return 0, f"bad reply line {line.strip()!r}"
        if line[3] != "-":
            return int(line[:3]), line.strip()


def _smtp(c: Checker, host: str, port: int) -> Verdict:
    where = _where(host, port)
    try:
        s = _connect(c, host, port)
    except OSError as e:
        return Verdict(False, f"SMTP connection to {where} failed ({e.strerror or e})")
    try:
        with s, s.makefile("rb") as f:
            code, line = _smtp_reply(f)
            if code != 220:
                return Verdict(False, f"SMTP server {where} bad banner ({line})")
            s.sendall(f"HELO {c.helo_name}\r\n".encode())
            code, line = _smtp_reply(f)
            if code != 250:
                return Verdict(False, f"SMTP server {where} refused HELO ({line})")
            s.sendall(b"QUIT\r\n")
            _smtp_reply(f)  # what the server says to QUIT changes nothing
    except OSError as e:
        return Verdict(False, f"SMTP connection to {where} failed ({e.strerror or e})")
    return Verdict(True)


def file_value(text: bytes) -> int:
    """What C's strtol(text, NULL, 0) makes of a track file: leading
    blanks, a sign, 0x hex or 0 octal, up to the first other character;
    nothing readable is 0."""
    m = re.match(rb"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        return 0
    value = int(m.group(2), 0) if not m.group(2).startswith(b"0") or len(m.group(2)) == 1 \
        or m.group(2)[1:2] in b"xX" else int(m.group(2), 8)
    return -value if m.group(1) == b"-" else value


def _file(c: Checker) -> Verdict:
    tf = c.track_file
    try:
        with open(tf.path, "rb") as f:
            value = file_value(f.read(127))
    except OSError:
        value = 0  # a missing file counts as 0, as keepalived takes it
    fault = Verdict(False, f"tracked file {tf.name} now FAULT state")
    if not c.file_weight:
        # weight 0: any non-zero value is a failure (reverse: 0 is)
        return fault if (value != 0) != c.file_reverse else Verdict(True)
    delta = value * c.file_weight * (-1 if c.file_reverse else 1)
    if delta <= -(1 << 31):  # keepalived's IPVS_WEIGHT_FAULT
        return fault
    return Verdict(True, weight=max(0, min(keepalived.WEIGHT_LIMIT, c.base_weight + delta)))


def init_track_file(tf: keepalived.TrackFile) -> None:
    """track_file's init_file: the value written when the file is missing
    (or always, with overwrite)."""
    if tf.init_value is None or (os.path.exists(tf.path) and not tf.init_overwrite):
        return
    try:
        with open(tf.path, "w") as f:
            f.write(f"{tf.init_value}\n")
    except OSError as e:
        log.error("track_file %s: cannot write %s: %s", tf.name, tf.path, e.strerror)


def _misc(c: Checker) -> Verdict:
    try:
        argv = shlex.split(c.misc_path)
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=c.misc_timeout,
                            check=False).returncode
    except subprocess.TimeoutExpired:
        return Verdict(False, f"Misc check for [{c.misc_path}] timed out")
    except (OSError, ValueError) as e:
        return Verdict(False, f"Misc check for [{c.misc_path}] cannot run ({e})")
    if rc == 0:
        return Verdict(True)
    if c.misc_dynamic and 2 <= rc <= 255:
        return Verdict(True, weight=rc - 2)
    return Verdict(False, f"Misc check for [{c.misc_path}] failed with exit status {rc}")


# -- one checker's life: every delay_loop, retries before a real goes down -------

class CheckerRun(threading.Thread):
    """Runs one checker until stop is set; puts (self, Verdict) on out when
    its verdict (up/down, dynamic weight) changes."""

    def __init__(self, c: Checker, rs: RealServer, port: int, out: queue.Queue) -> None:
        super().__init__(daemon=True, name=f"{c.kind} {rs.name()}")
        self.checker, self.rs, self.port, self.out = c, rs, port, out
        self.up = not c.alpha  # alpha: down until a check passes
        self.weight: int | None = None
        self.stop = threading.Event()
        self.checks = 0

    def run(self) -> None:
        c = self.checker
        # keepalived: at start the retries are spent, so a real that fails
        # its first check goes down at once; once up, it has `retry` more.
        tries = c.retry
        delay = 0.0
        if c.track_file is not None:
            init_track_file(c.track_file)
        while not self.stop.wait(delay):
            verdict = probe(c, self.rs.addr, self.port)
            self.checks += 1
            log.debug("%s %s: %s", c.kind, self.rs.name(),
                      "ok" if verdict.ok else verdict.why)
            delay = c.delay_loop
            if verdict.ok:
                tries = 0
                if not self.up or verdict.weight != self.weight:
                    self.up, self.weight = True, verdict.weight
                    self.out.put((self, verdict))
                continue
            if self.up and tries < c.retry:
                tries += 1
                delay = c.delay_before_retry
                log.info("%s: retry %d of %d in %g s", verdict.why, tries, c.retry, delay)
                continue
            if self.up:
                self.up = False
                self.out.put((self, verdict))


@dataclass
class RealState:
    vs: VirtualServer
    rs: RealServer
    runs: list[CheckerRun] = field(default_factory=list)
    was_alive: bool = True  # what the last verdict made of it
    last_weight: int = 0
    why: str = ""  # the failure that holds it down, for `lvsxdp status`

    @property
    def alive(self) -> bool:
        return all(r.up for r in self.runs)

    @property
    def weight(self) -> int:
        dyn = [r.weight for r in self.runs if r.weight is not None]
        return dyn[-1] if dyn else self.rs.weight


# -- the table keepalived would make, as ipvsadm lines ----------------------------

def desired(conf: KeepalivedConf, states: dict, quorum_up: dict) -> dict:
    """{service key: (Service, service words, {(real address, port): -a words})}:
    what the table should hold for every virtual server now. A real is
    named by address and port, as IPVS names it: masquerading reals may
    share an address on different ports."""
    out = {}
    for vs in conf.virtual_servers:
        up = quorum_up[_vs_key(vs)]
        for svc in vs.services:
            reals = {}
            for rs in vs.reals:
                st = states[_real_key(vs, rs)]
                key = (rs.addr, keepalived.real_port(svc, rs, rs.fwd))
                if st.alive and (up or not vs.sorry_server):
                    reals[key] = keepalived.real_words("-a", svc, rs, st.weight)
                elif rs.inhibit:
                    reals[key] = keepalived.real_words("-a", svc, rs, 0)
            if vs.sorry_server:
                key = (vs.sorry_server[0],
                       keepalived.real_port(svc, vs.sorry_server, vs.sorry_fwd))
                if key in reals:
                    pass
                elif not up:
                    reals[key] = keepalived.real_words("-a", svc, vs.sorry_server,
                                                       fwd=vs.sorry_fwd)
                elif vs.sorry_inhibit:
                    reals[key] = keepalived.real_words("-a", svc, vs.sorry_server, 0,
                                                       fwd=vs.sorry_fwd)
            out[svc.key()] = (svc, vs.service_words(), reals)
    return out


def changes(config: Config, want: dict, managed: set) -> list[list[str]]:
    """The ipvsadm lines that take config's managed services to want;
    services keepalived.conf does not name are left alone."""
    lines = []
    for key in managed:
        svc = config.find_service(key)
        if key not in want and svc is not None:
            lines.append(["-D", *_model_spec(svc)])
    for key, (svc, words, reals) in want.items():
        have = config.find_service(key)
        lines.append(["-E" if have else "-A", *svc.spec(), *words])
        have_reals = {(r.addr, r.port) for r in have.reals} if have else set()
        for rkey, add in reals.items():
            lines.append(["-e", *add[1:]] if rkey in have_reals else add)
        for addr, port in sorted(have_reals - set(reals), key=str):
            a = f"[{addr}]" if addr.version == 6 else str(addr)
            lines.append(["-d", *svc.spec(), "-r", f"{a}:{port}"])
    return lines


def _model_spec(svc) -> list[str]:
    """ipvsadm's words naming a service of lvsxdp's model (model.Service)."""
    if svc.fwmark:
        return ["-f", str(svc.fwmark)] + (["-6"] if svc.family == shared.AF_INET6 else [])
    a = f"[{svc.addr}]" if svc.addr.version == 6 else str(svc.addr)
    return ["-t" if svc.proto == "tcp" else "-u", f"{a}:{svc.port}"]


def apply_lines(config: Config, lines: list[list[str]]) -> Config:
    for argv in lines:
        config = ipvsadm.apply(config, ipvsadm.parse(argv))
    return config


def _vs_key(vs: VirtualServer) -> tuple:
    return tuple(s.key() for s in vs.services)


def _real_key(vs: VirtualServer, rs: RealServer) -> tuple:
    return (_vs_key(vs), rs.addr, rs.port, tuple(c.identity() for c in rs.checkers))


def _real_port(vs: VirtualServer, rs: RealServer) -> int:
    """The port a checker probes: the real's, else the first service's."""
    return rs.port or next((s.port for s in vs.services if s.port), 0)


# -- the daemon -------------------------------------------------------------------

class Daemon:
    """`lvsxdp keepalived`: reads the conf, runs every checker, keeps the
    director's table as keepalived keeps IPVS's. SIGHUP reloads, SIGTERM
    stops (removing its services unless keep_on_exit: keepalived's -I)."""

    def __init__(self, path: str, config_id: str | None = None, keep_on_exit: bool = False,
                 edit=None) -> None:
        from . import director, runtime  # noqa: PLC0415 - pyroute2 and the maps: only to run

        self.path, self.config_id, self.keep_on_exit = path, config_id, keep_on_exit
        self.state_path = runtime.paths().keepalived
        self.started = time.time()
        self.edit = edit or director.edit
        self.events: queue.Queue = queue.Queue()
        self.states: dict[tuple, RealState] = {}
        self.quorum_up: dict[tuple, bool] = {}
        self.managed: set = set()
        self.conf = KeepalivedConf()
        self.reload_wanted = threading.Event()
        self.stop_wanted = threading.Event()
        self.children: list[subprocess.Popen] = []

    # signals only set flags: the main loop acts on them
    def on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            self.reload_wanted.set()
        else:
            self.stop_wanted.set()
        self.events.put(None)

    def take(self, conf: KeepalivedConf) -> None:
        """Makes conf the running configuration: the table follows it, new
        reals' checkers start, retired ones stop, the others keep their
        verdicts."""
        for w in conf.warnings:
            log.warning("%s", w)
        if conf.ignored:
            log.info("Ignoring (not LVS, or nothing for lvsxdp to do): %s",
                     ", ".join(conf.ignored))
        old_states, self.states = self.states, {}
        fresh: list[CheckerRun] = []
        for vs in conf.virtual_servers:
            for rs in vs.reals:
                key = _real_key(vs, rs)
                st = old_states.pop(key, None)
                if st is None:
                    st = RealState(vs, rs)
                    port = _real_port(vs, rs)
                    st.runs = [CheckerRun(c, rs, port, self.events) for c in rs.checkers]
                    st.was_alive, st.last_weight = st.alive, st.weight
                    fresh += st.runs
                else:
                    st.vs, st.rs = vs, rs  # the same checkers: their verdicts stay
                self.states[key] = st
        for st in old_states.values():
            for run in st.runs:
                run.stop.set()
        old_quorum, self.quorum_up = self.quorum_up, {}
        for vs in conf.virtual_servers:
            key = _vs_key(vs)
            if key in old_quorum:
                self.quorum_up[key] = old_quorum[key]
                continue
            # keepalived's set_quorum_states, then "Starting with quorum down"
            self.quorum_up[key] = self._weight_sum(vs) >= vs.quorum + vs.hysteresis
            if not self.quorum_up[key] and vs.sorry_server:
                log.warning("Starting with quorum down %d-%d=%d > %d for VS %s", vs.quorum,
                            vs.hysteresis, vs.quorum - vs.hysteresis, self._weight_sum(vs),
                            vs.name())
                log.info("%s sorry server %s to VS %s",
                         "Enabling" if vs.sorry_inhibit else "Adding",
                         vs.real_name(vs.sorry_server), vs.name())
        self.conf = conf
        self.managed |= {s.key() for vs in conf.virtual_servers for s in vs.services}
        self.sync()
        # services the old conf had and this one has not are gone now
        self.managed = {s.key() for vs in conf.virtual_servers for s in vs.services}
        # the table first holds every real in its starting state (up, or
        # down with alpha); the checkers' verdicts then come in as changes
        for run in fresh:
            run.start()
        self.write_state()

    def write_state(self) -> None:
        """Tells `lvsxdp status` who checks and what each real's checkers say."""
        from . import runtime  # noqa: PLC0415

        reals = [{"vs": st.vs.name(), "real": st.vs.real_name(st.rs), "alive": st.alive,
                  "weight": st.weight, "checkers": len(st.runs),
                  "why": "" if st.alive else st.why or "not yet checked (alpha)"}
                 for st in self.states.values()]
        try:
            runtime.write_json(self.state_path, {"pid": os.getpid(), "conf": self.path,
                                                 "started": self.started, "reals": reals})
        except OSError as e:
            log.error("cannot write %s: %s", self.state_path, e)

    def _weight_sum(self, vs: VirtualServer) -> int:
        return sum(self.states[_real_key(vs, rs)].weight for rs in vs.reals
                   if self.states[_real_key(vs, rs)].alive)

    def _quorum(self) -> None:
        for vs in self.conf.virtual_servers:
            key = _vs_key(vs)
            total = self._weight_sum(vs)
            if self.quorum_up[key] and total < vs.quorum - vs.hysteresis:
                log.warning("Lost quorum %d-%d=%d > %d for VS %s", vs.quorum, vs.hysteresis,
                            vs.quorum - vs.hysteresis, total, vs.name())
                self.quorum_up[key] = False
                self.notify(vs.quorum_down)
                if vs.sorry_server:
                    log.info("%s sorry server %s to VS %s",
                             "Enabling" if vs.sorry_inhibit else "Adding",
                             vs.real_name(vs.sorry_server), vs.name())
                    log.info("Removing alive servers from the pool for VS %s", vs.name())
            elif not self.quorum_up[key] and total >= vs.quorum + vs.hysteresis:
                log.warning("Gained quorum %d+%d=%d <= %d for VS %s", vs.quorum, vs.hysteresis,
                            vs.quorum + vs.hysteresis, total, vs.name())
                self.quorum_up[key] = True
                self.notify(vs.quorum_up)
                if vs.sorry_server:
                    log.info("%s sorry server %s from VS %s",
                             "Disabling" if vs.sorry_inhibit else "Removing",
                             vs.real_name(vs.sorry_server), vs.name())
                    log.info("Adding alive servers to the pool for VS %s", vs.name())

    def sync(self) -> bool:
        """Brings the director's table to what the checkers say."""
        self._quorum()
        want = desired(self.conf, self.states, self.quorum_up)
        managed = set(self.managed)
        return self.edit(lambda config: apply_lines(config, changes(config, want, managed)))

    def notify(self, script: str | None, *args: str) -> None:
        if not script:
            return
        try:
            self.children.append(subprocess.Popen([*shlex.split(script), *args],
                                                  stdin=subprocess.DEVNULL,
                                                  start_new_session=True))
        except (OSError, ValueError) as e:
            log.error("cannot run notify script %s: %s", script, e)
        self.children = [p for p in self.children if p.poll() is None]

    def verdict(self, run: CheckerRun, v: Verdict) -> None:
        st = next((s for s in self.states.values() if run in s.runs), None)
        if st is None:
            return  # a checker a reload retired
        rs, vs = st.rs, st.vs
        name = vs.real_name(rs)
        if v.ok:
            log.info("%s on service %s succeeded%s", run.checker.kind, name,
                     f" (weight {v.weight})" if v.weight is not None else "")
        else:
            log.warning("%s", v.why)
            st.why = v.why
        if st.alive != st.was_alive:
            st.was_alive = st.alive
            # keepalived's perform_svr_state
            if st.alive:
                log.info("%s service %s %s VS %s", "Enabling" if rs.inhibit else "Adding", name,
                         "of" if rs.inhibit else "to", vs.name())
                self.notify(rs.notify_up)
            else:
                log.info("%s service %s %s VS %s", "Disabling" if rs.inhibit else "Removing",
                         name, "of" if rs.inhibit else "from", vs.name())
                self.notify(rs.notify_down)
        elif st.alive and v.weight is not None and v.weight != st.last_weight:
            log.info("Changing weight from %d to %d for active service %s of VS %s",
                     st.last_weight, st.weight, name, vs.name())
        st.last_weight = st.weight

    def run(self) -> int:
        """The main loop, until SIGTERM."""
        while not self.stop_wanted.is_set():
            try:
                item = self.events.get(timeout=1.0)
            except queue.Empty:
                continue
            changed = False
            while item is not None or not self.events.empty():
                if item is not None:
                    self.verdict(*item)
                    changed = True
                try:
                    item = self.events.get_nowait()
                except queue.Empty:
                    break
            if self.reload_wanted.is_set():
                self.reload_wanted.clear()
                self.reload()
                continue
            if changed:
                self._sync_logged()
                self.write_state()
        self.shutdown()
        return 0

    def _sync_logged(self) -> None:
        try:
            self.sync()
        except (ConfigError, OSError) as e:
            log.error("cannot change the director's table: %s", e)

    def reload(self) -> None:
        log.info("Reloading configuration file %s", self.path)
        try:
            conf = keepalived.parse(self.path, self.config_id)
        except ConfigError as e:
            log.error("%s", e)
            log.error("configuration not reloaded: the running one stays")
            return
        try:
            self.take(conf)
        except (ConfigError, OSError) as e:
            log.error("cannot change the director's table: %s", e)

    def shutdown(self) -> None:
        for st in self.states.values():
            for run in st.runs:
                run.stop.set()
        for vs in self.conf.virtual_servers:
            if vs.omega:
                # omega: what goes away at shutdown is notified as going down
                for rs in vs.reals:
                    if self.states[_real_key(vs, rs)].alive:
                        self.notify(rs.notify_down)
                if self.quorum_up.get(_vs_key(vs)):
                    self.notify(vs.quorum_down)
        if not self.keep_on_exit:
            managed = set(self.managed)
            try:
                self.edit(lambda config: apply_lines(config, changes(config, {}, managed)))
                log.info("Removed the virtual servers of %s", self.path)
            except (ConfigError, OSError) as e:
                log.error("cannot remove the virtual servers: %s", e)
        for p in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)


# -- the command ------------------------------------------------------------------

def pid_file(path: str | None) -> str:
    from . import runtime  # noqa: PLC0415

    if path:
        return path
    return str(runtime.RUN_DIR / f"{runtime.paths().key}.keepalived.pid")


def running_pid(path: str) -> int | None:
    try:
        pid = int(open(path).read().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"keepalived" in f.read():
                return pid
    except (OSError, ValueError, IndexError):
        pass
    return None


def setup_logging(console: bool, detail: bool, facility: int | None = None,
                  log_file: str | None = None, syslog: bool = True) -> None:
    """keepalived's logging: syslog (LOG_DAEMON, or LOG_LOCAL<facility>),
    stderr with -l, a file with -g. With none of them reachable (no
    /dev/log), a file in lvsxdp's run directory, so that nothing is lost."""
    import logging.handlers  # noqa: PLC0415

    from . import runtime  # noqa: PLC0415

    root = logging.getLogger("lvsxdp")
    root.setLevel(logging.DEBUG if detail else logging.INFO)
    root.handlers.clear()
    stamped = logging.Formatter("%(asctime)s Keepalived_healthcheckers[%(process)d]: "
                                "%(message)s", "%a %b %d %H:%M:%S %Y")
    handlers: list[logging.Handler] = []
    if console:
        handlers.append(logging.StreamHandler())
    if syslog and os.path.exists("/dev/log"):
        try:
            fac = (logging.handlers.SysLogHandler.LOG_LOCAL0 + facility
                   if facility is not None else logging.handlers.SysLogHandler.LOG_DAEMON)
            h = logging.handlers.SysLogHandler("/dev/log", facility=fac)
            h.setFormatter(logging.Formatter("Keepalived_healthcheckers[%(process)d]: "
                                             "%(message)s"))
            handlers.append(h)
        except OSError:
            pass
    if log_file is None and not handlers:
        log_file = str(runtime.RUN_DIR / f"{runtime.paths().key}.keepalived.log")
    if log_file:
        os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        if h.formatter is None:
            h.setFormatter(stamped)
        root.addHandler(h)


def daemonize() -> None:
    """keepalived's fork into the background (without -n)."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(fd, n)
    os.close(fd)


def serve(path: str, config_id: str | None, pidfile: str, keep_on_exit: bool,
          foreground: bool) -> int:
    """Starts the daemon; returns its exit status. The conf is read (and
    refused, with keepalived's message) before anything forks."""
    log.info("Starting lvsxdp keepalived (health checkers for %s)", path)
    d = Daemon(path, config_id, keep_on_exit)
    conf = keepalived.parse(path, config_id)  # a bad conf stops here, in the foreground
    if not foreground:
        daemonize()
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, d.on_signal)
        d.take(conf)
        log.info("Running: %d virtual servers, %d real servers, %d checkers",
                 len(conf.virtual_servers), sum(len(v.reals) for v in conf.virtual_servers),
                 sum(len(r.checkers) for v in conf.virtual_servers for r in v.reals))
        return d.run()
    finally:
        with contextlib.suppress(OSError):
            if running_pid(pidfile) in (os.getpid(), None):
                os.unlink(pidfile)
        with contextlib.suppress(OSError):
            from . import runtime  # noqa: PLC0415

            if runtime.read_json(d.state_path).get("pid") == os.getpid():
                d.state_path.unlink()


def running(state: dict) -> bool:
    """Is the `lvsxdp keepalived` that wrote state alive."""
    try:
        with open(f"/proc/{int(state.get('pid'))}/cmdline", "rb") as f:
            return b"keepalived" in f.read()
    except (OSError, TypeError, ValueError):
        return False


def dump(conf: KeepalivedConf) -> str:
    """-d: the configuration as lvsxdp will apply it, in ipvsadm's lines."""
    lines = []
    for vs in conf.virtual_servers:
        lines.append(f"# virtual_server {vs.name()} ({vs.where}), delay_loop {vs.delay_loop:g}"
                     f", quorum {vs.quorum}, hysteresis {vs.hysteresis}")
        for svc in vs.services:
            lines.append(" ".join(["ipvsadm", "-A", *svc.spec(), *vs.service_words()]))
            for rs in vs.reals:
                checks = ", ".join(f"{c.kind} every {c.delay_loop:g} s" for c in rs.checkers)
                lines.append(" ".join(["ipvsadm", *keepalived.real_words("-a", svc, rs)])
                             + (f"   # {checks}" if checks else ""))
    return "\n".join(lines) + ("\n" if lines else "")
