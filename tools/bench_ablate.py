"""Where lvsxdp's nanoseconds go per call: the packet path with one piece
removed at a time, measured against the unmodified program in one run.

    .venv/bin/python tools/bench_ablate.py [--calls N] [--runs K]
        [--only NAME,...] [--no-full] [--pin-dir DIR] [--work-dir DIR] [--json]

Each variant is a copy of bpf/ in a temporary directory with named text
edits applied (VARIANTS below: each edit must match its file exactly once,
so a variant that no longer fits the source fails loudly instead of
measuring something else). The variants break IPVS's semantics on purpose:
they exist only here, and bpf/ stays free of ablation hooks.

All programs share one set of maps (one pin directory): the unmodified
program is loaded first, as tools/bench_xdp.py loads it, and every variant
is compiled with loader.compile_program(source=...) against the same pinned
maps, so every variant sees the same tables in the same memory. Cases, per
call as tools/bench_xdp.py's per-call method (one packet a repeat=1
BPF_PROG_TEST_RUN, the kernel's duration, paired with a bare XDP_TX call
on the same frame, means without the slowest 2%), PCC service -p 360 with
two -g reals:

  a  an ACK of the known, established connection (held tier)
  aw a, warm: one repeat=--repeat call per variant and run (the kernel's
     ns per iteration, whole ns, less bare_tx's)
  b  a SYN of a new port of the known client (its template is held)
  c  a SYN of a brand-new client (new template, new connection)
  d  as c, after the embryonic tier was filled past its capacity
  f  an ACK of no connection (XDP_PASS)

Calls are interleaved across variants call by call (each variant's calls
spread over the whole run, so load on a shared machine hits every variant
alike); b, c and d use keys of their own per variant. What b and c made
is deleted after each case's run and the filters are then rebuilt twice, as
the agent's next two sweeps would (the deleted keys' slots cleared, sparse
while few connections live), also after the fill: a case's run starts with
the filter of the live entries and fills it as it goes (the report gives
the connection slots set at the start and end of each run; what a "maybe"
lets through grows with it, so the figures depend on --calls x variants).
Output: ns over bare XDP_TX per case and
variant, and "saved": the unmodified program's figure less the variant's,
the piece's cost on that case (negative for a variant that adds work).
A "*" marks a case whose path the variant changes (its action or what it
reads), where the figure is not one piece's cost.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_xdp import (  # noqa: E402
    ACK,
    FILL_FACTOR,
    FIRST_PORT,
    FULL_CLIENTS,
    KNOWN_CLIENT,
    KNOWN_PORT,
    NEW_CLIENTS,
    SYN,
    UNKNOWN_CLIENTS,
    VIP,
    XDP_PASS,
    XDP_TX,
    BenchError,
    Programs,
    bench_defines,
    conn_key,
    cpu_model,
    forwarded,
    tcp_frame,
    template_key,
    trimmed_mean,
)

from lvsxdp import bpfsys, loader  # noqa: E402

CASES = ["a", "aw", "b", "c", "d", "f"]
ACTIONS = {"a": XDP_TX, "aw": XDP_TX, "b": XDP_TX, "c": XDP_TX, "d": XDP_TX, "f": XDP_PASS}
B_PORTS = range(FIRST_PORT, 65536)
D_PORT = 30000


@dataclass
class Edit:
    file: str
    old: str
    new: str


@dataclass
class Variant:
    name: str
    what: str
    edits: list
    changes: str = ""   # cases whose path this variant changes (figures marked *)
    ref: str = "unmodified"  # saved = ref's figure - this variant's


# ABLATE_KNOWN_CADDR and ABLATE_KNOWN_REF are defined at compile time: the
# known client's address as the key holds it and its template's real.
_CONN_READ = "\t\tif (first) {\n\t\t\tw = filter_word(flt, LVS_FILTER_CONNS, *slot);\n"
_CONN_ABSENT = "\t\t\tif (!w)\n\t\t\t\treturn 0;\n"
_TPL_READ = "\t\tw = filter_maybe(LVS_FILTER_TEMPLATES, filter_hash_tuple(k));\n"
_TPL_ABSENT = _TPL_READ + "\t\tif (!w)\n\t\t\treturn 0;\n"
_STORE = "\t*(volatile u16 *)&f->slots[LVS_FILTER_WORD(kind, slot) + (tier & 1) * 2] = 0x0101;\n"
# a SYN (IPv4) returns "no connection" before reading the filter
NO_CONN_READ = Edit("conn.h", _CONN_READ, "\t\tif (pkt->tcp_flags & TCPF_SYN)\n\t\t\treturn 0;\n"
                    + _CONN_READ)
# a new client's template: "absent" without reading the filter
NO_TPL_READ = Edit("persist.h", _TPL_READ,
                   "\t\tw = k->caddr[0] == ABLATE_KNOWN_CADDR ? ~0u : 0;\n")
# The filters' reads, split from what their "maybe" answers let through:
# in these a SYN's filters are read as before but their answer is taken as
# "absent" for every client but the known one (true for every SYN of b, c
# and d), so the table lookups a "maybe" would cost are gone and the reads
# stay.
EXACT_CONN = Edit("conn.h", _CONN_ABSENT,
                  "\t\t\tif (!w | (pkt->tcp_flags & TCPF_SYN))\n\t\t\t\treturn 0;\n")
EXACT_TPL = Edit("persist.h", _TPL_ABSENT,
                 _TPL_READ + "\t\tif (!w | (k->caddr[0] != ABLATE_KNOWN_CADDR))\n\t\t\treturn 0;\n")
NO_STORES = Edit("filter.h", _STORE, "")
NO_TPL_INSERT = Edit("persist.h", "err = tpl_new.update(&k, &fresh);", "err = 0;")
NO_CONN_INSERT = Edit("conn.h", "return syn4.update(k4, c);", "return 0;")
VARIANTS = [
    Variant("tpl_insert", "the new template's LRU insert (tpl_new.update)", [NO_TPL_INSERT]),
    Variant("conn_insert", "the new connection's LRU insert (syn4.update)", [NO_CONN_INSERT]),
    Variant("both_inserts", "both inserts", [NO_TPL_INSERT, NO_CONN_INSERT]),
    Variant("filter_stores", "the filters' stores before each insert", [NO_STORES]),
    Variant("conn_filter", "the connection filter's read before the tables (a SYN: and "
            "what it lets through)", [NO_CONN_READ]),
    Variant("tpl_filter", "the template filter's read for a new client (and what it "
            "lets through)", [NO_TPL_READ]),
    Variant("filters_exact", "what the filters' false \"maybe\" answers let through "
            "(table lookups of absent keys)", [EXACT_CONN, EXACT_TPL]),
    Variant("filter_reads", "the filters' reads themselves (from filters_exact)",
            [NO_CONN_READ, NO_TPL_READ], ref="filters_exact"),
    Variant("exact_stores", "the filters' stores (from filters_exact)",
            [EXACT_CONN, EXACT_TPL, NO_STORES], ref="filters_exact"),
    Variant("exact_no_inserts", "filters_exact, and no inserts and no filter stores: the "
            "cold part of a new flow, all at once",
            [EXACT_CONN, EXACT_TPL, NO_STORES, NO_TPL_INSERT, NO_CONN_INSERT]),
    Variant("tpl_hit", "b's whole template part (filter, lookup, checks, writes, atomic)",
            [Edit("persist.h", "\tt = template_lookup(&k, &tier, 1);",
                  "\tif (k.caddr[0] == ABLATE_KNOWN_CADDR)\n\t\treturn ABLATE_KNOWN_REF;\n"
                  "\tt = template_lookup(&k, &tier, 1);")]),
    Variant("tpl_n_open", "b's atomic add to the template's n_open",
            [Edit("persist.h", "\t\tif (open)\n\t\t\t__sync_fetch_and_add(&t->n_open, 1);\n", "")]),
    Variant("sched", "the scheduler (scratch entry, rr's atomic position, ring, real)",
            [Edit("persist.h", "ref = lvs_schedule(ctx, resumed, svc_idx, svc, tuple);",
                  "ref = ABLATE_KNOWN_REF;")]),
    Variant("load_bind", "real_load's atomic count of the new connection",
            [Edit("lvsxdp.bpf.c", "\t\tload_bind(r, fresh.state);", "\t\t;")]),
    Variant("count_forward", "the per-CPU service and real counters",
            [Edit("lvsxdp.bpf.c",
                  "\tcount_forward(svc, LVS_REF_IDX(r->ref), pkt->len, new_conn);\n", "")]),
    Variant("clock_x2", "one more bpf_ktime_get_coarse_ns (saved < 0: what one costs)",
            [Edit("lvsxdp.bpf.c", "\tnow = bpf_ktime_get_coarse_ns();\n",
                  "\tnow = bpf_ktime_get_coarse_ns();\n"
                  "\tasm volatile(\"\" : \"+r\"(now));\n\tnow = bpf_ktime_get_coarse_ns();\n")]),
    Variant("martian_ttl", "the martian checks and the TTL/checksum rewrite",
            [Edit("lvsxdp.bpf.c", "\tif (martian(&pkt))\n", "\tif (0)\n"),
             Edit("lvsxdp.bpf.c", "\tdr_decrease_ttl(pkt, data_end);\n", "")]),
    Variant("expires_write", "a's write of the connection's expiry",
            [Edit("lvsxdp.bpf.c", "\t\tc->expires = until;\n\t\tif (until > c->vouched)",
                  "\t\tif (until > c->vouched)")]),
    Variant("after_parse", "everything after parse, config, filter map and martian checks "
            "(returns XDP_TX there)",
            [Edit("lvsxdp.bpf.c", "\t\treturn count_reason(LVS_R_MARTIAN, XDP_PASS);\n",
                  "\t\treturn count_reason(LVS_R_MARTIAN, XDP_PASS);\n\treturn XDP_TX;\n")],
            changes="abcdf"),
]


def apply_edits(src: Path, dst: Path, edits: list) -> None:
    shutil.copytree(src, dst)
    for e in edits:
        p = dst / e.file
        text = p.read_text()
        n = text.count(e.old)
        if n != 1:
            raise BenchError(f"edit of {e.file}: the text to replace occurs {n} times "
                             f"(bpf/ changed?): {e.old.strip()[:60]!r}")
        p.write_text(text.replace(e.old, e.new))


def be32(addr: str) -> int:
    """An IPv4 address as the program's u32 holds it (network order, read
    little-endian)."""
    return int.from_bytes(ipaddress.IPv4Address(addr).packed, "little")


class Ablation:
    def __init__(self, args, variants: list) -> None:
        self.args = args
        self.variants = variants
        self.names = ["unmodified"] + [v.name for v in variants]
        self.fds: dict[str, int] = {}
        self.objects = []
        self.progs = Programs(Path(args.pin_dir), conn_max=args.table_size,
                              tpl_max=args.templates)
        self.work = Path(tempfile.mkdtemp(prefix="lvsxdp-ablate-", dir=args.work_dir))
        self.known_real = b""
        self.known_ref = 0
        self.compile_s: dict[str, float] = {}

    def close(self) -> None:
        for b in self.objects:
            with contextlib.suppress(Exception):
                b.cleanup()
        self.objects = []
        self.progs.close()
        shutil.rmtree(self.work, ignore_errors=True)

    # Loading ------------------------------------------------------------------

    def load(self) -> None:
        p = self.progs
        t = time.monotonic()
        p.load()
        self.compile_s["unmodified"] = round(time.monotonic() - t, 1)
        p.configure()
        self.fds["unmodified"] = p.fds["lvsxdp"]
        m = p.maps
        # the known client: SYN, then ACK: ESTABLISHED, held, with its template
        syn = tcp_frame(KNOWN_CLIENT, KNOWN_PORT, VIP, 80, SYN)
        act, out, _ = bpfsys.prog_test_run(p.fds["lvsxdp"], syn)
        if act != XDP_TX:
            raise BenchError("the known client's SYN was not forwarded")
        self.known_real = out[:6]
        ack = tcp_frame(KNOWN_CLIENT, KNOWN_PORT, VIP, 80, ACK)
        act, out, _ = bpfsys.prog_test_run(p.fds["lvsxdp"], ack)
        if act != XDP_TX or out != forwarded(ack, self.known_real):
            raise BenchError("the known client's ACK was not forwarded to its real")
        tpl = m.templates_held.lookup(template_key(KNOWN_CLIENT))
        if tpl is None or m.conns4.lookup(m.conns._key4(
                conn_key(KNOWN_CLIENT, KNOWN_PORT))) is None:
            raise BenchError("the known client's connection or template is not held")
        self.known_ref = tpl.real
        defines = {"LVSXDP_BENCH": "1", **bench_defines(),
                   "ABLATE_KNOWN_CADDR": f"0x{be32(KNOWN_CLIENT):08x}U",
                   "ABLATE_KNOWN_REF": f"{self.known_ref}U"}
        for v in self.variants:
            print(f"compiling {v.name} ...", file=sys.stderr, flush=True)
            d = self.work / v.name
            apply_edits(loader.BPF_DIR, d, v.edits)
            t = time.monotonic()
            try:
                b, fn = loader.compile_program(str(p.pin_dir), p.conn_max, p.tpl_max,
                                               defines=defines, source=d / "lvsxdp.bpf.c")
            except loader.LoadError as e:
                raise BenchError(f"variant {v.name}: {str(e)[:2000]}") from e
            self.compile_s[v.name] = round(time.monotonic() - t, 1)
            self.objects.append(b)
            self.fds[v.name] = fn.fd
        self.agent_rebuild()

    # Frames ---------------------------------------------------------------------

    def frames(self, case: str, vi: int, run: int) -> list[bytes]:
        n = self.args.calls
        if case == "a":
            return [tcp_frame(KNOWN_CLIENT, KNOWN_PORT, VIP, 80, ACK)] * n
        if case == "b":
            ports = [p for p in B_PORTS if p != KNOWN_PORT][vi * n:(vi + 1) * n]
            return [tcp_frame(KNOWN_CLIENT, port, VIP, 80, SYN) for port in ports]
        if case == "c":
            return [tcp_frame(self.c_host(vi * n + i), KNOWN_PORT, VIP, 80, SYN)
                    for i in range(n)]
        if case == "d":
            half = FULL_CLIENTS.num_addresses // 2
            top = int(FULL_CLIENTS.network_address) + half
            out = []
            for i in range(n):
                k = (run * len(self.names) + vi) * n + i
                out.append(tcp_frame(str(ipaddress.IPv4Address(top + k % (half - 1))),
                                     D_PORT + k // (half - 1), VIP, 80, SYN))
            return out
        n_unknown = UNKNOWN_CLIENTS.num_addresses - 2
        return [tcp_frame(str(UNKNOWN_CLIENTS.network_address + 1 + i % n_unknown),
                          FIRST_PORT + i // n_unknown, VIP, 80, ACK) for i in range(n)]

    @staticmethod
    def c_host(i: int) -> str:
        return str(NEW_CLIENTS.network_address + 1 + i)

    def forget(self, case: str) -> None:
        """Deletes what b's and c's calls made (whichever tier; a variant
        that did not insert leaves nothing), so that every run starts from
        the same tables."""
        m, n = self.progs.maps, self.args.calls
        for vi in range(len(self.names)):
            if case == "b":
                ports = [p for p in B_PORTS if p != KNOWN_PORT][vi * n:(vi + 1) * n]
                for port in ports:
                    m.conns.delete(conn_key(KNOWN_CLIENT, port))
            elif case == "c":
                for i in range(n):
                    h = self.c_host(vi * n + i)
                    m.conns.delete(conn_key(h, KNOWN_PORT))
                    m.templates.delete(template_key(h))

    # Measuring ------------------------------------------------------------------

    def run_case(self, case: str, run: int) -> dict[str, float]:
        """One run of a case: every variant's calls interleaved call by call
        (in a shuffled order per call), each paired with bare_tx."""
        bare_fd = self.progs.fds["bare_tx"]
        test_run = bpfsys.prog_test_run
        order = list(range(len(self.names)))
        frames = [self.frames(case, vi, run) for vi in order]
        fds = [self.fds[n] for n in self.names]
        cost = [[] for _ in order]
        bare = [[] for _ in order]
        acts = [dict() for _ in order]
        rng = random.Random(run * 7 + ord(case))
        for i in range(self.args.calls):
            rng.shuffle(order)
            for vi in order:
                f = frames[vi][i]
                bare[vi].append(test_run(bare_fd, f)[2])
                act, _, ns = test_run(fds[vi], f)
                cost[vi].append(ns)
                acts[vi][act] = acts[vi].get(act, 0) + 1
        out = {}
        for vi, name in enumerate(self.names):
            if name == "unmodified" and acts[vi] != {ACTIONS[case]: self.args.calls}:
                raise BenchError(f"case {case}: the unmodified program returned {acts[vi]}")
            out[name] = trimmed_mean(cost[vi]) - trimmed_mean(bare[vi])
            self.actions.setdefault((case, name), set()).update(acts[vi])
        return out

    def run_warm(self, run: int) -> dict[str, float]:
        """a warm: one repeat=--repeat call per variant (shuffled order),
        the kernel's ns per iteration less bare_tx's in a call next to it
        (bench.h's prologue puts MACs and TTL back each iteration)."""
        bare_fd = self.progs.fds["bare_tx"]
        f = self.frames("a", 0, run)[0]
        order = list(range(len(self.names)))
        random.Random(run).shuffle(order)
        out = {}
        for vi in order:
            name = self.names[vi]
            bare = bpfsys.prog_test_run(bare_fd, f, self.args.repeat)[2]
            act, _, ns = bpfsys.prog_test_run(self.fds[name], f, self.args.repeat)
            self.actions.setdefault(("aw", name), set()).add(act)
            if name == "unmodified" and act != XDP_TX:
                raise BenchError("a warm: the unmodified program did not forward")
            out[name] = ns - bare
        return out

    def fill(self) -> float:
        """SYNs of new clients past the embryonic tier's capacity, through
        the unmodified program: from here on every insert evicts."""
        m = self.progs.maps
        cap = m.syn4.max_entries
        half = FULL_CLIENTS.num_addresses // 2 - 2
        base = int(FULL_CLIENTS.network_address) + 1
        fd = self.fds["unmodified"]
        t0 = time.monotonic()
        for i in range(int(cap * FILL_FACTOR)):
            f = tcp_frame(str(ipaddress.IPv4Address(base + i % half)),
                          FIRST_PORT + i // half, VIP, 80, SYN)
            if bpfsys.prog_test_run(fd, f)[0] != XDP_TX:
                raise BenchError("d: a fill SYN was not forwarded")
        if m.conns.lookup(conn_key(str(FULL_CLIENTS.network_address + 1), FIRST_PORT)):
            raise BenchError("d: the oldest fill connection is still there (no eviction)")
        self.agent_rebuild()
        return round(time.monotonic() - t0, 1)

    def agent_rebuild(self) -> None:
        """The filters as the agent's next two sweeps leave them: the keys
        of the live entries only (deleted ones cleared), sparse or not."""
        m = self.progs.maps
        m.filter_bytes.rebuild(m)
        m.filter_bytes.rebuild(m)

    def measure(self) -> dict:
        self.actions: dict = {}
        self.occupancy: dict[str, list[int]] = {}
        runs: dict[str, list[dict]] = {c: [] for c in CASES}
        early = [c for c in CASES if c != "d"]
        for r in range(self.args.runs):
            print(f"run {r + 1}/{self.args.runs} ...", file=sys.stderr, flush=True)
            for case in early:
                if case == "aw":
                    runs[case].append(self.run_warm(r))
                    continue
                start = self.progs.maps.filter_bytes.conn_slots_set()
                runs[case].append(self.run_case(case, r))
                self.occupancy.setdefault(case, []).append(
                    (start, self.progs.maps.filter_bytes.conn_slots_set()))
                self.forget(case)
                self.agent_rebuild()
        fill_s = None
        if not self.args.no_full:
            print("filling the embryonic tier ...", file=sys.stderr, flush=True)
            fill_s = self.fill()
            for r in range(self.args.runs):
                print(f"d run {r + 1}/{self.args.runs} ...", file=sys.stderr, flush=True)
                start = self.progs.maps.filter_bytes.conn_slots_set()
                runs["d"].append(self.run_case("d", r))
                self.occupancy.setdefault("d", []).append(
                    (start, self.progs.maps.filter_bytes.conn_slots_set()))
        return {"runs": runs, "fill_s": fill_s}


def report(abl: Ablation, res: dict, args) -> dict:
    runs = res["runs"]
    cases = [c for c in CASES if runs[c]]
    med = {c: {n: statistics.median(r[n] for r in runs[c]) for n in abl.names} for c in cases}
    changes = {v.name: v.changes for v in abl.variants}
    refs = {v.name: v.ref for v in abl.variants}
    # saved: the median over runs of the difference within each run (the
    # runs of a shared machine move together)
    saved = {c: {n: statistics.median(r[refs[n]] - r[n] for r in runs[c])
                 for n in abl.names[1:]} for c in cases}
    print(f"bench_ablate: Linux {platform.release()}, {cpu_model()}, {args.calls:,} calls per "
          f"case and variant, median of {args.runs} runs, per call, ns over bare XDP_TX; "
          f"tables {args.table_size:,} connections, {args.templates:,} templates")
    head = "".join(f"{c:>9}" for c in cases)
    print(f"{'':<16}{head}")
    print(f"{'unmodified':<16}" + "".join(f"{med[c]['unmodified']:9.0f}" for c in cases))
    print("saved per call (median over runs of unmodified - variant, or of the reference "
          "named below; * = the variant changes this case's path):")
    for n in abl.names[1:]:
        cells = []
        for c in cases:
            mark = "*" if c in changes[n] or abl.actions[(c, n)] != {ACTIONS[c]} else " "
            cells.append(f"{saved[c][n]:8.0f}{mark}")
        print(f"{n:<16}" + "".join(cells))
    print("spread: the unmodified program's runs: " + "; ".join(
        f"{c} " + " ".join(f"{r['unmodified']:.0f}" for r in runs[c]) for c in cases))
    for v in abl.variants:
        ref = "" if v.ref == "unmodified" else f" [saved: {v.ref} - this]"
        print(f"  {v.name:<15} {v.what}{ref}")
    print("filter: connection slots set (of 65,536) at the start and end of each run: " +
          "; ".join(f"{c} " + " ".join(f"{a}-{b}" for a, b in abl.occupancy.get(c, []))
                    for c in cases))
    return {"median": med, "saved": saved, "occupancy": abl.occupancy, "runs": runs,
            "fill_s": res["fill_s"], "calls": args.calls,
            "compile_s": abl.compile_s, "kernel": platform.release(), "cpu": cpu_model(),
            "actions": {f"{c}:{n}": sorted(a) for (c, n), a in abl.actions.items()}}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000,
                    help="calls per case, variant and run (b and c: keys of their own per "
                         "variant, so calls x variants <= 64,000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=200_000,
                    help="iterations of a's warm figure (one repeat call per variant and run)")
    ap.add_argument("--only", default="", help="comma-separated variant names (default all)")
    ap.add_argument("--no-full", action="store_true", help="skip the fill and case d")
    ap.add_argument("--table-size", type=int, default=1 << 20)
    ap.add_argument("--templates", type=int, default=1 << 18)
    ap.add_argument("--pin-dir", default=f"/sys/fs/bpf/lvsxdp-ablate-{os.getpid()}",
                    help="where the shared maps are pinned (removed at exit)")
    ap.add_argument("--work-dir", default=None, help="parent of the temporary copies of bpf/")
    ap.add_argument("--json", action="store_true", help="a JSON object as the last line")
    args = ap.parse_args(argv)
    known = {v.name for v in VARIANTS}
    only = [n for n in args.only.split(",") if n]
    bad = [n for n in only if n not in known]
    if bad:
        ap.error(f"no variant {', '.join(bad)} (have: {', '.join(sorted(known))})")
    need = set(only) | {v.ref for v in VARIANTS if v.name in only}
    args.variants = [v for v in VARIANTS if not only or v.name in need]
    n = len(args.variants) + 1
    if not 100 <= args.calls or args.calls * n > 64000:
        ap.error(f"--calls must be 100..{64000 // n} with {n} programs")
    if args.runs < 1 or args.repeat < 1000:
        ap.error("--runs must be at least 1, --repeat at least 1000")
    if Path(args.pin_dir).exists():
        ap.error(f"{args.pin_dir} exists: another run's maps?")
    return args


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_ablate: loads BPF programs: run it as root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    abl = Ablation(args, args.variants)
    try:
        abl.load()
        res = abl.measure()
        out = report(abl, res, args)
    except (BenchError, loader.LoadError, OSError) as e:
        print(f"bench_ablate: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        abl.close()
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
