"""lvsxdp's ipvsadm against real ipvsadm 1.31, line by line.

/work/shared/ipvs-golden/*.txt (or $LVSXDP_GOLDEN) hold what the real
ipvsadm printed on Debian 12's IPVS for the seed's scenarios: every `$ ipvsadm
...` followed by its output (stdout and stderr as they came) and `[exit N]`.
Each file is replayed in order, in-process, through the entry point the
installed `ipvsadm` runs, on a configuration-only director (a namespace key of
its own, its state in tmp_path, no XDP). Compared exactly, after the golden
README's normalisation (the table size in the version line):

- every configuration command (its message, if any, and its exit status),
  every error, `-S`, `--timeout`, `-h`, `-v`, `-R`;
- every listing of the configuration (`-L`, `-L -n`, `--thresholds`, ...)
  up to the file's first traffic (`@ client` lines).

Skipped by rule (`skip_reason`): lines that are not ipvsadm's (iptables,
tested by test_iptables.py), `-c` listings and any listing with counters once
traffic has flowed (connection entries, expiry seconds and counters are live
data, checked end to end elsewhere), and `-L` without -n when this machine's
/etc/services names a listed port otherwise than Debian 12's does.

What lvsxdp refuses on purpose (DEVIATIONS, as the README says) is checked
for its own one-line message and exit status; the listings that follow drop
the lines IPVS printed for what lvsxdp refused.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lvsxdp import cli, runtime

GOLDEN = Path(os.environ.get("LVSXDP_GOLDEN", "/work/shared/ipvs-golden"))
FILES = sorted(GOLDEN.glob("0*.txt"))

# golden command -> (lvsxdp's message, exit status, regex of the golden
# listing lines that describe what was refused)
DEVIATIONS = {
    "-a -t 198.18.2.1:80 -r 198.18.2.200 -g -w 70000": (
        "illegal weight specified (lvsxdp: 0-65535)", 2, r"198\.18\.2\.200:(80|http)\b"),
    "-A -t 198.18.2.1:85 -s rr -p -M 255.0.255.0": (
        "lvsxdp: a persistent netmask must be contiguous (255.0.255.0 is not)", 2,
        r"198\.18\.2\.1:85\b"),
    "-A -t 198.18.2.1:99 -s rr -p -M 33": (
        "lvsxdp: a persistent netmask must be contiguous (33 is not)", 2,
        r"198\.18\.2\.1:99\b"),
    "-A -t 198.18.2.1:92 -s lblc": (
        "lvsxdp has no scheduler lblc (rr wrr lc wlc sed nq sh dh mh)", 255,
        r"198\.18\.2\.1:92\b"),
    "-A -t 198.18.2.1:95 -s fo": (
        "lvsxdp has no scheduler fo (rr wrr lc wlc sed nq sh dh mh)", 255,
        r"198\.18\.2\.1:95\b"),
    "-A -t 198.18.2.1:96 -s ovf": (
        "lvsxdp has no scheduler ovf (rr wrr lc wlc sed nq sh dh mh)", 255,
        r"198\.18\.2\.1:96\b"),
}
# ports of the listings without -n, by the names Debian 12's /etc/services gives
DEBIAN_SERVICES = {("tcp", 80): "http", ("tcp", 8080): "http-alt", ("tcp", 102): "iso-tsap",
                   ("udp", 53): "domain"}


@dataclass
class Step:
    file: str
    lineno: int
    command: str
    stdin: str = ""
    expected: list[str] = field(default_factory=list)
    exit: int = 0
    after_traffic: bool = False


def parse_golden(path: Path) -> list[Step]:
    steps: list[Step] = []
    traffic = False
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("@ "):
            traffic = True
            continue
        if not line.startswith("$ "):
            continue
        step = Step(path.name, i, line[2:].strip(), after_traffic=traffic)
        m = re.search(r"\s*<<(\w+)$", step.command)
        if m:
            step.command = step.command[:m.start()]
            body = []
            while lines[i] != m.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            step.stdin = "".join(b + "\n" for b in body)
        while not re.fullmatch(r"\[exit \d+\]", lines[i]):
            step.expected.append(lines[i])
            i += 1
        step.exit = int(lines[i][6:-1])
        i += 1
        steps.append(step)
    return steps


def _listing(argv: list[str]) -> bool:
    return bool(argv) and argv[0] in ("-L", "-l", "--list") or not argv


def skip_reason(step: Step, argv: list[str]) -> str | None:
    if not step.command.startswith("ipvsadm"):
        return "not an ipvsadm line"
    if step.exit != 0 or not _listing(argv) or "--timeout" in argv:
        return None
    if "-c" in argv and step.after_traffic:
        return "connection entries of live traffic"
    if step.after_traffic:
        return "counters of live traffic"
    if "-n" not in argv:
        for (proto, port), name in DEBIAN_SERVICES.items():
            if services_name(proto, port) != name:
                return f"this /etc/services does not name {proto} {port} {name}"
    return None


def services_name(proto: str, port: int) -> str | None:
    try:
        text = Path("/etc/services").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2 and words[1] == f"{port}/{proto}":
            return words[0]
    return None


def normalise(lines: list[str]) -> list[str]:
    return [re.sub(r"^(IP Virtual Server version 1\.2\.1) \(size=\d+\)$", r"\1 (size=N)", ln)
            for ln in lines]


def run(argv: list[str], stdin: str, capsys) -> tuple[list[str], int]:
    capsys.readouterr()
    code = cli.run_ipvsadm(argv, io.StringIO(stdin))
    got = capsys.readouterr()
    return (got.out + got.err).splitlines(), code


@pytest.fixture
def director(tmp_path, monkeypatch):
    """A configuration-only director of its own: state in tmp_path."""
    monkeypatch.setenv("LVSXDP_NETNS", f"golden-{secrets.token_hex(4)}")
    monkeypatch.setattr(runtime, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(runtime, "RUN_DIR", tmp_path / "run")
    return tmp_path


@pytest.mark.skipif(not FILES, reason=f"no golden files in {GOLDEN}")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_ipvsadm_prints_what_ipvsadm_1_31_prints(path, director, capsys):
    refused: list[str] = []
    compared = 0
    failures = []
    for step in parse_golden(path):
        words = shlex.split(step.command)
        argv = words[1:]
        reason = skip_reason(step, argv)
        if reason:
            continue
        got, code = run(argv, step.stdin, capsys)
        expected, exit_code = step.expected, step.exit
        key = " ".join(argv)
        if key in DEVIATIONS:
            msg, exit_code, drop = DEVIATIONS[key]
            expected = [msg]
            refused.append(drop)
        elif refused:
            expected = [ln for ln in expected if not any(re.search(d, ln) for d in refused)]
        compared += 1
        if (normalise(got), code) != (normalise(expected), exit_code):
            failures.append(f"{step.file}:{step.lineno}: $ {step.command}\n"
                            f"  expected [exit {exit_code}]: {expected}\n"
                            f"  got      [exit {code}]: {got}")
    assert not failures, f"{len(failures)} of {compared} steps differ:\n" + "\n".join(failures)
    assert compared
