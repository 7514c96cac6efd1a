"""The seed's `iptables -t mangle ... -j MARK` lines: parsing, iptables'
output formats, bad input, and the compiled lookup tables against a plain
walk of the rules (what the kernel does), without BPF."""

import ipaddress
import random
import shlex

import pytest

from lvsxdp import iptables
from lvsxdp.model import ConfigError

SEED_SHOP = ("-t mangle -A PREROUTING -d 198.18.2.1 -i eth0 -p tcp -m multiport "
             "--dport 80,443 -j MARK --set-mark 10")
SEED_FTP = ("-t mangle -A PREROUTING -i eth0 -d 198.18.2.1 -p tcp --dport 21 "
            "-j MARK --set-mark 10",
            "-t mangle -A PREROUTING -i eth0 -d 198.18.2.1 -p tcp --dport 2000:2100 "
            "-j MARK --set-mark 10")


def rules_of(*lines, rules=None):
    rules = list(rules or [])
    for line in lines:
        rules = iptables.apply(rules, iptables.parse(shlex.split(line)))
    return rules


def mark_of(rules, dst="198.18.2.1", dport=80, proto=6, src="198.18.2.50", iface="eth0",
            tables=None):
    """The mark from the compiled tables, looked up as classify.h does."""
    t = tables or iptables.compile_rules(rules, iface)
    if t.empty:
        return 0
    d = ipaddress.IPv4Address(dst)
    s = ipaddress.IPv4Address(src)
    dc = _lpm(t.dst, d)
    sc = _lpm(t.src, s) if t.uses_src else 0
    pc = next(c for lo, hi, c in t.ports[proto] if lo <= dport <= hi)
    return t.combos.get((dc, sc, pc), 0)


def _lpm(table, addr):
    best = max((net for (_, net) in table if addr in net), key=lambda n: n.prefixlen)
    return table[(4, best)]


def reference(rules, dst="198.18.2.1", dport=80, proto=6, src="198.18.2.50", iface="eth0"):
    return iptables.classify(rules, iface, 4, ipaddress.IPv4Address(src),
                             ipaddress.IPv4Address(dst), proto, dport)


def test_seed_shop_line_marks_http_and_https_only():
    rules = rules_of(SEED_SHOP)
    for port, want in ((80, 10), (443, 10), (22, 0), (8080, 0)):
        assert mark_of(rules, dport=port) == want == reference(rules, dport=port)
    assert mark_of(rules, dst="198.18.2.9") == 0
    assert mark_of(rules, proto=17) == 0


def test_seed_ftp_lines_mark_control_and_passive_range():
    rules = rules_of(*SEED_FTP)
    for port, want in ((21, 10), (20, 0), (1999, 0), (2000, 10), (2050, 10), (2100, 10),
                       (2101, 0)):
        assert mark_of(rules, dport=port) == want


def test_rules_on_another_interface_do_not_mark():
    rules = rules_of(SEED_SHOP)
    assert mark_of(rules, iface="eth1") == 0
    wildcard = rules_of("-t mangle -A PREROUTING -i eth+ -j MARK --set-mark 3")
    assert mark_of(wildcard, iface="eth7") == 3
    assert mark_of(wildcard, iface="ens3") == 0
    negated = rules_of("-t mangle -A PREROUTING ! -i eth0 -j MARK --set-mark 3")
    assert mark_of(negated, iface="eth0") == 0
    assert mark_of(negated, iface="eth1") == 3


def test_mark_does_not_terminate_the_last_matching_rule_decides():
    rules = rules_of("-t mangle -A PREROUTING -p tcp -j MARK --set-mark 1",
                     "-t mangle -A PREROUTING -p tcp --dport 80 -j MARK --set-mark 2")
    assert mark_of(rules, dport=80) == 2
    assert mark_of(rules, dport=81) == 1


def test_accept_ends_the_chain():
    rules = rules_of("-t mangle -A PREROUTING -p tcp -j MARK --set-mark 1",
                     "-t mangle -A PREROUTING -p tcp --dport 80 -j ACCEPT",
                     "-t mangle -A PREROUTING -p tcp -j MARK --set-mark 2")
    assert mark_of(rules, dport=80) == 1
    assert mark_of(rules, dport=81) == 2


