"""Where a director lives on this host: its network namespace, its pinned
maps, its configuration file, and writing a Plan into the maps.

One director per network namespace, as IPVS has one table per namespace.
Its pins live under /sys/fs/bpf/lvsxdp/<netns>, so directors in different
namespaces of one host never share state. `ip netns exec` hides /sys/fs/bpf
(it remounts /sys): lvsxdp then goes back to the host's mounts to find them
(see_host_pins), and also takes `-n NETNS` itself.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import bpfsys, shared
from . import filter as filter_
from .model import Config
from .plan import Hop, Plan

PIN_ROOT = Path(os.environ.get("LVSXDP_PIN_ROOT", "/sys/fs/bpf/lvsxdp"))
STATE_DIR = Path(os.environ.get("LVSXDP_STATE_DIR", "/var/lib/lvsxdp"))
RUN_DIR = Path(os.environ.get("LVSXDP_RUN_DIR", "/run/lvsxdp"))
INIT_NET_INO = 0xEFFFFFF9  # proc inode of the initial network namespace
CLONE_NEWNET = 0x40000000
SO_NETNS_COOKIE = 71
BPF_FS_MAGIC = 0xCAFE4A11
CLOCK_MONOTONIC_COARSE = 6  # Linux; the time module does not name it


class RuntimeError_(RuntimeError):
    """A one-line operator error from the runtime layer."""


def enter_netns(name: str) -> None:
    """Moves this process (network only) into the named namespace, keeping
    the host's mounts, so bpffs pins stay shared."""
    path = Path("/run/netns") / name
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise RuntimeError_(f"network namespace {name!r} does not exist") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise RuntimeError_(f"cannot enter network namespace {name!r}: {os.strerror(err)}")
    finally:
        os.close(fd)
    os.environ["LVSXDP_NETNS"] = name


def netns_key() -> str:
    """A name for the current network namespace: its `ip netns` name,
    `host` for the initial one, else ns<inode>."""
    if os.environ.get("LVSXDP_NETNS"):
        return os.environ["LVSXDP_NETNS"]
    ino = os.stat("/proc/self/ns/net").st_ino
    if ino == INIT_NET_INO:
        return "host"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/run/netns"):
            with contextlib.suppress(OSError):
                if os.stat(entry.path).st_ino == ino:
                    return entry.name
    return f"ns{ino}"


