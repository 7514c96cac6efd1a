"""The kernel's own mangle PREROUTING chain, followed without forking
iptables-save several times a second.

nftables (iptables-nft, Debian's default) numbers every committed ruleset
change with a generation id, per network namespace, which one netlink
request (NFT_MSG_GETGEN) reads: the agent asks for it every tick and runs
iptables-save only when it moved, plus a safety read now and then.
iptables-legacy has no such number: its tables are read every few seconds.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import struct
import subprocess
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2

SAFETY_S = 30.0  # nft: a re-read even when the generation did not move
LEGACY_S = 5.0  # iptables-legacy: no generation to watch
SAVE = "iptables-save"


class NftGeneration:
    """The nftables ruleset generation of this network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.settimeout(1.0)
        self.sock.bind((0, 0))
        self.seq = 0

    def read(self) -> int:
        """The generation id now; OSError if nf_tables does not answer."""
        self.seq += 1
        msg = struct.pack("=IHHII", 16 + 4, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
                          NLM_F_REQUEST, self.seq, 0) + struct.pack("=BBH", 0, 0, 0)
        self.sock.send(msg)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    raise OSError("short netlink message")
                body = data[off + 16:off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue  # an answer to an earlier request that timed out
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    raise OSError(err, os.strerror(err))
                if kind & 0xFF == NFT_MSG_NEWGEN:
                    return _gen_id(body[4:])

    def close(self) -> None:
        self.sock.close()


def _gen_id(attrs: bytes) -> int:
    off = 0
    while off + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, off)
        if length < 4:
            break
        if kind & 0x3FFF == NFTA_GEN_ID:
            return struct.unpack_from(">I", attrs, off + 4)[0]
        off += (length + 3) & ~3
    raise OSError("no generation id in the answer")


def backend() -> str:
    """Which iptables the operator's `iptables` is: nf_tables, legacy, or
    none (not installed)."""
    try:
        out = subprocess.run([SAVE, "-V"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return "legacy" if "legacy" in out else "nf_tables"


class Watch:
    """When to read the kernel's mangle rules again: due() is cheap enough
    to ask every tick."""

    def __init__(self) -> None:
        self.backend = backend()
        self.nft = None
        if self.backend == "nf_tables":
            with contextlib.suppress(OSError):
                self.nft = NftGeneration()
                self.nft.read()
        self.gen: int | None = None
        self.next_read = 0.0

    @property
    def how(self) -> str:
        if self.nft is not None:
            return f"nftables generation, re-read every {SAFETY_S:g} s"
        if self.backend == "none":
            return f"no {SAVE}: looked for every {SAFETY_S:g} s"
        return f"reading them every {LEGACY_S:g} s ({self.backend}, no generation to watch)"

    def due(self) -> bool:
        now = time.monotonic()
        if self.nft is not None:
            try:
                gen = self.nft.read()
            except OSError:
                gen = None  # nf_tables went away: the timer alone
            if gen != self.gen or now >= self.next_read:
                self.gen, self.next_read = gen, now + SAFETY_S
                return True
            return False
        if now >= self.next_read:
            self.next_read = now + (SAFETY_S if self.backend == "none" else LEGACY_S)
            return True
        return False

    def close(self) -> None:
        if self.nft is not None:
            self.nft.close()


def kernel_rules() -> tuple[list, list[dict]]:
    """The kernel's own mangle PREROUTING rules in this namespace (what an
    operator typed with plain iptables): the ones lvsxdp can follow, and the
    ones it cannot, as {"rule": line, "why": reason}."""
    from . import iptables  # noqa: PLC0415
    from .model import ConfigError  # noqa: PLC0415

    try:
        out = subprocess.run([SAVE, "-t", "mangle"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return [], []
    if out.returncode != 0:
        return [], []
    rules, skipped = [], []
    for line in out.stdout.splitlines():
        if not line.startswith("-A PREROUTING "):
            continue
        try:
            rules.extend(iptables.parse(["-t", "mangle", *shlex.split(line)]).rules)
        except (ConfigError, ValueError) as e:
            skipped.append({"rule": line, "why": str(e)})
    return rules, skipped