def test_xmark_and_the_mark_arithmetic_targets_fold_in_order():
    rules = rules_of("-t mangle -A PREROUTING -j MARK --set-mark 0xf0",
                     "-t mangle -A PREROUTING -j MARK --or-mark 0x3",
                     "-t mangle -A PREROUTING -j MARK --and-mark 0xf1",
                     "-t mangle -A PREROUTING -j MARK --xor-mark 0x100",
                     "-t mangle -A PREROUTING -j MARK --set-mark 0x5/0xf")
    # 0xf0 | 3 = 0xf3; & 0xf1 = 0xf1; ^ 0x100 = 0x1f1; low nibble := 5 -> 0x1f5
    assert mark_of(rules) == 0x1F5 == reference(rules)


def test_negations_and_source_prefixes():
    rules = rules_of("-t mangle -A PREROUTING ! -s 198.18.0.0/16 -p udp ! --dport 53 "
                     "-j MARK --set-xmark 0x5/0xff",
                     "-t mangle -A PREROUTING -s 198.18.2.0/24 ! -d 198.18.2.1 -p tcp "
                     "-j MARK --set-mark 7")
    assert mark_of(rules, src="198.19.0.1", proto=17, dport=54) == 5
    assert mark_of(rules, src="198.19.0.1", proto=17, dport=53) == 0
    assert mark_of(rules, src="198.18.0.1", proto=17, dport=54) == 0
    assert mark_of(rules, src="198.18.2.9", dst="198.18.2.7") == 7
    assert mark_of(rules, src="198.18.2.9", dst="198.18.2.1") == 0


def test_save_and_list_formats_are_iptables():
    rules = rules_of(SEED_SHOP, *SEED_FTP,
                     "-t mangle -A PREROUTING ! -s 198.18.0.0/16 -p udp ! --dport 53 "
                     "-j MARK --set-xmark 0x5/0xff")
    assert iptables.format_save(rules) == (
        "-P PREROUTING ACCEPT\n"
        "-A PREROUTING -d 198.18.2.1/32 -i eth0 -p tcp -m multiport --dports 80,443 "
        "-j MARK --set-xmark 0xa/0xffffffff\n"
        "-A PREROUTING -d 198.18.2.1/32 -i eth0 -p tcp -m tcp --dport 21 "
        "-j MARK --set-xmark 0xa/0xffffffff\n"
        "-A PREROUTING -d 198.18.2.1/32 -i eth0 -p tcp -m tcp --dport 2000:2100 "
        "-j MARK --set-xmark 0xa/0xffffffff\n"
        "-A PREROUTING ! -s 198.18.0.0/16 -p udp -m udp ! --dport 53 "
        "-j MARK --set-xmark 0x5/0xff\n")
    # as iptables 1.8.9 (nf_tables) printed the same rules on this machine
    assert iptables.format_list(rules, iptables.parse(
        ["-t", "mangle", "-L", "PREROUTING", "-n"])) == (
        "Chain PREROUTING (policy ACCEPT)\n"
        "target     prot opt source               destination         \n"
        "MARK       6    --  0.0.0.0/0            198.18.2.1           "
        "multiport dports 80,443 MARK set 0xa\n"
        "MARK       6    --  0.0.0.0/0            198.18.2.1           "
        "tcp dpt:21 MARK set 0xa\n"
        "MARK       6    --  0.0.0.0/0            198.18.2.1           "
        "tcp dpts:2000:2100 MARK set 0xa\n"
        "MARK       17   -- !198.18.0.0/16        0.0.0.0/0            "
        "udp dpt:!53 MARK xset 0x5/0xff\n")


def test_save_output_parses_back_to_the_same_rules():
    rules = rules_of(SEED_SHOP, *SEED_FTP)
    back, skipped = iptables.parse_save(iptables.format_save(rules))
    assert back == rules and skipped == []


def test_insert_delete_flush():
    rules = rules_of(SEED_SHOP)
    rules = rules_of("-t mangle -I PREROUTING 1 -p udp -j MARK --set-mark 4", rules=rules)
    assert [r.xmark[0] for r in rules] == [4, 10]
    rules = rules_of("-t mangle -D PREROUTING 1", rules=rules)
    assert [r.xmark[0] for r in rules] == [10]
    rules = rules_of(SEED_SHOP.replace("-A", "-D"), rules=rules)
    assert rules == []
    assert rules_of(SEED_SHOP, "-t mangle -F", rules=rules) == []


