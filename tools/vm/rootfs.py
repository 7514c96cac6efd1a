"""One Debian 12 root filesystem for every kernel of the matrix, as an ext4 image.

Built in three cached layers under the cache directory, each redone only when
its inputs change:
  rootfs/            mmdebstrap's bookworm with what the suite runs (rebuilt when
                     the package list or the mirror changes),
  rootfs/ + kernels  each kernel's modules and own headers unpacked into it, an
                     initrd made by that tree's initramfs-tools,
  rootfs-<key>.ext4  `mkfs.ext4 -d` of the tree: no loop device, no mount.
VMs boot the image through a throw-away qcow2 overlay, so it stays clean."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import VmError
from .kernels import Kernel
from .mirror import Mirror

# What the suite runs in the guest (the Makefile's APT_PACKAGES minus the host's
# headers, plus what boots a VM). The Python packages come from the checkout's
# own .venv, which works unchanged in the guest: same path, same Debian 3.11.
GUEST_PACKAGES = (
    "python3 python3-venv python3-bpfcc bpftool iproute2 iptables curl socat ethtool "
    "tcpdump vsftpd openssl tmux iputils-ping procps kmod initramfs-tools zstd "
    "util-linux ca-certificates"
).split()

# The kernel finds nothing on the root device without these: Debian builds them as modules.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")

# Docs, manuals and translations: a third of the tree, never read in a VM.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*",
                 "/usr/share/locale/*")

INIT_STUB = Path("/sbin/lvxvm-init")
# The real init (guest_init.sh) arrives with each job, so that editing it never
# rebuilds the image: the stub only mounts the job's share and hands over.
INIT_STUB_TEXT = """#!/bin/sh
# lvsxdp VM: PID 1 until the job's own init (tools/vm/guest_init.sh) takes over.
mount -t proc proc /proc
mkdir -p /lvxvm/job
# 5.10 does not load the virtio transport of 9p by itself.
modprobe 9pnet_virtio
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 lvxvm_job /lvxvm/job; then
    exec /bin/bash /lvxvm/job/init.sh
