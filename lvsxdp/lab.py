"""The lab: the seed's LVS-DR setup, built from network namespaces on one machine.

    client 198.18.2.50-.53 ─┐          2001:db8:2::50-53
    director 198.18.2.2     ├── bridge br0 (namespace <prefix>sw), 198.18.2.0/24
      eth0 + VIP 198.18.2.1 │          and 2001:db8:2::/64; VIP6 2001:db8:2::1
    r1 198.18.2.100 ────────┤   reals: both VIPs on lo; arp_ignore=1,
    r2 198.18.2.200 ────────┘          arp_announce=2, rp_filter=0

The director answers ARP (and IPv6 neighbour solicitations) for the VIPs and
runs lvsxdp on its eth0, the name the seed's iptables lines use (`-i eth0`);
the reals answer the client directly (direct routing, `ipvsadm ... -g`).

IPv6 needs no counterpart of arp_ignore/arp_announce: Linux answers a
neighbour solicitation only for an address of the interface it arrived on
(ndisc_recv_ns looks the target up strictly on that device) and solicits
from an address of the outgoing interface, so a VIP on lo is never announced
(tests/test_e2e_seed.py checks it with a solicitation of its own).

Each real serves, on IPv4 and IPv6, every answer naming the real:
  80, 8080  HTTP (body: its name; /client: its name and the client's address)
  443       HTTPS, a self-signed certificate made with openssl at build time
  22        an ssh-like banner (`SSH-2.0-r1`)
  5000/udp  one datagram back per datagram (`r1 <client address>`)
  21        vsftpd, anonymous, passive ports 2000-2100 (the seed's
            pasv_min_port/pasv_max_port), pasv_address = the VIP; the file
            whoami.txt holds the real's name

Everything the lab makes (namespaces, processes, XDP attachments, the
director's lvsxdp) is recorded as it is made and removed on teardown, also
after errors, SIGTERM or SIGHUP. `lvsxdp lab` (main()) walks through every
example of the seed (PCC, PPC, firewall marks for http+https, FTP with
marks) and checks each; `--keep` leaves it up to explore and `--down`
removes a kept lab.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ipaddress
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from . import bpfsys

SUBNET_PREFIX = 24
VIP = "198.18.2.1"
DIRECTOR_ADDR = "198.18.2.2"
CLIENT_ADDRS = ("198.18.2.50", "198.18.2.51", "198.18.2.52", "198.18.2.53")
REALS = {"r1": "198.18.2.100", "r2": "198.18.2.200"}
SUBNET6_PREFIX = 64
VIP6 = "2001:db8:2::1"
DIRECTOR_ADDR6 = "2001:db8:2::2"
CLIENT_ADDRS6 = ("2001:db8:2::50", "2001:db8:2::51", "2001:db8:2::52", "2001:db8:2::53")
REALS6 = {"r1": "2001:db8:2::100", "r2": "2001:db8:2::200"}
UDP_PORT = 5000
PASV_PORTS = (2000, 2100)  # the seed's vsftpd.conf
FTP_FILE = "whoami.txt"
IFACE = "eth0"
LAB_PREFIX = "lxl-"
LAB_STATE = Path("/run/lvsxdp-lab")
# How `ipvsadm -L -c` shows a template: ASSURED once one of its connections
# was established, NONE before.
TEMPLATE_STATES = ("NONE", "ASSURED")

# The seed's examples (seed/lvs-persistence.txt), 192.168.2.x -> 198.18.2.x,
# without the seed's prompts and its Chinese remarks after `--`.
SEED_PCC = (
    "ipvsadm -A -t 198.18.2.1:0 -s rr -p 360",
    "ipvsadm -a -t 198.18.2.1:0 -r 198.18.2.100 -g",
    "ipvsadm -a -t 198.18.2.1:0 -r 198.18.2.200 -g",
)
SEED_PPC = (
    "ipvsadm -C",
    "ipvsadm -A -t 198.18.2.1:22 -s rr -p",
    "ipvsadm -A -t 198.18.2.1:80 -s rr -p",
    "ipvsadm -a -t 198.18.2.1:22 -r 198.18.2.100 -g",
    "ipvsadm -a -t 198.18.2.1:22 -r 198.18.2.200 -g",
    "ipvsadm -a -t 198.18.2.1:80 -r 198.18.2.100 -g",
)
SEED_FWMARK = (
    "iptables -t mangle -A PREROUTING -d 198.18.2.1 -i eth0 -p tcp -m multiport "
    "--dport 80,443 -j MARK --set-mark 10",
    "ipvsadm -C",
    "ipvsadm -A -f 10 -s rr -p",
    "ipvsadm -a -f 10 -r 198.18.2.100 -g",
    "ipvsadm -a -f 10 -r 198.18.2.200 -g",
)
SEED_VSFTPD = ("pasv_min_port=2000", "pasv_max_port=2100")
SEED_FTP = (
    "iptables -t mangle -A PREROUTING -i eth0 -d 198.18.2.1 -p tcp --dport 21 "
    "-j MARK --set-mark 10",
    "iptables -t mangle -A PREROUTING -i eth0 -d 198.18.2.1 -p tcp --dport 2000:2100 "
    "-j MARK --set-mark 10",
    "ipvsadm -A -f 10 -s rr -p",
    "ipvsadm -a -f 10 -r 198.18.2.100 -g",
    "ipvsadm -a -f 10 -r 198.18.2.200 -g",
)

# What each real runs (argv: name, certificate, key, then the addresses its
# UDP service answers on): HTTP on 80 and 8080, HTTPS on 443, the banner on
# 22, on IPv4 and IPv6 alike, and the UDP service. Every answer names the
# real. It prints "ready" once every port listens.
_SERVER = r"""
import socket, socketserver, ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, cert, key, *udp_addrs = sys.argv[1:]

def peer(address):
    host = address[0]
    return host[len("::ffff:"):] if host.startswith("::ffff:") else host

