"""Two directors on one host, in two network namespaces: each has its own
maps, configuration and agent, and neither sees or disturbs the other."""

import os
import subprocess

import pytest
from nsdirector import LVSXDP, namespaces
from nsdirector import cli as lvsxdp


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
    st_a = lvsxdp(env, a, "status", "--json").stdout
    st_b = lvsxdp(env, b, "status", "--json").stdout
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


def test_ip_netns_exec_is_refused_with_a_pointer_to_dash_n(two_namespaces):
    (a, _), env = two_namespaces
    out = subprocess.run(["ip", "netns", "exec", a, LVSXDP, "up", "eth0"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().endswith("use `lvsxdp -n NETNS ...` instead")
    assert "\n" not in out.stderr.strip()
