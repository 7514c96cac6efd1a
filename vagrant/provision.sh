#!/bin/bash
# Provisioning of one rig VM: its LAN address, and lvsxdp installed the way the
# README tells an operator to install it without a checkout (a wheel into a
# venv that sees Debian's python3-bpfcc). The box already holds every Debian
# package; the wheels come from the host (tools/rig/run.py), so the VMs need no
# network but the rig's.
set -euo pipefail
name=$1 ip=$2 cpus=$3

hostnamectl set-hostname "rig-$name"
printf '127.0.0.1 localhost\n127.0.1.1 rig-%s\n' "$name" > /etc/hosts

cat > /etc/systemd/network/20-eth1.network <<NET
[Match]
Name=eth1

[Network]
Address=$ip/24
LinkLocalAddressing=ipv6
NET
networkctl reload
ip link set eth1 up
ip addr replace "$ip/24" dev eth1
# Native XDP_TX needs the spare queue pairs: use one per vCPU for the stack.
ethtool -L eth1 combined "$cpus" 2>/dev/null || true

# Only the director runs lvsxdp; the client and the reals run what an LVS site's
# clients and servers run (curl, wrk, pktgen; nginx, vsftpd).
if [ "$name" != director ]; then
    echo "rig $name: eth1 $ip"
    exit 0
fi
python3 -m venv --system-site-packages /opt/lvsxdp
/opt/lvsxdp/bin/pip install -q --no-compile --no-index --find-links /tmp/lvsxdp-dist lvsxdp
ln -sf /opt/lvsxdp/bin/lvsxdp /usr/local/sbin/lvsxdp
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
echo "rig $name: eth1 $ip, lvsxdp $(/opt/lvsxdp/bin/lvsxdp --version 2>/dev/null || echo installed)"
