"""The XDP program under test: compiled and loaded for real (verifier and
all), its maps pinned in a directory of its own, configured through the same
ipvsadm -> plan -> maps path that `lvsxdp ipvsadm` uses, and run on frames
with BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ctypes
import itertools
import os
import shlex
import shutil
from pathlib import Path

from lvsxdp import bpfsys, ipvsadm, loader, plan, runtime, shared
from lvsxdp.model import Config

DIRECTOR_MAC = "02:00:00:00:00:01"
CLIENT_MAC = "02:00:00:00:00:99"
REAL_MACS = {  # the lab's addresses (LVS-SEMANTICS examples)
    "198.18.2.100": "02:00:00:00:01:00",
    "198.18.2.200": "02:00:00:00:02:00",
    "2001:db8:2::100": "02:00:00:00:01:06",
    "2001:db8:2::200": "02:00:00:00:02:06",
}
_serial = itertools.count()


def kernel_loops() -> list[str]:
    """Every way this kernel can build the schedulers' loops (bpf/sched.h):
    both where it has may_goto, so that the packet tests show they decide
    alike; LVSXDP_LOOPS narrows it to one, and LVSXDP_TEST_LOOPS=up to the
    one `lvsxdp up` picks (the kernel matrix's VMs, where time is short)."""
    if os.environ.get("LVSXDP_LOOPS") or os.environ.get("LVSXDP_TEST_LOOPS") == "up":
        return [loader.loops_for_kernel()]
    return list(loader.LOOPS) if loader.kernel_has_may_goto() else ["bounded"]


def scaled(n: int) -> int:
    """How many random cases to run where a test would run n: all on the
    host, a tenth in the kernel matrix's emulated VMs (LVSXDP_TEST_SHORT=1,
    set by tools/kernel_matrix.py), where the verifier and the kernel's maps
    are what differs, not the cases."""
    return max(1, n // 10) if os.environ.get("LVSXDP_TEST_SHORT") == "1" else n


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


class Director:
    """One loaded program with its own maps."""

    def __init__(self, conn_max: int = 4096, tpl_max: int = 4096,
                 defines: dict | None = None, source: Path = loader.MAIN_SOURCE,
                 loops: str | None = None) -> None:
        self.pin_dir = Path(f"/sys/fs/bpf/lvsxdp-test/{os.getpid()}-{next(_serial)}")
        self.loops = loops or loader.loops_for_kernel()
        runtime.ensure_bpffs()
        try:
            self.bpf, self.fn = loader.compile_program(str(self.pin_dir), conn_max, tpl_max,
                                                       defines, source, self.loops)
        except BaseException:
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            raise
        self.maps = runtime.Maps(self.pin_dir)
        cfg = shared.Config()
        cfg.netns_cookie = runtime.netns_cookie()
        self.maps.config.update(ctypes.c_uint32(0), cfg)
        self.config = Config()
        self.macs = {ipaddr(a): mac_bytes(m) for a, m in REAL_MACS.items()}

    def close(self) -> None:
        self.maps.close()
        self.bpf.cleanup()
        shutil.rmtree(self.pin_dir, ignore_errors=True)

    def ipvsadm(self, *lines: str) -> None:
        """Applies ipvsadm lines (without the word ipvsadm) to the maps."""
        for line in lines:
            self.config = ipvsadm.apply(self.config, ipvsadm.parse(shlex.split(line)))
        self.apply()

    def apply(self) -> None:
        p = plan.build(self.config, self.macs, ifindex=1, own_mac=mac_bytes(DIRECTOR_MAC))
        runtime.apply_plan(self.maps, p)

    def run(self, frame: bytes) -> tuple[str, bytes]:
        action, out, _ = bpfsys.prog_test_run(self.fn.fd, frame)
        return bpfsys.XDP_ACTIONS[action], out

    def reasons(self) -> dict[str, int]:
        out = {}
        for i, name in enumerate(shared.REASONS):
            out[name] = sum(v.value for v in self.maps.reasons.lookup(ctypes.c_uint32(i)))
        return out

    def templates(self) -> list:
        return self.maps.templates.items()

    def conns(self) -> list:
        return self.maps.conns.items()

    def real_of_mac(self, mac: bytes) -> str | None:
        for addr, m in self.macs.items():
            if m == mac:
                return str(addr)
        return None


def ipaddr(text: str):
    import ipaddress
    return ipaddress.ip_address(text)
