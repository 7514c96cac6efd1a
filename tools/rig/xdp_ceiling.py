"""The rig's ceiling: the least an XDP director can do per packet.

    python3 xdp_ceiling.py IFACE VIP REAL_MAC REAL_MAC

Every IPv4 frame to VIP gets one of the REAL_MACs as destination (one bit of a
hash of the source address: a client sticks to one real, as with PCC, and the
clients spread over both, as lvsxdp and IPVS spread them - with one real the
ceiling was that real's VM receiving, not the director forwarding) and the
NIC's own MAC as source, and goes back out by XDP_TX (native mode); the rest
passes. No table, no state: what the director VM's NIC and CPU can forward at
most, for the rig's throughput table (a/c). Runs in the director VM until
SIGTERM, then detaches."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import time

from bcc import BPF

PROGRAM = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>

int ceiling(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *iph = data + sizeof(*eth);
    const unsigned char real0[ETH_ALEN] = { REAL0_MAC };
    const unsigned char real1[ETH_ALEN] = { REAL1_MAC };
    const unsigned char own[ETH_ALEN] = { OWN_MAC };
    __u32 h;

    if ((void *)(iph + 1) > end || eth->h_proto != __constant_htons(ETH_P_IP))
        return XDP_PASS;
    if (iph->daddr != VIP_BE)
        return XDP_PASS;
    h = iph->saddr * 0x9E3779B1u;
    if (h >> 31)
        __builtin_memcpy(eth->h_dest, real1, ETH_ALEN);
    else
        __builtin_memcpy(eth->h_dest, real0, ETH_ALEN);
    __builtin_memcpy(eth->h_source, own, ETH_ALEN);
    return XDP_TX;
}
"""


def _mac_bytes(mac: str) -> str:
    return ", ".join(f"0x{part}" for part in mac.split(":"))


def main(iface: str, vip: str, real0: str, real1: str) -> int:
    with open(f"/sys/class/net/{iface}/address") as f:
        own = f.read().strip()
    vip_be = int.from_bytes(ipaddress.IPv4Address(vip).packed, "little")
    text = (PROGRAM.replace("REAL0_MAC", _mac_bytes(real0))
            .replace("REAL1_MAC", _mac_bytes(real1))
            .replace("OWN_MAC", _mac_bytes(own)).replace("VIP_BE", f"{vip_be:#x}"))
    bpf = BPF(text=text)
    fn = bpf.load_func("ceiling", BPF.XDP)
    bpf.attach_xdp(iface, fn, BPF.XDP_FLAGS_DRV_MODE)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"ceiling on {iface} ({socket.gethostname()}): {vip} -> {real0} {real1}", flush=True)
    try:
        while not stop:
            time.sleep(0.2)
    finally:
        bpf.remove_xdp(iface, BPF.XDP_FLAGS_DRV_MODE)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
