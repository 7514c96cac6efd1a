"""The rig's Vagrant box, built here from Debian packages only.

    python3 -m tools.rig.box            # builds (or reuses) the box, prints its path

A vagrant-libvirt box is a tar of `box.img` (qcow2), `metadata.json` and a
Vagrantfile. Ours is Debian 12 from the mirror the host's apt uses (read at run
time), made by mmdebstrap into a directory and written to an unpartitioned ext4
image by `mkfs.ext4 -d` (no loop device, no mount: this host has no partition
support). The VMs boot that filesystem with its own kernel and initrd, which
ride in the box next to the image; the box's Vagrantfile hands them to libvirt
(direct kernel boot, no boot loader to install). Everything the rig runs is in
the box, so the VMs never reach a network other than the rig's own.

Cached under /var/tmp/lvsxdp-rig; rebuilt when the package list, the mirror or
this file's guest setup changes."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tarfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.vm.errors import VmError  # noqa: E402
from tools.vm.mirror import Mirror, find_mirror  # noqa: E402
from tools.vm.rootfs import DPKG_EXCLUDES, run_step  # noqa: E402

CACHE = Path("/var/tmp/lvsxdp-rig")

# What every rig VM runs: lvsxdp's system dependencies as the README lists them
# (bcc, the kernel's headers for it), the reals' servers (nginx, vsftpd), the
# generators (wrk; pktgen is in the kernel), real IPVS (ipvsadm) for the
# comparison, and what Vagrant needs to reach a VM (sshd, sudo).
PACKAGES = (
    "systemd-sysv udev dbus openssh-server sudo ca-certificates "
    "linux-image-amd64 linux-headers-amd64 initramfs-tools zstd kmod "
    "python3 python3-venv python3-pip python3-bpfcc bpftool "
    "iproute2 iptables ipvsadm ethtool tcpdump iputils-ping procps curl socat "
    "nginx-light vsftpd openssl wrk"
).split()


# The kernel needs these to find its root; everything else udev loads later.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")

IMAGE_SIZE = "8G"

VAGRANT_PUB = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")

# The box's own Vagrantfile: direct kernel boot from the files beside box.img.
# net.ifnames=0 keeps the NICs eth0 (Vagrant's management network, DHCP),
# eth1... (the rig's networks, in the order the Vagrantfile declares them).
BOX_VAGRANTFILE = """\
# lvsxdp rig box: Debian 12, booted by libvirt with the kernel and initrd
# that ship beside box.img (tools/rig/box.py builds it).
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")
    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0"
    libvirt.disk_bus = "virtio"
  end
end
"""

NETWORKD_ETH0 = """\
[Match]
Name=eth0

[Network]
DHCP=ipv4
"""

# Host keys are made on the VM's first boot, not baked into every VM alike.
SSH_KEYGEN_DROPIN = """\
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""


def log(message: str) -> None:
    print(f"lvsxdp-rig: {message}", file=sys.stderr, flush=True)


def _key(mirror: Mirror) -> str:
    own = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return json.dumps({"packages": PACKAGES, "mirror": [mirror.archive, mirror.security],
                       "setup": own}, sort_keys=True)


