"""Debian's mirror as the host's apt knows it, and a private apt on top of it.

The VM tooling takes every kernel and every package from the Debian mirror the
host already uses (read from its apt sources at run time, never written down
here), through an apt configuration of its own under the cache directory, so
that it neither changes the host's apt state nor depends on what the host has
enabled (backports, bullseye)."""

from __future__ import annotations

import glob
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import VmError

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    signed_by: str | None


def _one_line_sources(text: str) -> list[Source]:
    sources = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        options = re.search(r"\[([^]]*)\]", line)
        signed_by = None
        if options:
            for option in options.group(1).split():
                if option.startswith("signed-by="):
                    signed_by = option.split("=", 1)[1]
            line = line[: options.start()] + line[options.end() :]
        words = line.split()
        if len(words) >= 3:
            sources.append(Source(words[1], (words[2],), signed_by))
    return sources


def _deb822_sources(text: str) -> list[Source]:
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.lstrip().startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            sources.append(
                Source(uri, tuple(fields.get("suites", "").split()), fields.get("signed-by"))
            )
    return sources


def host_sources(etc: Path = Path("/etc/apt")) -> list[Source]:
    """Every `deb` entry of the host's apt, one-line and deb822 files alike."""
    sources: list[Source] = []
    paths = [etc / "sources.list", *sorted(Path(p) for p in glob.glob(f"{etc}/sources.list.d/*"))]
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.name == "sources.list" or path.suffix == ".list":
            sources += _one_line_sources(text)
        elif path.suffix == ".sources":
            sources += _deb822_sources(text)
    return sources


@dataclass(frozen=True)
class Mirror:
    """Where Debian's archive and its security archive are, and the key that signs them."""

    archive: str
    security: str
    keyring: str

    def suites(self, with_bullseye: bool) -> list[tuple[str, str]]:
        """(uri, suite) of every suite the kernel matrix may take packages from."""
        suites = [
            (self.archive, "bookworm"),
            (self.archive, "bookworm-updates"),
            (self.security, "bookworm-security"),
            (self.archive, "bookworm-backports"),
        ]
        if with_bullseye:
            suites += [(self.archive, "bullseye"), (self.security, "bullseye-security")]
        return suites


def find_mirror(etc: Path = Path("/etc/apt")) -> Mirror:
    """The Debian mirror the host's apt reads bookworm from (and its security archive)."""
    sources = host_sources(etc)
    archive = next((s for s in sources if "bookworm" in s.suites), None)
    if archive is None:
        raise VmError(f"no 'bookworm' suite in {etc}/sources.list*: cannot find a Debian mirror")
    security = next((s for s in sources if "bookworm-security" in s.suites), None)
    # Without a security entry, Debian's usual layout puts it beside the archive.
    security_uri = (
        security.uri if security else re.sub(r"/debian/?$", "/debian-security", archive.uri)
    )
    keyring = archive.signed_by or DEFAULT_KEYRING
    if not Path(keyring).is_file():
        raise VmError(f"Debian's archive keyring {keyring} is missing: apt-get install "
                      "debian-archive-keyring")
    return Mirror(archive.uri.rstrip("/"), security_uri.rstrip("/"), keyring)


class PrivateApt:
    """apt-get/apt-cache on a sources list, state and cache of their own under `root`."""

    def __init__(self, root: Path, mirror: Mirror, with_bullseye: bool) -> None:
        self.root = root
        self.mirror = mirror
        self.with_bullseye = with_bullseye
        self.debs = root / "debs"

    def _options(self) -> list[str]:
        return [
            "-o", f"Dir::Etc::SourceList={self.root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=-",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", f"Dir::State::status={self.root / 'status'}",
            "-o", f"Dir::Cache={self.root / 'cache'}",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Architecture=amd64",
        ]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        command = [tool, *self._options(), *args]
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            raise VmError(f"{tool} {' '.join(args)} failed: {' '.join(tail)}")
        return done.stdout

    def update(self, max_age_s: float = 6 * 3600) -> None:
        """Refresh the package lists when they are older than `max_age_s` (or the suites
        changed): security updates change the newest kernel within days."""
        sources = "".join(
            f"deb [signed-by={self.mirror.keyring}] {uri} {suite} main\n"
            for uri, suite in self.mirror.suites(self.with_bullseye)
        )
        for sub in ("lists/partial", "cache/archives/partial", "debs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        listfile = self.root / "sources.list"
        stamp = self.root / "lists" / ".lvxvm-updated"
        fresh = (
            listfile.is_file()
            and listfile.read_text() == sources
            and stamp.is_file()
            and _age(stamp) < max_age_s
        )
        if fresh:
            return
        listfile.write_text(sources)
        self._run("apt-get", "-q", "update")
        stamp.touch()

    def lists_id(self) -> str:
        """Changes whenever the lists do: what was resolved from them stays valid until then."""
        stamp = self.root / "lists" / ".lvxvm-updated"
        return f"{stamp.stat().st_mtime_ns}:{(self.root / 'sources.list').read_text()}"

    def versions(self, package: str) -> list[tuple[str, str]]:
        """(version, suite) of every version of `package` the private lists know."""
        found = []
        for line in self._run("apt-cache", "madison", package).splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[0] == package:
                found.append((parts[1], parts[2].split()[1].split("/")[0]))
        return found

    def depends(self, package: str, version: str) -> str:
        for line in self._run("apt-cache", "show", f"{package}={version}").splitlines():
            if line.startswith("Depends:"):
                return line.split(":", 1)[1]
        return ""

    def download(self, package: str, version: str) -> Path:
        """The .deb of package=version (amd64 or all), downloaded once into the cache."""
        pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"
        found = sorted(self.debs.glob(pattern))
        if not found:
            self._run("apt-get", "-q", "download", f"{package}={version}", cwd=self.debs)
            found = sorted(self.debs.glob(pattern))
            if not found:
                raise VmError(f"apt-get download {package}={version} wrote no {pattern}")
        return found[0]


def newest(versions: list[str]) -> str:
    """The highest Debian version of `versions` (dpkg's ordering, not the string's)."""
    best = versions[0]
    for version in versions[1:]:
        if subprocess.run(["dpkg", "--compare-versions", version, "gt", best]).returncode == 0:
            best = version
    return best


def _age(path: Path) -> float:
    return time.time() - path.stat().st_mtime
