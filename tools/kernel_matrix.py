"""Run the tests marked `kernels` on each kernel of the matrix, each in its
own QEMU VM, and on the host's own kernel: every packet test (the real
program through this kernel's verifier and BPF_PROG_TEST_RUN) and the seed's
scenarios end to end (PCC, PPC, marks for http+https, passive FTP through
vsftpd), in native XDP on the VM's virtio-net NICs and in generic XDP.

    python3 tools/kernel_matrix.py
    python3 tools/kernel_matrix.py --kernels 6.1,6.12,5.10 --jobs 2
    python3 tools/kernel_matrix.py --kernels 6.12 --no-host -- tests/test_ipvsadm.py -x
    python3 tools/kernel_matrix.py -- tests          # the whole suite (over an hour under TCG)

Prints one line per kernel, `kernel <uname -r>: N passed, M failed` (errors
count as failed; a VM that did not report counts as failed and says why), and
exits 1 if any kernel failed. Each run's output, junit.xml and console log stay
in its job directory under /var/tmp/lvsxdp-vm/runs."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.vm.build import CACHE, prepare  # noqa: E402
from tools.vm.errors import VmError  # noqa: E402
from tools.vm.kernels import DEFAULT_LINES, check_lines  # noqa: E402
from tools.vm.qemu import (  # noqa: E402
    choose_accel,
    install_signal_handlers,
    run_in_vm,
    run_tracked,
)
from tools.vm.rootfs import BootFiles, log  # noqa: E402
from tools.vm.run import new_results_dir  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[1]
PYTEST = CHECKOUT / ".venv/bin/pytest"
# What runs on each kernel unless PYTEST_ARGS say otherwise (pyproject.toml
# names the marker): within CI's budget on two emulated CPUs.
DEFAULT_PYTEST_ARGS = ("-m", "kernels", "tests")


@dataclass
class Row:
    kernel: str
    passed: int
    failed: int
    why: str = ""

    def line(self) -> str:
        text = f"kernel {self.kernel}: {self.passed} passed, {self.failed} failed"
        return f"{text} ({self.why})" if self.why else text


def pytest_command(results: Path, pytest_args: list[str]) -> list[str]:
    return [str(PYTEST), "-q", "-p", "no:cacheprovider",
            f"--junitxml={results / 'junit.xml'}", *pytest_args]


def count(kernel: str, junit: Path, rc: int) -> Row:
    """N passed and M failed (failures + errors) from pytest's junit xml."""
    if not junit.is_file():
        return Row(kernel, 0, 1, f"pytest wrote no junit.xml (exit {rc})")
    try:
        root = ET.parse(junit).getroot()
    except ET.ParseError as error:
        return Row(kernel, 0, 1, f"unreadable junit.xml: {error}")
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = {key: sum(int(s.get(key, 0)) for s in suites)
             for key in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return Row(kernel, total["tests"] - failed - total["skipped"], failed)


def run_on_host(pytest_args: list[str], timeout_s: float) -> Row:
    kernel = platform.release()
    results = new_results_dir("host")
    started = time.monotonic()
    log(f"host ({kernel}): running pytest, output in {results}")
    with (results / "stdout").open("wb") as out:
        rc = run_tracked(pytest_command(results, pytest_args), timeout_s, cwd=CHECKOUT,
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc is None:
        return Row(kernel, 0, 1, f"timed out after {timeout_s:.0f} s")
    log(f"host ({kernel}): done in {time.monotonic() - started:.0f} s")
    return count(kernel, results / "junit.xml", rc)


def run_on_vm(boot: BootFiles, accel: str, pytest_args: list[str], timeout_s: float,
              mem_mb: int) -> Row:
    results = new_results_dir(boot.kernel.release)
    log(f"{boot.kernel.release}: booting ({accel}), output in {results}")
    # In a VM the packet tests build the schedulers' walks only the way `up`
    # builds them on that kernel; the host's run takes both where it can.
    # (and random packet tests run a tenth of their cases: harness.scaled)
    command = ["env", "LVSXDP_TEST_LOOPS=up", "LVSXDP_TEST_SHORT=1",
               *pytest_command(results, pytest_args)]
    outcome = run_in_vm(boot, command, results, source=CHECKOUT,
                        cwd=CHECKOUT, accel=accel, cpus=1, mem_mb=mem_mb, timeout_s=timeout_s,
                        stream=False)
    boot_s = f"{outcome.boot_s:.0f} s" if outcome.boot_s is not None else "-"
    log(f"{boot.kernel.release}: done in {outcome.wall_s:.0f} s (boot-to-command {boot_s})")
    kernel = outcome.uname or boot.kernel.release
    if not outcome.reported:
        return Row(kernel, 0, 1, f"the VM did not report: {outcome.why}")
    return count(kernel, results / "junit.xml", outcome.rc)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/kernel_matrix.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", default=",".join(DEFAULT_LINES),
                        help=f"comma-separated lines (default {','.join(DEFAULT_LINES)})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="runs at once, the host's among them (default: CPUs)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per kernel")
    parser.add_argument("--mem", type=int, default=2048, help="MiB per VM (default 2048)")
    parser.add_argument("--no-host", action="store_true", help="skip the host's own kernel")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help=f"-- PYTEST_ARGS... (default: {' '.join(DEFAULT_PYTEST_ARGS)})")
    args = parser.parse_args(argv)
    if args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    args.pytest_args = args.pytest_args or list(DEFAULT_PYTEST_ARGS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    install_signal_handlers()
    if os.geteuid() != 0:
        print("tools/kernel_matrix.py: must run as root", file=sys.stderr)
        return 2
    if not PYTEST.exists():
        print(f"tools/kernel_matrix.py: {PYTEST} is missing: run make install", file=sys.stderr)
        return 2
    try:
        lines = check_lines([k.strip() for k in args.kernels.split(",") if k.strip()])
        boots = prepare(lines)
        accel = choose_accel(next(iter(boots.values())), CACHE)
    except VmError as error:
        print(f"tools/kernel_matrix.py: {error}", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_on_vm, boots[line], accel, args.pytest_args, args.timeout,
                               args.mem) for line in lines]
        if not args.no_host:
            futures.append(pool.submit(run_on_host, args.pytest_args, args.timeout))
        rows = [future.result() for future in futures]
    for row in rows:
        print(row.line(), flush=True)
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
