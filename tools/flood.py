"""What a spoofed SYN flood does to a running director's live sessions.

    .venv/bin/python tools/flood.py [--conns 4096] [--templates 1024]
        [--factor 10] [--clients 8] [--per-client 4] [--new-clients 16]
        [--patterns syn,syn2,synack] [--mode generic|native] [--json]

For each flood pattern, on a fresh lab (lvsxdp/lab.py: namespaces, a
director running `lvsxdp up eth0 --conns C --templates T`, two reals serving
HTTP) with the seed's PCC service (`-A -t VIP:0 -s rr -p 360`):

 1. real TCP clients open --per-client keep-alive HTTP connections from each
    of --clients addresses and note the real that answers each;
 2. a flood of --factor x (C + T) spoofed flows (each its own source address
    in 198.19.0.0/16 and port, to VIP:80) runs through the director's
    attached XDP program with BPF_PROG_TEST_RUN, one process pinned to each
    CPU, on the director's own maps. Nothing of the flood leaves the
    program (a test run transmits nothing). Patterns:
      syn     one SYN per flow
      syn2    each flow's SYN twice (as a stack retransmits it)
      synack  a SYN, then a blind ACK (the flow turns ESTABLISHED, as in IPVS)
    Meanwhile the client side keeps opening new connections from
    --new-clients other addresses (new legitimate clients, served or not);
 3. after the flood, every held connection sends one more request: it
    survived if it is answered by the same real. A template survived if the
    director still has it for the client, to the same real; a new connection
    of each client must also reach that real.

Prints a table (and with --json one JSON object on its last line). The
namespaces (prefix lxf<hex>-) and the director are removed at exit, also on
errors and signals. Needs root.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing
import os
import random
import secrets
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lvsxdp import bpfsys, lab  # noqa: E402
from lvsxdp.lab import IFACE, REALS, SEED_PCC, VIP, Topology  # noqa: E402

PATTERNS = ("syn", "syn2", "synack")
CLIENT_NET = "198.18.2.0/24"  # held clients from .50 on, new clients after them
FLOOD_NET = ipaddress.ip_network("198.19.0.0/16")
TCP_SYN, TCP_ACK = 0x02, 0x10

# The client side, run in the lab's client namespace: one JSON command per
# line on stdin, one JSON answer per line on stdout.
_CLIENT = r"""
import json, socket, sys, threading, time
from lvsxdp.lab import http_get as request
VIP = sys.argv[1]
held = []  # (client address, socket)

def connect(addr):
    s = socket.socket()
    s.settimeout(3)
    s.bind((addr, 0))
    s.connect((VIP, 80))
    return s

def once(addr):
    try:
        s = connect(addr)
        try:
            return request(s)
        finally:
            s.close()
    except OSError as e:
        return "error: " + type(e).__name__

stop = threading.Event()
churned = {"ok": 0, "failed": 0}

def churn(addrs):
    i = 0
    while not stop.is_set():
        if once(addrs[i % len(addrs)]).startswith("error"):
            churned["failed"] += 1
        else:
            churned["ok"] += 1
        i += 1

worker = None
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    if op == "open":
        out = []
        for addr in cmd["clients"]:
            for _ in range(cmd["per"]):
                s = connect(addr)
                held.append((addr, s))
                out.append([addr, request(s)])
    elif op == "check":
        out = []
        for addr, s in held:
            try:
                out.append([addr, request(s)])
            except OSError as e:
                out.append([addr, "error: " + type(e).__name__])
    elif op == "probe":
        out = [[addr, once(addr)] for addr in cmd["clients"]]
    elif op == "churn":
        stop.clear()
        churned.update(ok=0, failed=0)
        worker = threading.Thread(target=churn, args=(cmd["clients"],), daemon=True)
        worker.start()
        out = None
    elif op == "churned":
        stop.set()
        worker.join()
        out = dict(churned)
    elif op == "close":
        for _, s in held:
            s.close()
        held.clear()
        out = None
    print(json.dumps(out), flush=True)
