"""What `lvsxdp top` costs with a million templates.

    .venv/bin/python tools/bench_top.py [--templates N] [--conns N] [--seconds S] [--json]

Loads the real program (its maps pinned under /sys/fs/bpf/lvsxdp-bench-top/,
removed at exit), configures the seed's PCC service, and writes N templates
(default 1,000,000, in a 1,048,576-entry table) and N/10 connections straight
into the maps with BPF_MAP_UPDATE_BATCH: clients 10.0.0.0 upwards, about
three connections per client for the first clients, expiries spread over the
360 s timeout. Then, against that director, as an operator would run them:

  once_empty     `lvsxdp top --once --interval 0` before the tables are
                 filled: how long the command takes to start and print
  once, json     `lvsxdp top --once --interval 0`, `lvsxdp top --json
                 --interval 0`: wall time and CPU time (user + system) of
                 the whole command, median of 3
  read_tables    one full read and aggregation of both tables, in-process
                 (thread CPU time), median of 3
  refresh        one refresh of counters and a frame from the tables read
  live           `lvsxdp top` in a terminal (tmux, 80x24) for --seconds:
                 time to the first frame, and its CPU use in that time
                 (from /proc/PID/stat), as a share of one CPU
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from harness import Director  # noqa: E402

from lvsxdp import lab, runtime, shared, tables, top  # noqa: E402

PIN_ROOT = Path("/sys/fs/bpf/lvsxdp-bench-top")
PCC = ("-A -t 198.18.2.1:0 -s rr -p 360", "-a -t 198.18.2.1:0 -r 198.18.2.100 -g",
       "-a -t 198.18.2.1:0 -r 198.18.2.200 -g")


def fill(d: Director, n: int, m: int) -> None:
    refs = [r.ref for r in d.config.services[0].reals]
    keys = np.zeros(n, tables.TUPLE)
    keys["family"], keys["proto"] = shared.AF_INET, 6
    addrs = (np.arange(n, dtype=np.uint32) + (10 << 24)).astype(">u4").view("<u4")
    keys["caddr"][:, 0] = addrs
    keys["vaddr"][:, 0] = shared.addr_words(ipaddress.ip_address("198.18.2.1"))[0]
    now = runtime.monotonic_ns()
    tpl = np.zeros(n, tables.TEMPLATE)
    tpl["expires"] = now + (np.arange(n) % 360 + 30).astype(np.uint64) * shared.NS
    tpl["created"] = now
    tpl["real"] = np.where(np.arange(n) % 2 == 0, refs[0], refs[1])
    d.maps.templates_held.write_raw(keys, tpl, n)
    idx = (np.arange(m) * 7) % max(1, m // 3)
    ck = np.zeros(m, tables.CONN4_KEY)
    ck["caddr"], ck["vaddr"] = addrs[idx], keys["vaddr"][0, 0]
    ck["cport"], ck["vport"], ck["proto"] = np.arange(m) % 65535 + 1, shared.htons(80), 6
    conns = np.zeros(m, tables.CONN)
    conns["expires"], conns["state"], conns["real"] = now + 900 * shared.NS, 1, tpl["real"][idx]
    d.maps.conns.v4.write_raw(ck, conns, m)


def run_cli(env: dict, *args: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of one lvsxdp command, and its output."""
    before = os.times()
    t0 = time.perf_counter()
    res = subprocess.run([lab.lvsxdp_bin(), *args], env=env, capture_output=True,
                         text=True, check=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system
                                                          - before.children_system)
    return wall, cpu, res.stdout