fi
echo "lvxvm: no job share: powering off" > /dev/console
echo o > /proc/sysrq-trigger
"""


@dataclass(frozen=True)
class BootFiles:
    kernel: Kernel
    vmlinuz: Path
    initrd: Path
    image: Path


def log(message: str) -> None:
    print(f"lvxvm: {message}", file=sys.stderr, flush=True)


def run_step(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise VmError(f"{what} failed ({command[0]} exit {done.returncode}): {' | '.join(tail)}")


def _base_key(mirror: Mirror) -> str:
    return json.dumps(
        {"packages": GUEST_PACKAGES, "mirror": [mirror.archive, mirror.security],
         "initrd": INITRD_MODULES, "excludes": DPKG_EXCLUDES},
        sort_keys=True,
    )


def ensure_base(cache: Path, mirror: Mirror) -> Path:
    """The bookworm tree (without kernels), built by mmdebstrap when missing or stale."""
    root = cache / "rootfs"
    stamp = cache / "rootfs.key"
    key = _base_key(mirror)
    if root.is_dir() and stamp.is_file() and stamp.read_text() == key:
        return root
    if not shutil.which("mmdebstrap"):
        raise VmError("mmdebstrap is missing: apt-get install mmdebstrap (make test-kernels does)")
    log(f"building the guest's root filesystem with mmdebstrap from {mirror.archive}")
    tmp = cache / "rootfs.lvxvm-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    sign = f"[signed-by={mirror.keyring}]"
    command = [
        "mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", "--format=directory",
        f"--include={','.join(GUEST_PACKAGES)}",
        *[f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES],
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "bookworm", str(tmp),
        f"deb {sign} {mirror.archive} bookworm main",
        f"deb {sign} {mirror.archive} bookworm-updates main",
        f"deb {sign} {mirror.security} bookworm-security main",
    ]
    run_step(command, "mmdebstrap")
    _configure_guest(tmp)
    write_init_stub(tmp)
    tmp.rename(root)
    stamp.write_text(key)
    return root


def write_init_stub(root: Path) -> None:
    """The stub, rewritten when it changed (it is part of the image's key, not the tree's:
    a new stub costs an mkfs, not an mmdebstrap)."""
    stub = root / INIT_STUB.relative_to("/")
    if not stub.is_file() or stub.read_text() != INIT_STUB_TEXT:
        stub.write_text(INIT_STUB_TEXT)
        stub.chmod(0o755)


def _configure_guest(root: Path) -> None:
    (root / "etc/hostname").write_text("lvxvm\n")
    (root / "etc/fstab").write_text("# lvsxdp VM: the init mounts what it needs\n")
    conf = root / "etc/initramfs-tools"
    # MODULES=list: an initrd of three modules unpacks in a blink under TCG, where
    # Debian's default (most) costs seconds; RESUME=none skips the swap probe's wait.
    (conf / "conf.d/lvxvm").write_text("MODULES=list\nRESUME=none\nCOMPRESS=gzip\n")
    (conf / "modules").write_text("".join(f"{m}\n" for m in INITRD_MODULES))
    for sub in ("lvxvm/job", "lvxvm/src", "lvxvm/upper"):
        (root / sub).mkdir(parents=True, exist_ok=True)


def ensure_kernel(cache: Path, root: Path, kernel: Kernel) -> BootFiles | None:
    """Unpack `kernel` (modules and its own headers) into the tree and make its initrd."""
    done = root / f"lvxvm/kernels/{kernel.release}"
    if done.is_file() and done.read_text() == kernel.version:
        return None
    log(f"adding kernel {kernel.release} ({kernel.version}) to the root filesystem")
    _remove_kernel(root, kernel.release)
    for deb in kernel.debs:
        _unpack(deb, root)
    run_step(["chroot", str(root), "depmod", "-a", kernel.release], "depmod")
    run_step(["chroot", str(root), "mkinitramfs", "-o", f"/boot/initrd.img-{kernel.release}",
          kernel.release], f"mkinitramfs {kernel.release}")
    # `build` is an absolute link, meant for the guest: follow it inside the tree.
    build = root / os.readlink(root / f"lib/modules/{kernel.release}/build").lstrip("/")
    if not (build / "include").is_dir():
        raise VmError(f"{kernel.release}: /lib/modules/{kernel.release}/build has no headers")
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(kernel.version)
    return None


def _unpack(deb: Path, root: Path) -> None:
    """dpkg -x into a scratch dir, then merged with tar --keep-directory-symlink: the
    packages ship /lib/modules, and bookworm's /lib is a symlink to /usr/lib that a
    plain extraction would replace with a directory."""
    scratch = root.parent / f"lvxvm-unpack-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        run_step(["dpkg-deb", "-x", str(deb), str(scratch)], f"dpkg -x {deb.name}")
        pack = subprocess.Popen(["tar", "-C", str(scratch), "-cf", "-", "."],
                                stdout=subprocess.PIPE)
        done = subprocess.run(["tar", "-C", str(root), "--keep-directory-symlink", "-xf", "-"],
                              stdin=pack.stdout, capture_output=True, text=True)
        pack.wait()
        if pack.returncode or done.returncode:
            raise VmError(f"unpacking {deb.name} into the root filesystem failed: {done.stderr}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove_kernel(root: Path, release: str) -> None:
    abi = release.removesuffix("-amd64")
    for path in (root / f"usr/lib/modules/{release}", root / f"usr/src/linux-headers-{release}",
                 root / f"usr/src/linux-headers-{abi}-common"):
        shutil.rmtree(path, ignore_errors=True)
    for path in (root / "boot").glob(f"*-{release}"):
        path.unlink()
    (root / f"lvxvm/kernels/{release}").unlink(missing_ok=True)


def prune_kernels(root: Path, keep: set[str]) -> None:
    """Drop kernels no longer in the matrix (an older ABI after a security update)."""
    stamps = root / "lvxvm/kernels"
    for stamp in stamps.glob("*") if stamps.is_dir() else []:
        if stamp.name not in keep:
            log(f"removing outdated kernel {stamp.name} from the root filesystem")
            _remove_kernel(root, stamp.name)


def ensure_image(cache: Path, root: Path, all_installed: list[str]) -> Path:
    """The ext4 image of the tree, remade only when the tree changed."""
    write_init_stub(root)
    key = hashlib.sha256(
        ((cache / "rootfs.key").read_text() + INIT_STUB_TEXT + "|".join(sorted(
            f"{r}={(root / 'lvxvm/kernels' / r).read_text()}" for r in all_installed
        ))).encode()
    ).hexdigest()[:16]
    image = cache / f"rootfs-{key}.ext4"
    if image.is_file():
        return image
    for old in cache.glob("rootfs-*.ext4"):
        old.unlink()
    log("making the ext4 image (mkfs.ext4 -d)")
    used = int(subprocess.run(["du", "-sxm", str(root)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    # Room for what tests write outside the checkout's tmpfs (logs, pip caches):
    # the file is sparse, and runs write into their qcow2 overlay anyway.
    size_mb = used + used // 4 + 1024
    tmp = image.with_suffix(".lvxvm-tmp")
    tmp.unlink(missing_ok=True)
    run_step(["mkfs.ext4", "-q", "-F", "-L", "lvxvm-root", "-E", "root_owner=0:0",
          "-d", str(root), str(tmp), f"{size_mb}M"], "mkfs.ext4")
    tmp.rename(image)
    return image


def boot_files(cache: Path, root: Path, kernel: Kernel, image: Path) -> BootFiles:
    """vmlinuz and initrd copied out of the tree: QEMU boots them with -kernel/-initrd."""
    out = cache / "boot" / kernel.release
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, source in (("vmlinuz", f"boot/vmlinuz-{kernel.release}"),
                         ("initrd", f"boot/initrd.img-{kernel.release}")):
        src, dst = root / source, out / name
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            shutil.copy2(src, dst)
        files[name] = dst
    return BootFiles(kernel, files["vmlinuz"], files["initrd"], image)
