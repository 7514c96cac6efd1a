"""What `lvsxdp up` spends compiling and loading the program, per way of
building the schedulers' loops this kernel takes (bpf/sched.h).

    .venv/bin/python tools/bench_up.py [--runs K] [--json]

For each build: bcc's compile (clang, with the kernel headers it reads), then
each program's load (the verifier), timed apart, with what the kernel
reports of each program: instructions after the verifier, JITed bytes, and
the instructions the verifier walked to accept it (its cost, and the figure
its 1M limit applies to). Medians over K runs. The maps are pinned under
/sys/fs/bpf/lvsxdp-bench-up/<pid> and removed at exit.

Runs as root on the host and, through tools/kernel_matrix.py's VMs, on each
kernel of the matrix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lvsxdp import bpfsys, loader, runtime, shared  # noqa: E402

PIN_PARENT = Path("/sys/fs/bpf/lvsxdp-bench-up")
PROGRAMS = ["lvsxdp_main", *shared.PROG_NAMES.values()]


def measure(loops: str, run: int) -> dict:
    from bcc import BPF  # noqa: PLC0415

    pins = PIN_PARENT / f"{os.getpid()}-{loops}-{run}"
    pins.mkdir(parents=True, exist_ok=True)
    flags = [f"-I{loader.BPF_DIR}", f'-DLVSXDP_PIN_DIR="{pins}"',
             "-DLVSXDP_CONN_MAX=1048576", "-DLVSXDP_TPL_MAX=262144", "-Wno-unused-function"]
    if loops == "may_goto":
        flags.append("-DLVSXDP_MAY_GOTO=1")
    try:
        t = time.perf_counter()
        b = BPF(text=loader.program_text().encode(), cflags=flags)
        out = {"compile_s": time.perf_counter() - t, "programs": {}}
        for name in PROGRAMS:
            t = time.perf_counter()
            fn = b.load_func(name.encode(), BPF.XDP)
            info = bpfsys.prog_info(fn.fd)
            out["programs"][name] = {"load_s": time.perf_counter() - t,
                                     **{k: v for k, v in info.items() if k != "id"}}
        b.cleanup()
        return out
    finally:
        shutil.rmtree(pins, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_up: loads BPF programs: run it as root", file=sys.stderr)
        return 2
    runtime.ensure_bpffs()
    source = loader.kernel_source()
    if source:
        os.environ["BCC_KERNEL_SOURCE"] = source
    t = time.perf_counter()
    import bcc  # noqa: F401, PLC0415

    import_s = time.perf_counter() - t
    builds = list(loader.LOOPS) if loader.kernel_has_may_goto() else ["bounded"]
    result = {"kernel": platform.release(), "headers": source or
              f"/lib/modules/{platform.release()}/build", "import_bcc_s": import_s,
              "default": loader.loops_for_kernel(), "builds": {}}
    try:
        for loops in builds:
            runs = [measure(loops, i) for i in range(args.runs)]
            med = {"compile_s": statistics.median(r["compile_s"] for r in runs), "programs": {}}
            for name in PROGRAMS:
                progs = [r["programs"][name] for r in runs]
                med["programs"][name] = {k: statistics.median(p[k] for p in progs)
                                         for k in progs[0]}
            result["builds"][loops] = med
    finally:
        shutil.rmtree(PIN_PARENT / str(os.getpid()), ignore_errors=True)
        try:
            PIN_PARENT.rmdir()
        except OSError:
            pass  # another benchmark is running
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"lvsxdp up's compile and load: Linux {result['kernel']}, headers "
          f"{result['headers']}, median of {args.runs}; import bcc {import_s:.2f} s")
    print(f"{'build':9} {'program':21} {'compile s':>9} {'load s':>7} {'insns':>6} "
          f"{'JIT bytes':>9} {'verifier walked':>15}")
    for loops, med in result["builds"].items():
        mark = "*" if loops == result["default"] else " "
        for i, (name, p) in enumerate(med["programs"].items()):
            compile_s = f"{med['compile_s']:.2f}" if i == 0 else ""
            print(f"{loops + mark:9} {name:21} {compile_s:>9} {p['load_s']:7.3f} "
                  f"{p['xlated_insns']:6d} {p['jited_bytes']:9d} {p['verified_insns']:15,d}")
    print("* what `lvsxdp up` uses on this kernel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
