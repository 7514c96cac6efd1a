"""Boot one kernel in QEMU, run one command in it, and always clean up.

Every QEMU process started here is registered by pid and killed on timeout,
failure, Ctrl-C or exit; its qcow2 overlay is removed. No loop devices, no
mounts on the host: the guest sees the checkout and the job through virtio-9p."""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import VmError
from .rootfs import INIT_STUB, BootFiles, log

GUEST_INIT = Path(__file__).with_name("guest_init.sh")
# The two NICs joined by a QEMU hub: fixed MACs so the guest finds them by address.
NIC_MACS = ("52:54:00:12:34:01", "52:54:00:12:34:02")

_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


def _end(children: list[subprocess.Popen], grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL for whatever still runs after grace_s: the host's
    pytest tears its labs down on SIGTERM (namespaces, pins, servers)."""
    running = [c for c in children if c.poll() is None]
    for child in running:
        child.terminate()
    deadline = time.monotonic() + grace_s
    for child in running:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _kill_children() -> None:
    with _children_lock:
        children = list(_children.values())
    _end(children)


def _on_signal(signum: int, _frame: object) -> None:
    _kill_children()
    raise SystemExit(128 + signum)


atexit.register(_kill_children)


def install_signal_handlers() -> None:
    """Ctrl-C or a kill of the runner ends its VMs too (called from the main thread)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)


def _start(command: list[str], **kwargs: object) -> subprocess.Popen:
    with _children_lock:
        child = subprocess.Popen(command, **kwargs)  # type: ignore[call-overload]
        _children[child.pid] = child
    return child


def _forget(child: subprocess.Popen) -> None:
    _end([child])
    with _children_lock:
        _children.pop(child.pid, None)


def run_tracked(command: list[str], timeout_s: float, **kwargs: object) -> int | None:
    """subprocess.run for long commands (the host's pytest): killed with our VMs on
    Ctrl-C, and on timeout; None when it timed out."""
    child = _start(command, **kwargs)
    try:
        return child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    finally:
        _forget(child)


def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if not path:
        raise VmError("qemu-system-x86_64 is missing: apt-get install qemu-system-x86 "
                      "(make test-kernels does)")
    return path


def _kvm_usable_on_paper() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    flags = Path("/proc/cpuinfo").read_text()
    # A /dev/kvm without vmx/svm is a paravirtual one (PVM here): it runs only
    # kernels built for it, and Debian's fault or hang.
    return " vmx" in flags or " svm" in flags


