"""`lvsxdp metrics`: the numbers of `lvsxdp top` in Prometheus' text format,
read from the pinned maps at each scrape (prometheus-client serves them).

Counters are the data plane's own (Prometheus makes the rates). Services and
reals carry the labels node_exporter's IPVS collector uses (proto,
local_address, local_port, local_mark, remote_address, remote_port), so that
dashboards made for `node_ipvs_backend_*` need only the metric names changed.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import runtime, top
from .runtime import RuntimeError_

SVC_LABELS = ["proto", "local_address", "local_port", "local_mark"]
REAL_LABELS = [*SVC_LABELS, "remote_address", "remote_port"]


def _svc_labels(s: dict) -> list[str]:
    if s["fwmark"]:
        return ["FWM", "", "0", str(s["fwmark"])]
    return [s["protocol"], s["address"], str(s["port"]), ""]


def families(data: dict | None, scrape_seconds: float = 0.0) -> list:
    """Metric families for one frame of top's data (None: no director)."""
    up = GaugeMetricFamily("lvsxdp_up", "1 when a director runs in this network namespace.")
    up.add_metric([], 0 if data is None else 1)
    out = [up]
    if data is None:
        return out
    d = data["director"]
    info = GaugeMetricFamily("lvsxdp_info", "The director: namespace, interface, XDP mode.",
                             labels=["netns", "iface", "mode", "prog_id"])
    info.add_metric([d["netns"] or "", d["iface"] or "", d["mode"] or "",
                     str(d["prog_id"] or "")], 1)
    agent = GaugeMetricFamily("lvsxdp_agent_up", "1 when the director's agent runs.")
    agent.add_metric([], 1 if d["agent_alive"] else 0)
    out += [info, agent]
    skipped = GaugeMetricFamily("lvsxdp_kernel_rule_skipped",
                                "1 for each kernel mangle PREROUTING rule lvsxdp cannot follow "
                                "(its packets get no firewall-mark service).",
                                labels=["rule"])
    for rule in d.get("kernel_rules_skipped") or []:
        skipped.add_metric([rule["rule"]], 1)
    out.append(skipped)
    if d["uptime"] is not None:
        out.append(GaugeMetricFamily("lvsxdp_uptime_seconds", "Since `lvsxdp up` first ran.",
                                     value=d["uptime"]))

    f = data["forwarded"]
    for name, key, text in (("connections", "conns", "New connections scheduled."),
                            ("incoming_packets", "packets", "Packets forwarded."),
                            ("incoming_bytes", "bytes", "Bytes forwarded.")):
        out.append(CounterMetricFamily(f"lvsxdp_{name}", text, value=f[key]))

    nf = CounterMetricFamily("lvsxdp_not_forwarded_packets",
                             "Packets not forwarded, by reason; action: drop (XDP_DROP), "
                             "pass (to the kernel), forward (forwarded without an entry).",
                             labels=["reason", "action"])
    for r in data["not_forwarded"]:
        nf.add_metric([r["reason"], r["action"]], r["packets"])
    out.append(nf)

    svc = {
        "conns": CounterMetricFamily("lvsxdp_service_connections",
                                     "New connections of a service.", labels=SVC_LABELS),
        "packets": CounterMetricFamily("lvsxdp_service_incoming_packets",
                                       "Packets forwarded for a service.", labels=SVC_LABELS),
        "bytes": CounterMetricFamily("lvsxdp_service_incoming_bytes",
                                     "Bytes forwarded for a service.", labels=SVC_LABELS),
        "templates": GaugeMetricFamily("lvsxdp_service_templates",
                                       "Live persistence templates of a service.",
                                       labels=SVC_LABELS),
    }
    real = {
        "conns": CounterMetricFamily("lvsxdp_backend_connections",
                                     "New connections sent to a real server.",
                                     labels=REAL_LABELS),
        "packets": CounterMetricFamily("lvsxdp_backend_incoming_packets",
                                       "Packets sent to a real server.", labels=REAL_LABELS),
        "bytes": CounterMetricFamily("lvsxdp_backend_incoming_bytes",
                                     "Bytes sent to a real server.", labels=REAL_LABELS),
        "active": GaugeMetricFamily("lvsxdp_backend_connections_active",
                                    "Live connections in ESTABLISHED, SYN_SENT or SYN_RECV "
                                    "(ipvsadm ActiveConn).",
                                    labels=REAL_LABELS),
        "inactive": GaugeMetricFamily("lvsxdp_backend_connections_inactive",
                                      "Other live connections (ipvsadm InActConn).",
                                      labels=REAL_LABELS),
        "templates": GaugeMetricFamily("lvsxdp_backend_templates",
                                       "Live persistence templates holding clients to it.",
                                       labels=REAL_LABELS),
        "weight": GaugeMetricFamily("lvsxdp_backend_weight", "Weight (0: quiescent).",
                                    labels=REAL_LABELS),
        "mac_known": GaugeMetricFamily("lvsxdp_backend_mac_known",
                                       "1 when its MAC is known (else it gets no new work).",
                                       labels=REAL_LABELS),
    }
    for s in data["services"]:
        labels = _svc_labels(s)
        for key, fam in svc.items():
            if s[key] is not None:
                fam.add_metric(labels, s[key])
        for r in s["reals"]:
            rl = [*labels, r["address"], str(r["port"])]
            for key, fam in real.items():
                if r[key] is not None:
                    fam.add_metric(rl, int(r[key]))
    out += [*svc.values(), *real.values()]

    c, t = data["connections"], data["templates"]
    if c is not None:
        conns = GaugeMetricFamily("lvsxdp_connection_entries", "Live connection entries.",
                                  labels=["state"])
        conns.add_metric(["active"], c["active"])
        conns.add_metric(["inactive"], c["inactive"])
        out += [conns, GaugeMetricFamily("lvsxdp_connection_table_size",
                                         "Capacity of the connection table (--conns).",
                                         value=c["table_size"])]
    if t is not None:
        out += [
            GaugeMetricFamily("lvsxdp_templates", "Live persistence templates.",
                              value=t["alive"]),
            GaugeMetricFamily("lvsxdp_templates_extended",
                              "Templates past their timeout, kept by live connections.",
                              value=t["extended"]),
            GaugeMetricFamily("lvsxdp_template_table_size",
                              "Capacity of the template table (--templates).",
                              value=t["table_size"]),
        ]
    out.append(GaugeMetricFamily("lvsxdp_scrape_duration_seconds",
                                 "Time this scrape took to read the maps.",
                                 value=scrape_seconds))
    return out