def netns_cookie() -> int:
    """The kernel's never-reused id of the current network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        raw = s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    return int.from_bytes(raw, "little")


def _is_bpffs(path: Path) -> bool:
    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]

    buf = StatFs()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(str(path).encode(), ctypes.byref(buf)) != 0:
        return False
    return (buf.f_type & 0xFFFFFFFF) == BPF_FS_MAGIC


CLONE_NEWNS = 0x00020000


def _mnt_ns(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def _ancestors() -> list[str]:
    """This process's parents, nearest first (whoever ran `ip netns exec`
    sees the mounts it meant, also inside a container or a service with
    mounts of its own), then PID 1 (the host's mounts)."""
    out, pid = [], os.getppid()
    while pid > 1:
        out.append(str(pid))
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return [*out, "1"]


def see_host_pins() -> None:
    """Under `ip netns exec NS` (a mount namespace of its own, /sys remounted
    and /sys/fs/bpf gone) the director's pins are out of sight: a command
    run there goes back to the mounts of the nearest process that sees the
    bpffs (the one that ran `ip netns exec`, else PID 1's), keeping the
    network namespace it names the director by, and its working directory
    (relative file names stay valid). Mounts where lvsxdp's own files are
    not are passed over. A no-op where the pins are visible or for a user
    who may not (who could not change the director anyway)."""
    bpffs = PIN_ROOT.parent
    if os.geteuid() != 0 or _is_bpffs(bpffs):
        return
    mine = _mnt_ns("self")
    try:
        home = os.open("/proc/self/ns/mnt", os.O_RDONLY)
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        where = os.getcwd()
    except OSError:
        where = None
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        for pid in _ancestors():
            theirs = _mnt_ns(pid)
            if theirs is None or theirs == mine:
                continue
            if not _is_bpffs(Path(f"/proc/{pid}/root/{bpffs.resolve()}")):
                continue
            try:
                fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
            except OSError:
                continue
            try:
                if libc.setns(fd, CLONE_NEWNS) != 0:
                    continue
            finally:
                os.close(fd)
            if os.path.exists(__file__) and os.path.exists(sys.executable):
                # setns put us at the new root: back to the same directory by
                # its name there (a directory fd of the old mounts would be
                # one getcwd() cannot name, and compilers call it)
                try:
                    os.chdir(where or "/")
                except OSError:
                    with contextlib.suppress(OSError):
                        os.fchdir(cwd)
                return
            libc.setns(home, CLONE_NEWNS)  # lvsxdp itself is not there: back
            os.fchdir(cwd)
    finally:
        os.close(home)
        os.close(cwd)


def ensure_bpffs() -> None:
    bpffs = PIN_ROOT.parent
    if _is_bpffs(bpffs):
        return
    sysfs_src = ""
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt = line.split()[:2]
            if mnt == "/sys":
                sysfs_src = dev
    if sysfs_src not in ("", "sysfs"):
        raise RuntimeError_(
            f"{bpffs} is not shared with the host here (inside `ip netns exec`, and no "
            "process of the host in sight?): use `lvsxdp -n NETNS ...` instead"
        )
    # no bpffs (a host that does not mount it): mount it, as systemd would
    try:
        bpffs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeError_(f"no bpffs at {bpffs}, and it cannot be made: {e.strerror}"
                            ) from None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"bpf", str(bpffs).encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise RuntimeError_(f"no bpffs at {bpffs}, and it cannot be mounted: "
                            f"{os.strerror(err)}")


@dataclass
class Paths:
    key: str

    @property
    def pins(self) -> Path:
        return PIN_ROOT / self.key.replace(".", "_")

    @property
    def state(self) -> Path:
        return STATE_DIR / f"{self.key}.json"

    @property
    def runtime(self) -> Path:
        return RUN_DIR / f"{self.key}.json"

    @property
    def lock(self) -> Path:
        return RUN_DIR / f"{self.key}.lock"

    @property
    def log(self) -> Path:
        return RUN_DIR / f"{self.key}.log"

    @property
    def agent(self) -> Path:
        """What the agent tells the read-only commands (the kernel rules it
        cannot follow), rewritten when that changes."""
        return RUN_DIR / f"{self.key}.agent.json"

    @property
    def keepalived(self) -> Path:
        """What `lvsxdp keepalived` tells `status`: its pid and each real's
        verdict, rewritten when a verdict changes; removed when it stops."""
        return RUN_DIR / f"{self.key}.keepalived.json"


def paths() -> Paths:
    return Paths(netns_key())


@contextlib.contextmanager
def locked(p: Paths):
    """Serialises configuration changes of one director (CLI and agent)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(p.lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_config(p: Paths) -> Config:
    try:
        text = p.state.read_text()
    except FileNotFoundError:
        return Config()
    except OSError as e:
        raise RuntimeError_(f"cannot read the saved configuration {p.state}: {e.strerror}"
                            ) from None
    try:
        return Config.from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        raise RuntimeError_(f"the saved configuration {p.state} is damaged ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'bad value'}): "
                            "fix it or remove it") from None


_warned: set[str] = set()


def load_config_readonly(p: Paths, warn: bool = True) -> Config:
    """The saved configuration for a command that only reads (status, top,
    metrics, listings): a damaged file is read as far as it goes - every
    service, rule and setting that still makes sense - with one warning
    line (once per process), rather than stopping the command."""
    try:
        return load_config(p)
    except RuntimeError_ as e:
        msg = str(e).removesuffix(": fix it or remove it")
    config, dropped = _partial_config(p)
    if warn and msg not in _warned:
        _warned.add(msg)
        prog = os.path.basename(sys.argv[0] or "lvsxdp")
        print(f"{prog}: warning: {msg}: read what is readable ({len(config.services)} "
              f"services, {dropped} parts left out)", file=sys.stderr, flush=True)
    return config


def _partial_config(p: Paths) -> tuple[Config, int]:
    from .model import Settings  # noqa: PLC0415

    try:
        raw = json.loads(p.state.read_text())
    except (OSError, ValueError):
        return Config(), 1
    if not isinstance(raw, dict):
        return Config(), 1
    config, dropped = Config(), 0
    for name in ("services", "trash", "mark_rules"):
        items = raw.get(name, [])
        for item in items if isinstance(items, list) else [items]:
            try:
                got = Config.from_json(json.dumps({name: [item]}))
            except Exception:  # noqa: BLE001 - whatever a hand edit made of it
                dropped += 1
                continue
            getattr(config, name).extend(getattr(got, name))
    try:
        config.settings = Settings(**raw.get("settings", {}))
    except Exception:  # noqa: BLE001
        dropped += 1
    with contextlib.suppress(TypeError, ValueError):
        config.generation = int(raw.get("generation", 0))
    return config, dropped


def save_config(p: Paths, config: Config) -> None:
    p.state.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.state.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(config.to_json())
    os.replace(tmp, p.state)


def read_runtime(p: Paths) -> dict | None:
    try:
        return json.loads(p.runtime.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_json(path: Path) -> dict:
    """One of the files above; {} when missing or damaged."""
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def read_agent(p: Paths) -> dict:
    return read_json(p.agent)


def write_json(path: Path, info: dict) -> None:
    """Whole or not at all: readers never see half a file."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
    os.replace(tmp, path)


def write_agent(p: Paths, info: dict) -> None:
    write_json(p.agent, info)


def write_runtime(p: Paths, info: dict) -> None:
    write_json(p.runtime, info)


class ConnTable:
    """The connection tables as one map keyed by shared.Tuple. The data plane
    keeps IPv4 connections (shorter key) and IPv6 ones apart, and each in two
    tiers (bpf/maps.h): held (conns4, conns6) and embryonic (syn4, syn6).
    User space need not: a key is in one of them."""

    def __init__(self, v4: bpfsys.Map, v6: bpfsys.Map, new4: bpfsys.Map,
                 new6: bpfsys.Map, flt: filter_.Filter) -> None:
        self.v4, self.v6, self.new4, self.new6 = v4, v6, new4, new6
        self.filter = flt
        self.max_entries = v4.max_entries
        self.name = "conns"

    @staticmethod
    def _key4(t: shared.Tuple) -> shared.Conn4Key:
        return shared.Conn4Key(caddr=t.caddr[0], vaddr=t.vaddr[0], cport=t.cport,
                               vport=t.vport, proto=t.proto)

    @staticmethod
    def _tuple(k: shared.Conn4Key) -> shared.Tuple:
        t = shared.Tuple(family=shared.AF_INET, proto=k.proto, cport=k.cport, vport=k.vport)
        t.caddr[0] = k.caddr
        t.vaddr[0] = k.vaddr
        return t

    def _tiers(self, key: shared.Tuple):
        if key.family == shared.AF_INET:
            return self._key4(key), (self.v4, self.new4)
        return key, (self.v6, self.new6)

    def lookup(self, key: shared.Tuple):
        k, tiers = self._tiers(key)
        for m in tiers:
            v = m.lookup(k)
            if v is not None:
                return v
        return None

    def update(self, key: shared.Tuple, value, flags: int = bpfsys.BPF_ANY) -> None:
        """Where the key is; a new key goes where the data plane would put
        it: embryonic while in SYN_RECV, else held."""
        k, (held, new) = self._tiers(key)
        where = held
        if held.lookup(k) is None and (new.lookup(k) is not None
                                       or value.state == shared.S["SYN_RECV"]):
            where = new
        # before and after, as the data plane's inserts (bpf/filter.h)
        self.filter.mark(shared.FILTER_CONNS, key)
        where.update(k, value, flags)
        self.filter.mark(shared.FILTER_CONNS, key)

    def delete(self, key: shared.Tuple) -> bool:
        k, tiers = self._tiers(key)
        return any([m.delete(k) for m in tiers])

    def items(self) -> list:
        return ([(self._tuple(k), v) for m in (self.v4, self.new4) for k, v in m.items()]
                + self.v6.items() + self.new6.items())

    def keys(self):
        for m in (self.v4, self.new4):
            for k in m.keys():
                yield self._tuple(k)
        yield from self.v6.keys()
        yield from self.new6.keys()

    def close(self) -> None:
        pass


class TemplateTable:
    """The templates as one map: held (`templates`) and embryonic (`tpl_new`,
    not yet settled by a connection: bpf/maps.h)."""

    def __init__(self, held: bpfsys.Map, new: bpfsys.Map, flt: filter_.Filter) -> None:
        self.held, self.new = held, new
        self.filter = flt
        self.max_entries = held.max_entries
        self.name = "templates"

    def lookup(self, key: shared.Tuple):
        v = self.held.lookup(key)
        return v if v is not None else self.new.lookup(key)

    def update(self, key: shared.Tuple, value, flags: int = bpfsys.BPF_ANY) -> None:
        """Where the key is; a new key goes held if ASSURED, else embryonic."""
        where = self.held
        if self.held.lookup(key) is None and (self.new.lookup(key) is not None
                                              or not value.flags & shared.TPL_F_ASSURED):
            where = self.new
        self.filter.mark(shared.FILTER_TEMPLATES, key)
        where.update(key, value, flags)
        self.filter.mark(shared.FILTER_TEMPLATES, key)

    def delete(self, key: shared.Tuple) -> bool:
        return any([self.held.delete(key), self.new.delete(key)])

    def items(self) -> list:
        return self.held.items() + self.new.items()

    def keys(self):
        yield from self.held.keys()
        yield from self.new.keys()

    def close(self) -> None:
        pass


class Maps:
    """The pinned maps of one director, opened without bcc."""

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir
        self._maps: dict[str, bpfsys.Map] = {}
        self.filter_bytes: filter_.Filter | None = None
        try:
            for name, (k, v) in shared.MAPS.items():
                self._maps[name] = bpfsys.Map.pinned(str(pin_dir / name), k, v)
            self.filter_bytes = filter_.Filter(self._maps["filter"])
            self._maps["conns"] = ConnTable(self._maps["conns4"], self._maps["conns6"],
                                            self._maps["syn4"], self._maps["syn6"],
                                            self.filter_bytes)
            self._maps["templates_held"] = self._maps["templates"]
            self._maps["templates"] = TemplateTable(self._maps["templates"],
                                                    self._maps["tpl_new"], self.filter_bytes)
        except OSError as e:
            self.close()
            if e.errno == errno.EINVAL and "do not match" in str(e):
                raise RuntimeError_(
                    f"the running director's maps have another layout than this lvsxdp's "
                    f"({e.strerror}): reload it with `lvsxdp up IFACE`") from None
            if e.errno == errno.ENOENT:
                if (pin_dir / "config").exists():
                    raise RuntimeError_(
                        f"the running director has no map {name!r} (started by an older "
                        "lvsxdp): reload it with `lvsxdp up IFACE`") from None
                raise RuntimeError_(f"no director here ({pin_dir} has no maps)") from None
            raise

    def __getattr__(self, name: str) -> bpfsys.Map:
        try:
            return self._maps[name]
        except KeyError:
            raise AttributeError(name) from None

    def pinned_map(self, name: str) -> bpfsys.Map:
        """The map pinned under this name (shared.MAPS), not its union."""
        return self._maps["templates_held" if name == "templates" else name]

    def close(self) -> None:
        if self.filter_bytes is not None:
            self.filter_bytes.close()
            self.filter_bytes = None
        for m in self._maps.values():
            m.close()
        self._maps = {}

    def __enter__(self) -> Maps:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_config(self) -> shared.Config:
        return self._maps["config"].lookup(ctypes.c_uint32(0))


def pinned(p: Paths, name: str) -> bpfsys.Map | None:
    """One pinned map of this namespace's director, if it exists (for `up`,
    which must also handle a director started by an older lvsxdp)."""
    k, v = shared.MAPS[name]
    try:
        return bpfsys.Map.pinned(str(p.pins / name), k, v)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise


# Maps `up` refills from the saved configuration (or that only count): if
# their layout changed, they are re-created empty. The others hold live state.
REFILLED_MAPS = {"config", "vips", "services", "svc_conf", "reals", "sched_ring", "sched_pos",
                 "mark_cfg", "mark_dst", "mark_src", "mark_port", "mark_combo", "svc_stats",
                 "real_stats", "reasons", "progs", "sched_scratch", "tx_ports", "ifaces",
                 "fwd_scratch", "filter"}


# Maps whose size is one of the header's constants: a reason (or an
# interface slot) more is a new layout too.
FIXED_ENTRIES = {"reasons": len(shared.REASONS), "tx_ports": shared.MAX_IFACES,
                 "progs": shared.PROGS, "filter": 1}


def stale_layouts(p: Paths) -> list[str]:
    """Pinned maps whose key or value size is not this lvsxdp's."""
    out = []
    for name, (k, v) in shared.MAPS.items():
        path = p.pins / name
        if not path.exists():
            continue
        fd = bpfsys.obj_get(str(path))
        try:
            info = bpfsys.map_info(fd)
        finally:
            os.close(fd)
        value = ctypes.sizeof(v)
        if (info.key_size != ctypes.sizeof(k) or info.value_size != value
                or info.type != shared.MAP_KINDS.get(name, info.type)
                or info.max_entries != FIXED_ENTRIES.get(name, info.max_entries)):
            out.append(name)
    return out


def owns_pins(p: Paths) -> bool:
    """Do the pins here belong to this namespace's director (rather than to
    a namespace that was deleted and whose name was reused)?"""
    m = pinned(p, "config")
    if m is None:
        return False
    with m:
        return m.lookup(ctypes.c_uint32(0)).netns_cookie == netns_cookie()


def running_maps(p: Paths) -> Maps | None:
    """The director's maps if it is running in this namespace, else None.
    Pins left by a namespace that no longer exists are not this director's,
    and the tables a `down` kept are no running director's: `up` writes the
    runtime record, `down` removes it."""
    if read_runtime(p) is None or not (p.pins / "config").exists():
        return None
    maps = Maps(p.pins)
    if maps.read_config().netns_cookie != netns_cookie():
        maps.close()
        return None
    return maps


def monotonic_ns() -> int:
    """The data plane's clock (bpf_ktime_get_coarse_ns)."""
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)