def _kvm_boots(boot: BootFiles, workdir: Path) -> bool:
    """Boot the kernel with no root under KVM: a working KVM reaches the kernel's
    'cannot mount root' panic in seconds; a broken one faults or hangs."""
    console = workdir / "kvm-probe.log"
    child = _start([qemu_binary(), "-accel", "kvm", "-m", "256", "-nodefaults", "-no-user-config",
                    "-display", "none", "-no-reboot", "-serial", f"file:{console}",
                    "-kernel", str(boot.vmlinuz), "-append", "console=ttyS0 panic=-1"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _forget(child)
    text = console.read_text(errors="replace") if console.exists() else ""
    console.unlink(missing_ok=True)
    return "Kernel panic" in text or "VFS:" in text


_accel: str | None = None


def choose_accel(boot: BootFiles, workdir: Path) -> str:
    """kvm when it can run Debian's kernels (checked once per process), else TCG."""
    global _accel
    if _accel is None:
        if _kvm_usable_on_paper() and _kvm_boots(boot, workdir):
            _accel = "kvm"
        else:
            _accel = "tcg"
        log(f"accelerator: {_accel}" + ("" if _accel == "kvm" else
            " (/dev/kvm cannot run Debian's kernels here: emulating, expect it slow)"))
    return _accel


@dataclass
class Outcome:
    """What came back from one VM: `reported` is False when the guest never wrote
    an exit code (did not boot, crashed, timed out), and `why` then says why."""

    rc: int
    reported: bool
    why: str
    uname: str
    boot_s: float | None
    wall_s: float
    results: Path


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class _Follower(threading.Thread):
    """Copies what the guest writes to stdout/stderr in the job share to ours, as it comes."""

    def __init__(self, results: Path) -> None:
        super().__init__(daemon=True)
        self.pairs = [(results / "stdout", sys.stdout), (results / "stderr", sys.stderr)]
        self.offsets = [0, 0]
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.3):
            self.drain()
        self.drain()

    def drain(self) -> None:
        for i, (path, out) in enumerate(self.pairs):
            try:
                with path.open("rb") as f:
                    f.seek(self.offsets[i])
                    data = f.read()
            except FileNotFoundError:
                continue
            if data:
                self.offsets[i] += len(data)
                out.buffer.write(data)
                out.flush()


def run_in_vm(
    boot: BootFiles,
    command: list[str],
    results: Path,
    *,
    source: Path,
    cwd: Path,
    accel: str,
    cpus: int = 1,
    mem_mb: int = 2048,
    timeout_s: float = 1800,
    stream: bool = True,
) -> Outcome:
    """Boot `boot`, run `command` as root in `cwd` (inside the checkout `source`, shared
    at the same path), and return its exit code. `results` is the job's share."""
    results.mkdir(parents=True, exist_ok=True)
    for stale in ("rc", "stdout", "stderr", "uname", "started", "console.log"):
        (results / stale).unlink(missing_ok=True)
    shutil.copy(GUEST_INIT, results / "init.sh")
    (results / "job.sh").write_text(f"exec {shlex.join(command)}\n")
    env = {
        "LVXVM_SRC": str(source), "LVXVM_CWD": str(cwd), "LVXVM_RESULTS": str(results),
        "LVXVM_HOSTNAME": f"lvxvm-{boot.kernel.line}", "LVXVM_NIC_MACS": " ".join(NIC_MACS),
    }
    (results / "job.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))

    overlay = results / "root-overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(boot.image), str(overlay)], check=True)
    accel_arg = "kvm" if accel == "kvm" else "tcg,thread=multi"
    append = (f"console=ttyS0 root=/dev/vda rw rootfstype=ext4 init={INIT_STUB} panic=-1 "
              # Spectre mitigations cost a lot under emulation and guard nothing here.
              "mitigations=off loglevel=4 net.ifnames=0")
    qemu = [
        qemu_binary(), "-name", f"lvxvm-{boot.kernel.line}-{results.name}",
        "-machine", "q35", "-accel", accel_arg, "-cpu", "max" if accel == "tcg" else "host",
        "-smp", str(cpus), "-m", str(mem_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{results / 'console.log'}",
        "-kernel", str(boot.vmlinuz), "-initrd", str(boot.initrd), "-append", append,
        "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
        "-device", "virtio-rng-pci",
        "-virtfs", f"local,path={source},mount_tag=lvxvm_src,security_model=none,readonly=on",
        "-virtfs", f"local,path={results},mount_tag=lvxvm_job,security_model=none",
    ]
    # Two NICs on one QEMU hub: what one sends, the other receives, and nothing
    # leaves the VM (no user-mode network). The hub carries no offloads, so the
    # guest's virtio-net accepts native XDP.
    for i, mac in enumerate(NIC_MACS):
        qemu += ["-netdev", f"hubport,id=lvxnet{i},hubid=0",
                 # romfile= : no iPXE boot ROM (nothing boots from the network here,
                 # and --no-install-recommends leaves ipxe-qemu out).
                 "-device", f"virtio-net-pci,netdev=lvxnet{i},mac={mac},romfile="]

    follower = _Follower(results) if stream else None
    started = time.monotonic()
    boot_s = None
    with (results / "qemu.log").open("wb") as qemu_log:
        child = _start(qemu, stdout=qemu_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if follower:
        follower.start()
    why = ""
    try:
        while child.poll() is None:
            if boot_s is None and (results / "started").exists():
                boot_s = time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                why = f"timed out after {timeout_s:.0f} s"
                break
            time.sleep(0.2)
    finally:
        _forget(child)
        overlay.unlink(missing_ok=True)
        if follower:
            follower.stop.set()
            follower.join()
    wall = time.monotonic() - started
    rc_file = results / "rc"
    uname = (results / "uname").read_text().strip() if (results / "uname").exists() else ""
    if rc_file.exists():
        return Outcome(int(rc_file.read_text()), True, "", uname, boot_s, wall, results)
    if not why:
        why = f"the VM stopped without reporting (qemu exit {child.returncode})"
    # QEMU's own complaints first (a bad option, a missing file), else the guest's last words;
    # the hub's "not connected to host network" is by design and says nothing.
    qemu_said = [line for line in _tail(results / "qemu.log", 5).splitlines()
                 if line.strip() and "not connected to host network" not in line]
    detail = qemu_said[-3:] or _tail(results / "console.log", 3).splitlines()
    if detail:
        why += ": " + " | ".join(line.strip() for line in detail if line.strip())
    return Outcome(125, False, why, uname, boot_s, wall, results)