def test_kernel_save_output_with_unsupported_rules_is_followed_in_part():
    text = ("*mangle\n:PREROUTING ACCEPT [0:0]\n"
            "-A PREROUTING -d 198.18.2.1/32 -p tcp -m tcp --dport 80 "
            "-j MARK --set-xmark 0xa/0xffffffff\n"
            "-A PREROUTING -m conntrack --ctstate NEW -j MARK --set-xmark 0x1/0xffffffff\n"
            "-A OUTPUT -j MARK --set-xmark 0x2/0xffffffff\nCOMMIT\n")
    rules, skipped = iptables.parse_save(text)
    assert len(rules) == 1 and rules[0].xmark == (10, 0xFFFFFFFF)
    assert len(skipped) == 1 and "conntrack" in skipped[0]


BAD = [
    ("-A PREROUTING -p tcp -j MARK --set-mark 1", "table `filter' is not supported by lvsxdp "
                                                  "(only -t mangle)"),
    ("-t nat -A PREROUTING -j MARK --set-mark 1", "table `nat' is not supported by lvsxdp "
                                                  "(only -t mangle)"),
    ("-t mangle -A INPUT -j MARK --set-mark 1", "chain `INPUT' is not supported by lvsxdp "
                                                "(only PREROUTING)"),
    ("-t mangle -A PREROUTING -p tcp", "lvsxdp needs a target: -j MARK --set-mark N "
                                       "(or ACCEPT, RETURN)"),
    ("-t mangle -A PREROUTING -j MARK", "MARK target: Parameter --set-xmark/--set-mark/"
                                        "--and-mark/--or-mark/--xor-mark is required"),
    ("-t mangle -A PREROUTING -j DROP", "target \"DROP\" is not supported by lvsxdp "
                                        "(supported: MARK, ACCEPT, RETURN)"),
    ("-t mangle -A PREROUTING -m state --state NEW -j MARK --set-mark 1",
     "match \"state\" is not supported by lvsxdp (supported: tcp, udp, multiport, comment)"),
    ("-t mangle -A PREROUTING --dport 80 -j MARK --set-mark 1", "--dport needs -p tcp or -p udp"),
    ("-t mangle -A PREROUTING -p tcp --dport 99999 -j MARK --set-mark 1",
     "invalid port/service `99999' specified"),
    ("-t mangle -A PREROUTING -p tcp --dport 90:80 -j MARK --set-mark 1",
     "invalid portrange `90:80' specified"),
    ("-t mangle -A PREROUTING -d 198.18.2.300 -j MARK --set-mark 1",
     "host/network `198.18.2.300' not found"),
    ("-t mangle -A PREROUTING -d 2001:db8::1 -j MARK --set-mark 1",
     "host/network `2001:db8::1' not found"),
    ("-t mangle -A PREROUTING -j MARK --set-mark ten", "Bad MARK value \"ten\""),
    ("-t mangle -A PREROUTING -j MARK --set-mark 0x100000000", "Bad MARK value \"0x100000000\""),
    ("-t mangle -A PREROUTING -p tcp --sport 80 -j MARK --set-mark 1",
     "option \"--sport\" is not supported by lvsxdp (destination ports only)"),
    ("-t mangle -A PREROUTING -o eth0 -j MARK --set-mark 1", "Can't use -o with PREROUTING"),
    ("-t mangle -A PREROUTING -p sctp -j MARK --set-mark 1",
     "unknown protocol \"sctp\" specified (lvsxdp: tcp, udp, icmp, all)"),
    ("-t mangle -A PREROUTING -A PREROUTING -j ACCEPT", "Cannot use more than one command at "
                                                         "a time"),
    ("-t mangle -p tcp", "no command specified"),
    ("-t mangle -A PREROUTING ! ! -p tcp -j ACCEPT", "multiple `!' flags not allowed"),
    ("-t mangle -A PREROUTING ! -j ACCEPT", "cannot negate -j"),
    ("-t mangle -A PREROUTING -j MARK --set-mark 1 --frob", "unknown option \"--frob\" "
                                                            "(not supported by lvsxdp)"),
    ("-t mangle -D PREROUTING 5", "Index of deletion too big"),
    ("-t mangle -D PREROUTING -p udp -j MARK --set-mark 9",
     "Bad rule (does a matching rule exist in that chain?)"),
    ("-t mangle -I PREROUTING 9 -j ACCEPT", "Index of insertion too big"),
]


