"""What the director's agent costs in CPU, idle and with live tables.

    .venv/bin/python tools/bench_agent.py [--seconds 30] [--entries 0,100000] [--json]

A director in a network namespace of its own (`lvsxdp up` on a veth, generic
mode, the default table sizes), the seed's PCC service with two reals whose
neighbour entries are permanent. For each --entries N, in turn: N held
templates and N held connections (one per client, clients 198.18.0.0/15
upwards) written straight into the maps, expiring in an hour, a pause for
the agent to sweep them once, then the agent's CPU time (user + system,
/proc/PID/stat) over --seconds, as a share of one CPU. No packet flows: this
is the agent's own cost, which a director pays however busy its data plane
is (IPVS's equivalent, its timers, is per connection in the kernel).

Run it from the checkout to measure: it drives that checkout's lvsxdp.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from lvsxdp import runtime, shared, tables  # noqa: E402

LVSXDP = str(ROOT / ".venv" / "bin" / "lvsxdp")
VIP = "198.18.2.1"
REALS = {"198.18.2.100": "02:00:00:00:0b:01", "198.18.2.200": "02:00:00:00:0b:02"}
PCC = [f"-A -t {VIP}:0 -s rr -p 360"] + [f"-a -t {VIP}:0 -r {r} -g" for r in REALS]
CLIENTS = ipaddress.ip_network("198.18.0.0/15")


def sh(*argv: str, env: dict | None = None) -> str:
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_agent: {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill(maps: runtime.Maps, svc: int, refs: list[int], first: int, last: int) -> None:
    """Templates and connections of clients first..last-1 (held tables)."""
    n = last - first
    if n <= 0:
        return
    i = np.arange(first, last, dtype=np.uint32)
    addrs = (i + np.uint32(int(CLIENTS.network_address))).astype(">u4").view("<u4")
    vaddr = shared.addr_words(ipaddress.ip_address(VIP))[0]
    now = runtime.monotonic_ns()
    real = np.where(i % 2 == 0, refs[0], refs[1]).astype(np.uint32)
    keys = np.zeros(n, tables.TUPLE)
    keys["family"], keys["proto"] = shared.AF_INET, 6
    keys["caddr"][:, 0], keys["vaddr"][:, 0] = addrs, vaddr
    tpl = np.zeros(n, tables.TEMPLATE)
    tpl["expires"] = tpl["ctl_until"] = now + 3600 * shared.NS
    tpl["created"], tpl["real"], tpl["svc"], tpl["n_open"] = now, real, svc, 1
    tpl["flags"] = shared.TPL_F_ASSURED
    maps.templates.held.write_raw(keys, tpl, n)
    ck = np.zeros(n, tables.CONN4_KEY)
    ck["caddr"], ck["vaddr"], ck["proto"] = addrs, vaddr, 6
    ck["cport"], ck["vport"] = shared.htons(40000), shared.htons(80)
    conns = np.zeros(n, tables.CONN)
    conns["expires"] = conns["vouched"] = now + 3600 * shared.NS
    conns["state"], conns["real"], conns["svc"] = tables.ESTABLISHED, real, svc
    conns["flags"] = shared.CONN_F_OPEN
    maps.conns.v4.write_raw(ck, conns, n)


@contextlib.contextmanager
def director(tmp: Path):
    ns = f"lxba{secrets.token_hex(2)}"
    env = dict(os.environ, LVSXDP_STATE_DIR=str(tmp / "state"), LVSXDP_RUN_DIR=str(tmp / "run"))
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        for dev in ("eth0", "eth1"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "addr", "add", "198.18.2.2/24", "dev", "eth0")
        for addr, mac in REALS.items():
            sh("ip", "-n", ns, "neigh", "replace", addr, "lladdr", mac, "dev", "eth0",
               "nud", "permanent")
        sh(LVSXDP, "-n", ns, "up", "eth0", "--mode", "generic", env=env)
        for line in PCC:
            sh(LVSXDP, "-n", ns, "ipvsadm", *line.split(), env=env)
        info = json.loads((tmp / "run" / f"{ns}.json").read_text())
        yield ns, info["agent_pid"], env
    finally:
        subprocess.run([LVSXDP, "-n", ns, "down", "eth0", "--flush"], env=env,
                       capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--entries", default="0,100000",
                   help="comma-separated, ascending: templates and connections each")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    steps = [int(x) for x in args.entries.split(",")]
    if steps != sorted(steps) or steps[-1] > CLIENTS.num_addresses:
        raise SystemExit(f"bench_agent: --entries ascending, at most {CLIENTS.num_addresses}")
    results = []
    with tempfile.TemporaryDirectory(prefix="lxba") as tmp, director(Path(tmp)) as (ns, pid, _):
        with runtime.Maps(runtime.PIN_ROOT / ns) as maps:
            refs = [r.ref for _, r in maps.reals.used() if r.flags & shared.REAL_F_AVAILABLE]
            state = json.loads((Path(tmp) / "state" / f"{ns}.json").read_text())
            svc = state["services"][0]["index"]
            have = 0
            for n in steps:
                fill(maps, svc, refs, have, n)
                have = n
                time.sleep(3.0)  # the agent's sweep reads them (at least one sweep)
                cpu0, t0 = proc_cpu(pid), time.monotonic()
                time.sleep(args.seconds)
                share = (proc_cpu(pid) - cpu0) / (time.monotonic() - t0)
                log = (Path(tmp) / "run" / f"{ns}.log").read_text()
                if "Traceback" in log or "failed" in log:
                    raise SystemExit(f"bench_agent: the agent failed:\n{log}")
                results.append({"entries": n, "agent_cpu_share": round(share, 4)})
                if not args.json:
                    print(f"{n:>9,} templates and connections: agent {100 * share:5.2f}% "
                          f"of a CPU over {args.seconds:g} s", flush=True)
    if args.json:
        print(json.dumps({"seconds": args.seconds, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
