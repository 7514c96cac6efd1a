"""Compiling and loading the XDP program with bcc.

Only `lvsxdp up`, the tests and the benchmark import this module (bcc costs
about 80 MB and a second of clang); everything else reads pinned maps.
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from . import bpfsys, shared

# Installed (pip install ., a wheel): lvsxdp/bpf; a checkout (or pip -e): bpf/
BPF_DIR = next((d for d in (Path(__file__).resolve().parent / "bpf",
                            Path(__file__).resolve().parent.parent / "bpf")
                if (d / "lvsxdp.bpf.c").exists()), Path(__file__).resolve().parent.parent / "bpf")
MAIN_SOURCE = BPF_DIR / "lvsxdp.bpf.c"
HEADERS_CACHE = Path("/var/cache/lvsxdp/kernel-headers")


LOOPS = ("may_goto", "bounded")


class LoadError(RuntimeError):
    pass


_may_goto: bool | None = None


def kernel_has_may_goto() -> bool:
    """Does this kernel's verifier take may_goto (Linux 6.9)? Asked of the
    kernel itself with a three-instruction program, so that a distribution
    kernel with the feature backported is used as it is."""
    global _may_goto
    if _may_goto is None:
        insns = bytes.fromhex(
            "b700000002000000"  # r0 = XDP_PASS
            "e500010000000000"  # may_goto +1
            "b700000002000000"  # r0 = XDP_PASS
            "9500000000000000"  # exit
        )
        try:
            os.close(bpfsys.prog_load(bpfsys.BPF_PROG_TYPE_XDP, insns, "lvsxdp_probe"))
            _may_goto = True
        except OSError:
            _may_goto = False
    return _may_goto


# The newest helper the program calls is bpf_xdp_load_bytes (5.18; parse.h
# reads IPv4 options with it); bpf_ktime_get_coarse_ns needs 5.11 and the
# agent's managed neighbours 5.16.
MIN_KERNEL = (5, 18)


def check_kernel(release: str | None = None) -> None:
    """One line, before anything is compiled or pinned, when the kernel is
    older than what the program needs (rather than a verifier dump)."""
    release = release or platform.release()
    try:
        have = tuple(int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return  # a release lvsxdp cannot read: let the verifier judge
    if have < MIN_KERNEL:
        raise LoadError(f"this kernel ({release}) is too old: lvsxdp needs Linux "
                        f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]} or newer (Debian 12's 6.1 will do)")


def loops_for_kernel() -> str:
    """How the schedulers' loops are built for this kernel (bpf/sched.h):
    LVSXDP_LOOPS=bounded forces the way older kernels take, on any kernel."""
    forced = os.environ.get("LVSXDP_LOOPS")
    if forced:
        if forced not in LOOPS:
            raise LoadError(f"LVSXDP_LOOPS must be one of {', '.join(LOOPS)}, not {forced!r}")
        if forced == "may_goto" and not kernel_has_may_goto():
            raise LoadError(f"this kernel ({platform.release()}) has no may_goto")
        return forced
    return "may_goto" if kernel_has_may_goto() else "bounded"


def kernel_source() -> str | None:
    """A kernel header tree for bcc: the running kernel's if it has one, else
    Debian's linux-headers-amd64 halves merged into one tree (bcc wants one
    directory; XDP code needs only UAPI headers, which are stable)."""
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return os.environ["BCC_KERNEL_SOURCE"]
    if Path(f"/lib/modules/{platform.release()}/build/include").is_dir():
        return None
    if (HEADERS_CACHE / ".complete").exists():
        return str(HEADERS_CACHE)
    commons = sorted(glob.glob("/usr/src/linux-headers-*-common"))
    if not commons:
        raise LoadError(
            "no kernel headers for bcc: install linux-headers-amd64 (make install does)"
        )
    common = commons[-1]
    arch = common[: -len("-common")] + "-amd64"
    if not Path(arch).is_dir():
        raise LoadError(f"kernel headers incomplete: {arch} is missing")
    tmp = HEADERS_CACHE.with_name(HEADERS_CACHE.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run(["cp", "-rs", f"{common}/.", str(tmp)], check=True)
    subprocess.run(["cp", "-rsf", f"{arch}/.", str(tmp)], check=True)
    (tmp / ".complete").touch()
    try:
        tmp.rename(HEADERS_CACHE)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(HEADERS_CACHE)


_LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$', re.M)


def program_text(source: Path = MAIN_SOURCE, _seen: set | None = None) -> str:
    """The program with our own headers inlined. bcc rewrites map calls
    (`conns.lookup(...)`) only in the text it is given, not in included
    files, so the headers in bpf/ are pasted in (each once, with #line
    markers so that compiler errors still name the right file and line)."""
    seen = _seen if _seen is not None else set()
    out = []
    pos = 0
    text = source.read_text()
    for m in _LOCAL_INCLUDE.finditer(text):
        out.append(text[pos:m.start()])
        header = source.parent / m.group(1)
        if header not in seen:
            seen.add(header)
            line = text.count("\n", 0, m.end()) + 2
            out.append(f'#line 1 "{header}"\n')
            out.append(program_text(header, seen))
            out.append(f'\n#line {line} "{source}"\n')
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def compile_program(pin_dir: str, conn_max: int, tpl_max: int,
                    defines: dict[str, str] | None = None, source: Path = MAIN_SOURCE,
                    loops: str | None = None):
    """Compiles the program and loads its XDP function; maps are created (or
    reused, when already pinned) under pin_dir. loops: "may_goto" or
    "bounded" (bpf/sched.h), by default what this kernel takes. Returns
    (bcc.BPF, fn)."""
    loops = loops or loops_for_kernel()
    ksrc = kernel_source()
    if ksrc:
        os.environ["BCC_KERNEL_SOURCE"] = ksrc
    os.makedirs(pin_dir, exist_ok=True)
    from bcc import BPF  # noqa: PLC0415 - heavy, and only needed here

    cflags = [
        f"-I{BPF_DIR}",
        f'-DLVSXDP_PIN_DIR="{pin_dir}"',
        f"-DLVSXDP_CONN_MAX={conn_max}",
        f"-DLVSXDP_TPL_MAX={tpl_max}",
        "-Wno-unused-function",
    ]
    if loops == "may_goto":
        cflags.append("-DLVSXDP_MAY_GOTO=1")
    for name, value in (defines or {}).items():
        cflags.append(f"-D{name}={value}")
    try:
        b = BPF(text=program_text(source).encode(), cflags=cflags)
        fn = b.load_func(b"lvsxdp_main", BPF.XDP)
        if source == MAIN_SOURCE:
            # the programs lvsxdp_main tail-calls; the array is pinned, so
            # they stay callable after this process is gone, and a reload
            # swaps them in one write each
            progs = b[b"progs"]
            for idx, name in shared.PROG_NAMES.items():
                fd = b.load_func(name.encode(), BPF.XDP).fd
                progs[ctypes.c_uint32(idx)] = ctypes.c_uint32(fd)
    except Exception as e:  # bcc raises bare Exception on compile/verifier errors
        raise LoadError(f"cannot load {source.name}: {e}") from e
    return b, fn
