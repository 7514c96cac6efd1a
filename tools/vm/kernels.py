"""The kernels of the matrix: which exact Debian kernel each line means today.

A line is named the way people say it (6.1, 6.12, 5.10); its exact version is
resolved at run time from the metapackage `linux-image-amd64` of the suites
that carry it, so a security update moves the matrix without an edit here."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import VmError
from .mirror import PrivateApt, newest

# Which suites' linux-image-amd64 stands for each line: Debian 12's stock kernel
# (with its security updates), Debian's 6.12 as bookworm-backports ships it, and
# Debian 11's 5.10 (the oldest kernel an LVS director still runs in the wild).
LINES: dict[str, tuple[str, ...]] = {
    "6.1": ("bookworm", "bookworm-updates", "bookworm-security"),
    "6.12": ("bookworm-backports",),
    "5.10": ("bullseye", "bullseye-security"),
}
DEFAULT_LINES = ("6.1", "6.12")


@dataclass(frozen=True)
class Kernel:
    """One Debian kernel: `release` is its `uname -r` (6.1.0-57-amd64)."""

    line: str
    release: str
    version: str
    debs: tuple[Path, ...]

    @property
    def abi(self) -> str:
        return self.release.removesuffix("-amd64")


def needs_bullseye(lines: list[str]) -> bool:
    return any("bullseye" in suite for line in lines for suite in LINES[line])


def check_lines(wanted: list[str]) -> list[str]:
    """The lines asked for, in the matrix's spelling; an unknown one is a user error."""
    for line in wanted:
        if line not in LINES:
            raise VmError(f"unknown kernel {line!r}: choose among {', '.join(LINES)}")
    return wanted


def line_of(prefix: str) -> str:
    """The line a --kernel argument names: a line (6.1) or any prefix of a release
    (6.1.0-57) matched on whole version components, so that 6.1 never means 6.12."""
    if prefix in LINES:
        return prefix
    for line in LINES:
        if _components(prefix)[:2] == _components(line):
            return line
    raise VmError(f"unknown kernel {prefix!r}: choose among {', '.join(LINES)}")


def matches(prefix: str, release: str) -> bool:
    wanted = _components(prefix)
    return _components(release)[: len(wanted)] == wanted


def _components(version: str) -> list[str]:
    return [c for c in re.split(r"[.\-+~]", version) if c]


def resolve_all(apt: PrivateApt, lines: list[str]) -> list[Kernel]:
    """The kernels of `lines`, remembered until the package lists change: each apt-cache
    call re-reads every list (1-2 s each), which made a cached run.py wait 20 s."""
    memo = apt.root / "resolved.json"
    known = json.loads(memo.read_text()) if memo.is_file() else {}
    if known.get("lists") != apt.lists_id():
        known = {"lists": apt.lists_id(), "kernels": {}}
    kernels = []
    for line in lines:
        entry = known["kernels"].get(line)
        kernel = None
        if entry and all(Path(deb).is_file() for deb in entry["debs"]):
            kernel = Kernel(entry["line"], entry["release"], entry["version"],
                            tuple(Path(deb) for deb in entry["debs"]))
        if kernel is None:
            kernel = resolve(apt, line)
            known["kernels"][line] = {**asdict(kernel), "debs": [str(d) for d in kernel.debs]}
        kernels.append(kernel)
    memo.write_text(json.dumps(known, indent=1))
    return kernels


def resolve(apt: PrivateApt, line: str) -> Kernel:
    """The newest kernel of `line` in the mirror, its image and its own headers downloaded."""
    suites = LINES[line]
    candidates = [v for v, suite in apt.versions("linux-image-amd64") if suite in suites]
    if not candidates:
        raise VmError(f"the mirror has no linux-image-amd64 in {'/'.join(suites)}")
    meta_version = newest(candidates)
    depends = apt.depends("linux-image-amd64", meta_version)
    found = re.search(r"linux-image-(\S+-amd64)(?:-unsigned)? \(= ([^)]+)\)", depends)
    if not found:
        raise VmError(f"linux-image-amd64 {meta_version} depends on no kernel: {depends.strip()}")
    release, version = found.group(1), found.group(2)
    abi = release.removesuffix("-amd64")
    packages = [
        (f"linux-image-{release}", version),
        (f"linux-headers-{release}", None),
        (f"linux-headers-{abi}-common", None),
    ]
    debs = []
    for package, exact in packages:
        if exact is None:
            known = [v for v, _ in apt.versions(package)]
            if not known:
                raise VmError(f"the mirror has no {package}")
            exact = newest(known)
        debs.append(apt.download(package, exact))
    return Kernel(line, release, version, tuple(debs))
