"""Following the kernel's mangle chain cheaply (lvsxdp/netfilter.py): the
nftables generation over netlink in a namespace of the test's own, and the
timer for iptables-legacy, which has none."""

import subprocess
import sys
import time

from nsdirector import namespaces

from lvsxdp import netfilter

PROBE = """
import subprocess
from lvsxdp import netfilter
g = netfilter.NftGeneration()
before = g.read()
same = g.read()
subprocess.run(["iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-j", "MARK",
                "--set-mark", "1"], check=True)
after = g.read()
print(before, same, after)
"""


def test_the_nftables_generation_moves_with_a_rule_and_only_then(tmp_path):
    with namespaces(tmp_path, "lxo") as ([ns], _):
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        before, same, after = map(int, out.stdout.split())
        assert same == before and after > before


def test_iptables_legacy_is_read_on_a_timer(monkeypatch):
    monkeypatch.setattr(netfilter, "backend", lambda: "legacy")
    monkeypatch.setattr(netfilter, "LEGACY_S", 0.3)
    w = netfilter.Watch()
    assert w.nft is None and "no generation" in w.how
    assert w.due() and not w.due()
    time.sleep(0.35)
    assert w.due() and not w.due()
