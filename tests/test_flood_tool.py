"""tools/flood.py, small: real TCP clients of a lab director keep their
connections, templates and reals through spoofed SYN floods of 10x the
tables (each pattern), and new clients are served during the flood."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "flood.py"


def test_floods_of_10x_the_tables_lose_no_connection_template_or_new_client():
    out = subprocess.run([sys.executable, str(TOOL), "--conns", "1024", "--templates", "1024",
                          "--clients", "4", "--per-client", "2", "--new-clients", "4",
                          "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert [r["pattern"] for r in report["results"]] == ["syn", "syn2", "synack"]
    for r in report["results"]:
        assert r["flows"] == 10 * 2048
        assert r["frames"] == r["flows"] * (1 if r["pattern"] == "syn" else 2)
        assert (r["conns_kept"], r["templates_kept"], r["new_conn_same_real"]) == (8, 4, 4), r
        assert r["new_clients_served"] > 0 and r["new_clients_failed"] == 0, r
