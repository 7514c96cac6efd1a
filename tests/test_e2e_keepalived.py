"""`lvsxdp keepalived` end to end: the lab's director and two reals
(namespaces lxk<4 hex>-*), an HTTP server on 8000 and 8001 in each real
that the test stops and starts, and a keepalived.conf as operators write
it (TCP_CHECK, HTTP_GET, inhibit_on_failure, quorum, sorry_server,
notify scripts). What is checked is what clients get and what
`ipvsadm -L -n` shows, and how soon. NAT (keepalived's default method)
runs on test_e2e_dr_routes' NAT topology (namespaces lxq<4 hex>-*)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_e2e_dr_routes import CLIENT as NAT_CLIENT
from test_e2e_dr_routes import REAL as NAT_REAL
from test_e2e_dr_routes import VIP as NAT_VIP
from test_e2e_dr_routes import TwoSegments

from lvsxdp import lab
from lvsxdp.lab import CLIENT_ADDRS, IFACE, REALS, VIP, Topology
from lvsxdp.model import Config

DELAY_LOOP = 1.0
PORT, SORRY_PORT = 8000, 8001

# Each real's checked service: its name as the body, on 8000 and 8001.
SERVER = r"""
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name = sys.argv[1]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

class S(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

other = S(("0.0.0.0", 8001), H)
threading.Thread(target=other.serve_forever, daemon=True).start()
print("ready", flush=True)
S(("0.0.0.0", 8000), H).serve_forever()
"""

CONF = """\
global_defs {{
    router_id lvsxdp_test
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {{
        {vip}
    }}
}}
virtual_server {vip} {port} {{
    delay_loop {delay}
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server {r1} {port} {{
        weight 1
        {inhibit}
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server {r2} {port} {{
        weight 1
        {inhibit}
        notify_down "/bin/sh -c 'echo r2 down >> {events}'"
        notify_up "/bin/sh -c 'echo r2 up >> {events}'"
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 1
            retry 0
        }}
    }}
}}
virtual_server {vip} {sorry_port} {{
    delay_loop {delay}
    lb_algo {sorry_sched}
    lb_kind DR
    protocol TCP
    quorum 1
    sorry_server {r2} {sorry_port}
    quorum_down "/bin/sh -c 'echo quorum down >> {events}'"
    quorum_up "/bin/sh -c 'echo quorum up >> {events}'"
    real_server {r1} {sorry_port} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
"""


class Servers:
    """The checked HTTP servers of the reals, stopped and started at will."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", self.topo.reals[name], sys.executable,
                              "-c", SERVER, name], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = p
        assert p.stdout.readline().strip() == b"ready"

    def stop(self, name: str) -> None:
        p = self.procs.pop(name)
        p.kill()
        p.wait()

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)


class Keepalived:
    """`lvsxdp -n <director> keepalived -n -l -f CONF` in the foreground (or
    `ip netns exec <director> lvsxdp keepalived ...`, as operators enter a
    namespace)."""

    def __init__(self, topo: Topology, tmp: Path, conf: Path, *extra: str,
                 netns_exec: bool = False) -> None:
        self.pidfile = tmp / "keepalived.pid"
        self.log = tmp / "keepalived.log"
        env = dict(os.environ, LVSXDP_STATE_DIR=str(topo.state_dir),
                   LVSXDP_RUN_DIR=str(topo.run_dir))
        with open(self.log, "w") as log:
            enter = (["ip", "netns", "exec", topo.director, lab.lvsxdp_bin()] if netns_exec
                     else [lab.lvsxdp_bin(), "-n", topo.director])
            self.proc = subprocess.Popen([*enter, "keepalived",
                                          "-n", "-l", "-D", "-f", str(conf), "-p",
                                          str(self.pidfile), *extra], env=env, stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text()


def table(topo: Topology) -> dict[str, dict[str, int]]:
    """`ipvsadm -L -n`: {"VIP:PORT": {"RIP": weight}}."""
    out: dict[str, dict[str, int]] = {}
    svc = None
    for line in topo.ipvsadm("-L -n").splitlines():
        m = re.match(r"(TCP|UDP)\s+(\S+)", line)
        if m:
            svc = m.group(2)
            out[svc] = {}
            continue
        m = re.match(r"\s+-> (\S+):\d+\s+\S+\s+(\d+)", line)
        if m and svc:
            out[svc][m.group(1)] = int(m.group(2))
    return out


def applied(topo: Topology) -> dict[str, dict[str, int]]:
    """The same from the saved configuration, which director.edit() writes
    right after the maps: cheap enough to time a change to a few ms."""
    config = Config.from_json((topo.state_dir / f"{topo.director}.json").read_text())
    return {f"{s.addr}:{s.port}": {str(r.addr): r.weight for r in s.reals}
            for s in config.services}


def wait_until(what: str, cond, timeout: float = 10) -> float:
    """Seconds until cond() held; fails after timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def answers(topo: Topology, port: int) -> set[str]:
    """The reals that answered one GET from each client."""
    return {topo.curl(c, f"http://{VIP}:{port}/", timeout=2) for c in CLIENT_ADDRS}


@pytest.fixture
def rig(tmp_path):
    prefix = f"lxk{secrets.token_hex(2)}-"
    with Topology(prefix, state_dir=tmp_path / "state", run_dir=tmp_path / "run") as topo:
        servers = Servers(topo)
        daemons: list[Keepalived] = []
        try:
            topo.lvsxdp("up", IFACE, "--mode", "generic")
            for name in REALS:
                servers.start(name)
            yield topo, servers, daemons
        finally:
            for d in daemons:
                d.stop()
            servers.close()


def write_conf(tmp: Path, inhibit: bool, sorry_sched: str = "rr") -> Path:
    conf = tmp / "keepalived.conf"
    conf.write_text(CONF.format(vip=VIP, port=PORT, sorry_port=SORRY_PORT, delay=DELAY_LOOP,
                                sorry_sched=sorry_sched,
                                r1=REALS["r1"], r2=REALS["r2"], events=tmp / "events",
                                inhibit="inhibit_on_failure" if inhibit else ""))
    return conf


def test_checkers_drive_the_table_clients_follow(rig, tmp_path):
    topo, servers, daemons = rig
    r1, r2 = REALS["r1"], REALS["r2"]
    vs, sorry = f"{VIP}:{PORT}", f"{VIP}:{SORRY_PORT}"
    events = tmp_path / "events"
    conf = write_conf(tmp_path, inhibit=False)
    ka = Keepalived(topo, tmp_path, conf)
    daemons.append(ka)
    wait_until("both reals in the table",
               lambda: table(topo).get(vs) == {r1: 1, r2: 1} and table(topo).get(sorry) == {r1: 1})
    assert int(ka.pidfile.read_text()) == ka.proc.pid
    assert "Ignoring (not LVS, or nothing for lvsxdp to do): global_defs, vrrp_instance" \
        in ka.text()
    topo.wait_for_reals((r1, r2))
    assert answers(topo, PORT) == {"r1", "r2"}

    # r1's service stops: within one delay_loop it leaves both services; the
    # sorry server takes its place on 8001 (quorum 1 lost)
    servers.stop("r1")
    took = wait_until("r1 removed", lambda: r1 not in applied(topo)[vs])
    print(f"r1 removed {took:.2f} s after its service stopped (delay_loop {DELAY_LOOP:g} s)")
    assert took <= DELAY_LOOP + 0.5
    assert table(topo)[vs] == {r2: 1}  # what ipvsadm shows is what was applied
    wait_until("sorry server in", lambda: table(topo)[sorry] == {r2: 1}, timeout=2)
    assert answers(topo, PORT) == {"r2"}
    assert answers(topo, SORRY_PORT) == {"r2"}
    # `lvsxdp status` says who checks, and why r1 is out (a real down is no
    # problem of the director's: exit 0)
    st = topo.lvsxdp("status")
    assert (f"checkers  lvsxdp keepalived pid {ka.proc.pid} ({conf}): 3 real servers, "
            "1 up, 2 down") in st.stdout
    for port in (PORT, SORRY_PORT):
        assert f"down      [{r1}]:tcp:{port} of VS [{VIP}]:tcp:{port}: TCP connection to " \
            f"[{r1}]:tcp:{port} failed (Connection refused)" in st.stdout
    wait_until("quorum_down ran", lambda: events.exists() and
               "quorum down" in events.read_text(), timeout=3)

    # r1 back: in again within one delay_loop, the sorry server out
    servers.start("r1")
    took = wait_until("r1 back", lambda: applied(topo)[vs] == {r1: 1, r2: 1})
    print(f"r1 back {took:.2f} s after its service started")
    assert took <= DELAY_LOOP + 0.5
    wait_until("sorry server out", lambda: table(topo)[sorry] == {r1: 1}, timeout=2)
    assert answers(topo, PORT) == {"r1", "r2"}
    assert answers(topo, SORRY_PORT) == {"r1"}
    wait_until("quorum_up ran", lambda: "quorum up" in events.read_text(), timeout=3)

    # HTTP_GET on r2, and its notify scripts
    servers.stop("r2")
    wait_until("r2 removed", lambda: table(topo)[vs] == {r1: 1}, timeout=DELAY_LOOP + 0.5)
    servers.start("r2")
    wait_until("r2 back", lambda: table(topo)[vs] == {r1: 1, r2: 1}, timeout=DELAY_LOOP + 0.5)
    wait_until("notify scripts ran", lambda: "r2 down\nr2 up\n" in events.read_text(),
               timeout=3)

    # SIGHUP: inhibit_on_failure from now on, wrr on 8001; a held
    # connection is kept (nothing of the table changed but what the file
    # changed)
    held = topo.hold_tcp(CLIENT_ADDRS[0], port=PORT)
    try:
        before = topo.ipvsadm("-L -n -c")
        assert f"{CLIENT_ADDRS[0]}:{held.cport}" in before
        write_conf(tmp_path, inhibit=True, sorry_sched="wrr")
        ka.signal(signal.SIGHUP)
        wait_until("reloaded", lambda: "Reloading configuration file" in ka.text(), timeout=5)
        time.sleep(DELAY_LOOP)
        after = topo.ipvsadm("-L -n -c")
        entry = [line for line in after.splitlines() if f"{CLIENT_ADDRS[0]}:{held.cport}" in line]
        assert entry and "ESTABLISHED" in entry[0]
        assert table(topo)[vs] == {r1: 1, r2: 1}
        assert f"TCP  {sorry} wrr" in topo.ipvsadm("-L -n")
        # inhibit_on_failure: a failing real stays with weight 0
        servers.stop("r2")
        took = wait_until("r2 at weight 0", lambda: applied(topo)[vs] == {r1: 1, r2: 0})
        print(f"r2 at weight 0 {took:.2f} s after its service stopped")
        assert took <= DELAY_LOOP + 0.5
        assert answers(topo, PORT) == {"r1"}
        servers.start("r2")
        wait_until("r2 at weight 1", lambda: table(topo)[vs] == {r1: 1, r2: 1},
                   timeout=DELAY_LOOP + 0.5)
    finally:
        held.close()

    # a reload of a bad file changes nothing
    conf.write_text(conf.read_text().replace("lb_algo rr", "lb_algo nope", 1))
    ka.signal(signal.SIGHUP)
    wait_until("bad reload refused", lambda: "configuration not reloaded" in ka.text(),
               timeout=5)
    assert f"({conf}: Line 14) Invalid lvs_scheduler 'nope'" in ka.text()
    assert table(topo)[vs] == {r1: 1, r2: 1}

    # SIGTERM: keepalived removes its virtual servers, its pid file and what
    # it told status
    assert ka.stop() == 0
    assert vs not in table(topo) and sorry not in table(topo)
    assert not ka.pidfile.exists()
    assert "checkers" not in topo.lvsxdp("status").stdout


def test_alpha_starts_reals_down_and_a_second_daemon_is_refused(rig, tmp_path):
    """Also -I (--dont-release-ipvs): the virtual servers outlive the daemon;
    and run under `ip netns exec`."""
    topo, servers, daemons = rig
    servers.stop("r2")  # r2 never passes: with alpha it never enters
    conf = tmp_path / "alpha.conf"
    conf.write_text(textwrap.dedent(f"""\
        virtual_server {VIP} {PORT} {{
            delay_loop {DELAY_LOOP}
            lvs_sched rr
            lvs_method DR
            protocol TCP
            alpha
            real_server {REALS['r1']} {PORT} {{
                TCP_CHECK {{
                    connect_timeout 1
                }}
            }}
            real_server {REALS['r2']} {PORT} {{
                TCP_CHECK {{
                    connect_timeout 1
                }}
            }}
        }}
        """))
    ka = Keepalived(topo, tmp_path, conf, "-I", netns_exec=True)
    daemons.append(ka)
    wait_until("r1 in", lambda: table(topo).get(f"{VIP}:{PORT}") == {REALS["r1"]: 1})
    time.sleep(DELAY_LOOP * 1.5)
    assert table(topo)[f"{VIP}:{PORT}"] == {REALS["r1"]: 1}
    topo.wait_for_reals((REALS["r1"],))
    assert answers(topo, PORT) == {"r1"}  # in the running director's maps
    again = subprocess.run([lab.lvsxdp_bin(), "-n", topo.director, "keepalived", "-n", "-f",
                            str(conf), "-p", str(ka.pidfile)],
                           env=dict(os.environ, LVSXDP_STATE_DIR=str(topo.state_dir),
                                    LVSXDP_RUN_DIR=str(topo.run_dir)),
                           capture_output=True, text=True, timeout=30)
    assert again.returncode == 1
    assert again.stderr == (f"lvsxdp: keepalived is already running (pid {ka.proc.pid}, "
                            f"{ka.pidfile})\n")
    assert ka.stop() == 0
    assert table(topo)[f"{VIP}:{PORT}"] == {REALS["r1"]: 1}

    # a daemon that dies without its cleanup (kill -9) is a PROBLEM for status:
    # nothing follows the reals' health any more
    ka = Keepalived(topo, tmp_path, conf, "-I")
    daemons.append(ka)
    wait_until("status sees the daemon", lambda: f"keepalived pid {ka.proc.pid}" in
               topo.lvsxdp("status", check=False).stdout)
    ka.proc.kill()
    ka.proc.wait()
    st = topo.lvsxdp("status", check=False)
    assert st.returncode == 1
    assert (f"PROBLEM   lvsxdp keepalived (pid {ka.proc.pid}, {conf}) is not running: no "
            "health check changes the table any more") in st.stdout


# A second service on the NAT real, on 8080: "alt <client>".
ALT_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    with c:
        c.recv(4096)
        c.sendall(f"alt {peer[0]}\\n".encode())
"""


def test_nat_by_default_two_ports_of_one_real_follow_their_checkers(tmp_path):
    """keepalived's default method, NAT, on ipvs.sh's NAT topology (the
    real's default route is the director, see test_e2e_dr_routes): one
    real on two ports, 80 and 8080, each checked; clients get both, and
    only :80 once the 8080 service stops, while :80 stays."""
    conf = tmp_path / "nat.conf"
    conf.write_text(textwrap.dedent(f"""\
        virtual_server {NAT_VIP} 80 {{
            delay_loop {DELAY_LOOP}
            lb_algo rr
            protocol TCP
            real_server {NAT_REAL} 80 {{
                TCP_CHECK {{
                    connect_timeout 1
                    retry 0
                }}
            }}
            real_server {NAT_REAL} 8080 {{
                TCP_CHECK {{
                    connect_timeout 1
                    retry 0
                }}
            }}
        }}
        """))
    with TwoSegments(tmp_path, native=False, method="masq", prefix="lxq") as seg:
        alt = subprocess.Popen(["ip", "netns", "exec", seg.real, sys.executable, "-c",
                                ALT_SERVER], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               start_new_session=True)
        ka = None
        try:
            assert alt.stdout.readline().strip() == b"ready"
            seg.lvsxdp("up", "eth0", "eth1", "--mode", "generic")
            where = type("Where", (), {"state_dir": tmp_path / "state",
                                       "run_dir": tmp_path / "run",
                                       "director": seg.director})()
            ka = Keepalived(where, tmp_path, conf)

            def reals() -> dict[str, tuple[str, int]]:
                listing = seg.lvsxdp("ipvsadm", "-L", "-n").stdout
                return {m.group(1): (m.group(2), int(m.group(3))) for m in re.finditer(
                    r"-> (\S+)\s+(\w+)\s+(\d+)", listing)}

            both = {f"{NAT_REAL}:80": ("Masq", 1), f"{NAT_REAL}:8080": ("Masq", 1)}
            wait_until("both ports in the table", lambda: reals() == both)
            assert "no forwarding method set, setting default NAT" in ka.text()
            seg.wait_for_real(NAT_REAL)
            # rr over the two: the real sees the client itself on each port
            assert {seg.ask(NAT_VIP) for _ in range(4)} == {f"real {NAT_CLIENT}",
                                                            f"alt {NAT_CLIENT}"}

            alt.kill()
            alt.wait()
            wait_until("8080 out, 80 kept", lambda: reals() == {f"{NAT_REAL}:80": ("Masq", 1)},
                       timeout=DELAY_LOOP + 2)
            assert [seg.ask(NAT_VIP) for _ in range(4)] == [f"real {NAT_CLIENT}"] * 4
            assert ka.stop() == 0
            assert reals() == {}
        finally:
            if ka is not None:
                ka.stop()
            if alt.poll() is None:
                alt.kill()
                alt.wait()
