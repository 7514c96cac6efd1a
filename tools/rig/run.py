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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
# IPv6 beside it on the same segment, as tests/test_e2e_seed.py has it.
VIP6 = "2001:db8:2::1"
DIRECTOR6 = "2001:db8:2::2"
CLIENTS6 = ("2001:db8:2::50", "2001:db8:2::51", "2001:db8:2::52", "2001:db8:2::53")
REALS6 = {"real1": "2001:db8:2::100", "real2": "2001:db8:2::200"}
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
        saved = CACHE / f"vagrant-{args[0]}.log"
        saved.write_text(done.stdout + done.stderr)
        errors = [line for line in done.stderr.splitlines()
                  if line.strip() and not line.startswith(("\t", " ", "/usr/"))]
        tail = (errors or done.stdout.strip().splitlines())[-6:]
        raise RigError(f"vagrant {' '.join(args)} failed (all of it: {saved}): "
                       + " | ".join(tail))
    return done.stdout


def virsh(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args],
                          capture_output=True, text=True, timeout=60, check=check)


def hardware_virt() -> bool:
    """As the Vagrantfile decides: KVM where the CPU has VT-x/AMD-V."""
    return bool(re.search(r"\b(vmx|svm)\b", Path("/proc/cpuinfo").read_text()))


