"""lvsxdp as an operator runs it: every command under `ip netns exec`, the
way operators enter a namespace (it remounts /sys and hides the pins), with
real packets through the attached program and the listings' counters."""

import json
import secrets
import subprocess
import time

from nsdirector import LVSXDP, cli, namespaces

from lvsxdp import runtime
from lvsxdp.lab import run

VIP, REAL, REAL_MAC = "198.18.2.1", "198.18.2.100", "02:00:00:00:00:64"
SMALL = ("--mode", "generic", "--conns", "4096", "--templates", "4096")


def netns_exec(ns, env, *args, stdin=None, timeout=90):
    return subprocess.run(["ip", "netns", "exec", ns, *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def lx(ns, env, *args, **kw):
    """`ip netns exec NS lvsxdp ARGS`."""
    return netns_exec(ns, env, LVSXDP, *args, **kw)


def ok(out):
    assert out.returncode == 0 and "Traceback" not in out.stderr, (out.stdout, out.stderr)
    return out.stdout


def wire(ns):
    """eth0 (the director's) on 198.18.2.0/24, the real's MAC known for
    good: a SYN sent into eth1 reaches eth0's program and is forwarded."""
    run(ns, "ip", "link", "set", "lo", "up")
    run(ns, "ip", "addr", "add", "198.18.2.2/24", "dev", "eth0")
    run(ns, "ip", "neigh", "replace", REAL, "lladdr", REAL_MAC, "dev", "eth0", "nud",
        "permanent")


def send_syns(ns, env, count):
    mac = run(ns, "cat", "/sys/class/net/eth0/address").stdout.strip()
    code = ("from scapy.all import Ether, IP, TCP, sendp\n"
            f"sendp([Ether(dst={mac!r})/IP(src='198.18.2.50', dst={VIP!r})/"
            f"TCP(sport=40000 + i, dport=80, flags='S') for i in range({count})], "
            "iface='eth1', verbose=0)\n")
    ok(netns_exec(ns, env, str(LVSXDP).replace("lvsxdp", "python"), "-c", code))


def service_line(listing):
    return next(line for line in listing.splitlines() if line.startswith("TCP"))


def test_every_command_works_under_ip_netns_exec(tmp_path):
    with namespaces(tmp_path, "lxo") as ([ns], env):
        wire(ns)
        assert "lvsxdp up on eth0" in ok(lx(ns, env, "up", "eth0", *SMALL))
        ok(lx(ns, env, "ipvsadm", "-A", "-t", f"{VIP}:80", "-s", "rr"))
        ok(lx(ns, env, "ipvsadm", "-a", "-t", f"{VIP}:80", "-r", REAL, "-g"))
        send_syns(ns, env, 3)

        stats = ok(lx(ns, env, "ipvsadm", "-L", "-n", "--stats"))
        assert service_line(stats).split()[:3] == ["TCP", f"{VIP}:80", "3"], stats
        # the same numbers as `lvsxdp -n NS` and the installed ipvsadm there
        assert cli(env, ns, "ipvsadm", "-L", "-n", "--stats").stdout == stats
        assert ok(netns_exec(ns, env, LVSXDP.replace("lvsxdp", "ipvsadm"), "-L", "-n",
                             "--stats")) == stats
        conns = ok(lx(ns, env, "ipvsadm", "-L", "-n", "-c"))
        assert sum(f"{VIP}:80" in line for line in conns.splitlines()) == 3, conns

        status = ok(lx(ns, env, "status"))
        assert status.startswith(f"director  {ns}: eth0 (generic XDP"), status
        assert "PROBLEM" not in status
        assert json.loads(ok(lx(ns, env, "status", "--json")))["agent_alive"] is True

        data = json.loads(ok(lx(ns, env, "top", "--json", "--interval", "0")))
        [svc] = data["services"]
        assert (svc["conns"], [r["address"] for r in svc["reals"]]) == (3, [REAL])
        assert REAL in ok(lx(ns, env, "top", "--once", "--interval", "0"))

        port = 20000 + secrets.randbelow(20000)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, LVSXDP, "metrics", "--listen",
                                 f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().startswith(f"lvsxdp metrics of {ns} on ")
            code = (f"import urllib.request; print(urllib.request.urlopen("
                    f"'http://127.0.0.1:{port}/metrics', timeout=10).read().decode())")
            text = ok(netns_exec(ns, env, LVSXDP.replace("lvsxdp", "python"), "-c", code))
            assert "lvsxdp_up 1.0" in text
            assert (f'lvsxdp_service_connections_total{{local_address="{VIP}",local_mark="",'
                    f'local_port="80",proto="TCP"}} 3.0') in text, text
        finally:
            proc.terminate()
            proc.wait(timeout=30)

        out = ok(lx(ns, env, "restart", "eth0"))
        assert "kept 3 connections" in out, out
        out = ok(lx(ns, env, "down", "eth0"))
        assert "tables kept: 3 connections" in out, out
        assert (runtime.PIN_ROOT / ns / "config").exists()
        out = lx(ns, env, "status")
        assert out.returncode != 0 and "no director is running" in out.stderr
        assert "resumed 3 connections" in ok(lx(ns, env, "up", "eth0", *SMALL))
        ok(lx(ns, env, "down", "eth0", "--flush"))
        # down under ip netns exec removes the pins; nothing is orphaned
        assert not (runtime.PIN_ROOT / ns).exists()
        assert not (tmp_path / "run" / f"{ns}.json").exists()


def wait_for(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False