@pytest.mark.parametrize("line,message", BAD)
def test_bad_line_gives_one_line_and_changes_nothing(line, message):
    rules = rules_of(SEED_SHOP)
    before = [r.to_dict() for r in rules]
    with pytest.raises(ConfigError) as err:
        iptables.apply(rules, iptables.parse(shlex.split(line)))
    assert str(err.value) == message
    assert [r.to_dict() for r in rules] == before


def random_rule(rng: random.Random) -> str:
    parts = ["-t mangle -A PREROUTING"]
    if rng.random() < 0.6:
        parts.append(("! " if rng.random() < 0.2 else "")
                     + f"-d 198.18.{rng.randrange(2, 4)}.{rng.randrange(0, 4)}/"
                     + str(rng.choice((32, 30, 24, 16))))
    if rng.random() < 0.3:
        parts.append(("! " if rng.random() < 0.3 else "")
                     + f"-s 198.18.2.{rng.randrange(48, 56)}/{rng.choice((32, 29, 24))}")
    if rng.random() < 0.2:
        parts.append(rng.choice(("-i eth0", "-i eth1", "! -i eth0", "-i eth+")))
    proto = rng.choice((None, "tcp", "udp", "tcp"))
    if proto:
        parts.append(("! " if rng.random() < 0.1 else "") + f"-p {proto}")
        if "!" not in parts[-1] and rng.random() < 0.7:
            ports = sorted(rng.sample(range(18, 30), 2))
            if rng.random() < 0.5:
                parts.append(("! " if rng.random() < 0.2 else "")
                             + f"--dport {ports[0]}" + (f":{ports[1]}" if rng.random() < 0.5
                                                        else ""))
            else:
                parts.append("-m multiport " + ("! " if rng.random() < 0.2 else "")
                             + f"--dports {ports[0]},{ports[1]}:{ports[1] + 2}")
    if rng.random() < 0.1:
        parts.append(rng.choice(("-j ACCEPT", "-j RETURN")))
    else:
        target = rng.choice(("--set-mark", "--set-xmark", "--or-mark", "--and-mark",
                             "--xor-mark"))
        parts.append(f"-j MARK {target} {rng.randrange(0, 8)}"
                     + (f"/{rng.randrange(1, 16)}" if target in ("--set-mark", "--set-xmark")
                        and rng.random() < 0.3 else ""))
    return " ".join(parts)


@pytest.mark.parametrize("seed", range(8))
def test_compiled_tables_agree_with_walking_the_rules(seed):
    rng = random.Random(seed)
    rules = rules_of(*(random_rule(rng) for _ in range(rng.randrange(1, 25))))
    tables = iptables.compile_rules(rules, "eth0")
    for _ in range(400):
        pkt = {"dst": f"198.18.{rng.randrange(2, 4)}.{rng.randrange(0, 5)}",
               "src": f"198.18.2.{rng.randrange(46, 58)}",
               "proto": rng.choice((6, 17)), "dport": rng.randrange(16, 34)}
        assert mark_of(rules, tables=tables, **pkt) == reference(rules, **pkt), pkt


def test_thousands_of_rules_compile_to_few_lookups():
    lines = [f"-t mangle -A PREROUTING -d 198.18.{2 + i // 250}.{i % 250} -p tcp "
             f"--dport {1000 + i} -j MARK --set-mark {1 + i % 100}" for i in range(2000)]
    rules = rules_of(*lines)
    tables = iptables.compile_rules(rules, "eth0")
    assert len(tables.combos) == 2000
    for i in (0, 999, 1999):
        dst = f"198.18.{2 + i // 250}.{i % 250}"
        assert mark_of(rules, dst=dst, dport=1000 + i, tables=tables) == 1 + i % 100
        assert mark_of(rules, dst=dst, dport=999, tables=tables) == 0
