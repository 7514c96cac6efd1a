"""Two directors on one host, in two network namespaces: each has its own
maps, configuration and agent, and neither sees or disturbs the other."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from nsdirector import cli as lvsxdp
from nsdirector import namespaces

from lvsxdp import runtime, shared
from lvsxdp.lab import run


@pytest.fixture
def two_namespaces(tmp_path):
    with namespaces(tmp_path, "lxd", 2) as made:
        yield made


def test_directors_in_two_namespaces_keep_to_themselves(two_namespaces):
    (a, b), env = two_namespaces
    for ns in (a, b):
        lvsxdp(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096",
               "--templates", "4096")
    lvsxdp(env, a, "ipvsadm", "-A", "-t", "198.18.2.1:0", "-s", "rr", "-p", "360")
    lvsxdp(env, a, "ipvsadm", "-a", "-t", "198.18.2.1:0", "-r", "198.18.2.100", "-g")
    lvsxdp(env, b, "ipvsadm", "-A", "-t", "198.18.3.1:80", "-s", "wrr", "-p", "60")

    list_a = lvsxdp(env, a, "ipvsadm", "-L", "-n").stdout
    list_b = lvsxdp(env, b, "ipvsadm", "-L", "-n").stdout
    assert "TCP  198.18.2.1:0 rr persistent 360" in list_a
    assert "198.18.3.1" not in list_a
    assert "TCP  198.18.3.1:80 wrr persistent 60" in list_b
    assert "198.18.2.1" not in list_b

    pins = os.listdir("/sys/fs/bpf/lvsxdp")
    assert a in pins and b in pins
    # a's real has no route (exit 1, a problem); b has no real
    st_a = lvsxdp(env, a, "status", "--json", check=False).stdout
    st_b = lvsxdp(env, b, "status", "--json").stdout
    assert json.loads(st_a)["problems"] == [
        "real 198.18.2.100 UNREACHABLE: no route (Network is unreachable)"]
    assert f'"netns": "{a}"' in st_a and f'"netns": "{b}"' in st_b

    # a plain down keeps a's tables pinned for its next up; --flush drops them
    lvsxdp(env, a, "down", "eth0")
    assert a in os.listdir("/sys/fs/bpf/lvsxdp")
    assert lvsxdp(env, a, "status", check=False).returncode == 1
    lvsxdp(env, a, "down", "eth0", "--flush")
    assert a not in os.listdir("/sys/fs/bpf/lvsxdp")
    assert lvsxdp(env, a, "status", check=False).returncode == 1
    # b is untouched: still running, still configured
    assert '"agent_alive": true' in lvsxdp(env, b, "status", "--json").stdout
    assert "TCP  198.18.3.1:80 wrr persistent 60" in lvsxdp(env, b, "ipvsadm", "-L", "-n").stdout


def test_a_real_added_while_the_agent_is_down_gets_its_mac_from_the_kernel(tmp_path):
    """The agent keeps MACs fresh, but `ipvsadm -a` alone makes a real
    usable when the kernel's neighbour table knows it (IPv4 and IPv6)."""
    with namespaces(tmp_path, "lxm", 1) as ((ns,), env):
        lvsxdp(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096",
               "--templates", "4096")
        info = json.loads((Path(env["LVSXDP_RUN_DIR"]) / f"{ns}.json").read_text())
        os.kill(info["agent_pid"], signal.SIGTERM)  # started by our `up`
        for _ in range(100):
            if not os.path.exists(f"/proc/{info['agent_pid']}"):
                break
            time.sleep(0.05)
        status = lvsxdp(env, ns, "status", "--json", check=False)
        assert '"agent_alive": false' in status.stdout and status.returncode == 1
        known = {"198.18.2.100": "02:00:00:00:01:00", "2001:db8:2::100": "02:00:00:00:01:06"}
        # DR reaches a real the way the kernel routes to it: the reals' subnets
        # are on eth0
        run(ns, "ip", "addr", "add", "198.18.2.2/24", "dev", "eth0")
        run(ns, "ip", "addr", "add", "2001:db8:2::2/64", "dev", "eth0", "nodad")
        for addr, mac in known.items():
            run(ns, "ip", "neigh", "replace", addr, "lladdr", mac, "dev", "eth0",
                "nud", "permanent")
        for vip, reals in (("198.18.2.1", ("198.18.2.100", "198.18.2.200")),
                           ("[2001:db8:2::1]", ("2001:db8:2::100", "2001:db8:2::200"))):
            lvsxdp(env, ns, "ipvsadm", "-A", "-t", f"{vip}:0", "-s", "rr", "-p", "360")
            for r in reals:
                lvsxdp(env, ns, "ipvsadm", "-a", "-t", f"{vip}:0", "-r", r, "-g")
        with runtime.Maps(runtime.PIN_ROOT / ns) as maps:
            seen = {}
            for _, r in maps.reals.used():
                if r.flags & shared.REAL_F_AVAILABLE:
                    addr = str(shared.words_addr(r.family, r.addr))
                    valid = bool(r.flags & shared.REAL_F_MAC_VALID)
                    seen[addr] = ":".join(f"{b:02x}" for b in r.mac) if valid else None
        assert seen == {**known, "198.18.2.200": None, "2001:db8:2::200": None}


def _real_macs(ns: str) -> dict:
    with runtime.Maps(runtime.PIN_ROOT / ns) as maps:
        return {str(shared.words_addr(r.family, r.addr)):
                ":".join(f"{b:02x}" for b in r.mac) if r.flags & shared.REAL_F_MAC_VALID else None
                for _, r in maps.reals.used() if r.flags & shared.REAL_F_AVAILABLE}


def test_the_agent_follows_a_reals_new_mac_when_the_kernel_tells_of_it(tmp_path):
    """The agent reads routes and neighbours again when the kernel's
    rtnetlink news says something changed, not on a timer: a real's new MAC
    is in the maps well before the agent's periodic re-read would find it."""
    from lvsxdp.agent import NET_RESYNC

    with namespaces(tmp_path, "lxw", 1) as ((ns,), env):
        run(ns, "ip", "addr", "add", "198.18.2.2/24", "dev", "eth0")
        run(ns, "ip", "neigh", "replace", "198.18.2.100", "lladdr", "02:00:00:00:0a:01",
            "dev", "eth0", "nud", "permanent")
        lvsxdp(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096",
               "--templates", "4096")
        lvsxdp(env, ns, "ipvsadm", "-A", "-t", "198.18.2.1:80", "-s", "rr")
        lvsxdp(env, ns, "ipvsadm", "-a", "-t", "198.18.2.1:80", "-r", "198.18.2.100", "-g")
        assert _real_macs(ns) == {"198.18.2.100": "02:00:00:00:0a:01"}
        # the configuration change made the agent read everything: its next
        # periodic read is NET_RESYNC away
        for mac in ("02:00:00:00:0a:02", "02:00:00:00:0a:03"):
            run(ns, "ip", "neigh", "replace", "198.18.2.100", "lladdr", mac, "dev", "eth0",
                "nud", "permanent")
            began = time.monotonic()
            while _real_macs(ns) != {"198.18.2.100": mac}:
                assert time.monotonic() - began < NET_RESYNC / 3, _real_macs(ns)
                time.sleep(0.05)
