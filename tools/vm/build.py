"""Everything a VM boots from, made or brought up to date before each run."""

from __future__ import annotations

import fcntl
from pathlib import Path

from .kernels import matches, needs_bullseye, resolve_all
from .mirror import PrivateApt, find_mirror
from .rootfs import BootFiles, boot_files, ensure_base, ensure_image, ensure_kernel, prune_kernels

CACHE = Path("/var/tmp/lvsxdp-vm")


def prepare(lines: list[str], cache: Path = CACHE) -> dict[str, BootFiles]:
    """Boot files of each kernel line, building only what is missing or outdated.
    Runs under a lock: two runners started together share one cache."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mirror = find_mirror()
        apt = PrivateApt(cache / "apt", mirror, needs_bullseye(lines))
        apt.update()
        kernels = resolve_all(apt, lines)
        root = ensure_base(cache, mirror)
        installed = {p.name for p in (root / "lvxvm/kernels").glob("*")}
        # Older releases of a line (before a security update) leave the image.
        outdated = {r for r in installed for k in kernels
                    if matches(k.line, r) and r != k.release}
        prune_kernels(root, installed - outdated)
        for kernel in kernels:
            ensure_kernel(cache, root, kernel)
        everything = sorted(p.name for p in (root / "lvxvm/kernels").glob("*"))
        image = ensure_image(cache, root, everything)
        return {k.line: boot_files(cache, root, k, image) for k in kernels}
