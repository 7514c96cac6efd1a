#!/bin/bash
# PID 1 of an lvsxdp VM (handed over by /sbin/lvxvm-init once the job's share is
# mounted at /lvxvm/job). Sets up what the test suite expects of a machine, runs
# the host's command once in the checkout, leaves its output and exit code in
# the job's share, and powers off: the VM lives exactly as long as the command.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
JOB=/lvxvm/job

say() { echo "lvxvm-init: $*" > /dev/console; }

power_off() {
    sync
    # No service manager runs here: the kernel itself powers the machine off.
    echo o > /proc/sysrq-trigger
    sleep 30
}
trap power_off EXIT

mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# lvsxdp pins its maps here; cgroup2 and debugfs are cheap and some tools look for them.
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

# shellcheck source=/dev/null
. "$JOB/job.env"
echo "$LVXVM_HOSTNAME" > /proc/sys/kernel/hostname
ip link set lo up

# Loaded up front so that a missing one shows in the console log rather than as
# an odd test failure; modprobe would autoload most of them on first use anyway.
# No udev runs here: nothing loads device drivers (virtio_net) unless we do.
for module in virtio_net 9p 9pnet_virtio overlay veth bridge nf_tables nft_compat iptable_mangle \
        ip6table_mangle xt_mark xt_multiport sch_ingress cls_bpf act_bpf ip_vs ipip; do
    modprobe -q "$module" || say "no module $module"
done
sysctl -q -w kernel.panic_on_oops=1 net.core.bpf_jit_enable=1 >/dev/null 2>&1

# The checkout at the host's own path (so the host's .venv works unchanged),
# read-only from the host, writable in the guest through a tmpfs overlay.
mkdir -p /lvxvm/src /lvxvm/upper "$LVXVM_SRC" "$LVXVM_RESULTS"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro lvxvm_src /lvxvm/src \
    || { say "cannot mount the checkout"; exit 1; }
mount -t tmpfs -o mode=0755 tmpfs /lvxvm/upper
mkdir -p /lvxvm/upper/data /lvxvm/upper/work
mount -t overlay overlay \
    -o lowerdir=/lvxvm/src,upperdir=/lvxvm/upper/data,workdir=/lvxvm/upper/work "$LVXVM_SRC" \
    || { say "cannot overlay the checkout"; exit 1; }
# The job's share also at its host path, so that paths the host hands to the
# command (--junitxml=<results>/junit.xml) mean the same on both sides.
mount --bind "$JOB" "$LVXVM_RESULTS"

# The two NICs QEMU joined to each other, found by the MACs the host gave them.
nics=""
for mac in $LVXVM_NIC_MACS; do
    for dev in /sys/class/net/*; do
        if [ "$(cat "$dev/address")" = "$mac" ]; then
            ip link set "${dev##*/}" up
            nics="$nics ${dev##*/}"
        fi
    done
done
export LVSXDP_TEST_NICS="${nics# }"

uname -r > "$JOB/uname"
cut -d' ' -f1 /proc/uptime > "$JOB/started"
cd "$LVXVM_CWD" || { say "no directory $LVXVM_CWD"; exit 1; }
HOME=/root LANG=C.UTF-8 TERM=dumb bash "$JOB/job.sh" > "$JOB/stdout" 2> "$JOB/stderr" < /dev/null
echo $? > "$JOB/rc.tmp"
mv "$JOB/rc.tmp" "$JOB/rc"
