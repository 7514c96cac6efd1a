"""Proof, run inside a VM, that its two NICs carry native XDP.

    python3 tools/vm/run.py --kernel 6.1 -- /usr/bin/python3 tools/vm/xdp_nic_check.py

Attaches an XDP program in driver (native) mode to the first NIC of
LVSXDP_TEST_NICS; it counts frames of a local experimental EtherType and sends
them back with XDP_TX. The second NIC sends such frames through the QEMU hub
and must receive them back. No IP address is involved. Exits 0 when every
frame made the round trip."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from bcc import BPF

ETHERTYPE = 0x88B5  # IEEE 802 local experimental: nothing else on the link uses it
FRAMES = 100
XDP_FLAGS_DRV_MODE = 1 << 2

PROGRAM = f"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>

BPF_ARRAY(seen, u64, 1);

int bounce(struct xdp_md *ctx) {{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != htons({ETHERTYPE:#x}))
        return XDP_PASS;
    int zero = 0;
    u64 *count = seen.lookup(&zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    unsigned char mac[ETH_ALEN];
    __builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, mac, ETH_ALEN);
    return XDP_TX;
}}
"""


def mac_of(ifname: str) -> bytes:
    with open(f"/sys/class/net/{ifname}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def main() -> int:
    nics = os.environ.get("LVSXDP_TEST_NICS", "").split()
    if len(nics) != 2:
        print(f"LVSXDP_TEST_NICS={nics!r}: expected two NICs", file=sys.stderr)
        return 2
    bouncer, sender = nics
    started = time.monotonic()
    bpf = BPF(text=PROGRAM)
    fn = bpf.load_func("bounce", BPF.XDP)
    print(f"compiled and loaded in {time.monotonic() - started:.2f} s")
    bpf.attach_xdp(bouncer, fn, XDP_FLAGS_DRV_MODE)
    try:
        link = subprocess.run(["ip", "-d", "link", "show", bouncer], capture_output=True,
                              text=True).stdout
        # iproute2 names the mode: `xdp` is native (driver), `xdpgeneric` is skb mode.
        native = " xdp " in link.replace("\n", " ")
        print(f"{bouncer}: XDP attached in {'native' if native else 'NOT native'} mode: "
              + next((line.strip() for line in link.splitlines() if "prog/xdp" in line), ""))
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
        sock.bind((sender, 0))
        sock.settimeout(2.0)
        frame = mac_of(bouncer) + mac_of(sender) + ETHERTYPE.to_bytes(2, "big") + bytes(46)
        received = 0
        for _ in range(FRAMES):
            sock.send(frame)
        deadline = time.monotonic() + 5
        while received < FRAMES and time.monotonic() < deadline:
            try:
                data, address = sock.recvfrom(2048)
            except TimeoutError:
                break
            # PACKET_OUTGOING (4) is our own frame seen on the way out: only count arrivals.
            if address[2] != socket.PACKET_OUTGOING and data[:6] == mac_of(sender):
                received += 1
        seen = bpf["seen"][0].value
    finally:
        bpf.remove_xdp(bouncer, XDP_FLAGS_DRV_MODE)
    print(f"sent {FRAMES} frames from {sender}; XDP on {bouncer} saw {seen}, "
          f"{received} came back to {sender} by XDP_TX")
    return 0 if native and seen == FRAMES and received == FRAMES else 1


if __name__ == "__main__":
    sys.exit(main())