class Web(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client can hold a connection

    def do_GET(self):
        text = f"{name} {peer(self.client_address)}" if self.path == "/client" else name
        body = (text + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Banner(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(f"SSH-2.0-{name}\r\n".encode())

class DualStack:
    # One socket for IPv4 and IPv6; no name lookup of the bound address.
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = name, self.server_address[1]

class WebServer(DualStack, ThreadingHTTPServer):
    pass

class BannerServer(DualStack, socketserver.ThreadingTCPServer):
    pass

def udp_service(addr):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 5000))  # bound to the VIP: the answer comes from the VIP
    def serve():
        while True:
            _, sender = s.recvfrom(2048)
            s.sendto(f"{name} {sender[0]}\n".encode(), sender)
    return serve

tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
https = WebServer(("::", 443), Web)
# the handshake happens in the request's thread, not in the accepting one
https.socket = tls.wrap_socket(https.socket, server_side=True, do_handshake_on_connect=False)
loops = [s.serve_forever for s in (WebServer(("::", 8080), Web), https,
                                   BannerServer(("::", 22), Banner))]
loops += [udp_service(a) for a in udp_addrs]
web = WebServer(("::", 80), Web)
for loop in loops:
    threading.Thread(target=loop, daemon=True).start()
print("ready", flush=True)
web.serve_forever()
"""

# vsftpd on each real: the seed's passive FTP (standalone and in the
# foreground, as a namespace needs: ENVIRONMENT.md).
_VSFTPD_CONF = """\
listen=YES
listen_ipv6=NO
background=NO
seccomp_sandbox=NO
anonymous_enable=YES
no_anon_password=YES
anon_root={root}
local_enable=NO
write_enable=NO
pasv_enable=YES
{pasv_lines}
pasv_address={vip}
connect_from_port_20=NO
xferlog_enable=NO
use_localtime=NO
secure_chroot_dir={empty}
"""

# A two-instruction XDP program, `return XDP_PASS;`, for the bridge port that
# faces the director: a veth only receives its peer's XDP_TX frames when it
# has an XDP program itself (ENVIRONMENT.md).
_XDP_PASS_INSNS = bytes.fromhex("b700000002000000" "9500000000000000")
_XDP_ATTACHED = {1: "native", 2: "generic", 3: "offload"}


class LabError(RuntimeError):
    """Something in the lab did not work; the message says what."""


def lvsxdp_bin() -> str:
    """The lvsxdp command of this installation (the venv's)."""
    if os.environ.get("LVSXDP_BIN"):
        return os.environ["LVSXDP_BIN"]
    beside = Path(sys.executable).parent / "lvsxdp"
    if beside.exists():
        return str(beside)
    return shutil.which("lvsxdp") or "lvsxdp"


def run(ns: str | None, *cmd: str, check: bool = True, timeout: float = 15,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs cmd inside network namespace ns (None: here) and returns its
    output. Output goes through files, not pipes, so that a daemon the
    command leaves behind cannot hold run() until the timeout."""
    argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                timeout=timeout, env=env).returncode
        except subprocess.TimeoutExpired:
            raise LabError(f"timed out after {timeout:g} s: {shlex.join(argv)}") from None
        out.seek(0)
        err.seek(0)
        res = subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"),
                                          err.read().decode(errors="replace"))
    if check and rc != 0:
        raise LabError(f"`{shlex.join(argv)}` failed ({rc}): "
                       f"{(res.stderr or res.stdout).strip()}")
    return res


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(None, "ip", *args, check=check)


def real_in(answer: str | None) -> str | None:
    """The real named in an answer ("r1", "SSH-2.0-r2"), or None."""
    m = re.search(r"\b(r\d+)\b", answer or "")
    return m.group(1) if m else None


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a live process: with the pid, it names one
    process even after the pid is reused. None once it has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _kill(pid: int, start: str | None, grace: float = 2.0) -> None:
    """Ends exactly the process pid (started at start): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _start_time(pid) is None or _start_time(pid) != start:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if _start_time(pid) != start:
                return
            time.sleep(0.02)


def _load_xdp_pass() -> int:
    return bpfsys.prog_load(bpfsys.BPF_PROG_TYPE_XDP, _XDP_PASS_INSNS, "lab_xdp_pass")


def attach_xdp_pass(ns: str, ifname: str) -> None:
    """Attaches `return XDP_PASS;` to ifname in native mode. The attachment
    holds the program, so neither fd nor pin is kept. (Through a pin and
    `ip`: pyroute2 enters a namespace by forking this process, and a forked
    test process is trouble.)"""
    from . import runtime  # noqa: PLC0415

    runtime.ensure_bpffs()
    pin = runtime.PIN_ROOT.parent / re.sub(r"[^A-Za-z0-9_-]", "_", f"lvsxdp-lab-{ns}-{ifname}")
    fd = _load_xdp_pass()
    try:
        bpfsys.obj_pin(fd, str(pin))
        try:
            # nsenter, not `ip -n`: that remounts /sys, hiding the pin.
            run(None, "nsenter", f"--net=/run/netns/{ns}", "ip", "link", "set", "dev", ifname,
                "xdpdrv", "pinned", str(pin))
        finally:
            pin.unlink()
    finally:
        os.close(fd)


def xdp_mode(ns: str, ifname: str) -> str | None:
    """How an XDP program is attached to ifname: native, generic, or None."""
    info = json.loads(ip("-n", ns, "-j", "-d", "link", "show", "dev", ifname).stdout)[0]
    xdp = info.get("xdp")
    return _XDP_ATTACHED.get(xdp.get("mode")) if xdp else None


class Topology:
    """The lab's namespaces, links, addresses and servers (a context manager).

    `prefix` starts every namespace name: `<prefix>sw` (the bridge),
    `<prefix>cl` (the client), `<prefix>dir` (the director), `<prefix>r1`,
    `<prefix>r2`. With native=True the director's eth0 can run native XDP:
    the bridge port facing it gets an XDP_PASS program and the senders lose
    TX checksum offload (see ENVIRONMENT.md).

    `nics` = (director's, switch's): two real NICs cabled to each other (in
    the kernel matrix's VMs, two virtio-net NICs on one QEMU hub) that take
    the place of the director's veth pair, so that its eth0 is a real NIC's
    driver (native XDP on virtio-net). They are moved into the lab's
    namespaces and back, with their names, on teardown.
    """

    def __init__(self, prefix: str = LAB_PREFIX, native: bool = False,
                 state_dir: str | Path | None = None,
                 run_dir: str | Path | None = None,
                 nics: tuple[str, str] | None = None) -> None:
        self.prefix = prefix
        self.native = native
        self.nics = nics
        self.borrowed: list[tuple[str, str, str]] = []  # (ns, name there, own name)
        self.switch = f"{prefix}sw"
        self.client = f"{prefix}cl"
        self.director = f"{prefix}dir"
        self.reals = {name: f"{prefix}{name}" for name in REALS}
        self.workdir: Path | None = None  # the servers' logs
        # None: lvsxdp's own state directory, so that `lvsxdp -n <director> ...`
        # typed by hand in a kept lab sees the lab's configuration.
        self.state_dir = Path(state_dir) if state_dir else None
        self.run_dir = Path(run_dir) if run_dir else None  # lvsxdp's runtime files
        self.namespaces: list[str] = []  # created by us, in creation order
        self.processes: list[tuple[int, str | None, str]] = []  # pid, start time, what
        self._popens: list[subprocess.Popen] = []
        self.xdp_pass: list[tuple[str, str]] = []  # (ns, ifname) we attached
        self.lvsxdp_up: list[str] = []  # director interfaces lvsxdp was brought up on
        self._closed = False
        self._lock = threading.RLock()
        self._old_handlers: dict[int, object] = {}

    # -- life cycle ---------------------------------------------------

    def __enter__(self) -> Topology:
        try:
            self.build()
        except BaseException:
            self.close(quiet=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(quiet=exc_type is not None)

    def _guard(self) -> None:
        """Teardown also runs at interpreter exit and on SIGTERM/SIGHUP
        (turned into SystemExit so that `with` and finally blocks run)."""
        atexit.register(self.close, quiet=True)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                self._old_handlers[sig] = signal.signal(sig, _exit_on_signal)

    def _unguard(self) -> None:
        atexit.unregister(self.close)
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, handler)
        self._old_handlers.clear()

    def build(self) -> None:
        self._guard()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"lvsxdp-{self.prefix}"))
        hosts = [self.client, self.director, *self.reals.values()]
        taken = [ns for ns in [self.switch, *hosts] if netns_exists(ns)]
        if taken:
            raise LabError(f"namespaces already exist: {', '.join(taken)} "
                           "(a lab is up? `lvsxdp lab --down` removes the lab's)")
        if self.state_dir is None:
            self._forget_config()  # from a lab that died before its teardown
        for ns in [self.switch, *hosts]:
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            ip("-n", ns, "link", "set", "dev", "lo", "up")
        ip("-n", self.switch, "link", "add", "name", "br0", "type", "bridge",
           "forward_delay", "0", "stp_state", "0")
        ip("-n", self.switch, "link", "set", "dev", "br0", "up")
        for host in hosts:
            if self.nics and host == self.director:
                self._borrow_nics()
            else:
                self._cable(host)

        # One segment, IPv4 and IPv6 (nodad: no address waits a second for
        # duplicate detection). The bridge floods multicast: neighbour
        # solicitations reach every host whether or not MLD was heard.
        ip("-n", self.switch, "link", "set", "dev", "br0", "type", "bridge", "mcast_snooping", "0")
        for addr in CLIENT_ADDRS:
            ip("-n", self.client, "addr", "add", f"{addr}/{SUBNET_PREFIX}", "dev", IFACE)
        for addr in CLIENT_ADDRS6:
            ip("-n", self.client, "addr", "add", f"{addr}/{SUBNET6_PREFIX}", "dev", IFACE, "nodad")
        for addr in (f"{DIRECTOR_ADDR}/{SUBNET_PREFIX}", f"{VIP}/32",
                     f"{DIRECTOR_ADDR6}/{SUBNET6_PREFIX}", f"{VIP6}/128"):
            ip("-n", self.director, "addr", "add", addr, "dev", IFACE, "nodad")
        for name, addr in REALS.items():
            ns = self.reals[name]
            ip("-n", ns, "addr", "add", f"{addr}/{SUBNET_PREFIX}", "dev", IFACE)
            ip("-n", ns, "addr", "add", f"{REALS6[name]}/{SUBNET6_PREFIX}", "dev", IFACE, "nodad")
            ip("-n", ns, "addr", "add", f"{VIP}/32", "dev", "lo")
            ip("-n", ns, "addr", "add", f"{VIP6}/128", "dev", "lo")
            # LVS-DR reals: accept the VIP, never announce it (the director owns
            # its ARP), and take packets whose source is not routed back here.
            # (IPv6 needs nothing of the kind: see the module's docstring.)
            settings = []
            for conf in ("all", "default", "lo", IFACE):
                settings += [f"net.ipv4.conf.{conf}.arp_ignore=1",
                             f"net.ipv4.conf.{conf}.arp_announce=2",
                             f"net.ipv4.conf.{conf}.rp_filter=0"]
            run(ns, "sysctl", "-q", "-w", *settings)

        if self.native and not self.nics:
            attach_xdp_pass(self.switch, self._port(self.director))
            self.xdp_pass.append((self.switch, self._port(self.director)))
            run(self.client, "ethtool", "-K", IFACE, "tx", "off")
            run(self.switch, "ethtool", "-K", self._port(self.director), "tx", "off")

        self._make_certificate()
        for name, ns in self.reals.items():
            self._start_server(name, ns)
        for name, ns in self.reals.items():
            self._start_ftp(name, ns)

    def _port(self, host_ns: str) -> str:
        """The bridge's port for a host namespace: p-cl, p-dir, p-r1, ..."""
        return "p-" + host_ns[len(self.prefix):]

    def _cable(self, host: str) -> None:
        port = self._port(host)
        ip("-n", self.switch, "link", "add", "name", port, "type", "veth",
           "peer", "name", IFACE, "netns", host)
        ip("-n", self.switch, "link", "set", "dev", port, "master", "br0", "up")
        ip("-n", host, "link", "set", "dev", IFACE, "up")

    def _borrow_nics(self) -> None:
        """The director's cable made of two real NICs (see the class)."""
        own, switch_side = self.nics
        for nic, ns, name in ((own, self.director, IFACE),
                              (switch_side, self.switch, self._port(self.director))):
            ip("link", "set", "dev", nic, "down")
            ip("link", "set", "dev", nic, "netns", ns)
            self.borrowed.append((ns, nic, nic))
            ip("-n", ns, "link", "set", "dev", nic, "name", name)
            self.borrowed[-1] = (ns, name, nic)
        ip("-n", self.switch, "link", "set", "dev", self._port(self.director),
           "master", "br0", "up")
        ip("-n", self.director, "link", "set", "dev", IFACE, "up")

    def _return_nics(self) -> None:
        """Borrowed NICs back to the root namespace under their own names
        (a deleted namespace would hand them back as eth0 or dev%d)."""
        for ns, name, nic in reversed(self.borrowed):
            ip("-n", ns, "link", "set", "dev", name, "down", check=False)
            ip("-n", ns, "link", "set", "dev", name, "nomaster", check=False)
            ip("-n", ns, "link", "set", "dev", name, "name", nic, check=False)
            ip("-n", ns, "link", "set", "dev", nic, "netns", "1")
        self.borrowed.clear()

    def _make_certificate(self) -> None:
        """The reals' HTTPS certificate (self-signed, for both VIPs): the
        seed's "CA on the two servers", which it leaves to an earlier post."""
        run(None, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={VIP}",
            "-addext", f"subjectAltName=IP:{VIP},IP:{VIP6}",
            "-keyout", str(self.workdir / "key.pem"), "-out", str(self.workdir / "cert.pem"))

    def _spawn(self, name: str, ns: str, what: str, *cmd: str) -> subprocess.Popen:
        """Starts cmd in ns, its own session, stderr to <workdir>/<name>.log,
        and records it for teardown."""
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        # `ip netns exec` execs the command: the pid is the server's own.
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        log.close()
        self._popens.append(p)
        # The start time is read once the process has exec'd the server (it
        # stays the same across exec): now, while its pid is surely its own.
        self.processes.append((p.pid, _start_time(p.pid), f"{name} {what}"))
        return p

    def _log_tail(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace").strip()[-500:]

    def _start_server(self, name: str, ns: str) -> None:
        p = self._spawn(name, ns, "servers", sys.executable, "-c", _SERVER, name,
                        str(self.workdir / "cert.pem"), str(self.workdir / "key.pem"),
                        VIP, VIP6, REALS[name], REALS6[name])
        line = _readline(p.stdout, timeout=10)
        p.stdout.close()
        if line.strip() != "ready":
            raise LabError(f"servers of {name} did not start: {self._log_tail(name)}")

    def _start_ftp(self, name: str, ns: str) -> None:
        root = self.workdir / f"{name}-ftp"
        root.mkdir(mode=0o755)
        (root / FTP_FILE).write_text(f"{name}\n")
        (root / FTP_FILE).chmod(0o644)
        # vsftpd's own empty directory for its unprivileged side, not the
        # package's /run/vsftpd/empty: only systemd-tmpfiles makes that one
        # (a machine booted without systemd, the matrix's VMs, has none).
        empty = self.workdir / "vsftpd-empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        conf = self.workdir / f"{name}-vsftpd.conf"
        conf.write_text(_VSFTPD_CONF.format(root=root, vip=VIP, empty=empty,
                                            pasv_lines="\n".join(SEED_VSFTPD)))
        p = self._spawn(name, ns, "vsftpd", "vsftpd", str(conf))
        p.stdout.close()
        deadline = time.monotonic() + 5
        while not run(ns, "ss", "-Hltn", "sport = :21").stdout.strip():
            if p.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"vsftpd of {name} did not start: {self._log_tail(name)}")
            time.sleep(0.02)

    def close(self, quiet: bool = False) -> None:
        """Removes everything this topology made; safe to call again, from
        atexit or from a signal handler. Raises LabError (unless quiet) when
        something could not be removed, after trying everything."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with _signals_deferred() as deferred:
                    problems = self._teardown()
            finally:
                self._unguard()
        if problems:
            msg = "lab teardown: " + "; ".join(problems)
            if quiet or deferred:
                print(msg, file=sys.stderr)
            else:
                raise LabError(msg)
        if deferred:  # a SIGTERM during teardown ends us, now that all is gone
            raise SystemExit(128 + deferred[0])

    def release(self) -> None:
        """Leaves the lab up past this process (`--keep`): records what to
        remove later for `--down` and stops guarding it."""
        with self._lock:
            self._closed = True
            self.save()
            self._unguard()

    def _teardown(self) -> list[str]:
        problems: list[str] = []
        owned = bool(self.namespaces)  # else we made nothing (the names were taken)

        def attempt(what: str, fn, *args) -> None:
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - keep removing the rest
                problems.append(f"{what}: {e}")

        for iface in list(self.lvsxdp_up):
            attempt(f"lvsxdp down {iface}", self._lvsxdp_down, iface)
        for pid, start, _ in self.processes:
            attempt(f"kill {pid}", _kill, pid, start)
        for p in self._popens:
            with contextlib.suppress(Exception):
                p.wait(timeout=0.1)
        for ns, ifname in self.xdp_pass:
            if netns_exists(ns):
                ip("-n", ns, "link", "set", "dev", ifname, "xdpdrv", "off", check=False)
        self.xdp_pass.clear()
        if self.borrowed:
            attempt("give the NICs back", self._return_nics)
        # Whatever still runs in our namespaces was started by commands we
        # ran (an lvsxdp agent that `down` did not stop): by pid, with a word.
        for ns in self.namespaces:
            for pid in _netns_pids(ns):
                problems.append(f"process {pid} was still running in {ns}: ended it")
                attempt(f"kill {pid}", _kill, pid, _start_time(pid))
        for ns in reversed(self.namespaces):
            attempt(f"delete {ns}", _delete_netns, ns)
        if self.state_dir is None and self.director in self.namespaces:
            attempt("forget the director's configuration", self._forget_config)
        self.namespaces = [ns for ns in self.namespaces if netns_exists(ns)]
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if owned:
            self._state_file().unlink(missing_ok=True)
        return problems

    # -- state for --keep / --down -----------------------------------

    def _state_file(self) -> Path:
        return LAB_STATE / f"{self.prefix.rstrip('-')}.json"

    def save(self) -> None:
        LAB_STATE.mkdir(parents=True, exist_ok=True)
        self._state_file().write_text(json.dumps({
            "prefix": self.prefix, "native": self.native, "namespaces": self.namespaces,
            "processes": self.processes, "xdp_pass": self.xdp_pass,
            "lvsxdp_up": self.lvsxdp_up, "workdir": str(self.workdir),
            "state_dir": self.state_dir and str(self.state_dir),
            "run_dir": self.run_dir and str(self.run_dir),
        }, indent=1))

    @classmethod
    def saved(cls, prefix: str = LAB_PREFIX) -> Topology | None:
        """The kept lab with this prefix, as recorded by release()."""
        path = LAB_STATE / f"{prefix.rstrip('-')}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        topo = cls(prefix, native=data["native"], state_dir=data["state_dir"],
                   run_dir=data["run_dir"])
        topo.workdir = Path(data["workdir"])
        topo.namespaces = data["namespaces"]
        topo.processes = [tuple(p) for p in data["processes"]]
        topo.xdp_pass = [tuple(x) for x in data["xdp_pass"]]
        topo.lvsxdp_up = data["lvsxdp_up"]
        return topo

    # -- using the lab ------------------------------------------------

    def lvsxdp(self, *args: str, check: bool = True,
               timeout: float = 300) -> subprocess.CompletedProcess:
        """Runs `lvsxdp -n <director> ARGS` with the lab's state directory.
        (Not through `ip netns exec`, which hides /sys/fs/bpf.) The timeout
        only catches a hang: `up` compiles, about 3 s here but 60-90 s in
        the matrix's emulated VMs."""
        env = dict(os.environ)
        if self.state_dir:
            env["LVSXDP_STATE_DIR"] = str(self.state_dir)
        if self.run_dir:
            env["LVSXDP_RUN_DIR"] = str(self.run_dir)
        if args and args[0] == "up" and len(args) > 1 and args[1] not in self.lvsxdp_up:
            self.lvsxdp_up.append(args[1])  # before: a half-done `up` is also undone
        res = run(None, lvsxdp_bin(), "-n", self.director, *args, check=check,
                  timeout=timeout, env=env)
        # a plain `down` keeps the tables pinned: only `--flush` leaves nothing
        if args[:1] == ("down",) and "--flush" in args and res.returncode == 0:
            with contextlib.suppress(ValueError):
                self.lvsxdp_up.remove(args[1])
        return res

    def _lvsxdp_down(self, iface: str) -> None:
        if netns_exists(self.director):
            self.lvsxdp("down", iface, "--flush", timeout=30)
        with contextlib.suppress(ValueError):
            self.lvsxdp_up.remove(iface)

    def _forget_config(self) -> None:
        """Removes the saved configuration of the lab's director from
        lvsxdp's own state directory (it outlives `lvsxdp down`), so that
        the next lab starts from the seed's lines alone."""
        from . import runtime  # noqa: PLC0415

        paths = runtime.Paths(self.director)
        paths.state.unlink(missing_ok=True)
        paths.log.unlink(missing_ok=True)

    def ipvsadm(self, line: str) -> str:
        """Runs one ipvsadm line ("-A -t ..." or "ipvsadm -A -t ...") on the
        director and returns what it printed."""
        words = shlex.split(line)
        if words[:1] == ["ipvsadm"]:
            words = words[1:]
        return self.lvsxdp("ipvsadm", *words).stdout

    def iptables(self, line: str) -> str:
        """Runs one `iptables ...` line as lvsxdp's own mark rule
        (`lvsxdp -n <director> iptables ...`)."""
        words = shlex.split(line)
        if words[:1] == ["iptables"]:
            words = words[1:]
        return self.lvsxdp("iptables", *words).stdout

    def kernel_iptables(self, line: str) -> str:
        """Runs one `iptables ...` line with the real iptables inside the
        director's namespace: the kernel's mangle chain, which the running
        director follows."""
        words = shlex.split(line)
        if words[:1] == ["iptables"]:
            words = words[1:]
        return run(self.director, "iptables", *words).stdout

    def wait_for_reals(self, addrs=None, timeout: float = 5) -> float:
        """Waits until the director's data plane knows the MAC of every real
        in addrs (default: the reals' IPv4 and IPv6 addresses). Until then
        lvsxdp gives such a real no new work, as it cannot reach it; the
        agent resolves each real as it is added (managed neighbours).
        Returns the seconds it took."""
        from . import runtime, shared  # noqa: PLC0415

        want = {ipaddress.ip_address(a)
                for a in (addrs or (*REALS.values(), *REALS6.values()))}
        pins = runtime.Paths(self.director).pins
        start = time.monotonic()
        while True:
            known = set()
            with contextlib.suppress(OSError):
                m = bpfsys.Map.pinned(str(pins / "reals"), *shared.MAPS["reals"])
                with m:
                    known = {shared.words_addr(r.family, r.addr) for _, r in m.used()
                             if r.flags & shared.REAL_F_MAC_VALID}
            if want <= known:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                missing = ", ".join(sorted(str(a) for a in want - known))
                raise LabError(f"the director does not know the MAC of {missing} "
                               f"after {timeout:g} s")
            time.sleep(0.05)

    def curl(self, client_addr: str, url: str, timeout: float = 3,
             extra: tuple[str, ...] = ()) -> str:
        """GETs url (http, https: the lab's self-signed certificate is
        accepted, ftp: passive) from the client namespace with source
        address client_addr; returns the body without its trailing newline."""
        insecure = ("-k",) if url.startswith("https:") else ()
        res = run(self.client, "curl", "-sS", "-g", *insecure, *extra,
                  "--interface", client_addr, "--connect-timeout", str(timeout),
                  "--max-time", str(timeout + 1), url, check=False, timeout=timeout + 5)
        if res.returncode != 0:
            raise LabError(f"curl {url} from {client_addr}: {res.stderr.strip()}")
        return res.stdout.rstrip("\n")

    def tcp_banner(self, client_addr: str, port: int = 22, addr: str = VIP,
                   timeout: float = 3) -> str:
        """Connects from client_addr to addr:port and returns the first line
        the server sends (an ssh-like banner: "SSH-2.0-r1")."""
        if ":" in addr:
            target = f"TCP6:[{addr}]:{port},bind=[{client_addr}]"
        else:
            target = f"TCP4:{addr}:{port},bind={client_addr}"
        res = run(self.client, "socat", "-T", str(timeout), "-u",
                  f"{target},connect-timeout={timeout}", "STDOUT",
                  check=False, timeout=timeout + 5)
        if res.returncode != 0 or not res.stdout:
            raise LabError(f"banner {addr}:{port} from {client_addr}: "
                           f"{res.stderr.strip() or 'nothing received'}")
        return res.stdout.splitlines()[0].strip()

    def udp_ask(self, client_addr: str, port: int = UDP_PORT, addr: str = VIP,
                timeout: float = 2) -> str:
        """Sends one datagram from client_addr to addr:port and returns the
        answer ("r1 198.18.2.50"). Each call is a new source port: a new
        UDP connection for the director."""
        res = run(self.client, sys.executable, "-c", _UDP_ASK, client_addr, addr, str(port),
                  str(timeout), check=False, timeout=timeout + 5)
        if res.returncode != 0:
            raise LabError(f"udp {addr}:{port} from {client_addr}: "
                           f"{res.stderr.strip().splitlines()[-1:]}")
        return res.stdout.strip()

    def hold_tcp(self, client_addr: str, port: int = 80, addr: str = VIP) -> HeldConnection:
        """Opens an HTTP/1.1 connection from client_addr to addr:port, asks
        once, and keeps it open (idle, ESTABLISHED) until close()."""
        p = subprocess.Popen(["ip", "netns", "exec", self.client, sys.executable, "-c", _HOLD,
                              client_addr, addr, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        self._popens.append(p)
        self.processes.append((p.pid, _start_time(p.pid), f"held connection {client_addr}"))
        words = _readline(p.stdout, timeout=5).split()
        if len(words) != 2:
            p.kill()
            p.wait()
            raise LabError(f"holding a connection to {addr}:{port} from {client_addr}: "
                           f"{p.stderr.read().decode(errors='replace').strip()[-300:]}")
        return HeldConnection(p, int(words[0]), words[1])


class HeldConnection:
    """A TCP connection a client keeps open (Topology.hold_tcp)."""

    def __init__(self, proc: subprocess.Popen, cport: int, real: str) -> None:
        self.proc = proc
        self.cport = cport  # the client's port
        self.real = real  # the real that answered on it

    def close(self) -> None:
        """Closes it the ordinary way (FIN) and waits for the client to exit."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# One datagram out, its answer printed (argv: source, destination, port, timeout).
_UDP_ASK = r"""
import socket, sys
src, dst, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(timeout)
s.sendto(b"hello", (dst, port))
print(s.recvfrom(2048)[0].decode().strip())
"""

def http_get(s: socket.socket, host: str = "lab") -> str:
    """One GET / on a keep-alive HTTP/1.1 connection: the answer's body, which
    in the lab is the name of the real that served it."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(s)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += _recv(s)
    return body.decode().strip()


def _recv(s: socket.socket) -> bytes:
    chunk = s.recv(4096)
    if not chunk:
        raise ConnectionError("closed by the peer")
    return chunk


# An HTTP/1.1 connection that asks once, prints its port and the answer,
# and stays open until stdin closes (argv: source, destination, port).
_HOLD = r"""
import socket, sys
from lvsxdp.lab import http_get
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
s.bind((src, 0))
s.settimeout(5)
s.connect((dst, port))
answer = http_get(s)
print(s.getsockname()[1], answer, flush=True)
sys.stdin.read()
s.close()
"""


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_deferred():
    """Lets teardown finish when SIGTERM, SIGHUP or SIGINT arrive meanwhile:
    yields the list of those that did."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    sigs = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    old = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in sigs}
    try:
        yield got
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _readline(stream, timeout: float) -> str:
    """One line from a pipe, or "" after timeout seconds."""
    buf = b""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace")


def _netns_pids(ns: str) -> list[int]:
    if not netns_exists(ns):
        return []
    res = ip("netns", "pids", ns, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _delete_netns(ns: str) -> None:
    if netns_exists(ns):
        ip("netns", "del", ns)


# -- `make lab` -------------------------------------------------------


def _say(text: str = "") -> None:
    print(text, flush=True)


def _show(prompt: str, command: str, output: str) -> None:
    _say(f"{prompt} {command}")
    for line in output.rstrip("\n").splitlines():
        _say(f"    {line}")


def drive_clients(topo: Topology, rounds: int = 3, say=None,
                  clients: tuple[str, ...] = CLIENT_ADDRS,
                  ) -> dict[str, list[tuple[str, str | None]]]:
    """Sends each client's connections to the VIP (HTTP on 80 and 8080, the
    banner on 22), clients interleaved, for `rounds` rounds. Returns, per
    client address, (what, real that answered or None) for every connection."""
    seen: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for _ in range(rounds):
        for addr in clients:
            for what, ask in ((f"curl http://{VIP}/",
                               lambda a: topo.curl(a, f"http://{VIP}/")),
                              (f"curl http://{VIP}:8080/",
                               lambda a: topo.curl(a, f"http://{VIP}:8080/")),
                              (f"banner {VIP}:22", lambda a: topo.tcp_banner(a, 22))):
                try:
                    answer = ask(addr)
                    real = real_in(answer)
                except LabError as e:
                    answer, real = f"FAILED ({e})", None
                seen[addr].append((what, real))
                if say:
                    say(f"[client {addr}]$ {what:<32} -> {answer}")
    return dict(seen)


def main(keep: bool = False, teardown: bool = False, mode: str = "native",
         prefix: str = LAB_PREFIX) -> int:
    """`lvsxdp lab`: builds the lab and walks through the seed's examples in
    order (PCC, PPC, firewall marks for http+https, passive FTP with marks):
    the seed's lines, real traffic, the director's tables, and a check of
    each; exits 0 only if every check holds. teardown=True removes a lab
    left up by keep=True."""
    if teardown:
        return down(prefix)
    try:
        with Topology(prefix, native=(mode == "native")) as topo:
            return _demonstrate(topo, keep, mode)
    except LabError as e:
        _say(f"lab failed: {e}")
        return 2


def parse_connections(text: str) -> list[dict[str, str]]:
    """`ipvsadm -L -n -c` output, one dict per entry (pro, expire, state,
    source, virtual, destination)."""
    lines = text.splitlines()
    if lines[:1] != ["IPVS connection entries"]:
        raise LabError(f"not a connection listing: {text[:80]!r}")
    keys = ("pro", "expire", "state", "source", "virtual", "destination")
    return [dict(zip(keys, line.split(), strict=True)) for line in lines[2:]]


def addr_of(addrport: str) -> str:
    """198.18.2.1:80 -> 198.18.2.1; [2001:db8:2::1]:80 -> 2001:db8:2::1."""
    return addrport.rsplit(":", 1)[0].strip("[]")


def port_of(addrport: str) -> int:
    return int(addrport.rsplit(":", 1)[1])


# What a client does, as an operator would type it, and how the lab does it.
_KINDS = {
    "http": (f"curl http://{VIP}/", lambda t, c: t.curl(c, f"http://{VIP}/")),
    "http:8080": (f"curl http://{VIP}:8080/", lambda t, c: t.curl(c, f"http://{VIP}:8080/")),
    "https": (f"curl -k https://{VIP}/", lambda t, c: t.curl(c, f"https://{VIP}/")),
    "ssh": (f"socat -u TCP:{VIP}:22 STDOUT", lambda t, c: t.tcp_banner(c, 22)),
    "ftp": (f"curl ftp://{VIP}/{FTP_FILE}", lambda t, c: t.curl(c, f"ftp://{VIP}/{FTP_FILE}")),
    "ftp-pasv": (f"curl --disable-epsv ftp://{VIP}/{FTP_FILE}",
                 lambda t, c: t.curl(c, f"ftp://{VIP}/{FTP_FILE}", extra=("--disable-epsv",))),
}
Seen = dict[str, dict[str, list[str | None]]]  # client -> kind -> the real of each try


def traffic(topo: Topology, clients: tuple[str, ...], kinds: tuple[str, ...], rounds: int,
            say=None) -> Seen:
    """New connections from each client (interleaved, `rounds` rounds);
    records which real answered each."""
    seen: Seen = {c: {k: [] for k in kinds} for c in clients}
    for _ in range(rounds):
        for c in clients:
            for k in kinds:
                shown, do = _KINDS[k]
                try:
                    answer = do(topo, c)
                except LabError as e:
                    answer = f"FAILED ({e})"
                seen[c][k].append(real_in(answer))
                if say:
                    say(f"[client {c}]$ {shown:<44} -> {answer}")
    return seen


def _one_real(seen: Seen, client: str, kinds) -> str | None:
    reals = {r for k in kinds for r in seen[client][k]}
    return reals.pop() if len(reals) == 1 and None not in reals else None


def _rr_order(got: list[str | None], what: str) -> list[str]:
    """The seed's order: its first client lands on .200, "another client"
    on .100 (IPVS adds reals at the head of the list; rr starts there)."""
    want = ["r2", "r1"] * (len(got) // 2) + ["r2"] * (len(got) % 2)
    return [] if got == want else [f"{what}: clients went to {got}, the seed's order is {want}"]


def check_one_real(seen: Seen, listing: str, virtual: str, what: str) -> list[str]:
    """Every connection of each client reached one real, its template for
    `virtual` (VIP:0 for PCC, 0.0.0.10:0 for mark 10) names that real, and
    the clients took turns in the seed's order."""
    problems = []
    got = []
    for c in seen:
        real = _one_real(seen, c, seen[c])
        got.append(real)
        if real is None:
            problems.append(f"client {c}: {seen[c]}")
            continue
        tmpl = [e for e in parse_connections(listing) if e["state"] in TEMPLATE_STATES
                and addr_of(e["source"]) == c and e["virtual"] == virtual]
        if [addr_of(e["destination"]) for e in tmpl] != [REALS[real]]:
            problems.append(f"client {c}: templates {tmpl}")
    return problems + _rr_order(got, what)


def check_ppc(seen: Seen, listing: str) -> list[str]:
    problems = []
    ssh = []
    for c in seen:
        web, banner = _one_real(seen, c, ("http",)), _one_real(seen, c, ("ssh",))
        ssh.append(banner)
        if web != "r1":
            problems.append(f"client {c}: port 80 went to {seen[c]['http']}, only .100 has it")
        if banner is None:
            problems.append(f"client {c}: port 22 went to {seen[c]['ssh']}")
        tmpl = {(e["virtual"], addr_of(e["destination"])) for e in parse_connections(listing)
                if e["state"] in TEMPLATE_STATES and addr_of(e["source"]) == c
                and e["virtual"] in (f"{VIP}:22", f"{VIP}:80")}
        if banner and tmpl != {(f"{VIP}:80", REALS["r1"]), (f"{VIP}:22", REALS[banner])}:
            problems.append(f"client {c}: templates {sorted(tmpl)}")
    if ssh[:1] != ["r2"]:
        problems.append("the first client's 22 and 80 were not on different reals")
    return problems + _rr_order(ssh, "PPC port 22")


def check_ftp(seen: Seen, listing: str) -> list[str]:
    """The file names the real that sent the data; every control (21) and
    passive data (2000-2100) connection of the client, as the director
    lists it, went to that real, and so does its mark-10 template."""
    problems = check_one_real(seen, listing, "0.0.0.10:0", "FTP")
    entries = parse_connections(listing)
    for c in seen:
        real = _one_real(seen, c, seen[c])
        if real is None:
            continue
        mine = [e for e in entries
                if addr_of(e["source"]) == c and e["state"] not in TEMPLATE_STATES]
        control = [e for e in mine if port_of(e["virtual"]) == 21]
        data = [e for e in mine if PASV_PORTS[0] <= port_of(e["virtual"]) <= PASV_PORTS[1]]
        tries = sum(len(v) for v in seen[c].values())
        if len(control) != tries or len(data) != tries:
            problems.append(f"client {c}: {len(control)} control and {len(data)} data "
                            f"connections listed for {tries} downloads")
        if {addr_of(e["destination"]) for e in control + data} != {REALS[real]}:
            problems.append(f"client {c}: control and data not all on {REALS[real]}")
    return problems


def _demonstrate(topo: Topology, keep: bool, mode: str) -> int:
    started = time.monotonic()
    _say(f"lab up: client {', '.join(CLIENT_ADDRS)} ({topo.client}); director "
         f"{DIRECTOR_ADDR} + VIP {VIP} on {IFACE} ({topo.director}); "
         + "; ".join(f"{n} {a} ({topo.reals[n]})" for n, a in REALS.items())
         + f"; bridge in {topo.switch}")
    prompt = f"[director {topo.director}]#"

    def director(line: str) -> str:
        out = topo.iptables(line) if line.startswith("iptables") else topo.ipvsadm(line)
        _show(prompt, line, out)
        return out

    def look() -> str:
        _say()
        _show(prompt, "ipvsadm -L -n", topo.ipvsadm("ipvsadm -L -n"))
        listing = topo.ipvsadm("ipvsadm -L -n -c")
        _show(prompt, "ipvsadm -L -n -c", listing)
        return listing

    def part(title: str, seed_says: str) -> None:
        _say(f"\n=== {title} ===")
        _say(f"(the seed: {seed_says})")

    def wait_for_reals() -> None:
        took = topo.wait_for_reals(tuple(REALS.values()))
        _say(f"(the director knows both reals' MACs: {took:.2f} s)\n")

    res = topo.lvsxdp("up", IFACE, "--mode", mode)
    _show(prompt, f"lvsxdp -n {topo.director} up {IFACE} --mode {mode}", res.stdout + res.stderr)
    _say(f"(ipvsadm and iptables lines below run as `lvsxdp -n {topo.director} ipvsadm ...` "
         f"and `lvsxdp -n {topo.director} iptables ...`; the seed's 192.168.2.x are 198.18.2.x)")
    verdicts: list[tuple[str, list[str]]] = []

    part("1. PCC: every port of a client to one real",
         "连接一直处在192.168.2.200的server上 - the first client stays on .200")
    for line in SEED_PCC:
        director(line)
    wait_for_reals()
    seen = traffic(topo, CLIENT_ADDRS, ("http", "http:8080", "https", "ssh"), 1, say=_say)
    verdicts.append(("PCC", check_one_real(seen, look(), f"{VIP}:0", "PCC")))

    part("2. PPC: each service of a client to one real",
         "80 goes to 2.100; 22 goes to 2.100 and 2.200")
    for line in SEED_PPC:
        director(line)
    wait_for_reals()
    clients = CLIENT_ADDRS[:2]
    seen = traffic(topo, clients, ("http", "ssh"), 2, say=_say)
    verdicts.append(("PPC", check_ppc(seen, look())))

    part("3. Firewall mark 10: http and https of a client to one real",
         "browse on 80, pay on 443, on the same real server")
    for line in SEED_FWMARK:
        director(line)
    _show(prompt, "iptables -t mangle -S PREROUTING",
          topo.iptables("iptables -t mangle -S PREROUTING"))
    wait_for_reals()
    seen = traffic(topo, clients, ("http", "https"), 2, say=_say)
    verdicts.append(("firewall mark http+https",
                     check_one_real(seen, look(), "0.0.0.10:0", "mark 10")))

    part("4. Passive FTP with firewall marks: control and data to one real",
         "在用另一台client访问一下就会定向到192.168.2.100 - another client goes to .100")
    _say("(not in the seed: its FTP example stands alone, so the lab clears the marks "
         "and services of part 3 first)")
    for line in ("iptables -t mangle -F PREROUTING", "ipvsadm -C"):
        director(line)
    conf = topo.workdir / "r1-vsftpd.conf"
    pasv = [line for line in conf.read_text().splitlines() if line.startswith("pasv_")]
    _show(f"[real r1 {topo.reals['r1']}]#", f"grep pasv_ {conf}", "\n".join(pasv))
    for line in SEED_FTP:
        director(line)
    wait_for_reals()
    seen = traffic(topo, clients, ("ftp", "ftp-pasv"), 1, say=_say)
    verdicts.append(("FTP with marks", check_ftp(seen, look())))

    _say("\n=== verdict ===")
    for name, problems in verdicts:
        if problems:
            _say(f"{name}: BROKEN: " + "; ".join(problems))
        else:
            _say(f"{name}: holds")
    _say(f"({time.monotonic() - started:.1f} s)")
    if keep:
        topo.release()  # the `with` then leaves it up
        lv = lvsxdp_bin()
        _say("\nThe lab stays up (with part 4's configuration). Explore:\n"
             f"  {lv} -n {topo.director} ipvsadm -L -n -c\n"
             f"  {lv} -n {topo.director} status\n"
             f"  ip netns exec {topo.client} curl --interface {CLIENT_ADDRS[2]} "
             f"ftp://{VIP}/{FTP_FILE}\n"
             f"  ip netns exec {topo.client} curl -k --interface {CLIENT_ADDRS[3]} "
             f"https://{REALS['r1']}/client\n"
             f"  ip netns exec {topo.client} curl -g --interface {CLIENT_ADDRS6[0]} "
             f"http://[{REALS6['r2']}]/client\n"
             f"  ip netns exec {topo.client} socat -u TCP4:{REALS['r2']}:22,"
             f"bind={CLIENT_ADDRS[1]} STDOUT\n"
             f"Tear down: {lv} lab --down")
    return 1 if any(problems for _, problems in verdicts) else 0


def down(prefix: str = LAB_PREFIX) -> int:
    """Removes a lab left up by `--keep`."""
    topo = Topology.saved(prefix)
    if topo is None:
        left = _lab_namespaces(prefix)
        if not left:
            _say("no lab is up")
            return 0
        # A lab whose process died before recording itself: its namespaces
        # carry the lab's prefix, so they are the lab's own.
        topo = Topology(prefix)
        topo.namespaces = left
        if topo.director in left:
            topo.lvsxdp_up = [IFACE]
        topo.processes = [(pid, _start_time(pid), "left behind") for ns in left
                          if ns != topo.director for pid in _netns_pids(ns)]
    try:
        topo.close()
    except LabError as e:
        _say(str(e))
        return 1
    _say(f"lab {prefix}* removed")
    return 0


def _lab_namespaces(prefix: str) -> list[str]:
    names = [f"{prefix}{n}" for n in ("sw", "cl", "dir", *REALS)]
    return [ns for ns in names if netns_exists(ns)]


def unique_prefix() -> str:
    """A namespace prefix for one test run: lxe<4 hex>-."""
    return f"lxe{secrets.token_hex(2)}-"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lvsxdp.lab",
        description="The seed's examples (PCC, PPC, firewall marks, FTP) on a director, "
                    "two reals and a client in network namespaces; exits 0 only if "
                    "every check held.")
    parser.add_argument("--keep", action="store_true", help="leave the lab up to explore")
    parser.add_argument("--down", action="store_true", help="remove a lab left up by --keep")
    parser.add_argument("--mode", choices=("native", "generic"), default="native",
                        help="XDP mode on the director (default native)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the lab builds network namespaces: run it as root")
    if args.down:
        return down()
    return main(keep=args.keep, mode=args.mode)


if __name__ == "__main__":
    sys.exit(cli())
