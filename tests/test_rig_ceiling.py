"""tools/rig/xdp_ceiling.py, the rig's bare XDP_TX forwarder (column (c) of
its throughput table), on a real veth in a namespace of its own: frames to
the VIP go back out with one of the two reals' MACs as destination and the
interface's own as source, the rest of each frame untouched; a client sticks
to one real and the clients spread over both; other frames pass; SIGTERM
detaches it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from lvsxdp import lab, loader

ROOT = Path(__file__).resolve().parent.parent
VIP = "198.18.2.1"
REAL0, REAL1 = "52:54:00:00:01:00", "52:54:00:00:02:00"
CLIENT_MAC = "52:54:00:00:00:50"

# Runs in the namespace: sends UDP to the VIP from 64 clients (twice each)
# and one frame to another address from b, and prints what came back.
PROBE = r"""
import json, sys, threading, time
from scapy.all import AsyncSniffer, Ether, IP, UDP, Raw, sendp
b, own, vip = sys.argv[1:4]
started, got = threading.Event(), []
sniff = AsyncSniffer(iface=b, filter="udp", store=False, started_callback=started.set,
                     prn=lambda p: got.append(bytes(p)) if p[Ether].src == own else None)
sniff.start()
started.wait(30)
frames = []
for rnd in range(2):
    for i in range(64):
        frames.append(Ether(src="52:54:00:00:00:50", dst=own) /
                      IP(src=f"198.18.1.{i + 10}", dst=vip, ttl=64) /
                      UDP(sport=40000 + rnd, dport=5000) / Raw(b"x" * 18))
frames.append(Ether(src="52:54:00:00:00:50", dst=own) /
              IP(src="198.18.1.9", dst="198.18.3.1") / UDP(sport=1, dport=2) / Raw(b"y"))
sendp(frames, iface=b, verbose=False, inter=0.001)
deadline = time.monotonic() + 30  # a loaded machine delivers late, not never
while len(got) < 128 and time.monotonic() < deadline:
    time.sleep(0.1)
time.sleep(1)  # and anything that should not come back has had its time
sniff.stop()
print(json.dumps([f.hex() for f in got]))
"""


def test_it_spreads_clients_over_both_reals_and_passes_the_rest():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    ns = f"lxr{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    ceiling = None
    try:
        def run(*cmd: str) -> str:
            return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True,
                                  capture_output=True, text=True, timeout=120).stdout

        a, b = f"{ns}a", f"{ns}b"
        run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for dev in (a, b):
            run("ip", "link", "set", dev, "up")
        # native XDP_TX on a veth reaches a peer with an XDP program of its
        # own only (ENVIRONMENT.md); the rig's virtio-net needs none
        lab.attach_xdp_pass(ns, b)
        own = run("cat", f"/sys/class/net/{a}/address").strip()
        env = dict(os.environ)  # bcc's headers, as lvsxdp finds them here
        if loader.kernel_source():
            env["BCC_KERNEL_SOURCE"] = loader.kernel_source()
        ceiling = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(ROOT / "tools/rig/xdp_ceiling.py"),
             a, VIP, REAL0, REAL1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        line = ceiling.stdout.readline()
        assert line.startswith(f"ceiling on {a}"), ceiling.stderr.read()
        assert "xdpdrv" in run("ip", "link", "show", a) or "xdp " in run("ip", "link", "show", a)
        back = [Ether(bytes.fromhex(h)) for h in json.loads(
            run(sys.executable, "-c", PROBE, b, own, VIP))]
        # only the 128 frames to the VIP come back, rewritten
        assert len(back) == 128
        by_client: dict[str, set] = {}
        for pkt in back:
            assert pkt[Ether].src == own and pkt[Ether].dst in (REAL0, REAL1)
            assert pkt[IP].dst == VIP and pkt[IP].ttl == 64 and pkt[UDP].dport == 5000
            assert bytes(pkt[UDP].payload) == b"x" * 18
            by_client.setdefault(pkt[IP].src, set()).add(pkt[Ether].dst)
        assert len(by_client) == 64
        assert all(len(macs) == 1 for macs in by_client.values())  # a client sticks
        spread = sum(1 for macs in by_client.values() if REAL1 in macs)
        assert 16 <= spread <= 48, spread  # and the clients spread over both
        ceiling.send_signal(signal.SIGTERM)
        assert ceiling.wait(timeout=30) == 0
        ceiling = None
        time.sleep(0.2)
        assert "xdp" not in run("ip", "link", "show", a)
    finally:
        if ceiling is not None:
            ceiling.kill()
            ceiling.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