"""


def ip_checksum(header: bytes) -> int:
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def flood_frame(dst_mac: bytes, src: int, sport: int, flags: int, seq: int) -> bytes:
    """Ethernet/IPv4/TCP to VIP:80 from a spoofed source (TCP checksum not
    filled in: neither IPVS's DR path nor lvsxdp reads it)."""
    vip = int(ipaddress.ip_address(VIP))
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, seq if flags & TCP_ACK else 0,
                      5 << 4, flags, 64240, 0, 0)
    hdr = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, vip)
    hdr = hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]
    return dst_mac + bytes.fromhex("02ee00000001") + b"\x08\x00" + hdr + tcp


def _flood_worker(args) -> tuple[int, dict]:
    """One CPU's share of the flows: returns (frames run, actions seen)."""
    cpu, prog_id, dst_mac, flows, pattern, seed = args
    os.sched_setaffinity(0, {cpu})
    fd = bpfsys.prog_get_fd_by_id(prog_id)
    rnd = random.Random(seed)
    base = int(FLOOD_NET.network_address)
    actions: dict[str, int] = {}
    sent = 0
    try:
        for start in range(0, len(flows), 256):
            chunk = flows[start:start + 256]
            seqs = [rnd.getrandbits(32) for _ in chunk]
            for f, seq in zip(chunk, seqs, strict=True):
                frame = flood_frame(dst_mac, base + f % 65536, 1024 + f // 65536, TCP_SYN, seq)
                act, _, _ = bpfsys.prog_test_run(fd, frame)
                actions[bpfsys.XDP_ACTIONS[act]] = actions.get(bpfsys.XDP_ACTIONS[act], 0) + 1
                sent += 1
            if pattern == "syn":
                continue
            flags = TCP_SYN if pattern == "syn2" else TCP_ACK
            for f, seq in zip(chunk, seqs, strict=True):
                frame = flood_frame(dst_mac, base + f % 65536, 1024 + f // 65536, flags,
                                    seq + (flags == TCP_ACK))
                act, _, _ = bpfsys.prog_test_run(fd, frame)
                actions[bpfsys.XDP_ACTIONS[act]] = actions.get(bpfsys.XDP_ACTIONS[act], 0) + 1
                sent += 1
    finally:
        os.close(fd)
    return sent, actions


class Clients:
    """The client namespace's side (the _CLIENT script)."""

    def __init__(self, topo: Topology) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", topo.client, sys.executable, "-c", _CLIENT, VIP],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, op: str, **kw):
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the client side died during {op!r}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def attached_prog(topo: Topology) -> tuple[int, bytes]:
    """The id of the XDP program on the director's NIC, and the NIC's MAC."""
    info = json.loads(lab.ip("-n", topo.director, "-j", "-d", "link", "show", "dev",
                             IFACE).stdout)[0]
    return info["xdp"]["prog"]["id"], bytes.fromhex(info["address"].replace(":", ""))


def template_reals(topo: Topology) -> dict[str, str]:
    """client address -> real name of each PCC template (`ipvsadm -L -n -c`)."""
    names = {v: k for k, v in REALS.items()}
    out = {}
    for line in topo.ipvsadm("-L -n -c").splitlines()[2:]:
        _, _, _, source, virtual, dest = line.split()
        if source.endswith(":0") and virtual == f"{VIP}:0":
            out[source[:-2]] = names.get(dest.rsplit(":", 1)[0], dest)
    return out


def run_pattern(args, pattern: str, tmp: Path) -> dict:
    n_held = args.clients + args.new_clients
    addrs = [str(a) for a in list(ipaddress.ip_network(CLIENT_NET).hosts())[49:49 + n_held]]
    held_clients, new_clients = addrs[:args.clients], addrs[args.clients:]
    prefix = f"lxf{secrets.token_hex(2)}-"
    with Topology(prefix, native=args.mode == "native", state_dir=tmp / pattern / "state",
                  run_dir=tmp / pattern / "run") as topo:
        for a in addrs:
            if a not in lab.CLIENT_ADDRS:
                lab.ip("-n", topo.client, "addr", "add", f"{a}/24", "dev", IFACE)
        topo.lvsxdp("up", IFACE, "--mode", args.mode, "--conns", str(args.conns),
                    "--templates", str(args.templates))
        for line in SEED_PCC:
            topo.ipvsadm(line)
        topo.wait_for_reals(tuple(REALS.values()))
        clients = Clients(topo)
        try:
            before = clients("open", clients=held_clients, per=args.per_client)
            bad = [a for a in before if a[1] not in REALS]
            if bad:
                raise RuntimeError(f"held connections not served before the flood: {bad}")
            tpl_before = template_reals(topo)
            prog_id, mac = attached_prog(topo)
            n_flows = args.factor * (args.conns + args.templates)
            cpus = sorted(os.sched_getaffinity(0))
            shares = [list(range(i, n_flows, len(cpus))) for i in range(len(cpus))]
            clients("churn", clients=new_clients)
            t0 = time.monotonic()
            with multiprocessing.get_context("fork").Pool(len(cpus)) as pool:
                done = pool.map(_flood_worker, [(cpu, prog_id, mac, share, pattern, i)
                                                for i, (cpu, share) in
                                                enumerate(zip(cpus, shares, strict=True))])
            secs = time.monotonic() - t0
            churned = clients("churned")
            after = clients("check")
            tpl_after = template_reals(topo)
            probe = clients("probe", clients=held_clients)
        finally:
            clients("close")
            clients.close()
    frames = sum(d[0] for d in done)
    actions: dict[str, int] = {}
    for _, acts in done:
        for k, v in acts.items():
            actions[k] = actions.get(k, 0) + v
    conns_kept = sum(1 for b, a in zip(before, after, strict=True) if a[1] == b[1])
    real_of = {}
    for addr, real in before:
        real_of[addr] = real
    tpl_kept = sum(1 for c in held_clients
                   if tpl_before.get(c) == real_of[c] and tpl_after.get(c) == real_of[c])
    probe_kept = sum(1 for addr, real in probe if real == real_of[addr])
    return {
        "pattern": pattern, "flows": n_flows, "frames": frames, "flood_s": round(secs, 2),
        "frames_per_s": round(frames / secs), "actions": actions,
        "conns": len(before), "conns_kept": conns_kept,
        "templates": len(held_clients), "templates_kept": tpl_kept,
        "new_conn_same_real": probe_kept,
        "new_clients_served": churned["ok"], "new_clients_failed": churned["failed"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=4096)
    p.add_argument("--templates", type=int, default=1024)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-client", type=int, default=4)
    p.add_argument("--new-clients", type=int, default=16)
    p.add_argument("--patterns", default=",".join(PATTERNS))
    p.add_argument("--mode", choices=("generic", "native"), default="generic")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    patterns = args.patterns.split(",")
    if not set(patterns) <= set(PATTERNS):
        p.error(f"--patterns: each of {', '.join(PATTERNS)}")
    if args.clients + args.new_clients > 150:
        p.error("--clients + --new-clients: at most 150 (the lab's /24)")
    import tempfile
    results = []
    with tempfile.TemporaryDirectory(prefix="lvsxdp-flood-") as tmp:
        for pattern in patterns:
            try:
                results.append(run_pattern(args, pattern, Path(tmp)))
            except (lab.LabError, RuntimeError, OSError) as e:
                print(f"flood: {pattern}: {e}", file=sys.stderr)
                return 1
    print(f"{'pattern':8} {'flows':>7} {'frames/s':>9} {'conns kept':>11} "
          f"{'templates kept':>15} {'same real':>10} {'new served':>11}")
    for r in results:
        print(f"{r['pattern']:8} {r['flows']:>7} {r['frames_per_s']:>9} "
              f"{r['conns_kept']:>5}/{r['conns']:<5} {r['templates_kept']:>8}/{r['templates']:<6} "
              f"{r['new_conn_same_real']:>6}/{r['templates']:<3} "
              f"{r['new_clients_served']:>5}/{r['new_clients_served'] + r['new_clients_failed']}")
    if args.json:
        print(json.dumps({"conns": args.conns, "templates": args.templates,
                          "factor": args.factor, "cpus": len(os.sched_getaffinity(0)),
                          "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