def known_macs(maps: Maps) -> dict:
    """How the data plane reaches each real now (plan.Hop by real address,
    kept fresh by the agent), so a configuration change does not forget it."""
    out = {}
    for _, r in maps.reals.used():
        if r.flags & shared.REAL_F_MAC_VALID:
            saddr = shared.words_addr(r.family, r.tun_saddr) if any(r.tun_saddr) else ""
            out[shared.words_addr(r.family, r.addr)] = Hop(
                mac=bytes(r.mac), ifindex=r.ifindex, smac=bytes(r.smac), slot=r.tx_slot,
                mtu=r.mtu, saddr=str(saddr) if saddr else "")
    return out


def apply_plan(maps: Maps, plan: Plan) -> None:
    """Writes a plan into the maps: what is added first, from the leaves up
    (reals, rings, services, then the keys that lead packets to them), what
    is removed last, from the keys down - a packet never finds a service
    whose reals are not there yet."""
    u32 = ctypes.c_uint32
    old_cfg = maps.read_config()
    cfg = plan.config
    cfg.netns_cookie = old_cfg.netns_cookie
    cfg.started = old_cfg.started
    if not cfg.ifindex:
        cfg.ifindex = old_cfg.ifindex
        cfg.mac[:] = list(old_cfg.mac)
    maps.config.update(u32(0), cfg)

    old_reals = {i: r for i, r in ((k.value, v) for k, v in maps.reals.used())
                 if r.flags}
    for idx, real in plan.reals.items():
        old = old_reals.get(idx)
        if old is None or old.ref != real.ref:
            maps.real_stats.update(u32(idx), shared.Stats())
        maps.reals.update(u32(idx), real)

    old_svcs = {k.value: v for k, v in maps.svc_conf.used() if v.flags}
    for idx, svc in plan.svc_conf.items():
        old = old_svcs.get(idx)
        refs = plan.rings[idx]
        base = idx * 2 * shared.RING_SLOTS
        if old is not None and _ring(maps, old) == refs:
            svc.ring_off = old.ring_off
        else:
            # Write the ring packets are not reading, then switch to it.
            half = 1 if old is not None and old.ring_off == base else 0
            svc.ring_off = base + half * shared.RING_SLOTS
            for i, ref in enumerate(refs):
                maps.sched_ring.update(u32(svc.ring_off + i), u32(ref))
        if old is None:
            maps.svc_stats.update(u32(idx), shared.Stats())
            maps.sched_pos.update(u32(idx), ctypes.c_uint64(0))
        maps.svc_conf.update(u32(idx), svc)

    for key, idx in plan.services.values():
        maps.services.update(key, u32(idx))
    for key, flags in plan.vips.values():
        maps.vips.update(key, u32(flags))

    for key in list(maps.services.keys()):
        if bytes(key) not in plan.services:
            maps.services.delete(key)
    for key in list(maps.vips.keys()):
        if bytes(key) not in plan.vips:
            maps.vips.delete(key)
    for idx in old_svcs:
        if idx not in plan.svc_conf:
            maps.svc_conf.update(u32(idx), shared.Service())
    for idx in old_reals:
        if idx not in plan.reals:
            maps.reals.update(u32(idx), shared.Real())


