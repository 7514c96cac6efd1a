# lvsxdp: `make lab` walks through the seed's examples on a built-in lab,
# `make test` runs the whole suite. Both install what they need (as root).

VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3-bpfcc linux-headers-amd64 bpftool iproute2 iptables curl socat \
	ethtool tcpdump vsftpd openssl python3-venv tmux iputils-ping procps kmod
STAMP := $(VENV)/.installed
# Only `make test-kernels` needs these (QEMU and a root filesystem builder), so
# `make test` does not pay for them.
VM_APT_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap debian-archive-keyring e2fsprogs

.PHONY: install lab test test-kernels rig bench lint clean

install: $(STAMP)
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	@$(PY) -c "from lvsxdp import loader; loader.kernel_source()"

$(STAMP): pyproject.toml
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(APT_PACKAGES); \
	fi
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

lab: install
	$(VENV)/bin/lvsxdp lab $(LAB_ARGS)

test: install
	$(VENV)/bin/ruff check lvsxdp tests tools
	$(VENV)/bin/pytest -q tests

# The suite on Debian's own kernels (6.1, 6.12) in QEMU VMs, and on the host's:
# KERNELS_ARGS='--kernels 6.1,6.12,5.10 -- tests/test_ipvsadm.py' narrows or widens it.
test-kernels: install
	@if ! dpkg -s $(VM_APT_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(VM_APT_PACKAGES); \
	fi
	$(PY) tools/kernel_matrix.py $(KERNELS_ARGS)

# The Vagrant rig (vagrant/): four Debian VMs, the seed's scenarios, then
# lvsxdp / IPVS / bare XDP_TX throughput side by side. RIG_ARGS=--keep leaves it up.
RIG_APT_PACKAGES := vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients \
	dnsmasq-base qemu-system-x86 qemu-utils mmdebstrap debian-archive-keyring e2fsprogs
rig: install
	@if ! dpkg -s $(RIG_APT_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(RIG_APT_PACKAGES); \
	fi
	$(PY) tools/rig/run.py $(RIG_ARGS)

bench: install
	$(PY) tools/bench_xdp.py

lint: install
	$(VENV)/bin/ruff check lvsxdp tests tools

clean:
	rm -rf $(VENV) *.egg-info
