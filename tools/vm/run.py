"""Run one command as root in a QEMU VM booting one of Debian's kernels.

    python3 tools/vm/run.py --kernel 6.1 -- uname -r
    python3 tools/vm/run.py --kernel 6.12 --timeout 900 -- .venv/bin/pytest -q tests/test_ipvsadm.py
    python3 tools/vm/run.py --kernel 5.10 --cpus 2 --mem 3072 -- bash -c 'bpftool feature probe'

Builds or updates the kernels and the root filesystem first (cached under
/var/tmp/lvsxdp-vm), then boots the kernel with the checkout shared at its own
path, runs the command in the current directory (or the checkout's root when
outside it), prints its output as it comes, and exits with its exit code
(125 when the VM never reported one)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make `tools.vm` importable from the checkout's root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.vm.build import CACHE, prepare  # noqa: E402
from tools.vm.errors import VmError  # noqa: E402
from tools.vm.kernels import line_of  # noqa: E402
from tools.vm.qemu import choose_accel, install_signal_handlers, run_in_vm  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[2]


def new_results_dir(tag: str) -> Path:
    """A fresh job directory per run (kept afterwards: the console log is in it)."""
    runs = CACHE / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # Keep the 40 newest runs: enough to look back, bounded on disk.
    for old in sorted(runs.glob("lvxvm-*"), key=lambda p: p.stat().st_mtime)[:-40]:
        _remove_tree(old)
    path = runs / f"lvxvm-{tag}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir()
    return path


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def guest_cwd() -> Path:
    here = Path.cwd().resolve()
    return here if here.is_relative_to(CHECKOUT) else CHECKOUT


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/vm/run.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", required=True,
                        help="kernel line or release prefix: 6.1, 6.12, 5.10")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds (default 1800)")
    parser.add_argument("--cpus", type=int, default=1, help="vCPUs (default 1)")
    parser.add_argument("--mem", type=int, default=2048, help="MiB of guest memory (default 2048)")
    parser.add_argument("--results", type=Path,
                        help="job directory (default: a new one under /var/tmp/lvsxdp-vm/runs)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD...")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command: put it after --")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    install_signal_handlers()
    if os.geteuid() != 0:
        print("tools/vm/run.py: must run as root (it builds a root filesystem and runs QEMU)",
              file=sys.stderr)
        return 2
    try:
        line = line_of(args.kernel)
        boot = prepare([line])[line]
        results = (args.results or new_results_dir(boot.kernel.release)).resolve()
        accel = choose_accel(boot, CACHE)
        outcome = run_in_vm(boot, args.command, results, source=CHECKOUT, cwd=guest_cwd(),
                            accel=accel, cpus=args.cpus, mem_mb=args.mem,
                            timeout_s=args.timeout)
    except VmError as error:
        print(f"tools/vm/run.py: {error}", file=sys.stderr)
        return 2
    boot_s = f"{outcome.boot_s:.1f} s" if outcome.boot_s is not None else "-"
    print(f"lvxvm: kernel {outcome.uname or boot.kernel.release}: exit {outcome.rc}, "
          f"boot-to-command {boot_s}, total {outcome.wall_s:.1f} s, results in {results}",
          file=sys.stderr)
    if not outcome.reported:
        print(f"lvxvm: {outcome.why}", file=sys.stderr)
    return outcome.rc


if __name__ == "__main__":
    sys.exit(main())