def _configure(root: Path) -> None:
    """What makes the tree a Vagrant box: the vagrant user with Vagrant's insecure
    key (Vagrant swaps it for a fresh one on first `up`), sudo without password,
    DHCP on the management NIC, sshd, a root filesystem entry."""
    (root / "etc/hostname").write_text("lvsxdp-rig\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 lvsxdp-rig\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults 0 1\n")
    (root / "etc/systemd/network/10-eth0.network").write_text(NETWORKD_ETH0)
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "keygen.conf").write_text(SSH_KEYGEN_DROPIN)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/sudoers.d/vagrant").write_text("vagrant ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/sudoers.d/vagrant").chmod(0o440)
    conf = root / "etc/initramfs-tools"
    (conf / "conf.d/lvsxdp-rig").write_text("MODULES=list\nRESUME=none\nCOMPRESS=gzip\n")
    (conf / "modules").write_text("".join(f"{m}\n" for m in INITRD_MODULES))
    chroot = ["chroot", str(root)]
    run_step(chroot + ["useradd", "-m", "-s", "/bin/bash", "vagrant"], "useradd vagrant")
    ssh = root / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(VAGRANT_PUB, ssh / "authorized_keys")
    (ssh / "authorized_keys").chmod(0o600)
    run_step(chroot + ["chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"], "chown .ssh")
    run_step(chroot + ["systemctl", "enable", "systemd-networkd", "ssh"], "systemctl enable")
    # The rig starts what it measures itself.
    run_step(chroot + ["systemctl", "disable", "nginx", "vsftpd"], "systemctl disable")
    run_step(chroot + ["update-initramfs", "-u", "-k", "all"], "update-initramfs")


def _tree(cache: Path, mirror: Mirror) -> Path:
    if not VAGRANT_PUB.is_file():
        raise VmError(f"{VAGRANT_PUB} is missing: apt-get install vagrant")
    if not shutil.which("mmdebstrap"):
        raise VmError("mmdebstrap is missing: apt-get install mmdebstrap (make rig does)")
    tree = cache / "box-tree"
    shutil.rmtree(tree, ignore_errors=True)
    sign = f"[signed-by={mirror.keyring}]"
    log(f"building the box's root filesystem with mmdebstrap from {mirror.archive}")
    run_step(["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", "--format=directory",
          f"--include={','.join(PACKAGES)}",
          *[f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES],
          "--dpkgopt=path-include=/usr/share/doc/*/copyright",
          "bookworm", str(tree),
          f"deb {sign} {mirror.archive} bookworm main",
          f"deb {sign} {mirror.archive} bookworm-updates main",
          f"deb {sign} {mirror.security} bookworm-security main"], "mmdebstrap")
    _configure(tree)
    return tree


def ensure_box(cache: Path = CACHE) -> Path:
    """The box file (cache/lvsxdp-rig.box), built when missing or stale."""
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    mirror = find_mirror()
    box, stamp = cache / "lvsxdp-rig.box", cache / "lvsxdp-rig.box.key"
    key = _key(mirror)
    if box.is_file() and stamp.is_file() and stamp.read_text() == key:
        return box
    stamp.unlink(missing_ok=True)
    tree = _tree(cache, mirror)
    work = cache / "box-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        boot = tree / "boot"
        shutil.copy(max(boot.glob("vmlinuz-*")), work / "vmlinuz")
        shutil.copy(max(boot.glob("initrd.img-*")), work / "initrd.img")
        raw = work / "box.raw"
        log("writing the box image (mkfs.ext4 -d, qemu-img convert)")
        run_step(["mkfs.ext4", "-q", "-L", "rig-root", "-d", str(tree), str(raw), IMAGE_SIZE],
             "mkfs.ext4")
        run_step(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "box.img")],
             "qemu-img convert")
        raw.unlink()
        size = int(IMAGE_SIZE.rstrip("G"))
        (work / "metadata.json").write_text(json.dumps(
            {"provider": "libvirt", "format": "qcow2", "virtual_size": size}))
        (work / "Vagrantfile").write_text(BOX_VAGRANTFILE)
        partial = cache / "lvsxdp-rig.box.partial"
        with tarfile.open(partial, "w") as tar:
            for name in ("metadata.json", "Vagrantfile", "vmlinuz", "initrd.img", "box.img"):
                tar.add(work / name, arcname=name)
        partial.rename(box)
        stamp.write_text(key)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tree, ignore_errors=True)
    return box


if __name__ == "__main__":
    try:
        print(ensure_box())
    except VmError as error:
        sys.exit(f"lvsxdp-rig: {error}")
