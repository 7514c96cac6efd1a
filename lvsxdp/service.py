"""`lvsxdp service`: lvsxdp as a system service, the way Debian runs LVS.

`lvsxdp service run` is what the systemd unit starts. It reads
/etc/default/lvsxdp (as Debian's ipvsadm package reads /etc/default/ipvsadm),
brings the director up on IFACES and, with AUTO=true, loads the rules file
ipvsadm-save wrote at boot. Then it supervises the agent: an agent that dies
is started again (1 s, doubling to 30 s while it keeps dying). SIGHUP
(`systemctl reload`) reads the file again without touching forwarding;
SIGTERM (`systemctl stop`) detaches the program and stops the agent but
keeps the pinned tables, so that a restart resumes every session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import director, runtime
from .runtime import RuntimeError_

log = logging.getLogger("lvsxdp.service")
DEFAULTS = Path("/etc/default/lvsxdp")
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STABLE_S = 60.0  # an agent that lived this long starts the backoff afresh
POLL_S = 0.5

EXAMPLE = """\
# /etc/default/lvsxdp: read by `lvsxdp service run` (lvsxdp.service) at start
# and again at `systemctl reload lvsxdp`.

# Interfaces lvsxdp attaches to: the VIP side first, then any interface
# real servers sit behind.
IFACES="eth0"

# XDP attach mode: native (the driver's), generic (any NIC, slower) or auto.
MODE="auto"

# As in /etc/default/ipvsadm: "true" loads RULES at boot (what
# `ipvsadm-save -n > /etc/ipvsadm.rules` wrote); "false" starts with the
# configuration lvsxdp saved last (/var/lib/lvsxdp). A service restart
# keeps the running tables and configuration either way.
AUTO="true"
RULES="/etc/ipvsadm.rules"

# Table sizes: established connections per address family, assured
# persistence templates. They take memory up front (at these defaults
# about 310 MB); changing them needs `lvsxdp down IFACE --flush`.
CONNS="1048576"
TEMPLATES="262144"
"""

KEYS = ("IFACES", "MODE", "AUTO", "RULES", "CONNS", "TEMPLATES")


@dataclass
class Settings:
    ifaces: list[str]
    mode: str = "auto"
    auto: bool = False
    rules: Path = Path("/etc/ipvsadm.rules")
    conns: int | None = None
    templates: int | None = None


def read_defaults(path: Path) -> Settings:
    """The shell-style KEY="value" file; one line naming what is wrong."""
    try:
        text = path.read_text()
    except OSError as e:
        raise RuntimeError_(f"cannot read {path}: {e.strerror} (`lvsxdp service --example "
                            f"> {path}` writes one)") from None
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.removeprefix("export ").partition("=")
        try:
            words = shlex.split(value, comments=True)
        except ValueError as e:
            raise RuntimeError_(f"{path}:{n}: {e}") from None
        if not eq or not key.isidentifier() or len(words) > 1:
            raise RuntimeError_(f"{path}:{n}: not KEY=\"value\": {line}")
        if key not in KEYS:
            raise RuntimeError_(f"{path}:{n}: unknown setting {key} ({', '.join(KEYS)})")
        values[key] = words[0] if words else ""
    ifaces = values.get("IFACES", "").split()
    if not ifaces:
        raise RuntimeError_(f"{path}: IFACES names no interface")
    mode = values.get("MODE", "auto") or "auto"
    if mode not in director.XDP_FLAGS:
        raise RuntimeError_(f"{path}: MODE must be native, generic or auto, not {mode!r}")
    auto = values.get("AUTO", "false").lower()
    if auto not in ("true", "false", "yes", "no", "1", "0"):
        raise RuntimeError_(f"{path}: AUTO must be true or false, not {auto!r}")
    sizes = {}
    for key in ("CONNS", "TEMPLATES"):
        text = values.get(key, "")
        if text and (not text.isdigit() or not 1024 <= int(text) <= 1 << 26):
            raise RuntimeError_(f"{path}: {key} must be a number from 1024 to {1 << 26}")
        sizes[key] = int(text) if text else None
    return Settings(ifaces=ifaces, mode=mode, auto=auto in ("true", "yes", "1"),
                    rules=Path(values.get("RULES") or "/etc/ipvsadm.rules"),
                    conns=sizes["CONNS"], templates=sizes["TEMPLATES"])


def unit(exe: str, defaults: Path = DEFAULTS) -> str:
    run = shlex.join([exe, "service", "run"]
                     + (["--config", str(defaults)] if defaults != DEFAULTS else []))
    return f"""\
[Unit]
Description=lvsxdp: LVS director in XDP
After=network-online.target
Wants=network-online.target
Conflicts=ipvsadm.service

[Service]
Type=notify
ExecStart={run}
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM to lvsxdp alone: it detaches and stops its agent, keeping the
# tables for the next start; whatever is left after that is killed
KillMode=mixed
Restart=on-failure
RestartSec=2
TimeoutStartSec=180
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""