def hide_kvm(command: list[str]) -> list[str]:
    """`command` in a mount namespace of its own where /dev/kvm is an empty
    file. This project's machines have a /dev/kvm (root's only) that cannot
    run the guests: libvirt's probe of QEMU finds KVM there, its check as the
    qemu user does not, and libvirt then throws its capability cache away
    and probes QEMU again (4-10 s under load) at nearly every API call
    vagrant-libvirt makes. With no KVM to find, both agree; the VMs run under
    TCG either way (the Vagrantfile picks it). libvirt would carry that mount
    into each VM's own /dev namespace and fail to: the same namespace gives
    libvirtd a qemu.conf (the host's, plus `namespaces = []`) without them.
    The host's files stay as they are."""
    stand_in = CACHE / "daemons" / "no-kvm"
    stand_in.touch(mode=0o600)
    conf = CACHE / "daemons" / "qemu.conf"
    conf.write_text(Path("/etc/libvirt/qemu.conf").read_text()
                    + "\n# lvsxdp rig (tools/rig/run.py): no per-VM /dev namespace\n"
                      "namespaces = []\n")
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            f'mount --bind "{stand_in}" /dev/kvm && '
            f'mount --bind "{conf}" /etc/libvirt/qemu.conf && exec "$0"', *command]


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
            command = [shutil.which(daemon) or f"/usr/sbin/{daemon}"]
            if daemon == "libvirtd" and Path("/dev/kvm").exists() and not hardware_virt():
                command = hide_kvm(command)
            with open(logs / f"{daemon}.log", "ab") as out:
                self.started.append(subprocess.Popen(command, stdout=out, stderr=out,
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
    director_mac: str = ""
    cpus: int = 1  # the director VM's

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
# IPv6 needs no arp_ignore: Linux answers a neighbour solicitation only for an
# address of the interface it came in on, and the VIP is on lo.
ip -6 addr replace {vip6}/128 dev lo
ip -6 addr replace {addr6}/64 dev {lan} nodad
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
    listen [::]:80 reuseport backlog=4096;
    listen 8080;
    # wrk's kept-alive connections stay the same connections for a whole run
    keepalive_requests 10000000;
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
for a in {addrs6}; do ip -6 addr replace $a/64 dev {lan} nodad; done
sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
modprobe pktgen
"""

DIRECTOR_SETUP = r"""
ip addr replace {vip}/32 dev {lan}
ip -6 addr replace {addr6}/64 dev {lan} nodad
ip -6 addr replace {vip6}/128 dev {lan} nodad
# Native XDP_TX on virtio-net wants a spare queue pair per vCPU (else a locked
# fallback): the stack keeps one per vCPU.
ethtool -L {lan} combined $(nproc) 2>/dev/null || true
# IPVS's connection hash at 2^20 buckets (its default, 2^12, would make the
# 1M-client run a test of chain walks): what an operator at that scale sets.
modprobe ip_vs conn_tab_bits=20
"""


def setup(rig: Rig) -> None:
    for host, (name, _) in REALS.items():
        rig.sh(host, REAL_SETUP.format(name=name, vip=VIP, lan=LAN, vip6=VIP6,
                                       addr6=REALS6[host]))
    rig.sh("client", CLIENT_SETUP.format(extra=" ".join(CLIENTS[1:]), lan=LAN,
                                         addrs6=" ".join(CLIENTS6)))
    rig.sh("director", DIRECTOR_SETUP.format(vip=VIP, lan=LAN, vip6=VIP6, addr6=DIRECTOR6))


# -- the seed's scenarios ------------------------------------------------------

def _ask_command(kind: str, client: str, vip: str) -> str:
    host = f"[{vip}]" if ":" in vip else vip
    return {
        "http": f"curl -gs -m 10 --interface {client} http://{host}/",
        "https": f"curl -gsk -m 10 --interface {client} https://{host}/",
        "ssh": f"socat -T 5 - TCP:{vip}:22,bind={client} </dev/null",
        "ftp": f"curl -gs -m 20 --ftp-pasv --interface {client} ftp://{host}/whoami.txt",
    }[kind]


def ask_all(rig: Rig, asks: list[tuple[str, str]], vip: str) -> list[str | None]:
    """Which real answered each (kind, client): "r1", "r2" or None. One ssh
    for all of them: an ssh round trip is a second or more under TCG."""
    script = "\n".join(f"echo \"@{n} $({_ask_command(kind, client, vip)} 2>/dev/null"
                       " | head -1 || true)\""
                       for n, (kind, client) in enumerate(asks))
    out = rig.sh("client", script, timeout=60 + 25 * len(asks))
    answers: list[str | None] = [None] * len(asks)
    for line in out.splitlines():
        m = re.match(r"@(\d+) .*?\b(r\d)\b", line)
        if m:
            answers[int(m.group(1))] = m.group(2)
    return answers


def lvsxdp_lines(rig: Rig, lines: list[str]) -> None:
    script = "\n".join(
        line if line.startswith("iptables")
        else "/opt/lvsxdp/bin/" + line  # lvsxdp's installed ipvsadm, not Debian's
        for line in lines)
    # Each line is a Python start-up in the VM: seconds each under TCG.
    rig.sh("director", script, timeout=60 * len(lines) + 120)


def scenario(rig: Rig, title: str, lines: list[str], kinds: tuple[str, ...],
             rule: str, rounds: int = 2, clients: tuple[str, ...] = CLIENTS,
             vip: str = VIP) -> bool:
    say(f"\n== {title}")
    for line in lines:
        say(f"director# {line}")
    rig.sh("director", "iptables -t mangle -F PREROUTING; /opt/lvsxdp/bin/ipvsadm -C")
    lvsxdp_lines(rig, lines)
    time.sleep(1.5)  # the agent follows the kernel's mangle chain
    asks = [(kind, client) for _ in range(rounds) for client in clients for kind in kinds]
    seen: dict[str, dict[str, set]] = {}
    for (kind, client), real in zip(asks, ask_all(rig, asks, vip), strict=True):
        seen.setdefault(client, {}).setdefault(kind, set()).add(real)
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
        if any(seen[c]["http"] != {"r1"} for c in clients):
            problems.append("port 80 has only 198.18.2.100 (r1)")
    # The templates (NONE/ASSURED) and a few connections, as ipvsadm lists them.
    listing = rig.sh("director", "/opt/lvsxdp/bin/ipvsadm -L -n -c").splitlines()
    templates = [line for line in listing if line.split()[2:3] in (["NONE"], ["ASSURED"])]
    say("\n".join(listing[:2] + templates + [x for x in listing[2:] if x not in templates][:6]))
    for problem in problems:
        say(f"  FAIL {problem}")
    say(f"  {'ok' if not problems else 'FAILED'}: {title}")
    return not problems


# The seed's PCC over IPv6 (the seed has no IPv6 lines; these are its PCC
# lines with the rig's IPv6 addresses, as tests/test_e2e_seed.py has them).
SCENARIO_IPV6 = [
    f"ipvsadm -A -t [{VIP6}]:80 -s rr -p 360",
    f"ipvsadm -a -t [{VIP6}]:80 -r [{REALS6['real1']}]:80 -g",
    f"ipvsadm -a -t [{VIP6}]:80 -r [{REALS6['real2']}]:80 -g",
]

# Sized once for the whole run, the 1M-client run included: resizing is a
# `down --flush` and another compile (minutes under TCG).
LVSXDP_UP = f"lvsxdp up {LAN} --mode native --conns 1048576 --templates 1048576"


def scenarios(rig: Rig) -> bool:
    rig.sh("director", f"{LVSXDP_UP} >/dev/null && "
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
        scenario(rig, "IPv6 PCC: one real per client", SCENARIO_IPV6, ("http",), "one-real",
                 clients=CLIENTS6, vip=VIP6),
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
echo "{sizing}" > $d
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

# The Internet's classic mix (7:4:1 of 64, 594 and 1514 bytes), in one run:
# pktgen draws each frame's size from these weights.
IMIX = "imix_weights 64,7 594,4 1514,1"

# A host's counters twice, `span` seconds apart, starting `lead` seconds after
# the generator: both samples inside the generator's run, whatever ssh's
# start-up costs each side (seconds under TCG).
WINDOW = r"""
snap() {{
  echo "$(cat /sys/class/net/{lan}/statistics/rx_packets) \
$(cat /sys/class/net/{lan}/statistics/rx_bytes) $(date +%s.%N) \
$(head -1 /proc/stat | awk '{{$1=""; print}}')"
}}
sleep {lead}; snap; sleep {span}; snap
"""


def _cpu_busy(fields: list[int]) -> tuple[int, int]:
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@dataclass
class Window:
    """What the reals received and how busy the director was, per second."""
    fwd_pps: float
    fwd_mbps: float
    director_cpus: float  # CPUs kept busy (the director VM has 2)

    @property
    def cpu_per_mpps(self) -> float:
        return self.director_cpus / (self.fwd_pps / 1e6) if self.fwd_pps else 0.0

    def as_dict(self) -> dict:
        return {"fwd_pps": self.fwd_pps, "fwd_mbps": self.fwd_mbps,
                "director_cpus": self.director_cpus, "cpu_per_mpps": self.cpu_per_mpps}


def measured(rig: Rig, script: str, seconds: float, lead: float = 2.0,
             timeout: float = 300) -> tuple[str, dict]:
    """Run `script` in the client (a generator of about `seconds`) and sample
    the reals and the director meanwhile."""
    span = max(1.0, seconds - lead - 1.0)
    hosts = (*REALS, "director")
    window = WINDOW.format(lan=LAN, lead=lead, span=span)
    with ThreadPoolExecutor(len(hosts) + 1) as pool:
        client = pool.submit(rig.sh, "client", script, timeout)
        samples = {h: pool.submit(rig.sh, h, window, timeout) for h in hosts}
        out = client.result()
        snaps = {h: [list(map(float, line.split())) for line in f.result().splitlines()[-2:]]
                 for h, f in samples.items()}
    packets = sum((snaps[h][1][0] - snaps[h][0][0]) / (snaps[h][1][2] - snaps[h][0][2])
                  for h in REALS)
    octets = sum((snaps[h][1][1] - snaps[h][0][1]) / (snaps[h][1][2] - snaps[h][0][2])
                 for h in REALS)
    busy0, total0 = _cpu_busy([int(x) for x in snaps["director"][0][3:]])
    busy1, total1 = _cpu_busy([int(x) for x in snaps["director"][1][3:]])
    cpus = rig.cpus
    win = Window(packets, octets * 8 / 1e6, (busy1 - busy0) / max(1, total1 - total0) * cpus)
    return out, win.as_dict()


def packet_run(rig: Rig, seconds: int, sizing: str) -> dict:
    """pktgen for `seconds`: what the client sent, the reals received, the
    director's CPU."""
    out, win = measured(rig, PKTGEN.format(
        lan=LAN, sizing=sizing, vip=VIP, mac=rig.director_mac, smin=FLOOD_SRC[0],
        smax=FLOOD_SRC[1], port=UDP_PORT, seconds=seconds), seconds, timeout=seconds + 120)
    return {"sent_pps": int(out.strip() or 0) / seconds, **win}


def _wrk_rate(out: str) -> tuple[float, int]:
    """Requests per second and socket errors (connect, read, write, timeout)."""
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not m:
        raise RigError(f"wrk printed no rate: {out[-300:]}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return float(m.group(1)), sum(map(int, errors.groups())) if errors else 0


def conn_run(rig: Rig, seconds: int) -> float:
    """wrk with one request per connection: connections per second through the VIP."""
    out = rig.sh("client", f"wrk -t1 -c16 -d{seconds}s -H 'Connection: close' http://{VIP}/",
                 timeout=seconds + 60)
    return _wrk_rate(out)[0]


FLOOD = r"""
python3 /tmp/blast.py syn4 {lan} {mac} {vip} 80 {flood_seconds} > /tmp/blast.json &
sleep 2
wrk -t1 -c16 -d{seconds}s --timeout 5s http://{vip}/
wait
echo "BLAST $(cat /tmp/blast.json)"
"""


def flood_run(rig: Rig, seconds: int) -> dict:
    """Established traffic (wrk, 16 kept-alive connections) alone, then beside
    a spoofed SYN flood to the same service from the same client VM. A broken
    connection shows as a wrk socket error (a reset, a timeout)."""
    out = rig.sh("client", f"wrk -t1 -c16 -d{seconds}s --timeout 5s http://{VIP}/",
                 timeout=seconds + 60)
    before, errors_before = _wrk_rate(out)
    out, win = measured(rig, FLOOD.format(lan=LAN, mac=rig.director_mac, vip=VIP,
                                          seconds=seconds, flood_seconds=seconds + 4),
                        seconds, lead=3.0, timeout=seconds + 120)
    during, errors = _wrk_rate(out)
    blast = json.loads(out.split("BLAST ", 1)[1])
    return {"rps_before": before, "errors_before": errors_before, "rps_during": during,
            "errors_during": errors, "flood_pps": blast["pps"], **win}


MILLION = 1_000_000


def million_run(rig: Rig, seconds: int, count_templates: str) -> dict:
    """Up to a million IPv6 clients of a persistent UDP service, two datagrams
    each (a UDP connection and its template are held at the second), for at
    most `seconds`: how many templates the director holds afterwards."""
    before = int(rig.sh("director", count_templates, timeout=900).strip())
    out, win = measured(rig, f"python3 /tmp/blast.py udp6 {LAN} {rig.director_mac} {VIP6} "
                             f"{UDP_PORT} {seconds} --clients {MILLION} --repeat 2",
                        seconds, timeout=seconds + 120)
    blast = json.loads(out.strip().splitlines()[-1])
    time.sleep(2)
    after = int(rig.sh("director", count_templates, timeout=900).strip())
    return {"clients": blast["sources"], "sent_pps": blast["pps"],
            "templates": after - before, **win}


# Templates in each director: lvsxdp's from its status, IPVS's as the sum of
# its reals' PersistConn (the templates bound to each: dest->persistconns).
# Not /proc/net/ip_vs_conn: its reader walks the hash table from the start
# at every chunk it returns, and at a million templates under TCG it did
# not finish in 15 minutes (2026-12-03).
LVSXDP_TEMPLATES = ("{ lvsxdp status --json || true; } | python3 -c "
                    "'import json,sys; print(json.load(sys.stdin)[\"templates\"])'")
IPVS_TEMPLATES = ("/usr/sbin/ipvsadm -L -n --persistent-conn"
                  " | awk '$1 == \"->\" && $4 ~ /^[0-9]+$/ {s += $4} END {print s + 0}'")

THROUGHPUT_LINES = [
    f"ipvsadm -A -u {VIP}:{UDP_PORT} -s rr -p 300",
    f"ipvsadm -a -u {VIP}:{UDP_PORT} -r {REALS['real1'][1]} -g",
    f"ipvsadm -a -u {VIP}:{UDP_PORT} -r {REALS['real2'][1]} -g",
    f"ipvsadm -A -t {VIP}:80 -s rr",
    f"ipvsadm -a -t {VIP}:80 -r {REALS['real1'][1]} -g",
    f"ipvsadm -a -t {VIP}:80 -r {REALS['real2'][1]} -g",
    # -p 3600: the templates are counted after the run, and a million clients
    # take 10-20 minutes under TCG: with -p 300 the first ones had expired by
    # then (1,000,000 clients sent, 187,132 templates counted, 2026-12-03)
    f"ipvsadm -A -u [{VIP6}]:{UDP_PORT} -s rr -p 3600",
    # Debian's ipvsadm takes an IPv6 real only with its port
    f"ipvsadm -a -u [{VIP6}]:{UDP_PORT} -r [{REALS6['real1']}]:{UDP_PORT} -g",
    f"ipvsadm -a -u [{VIP6}]:{UDP_PORT} -r [{REALS6['real2']}]:{UDP_PORT} -g",
]


def as_lvsxdp(rig: Rig) -> None:
    # Still up from the scenarios, sized for the 1M run: no second compile.
    rig.sh("director", f"ip link show {LAN} | grep -q 'prog/xdp' || {LVSXDP_UP} >/dev/null\n"
           "/opt/lvsxdp/bin/ipvsadm -C\n"
           + "\n".join("/opt/lvsxdp/bin/" + line for line in THROUGHPUT_LINES), timeout=UP_TIMEOUT)


def as_ipvs(rig: Rig) -> None:
    # --flush: lvsxdp's tables give their memory back before IPVS fills its own.
    rig.sh("director", f"/opt/lvsxdp/bin/ipvsadm -C; lvsxdp down {LAN} --flush >/dev/null 2>&1"
           " || true\n/usr/sbin/ipvsadm -C\n"
           + "\n".join("/usr/sbin/" + line for line in THROUGHPUT_LINES))


def as_ceiling(rig: Rig) -> None:
    macs = " ".join(rig.mac(r) for r in REALS)
    rig.sh("director", "/usr/sbin/ipvsadm -C\n"
           f"setsid nohup python3 /tmp/xdp_ceiling.py {LAN} {VIP} {macs} "
           "> /tmp/ceiling.log 2>&1 < /dev/null & echo $! > /tmp/ceiling.pid\n"
           "for i in $(seq 300); do\n"
           "  grep -q '^ceiling on' /tmp/ceiling.log && exit 0; sleep 1\n"
           "done\n"
           "cat /tmp/ceiling.log >&2; exit 1", timeout=360)


def end_ceiling(rig: Rig) -> None:
    rig.sh("director", "test -f /tmp/ceiling.pid && kill $(cat /tmp/ceiling.pid) || true; "
                       "sleep 2; rm -f /tmp/ceiling.pid", check=False)


def throughput(rig: Rig, seconds: int, million_seconds: int,
               methods: tuple[str, ...] = ("lvsxdp", "ipvs", "xdp_tx")) -> list[dict]:
    rig.put("director", ROOT / "tools/rig/xdp_ceiling.py", "/tmp/xdp_ceiling.py")
    rig.put("client", ROOT / "tools/rig/blast.py", "/tmp/blast.py")
    rig.director_mac = rig.mac("director")
    rig.cpus = int(rig.sh("director", "nproc").strip())
    rows = []
    for method, prepare, cleanup, templates in (
            ("lvsxdp", as_lvsxdp, None, LVSXDP_TEMPLATES),
            ("ipvs", as_ipvs, None, IPVS_TEMPLATES),
            ("xdp_tx", as_ceiling, end_ceiling, None)):
        if method not in methods:
            continue
        log(f"throughput through {method}")
        prepare(rig)
        time.sleep(2)
        row: dict = {"method": method}
        steps = [("udp64", lambda: packet_run(rig, seconds, "pkt_size 64")),
                 ("imix", lambda: packet_run(rig, seconds, IMIX)),
                 ("cps", lambda: conn_run(rig, seconds)),
                 ("flood", lambda: flood_run(rig, seconds))]
        if templates:  # the ceiling keeps no state and forwards IPv4 only
            # first: the earlier runs' templates would compete with its own
            steps.insert(0, ("million", lambda t=templates: million_run(rig, million_seconds, t)))
        for name, step in steps:
            began = time.monotonic()
            row[name] = step()
            log(f"  {name}: {json.dumps(row[name], default=str)[:300]} "
                f"({time.monotonic() - began:.0f} s)")
        if cleanup:
            cleanup(rig)
        rows.append(row)
    rig.sh("director", f"/usr/sbin/ipvsadm -C; lvsxdp down {LAN} >/dev/null 2>&1 || true",
           check=False)
    return rows


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    accel = "KVM" if hardware_virt() else \
        "TCG (emulated: rates measure QEMU, not the NIC)"
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"{model}, {os.cpu_count()} CPUs, host {os.uname().release}, VMs under {accel}, "
            f"host load {' '.join(load)}")


def table(rows: list[dict], seconds: int, million_seconds: int) -> str:
    by = {r["method"]: r for r in rows}
    cols = (by["lvsxdp"], by["ipvs"], by["xdp_tx"])

    def get(row: dict, path: str) -> float | None:
        node: object = row
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node)  # type: ignore[arg-type]

    def cell(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    def ratio(x: float | None, y: float | None) -> str:
        return f"{x / y:.2f}" if x is not None and y else "-"

    lines = [f"Rig throughput, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
             f"{machine()}; {seconds} s per run, {million_seconds} s for the IPv6 clients",
             "",
             "| run | (a) lvsxdp | (b) IPVS | (c) bare XDP_TX | a/b | a/c |",
             "|---|---|---|---|---|---|"]
    for label, path, fmt, ratios in (
            ("64 B UDP, fwd pps", "udp64.fwd_pps", ",.0f", True),
            ("IMIX 7:4:1 (64/594/1514 B), fwd pps", "imix.fwd_pps", ",.0f", True),
            ("IMIX, fwd Mbit/s", "imix.fwd_mbps", ",.1f", True),
            ("HTTP conns/s (wrk, a request each)", "cps", ",.0f", True),
            ("HTTP req/s, 16 kept-alive conns", "flood.rps_before", ",.0f", True),
            ("... the same during a SYN flood", "flood.rps_during", ",.0f", True),
            ("wrk socket errors during the flood", "flood.errors_during", ",.0f", False),
            ("SYN flood sent (spoofed flows), pps", "flood.flood_pps", ",.0f", False),
            ("fwd pps during the flood", "flood.fwd_pps", ",.0f", True),
            ("IPv6 clients sent (2 datagrams each)", "million.clients", ",.0f", False),
            ("IPv6 clients: templates held after", "million.templates", ",.0f", False),
            ("IPv6 clients: fwd pps", "million.fwd_pps", ",.0f", True),
            ("director CPUs busy per Mpps: 64 B", "udp64.cpu_per_mpps", ",.1f", True),
            ("... IMIX", "imix.cpu_per_mpps", ",.1f", True),
            ("... SYN flood + wrk", "flood.cpu_per_mpps", ",.1f", True),
            ("... IPv6 clients", "million.cpu_per_mpps", ",.1f", True),
            ("pktgen sent (64 B), pps", "udp64.sent_pps", ",.0f", False)):
        vals = [get(row, path) for row in cols]
        cells = [cell(v, fmt) for v in vals]
        cells += [ratio(vals[0], vals[1]), ratio(vals[0], vals[2])] if ratios else ["", ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- up and down ---------------------------------------------------------------

class BootWatch(threading.Thread):
    """Resets, once, a rig VM that sent nothing on its management NIC in its
    first BOOT_HANG seconds. Under TCG on a busy host a guest now and then
    hangs early in boot (both vCPUs in the kernel's delay loop, nothing on
    the serial console) and boots fine after a reset; vagrant would wait out
    its boot_timeout (15 min) and fail."""

    BOOT_HANG = 600

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.seen: dict[str, float] = {}
        self.reset: set[str] = set()

    def __enter__(self) -> BootWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=70)

    def run(self) -> None:
        while not self.stop.wait(30):
            for domain in rig_domains():
                if domain in self.reset or virsh("domstate", domain).stdout.strip() != "running":
                    continue
                first = self.seen.setdefault(domain, time.monotonic())
                if time.monotonic() - first < self.BOOT_HANG:
                    continue
                nics = virsh("domiflist", domain).stdout.splitlines()
                mgmt = [line.split()[0] for line in nics if "lvsxdp-rig-mgmt" in line]
                stats = virsh("domifstat", domain, mgmt[0]).stdout if mgmt else ""
                if re.search(r"tx_packets 0\b", stats):
                    log(f"{domain}: silent {self.BOOT_HANG} s after start, a hung boot: reset")
                    virsh("reset", domain)
                    self.reset.add(domain)


TIMES: dict[str, float] = {}


@contextmanager
def timed(name: str):
    began = time.monotonic()
    try:
        yield
    finally:
        TIMES[name] = time.monotonic() - began
        log(f"{name}: {TIMES[name] / 60:.1f} min")


def up(daemons: Daemons) -> Rig:
    daemons.ensure()
    if (CACHE / "vagrant-dot").exists() or rig_domains():
        # An interrupted run's VMs make a parallel `vagrant up` fail. Before
        # the box step: Vagrant's box command makes vagrant-dot, and destroy()
        # removes the wheels that step builds.
        log("a rig of an earlier run is still there: destroying it first")
        destroy()
    with timed("box"):
        box = ensure_box()
        add_box(box)
        build_dist()
    if virsh("pool-info", "default").returncode != 0:
        # vagrant-libvirt defines libvirt's "default" pool when there is none
        POOL_STAMP.touch()
    log("vagrant up (4 VMs; under TCG this takes minutes)")
    with timed("vagrant up"), BootWatch():
        vagrant("up", "--provider", "libvirt", timeout=3600)
        config = CACHE / "ssh_config"
        config.write_text(vagrant("ssh-config"))
        rig = Rig(config)
        setup(rig)
    return rig


def rig_domains() -> list[str]:
    done = virsh("list", "--all", "--name")
    return [name for name in done.stdout.split() if name.startswith(f"{PREFIX}-")]


# Stamped when the rig's `vagrant up` made libvirt's "default" storage pool.
POOL_STAMP = CACHE / "pool-made-by-rig"


def destroy() -> None:
    if (CACHE / "vagrant-dot").exists():
        vagrant("destroy", "-f", timeout=900, check=False)
    # What vagrant-libvirt may leave (or an interrupted run): the rig's
    # domains, its networks, its volumes, the pool it made.
    for domain in rig_domains():
        virsh("destroy", domain)
        virsh("undefine", domain)
    for net in ("lvsxdp-rig-lan", "lvsxdp-rig-mgmt"):
        virsh("net-destroy", net)
        virsh("net-undefine", net)
    for volume in pool_volumes():
        if volume.startswith(PREFIX) or volume.startswith(f"{BOX_NAME}_vagrant_box"):
            virsh("vol-delete", "--pool", "default", volume)
    if POOL_STAMP.exists() and not pool_volumes():
        virsh("pool-destroy", "default")
        virsh("pool-undefine", "default")
        POOL_STAMP.unlink()
    shutil.rmtree(CACHE / "vagrant-dot", ignore_errors=True)
    # Kept: the box (and its copy in vagrant-home), the last table and the
    # daemons' logs. Gone: what only a running rig needs.
    shutil.rmtree(CACHE / "dist", ignore_errors=True)
    (CACHE / "ssh_config").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the rig up")
    parser.add_argument("--destroy", action="store_true", help="tear down a kept rig")
    parser.add_argument("--seconds", type=int, default=10, help="length of a throughput run")
    parser.add_argument("--million-seconds", type=int, default=60,
                        help="longest run of the 1M IPv6 clients (2M datagrams)")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lvsxdp-rig: run as root (libvirt, the box's root filesystem)", file=sys.stderr)
        return 2
    for tool in ("vagrant", "virsh", "mmdebstrap", "qemu-img"):
        if not shutil.which(tool):
            print(f"lvsxdp-rig: {tool} is missing (make rig installs it)", file=sys.stderr)
            return 2
    # SIGTERM unwinds like ^C: the teardown below runs, and subprocess.run
    # kills the vagrant it waits for (vagrant itself ignores SIGTERM).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    daemons = Daemons()
    ok = False
    began = time.monotonic()
    try:
        if args.destroy:
            daemons.ensure()
            destroy()
            return 0
        rig = up(daemons)
        with timed("scenarios"):
            ok = scenarios(rig)
        if not args.no_throughput:
            with timed("throughput"):
                rows = throughput(rig, args.seconds, args.million_seconds)
            text = table(rows, args.seconds, args.million_seconds)
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
                with timed("teardown"):
                    destroy()
            except Exception as error:  # noqa: BLE001 - teardown goes on
                print(f"lvsxdp-rig: teardown: {error}", file=sys.stderr)
        daemons.stop() if not args.keep else None
        if TIMES and not args.destroy:
            say("\nsteps: " + ", ".join(f"{name} {sec / 60:.1f} min" for name, sec in TIMES.items())
                + f"; total {(time.monotonic() - began) / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
