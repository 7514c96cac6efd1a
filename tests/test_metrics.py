"""`lvsxdp metrics`: scraped over the lab's network the way Prometheus
would (from the client's namespace, to the director's address) while real
traffic arrives, and checked against the pinned maps; a director that goes
away reads as lvsxdp_up 0. Lab namespaces are lxt<hex>-*, removed whatever
happens."""

from __future__ import annotations

import ctypes
import os
import secrets
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_top import Traffic, lab_env, live_templates, wait_for_macs

from lvsxdp import lab, metrics, runtime, shared
from lvsxdp.lab import DIRECTOR_ADDR, IFACE, REALS, SEED_PCC, VIP, Topology
from lvsxdp.model import Config

PORT = 9652


def scrape(topo: Topology) -> dict[tuple, float]:
    """/metrics from the client's namespace: {(name, labels...): value}."""
    text = lab.run(topo.client, "curl", "-sS", "--max-time", "10",
                   f"http://{DIRECTOR_ADDR}:{PORT}/metrics").stdout
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def backend(name: str, real: str, port: int = 0) -> tuple:
    labels = {"proto": "TCP", "local_address": VIP, "local_port": "0", "local_mark": "",
              "remote_address": real, "remote_port": str(port)}
    return (name, *sorted(labels.items()))


def test_metrics_are_the_maps_numbers_and_a_stopped_director_reads_as_down(tmp_path):
    with Topology(f"lxt{secrets.token_hex(2)}-", state_dir=tmp_path / "state",
                  run_dir=tmp_path / "run") as topo:
        topo.lvsxdp("up", IFACE, "--mode", "generic")
        for line in SEED_PCC:
            topo.ipvsadm(line)
        wait_for_macs(topo)
        env = {**os.environ, **lab_env(topo)}
        proc = subprocess.Popen([lab.lvsxdp_bin(), "-n", topo.director, "metrics", "--listen",
                                 f"{DIRECTOR_ADDR}:{PORT}"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            assert proc.stdout.readline().strip() == (
                f"lvsxdp metrics of {topo.director} on http://{DIRECTOR_ADDR}:{PORT}/metrics")
            traffic = Traffic(topo)
            traffic.start()
            try:
                time.sleep(1)
                first = scrape(topo)
                time.sleep(1)
                second = scrape(topo)
            finally:
                traffic.stop()
            assert first[("lvsxdp_up",)] == 1 and first[("lvsxdp_agent_up",)] == 1
            moved = [a for a in REALS.values()
                     if second[backend("lvsxdp_backend_incoming_packets_total", a)]
                     > first[backend("lvsxdp_backend_incoming_packets_total", a)]]
            assert sorted(moved) == sorted(REALS.values())  # rr: both reals have clients
            assert second[("lvsxdp_incoming_packets_total",)] > first[
                ("lvsxdp_incoming_packets_total",)]
            info = [k for k in second if k[0] == "lvsxdp_info"]
            assert info == [("lvsxdp_info", ("iface", IFACE), ("mode", "generic"),
                             ("netns", topo.director), ("prog_id", info[0][4][1]))]

            time.sleep(0.5)  # traffic has stopped: the maps hold still
            got = scrape(topo)
            config = Config.from_json((topo.state_dir / f"{topo.director}.json").read_text())
            templates = live_templates(topo)
            with runtime.Maps(runtime.Paths(topo.director).pins) as maps:
                now = runtime.monotonic_ns()
                conns = [c for _, c in maps.conns.items() if now < c.expires]
                for r in config.services[0].reals:
                    stats = maps.real_stats.lookup(ctypes.c_uint32(r.index))
                    for field in ("conns", "packets", "bytes"):
                        name = {"conns": "lvsxdp_backend_connections_total",
                                "packets": "lvsxdp_backend_incoming_packets_total",
                                "bytes": "lvsxdp_backend_incoming_bytes_total"}[field]
                        assert got[backend(name, str(r.addr))] == sum(
                            getattr(v, field) for v in stats)
                    mine = [c for c in conns if c.real == r.ref]
                    est = sum(c.state == shared.S["ESTABLISHED"] for c in mine)
                    addr = str(r.addr)
                    assert got[backend("lvsxdp_backend_connections_active", addr)] == est
                    assert got[backend("lvsxdp_backend_connections_inactive", addr)] == \
                        len(mine) - est
                    assert got[backend("lvsxdp_backend_templates", addr)] == sum(
                        v == r.addrport() for v in templates.values())
                    assert got[backend("lvsxdp_backend_weight", addr)] == 1
                    assert got[backend("lvsxdp_backend_mac_known", addr)] == 1
                for i, reason in enumerate(shared.REASONS):
                    action = "drop" if reason in ("no_real", "real_gone", "too_big",
                                                  "no_route", "no_headroom") else (
                        "forward" if reason in ("map_full", "held_full") else "pass")
                    key = ("lvsxdp_not_forwarded_packets_total", ("action", action),
                           ("reason", reason))
                    assert got[key] <= sum(v.value for v in maps.reasons.lookup(
                        ctypes.c_uint32(i)))
                    if reason == "no_service":  # the scrapes: to the director, not a VIP
                        assert got[key] >= 3
            assert got[("lvsxdp_templates",)] == len(templates) == 4
            assert got[("lvsxdp_connection_entries", ("state", "active"))] + got[
                ("lvsxdp_connection_entries", ("state", "inactive"))] == len(conns)
            assert got[("lvsxdp_template_table_size",)] == 262144

            topo.lvsxdp("down", IFACE)
            assert scrape(topo)[("lvsxdp_up",)] == 0
            assert proc.poll() is None  # it waits for the director to come back
            topo.lvsxdp("up", IFACE, "--mode", "generic")
            assert scrape(topo)[("lvsxdp_up",)] == 1
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, proc.stderr.read()


def test_without_a_director_metrics_says_so_in_one_line_and_fails(tmp_path):
    key = f"lxt{secrets.token_hex(3)}"
    env = {**os.environ, "LVSXDP_NETNS": key, "LVSXDP_PIN_ROOT": str(tmp_path / "pins"),
           "LVSXDP_STATE_DIR": str(tmp_path / "state"), "LVSXDP_RUN_DIR": str(tmp_path)}
    res = subprocess.run([lab.lvsxdp_bin(), "metrics", "--listen", "127.0.0.1:9652"], env=env,
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.splitlines() == [
        f"lvsxdp: no director is running in network namespace {key} "
        "(start one with `lvsxdp up IFACE`)"]


def test_no_director_is_lvsxdp_up_0_and_nothing_else():
    text = "".join(f"{s.name} {s.value}\n" for f in metrics.families(None) for s in f.samples)
    assert text == "lvsxdp_up 0\n"


@pytest.mark.parametrize("text,want", [(":9652", ("0.0.0.0", 9652)),
                                       ("198.18.2.2:80", ("198.18.2.2", 80)),
                                       ("[2001:db8::2]:9652", ("2001:db8::2", 9652))])
def test_listen_addresses(text, want):
    assert metrics.parse_listen(text) == want


@pytest.mark.parametrize("text", ["9652", "host:", ":0", ":70000", "a:b"])
def test_bad_listen_addresses_are_refused(text):
    with pytest.raises(runtime.RuntimeError_):
        metrics.parse_listen(text)
