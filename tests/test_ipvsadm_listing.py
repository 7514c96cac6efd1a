"""`ipvsadm -L`'s options, `-L -c` and `-Z`, byte for byte as ipvsadm 1.31
prints them, and the rate estimator as IPVS's ip_vs_est.c computes it.

Expected strings are derived by hand from ipvsadm.c's printf formats (the
derivation is in the comments, spaces counted), and checked a second way
against the C library's own snprintf running those same format strings.
The counters, -Z and the rates are then checked through the real program's
maps: packets sent with BPF_PROG_TEST_RUN must show up in --stats exactly.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import random
import re
import secrets
import shlex
import subprocess
import sys
import time

import packets as P
import pytest
from harness import REAL_MACS

from lvsxdp import agent, bpfsys, ipvsadm, lab, shared, snapshot
from lvsxdp.ipvsadm import Entry, RealCounts, Snapshot, print_largenum
from lvsxdp.model import Config, ConfigError

VIP = P.VIP
R100, R200 = "198.18.2.100", "198.18.2.200"
NS = shared.NS
U64 = (1 << 64) - 1

SEED_PCC = [
    f"-A -t {VIP}:0 -s rr -p 360",
    f"-a -t {VIP}:0 -r {R100} -g",
    f"-a -t {VIP}:0 -r {R200} -g",
]


def configure(lines, config=None) -> Config:
    config = config or Config()
    for line in lines:
        config = ipvsadm.apply(config, ipvsadm.parse(shlex.split(line)))
    return config


def listing(config, line: str, snap: Snapshot | None = None) -> str:
    return ipvsadm.format_list(config, ipvsadm.parse(shlex.split(line)), snap or Snapshot())


def counts(config, **by_addr) -> Snapshot:
    """A Snapshot giving each real (by address, dots as underscores) its
    RealCounts."""
    snap = Snapshot()
    for svc in config.services:
        for r in svc.reals:
            snap.reals[r.index] = by_addr.get(str(r.addr).replace(".", "_").replace(":", "_"),
                                              RealCounts())
    return snap


# -- the C library as a second oracle ------------------------------------------

_libc = ctypes.CDLL(None)


def c_printf(fmt: str, *args) -> str:
    """snprintf with ipvsadm's format string itself: ints are passed as
    unsigned long long for %llu and as unsigned int otherwise."""
    conv = []
    star = None
    specs = iter(re.findall(r"%[-0-9*]*(?:ll)?[a-z]", fmt))
    for a in args:
        if isinstance(a, str):
            conv.append(ctypes.c_char_p(a.encode()))
            next(specs)
            continue
        if star:  # the width went before: this is its value
            spec, star = star, None
        else:
            spec = next(specs)
            if "*" in spec:  # the width first, then the value
                conv.append(ctypes.c_int(a))
                star = spec
                continue
        conv.append(ctypes.c_ulonglong(a) if "ll" in spec else ctypes.c_uint(a))
    buf = ctypes.create_string_buffer(512)
    _libc.snprintf(buf, 512, fmt.encode(), *conv)
    return buf.value.decode()


def c_largenum(i: int, exact: bool) -> str:
    """ipvsadm.c's print_largenum, line by line, through snprintf."""
    if exact:
        n = len(c_printf("%llu", i))
        return c_printf("%*llu", 9 if n <= 8 else n + 1, i)
    if i < 100000000:
        return c_printf("%9llu", i)
    if i < 1000000000:
        return c_printf("%8lluK", i // 1000)
    if i < 100000000000:
        return c_printf("%8lluM", i // 1000000)
    if i < 100000000000000:
        return c_printf("%8lluG", i // 1000000000)
    return c_printf("%8lluT", i // 1000000000000)


# -- print_largenum --------------------------------------------------------------

LARGENUM = [
    # "%9llu" below 100 million: right-aligned in 9 columns
    (0, "        0"), (99999999, " 99999999"),
    # "%8lluK" % (i / 1000) from 100 million: 8 columns and the letter
    (100000000, "  100000K"), (999999999, "  999999K"),
    # "%8lluM" % (i / 10^6) from 1 billion
    (1000000000, "    1000M"), (99999999999, "   99999M"),
    # "%8lluG" % (i / 10^9) from 100 billion
    (100000000000, "     100G"), (99999999999999, "   99999G"),
    # "%8lluT" % (i / 10^12) from 100 trillion, up to u64's largest
    (100000000000000, "     100T"), (U64, "18446744T"),
]


@pytest.mark.parametrize("value,text", LARGENUM)
def test_print_largenum_abbreviates_at_ipvsadms_thresholds(value, text):
    assert print_largenum(value) == text
    assert len(text) == 9


EXACT = [
    # --exact: "%*llu" with width 9 up to 8 digits, else digits + 1
    (0, "        0"), (12345678, " 12345678"), (123456789, " 123456789"),
    (U64, " 18446744073709551615"),
]


@pytest.mark.parametrize("value,text", EXACT)
def test_print_largenum_exact_never_abbreviates_and_keeps_one_space(value, text):
    assert print_largenum(value, exact=True) == text


def test_print_largenum_matches_ipvsadms_code_run_by_the_c_library():
    rng = random.Random(7)
    values = [v for t in (10**8, 10**9, 10**11, 10**14) for v in (t - 1, t, t + 1)]
    values += [rng.randrange(0, 10 ** rng.randrange(1, 20)) for _ in range(2000)] + [U64]
    for v in values:
        for exact in (False, True):
            assert print_largenum(v, exact) == c_largenum(v, exact), (v, exact)


# -- the listings ------------------------------------------------------------------

VERSION = "IP Virtual Server version 1.2.1 (size=4096)\n"
# print_title(FMT_NONE): two literal lines
PLAIN_TITLE = ("Prot LocalAddress:Port Scheduler Flags\n"
               "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
# print_title(FMT_STATS): "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n".
# "Prot LocalAddress:Port" is 22 characters: %-33s adds 11 spaces; each " %8s"
# is a space and the word right-aligned in 8.
STATS_TITLE = ("Prot LocalAddress:Port" + " " * 11 + " " + "   Conns" + " " + "  InPkts"
               + " " + " OutPkts" + " " + " InBytes" + " " + "OutBytes" + "\n"
               "  -> RemoteAddress:Port\n")
RATE_TITLE = ("Prot LocalAddress:Port" + " " * 11 + " " + "     CPS" + " " + "   InPPS"
              + " " + "  OutPPS" + " " + "   InBPS" + " " + "  OutBPS" + "\n"
              "  -> RemoteAddress:Port\n")
# FMT_THRESHOLDS: "%-33s %-10s %-10s %-10s %-10s": left-aligned words, so
# "InActConn" (9) leaves one trailing space
THRESHOLDS_TITLE = ("Prot LocalAddress:Port" + " " * 11 + " Uthreshold" + " Lthreshold"
                    + " ActiveConn" + " InActConn " + "\n"
                    "  -> RemoteAddress:Port\n")
# FMT_PERSISTENTCONN: "%-33s %-9s %-11s %-10s %-10s"
PCONN_TITLE = ("Prot LocalAddress:Port" + " " * 11 + " Weight   " + " PersistConn"
               + " ActiveConn" + " InActConn " + "\n"
               "  -> RemoteAddress:Port\n")


def test_list_plain_sorts_reals_by_address_and_nosort_keeps_ipvs_list_order():
    config = configure(SEED_PCC)
    snap = counts(config, **{"198_18_2_100": RealCounts(active=3, inactive=12),
                             "198_18_2_200": RealCounts(active=1234567890, inactive=0)})
    # "%s %s" + " persistent %u"; reals "  -> %-28s %-7s %-6d %-10u %-10u":
    # "198.18.2.100:0" (14) padded to 28, "Route" to 7, weight to 6, counts to 10
    # (a count of 10 digits fills its column; the line still ends in "%-10u")
    row100 = "  -> " + "198.18.2.100:0" + " " * 14 + " Route  " + " 1     " + " 3         " \
        + " 12        " + "\n"
    row200 = "  -> " + "198.18.2.200:0" + " " * 14 + " Route  " + " 1     " + " 1234567890" \
        + " 0         " + "\n"
    svc = "TCP  198.18.2.1:0 rr persistent 360\n"
    assert listing(config, "-L -n", snap) == VERSION + PLAIN_TITLE + svc + row100 + row200
    # --sort is a no-op in 1.31; --nosort shows IPVS's list: newest first
    assert listing(config, "-L -n --sort", snap) == VERSION + PLAIN_TITLE + svc + row100 + row200
    assert listing(config, "-L -n --nosort", snap) == \
        VERSION + PLAIN_TITLE + svc + row200 + row100


def test_list_sorts_services_as_libipvs_compares_them():
    # ipvs_cmp_services: fwmark, then family, protocol, address, port; a
    # firewall-mark service has fwmark > 0 and so comes after every other
    config = configure([
        "-A -f 2 -s rr -p", "-A -u 198.18.2.1:53 -s rr", "-A -t [2001:db8::1]:80 -s rr",
        "-A -t 198.18.2.1:443 -s rr", "-A -t 198.18.2.1:80 -s rr -p 60 -M 255.255.255.0",
        "-A -f 1 -6 -s wrr -p 30 -M 64", "-A -t 198.18.0.9:8080 -s rr",
    ])
    lines = [line for line in listing(config, "-L -n").splitlines()[3:]]
    assert lines == [
        "TCP  198.18.0.9:8080 rr",
        "TCP  198.18.2.1:80 rr persistent 60 mask 255.255.255.0",
        "TCP  198.18.2.1:443 rr",
        "UDP  198.18.2.1:53 rr",
        "TCP  [2001:db8::1]:80 rr",
        # "FWM  %u IPv6" for an IPv6 mark service; " mask %i" for its -M
        "FWM  1 IPv6 wrr persistent 30 mask 64",
        "FWM  2 rr persistent 360",
    ]


def test_list_order_keeps_ipvsadms_int_overflow_between_distant_addresses():
    # ipvs_cmp_dests: r = ntohl(a) - ntohl(b) stored in an int. For 1.0.0.1
    # and 200.0.0.1: 0x01000001 - 0xC8000001 = -0xC7000000, which as an int
    # is +0x39000000: ipvsadm lists 200.0.0.1 *before* 1.0.0.1. With three
    # reals glibc's merge sort decides: [a, b, c] = newest first is
    # [100.0.0.1, 1.0.0.1, 200.0.0.1] -> split [100.0.0.1] [1.0.0.1, 200.0.0.1];
    # the right half sorts to [200.0.0.1, 1.0.0.1] (1.0.0.1 > 200.0.0.1);
    # merging: 100 vs 200: 0x64.. - 0xC8.. < 0 -> 100.0.0.1 first; then 200,
    # then 1.
    config = configure(["-A -t 198.18.2.1:80 -s rr", "-a -t 198.18.2.1:80 -r 200.0.0.1",
                        "-a -t 198.18.2.1:80 -r 1.0.0.1", "-a -t 198.18.2.1:80 -r 100.0.0.1"])
    reals = [line.split()[1] for line in listing(config, "-L -n").splitlines()[4:]]
    assert reals == ["100.0.0.1:80", "200.0.0.1:80", "1.0.0.1:80"]


def test_list_stats_columns_and_abbreviations():
    config = configure(SEED_PCC)
    snap = counts(config, **{
        "198_18_2_100": RealCounts(conns=7, packets=99999999, bytes=123456789012),
        "198_18_2_200": RealCounts(conns=100000000, packets=3, bytes=1500)})
    snap.services[config.services[0].index] = RealCounts(conns=100000007, packets=100000002,
                                                         bytes=123456790512)
    # service line: "%-33s" then print_largenum x5 (Conns InPkts OutPkts
    # InBytes OutBytes); DR has no out-direction: OutPkts/OutBytes are 0.
    # 100000007 -> "%8lluK" % 100000 = "  100000K"; 123456790512 -> "%8lluG" % 123
    svc = "TCP  198.18.2.1:0" + " " * 16 + "  100000K" + "  100000K" + "        0" \
        + "     123G" + "        0" + "\n"
    # reals: "  -> %-28s" then the same five
    r100 = "  -> 198.18.2.100:0" + " " * 14 + "        7" + " 99999999" + "        0" \
        + "     123G" + "        0" + "\n"
    r200 = "  -> 198.18.2.200:0" + " " * 14 + "  100000K" + "        3" + "        0" \
        + "     1500" + "        0" + "\n"
    assert listing(config, "-L -n --stats", snap) == VERSION + STATS_TITLE + svc + r100 + r200
    # --exact: the exact number, one space before it
    svc_x = "TCP  198.18.2.1:0" + " " * 16 + " 100000007" + " 100000002" + "        0" \
        + " 123456790512" + "        0" + "\n"
    r100_x = "  -> 198.18.2.100:0" + " " * 14 + "        7" + " 99999999" + "        0" \
        + " 123456789012" + "        0" + "\n"
    r200_x = "  -> 198.18.2.200:0" + " " * 14 + " 100000000" + "        3" + "        0" \
        + "     1500" + "        0" + "\n"
    assert listing(config, "-L -n --stats --exact", snap) == \
        VERSION + STATS_TITLE + svc_x + r100_x + r200_x
    # -X is --exact's short form; --stats wins over --rate (print_title's order)
    assert listing(config, "-L -n --stats -X --rate", snap) == \
        VERSION + STATS_TITLE + svc_x + r100_x + r200_x


def test_list_rate_real_lines_print_cps_and_pps_unabbreviated():
    config = configure(SEED_PCC)
    snap = counts(config, **{
        "198_18_2_100": RealCounts(cps=12, pps=123456789, bps=987654321),
        "198_18_2_200": RealCounts(cps=0, pps=1, bps=64)})
    snap.services[config.services[0].index] = RealCounts(cps=12, pps=123456790, bps=987654385)
    # service line: print_largenum for all five -> 123456790 is "  123456K"
    svc = "TCP  198.18.2.1:0" + " " * 16 + "       12" + "  123456K" + "        0" \
        + "  987654K" + "        0" + "\n"
    # real line: "  -> %-28s %8llu %8llu %8llu" (never abbreviated: ipvsadm's
    # own quirk), then print_largenum(InBPS) print_largenum(OutBPS)
    r100 = "  -> 198.18.2.100:0" + " " * 14 + "       12" + " 123456789" + "        0" \
        + "  987654K" + "        0" + "\n"
    r200 = "  -> 198.18.2.200:0" + " " * 14 + "        0" + "        1" + "        0" \
        + "       64" + "        0" + "\n"
    assert listing(config, "-L -n --rate", snap) == VERSION + RATE_TITLE + svc + r100 + r200
    r100_x = r100.replace("  987654K", " 987654321")
    svc_x = svc.replace("  123456K", " 123456790").replace("  987654K", " 987654385")
    assert listing(config, "-L -n --rate --exact", snap) == \
        VERSION + RATE_TITLE + svc_x + r100_x + r200


def test_list_thresholds_and_persistent_conn():
    config = configure(SEED_PCC)
    r200, r100 = config.services[0].reals
    r100.u_threshold, r100.l_threshold = 100, 20  # -x 100 -y 20
    snap = counts(config, **{"198_18_2_100": RealCounts(active=2, inactive=5, persistent=4),
                             "198_18_2_200": RealCounts(persistent=1)})
    svc = "TCP  198.18.2.1:0 rr persistent 360\n"  # the plain service line
    # "  -> %-28s %-10u %-10u %-10u %-10u\n"
    t100 = "  -> 198.18.2.100:0" + " " * 14 + " 100       " + " 20        " + " 2         " \
        + " 5         " + "\n"
    t200 = "  -> 198.18.2.200:0" + " " * 14 + (" 0" + " " * 9) * 4 + "\n"
    assert listing(config, "-L -n --thresholds", snap) == \
        VERSION + THRESHOLDS_TITLE + svc + t100 + t200
    # "  -> %-28s %-9u %-11u %-10u %-10u\n": Weight PersistConn ActiveConn InActConn
    p100 = "  -> 198.18.2.100:0" + " " * 14 + " 1        " + " 4          " + " 2         " \
        + " 5         " + "\n"
    p200 = "  -> 198.18.2.200:0" + " " * 14 + " 1        " + " 1          " + " 0         " \
        + " 0         " + "\n"
    assert listing(config, "-L -n --persistent-conn", snap) == \
        VERSION + PCONN_TITLE + svc + p100 + p200


def test_list_tun_info_timeout_and_daemon():
    config = configure(SEED_PCC + ["--set 600 60 120"])
    # FMT_TUN_INFO: "  -> %-28s %-7s %-13s %-6d %-10u %-10u"; not a tunnel: "n/a"
    assert listing(config, "-L -n --tun-info").splitlines(keepends=True)[1:4] == [
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        "TCP  198.18.2.1:0 rr persistent 360\n",
    ]
    assert listing(config, "-L -n --tun-info").splitlines()[4] == \
        "  -> 198.18.2.100:0" + " " * 14 + " Route  " + " n/a          " + " 1     " \
        + " 0         " * 2
    # list_timeout: "Timeout (tcp tcpfin udp): %d %d %d\n"
    assert listing(config, "-L --timeout") == "Timeout (tcp tcpfin udp): 600 60 120\n"
    assert listing(Config(), "-L -n --timeout") == "Timeout (tcp tcpfin udp): 900 120 300\n"
    # list_daemon: a line per sync daemon; lvsxdp runs none
    assert listing(config, "-L --daemon") == ""


def test_list_one_service_has_no_version_line():
    config = configure(SEED_PCC + ["-A -u 198.18.2.1:53 -s rr",
                                   "-a -u 198.18.2.1:53 -r 198.18.2.100",
                                   "-A -f 10 -s rr -p", "-a -f 10 -r 198.18.2.200 -g"])
    # list_service: print_title + print_service_entry, no "IP Virtual Server" line
    assert listing(config, "-L -n -u 198.18.2.1:53") == PLAIN_TITLE + \
        "UDP  198.18.2.1:53 rr\n" \
        "  -> 198.18.2.100:53" + " " * 13 + " Route  " + " 1     " + " 0         " * 2 + "\n"
    assert listing(config, "-L -n -f 10 --stats") == STATS_TITLE + \
        "FWM  10" + " " * 26 + "        0" * 5 + "\n" + \
        "  -> 198.18.2.200:0" + " " * 14 + "        0" * 5 + "\n"
    assert listing(config, f"-L -n -t {VIP}") == listing(config, f"-Ln --tcp-service={VIP}:0")
    with pytest.raises(ConfigError, match="^No such service$"):
        listing(config, "-L -n -t 198.18.2.1:80")


def test_list_scheduler_flags_are_named_by_bit_for_the_scheduler():
    config = configure(SEED_PCC)
    svc = config.services[0]
    # print_sched_flags: by flag bit (SCHED1, SCHED2), named for sh
    svc.scheduler, svc.sched_flags = "sh", ["sh-port", "sh-fallback"]
    assert listing(config, "-L -n").splitlines()[3] == \
        "TCP  198.18.2.1:0 sh (sh-fallback,sh-port) persistent 360"
    svc.scheduler, svc.sched_flags = "rr", ["flag-2"]
    assert listing(config, "-L -n").splitlines()[3] == \
        "TCP  198.18.2.1:0 rr (flag-2) persistent 360"


CONN_TITLE = ("IPVS connection entries\n"
              # "pro expire %-11s %-18s %-18s %s\n"
              "pro expire " + "state      " + " source            " + " virtual           "
              + " destination\n")
ENTRIES = [
    Entry("TCP", 898, "ESTABLISHED", "198.18.2.50:41234", "198.18.2.1:80", "198.18.2.100:80"),
    Entry("UDP", 299, "UDP", "198.18.2.50:5353", "198.18.2.1:53", "198.18.2.100:53"),
    Entry("UDP", 359, "NONE", "198.18.2.50:0", "198.18.2.1:53", "198.18.2.100:53"),
    Entry("IP", 6000, "NONE", "198.18.2.50:0", "0.0.0.10:0", "198.18.2.100:0"),
    Entry("TCP", 59, "SYN_RECV", "[2001:db8:2::50]:40000", "[2001:db8:2::1]:443",
          "[2001:db8:2::100]:443"),
    Entry("IP", 360, "NONE", "[2001:db8:2::50]:0", "[0:a::]:0", "[2001:db8:2::100]:0"),
]
# print_conn: "%-3s %-6s %-11s %-18s %-18s %s\n" with expire "%02d:%02d"
# (minutes past 99 widen it: 6000 s is "100:00", which %-6s leaves alone)
CONN_ROWS = (
    "TCP 14:58  ESTABLISHED 198.18.2.50:41234  198.18.2.1:80      198.18.2.100:80\n"
    "UDP 04:59  UDP         198.18.2.50:5353   198.18.2.1:53      198.18.2.100:53\n"
    "UDP 05:59  NONE        198.18.2.50:0      198.18.2.1:53      198.18.2.100:53\n"
    "IP  100:00 NONE        198.18.2.50:0      0.0.0.10:0         198.18.2.100:0\n"
    # an IPv6 address longer than 18 overflows its column: one space after it
    "TCP 00:59  SYN_RECV    [2001:db8:2::50]:40000 [2001:db8:2::1]:443 [2001:db8:2::100]:443\n"
    "IP  06:00  NONE        [2001:db8:2::50]:0 [0:a::]:0          [2001:db8:2::100]:0\n"
)


def test_connection_listing_rows_for_tcp_udp_ipv6_and_templates():
    snap = Snapshot(entries=ENTRIES)
    assert listing(Config(), "-L -n -c", snap) == CONN_TITLE + CONN_ROWS
    # --persistent-conn adds pe name and pe_data to the header
    # ("pro expire %-11s %-18s %-18s %-18s %-16s %s\n"); rows without a
    # persistence engine keep the short format
    assert listing(Config(), "-L -n -c --persistent-conn", snap) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination        "
        "pe name          pe_data\n" + CONN_ROWS)


def test_every_row_format_matches_the_c_library_running_ipvsadms_format_strings():
    rng = random.Random(11)
    config = configure(SEED_PCC)
    for _ in range(200):
        # connection counts are the kernel's u32, the counters and rates u64
        c = RealCounts(*(rng.randrange(0, 10 ** rng.randrange(1, 10)) for _ in range(3)),
                       *(rng.randrange(0, 10 ** rng.randrange(1, 20)) for _ in range(6)))
        snap = counts(config, **{"198_18_2_100": c})
        r = config.services[0].reals[1]
        assert str(r.addr) == R100
        r.weight, r.u_threshold, r.l_threshold = (rng.randrange(0, 65536) for _ in range(3))
        row = {opt: listing(config, f"-L -n {opt}", snap).splitlines(keepends=True)[4]
               for opt in ("", "--thresholds", "--persistent-conn", "--stats", "--rate",
                           "--stats --exact", "--rate --exact", "--tun-info")}
        d = "198.18.2.100:0"
        assert row[""] == c_printf("  -> %-28s %-7s %-6d %-10u %-10u\n", d, "Route", r.weight,
                                   c.active, c.inactive)
        assert row["--thresholds"] == c_printf("  -> %-28s %-10u %-10u %-10u %-10u\n", d,
                                               r.u_threshold, r.l_threshold, c.active,
                                               c.inactive)
        assert row["--persistent-conn"] == c_printf("  -> %-28s %-9u %-11u %-10u %-10u\n", d,
                                                    r.weight, c.persistent, c.active,
                                                    c.inactive)
        assert row["--tun-info"] == c_printf("  -> %-28s %-7s %-13s %-6d %-10u %-10u\n", d,
                                             "Route", "n/a", r.weight, c.active, c.inactive)
        for exact in (False, True):
            x = " --exact" if exact else ""
            assert row["--stats" + x] == c_printf("  -> %-28s", d) + "".join(
                c_largenum(v, exact) for v in (c.conns, c.packets, 0, c.bytes, 0)) + "\n"
            assert row["--rate" + x] == c_printf("  -> %-28s %8llu %8llu %8llu", d, c.cps,
                                                 c.pps, 0) \
                + c_largenum(c.bps, exact) + c_largenum(0, exact) + "\n"


BAD_LISTS = [
    # generic_opt_check, walking ipvsadm's option table in order
    ("-L -s rr", "Illegal 'scheduler' option with the 'list' command"),
    ("-L -p", "Illegal 'persistent' option with the 'list' command"),
    ("-L -n -r 198.18.2.100", "Illegal 'real-server' option with the 'list' command"),
    ("-L -w 1", "Illegal 'weight' option with the 'list' command"),
    ("-L -c -t 198.18.2.1:0",
     "The option 'service-address' conflicts with the 'connection' option in the 'list' "
     "command"),
    ("-L --timeout -c",
     "The option 'timeout' conflicts with the 'connection' option in the 'list' command"),
    ("-L --daemon --timeout",
     "The option 'daemon' conflicts with the 'timeout' option in the 'list' command"),
    # then process_options' own check
    ("-L -c --stats", "options conflicts in the list command"),
    ("-L -c --rate", "options conflicts in the list command"),
    ("-L -c --thresholds", "options conflicts in the list command"),
    ("-L --timeout --stats", "options conflicts in the list command"),
    ("-L --daemon --rate", "options conflicts in the list command"),
    ("-L --timeout --persistent-conn", "options conflicts in the list command"),
    ("-L --daemon --persistent-conn", "options conflicts in the list command"),
]


@pytest.mark.parametrize("line,message", BAD_LISTS)
def test_options_that_do_not_go_together_give_ipvsadms_errors(line, message):
    with pytest.raises(ConfigError) as err:
        listing(configure(SEED_PCC), line)
    assert str(err.value) == message


BAD_ZEROS = [
    ("-Z -n", "Illegal 'numeric' option with the 'zero' command"),
    ("-Z -c", "Illegal 'connection' option with the 'zero' command"),
    ("-Z --stats", "Illegal 'stats' option with the 'zero' command"),
    ("-Z -t 198.18.2.1:0 -r 198.18.2.100", "Illegal 'real-server' option with the 'zero' command"),
    ("-Z -t 198.18.2.1:80", "No such service"),
]


@pytest.mark.parametrize("line,message", BAD_ZEROS)
def test_zero_takes_a_service_and_nothing_else(line, message):
    with pytest.raises(ConfigError) as err:
        ipvsadm.zero_targets(configure(SEED_PCC), ipvsadm.parse(shlex.split(line)))
    assert str(err.value) == message


def test_zero_targets_one_service_or_all():
    config = configure(SEED_PCC + ["-A -u 198.18.2.1:53 -s rr"])
    assert [s.proto for s in ipvsadm.zero_targets(config, ipvsadm.parse(["-Z"]))] == \
        ["tcp", "udp"]
    assert [s.proto for s in ipvsadm.zero_targets(
        config, ipvsadm.parse(shlex.split("-Z -u 198.18.2.1:53")))] == ["udp"]


# -- through the real program's maps -------------------------------------------

def run(d, frame: bytes) -> int:
    action, _ = d.run(frame)
    assert action == "XDP_TX"
    return P.ip_len(frame)


def snap_of(d) -> Snapshot:
    return snapshot.read(d.maps, d.config)


def stats_row(addr: str, conns: int, packets: int, nbytes: int) -> str:
    name = f"  -> {addr}".ljust(33)
    return name + "".join(print_largenum(v) for v in (conns, packets, 0, nbytes, 0))


def test_stats_count_exactly_the_packets_and_bytes_forwarded(fresh_director):
    d = fresh_director
    d.ipvsadm(*SEED_PCC, "-A -u 198.18.2.1:53 -s rr", "-a -u 198.18.2.1:53 -r 198.18.2.200")
    sent = {R100: [0, 0, 0], R200: [0, 0, 0], "udp": [0, 0, 0]}
    # rr starts with the newest real (.200): client .50 -> .200, .51 -> .100
    for client, real in (("198.18.2.50", R200), ("198.18.2.51", R100)):
        for i, flags in enumerate(("S", "A", "PA", "PA", "FA")):
            n = run(d, P.tcp(client, 40000, 80, flags=flags, payload=b"x" * (i * 100)))
            sent[real][0] += flags == "S"
            sent[real][1] += 1
            sent[real][2] += n
    for i in range(3):
        n = run(d, P.udp("198.18.2.52", 5000 + i, 53, payload=b"q" * 40))
        sent["udp"] = [sent["udp"][0] + 1, sent["udp"][1] + 1, sent["udp"][2] + n]

    out = ipvsadm.format_list(d.config, ipvsadm.parse(["-L", "-n", "--stats", "--exact"]),
                              snap_of(d)).splitlines()
    # InBytes: whole frames, as the data plane counts them (parse.h, pkt->len)
    tcp_total = [a + b for a, b in zip(sent[R100], sent[R200], strict=True)]
    assert out[3] == "TCP  198.18.2.1:0".ljust(33) + "".join(
        print_largenum(v, True) for v in (tcp_total[0], tcp_total[1], 0, tcp_total[2], 0))
    assert out[4] == stats_row(f"{R100}:0", *sent[R100])
    assert out[5] == stats_row(f"{R200}:0", *sent[R200])
    assert out[6] == "UDP  198.18.2.1:53".ljust(33) + "".join(
        print_largenum(v) for v in (3, 3, 0, sent["udp"][2], 0))
    assert out[7] == stats_row(f"{R200}:53", *sent["udp"])


def test_connection_listing_from_the_maps_udp_ipv6_and_templates(fresh_director):
    d = fresh_director
    v6, r6 = "2001:db8:2::1", "2001:db8:2::100"
    d.ipvsadm("-A -u 198.18.2.1:53 -s rr -p", "-a -u 198.18.2.1:53 -r 198.18.2.100",
              f"-A -t [{v6}]:443 -s rr", f"-a -t [{v6}]:443 -r {r6}")
    run(d, P.udp("198.18.2.50", 5353, 53))
    run(d, P.tcp("2001:db8:2::50", 40000, 443, dst=v6))
    conns = {k.proto: c for k, c in d.conns()}
    (_, tpl), = d.templates()
    # the UDP connection and its template were made by one packet, at one
    # instant: pick "now" 0.5 s after it
    made = conns[17].expires - 300 * NS
    assert tpl.expires == made + 360 * NS
    snap = snapshot.read(d.maps, d.config, now=made + NS // 2)
    rows = ipvsadm.format_connections(snap).splitlines(keepends=True)[2:]
    assert sorted(rows) == sorted([
        # a UDP connection's state is "UDP" (udp_state_name_table)
        "UDP 04:59  UDP         198.18.2.50:5353   198.18.2.1:53      198.18.2.100:53\n",
        # a template's state is a template state (NONE), even for UDP;
        # PPC: its dport is the real's
        "UDP 05:59  NONE        198.18.2.50:0      198.18.2.1:53      198.18.2.100:53\n",
        # IPv6 addresses in brackets, compressed (inet_ntop), wider than 18
        f"TCP {_mmss((conns[6].expires - made - NS // 2) // NS)}  SYN_RECV    "
        f"[2001:db8:2::50]:40000 [{v6}]:443 [{r6}]:443\n",
    ])


def _mmss(s: int) -> str:
    return "%02d:%02d" % (s // 60, s % 60)


def test_fwmark_templates_show_the_mark_as_their_address(fresh_director):
    d = fresh_director
    d.ipvsadm("-A -f 10 -s rr -p", "-a -f 10 -r 198.18.2.100 -g",
              "-A -f 10 -6 -s rr -p", "-a -f 10 -6 -r 2001:db8:2::100 -g")
    # firewall-mark templates as the data plane keys them (persist.h): proto
    # 0, the mark in network order as the address, port 0
    for family, client, real in ((shared.AF_INET, "198.18.2.50", d.config.services[0].reals[0]),
                                 (shared.AF_INET6, "2001:db8:2::50",
                                  d.config.services[1].reals[0])):
        k = shared.Tuple(family=family, proto=0)
        shared.set_words(k.caddr, ipaddress.ip_address(client))
        k.vaddr[0] = int.from_bytes((10).to_bytes(4, "big"), "little")
        t = shared.Template(expires=1000 * NS, real=real.ref, svc=0)
        d.maps.templates.update(k, t)
    snap = snapshot.read(d.maps, d.config, now=1000 * NS - 359 * NS)
    rows = sorted(ipvsadm.format_connections(snap).splitlines()[2:])
    assert rows == [
        # ip_vs_conn_seq_show prints an IPv6 template's vaddr with %pI6:
        # 0000:000a:0000:..., which ipvsadm's inet_ntop compresses to 0:a::
        "IP  05:59  NONE        198.18.2.50:0      0.0.0.10:0         198.18.2.100:0",
        "IP  05:59  NONE        [2001:db8:2::50]:0 [0:a::]:0          [2001:db8:2::100]:0",
    ]
    # and the real's PersistConn counts them
    assert [line.split()[2] for line in listing(d.config, "-L -n --persistent-conn",
                                                snap).splitlines()[3:] if "->" in line] == \
        ["1", "1"]


def zero(d, line: str = "-Z") -> None:
    snapshot.zero(d.maps, ipvsadm.zero_targets(d.config, ipvsadm.parse(shlex.split(line))))


def est_of(d, kind: str, index: int) -> shared.Est:
    return getattr(d.maps, f"{kind}_est").lookup(ctypes.c_uint32(index))


def test_zero_one_service_zeroes_it_and_its_reals_only(fresh_director):
    d = fresh_director
    d.ipvsadm(*SEED_PCC, "-A -u 198.18.2.1:53 -s rr", "-a -u 198.18.2.1:53 -r 198.18.2.100")
    for i in range(4):
        run(d, P.tcp(f"198.18.2.{50 + i}", 40000, 80))
        run(d, P.udp(f"198.18.2.{50 + i}", 5000, 53))
    snapshot.estimate(d.maps, d.config)
    tcp, udp = d.config.services
    before = listing(d.config, "-L -n --stats --exact", snap_of(d)).splitlines()
    udp_est = [bytes(est_of(d, "svc", udp.index))] + [bytes(est_of(d, "real", r.index))
                                                     for r in udp.reals]
    plain = listing(d.config, "-L -n --persistent-conn", snap_of(d))

    zero(d, "-Z -t 198.18.2.1:0")
    after = listing(d.config, "-L -n --stats --exact", snap_of(d)).splitlines()
    assert after[3] == "TCP  198.18.2.1:0".ljust(33) + "        0" * 5
    assert after[4] == f"  -> {R100}:0".ljust(33) + "        0" * 5
    assert after[5] == f"  -> {R200}:0".ljust(33) + "        0" * 5
    assert after[6:] == before[6:]  # the UDP service and its real
    for idx, kind in [(tcp.index, "svc")] + [(r.index, "real") for r in tcp.reals]:
        e = est_of(d, kind, idx)
        assert (e.last_conns, e.last_packets, e.last_bytes, e.cps, e.pps, e.bps, e.zeroed) == \
            (0, 0, 0, 0, 0, 0, 1)
    assert [bytes(est_of(d, "svc", udp.index))] + [bytes(est_of(d, "real", r.index))
                                                   for r in udp.reals] == udp_est
    # -Z zeroes counters, not connections or templates
    assert listing(d.config, "-L -n --persistent-conn", snap_of(d)) == plain

    # counting goes on from zero
    run(d, P.tcp("198.18.2.50", 40000, 80, flags="A"))
    assert listing(d.config, "-L -n --stats", snap_of(d)).splitlines()[3] == \
        "TCP  198.18.2.1:0".ljust(33) + "        0" + "        1" + "        0" \
        + print_largenum(P.ip_len(P.tcp("198.18.2.50", 40000, 80, flags="A"))) + "        0"

    zero(d)  # all
    assert set(listing(d.config, "-L -n --stats", snap_of(d)).splitlines()[3:]) == {
        line.ljust(33) + "        0" * 5 for line in
        ("TCP  198.18.2.1:0", f"  -> {R100}:0", f"  -> {R200}:0", "UDP  198.18.2.1:53",
         f"  -> {R100}:53")}


# -- the rate estimator ------------------------------------------------------------

class IpvsEstimator:
    """ip_vs_est.c's arithmetic, transcribed: u64 fields, the difference
    cast to s64 and shifted (arithmetic, as gcc does), every 2 s."""

    def __init__(self) -> None:
        self.last = [0, 0, 0]  # conns, inpkts, inbytes
        self.avg = [0, 0, 0]  # cps, inpps (<< 10), inbps (<< 5)

    def tick(self, conns: int, inpkts: int, inbytes: int) -> None:
        for i, (now, shift) in enumerate(((conns, 9), (inpkts, 9), (inbytes, 4))):
            rate = ((now - self.last[i]) << shift) & U64  # "scaled by 2^10, but divided 2 seconds"
            self.last[i] = now
            diff = (rate - self.avg[i]) & U64
            diff = diff - (1 << 64) if diff >> 63 else diff  # (s64)rate - (s64)e->cps
            self.avg[i] = (self.avg[i] + (diff >> 2)) & U64  # e->cps += ... >> 2

    def read(self) -> tuple[int, int, int]:  # ip_vs_read_estimator
        return ((self.avg[0] + 0x1FF) >> 10, (self.avg[1] + 0x1FF) >> 10,
                (self.avg[2] + 0xF) >> 5)


def test_estimator_worked_by_hand():
    e = shared.Est()
    # 2000 packets in the first 2 s (1000 pps): rate = 2000 << 9 = 1024000,
    # pps = 0 + (1024000 - 0) >> 2 = 256000 -> (256000 + 511) >> 10 = 250
    snapshot.est_tick(e, 0, 2000, 0)
    assert (e.pps, snapshot.est_rates(e)[1]) == (256000, 250)
    # 2000 more: pps = 256000 + (1024000 - 256000) >> 2 = 448000 -> 437.5 -> 437
    snapshot.est_tick(e, 0, 4000, 0)
    assert (e.pps, snapshot.est_rates(e)[1]) == (448000, 437)
    # nothing for 2 s: 448000 + (0 - 448000) >> 2 = 336000 -> 328.1 -> 328
    snapshot.est_tick(e, 0, 4000, 0)
    assert (e.pps, snapshot.est_rates(e)[1]) == (336000, 328)
    # bytes are scaled by 2^5: 3000 bytes in 2 s -> (3000 << 4) >> 2 = 12000 -> 375 B/s
    snapshot.est_tick(e, 0, 4000, 3000)
    assert (e.bps, snapshot.est_rates(e)[2]) == (12000, 375)


def spread(total: int, cpus: int, rng: random.Random) -> list[shared.Stats]:
    """Per-CPU parts summing to total (as the data plane's CPUs would)."""
    cuts = sorted(rng.randrange(0, total + 1) for _ in range(cpus - 1))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    return parts


def write_stats(m, index: int, conns: int, packets: int, nbytes: int, rng) -> None:
    n = bpfsys.possible_cpus()
    vals = [shared.Stats(conns=c, packets=p, bytes=b) for c, p, b in zip(
        spread(conns, n, rng), spread(packets, n, rng), spread(nbytes, n, rng), strict=True)]
    m.update(ctypes.c_uint32(index), vals)


def test_agent_estimator_matches_a_model_of_ip_vs_est(fresh_director):
    d = fresh_director
    d.ipvsadm(*SEED_PCC)
    svc = d.config.services[0]
    rng = random.Random(5)
    models = {("svc", svc.index): IpvsEstimator()}
    models.update({("real", r.index): IpvsEstimator() for r in svc.reals})
    totals = {k: [0, 0, 0] for k in models}
    for tick in range(40):
        for (kind, idx), t in totals.items():
            burst = rng.choice((0, 1, 10, 1000, 10 ** 6, 10 ** 9))
            t[0] += rng.randrange(0, burst + 1) // 100
            t[1] += rng.randrange(0, burst + 1)
            t[2] += t[1] * rng.randrange(60, 1500) if tick % 7 else 0
            write_stats(getattr(d.maps, f"{kind}_stats"), idx, *t, rng)
            models[(kind, idx)].tick(*t)
        assert snapshot.estimate(d.maps, d.config) == 3
        snap = snap_of(d)
        for (kind, idx), model in models.items():
            e = est_of(d, kind, idx)
            assert [e.last_conns, e.last_packets, e.last_bytes] == model.last
            assert [e.cps, e.pps, e.bps] == model.avg
            c = snap.services[idx] if kind == "svc" else snap.reals[idx]
            assert (c.cps, c.pps, c.bps) == model.read()
    # and the listing prints the model's numbers
    out = listing(d.config, "-L -n --rate --exact", snap).splitlines()
    cps, pps, bps = models[("svc", svc.index)].read()
    assert out[3] == "TCP  198.18.2.1:0".ljust(33) + "".join(
        print_largenum(v, True) for v in (cps, pps, 0, bps, 0))


def test_estimator_from_packets_through_the_program(fresh_director):
    d = fresh_director
    d.ipvsadm(*SEED_PCC)
    model = IpvsEstimator()
    nconns = npackets = nbytes = 0
    for tick in range(3):
        for i in range(5 * (tick + 1)):
            nbytes += run(d, P.tcp(f"198.18.2.{50 + i}", 40000 + tick, 80))
            nconns += 1
            npackets += 1
        snapshot.estimate(d.maps, d.config)
        model.tick(nconns, npackets, nbytes)
    c = snap_of(d).services[d.config.services[0].index]
    assert (c.conns, c.packets, c.bytes) == (nconns, npackets, nbytes)
    assert (c.cps, c.pps, c.bps) == model.read() != (0, 0, 0)


def test_zero_resets_the_estimates_and_counting_starts_again(fresh_director):
    d = fresh_director
    d.ipvsadm(*SEED_PCC)
    svc = d.config.services[0]
    rng = random.Random(3)
    write_stats(d.maps.svc_stats, svc.index, 10, 5000, 10 ** 6, rng)
    snapshot.estimate(d.maps, d.config)
    assert snap_of(d).services[svc.index].pps > 0
    zero(d)
    c = snap_of(d).services[svc.index]
    assert (c.conns, c.packets, c.bytes, c.cps, c.pps, c.bps) == (0,) * 6
    # the next tick counts from the zero, as a new IPVS estimator would
    write_stats(d.maps.svc_stats, svc.index, 1, 100, 6400, rng)
    snapshot.estimate(d.maps, d.config)
    model = IpvsEstimator()
    model.tick(1, 100, 6400)
    assert snap_of(d).services[svc.index].pps == model.read()[1]


def test_a_zero_during_a_tick_wins_over_the_tick(fresh_director):
    d = fresh_director
    d.ipvsadm(*SEED_PCC)
    svc = d.config.services[0]
    write_stats(d.maps.svc_stats, svc.index, 10, 5000, 10 ** 6, random.Random(1))

    class ZeroWhileReading:
        """svc_stats, with `ipvsadm -Z` landing between the tick's reads."""

        def lookup(self, key):
            value = d.maps.svc_stats.lookup(key)
            zero(d)
            return value

    assert snapshot.estimate_entry(ZeroWhileReading(), d.maps.svc_est, svc.index,
                                   snapshot.service_owner(svc)) is None
    e = est_of(d, "svc", svc.index)
    assert (e.pps, e.last_packets, e.zeroed) == (0, 0, 1)


def test_a_new_real_in_a_reused_slot_does_not_inherit_rates(fresh_director):
    d = fresh_director
    d.ipvsadm(*SEED_PCC)
    for i in range(20):  # 10 connections each in 2 s: 5 cps, 1 after the first tick
        run(d, P.tcp(f"198.18.2.{50 + i}", 40000, 80))
    snapshot.estimate(d.maps, d.config)
    old = {r.index: r.ref for r in d.config.services[0].reals}
    assert any(snap_of(d).reals[i].cps for i in old)
    d.ipvsadm(f"-d -t {VIP}:0 -r {R200}")
    d.config.purge_trash(set())  # as once nothing names the removed real any more
    d.ipvsadm(f"-a -t {VIP}:0 -r 198.18.2.150")
    new = {r.index: r.ref for r in d.config.services[0].reals}
    assert set(new) == set(old) and new != old  # a slot reused, with a new generation
    reused = next(i for i in new if new[i] != old[i])
    assert est_of(d, "real", reused).owner == old[reused]  # the old real's estimate...
    assert snap_of(d).reals[reused].cps == 0  # ...is not shown for the new one
    snapshot.estimate(d.maps, d.config)
    e = est_of(d, "real", reused)
    assert (e.owner, e.cps, e.last_packets) == (new[reused], 0, 0)


def test_agent_ticks_keep_to_a_two_second_grid(monkeypatch):
    calls = []
    monkeypatch.setattr(snapshot, "estimate", lambda maps, config: calls.append(1) or 0)
    fake = type("A", (), {"maps": None, "config": None})()
    clock = [100.0]
    monkeypatch.setattr(agent.time, "monotonic", lambda: clock[0])
    due = agent.Agent.estimate(fake, 101.0)
    assert (due, calls) == (101.0, [])  # not yet
    clock[0] = 101.3  # late by 0.3 s: the next one is still due at 103
    assert agent.Agent.estimate(fake, due) == 103.0 and len(calls) == 1
    clock[0] = 200.0  # stalled: start the grid again from now
    assert agent.Agent.estimate(fake, 103.0) == 202.0 and len(calls) == 2


# -- the command, with a running director and its agent ------------------------

LVSXDP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      ".venv", "bin", "lvsxdp")
SENDER = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth1", 0))
for line in open(sys.argv[1]):
    s.send(bytes.fromhex(line))
"""


@pytest.fixture
def director_ns(tmp_path):
    """A director up on eth0 (generic XDP) of a namespace of its own; eth1,
    its veth peer, is where the test's frames come from and go back to."""
    ns = f"lxs{secrets.token_hex(3)}"
    env = dict(os.environ, LVSXDP_STATE_DIR=str(tmp_path / "state"),
               LVSXDP_RUN_DIR=str(tmp_path / "run"))
    try:
        lab.run(None, "ip", "netns", "add", ns)
        lab.run(ns, "ip", "link", "add", "name", "eth0", "type", "veth", "peer", "name", "eth1")
        for dev in ("eth0", "eth1"):
            lab.run(ns, "ip", "link", "set", "dev", dev, "up")
        lab.run(ns, "ip", "addr", "add", "198.18.2.2/24", "dev", "eth0")
        lab.run(ns, "ip", "neigh", "replace", R100, "lladdr", REAL_MACS[R100], "dev", "eth0",
                "nud", "permanent")
        cli(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096", "--templates", "4096")
        yield ns, env
    finally:
        subprocess.run([LVSXDP, "-n", ns, "down", "eth0", "--flush"], env=env, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def cli(env, ns, *args) -> str:
    out = subprocess.run([LVSXDP, "-n", ns, *args], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_lvsxdp_ipvsadm_stats_rate_and_zero_on_a_running_director(director_ns, tmp_path):
    ns, env = director_ns
    cli(env, ns, "ipvsadm", "-A", "-t", f"{VIP}:80", "-s", "rr", "-p")
    cli(env, ns, "ipvsadm", "-a", "-t", f"{VIP}:80", "-r", R100, "-g")
    # The agent's pass that sees the new configuration can still write the
    # plan with the MACs it knew before it (none for a new real), and the
    # next pass puts the MAC back: let it settle.
    time.sleep(1.5)
    mac = lab.run(ns, "cat", "/sys/class/net/eth0/address").stdout.strip()
    frames = [P.tcp(f"198.18.1.{1 + i % 200}", 20000 + i, 80, dst_mac=mac) for i in range(300)]
    (tmp_path / "frames").write_text("".join(f.hex() + "\n" for f in frames))
    lab.run(ns, sys.executable, "-c", SENDER, str(tmp_path / "frames"))

    stats = cli(env, ns, "ipvsadm", "-L", "-n", "--stats", "--exact").splitlines()
    nbytes = sum(P.ip_len(f) for f in frames)
    assert stats[3] == "TCP  198.18.2.1:80".ljust(33) + "".join(
        print_largenum(v, True) for v in (300, 300, 0, nbytes, 0))
    assert stats[4] == f"  -> {R100}:80".ljust(33) + "".join(
        print_largenum(v, True) for v in (300, 300, 0, nbytes, 0))

    # the agent's estimator: within two ticks the rates show the burst
    deadline = time.monotonic() + 10
    while True:
        rate = cli(env, ns, "ipvsadm", "-L", "-n", "--rate").splitlines()[3].split()
        if rate[2:] != ["0"] * 5 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    cps, pps, outpps, bps, outbps = map(int, rate[2:])
    # 300 connections of one packet each in one 2 s tick: at most
    # ((300 << 9) >> 2 + 511) >> 10 = 38 cps after it, decaying by 3/4 a tick
    assert 0 < cps <= 38 and pps == cps and (outpps, outbps) == (0, 0)
    assert bps == pytest.approx(pps * P.ip_len(frames[0]), rel=0.05)

    cli(env, ns, "ipvsadm", "-Z", "-t", f"{VIP}:80")
    zeroed = cli(env, ns, "ipvsadm", "-L", "-n", "--stats").splitlines()[3:]
    assert zeroed == [line.ljust(33) + "        0" * 5
                      for line in ("TCP  198.18.2.1:80", f"  -> {R100}:80")]
    assert cli(env, ns, "ipvsadm", "-L", "-n", "--rate").splitlines()[3:] == zeroed
    # -Z leaves connections and templates alone
    conns = cli(env, ns, "ipvsadm", "-L", "-n", "-c").splitlines()[2:]
    assert sum(" SYN_RECV " in line for line in conns) == 300
    assert cli(env, ns, "ipvsadm", "-L", "-n", "--timeout") == \
        "Timeout (tcp tcpfin udp): 900 120 300\n"
