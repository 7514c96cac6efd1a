"""Firewall-mark persistence through the real program: the seed's mangle
lines compiled into the maps, packets classified in XDP, and the mark each
new connection gets compared with a walk of the rules (the kernel's way)."""

import ctypes
import ipaddress
import random
import shlex

import packets as P
import pytest
from checks import reset
from test_iptables import random_rule

from lvsxdp import iptables, runtime, shared

# Runs on each kernel of the matrix too (make test-kernels).
pytestmark = pytest.mark.kernels

SHOP = ("-t mangle -A PREROUTING -d 198.18.2.1 -i eth0 -p tcp -m multiport "
        "--dport 80,443 -j MARK --set-mark 10")
FTP = ("-t mangle -A PREROUTING -i eth0 -d 198.18.2.1 -p tcp --dport 21 -j MARK --set-mark 10",
       "-t mangle -A PREROUTING -i eth0 -d 198.18.2.1 -p tcp --dport 2000:2100 "
       "-j MARK --set-mark 10")
FWM10 = ("-A -f 10 -s rr -p", "-a -f 10 -r 198.18.2.100 -g", "-a -f 10 -r 198.18.2.200 -g")


def load_rules(d, *lines, iface="eth0"):
    rules = []
    for line in lines:
        rules = iptables.apply(rules, iptables.parse(shlex.split(line)))
    runtime.apply_marks(d.maps, iptables.compile_rules(rules, iface))
    return rules


def clear(d):
    for m in (d.maps.conns, d.maps.templates):
        for k in list(m.keys()):
            m.delete(k)


@pytest.fixture
def d(director):
    """The module's program with no services, connections, templates or mark
    rules (classification off, both generations empty)."""
    reset(director)
    load_rules(director)
    return director


def real_mac(d, addr):
    return d.macs[ipaddress.ip_address(addr)]


def test_seed_shop_http_and_https_stick_to_one_real(d):
    d.ipvsadm(*FWM10)
    load_rules(d, SHOP)
    seen = {}
    for client in ("198.18.2.50", "198.18.2.51", "198.18.2.52"):
        reals = set()
        for sport, port in ((40000, 80), (40001, 443), (40002, 80), (40003, 443)):
            frame = P.tcp(client, sport, port)
            action, out = d.run(frame)
            assert action == "XDP_TX"
            reals.add(out[:6])
            assert out == P.forwarded_to(frame, out[:6])
        assert len(reals) == 1
        seen[client] = reals.pop()
    # rr over the newest-first list: .200, .100, .200
    assert seen == {"198.18.2.50": real_mac(d, "198.18.2.200"),
                    "198.18.2.51": real_mac(d, "198.18.2.100"),
                    "198.18.2.52": real_mac(d, "198.18.2.200")}
    # a fwmark template per client: <IPPROTO_IP, client, mark as address, 0>
    v4 = shared.AF_INET
    keys = {(k.proto, shared.words_addr(v4, k.caddr).compressed,
             shared.words_addr(v4, k.vaddr).compressed, k.vport) for k, _ in d.templates()}
    assert keys == {(0, c, "0.0.0.10", 0) for c in seen}


def test_unmarked_port_is_not_the_mark_service(d):
    d.ipvsadm(*FWM10)
    load_rules(d, SHOP)
    before = d.reasons()["no_service"]
    frame = P.tcp("198.18.2.50", 40000, 22)
    assert d.run(frame) == ("XDP_PASS", frame)
    assert d.reasons()["no_service"] == before + 1


def test_seed_ftp_marks_keep_control_and_passive_data_together(d):
    d.ipvsadm(*FWM10)
    load_rules(d, *FTP)
    for client in ("198.18.2.50", "198.18.2.51"):
        reals = {d.run(P.tcp(client, 40000 + port, port))[1][:6]
                 for port in (21, 2000, 2050, 2100)}
        assert len(reals) == 1
    frame = P.tcp("198.18.2.50", 40000, 2101)
    assert d.run(frame)[0] == "XDP_PASS"


