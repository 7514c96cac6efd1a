"""tools/rig/blast.py, the rig's SYN-flood and many-IPv6-clients generator:
every frame it patches keeps valid checksums (scapy recomputes them), its
sources are the documented ones and distinct, and it sends the frames it
says it sent through a real veth in a namespace of its own."""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.rig.blast import SYN_NET, UDP6_NET, Syn4, Udp6  # noqa: E402

DST, SRC = "52:54:00:00:00:02", "52:54:00:00:00:50"
SAMPLE = (0, 1, 2, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x10000, 0x12345, 1 << 20, (1 << 20) - 1,
          32768 * 64000 - 1, 32768 * 64000, 987654321)


def _recomputed(frame: bytes, layer) -> Ether:
    pkt = Ether(frame)
    del pkt[layer].chksum
    if IP in pkt:
        del pkt[IP].chksum
    return Ether(bytes(pkt))


def test_syn_flood_frames_keep_their_checksums_and_vary_their_flow():
    gen = Syn4(DST, SRC, "198.18.2.1", 80)
    flows = set()
    for i in SAMPLE:
        gen.patch(i)
        frame = bytes(gen.frame)
        pkt, good = Ether(frame), _recomputed(frame, TCP)
        assert (pkt[IP].chksum, pkt[TCP].chksum) == (good[IP].chksum, good[TCP].chksum), i
        assert pkt[Ether].dst == DST and pkt[Ether].src == SRC
        assert pkt[IP].dst == "198.18.2.1" and pkt[TCP].dport == 80 and pkt[TCP].flags == "S"
        assert ipaddress.IPv4Address(pkt[IP].src) in SYN_NET
        assert ipaddress.IPv4Address(pkt[IP].src) == SYN_NET[i % 32768]
        assert pkt[TCP].sport == 1024 + (i >> 15) % 64000
        flows.add((pkt[IP].src, pkt[TCP].sport))
    assert len(flows) == len(SAMPLE) - 1  # 32768 * 64000 wraps to flow 0


def test_ipv6_clients_frames_keep_their_checksum_and_are_distinct_sources():
    gen = Udp6(DST, SRC, "2001:db8:2::1", 5000)
    assert len(gen.frame) == 64
    sources = set()
    for i in SAMPLE:
        gen.patch(i)
        frame = bytes(gen.frame)
        pkt, good = Ether(frame), _recomputed(frame, UDP)
        assert pkt[UDP].chksum == good[UDP].chksum, i
        assert pkt[IPv6].dst == "2001:db8:2::1" and pkt[UDP].dport == 5000
        src = ipaddress.IPv6Address(pkt[IPv6].src)
        assert src in UDP6_NET and int(src) & 0xFFFFFFFF == i & 0xFFFFFFFF
        sources.add(src)
    assert len(sources) == len(SAMPLE)


def test_it_sends_what_it_counts_through_a_veth():
    ns = f"lxr{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def run(*cmd: str) -> str:
            return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True,
                                  capture_output=True, text=True, timeout=60).stdout

        a, b = f"{ns}a", f"{ns}b"
        run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        run("ip", "link", "set", a, "up")
        run("ip", "link", "set", b, "up")
        before = int(run("cat", f"/sys/class/net/{b}/statistics/rx_packets"))
        out = json.loads(run(sys.executable, str(ROOT / "tools/rig/blast.py"), "udp6", a, DST,
                             "2001:db8:2::1", "5000", "30", "--clients", "1000",
                             "--repeat", "2"))
        assert (out["sources"], out["sent"]) == (1000, 2000)
        got = int(run("cat", f"/sys/class/net/{b}/statistics/rx_packets")) - before
        # IPv6 on a fresh veth may add a few frames of its own (router/neighbour solicitations)
        assert 2000 <= got <= 2010
        out = json.loads(run(sys.executable, str(ROOT / "tools/rig/blast.py"), "syn4", a, DST,
                             "198.18.2.1", "80", "0.5"))
        assert out["sent"] > 1000 and out["sources"] == out["sent"]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