def _ring(maps: Maps, svc: shared.Service) -> list[int]:
    return [maps.sched_ring.lookup(ctypes.c_uint32(svc.ring_off + i)).value
            for i in range(svc.ring_len)]


def apply_marks(maps: Maps, tables) -> None:
    """Writes compiled firewall-mark tables (iptables.MarkTables) into the
    generation packets do not read, switches to it, then clears the old one."""
    u32 = ctypes.c_uint32
    key0 = u32(0)
    cur = maps.mark_cfg.lookup(key0)
    old_gen = cur.gen & 1 if cur.flags else 1
    gen = old_gen ^ 1
    for name, entries in (("mark_dst", tables.dst), ("mark_src", tables.src)):
        trie = getattr(maps, name)
        for (_, net), cls in entries.items():
            k = shared.MarkAddrKey(prefixlen=32 + net.prefixlen, gen=gen,
                                   addr=int.from_bytes(net.network_address.packed, "little"))
            trie.update(k, u32(cls))
    slots = array.array("I", bytes(4 * shared.MARK_PORT_SLOTS))
    for proto, intervals in tables.ports.items():
        base = 65536 if proto == 17 else 0
        for lo, hi, cls in intervals:
            slots[base + lo:base + hi + 1] = array.array("I", [cls]) * (hi - lo + 1)
    first = gen * shared.MARK_PORT_SLOTS
    maps.mark_port.write_raw(array.array("I", range(first, first + len(slots))), slots,
                             len(slots))
    for (dc, sc, pc), mark in tables.combos.items():
        maps.mark_combo.update(shared.MarkKey(gen=gen, dst=dc, src=sc, port=pc), u32(mark))
    flags = 0
    if not tables.empty:
        flags |= shared.MARK_F_ACTIVE
    if tables.uses_src:
        flags |= shared.MARK_F_SRC
    maps.mark_cfg.update(key0, shared.MarkCfg(flags=flags, gen=gen))
    # the old generation: nothing reads it any more
    for name in ("mark_dst", "mark_src"):
        trie = getattr(maps, name)
        for k in list(trie.keys()):
            if k.gen != gen:
                trie.delete(k)
    for k in list(maps.mark_combo.keys()):
        if k.gen != gen:
            maps.mark_combo.delete(k)


def setup_logging(ident: str) -> None:
    """Log lines to where an operator looks: under systemd (JOURNAL_STREAM)
    stderr is the journal; elsewhere syslog (/dev/log, which journald reads
    too) and stderr (the agent's file in /run when `up` started it)."""
    import logging  # noqa: PLC0415
    import logging.handlers  # noqa: PLC0415

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    stderr = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        stderr.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(stderr)
        return
    stderr.setFormatter(logging.Formatter(f"%(asctime)s {ident}[%(process)d] %(message)s"))
    root.addHandler(stderr)
    if os.path.exists("/dev/log"):
        try:
            syslog = logging.handlers.SysLogHandler(
                "/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        except OSError:
            return  # no syslog daemon listening: stderr alone
        syslog.setFormatter(logging.Formatter(f"{ident}[%(process)d]: %(message)s"))
        root.addHandler(syslog)