def notify(state: str) -> None:
    """sd_notify(3): tells systemd (Type=notify) how the service is."""
    where = os.environ.get("NOTIFY_SOCKET")
    if not where:
        return
    if where.startswith("@"):
        where = "\0" + where[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(where)
        s.sendall(state.encode())


def restore_rules(rules: Path) -> str:
    """AUTO=true at boot: the rules file replaces the saved configuration
    (`ipvsadm -C`, then `ipvsadm-restore < RULES`, as Debian's init script
    does); a bad line is reported and skipped, as ipvsadm -R does."""
    try:
        text = rules.read_text()
    except FileNotFoundError:
        # as Debian's init script: no file yet, nothing to load
        return f"AUTO=true but no {rules} yet (`ipvsadm-save -n > {rules}` writes it): " \
               "starting with the saved configuration"
    except OSError as e:
        raise RuntimeError_(f"AUTO=true but cannot read {rules}: {e.strerror}") from None
    director.ipvsadm_command(["-C"])
    _, errors = director.ipvsadm_command(["-R"], stdin=_Text(text))
    for err in errors:
        log.warning("%s: %s", rules, err)
    return f"restored {rules} ({len(errors)} lines refused)"


class _Text:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text


class Supervisor:
    def __init__(self, defaults: Path) -> None:
        self.defaults = defaults
        self.settings = read_defaults(defaults)
        if os.geteuid() != 0:
            raise RuntimeError_("lvsxdp service run needs root (it attaches XDP programs)")
        self.paths = runtime.paths()
        self.agent: subprocess.Popen | None = None
        self.agent_since = 0.0
        self.backoff = BACKOFF_FIRST
        self.hup = self.term = False

    def start(self) -> None:
        s = self.settings
        if s.auto and not (self.paths.pins / "config").exists():
            # no tables: the first start since boot (bpffs is empty then)
            log.info("%s", restore_rules(s.rules))
        log.info("%s", director.up(s.ifaces, s.mode, s.conns, s.templates, agent=False))
        self.start_agent()

    def start_agent(self) -> None:
        self.agent = director.start_agent(self.paths, logfile=False)
        self.agent_since = time.monotonic()
        info = runtime.read_runtime(self.paths) or {}
        info["agent_pid"] = self.agent.pid
        info["supervisor_pid"] = os.getpid()
        runtime.write_runtime(self.paths, info)
        log.info("agent pid %d", self.agent.pid)

    def run(self) -> int:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.start()
        notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=forwarding on "
               f"{' '.join(self.settings.ifaces)}")
        while not self.term:
            time.sleep(POLL_S)
            self.reap()
            if self.term:
                break
            if self.hup:
                self.hup = False
                self.reload()
                continue
            info = runtime.read_runtime(self.paths)
            if info is None:
                log.warning("the director was taken down (`lvsxdp down`): the service ends")
                notify("STOPPING=1")
                return 0
            if not director.agent_alive(info):
                self.revive()
        notify("STOPPING=1")
        log.info("%s", director.down(self.settings.ifaces[0]))
        return 0

    def _on_hup(self, *_) -> None:
        self.hup = True

    def _on_term(self, *_) -> None:
        self.term = True

    def reap(self) -> None:
        if self.agent is not None and self.agent.poll() is not None:
            log.warning("agent pid %d exited (status %s)", self.agent.pid,
                        self.agent.returncode)
            self.agent = None

    def revive(self) -> None:
        """The agent died: a new one, after a pause that doubles while
        agents keep dying young."""
        if time.monotonic() - self.agent_since >= STABLE_S:
            self.backoff = BACKOFF_FIRST
        log.warning("agent not running: starting a new one in %g s", self.backoff)
        deadline = time.monotonic() + self.backoff
        while time.monotonic() < deadline and not self.term:
            time.sleep(0.1)
        if self.term:
            return
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        try:
            self.start_agent()
        except RuntimeError_ as e:
            log.error("agent not started: %s", e)

    def reload(self) -> None:
        """SIGHUP: the defaults file again. Interfaces or mode changed: the
        program is swapped in place (every connection and template kept);
        otherwise the agent reads its configuration and the kernel's rules
        again. Forwarding goes on throughout."""
        notify("RELOADING=1")
        try:
            new = read_defaults(self.defaults)
        except RuntimeError_ as e:
            log.error("reload refused, running as before: %s", e)
            notify("READY=1")
            return
        old, self.settings = self.settings, new
        if (new.conns, new.templates) != (old.conns, old.templates):
            log.warning("CONNS/TEMPLATES changed: they apply after `lvsxdp down %s --flush`",
                        new.ifaces[0])
        if (new.ifaces, new.mode) != (old.ifaces, old.mode):
            if new.ifaces[0] != old.ifaces[0]:
                log.error("the VIP side changed (%s -> %s): `systemctl restart lvsxdp`",
                          old.ifaces[0], new.ifaces[0])
                self.settings.ifaces[0:1] = old.ifaces[0:1]
            try:
                log.info("%s", director.restart(self.settings.ifaces, new.mode, agent=False))
                self.reap()
                self.start_agent()
            except RuntimeError_ as e:
                log.error("reload: %s", e)
        elif self.agent is not None:
            with contextlib.suppress(OSError):
                self.agent.send_signal(signal.SIGHUP)
            log.info("reloaded %s", self.defaults)
        notify("READY=1")


def run(defaults: Path) -> int:
    from .loader import LoadError  # noqa: PLC0415
    from .model import ConfigError  # noqa: PLC0415

    runtime.setup_logging("lvsxdp")
    try:
        return Supervisor(defaults).run()
    except (RuntimeError_, LoadError, ConfigError) as e:
        log.error("%s", e)
    except OSError as e:  # not root, mostly: the journal gets one line
        log.error("%s%s", e.strerror or e, f": {e.filename}" if e.filename else "")
    return 1


def installed_exe() -> str:
    """The lvsxdp command the unit runs: this one."""
    here = Path(sys.argv[0])
    if here.name == "lvsxdp" and here.exists():
        return str(here.resolve())
    import shutil  # noqa: PLC0415

    return shutil.which("lvsxdp") or "/usr/local/bin/lvsxdp"
