"""lvsxdp as an operator runs it: every command under `ip netns exec`, the
way operators enter a namespace (it remounts /sys and hides the pins), with
real packets through the attached program and the listings' counters."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time

from nsdirector import LVSXDP, cli, namespaces

from lvsxdp import runtime, service
from lvsxdp.lab import run

VIP, REAL, REAL_MAC = "198.18.2.1", "198.18.2.100", "02:00:00:00:00:64"
SMALL = ("--mode", "generic", "--conns", "4096", "--templates", "4096")


def netns_exec(ns, env, *args, stdin=None, timeout=600):  # `up` in an emulated VM: minutes
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
    """count TCP connections from one client, each a SYN and then the
    client's ACK: ESTABLISHED (15 min), not SYN_RECV, which expires in 30 s,
    sooner than a slow run of a test ends."""
    mac = run(ns, "cat", "/sys/class/net/eth0/address").stdout.strip()
    code = ("from scapy.all import Ether, IP, TCP, sendp\n"
            f"p = lambda i, f: Ether(dst={mac!r})/IP(src='198.18.2.50', dst={VIP!r})/"
            "TCP(sport=40000 + i, dport=80, flags=f, seq=1000 + (f == 'A'), ack=0 if f == 'S' "
            "else 5000)\n"
            f"sendp([p(i, f) for i in range({count}) for f in 'SA'], iface='eth1', verbose=0)\n")
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
        assert sum("ESTABLISHED" in line and f"{VIP}:80" in line
                   for line in conns.splitlines()) == 3, conns

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


def test_the_unit_and_the_settings_file(tmp_path):
    unit = ok(subprocess.run([LVSXDP, "service", "--unit"], capture_output=True, text=True))
    for line in ("Type=notify", f"ExecStart={LVSXDP} service run",
                 "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=mixed", "Restart=on-failure"):
        assert line in unit.splitlines(), unit
    (tmp_path / "lvsxdp.service").write_text(unit)
    out = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "lvsxdp.service")],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    example = ok(subprocess.run([LVSXDP, "service", "--example"], capture_output=True,
                                text=True))
    (tmp_path / "defaults").write_text(example)
    s = service.read_defaults(tmp_path / "defaults")
    assert (s.ifaces, s.mode, s.auto, str(s.rules)) == (["eth0"], "auto", True,
                                                        "/etc/ipvsadm.rules")
    (tmp_path / "defaults").write_text(example + 'IFACE="eth1"\n')
    out = subprocess.run([LVSXDP, "service", "--config", str(tmp_path / "defaults"), "run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().endswith("unknown setting IFACE (IFACES, MODE, AUTO, RULES, "
                                       "CONNS, TEMPLATES)"), out.stderr
    assert len(out.stderr.splitlines()) == 1


def runtime_record(tmp_path, ns):
    try:
        return json.loads((tmp_path / "run" / f"{ns}.json").read_text())
    except (OSError, ValueError):
        return {}


def alive(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"lvsxdp.agent" in f.read()
    except OSError:
        return False


def test_service_run_restores_at_boot_supervises_the_agent_reloads_and_stops(tmp_path):
    with namespaces(tmp_path, "lxo") as ([ns], env):
        wire(ns)
        rules = tmp_path / "ipvsadm.rules"
        rules.write_text(f"-A -t {VIP}:80 -s rr\n-a -t {VIP}:80 -r {REAL}:80 -g -w 1\n"
                         "-A -t 198.18.2.1:80 -s rr\n")  # a line twice: reported, skipped
        defaults = tmp_path / "defaults"
        defaults.write_text(f'IFACES="eth0"\nMODE="generic"\nAUTO="true"\nRULES="{rules}"\n'
                            'CONNS="4096"\nTEMPLATES="4096"\n')
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(120)
        senv = dict(env, NOTIFY_SOCKET=str(tmp_path / "notify"))
        log = open(tmp_path / "service.log", "w")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, LVSXDP, "service", "--config",
                                 str(defaults), "run"], env=senv, stdout=log, stderr=log)
        try:
            assert notify.recv(4096).decode().startswith("READY=1\n")
            # the rules file, as ipvsadm-restore at boot
            assert cli(env, ns, "ipvsadm", "-S", "-n").stdout == (
                f"-A -t {VIP}:80 -s rr\n-a -t {VIP}:80 -r {REAL}:80 -g -w 1\n")
            assert ok(lx(ns, env, "status")).startswith(f"director  {ns}: eth0 (generic XDP")
            send_syns(ns, env, 2)
            prog = runtime_record(tmp_path, ns)["prog_id"]

            # an agent that dies is started again: 1 s, then 2 s
            for pause in (1, 2):
                pid = runtime_record(tmp_path, ns)["agent_pid"]
                os.kill(pid, signal.SIGKILL)
                t0 = time.monotonic()
                assert wait_for(lambda pid=pid: runtime_record(tmp_path, ns).get("agent_pid")
                                not in (None, pid), 30)
                assert time.monotonic() - t0 >= pause - 0.1
                assert wait_for(lambda: alive(runtime_record(tmp_path, ns)["agent_pid"]), 30)
            assert lx(ns, env, "status").returncode == 0

            # reload: the settings again; the agent and the program stay, the
            # connections too
            pid = runtime_record(tmp_path, ns)["agent_pid"]
            proc.send_signal(signal.SIGHUP)
            assert notify.recv(4096) == b"RELOADING=1"
            assert notify.recv(4096) == b"READY=1"
            time.sleep(1)
            assert runtime_record(tmp_path, ns)["agent_pid"] == pid and alive(pid)
            assert runtime_record(tmp_path, ns)["prog_id"] == prog
            listing = cli(env, ns, "ipvsadm", "-L", "-n", "--stats").stdout
            assert service_line(listing).split()[:3] == ["TCP", f"{VIP}:80", "2"]

            # reload with one more interface: swapped in place, a new agent
            defaults.write_text(defaults.read_text().replace('"eth0"', '"eth0 eth1"'))
            proc.send_signal(signal.SIGHUP)
            assert notify.recv(4096) == b"RELOADING=1"
            assert notify.recv(4096) == b"READY=1"
            info = runtime_record(tmp_path, ns)
            assert info["ifaces"] == ["eth0", "eth1"] and info["prog_id"] != prog
            assert alive(info["agent_pid"]) and not alive(pid)
            pid = info["agent_pid"]
            conns = cli(env, ns, "ipvsadm", "-L", "-n", "-c").stdout
            assert sum(f"{VIP}:80" in line for line in conns.splitlines()) == 2, conns

            # stop: detached, agent gone, tables kept
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            assert notify.recv(4096) == b"STOPPING=1"
            assert not alive(pid)
            assert not runtime_record(tmp_path, ns)
            assert (runtime.PIN_ROOT / ns / "config").exists()
            link = run(ns, "ip", "-j", "-d", "link", "show", "eth0").stdout
            assert "xdp" not in json.loads(link)[0], link

            # a restart is no boot: the rules file is not loaded again, the
            # tables and the configuration are resumed
            rules.write_text(f"-A -t {VIP}:443 -s rr\n")
            proc = subprocess.Popen(["ip", "netns", "exec", ns, LVSXDP, "service", "--config",
                                     str(defaults), "run"], env=senv, stdout=log, stderr=log)
            assert notify.recv(4096).decode().startswith("READY=1\n")
            assert f"{VIP}:443" not in cli(env, ns, "ipvsadm", "-S", "-n").stdout
            conns = cli(env, ns, "ipvsadm", "-L", "-n", "-c").stdout
            assert sum(f"{VIP}:80" in line for line in conns.splitlines()) == 2, conns
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
            notify.close()
            log.close()
        text = (tmp_path / "service.log").read_text()
        assert "Traceback" not in text, text
        assert "Service already exists" in text


def test_a_kernel_rule_lvsxdp_cannot_follow_is_shown_and_the_chain_is_not_polled(tmp_path):
    """iptables-save runs when the nftables generation moves, not four
    times a second; a rule lvsxdp cannot follow is a PROBLEM in status, a
    line in top and a metric."""
    with namespaces(tmp_path, "lxo") as ([ns], env):
        wire(ns)
        calls = tmp_path / "calls"
        bindir = tmp_path / "bin"
        bindir.mkdir()
        real = shutil.which("iptables-save")
        (bindir / "iptables-save").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                                              f'exec {real} "$@"\n')
        (bindir / "iptables-save").chmod(0o755)
        env = dict(env, PATH=f"{bindir}:{env['PATH']}")
        cli(env, ns, "up", "eth0", *SMALL)

        def saves():
            lines = calls.read_text().splitlines() if calls.exists() else []
            return sum(line.startswith("-t mangle") for line in lines)

        time.sleep(1)
        before = saves()
        time.sleep(4)
        assert saves() == before  # nothing changed: not one fork in 4 s

        rule = ["-A", "PREROUTING", "-m", "conntrack", "--ctstate", "NEW", "-j", "MARK",
                "--set-mark", "1"]
        run(ns, "iptables", "-t", "mangle", *rule)
        shown = ("-A PREROUTING -m conntrack --ctstate NEW -j MARK --set-xmark "
                 "0x1/0xffffffff")
        record = tmp_path / "run" / f"{ns}.agent.json"
        assert wait_for(lambda: record.exists() and json.loads(record.read_text())[
            "skipped_rules"], 5)
        assert saves() - before in (1, 2)  # the change, and maybe the nft table's creation

        status = cli(env, ns, "status", check=False)
        assert status.returncode == 1
        assert [line for line in status.stdout.splitlines() if line.startswith("PROBLEM")] == [
            f"PROBLEM   kernel mangle rule not followed: {shown} (match \"conntrack\" is not "
            "supported by lvsxdp (supported: tcp, udp, multiport, comment)): packets it marks "
            "get no firewall-mark service"]
        data = json.loads(cli(env, ns, "top", "--json", "--interval", "0").stdout)
        assert [r["rule"] for r in data["director"]["kernel_rules_skipped"]] == [shown]
        screen = cli(env, ns, "top", "--once", "--interval", "0").stdout
        assert "kernel rule NOT FOLLOWED: -A PREROUTING -m conntrack --ctstate NEW" in screen

        port = 20000 + secrets.randbelow(20000)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, LVSXDP, "metrics", "--listen",
                                 f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            proc.stdout.readline()
            code = (f"import urllib.request; print(urllib.request.urlopen("
                    f"'http://127.0.0.1:{port}/metrics', timeout=10).read().decode())")
            text = ok(netns_exec(ns, env, LVSXDP.replace("lvsxdp", "python"), "-c", code))
            assert f'lvsxdp_kernel_rule_skipped{{rule="{shown}"}} 1.0' in text, text
        finally:
            proc.terminate()
            proc.wait(timeout=30)

        run(ns, "iptables", "-t", "mangle", "-D", "PREROUTING", *rule[2:])
        assert wait_for(lambda: not json.loads(record.read_text())["skipped_rules"], 5)
        assert cli(env, ns, "status").returncode == 0


def test_metrics_listen_on_127_0_0_1_by_default(tmp_path):
    with namespaces(tmp_path, "lxo") as ([ns], env):
        wire(ns)
        cli(env, ns, "up", "eth0", *SMALL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, LVSXDP, "metrics"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == (f"lvsxdp metrics of {ns} on "
                                              "http://127.0.0.1:9652/metrics\n")
            listening = run(ns, "ss", "-Htln").stdout.split()
            assert "127.0.0.1:9652" in listening and "0.0.0.0:9652" not in listening
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_status_exits_1_with_a_problem_line_for_each_thing_wrong(tmp_path):
    with namespaces(tmp_path, "lxo") as ([ns], env):
        wire(ns)
        cli(env, ns, "up", "eth0", *SMALL)
        cli(env, ns, "ipvsadm", "-A", "-t", f"{VIP}:80", "-s", "rr")
        cli(env, ns, "ipvsadm", "-a", "-t", f"{VIP}:80", "-r", REAL, "-g")
        assert "PROBLEM" not in cli(env, ns, "status").stdout
        # a real no neighbour answers for, a real no route leads to
        cli(env, ns, "ipvsadm", "-a", "-t", f"{VIP}:80", "-r", "198.18.2.101", "-g")
        cli(env, ns, "ipvsadm", "-a", "-t", f"{VIP}:80", "-r", "198.18.9.1", "-g")
        # the program detached by hand, the agent killed
        run(ns, "ip", "link", "set", "dev", "eth0", "xdpgeneric", "off")
        pid = runtime_record(tmp_path, ns)["agent_pid"]
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not alive(pid))
        out = cli(env, ns, "status", check=False)
        assert out.returncode == 1 and out.stderr == ""
        problems = [line for line in out.stdout.splitlines() if line.startswith("PROBLEM")]
        assert problems == [
            "PROBLEM   no XDP program attached to eth0: nothing forwards there "
            "(`lvsxdp restart eth0` attaches it)",
            f"PROBLEM   the agent (pid {pid}) is not running: nothing follows the reals' routes "
            "and MACs or tidies the tables (`lvsxdp restart eth0` starts one)",
            "PROBLEM   real 198.18.2.101 UNREACHABLE: no MAC on eth0 yet (the neighbour entry "
            "is not resolved)",
            "PROBLEM   real 198.18.9.1 UNREACHABLE: no route (Network is unreachable)",
        ], out.stdout
        st = json.loads(cli(env, ns, "status", "--json", check=False).stdout)
        assert st["problems"] == [p.removeprefix("PROBLEM   ") for p in problems]
        # restart mends what it can: program and agent
        cli(env, ns, "restart", "eth0")
        out = cli(env, ns, "status", check=False)
        assert out.returncode == 1
        assert sum(line.startswith("PROBLEM") for line in out.stdout.splitlines()) == 2