def median3(fn):
    runs = [fn() for _ in range(3)]
    return tuple(statistics.median(r[i] for r in runs) for i in range(2)) + (runs[-1][2:],)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live(env: dict, seconds: float) -> dict:
    sock = f"lxtbench{os.getpid()}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    # argv, not a shell line: the pane's process is lvsxdp itself (env execs it)
    argv = ["env", *[f"{k}={v}" for k, v in env.items() if k.startswith("LVSXDP_")],
            lab.lvsxdp_bin(), "top"]
    t0 = time.perf_counter()
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "24", "-s", "b", *argv],
                   check=True)
    try:
        pid = int(subprocess.run([*tmux, "display", "-p", "-t", "b", "#{pane_pid}"],
                                 capture_output=True, text=True, check=True).stdout)
        first = table = None
        while time.perf_counter() - t0 < 30 and table is None:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "b"],
                                    capture_output=True, text=True).stdout
            if first is None and "lvsxdp top" in screen:
                first = time.perf_counter() - t0
            if "Client" in screen and "10.0." in screen:
                table = time.perf_counter() - t0
            time.sleep(0.01)
        cpu0, w0 = proc_cpu(pid), time.perf_counter()
        time.sleep(seconds)
        cpu = proc_cpu(pid) - cpu0
        wall = time.perf_counter() - w0
        return {"first_frame_s": first, "table_s": table, "cpu_share": cpu / wall,
                "seconds": round(wall, 1)}
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--templates", type=int, default=1_000_000)
    ap.add_argument("--conns", type=int, default=None, help="default: templates / 10")
    ap.add_argument("--seconds", type=float, default=30, help="live measurement (default 30)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    m = args.conns if args.conns is not None else args.templates // 10
    tmp = Path(tempfile.mkdtemp(prefix="lvsxdp-bench-top"))
    d = None
    try:
        d = Director(conn_max=1 << 20, tpl_max=1 << 20)
        # the Director pins where it likes: give top a name for it
        key = f"bench{os.getpid()}"
        PIN_ROOT.mkdir(parents=True, exist_ok=True)
        (PIN_ROOT / key).symlink_to(d.pin_dir)
        d.ipvsadm(*PCC)
        env = {**os.environ, "LVSXDP_NETNS": key, "LVSXDP_PIN_ROOT": str(PIN_ROOT),
               "LVSXDP_STATE_DIR": str(tmp / "state"), "LVSXDP_RUN_DIR": str(tmp / "run")}
        runtime.STATE_DIR = tmp / "state"
        runtime.RUN_DIR = tmp / "run"
        runtime.save_config(runtime.Paths(key), d.config)
        # what `up` records: top reads a director only while one is up
        runtime.write_runtime(runtime.Paths(key), {"netns": key})
        out = {"templates": args.templates, "conns": m, "cpus": os.cpu_count()}
        out["once_empty_s"], out["once_empty_cpu_s"], _ = median3(
            lambda: run_cli(env, "top", "--once", "--interval", "0"))
        fill(d, args.templates, m)
        out["once_s"], out["once_cpu_s"], _ = median3(
            lambda: run_cli(env, "top", "--once", "--interval", "0"))
        out["json_s"], out["json_cpu_s"], (text,) = median3(
            lambda: run_cli(env, "top", "--json", "--interval", "0"))
        data = json.loads(text)
        assert data["templates"]["alive"] == args.templates, data["templates"]

        def read():
            t0 = time.perf_counter()
            tables = top.read_tables(d.maps, d.config)
            return time.perf_counter() - t0, tables.cost, tables
        out["read_tables_s"], out["read_tables_cpu_s"], (tables,) = median3(read)

        def refresh():
            t0, c0 = time.perf_counter(), time.thread_time()
            cur = top.sample(d.maps)
            top.build(d.config, cur, cur, tables, top.View(limit=24))
            return time.perf_counter() - t0, time.thread_time() - c0
        out["refresh_s"], out["refresh_cpu_s"], _ = median3(lambda: (*refresh(), None))
        out["live"] = live(env, args.seconds)
    finally:
        if d is not None:
            d.close()
        shutil.rmtree(PIN_ROOT, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.templates:,} templates, {m:,} connections, {out['cpus']} CPUs")
    print(f"lvsxdp top --once (empty tables)  {out['once_empty_s']:.2f} s "
          f"(CPU {out['once_empty_cpu_s']:.2f} s)")
    for name in ("once", "json"):
        print(f"lvsxdp top --{name:<4}                 {out[name + '_s']:.2f} s "
              f"(CPU {out[name + '_cpu_s']:.2f} s)")
    print(f"full read of both tables          {out['read_tables_s']:.3f} s "
          f"(CPU {out['read_tables_cpu_s']:.3f} s)")
    print(f"refresh (counters + frame)        {out['refresh_s'] * 1000:.1f} ms "
          f"(CPU {out['refresh_cpu_s'] * 1000:.1f} ms)")
    lv = out["live"]
    print(f"live top: first frame {lv['first_frame_s']:.2f} s, affinity table "
          f"{lv['table_s']:.2f} s, CPU {lv['cpu_share'] * 100:.1f}% of one CPU "
          f"over {lv['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
