"""The lab: the seed's LVS-DR setup, built from network namespaces on one machine.

    client 198.18.2.50-.53 ─┐
    director 198.18.2.2     ├── bridge br0 (namespace <prefix>sw), 198.18.2.0/24
      + VIP 198.18.2.1/32   │
    r1 198.18.2.100 ────────┤   reals: VIP 198.18.2.1/32 on lo, arp_ignore=1,
    r2 198.18.2.200 ────────┘          arp_announce=2, rp_filter=0

The director answers ARP for the VIP and runs lvsxdp on its eth0; the reals
answer the client directly (direct routing, `ipvsadm ... -g`). Each real runs
HTTP on ports 80 and 8080 (body: its name) and an ssh-like banner on port 22
(`SSH-2.0-r1`), so every answer says which real served it.

Everything the lab makes (namespaces, processes, XDP attachments, the
director's lvsxdp) is recorded as it is made and removed on teardown, also
after errors, SIGTERM or SIGHUP. `lvsxdp lab` (main()) runs the seed's PCC
example through it and checks the result; `--keep` leaves it up to explore
and `--down` removes a kept lab.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
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
IFACE = "eth0"
LAB_PREFIX = "lxl-"
LAB_STATE = Path("/run/lvsxdp-lab")

# The seed's PCC example (seed/lvs-persistence.txt), 192.168.2.x -> 198.18.2.x.
SEED_PCC = (
    "ipvsadm -A -t 198.18.2.1:0 -s rr -p 360",
    "ipvsadm -a -t 198.18.2.1:0 -r 198.18.2.100 -g",
    "ipvsadm -a -t 198.18.2.1:0 -r 198.18.2.200 -g",
)

# What each real runs: HTTP on 80 and 8080 answering its name (and, at
# /client, the client address it saw: DR must not hide it), and a banner
# service on 22. It prints "ready" once every port listens.
_SERVER = r"""
import socketserver, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name = sys.argv[1]

class Web(BaseHTTPRequestHandler):
    def do_GET(self):
        text = f"{name} {self.client_address[0]}" if self.path == "/client" else name
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

class BannerServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