class DirectorCollector:
    """Reads this namespace's director at each scrape."""

    def collect(self):
        t0 = time.perf_counter()
        p = runtime.paths()
        try:
            maps = runtime.running_maps(p)
        except (OSError, RuntimeError_):
            maps = None
        if maps is None:
            return families(None)
        with maps:
            config = runtime.load_config_readonly(p)
            cur = top.sample(maps)
            tables = top.read_tables(maps, config, cur.reals)
        data = top.build(config, cur, None, tables, None, **top._context(p))
        return families(data, time.perf_counter() - t0)


def parse_listen(text: str) -> tuple[str, int]:
    """"[ADDR]:PORT" (ADDR may be [v6]) -> (addr, port); no ADDR (":9652"):
    every address, which the operator asks for explicitly (the default is
    127.0.0.1:9652: not the VIP, not the world)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise RuntimeError_(f"--listen wants [ADDR]:PORT, not {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def main(listen: str) -> None:
    addr, port = parse_listen(listen)
    p, maps = top._director()  # one clear line when there is none
    maps.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DirectorCollector())
    server, _ = start_http_server(port, addr, registry=registry)
    shown = f"[{addr}]" if ":" in addr else addr
    print(f"lvsxdp metrics of {p.key} on http://{shown}:{port}/metrics", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    sys.exit(0)
