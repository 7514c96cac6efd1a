"""`make rig`: lvsxdp between real VMs, brought up, run and torn down in one go.

    python3 tools/rig/run.py                 # up, scenarios, throughput, table, destroy
    python3 tools/rig/run.py --keep          # leave the rig up (vagrant/ as usual after)
    python3 tools/rig/run.py --destroy       # tear down a rig left up by --keep
    python3 tools/rig/run.py --seconds 20    # longer throughput runs

Four Vagrant VMs (vagrant/Vagrantfile, libvirt; KVM where the CPU can, TCG
otherwise) on one Ethernet segment, the seed's direct-routing setup with the
lab's addresses: a client (198.18.2.50-53), the director (198.18.2.2, VIP
198.18.2.1, lvsxdp in native XDP on virtio-net), two reals (198.18.2.100, .200:
nginx on 80/8080/443, vsftpd passive 2000-2100, a banner on 22).

1. The seed's four scenarios with real clients across the VMs: PCC, PPC, a
   firewall mark for http+https, passive FTP; each client's answers checked.
2. Throughput, each run side by side on the same VMs: (a) lvsxdp, (b) the
   director kernel's IPVS with the same ipvsadm lines, (c) a bare XDP_TX
   forwarder (tools/rig/xdp_ceiling.py), the rig's ceiling. Packets per second
   from the kernel's pktgen in the client (64 B UDP from many client
   addresses: one template each), counted as they arrive at the reals;
   connections per second from wrk (one request per connection); the
   director's CPU per Mpps. A table with a/b and a/c.

Everything it made goes at the end (domains, networks, volumes, the libvirt
daemons it started), also when it fails; only --keep leaves the VMs."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from tools.rig.box import CACHE, ensure_box  # noqa: E402
from tools.vm.errors import VmError  # noqa: E402

VAGRANT_DIR = ROOT / "vagrant"
BOX_NAME = "lvsxdp-rig"
VIP = "198.18.2.1"
DIRECTOR = "198.18.2.2"
CLIENTS = ("198.18.2.50", "198.18.2.51", "198.18.2.52", "198.18.2.53")
REALS = {"real1": ("r1", "198.18.2.100"), "real2": ("r2", "198.18.2.200")}
LAN = "eth1"
PREFIX = "lvsxdp-rig"
# pktgen's sources: one template per address (PCC), away from the LAN's /24.
FLOOD_SRC = ("198.18.64.0", "198.18.127.255")
UDP_PORT = 5000
# bcc compiles the program in the director VM: minutes under TCG on a busy host.
UP_TIMEOUT = 900

# The seed's lines (lvsxdp.lab's, 192.168.2.x -> 198.18.2.x), the seed's
# `-i eth0` being the rig's LAN NIC eth1 (eth0 is Vagrant's management NIC).
from lvsxdp.lab import SEED_FTP, SEED_FWMARK, SEED_PCC, SEED_PPC  # noqa: E402


def rig_lines(lines: tuple[str, ...]) -> list[str]:
    return [line.replace("-i eth0", f"-i {LAN}") for line in lines]


class RigError(RuntimeError):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def log(text: str) -> None:
    print(f"lvsxdp-rig: {text}", file=sys.stderr, flush=True)


def vagrant_env() -> dict[str, str]:
    return {**os.environ,
            "VAGRANT_HOME": str(CACHE / "vagrant-home"),
            "VAGRANT_DOTFILE_PATH": str(CACHE / "vagrant-dot"),
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "LVSXDP_RIG_DIST": str(CACHE / "dist")}


def vagrant(*args: str, timeout: float = 3600, check: bool = True) -> str:
    done = subprocess.run(["vagrant", *args], cwd=VAGRANT_DIR, env=vagrant_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-8:]
        raise RigError(f"vagrant {' '.join(args)} failed: " + " | ".join(tail))
    return done.stdout


def virsh(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args],
                          capture_output=True, text=True, timeout=60, check=check)


class Daemons:
    """libvirtd and virtlogd, started here when none runs (systemd is not PID 1
    on this project's machines) and ended, by pid, at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def ensure(self) -> None:
        if virsh("version").returncode == 0:
            return
        logs = CACHE / "daemons"
        logs.mkdir(parents=True, exist_ok=True)
        for daemon in ("virtlogd", "libvirtd"):
            path = shutil.which(daemon) or f"/usr/sbin/{daemon}"
            with open(logs / f"{daemon}.log", "ab") as out:
                self.started.append(subprocess.Popen([path], stdout=out, stderr=out,
                                                     start_new_session=True))
            time.sleep(0.5)
        for _ in range(60):
            if virsh("version").returncode == 0:
                log("started virtlogd and libvirtd (pids "
                    + ", ".join(str(p.pid) for p in self.started) + ")")
                return
            time.sleep(0.5)
        raise RigError(f"libvirtd did not answer within 30 s (log: {logs}/libvirtd.log)")

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.started.clear()


def add_box(box: Path) -> None:
    """The box into Vagrant's (rig-private) home, again when it was rebuilt."""
    stamp = CACHE / "vagrant-home.box-key"
    key = (CACHE / "lvsxdp-rig.box.key").read_text()
    listed = vagrant("box", "list", check=False)
    if BOX_NAME in listed and stamp.is_file() and stamp.read_text() == key:
        return
    log("adding the box to Vagrant")
    vagrant("box", "add", "--force", "--name", BOX_NAME, str(box))
    # An older box's image left in libvirt's pool would be reused as is.
    for volume in pool_volumes():
        if volume.startswith(f"{BOX_NAME}_vagrant_box_image"):
            virsh("vol-delete", "--pool", "default", volume)
    stamp.write_text(key)


def pool_volumes() -> list[str]:
    done = virsh("vol-list", "--pool", "default")
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def build_dist() -> Path:
    """lvsxdp as a wheel and the wheels it depends on, for the VMs' pip
    (--no-index): the README's install, without a network in the VMs."""
    dist = CACHE / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    python = str(ROOT / ".venv/bin/python")
    for command in ([python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
                    [python, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dist),
                     "pyroute2>=0.9", "click>=8", "rich>=13", "numpy>=1.24",
                     "prometheus-client>=0.17"]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RigError(f"{command[2:5]}: {done.stderr.strip().splitlines()[-1:]}")
    return dist


@dataclass
class Rig:
    ssh_config: Path

    def sh(self, host: str, script: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run(
            ["ssh", "-F", str(self.ssh_config), "-o", "LogLevel=ERROR", host,
             "sudo", "bash", "-euo", "pipefail", "-s"],
            input=script, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RigError(f"{host}: exit {done.returncode}: {script.strip().splitlines()[0]}"
                           f" ... | {done.stderr.strip()[-400:]}")
        return done.stdout

    def put(self, host: str, local: Path, remote: str) -> None:
        subprocess.run(["scp", "-q", "-F", str(self.ssh_config), "-o", "LogLevel=ERROR",
                        str(local), f"{host}:{remote}"], check=True, timeout=60)

    def mac(self, host: str) -> str:
        return self.sh(host, f"cat /sys/class/net/{LAN}/address").strip()


REAL_SETUP = r"""
name={name}
# The VIP on lo, answered for by the director only (DR: arp_ignore/announce).
sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
sysctl -qw net.ipv4.conf.{lan}.arp_ignore=1 net.ipv4.conf.{lan}.arp_announce=2
ip addr replace {vip}/32 dev lo
# sshd keeps to the management address, so the banner can take VIP:22.
mgmt=$(ip -4 -o addr show eth0 | awk '{{print $4}}' | cut -d/ -f1)
echo "ListenAddress $mgmt" > /etc/ssh/sshd_config.d/rig.conf
systemctl restart ssh
mkdir -p /srv/rig/ftp /etc/rig
echo "$name" > /srv/rig/index.html
echo "$name" > /srv/rig/ftp/whoami.txt
test -f /etc/rig/cert.pem || openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
    -subj /CN=rig -keyout /etc/rig/key.pem -out /etc/rig/cert.pem 2>/dev/null
cat > /etc/nginx/sites-enabled/default <<NGX
server {{
    listen 80 reuseport backlog=4096;
    listen 8080;
    listen 443 ssl;
    ssl_certificate /etc/rig/cert.pem;
    ssl_certificate_key /etc/rig/key.pem;
    root /srv/rig;
    access_log off;
    location / {{ try_files /index.html =404; }}
}}
NGX
systemctl restart nginx
cat > /etc/vsftpd.conf <<FTP
listen=YES
listen_ipv6=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=/srv/rig/ftp
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=2000
pasv_max_port=2100
pasv_address={vip}
connect_from_port_20=NO
seccomp_sandbox=NO
FTP
systemctl restart vsftpd
# The seed's second service is ssh on 22: a banner naming the real.
systemctl stop rig-banner 2>/dev/null || true
systemctl reset-failed rig-banner 2>/dev/null || true
systemd-run --collect --unit rig-banner socat TCP-LISTEN:22,bind={vip},fork,reuseaddr \
    SYSTEM:"echo SSH-2.0-$name"
sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_tw_reuse=1
"""

CLIENT_SETUP = r"""
for a in {extra}; do ip addr replace $a/24 dev {lan}; done
sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
modprobe pktgen
"""

DIRECTOR_SETUP = r"""
ip addr replace {vip}/32 dev {lan}
# Native XDP_TX on virtio-net wants a spare queue pair per vCPU (else a locked
# fallback): the stack keeps one per vCPU.
ethtool -L {lan} combined $(nproc) 2>/dev/null || true
modprobe ip_vs
"""


def setup(rig: Rig) -> None:
    for host, (name, _) in REALS.items():
        rig.sh(host, REAL_SETUP.format(name=name, vip=VIP, lan=LAN))
    rig.sh("client", CLIENT_SETUP.format(extra=" ".join(CLIENTS[1:]), lan=LAN))
    rig.sh("director", DIRECTOR_SETUP.format(vip=VIP, lan=LAN))


# -- the seed's scenarios ------------------------------------------------------

def ask(rig: Rig, kind: str, client: str) -> str | None:
    """Which real answered `kind` for `client` ("r1", "r2" or None)."""
    commands = {
        "http": f"curl -s -m 10 --interface {client} http://{VIP}/",
        "https": f"curl -sk -m 10 --interface {client} https://{VIP}/",
        "ssh": f"socat -T 5 - TCP:{VIP}:22,bind={client} </dev/null",
        "ftp": f"curl -s -m 20 --ftp-pasv --interface {client} ftp://{VIP}/whoami.txt",
    }
    out = rig.sh("client", commands[kind] + " || true", timeout=60)
    m = re.search(r"\b(r\d)\b", out)
    return m.group(1) if m else None


def lvsxdp_lines(rig: Rig, lines: list[str]) -> None:
    script = "\n".join(
        line if line.startswith("iptables")
        else "/opt/lvsxdp/bin/" + line  # lvsxdp's installed ipvsadm, not Debian's
        for line in lines)
    # Each line is a Python start-up in the VM: seconds each under TCG.
    rig.sh("director", script, timeout=60 * len(lines) + 120)


def scenario(rig: Rig, title: str, lines: list[str], kinds: tuple[str, ...],
             rule: str, rounds: int = 2) -> bool:
    say(f"\n== {title}")
    for line in lines:
        say(f"director# {line}")
    rig.sh("director", "iptables -t mangle -F PREROUTING; /opt/lvsxdp/bin/ipvsadm -C")
    lvsxdp_lines(rig, lines)
    time.sleep(1.5)  # the agent follows the kernel's mangle chain
    seen: dict[str, dict[str, set]] = {}
    for _ in range(rounds):
        for client in CLIENTS:
            for kind in kinds:
                seen.setdefault(client, {}).setdefault(kind, set()).add(ask(rig, kind, client))
    problems = []
    for client, answers in seen.items():
        say(f"  {client}: " + ", ".join(f"{k}->{'/'.join(sorted(map(str, v)))}"
                                        for k, v in answers.items()))
        for kind, reals in answers.items():
            if None in reals or len(reals) != 1:
                problems.append(f"{client} {kind}: answered by {sorted(map(str, reals))}")
        if rule == "one-real" and len(set().union(*answers.values())) != 1:
            problems.append(f"{client}: not one real for {', '.join(kinds)}")
    if rule != "ppc-80-r1":
        used = set().union(*(set().union(*a.values()) for a in seen.values()))
        if used != {"r1", "r2"}:
            problems.append(f"the scheduler used only {sorted(map(str, used))}")
    else:
        if any(seen[c]["http"] != {"r1"} for c in CLIENTS):
            problems.append("port 80 has only 198.18.2.100 (r1)")
    # The templates (NONE/ASSURED) and a few connections, as ipvsadm lists them.
    listing = rig.sh("director", "/opt/lvsxdp/bin/ipvsadm -L -n -c").splitlines()
    templates = [line for line in listing if line.split()[2:3] in (["NONE"], ["ASSURED"])]
    say("\n".join(listing[:2] + templates + [x for x in listing[2:] if x not in templates][:6]))
    for problem in problems:
        say(f"  FAIL {problem}")
    say(f"  {'ok' if not problems else 'FAILED'}: {title}")
    return not problems


def scenarios(rig: Rig) -> bool:
    rig.sh("director", f"lvsxdp up {LAN} --mode native >/dev/null && "
                       f"ip -d link show {LAN} | grep -o 'prog/xdp id [0-9]*'", timeout=UP_TIMEOUT)
    mode = rig.sh("director", f"ip -d link show {LAN} | grep -o 'xdp[a-z]*' | head -1").strip()
    say(f"director: lvsxdp attached to {LAN} as `{mode}` "
        f"({'native' if mode == 'xdp' else 'NOT native'} XDP on virtio-net)")
    results = [
        scenario(rig, "PCC: one real per client, every port", rig_lines(SEED_PCC),
                 ("http", "https", "ssh", "ftp"), "one-real"),
        scenario(rig, "PPC: one real per client and port", rig_lines(SEED_PPC),
                 ("http", "ssh"), "ppc-80-r1"),
        scenario(rig, "Firewall mark 10: http and https together", rig_lines(SEED_FWMARK),
                 ("http", "https"), "one-real"),
        scenario(rig, "Passive FTP: control and data on one real", rig_lines(SEED_FTP),
                 ("ftp",), "one-real"),
    ]
    rig.sh("director", "iptables -t mangle -F PREROUTING; /opt/lvsxdp/bin/ipvsadm -C")
    return all(results)


# -- throughput ----------------------------------------------------------------

PKTGEN = r"""
pg=/proc/net/pktgen
echo "reset" > $pg/pgctrl
echo "rem_device_all" > $pg/kpktgend_0
echo "add_device {lan}" > $pg/kpktgend_0
d=$pg/{lan}
echo "count 0" > $d
echo "clone_skb 0" > $d
echo "pkt_size {size}" > $d
echo "delay 0" > $d
echo "dst {vip}" > $d
echo "dst_mac {mac}" > $d
echo "src_min {smin}" > $d
echo "src_max {smax}" > $d
echo "flag IPSRC_RND" > $d
echo "udp_src_min 10000" > $d
echo "udp_src_max 60000" > $d
echo "flag UDPSRC_RND" > $d
echo "udp_dst_min {port}" > $d
echo "udp_dst_max {port}" > $d
(timeout -s INT {seconds} sh -c "echo start > $pg/pgctrl" || true) >/dev/null 2>&1
grep -o "pkts-sofar: [0-9]*" $d | awk '{{print $2}}'
"""

COUNTERS = r"""
cat /sys/class/net/{lan}/statistics/rx_packets
head -1 /proc/stat
"""


def _cpu_busy(stat_line: str) -> tuple[int, int]:
    fields = [int(x) for x in stat_line.split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def packet_run(rig: Rig, seconds: int, size: int) -> dict[str, float]:
    """pktgen for `seconds`; what the client sent and the reals received."""
    before = {h: rig.sh(h, COUNTERS.format(lan=LAN)).split("\n") for h in (*REALS, "director")}
    mac = rig.mac("director")
    start = time.monotonic()
    sent = int(rig.sh("client", PKTGEN.format(
        lan=LAN, size=size, vip=VIP, mac=mac, smin=FLOOD_SRC[0], smax=FLOOD_SRC[1],
        port=UDP_PORT, seconds=seconds), timeout=seconds + 120).strip() or 0)
    elapsed = time.monotonic() - start
    after = {h: rig.sh(h, COUNTERS.format(lan=LAN)).split("\n") for h in (*REALS, "director")}
    received = sum(int(after[h][0]) - int(before[h][0]) for h in REALS)
    busy0, total0 = _cpu_busy(before["director"][1])
    busy1, total1 = _cpu_busy(after["director"][1])
    cpus = int(rig.sh("director", "nproc").strip())
    cpu_share = (busy1 - busy0) / max(1, total1 - total0) * cpus  # CPUs kept busy
    return {"sent_pps": sent / elapsed, "fwd_pps": received / elapsed,
            "director_cpus": cpu_share,
            "cpu_per_mpps": cpu_share / (received / elapsed / 1e6) if received else 0.0}


def conn_run(rig: Rig, seconds: int) -> float:
    """wrk with one request per connection: connections per second through the VIP."""
    out = rig.sh("client", f"wrk -t1 -c16 -d{seconds}s -H 'Connection: close' http://{VIP}/",
                 timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not m:
        raise RigError(f"wrk printed no rate: {out[-300:]}")
    return float(m.group(1))


THROUGHPUT_LINES = [
    f"ipvsadm -A -u {VIP}:{UDP_PORT} -s rr -p 300",
    f"ipvsadm -a -u {VIP}:{UDP_PORT} -r {REALS['real1'][1]} -g",
    f"ipvsadm -a -u {VIP}:{UDP_PORT} -r {REALS['real2'][1]} -g",
    f"ipvsadm -A -t {VIP}:80 -s rr",
    f"ipvsadm -a -t {VIP}:80 -r {REALS['real1'][1]} -g",
    f"ipvsadm -a -t {VIP}:80 -r {REALS['real2'][1]} -g",
]


def as_lvsxdp(rig: Rig) -> None:
    rig.sh("director", f"lvsxdp up {LAN} --mode native >/dev/null; "
                       "/opt/lvsxdp/bin/ipvsadm -C\n"
           + "\n".join("/opt/lvsxdp/bin/" + line for line in THROUGHPUT_LINES), timeout=UP_TIMEOUT)


def as_ipvs(rig: Rig) -> None:
    rig.sh("director", f"/opt/lvsxdp/bin/ipvsadm -C; lvsxdp down {LAN} >/dev/null 2>&1 || true\n"
           "/usr/sbin/ipvsadm -C\n"
           + "\n".join("/usr/sbin/" + line for line in THROUGHPUT_LINES))


def as_ceiling(rig: Rig) -> None:
    real_mac = rig.mac("real1")
    rig.sh("director", "/usr/sbin/ipvsadm -C\n"
           f"setsid nohup python3 /tmp/xdp_ceiling.py {LAN} {VIP} {real_mac} "
           "> /tmp/ceiling.log 2>&1 < /dev/null & echo $! > /tmp/ceiling.pid\n"
           "for i in $(seq 120); do\n"
           "  grep -q '^ceiling on' /tmp/ceiling.log && exit 0; sleep 1\n"
           "done\n"
           "cat /tmp/ceiling.log >&2; exit 1", timeout=180)


def end_ceiling(rig: Rig) -> None:
    rig.sh("director", "test -f /tmp/ceiling.pid && kill $(cat /tmp/ceiling.pid) || true; "
                       "sleep 2; rm -f /tmp/ceiling.pid", check=False)


def throughput(rig: Rig, seconds: int) -> list[dict]:
    rig.put("director", ROOT / "tools/rig/xdp_ceiling.py", "/tmp/xdp_ceiling.py")
    rows = []
    for method, prepare, cleanup in (("lvsxdp", as_lvsxdp, None), ("ipvs", as_ipvs, None),
                                     ("xdp_tx", as_ceiling, end_ceiling)):
        log(f"throughput through {method}")
        prepare(rig)
        time.sleep(2)
        row = {"method": method}
        row["udp64"] = packet_run(rig, seconds, 64)
        row["mix"] = {size: packet_run(rig, max(3, seconds // 3), size)["fwd_pps"]
                      for size in (594, 1514)}
        row["cps"] = conn_run(rig, seconds) if method != "xdp_tx" or True else 0.0
        if cleanup:
            cleanup(rig)
        rows.append(row)
    rig.sh("director", "/usr/sbin/ipvsadm -C; lvsxdp down eth1 >/dev/null 2>&1 || true",
           check=False)
    return rows


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    accel = "KVM" if re.search(r"\b(vmx|svm)\b", Path("/proc/cpuinfo").read_text()) else \
        "TCG (emulated: rates measure QEMU, not the NIC)"
    return f"{model}, {os.cpu_count()} CPUs, host {os.uname().release}, VMs under {accel}"


def table(rows: list[dict], seconds: int) -> str:
    by = {r["method"]: r for r in rows}
    a, b, c = by["lvsxdp"], by["ipvs"], by["xdp_tx"]

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}" if y else "-"
    lines = [f"Rig throughput, {time.strftime('%Y-%m-%d')}: {machine()}; {seconds} s per run",
             "",
             "| run | (a) lvsxdp | (b) IPVS | (c) bare XDP_TX | a/b | a/c |",
             "|---|---|---|---|---|---|"]
    for label, get in (
            ("64 B UDP, fwd pps", lambda r: r["udp64"]["fwd_pps"]),
            ("594 B UDP, fwd pps", lambda r: r["mix"][594]),
            ("1514 B UDP, fwd pps", lambda r: r["mix"][1514]),
            ("HTTP conns/s (wrk)", lambda r: r["cps"]),
            ("director CPUs busy per Mpps (64 B)", lambda r: r["udp64"]["cpu_per_mpps"])):
        lines.append(f"| {label} | {get(a):,.0f} | {get(b):,.0f} | {get(c):,.0f} | "
                     f"{ratio(get(a), get(b))} | {ratio(get(a), get(c))} |"
                     if "CPU" not in label else
                     f"| {label} | {get(a):.2f} | {get(b):.2f} | {get(c):.2f} | "
                     f"{ratio(get(a), get(b))} | {ratio(get(a), get(c))} |")
    lines.append(f"| pktgen sent (64 B), pps | {a['udp64']['sent_pps']:,.0f} | "
                 f"{b['udp64']['sent_pps']:,.0f} | {c['udp64']['sent_pps']:,.0f} | | |")
    return "\n".join(lines)


# -- up and down ---------------------------------------------------------------

def up(daemons: Daemons) -> Rig:
    daemons.ensure()
    box = ensure_box()
    add_box(box)
    build_dist()
    log("vagrant up (4 VMs; under TCG this takes minutes)")
    vagrant("up", "--provider", "libvirt", timeout=3600)
    config = CACHE / "ssh_config"
    config.write_text(vagrant("ssh-config"))
    rig = Rig(config)
    setup(rig)
    return rig


def destroy() -> None:
    vagrant("destroy", "-f", timeout=900, check=False)
    # What vagrant-libvirt may leave: its networks, the box's volume.
    for net in ("lvsxdp-rig-lan", "lvsxdp-rig-mgmt"):
        virsh("net-destroy", net)
        virsh("net-undefine", net)
    for volume in pool_volumes():
        if volume.startswith(PREFIX) or volume.startswith(f"{BOX_NAME}_vagrant_box"):
            virsh("vol-delete", "--pool", "default", volume)
    shutil.rmtree(CACHE / "vagrant-dot", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the rig up")
    parser.add_argument("--destroy", action="store_true", help="tear down a kept rig")
    parser.add_argument("--seconds", type=int, default=10, help="length of a throughput run")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lvsxdp-rig: run as root (libvirt, the box's root filesystem)", file=sys.stderr)
        return 2
    for tool in ("vagrant", "virsh", "mmdebstrap", "qemu-img"):
        if not shutil.which(tool):
            print(f"lvsxdp-rig: {tool} is missing (make rig installs it)", file=sys.stderr)
            return 2
    daemons = Daemons()
    ok = False
    try:
        if args.destroy:
            daemons.ensure()
            destroy()
            return 0
        rig = up(daemons)
        ok = scenarios(rig)
        if not args.no_throughput:
            rows = throughput(rig, args.seconds)
            text = table(rows, args.seconds)
            (CACHE / "last-table.md").write_text(text + "\n")
            (CACHE / "last-run.json").write_text(json.dumps(rows, indent=1, default=str))
            say("\n" + text)
        return 0 if ok else 1
    except (RigError, VmError, subprocess.TimeoutExpired) as error:
        print(f"lvsxdp-rig: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep or args.destroy:
            try:
                destroy()
            except Exception as error:  # noqa: BLE001 - teardown goes on
                print(f"lvsxdp-rig: teardown: {error}", file=sys.stderr)
        daemons.stop() if not args.keep else None


if __name__ == "__main__":
    sys.exit(main())