servers = [ThreadingHTTPServer(("", 8080), Web), BannerServer(("", 22), Banner)]
web = ThreadingHTTPServer(("", 80), Web)
web.daemon_threads = True
for s in servers:
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
web.serve_forever()
"""

# A two-instruction XDP program, `return XDP_PASS;`, for the bridge port that
# faces the director: a veth only receives its peer's XDP_TX frames when it
# has an XDP program itself (ENVIRONMENT.md).
_XDP_PASS_INSNS = bytes.fromhex("b700000002000000" "9500000000000000")
_BPF_PROG_LOAD = 5
_BPF_OBJ_PIN = 6
_BPF_PROG_TYPE_XDP = 6
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
    class ProgLoadAttr(ctypes.Structure):
        _fields_ = [
            ("prog_type", ctypes.c_uint32),
            ("insn_cnt", ctypes.c_uint32),
            ("insns", ctypes.c_uint64),
            ("license", ctypes.c_uint64),
            ("log_level", ctypes.c_uint32),
            ("log_size", ctypes.c_uint32),
            ("log_buf", ctypes.c_uint64),
            ("kern_version", ctypes.c_uint32),
            ("prog_flags", ctypes.c_uint32),
            ("prog_name", ctypes.c_char * 16),
        ]

    insns = ctypes.create_string_buffer(_XDP_PASS_INSNS, len(_XDP_PASS_INSNS))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ProgLoadAttr(prog_type=_BPF_PROG_TYPE_XDP, insn_cnt=len(_XDP_PASS_INSNS) // 8,
                        insns=ctypes.addressof(insns), license=ctypes.addressof(license_),
                        prog_name=b"lab_xdp_pass")
    return bpfsys._bpf(_BPF_PROG_LOAD, attr)


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
        path = ctypes.create_string_buffer(str(pin).encode())
        bpfsys._bpf(_BPF_OBJ_PIN, bpfsys._ObjAttr(pathname=ctypes.addressof(path), bpf_fd=fd))
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
    """

    def __init__(self, prefix: str = LAB_PREFIX, native: bool = False,
                 state_dir: str | Path | None = None,
                 run_dir: str | Path | None = None) -> None:
        self.prefix = prefix
        self.native = native
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
            self._cable(host)

        for addr in CLIENT_ADDRS:
            ip("-n", self.client, "addr", "add", f"{addr}/{SUBNET_PREFIX}", "dev", IFACE)
        ip("-n", self.director, "addr", "add", f"{DIRECTOR_ADDR}/{SUBNET_PREFIX}", "dev", IFACE)
        ip("-n", self.director, "addr", "add", f"{VIP}/32", "dev", IFACE)
        for name, addr in REALS.items():
            ns = self.reals[name]
            ip("-n", ns, "addr", "add", f"{addr}/{SUBNET_PREFIX}", "dev", IFACE)
            ip("-n", ns, "addr", "add", f"{VIP}/32", "dev", "lo")
            # LVS-DR reals: accept the VIP, never announce it (the director owns
            # its ARP), and take packets whose source is not routed back here.
            settings = []
            for conf in ("all", "default", "lo", IFACE):
                settings += [f"net.ipv4.conf.{conf}.arp_ignore=1",
                             f"net.ipv4.conf.{conf}.arp_announce=2",
                             f"net.ipv4.conf.{conf}.rp_filter=0"]
            run(ns, "sysctl", "-q", "-w", *settings)

        if self.native:
            attach_xdp_pass(self.switch, self._port(self.director))
            self.xdp_pass.append((self.switch, self._port(self.director)))
            run(self.client, "ethtool", "-K", IFACE, "tx", "off")
            run(self.switch, "ethtool", "-K", self._port(self.director), "tx", "off")

        for name, ns in self.reals.items():
            self._start_server(name, ns)

    def _port(self, host_ns: str) -> str:
        """The bridge's port for a host namespace: p-cl, p-dir, p-r1, ..."""
        return "p-" + host_ns[len(self.prefix):]

    def _cable(self, host: str) -> None:
        port = self._port(host)
        ip("-n", self.switch, "link", "add", "name", port, "type", "veth",
           "peer", "name", IFACE, "netns", host)
        ip("-n", self.switch, "link", "set", "dev", port, "master", "br0", "up")
        ip("-n", host, "link", "set", "dev", IFACE, "up")

    def _start_server(self, name: str, ns: str) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        # `ip netns exec` execs the command: the pid is the server's own.
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _SERVER, name],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                             start_new_session=True)
        log.close()
        self._popens.append(p)
        # The start time is read once the process has exec'd the server (it
        # stays the same across exec): now, while its pid is surely its own.
        self.processes.append((p.pid, _start_time(p.pid), f"{name} servers"))
        line = _readline(p.stdout, timeout=10)
        p.stdout.close()
        if line.strip() != "ready":
            log_text = (self.workdir / f"{name}.log").read_text(errors="replace")
            raise LabError(f"servers of {name} did not start: {log_text.strip()[-500:]}")

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
               timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs `lvsxdp -n <director> ARGS` with the lab's state directory.
        (Not through `ip netns exec`, which hides /sys/fs/bpf.)"""
        env = dict(os.environ)
        if self.state_dir:
            env["LVSXDP_STATE_DIR"] = str(self.state_dir)
        if self.run_dir:
            env["LVSXDP_RUN_DIR"] = str(self.run_dir)
        if args and args[0] == "up" and len(args) > 1 and args[1] not in self.lvsxdp_up:
            self.lvsxdp_up.append(args[1])  # before: a half-done `up` is also undone
        res = run(None, lvsxdp_bin(), "-n", self.director, *args, check=check,
                  timeout=timeout, env=env)
        if args[:1] == ("down",) and len(args) > 1 and res.returncode == 0:
            with contextlib.suppress(ValueError):
                self.lvsxdp_up.remove(args[1])
        return res

    def _lvsxdp_down(self, iface: str) -> None:
        if netns_exists(self.director):
            self.lvsxdp("down", iface, timeout=30)
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

    def curl(self, client_addr: str, url: str, timeout: float = 3) -> str:
        """GETs url from the client namespace with source address
        client_addr; returns the body without its trailing newline."""
        res = run(self.client, "curl", "-sS", "--interface", client_addr,
                  "--connect-timeout", str(timeout), "--max-time", str(timeout + 1), url,
                  check=False, timeout=timeout + 5)
        if res.returncode != 0:
            raise LabError(f"curl {url} from {client_addr}: {res.stderr.strip()}")
        return res.stdout.rstrip("\n")

    def tcp_banner(self, client_addr: str, port: int = 22, addr: str = VIP,
                   timeout: float = 3) -> str:
        """Connects from client_addr to addr:port and returns the first line
        the server sends (an ssh-like banner: "SSH-2.0-r1")."""
        res = run(self.client, "socat", "-T", str(timeout), "-u",
                  f"TCP4:{addr}:{port},bind={client_addr},connect-timeout={timeout}", "STDOUT",
                  check=False, timeout=timeout + 5)
        if res.returncode != 0 or not res.stdout:
            raise LabError(f"banner {addr}:{port} from {client_addr}: "
                           f"{res.stderr.strip() or 'nothing received'}")
        return res.stdout.splitlines()[0].strip()


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


def pcc_verdict(seen: dict[str, list[tuple[str, str | None]]]) -> list[str]:
    """What breaks PCC in these results (empty: every connection of each
    client reached one real)."""
    problems = []
    for addr, answers in seen.items():
        reals = {real for _, real in answers}
        if None in reals:
            problems.append(f"client {addr}: some connections failed")
        elif len(reals) != 1:
            problems.append(f"client {addr}: connections went to {', '.join(sorted(reals))}")
    return problems


def main(keep: bool = False, teardown: bool = False, mode: str = "native",
         prefix: str = LAB_PREFIX) -> int:
    """`lvsxdp lab`: builds the lab, runs the seed's PCC example, sends real
    traffic and checks that every client stayed on one real; the exit code
    says whether it did. teardown=True removes a lab left up by keep=True."""
    if teardown:
        return down(prefix)
    try:
        with Topology(prefix, native=(mode == "native")) as topo:
            return _demonstrate(topo, keep, mode)
    except LabError as e:
        _say(f"lab failed: {e}")
        return 2


def _demonstrate(topo: Topology, keep: bool, mode: str) -> int:
    _say(f"lab up: client {', '.join(CLIENT_ADDRS)} ({topo.client}); director "
         f"{DIRECTOR_ADDR} + VIP {VIP} ({topo.director}); "
         + "; ".join(f"{n} {a} ({topo.reals[n]})" for n, a in REALS.items())
         + f"; bridge in {topo.switch}")
    prompt = f"[director {topo.director}]#"
    res = topo.lvsxdp("up", IFACE, "--mode", mode)
    _show(prompt, f"lvsxdp -n {topo.director} up {IFACE} --mode {mode}",
          res.stdout + res.stderr)
    _say(f"(ipvsadm lines below run as `lvsxdp -n {topo.director} ipvsadm ...`)")
    for line in SEED_PCC:
        _show(prompt, line, topo.ipvsadm(line))
    _say()
    seen = drive_clients(topo, say=_say)
    _say()
    for line in ("ipvsadm -L -n", "ipvsadm -L -n -c"):
        _show(prompt, line, topo.ipvsadm(line))
    _say()
    problems = pcc_verdict(seen)
    for addr, answers in seen.items():
        reals = sorted({str(r) for _, r in answers})
        _say(f"client {addr}: {len(answers)} connections -> {', '.join(reals)}")
    if problems:
        _say("PCC BROKEN: " + "; ".join(problems))
    else:
        _say("PCC holds: every connection of each client reached one real.")
    if keep:
        topo.release()  # the `with` then leaves it up
        lv = lvsxdp_bin()
        _say("\nThe lab stays up. Explore:\n"
             f"  {lv} -n {topo.director} ipvsadm -L -n -c\n"
             f"  {lv} -n {topo.director} status\n"
             f"  ip netns exec {topo.client} curl --interface {CLIENT_ADDRS[1]} "
             f"http://{VIP}/\n"
             f"  ip netns exec {topo.client} socat -u TCP4:{VIP}:22,"
             f"bind={CLIENT_ADDRS[2]} STDOUT\n"
             f"Tear down: {lv} lab --down")
    return 1 if problems else 0


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
        description="The seed's PCC example on a director, two reals and a client "
                    "in network namespaces; exits 0 only if PCC held.")
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
