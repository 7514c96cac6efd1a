"""Directors in throwaway network namespaces, driven through the lvsxdp
command as an operator would: each namespace has a veth pair (eth0, eth1) to
attach to, and every namespace, director and runtime file is removed after,
also when the test fails."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from pathlib import Path

from lvsxdp.lab import run

LVSXDP = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "lvsxdp")


def native_nics() -> tuple[str, str] | None:
    """Two real NICs cabled to each other for the director's native-mode
    labs (LVSXDP_TEST_NICS="director-side switch-side": the kernel matrix's
    VMs set it to two virtio-net NICs on one QEMU hub); None: veth."""
    names = os.environ.get("LVSXDP_TEST_NICS", "").split()
    if not names:
        return None
    if len(names) != 2:
        raise ValueError(f"LVSXDP_TEST_NICS names two NICs, not {names}")
    return names[0], names[1]


def cli(env: dict, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([LVSXDP, "-n", ns, *args], env=env, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@contextlib.contextmanager
def namespaces(tmp: Path, prefix: str, count: int = 1):
    """Yields (names, env): env points lvsxdp's state and runtime files into tmp."""
    base = f"{prefix}{secrets.token_hex(2)}-"
    names = [f"{base}{chr(ord('a') + i)}" for i in range(count)]
    env = dict(os.environ, LVSXDP_STATE_DIR=str(tmp / "state"), LVSXDP_RUN_DIR=str(tmp / "run"))
    made = []
    try:
        for ns in names:
            run(None, "ip", "netns", "add", ns)
            made.append(ns)
            run(ns, "ip", "link", "add", "name", "eth0", "type", "veth", "peer", "name", "eth1")
            run(ns, "ip", "link", "set", "dev", "eth0", "up")
            run(ns, "ip", "link", "set", "dev", "eth1", "up")
        yield names, env
    finally:
        for ns in made:
            # each step on its own: one that fails must not keep the others
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([LVSXDP, "-n", ns, "down", "eth0", "--flush"], env=env,
                               capture_output=True, timeout=60)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
