"""The rig's second generator, for what the kernel's pktgen cannot send.

    python3 blast.py syn4 IFACE DST_MAC VIP PORT SECONDS
    python3 blast.py udp6 IFACE DST_MAC VIP6 PORT SECONDS [--clients N] [--repeat R]

syn4: a spoofed SYN flood, TCP SYNs to VIP:PORT, each flow its own source in
198.18.128.0/17 and source port. udp6: many IPv6 clients, UDP datagrams to
[VIP6]:PORT from N sources in 2001:db8:100::/48, each R times back to back
(the director holds a UDP connection and its template at the second packet).
pktgen varies IPv6 destinations only, and sends no TCP.

Runs in the client VM with Python's standard library only, from an AF_PACKET
socket. Python cannot checksum every frame at rate, so each frame differs
from one template frame in words whose ones'-complement sum stays 0xffff:
the source address's low words, and one compensating word beside them (the
IPv4 ID, the SYN's sequence number, one more word of the IPv6 source). The
template's checksums then hold for every frame (RFC 1071's sum is order- and
position-free). Prints one JSON line: frames sent, distinct sources, seconds."""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import struct
import sys
import time

SYN_NET = ipaddress.IPv4Network("198.18.128.0/17")
UDP6_NET = ipaddress.IPv6Network("2001:db8:100::/48")
ETH_IP, ETH_IP6 = 0x0800, 0x86DD


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return 0xFFFF - _fold(sum(struct.unpack(f"!{len(data) // 2}H", data))) or 0xFFFF


def _eth(dst_mac: str, src_mac: str, ethertype: int) -> bytes:
    return bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(
        src_mac.replace(":", "")) + struct.pack("!H", ethertype)


class Syn4:
    """SYN i: source 198.18.128.0 + i % 32768, port 1024 + i // 32768 % 64000."""

    def __init__(self, dst_mac: str, src_mac: str, vip: str, port: int) -> None:
        src = SYN_NET.network_address.packed[:2] + b"\0\0"  # the varying words are zero here
        dst = ipaddress.IPv4Address(vip).packed
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, dst))
        struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
        tcp = bytearray(struct.pack("!HHIIBBHHH", 0, port, 0x5EED0000, 0, 5 << 4, 0x02,
                                    64240, 0, 0))
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp)))
        self.frame = bytearray(_eth(dst_mac, src_mac, ETH_IP) + ip + tcp)
        self.flows = 32768 * 64000

    def patch(self, i: int) -> None:
        low = 0x8000 | (i & 0x7FFF)  # 198.18.128.0/17: the low word's top bit set
        sport = 1024 + (i >> 15) % 64000
        buf = self.frame
        struct.pack_into("!H", buf, 18, 0xFFFF - low)  # IP ID: the IP header's sum
        struct.pack_into("!H", buf, 28, low)
        struct.pack_into("!H", buf, 34, sport)
        struct.pack_into("!H", buf, 40, 0xFFFF - _fold(low + sport))  # seq's low word


class Udp6:
    """Client i: 2001:db8:100::w5:(i >> 16):(i & 0xffff), w5 compensating."""

    def __init__(self, dst_mac: str, src_mac: str, vip6: str, port: int, size: int = 64) -> None:
        src = UDP6_NET.network_address.packed
        dst = ipaddress.IPv6Address(vip6).packed
        payload = b"\0" * max(0, size - 14 - 40 - 8)
        udp = bytearray(struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload)
        pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17)
        struct.pack_into("!H", udp, 6, checksum(pseudo + bytes(udp)))
        ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, src, dst)
        self.frame = bytearray(_eth(dst_mac, src_mac, ETH_IP6) + ip6 + udp)
        self.flows = 1 << 32

    def patch(self, i: int) -> None:
        high, low = i >> 16, i & 0xFFFF
        # the source's words 5, 6, 7 (bytes 10..15 of 16, at 14 + 8 + 10)
        struct.pack_into("!HHH", self.frame, 32, 0xFFFF - _fold(high + low), high, low)


def blast(sock: socket.socket, gen: Syn4 | Udp6, seconds: float, clients: int,
          repeat: int) -> dict:
    sent = busy = 0
    i = 0
    start = time.monotonic()
    end = start + seconds
    frame = gen.frame
    while i < clients:
        gen.patch(i)
        for _ in range(repeat):
            while True:
                try:
                    sock.send(frame)
                    break
                except OSError:  # ENOBUFS: the NIC's queue is full, not an error
                    busy += 1
                    time.sleep(0.0001)
            sent += 1
        i += 1
        if not i & 255 and time.monotonic() > end:
            break
    elapsed = time.monotonic() - start
    return {"sent": sent, "sources": i, "seconds": round(elapsed, 3), "queue_full": busy,
            "pps": round(sent / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("syn4", "udp6"))
    parser.add_argument("iface")
    parser.add_argument("dst_mac")
    parser.add_argument("vip")
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--clients", type=int, default=0, help="sources (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="frames per source")
    args = parser.parse_args(argv)
    with open(f"/sys/class/net/{args.iface}/address") as f:
        own = f.read().strip()
    if args.kind == "syn4":
        gen: Syn4 | Udp6 = Syn4(args.dst_mac, own, args.vip, args.port)
    else:
        gen = Udp6(args.dst_mac, own, args.vip, args.port)
    clients = args.clients or gen.flows
    if args.kind == "syn4":
        clients = 1 << 62  # a flood runs for its time, cycling through its flows
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.iface, 0))
    print(json.dumps(blast(sock, gen, args.seconds, clients, args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