def test_mark_service_comes_before_the_vip_service(d):
    d.ipvsadm(*FWM10, "-A -t 198.18.2.1:80 -s rr", "-a -t 198.18.2.1:80 -r 198.18.2.100 -g")
    d.ipvsadm("-D -f 10", "-A -f 10 -s rr -p", "-a -f 10 -r 198.18.2.200 -g")
    load_rules(d, SHOP)
    frame = P.tcp("198.18.2.50", 40000, 80)
    assert d.run(frame) == ("XDP_TX", P.forwarded_to(frame, real_mac(d, "198.18.2.200")))
    # without the rule, the same packet goes to the VIP:80 service
    load_rules(d)
    frame = P.tcp("198.18.2.50", 40001, 80)
    assert d.run(frame) == ("XDP_TX", P.forwarded_to(frame, real_mac(d, "198.18.2.100")))


def test_rules_for_another_interface_do_not_apply(d):
    d.ipvsadm(*FWM10)
    load_rules(d, SHOP, iface="eth1")
    frame = P.tcp("198.18.2.50", 40000, 80)
    assert d.run(frame)[0] == "XDP_PASS"


def test_ipv6_packets_get_no_mark(d):
    d.ipvsadm("-A -f 10 -s rr -p", "-a -f 10 -r 198.18.2.100 -g")
    load_rules(d, "-t mangle -A PREROUTING -p tcp -j MARK --set-mark 10")
    frame = P.tcp("2001:db8:2::50", 40000, 80, dst=P.VIP6)
    assert d.run(frame)[0] == "XDP_PASS"


def test_changing_rules_switches_generation_and_clears_the_old(d):
    d.ipvsadm(*FWM10)
    load_rules(d, SHOP)
    gen = d.maps.mark_cfg.lookup(ctypes.c_uint32(0)).gen
    load_rules(d, *FTP)
    cfg = d.maps.mark_cfg.lookup(ctypes.c_uint32(0))
    assert cfg.gen == gen ^ 1 and cfg.flags & shared.MARK_F_ACTIVE
    assert {k.gen for k in d.maps.mark_dst.keys()} == {cfg.gen}
    assert {k.gen for k in d.maps.mark_combo.keys()} == {cfg.gen}
    assert d.run(P.tcp("198.18.2.50", 40000, 80))[0] == "XDP_PASS"
    assert d.run(P.tcp("198.18.2.50", 40001, 21))[0] == "XDP_TX"
    load_rules(d)  # no rules: classification is off
    assert not d.maps.mark_cfg.lookup(ctypes.c_uint32(0)).flags & shared.MARK_F_ACTIVE


@pytest.mark.parametrize("seed", range(4))
def test_program_marks_agree_with_walking_the_rules(director, seed):
    """Random rules and packets: the mark the program classifies (seen as
    the fwmark template it makes) equals the mark of a walk of the rules."""
    d = director
    rng = random.Random(seed)
    lines = [random_rule(rng).replace("-i eth1", "-i eth0") for _ in range(rng.randrange(3, 30))]
    rules = []
    for line in lines:
        rules = iptables.apply(rules, iptables.parse(shlex.split(line)))
    d.config = d.config.__class__()
    # a service for every mark the rules can make (their values and masks
    # stay below 16)
    d.ipvsadm(*[f"-A -f {m} -s rr -p" for m in range(1, 16)],
              *[f"-a -f {m} -r 198.18.2.100 -g" for m in range(1, 16)])
    runtime.apply_marks(d.maps, iptables.compile_rules(rules, "eth0"))
    clear(d)
    for i in range(150):
        dst = f"198.18.{rng.randrange(2, 4)}.{rng.randrange(0, 5)}"
        src = f"198.18.2.{rng.randrange(46, 58)}"
        proto = rng.choice((6, 17))
        dport = rng.randrange(16, 34)
        want = iptables.classify(rules, "eth0", 4, ipaddress.IPv4Address(src),
                                 ipaddress.IPv4Address(dst), proto, dport)
        build = P.tcp if proto == 6 else P.udp
        frame = build(src, 30000 + i, dport, dst=dst)
        action, _ = d.run(frame)
        assert want < 16
        if want == 0:
            assert action == "XDP_PASS", (lines, src, dst, proto, dport, want)
            continue
        assert action == "XDP_TX", (lines, src, dst, proto, dport, want)
        v4 = shared.AF_INET
        got = [k for k, _ in d.templates()
               if k.proto == 0 and shared.words_addr(v4, k.caddr).compressed == src]
        assert {shared.words_addr(v4, k.vaddr) for k in got} == {ipaddress.IPv4Address(want)}
        clear(d)
    d.config = d.config.__class__()
    d.apply()
    runtime.apply_marks(d.maps, iptables.compile_rules([], "eth0"))
