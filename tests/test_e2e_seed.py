"""Every example of the seed end to end, with real clients and servers:
PPC (22 and 80), firewall-mark persistence for http + https (from lvsxdp's
own iptables lines and from the kernel's mangle chain), passive FTP through
vsftpd (with the seed's marks, and with the FTP rule of a `-t VIP:21 -p`
service), persistence expiry and extension, a UDP service and IPv6.

The seed's lines are run verbatim (192.168.2.x -> 198.18.2.x), from
lvsxdp.lab. Every test builds its own lab in namespaces lxe<4 hex>-* and
removes it, whatever happens.

Which real a client lands on is deterministic: IPVS adds a real at the head
of its list and rr starts there, so the first client goes to .200 (r2) and
the next to .100 (r1), as the seed reports. The tests wait until the
director knows both reals' MACs before sending traffic (lvsxdp gives a real
whose MAC it does not know yet no new work).
"""

from __future__ import annotations

import shlex
import sys
import time

import pytest
from nsdirector import native_nics

from lvsxdp import lab
from lvsxdp.lab import (
    CLIENT_ADDRS,
    CLIENT_ADDRS6,
    FTP_FILE,
    IFACE,
    PASV_PORTS,
    REALS,
    REALS6,
    SEED_FTP,
    SEED_FWMARK,
    SEED_PPC,
    UDP_PORT,
    VIP,
    VIP6,
    LabError,
    Topology,
)

MODES = ("native", "generic")
FIRST, SECOND = "r2", "r1"  # where rr sends the first and the second new client
IPV4_REALS = tuple(REALS.values())
ADDR_OF = {**{a: n for n, a in REALS.items()}, **{a: n for n, a in REALS6.items()}}


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def _lab(tmp_path, native: bool):
    return Topology(lab.unique_prefix(), native=native, state_dir=tmp_path / "state",
                    run_dir=tmp_path / "run", nics=native_nics() if native else None)


@pytest.fixture
def topo(mode, tmp_path):
    with _lab(tmp_path, native=(mode == "native")) as t:
        t.lvsxdp("up", IFACE, "--mode", mode)
        assert lab.xdp_mode(t.director, IFACE) == mode
        yield t


@pytest.fixture
def native_topo(tmp_path):
    with _lab(tmp_path, native=True) as t:
        t.lvsxdp("up", IFACE, "--mode", "native")
        yield t


def configure(topo: Topology, *lines: str, reals: tuple[str, ...] = IPV4_REALS) -> None:
    """Runs the lines on the director (`iptables ...` as lvsxdp's own mark
    rules, the rest as ipvsadm), then waits until it can reach the reals."""
    for line in lines:
        if line.startswith("iptables"):
            topo.iptables(line)
        else:
            topo.ipvsadm(line)
    topo.wait_for_reals(reals)


def entries(topo: Topology) -> list[dict]:
    """`ipvsadm -L -n -c`, one dict per entry."""
    out = topo.ipvsadm("-L -n -c")
    assert out.splitlines()[1] == \
        "pro expire state       source             virtual            destination"
    return lab.parse_connections(out)


host = lab.addr_of  # 198.18.2.1:80 -> 198.18.2.1, [2001:db8:2::1]:80 -> 2001:db8:2::1
port = lab.port_of


def seconds(expire: str) -> int:
    minutes, secs = expire.split(":")
    return int(minutes) * 60 + int(secs)


def templates_of(topo: Topology, client: str) -> list[dict]:
    return [e for e in entries(topo)
            if e["state"] in lab.TEMPLATE_STATES and host(e["source"]) == client]


def conns_of(topo: Topology, client: str) -> list[dict]:
    return [e for e in entries(topo)
            if e["state"] not in lab.TEMPLATE_STATES and host(e["source"]) == client]


def ask(topo: Topology, client: str, what: str) -> str:
    """One new connection of `what` ("http", "https", "ssh", "ftp", "udp",
    "http:8080") from client to the VIP of its family; returns the real
    that answered."""
    vip = f"[{VIP6}]" if ":" in client else VIP
    if what == "ssh":
        answer = topo.tcp_banner(client, 22, addr=VIP6 if ":" in client else VIP)
    elif what == "udp":
        answer = topo.udp_ask(client, UDP_PORT, addr=VIP6 if ":" in client else VIP)
    elif what == "ftp":
        answer = topo.curl(client, f"ftp://{vip}/{FTP_FILE}")
    elif what == "ftp-pasv":  # PASV: the client connects to the address vsftpd names
        answer = topo.curl(client, f"ftp://{vip}/{FTP_FILE}", extra=("--disable-epsv",))
    else:
        scheme, _, p = what.partition(":")
        answer = topo.curl(client, f"{scheme}://{vip}{':' + p if p else ''}/")
    real = lab.real_in(answer)
    assert real in REALS, f"{what} from {client}: {answer!r}"
    return real


def affinities(topo: Topology, clients, kinds, rounds: int = 2) -> dict[str, dict[str, str]]:
    """Per client, per kind of connection, the one real that answered every
    time (clients interleaved, `rounds` rounds); fails if a client's
    connections of one kind went to two reals."""
    seen: dict[str, dict[str, set]] = {c: {k: set() for k in kinds} for c in clients}
    for _ in range(rounds):
        for c in clients:
            for k in kinds:
                seen[c][k].add(ask(topo, c, k))
    for c, by_kind in seen.items():
        for k, reals in by_kind.items():
            assert len(reals) == 1, f"client {c}: {k} went to {sorted(reals)}"
    return {c: {k: reals.pop() for k, reals in by_kind.items()} for c, by_kind in seen.items()}


def refused(topo: Topology, client: str, url: str) -> bool:
    try:
        topo.curl(client, url, timeout=1)
    except LabError:
        return True
    return False


# -- the lab's IPv6 segment ---------------------------------------------------

# Sends a neighbour solicitation for a target from the client, to the
# solicited-node group and to each given MAC directly, and prints the MAC
# of every neighbour advertisement for that target.
_SOLICIT = r"""
import ipaddress, sys, time
from scapy.all import (AsyncSniffer, Ether, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr,
                       IPv6, conf, get_if_hwaddr, sendp)
conf.verb = 0
iface, src, target, *macs = sys.argv[1:]
mine = get_if_hwaddr(iface)
group = ipaddress.ip_address(b"\xff\x02" + bytes(9) + b"\x01\xff"
                             + ipaddress.ip_address(target).packed[-3:])
group_mac = "33:33:" + ":".join(f"{b:02x}" for b in group.packed[-4:])
sniffer = AsyncSniffer(iface=iface, lfilter=lambda p: ICMPv6ND_NA in p
                       and p[ICMPv6ND_NA].tgt == target)
sniffer.start()
time.sleep(0.3)
for dst_mac, dst in [(group_mac, str(group))] + [(m, target) for m in macs]:
    sendp(Ether(src=mine, dst=dst_mac) / IPv6(src=src, dst=dst, hlim=255)
          / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=mine), iface=iface)
time.sleep(0.5)
print(" ".join(p[Ether].src for p in sniffer.stop()))
"""


def test_only_the_director_answers_neighbour_solicitations_for_the_ipv6_vip(tmp_path):
    """The IPv6 counterpart of arp_ignore: the reals hold the VIP on lo and
    need no setting to keep quiet (the module docstring of lvsxdp.lab says
    why); asked for their own address, they do answer."""
    with _lab(tmp_path, native=False) as topo:
        mac = {name: lab.run(ns, "cat", f"/sys/class/net/{IFACE}/address").stdout.strip()
               for name, ns in (("director", topo.director), *topo.reals.items())}

        def answers(target: str) -> list[str]:
            res = lab.run(topo.client, sys.executable, "-c", _SOLICIT, IFACE, CLIENT_ADDRS6[0],
                          target, *mac.values(), timeout=30)
            return sorted(res.stdout.split())

        # asked by multicast and then once directly: two answers, the director's
        assert answers(VIP6) == [mac["director"]] * 2
        assert answers(REALS6["r1"]) == [mac["r1"]] * 2
        for ns in topo.reals.values():
            assert f"inet6 {VIP6}/128" in lab.run(ns, "ip", "addr", "show", "dev", "lo").stdout


# -- PPC ------------------------------------------------------------------


@pytest.mark.kernels  # one of the seed's scenarios, on each kernel
def test_ppc_gives_each_port_of_a_client_its_own_affinity(topo):
    """The seed: 80 goes to .100 only, 22 to .100 and .200."""
    configure(topo, *SEED_PPC[1:])
    listing = topo.ipvsadm("-L -n")
    assert f"TCP  {VIP}:22 rr persistent 360" in listing
    assert f"TCP  {VIP}:80 rr persistent 360" in listing

    got = affinities(topo, CLIENT_ADDRS, ("http", "ssh"))
    assert {a["http"] for a in got.values()} == {"r1"}
    assert [got[c]["ssh"] for c in CLIENT_ADDRS] == [FIRST, SECOND, FIRST, SECOND]
    # Independent: the first client's 22 is on .200 while its 80 is on .100.
    assert got[CLIENT_ADDRS[0]] == {"http": "r1", "ssh": "r2"}

    for c in CLIENT_ADDRS:
        templates = {(e["pro"], e["virtual"], host(e["destination"]))
                     for e in templates_of(topo, c)}
        assert templates == {("TCP", f"{VIP}:80", REALS["r1"]),
                             ("TCP", f"{VIP}:22", REALS[got[c]["ssh"]])}
        for e in conns_of(topo, c):
            assert ADDR_OF[host(e["destination"])] == got[c][{80: "http", 22: "ssh"}[
                port(e["virtual"])]]
    # PPC covers its two ports only: 8080 is nobody's (the director's own
    # kernel refuses it).
    assert refused(topo, CLIENT_ADDRS[0], f"http://{VIP}:8080/")


# -- firewall marks -------------------------------------------------------------


def check_http_and_https_share_a_real(topo: Topology) -> None:
    got = affinities(topo, CLIENT_ADDRS, ("http", "https"))
    for c in CLIENT_ADDRS:
        assert got[c]["http"] == got[c]["https"], f"client {c}: {got[c]}"
    assert [got[c]["http"] for c in CLIENT_ADDRS] == [FIRST, SECOND, FIRST, SECOND]
    for c in CLIENT_ADDRS:
        [t] = templates_of(topo, c)
        # IPVS shows a mark's template with the mark as its address
        assert (t["pro"], t["virtual"], t["destination"]) == \
            ("IP", "0.0.0.10:0", f"{REALS[got[c]['http']]}:0")
        conns = conns_of(topo, c)
        assert {port(e["virtual"]) for e in conns} == {80, 443}
        assert {ADDR_OF[host(e["destination"])] for e in conns} == {got[c]["http"]}
    # port 22 carries no mark: nobody serves it
    with pytest.raises(LabError):
        topo.tcp_banner(CLIENT_ADDRS[0], 22, timeout=1)


@pytest.mark.kernels  # one of the seed's scenarios, on each kernel
def test_fwmark_sends_http_and_https_of_a_client_to_one_real(topo):
    """The seed's mark line, verbatim, as `lvsxdp iptables ...`."""
    configure(topo, *SEED_FWMARK)
    assert topo.iptables("iptables -t mangle -S PREROUTING").splitlines() == [
        "-P PREROUTING ACCEPT",
        f"-A PREROUTING -d {VIP}/32 -i eth0 -p tcp -m multiport --dports 80,443 "
        "-j MARK --set-xmark 0xa/0xffffffff"]
    assert "FWM  10 rr persistent 360" in topo.ipvsadm("-L -n")
    check_http_and_https_share_a_real(topo)


def test_fwmark_follows_the_kernels_mangle_chain_typed_with_plain_iptables(native_topo):
    """The same line typed as plain iptables in the director's namespace:
    lvsxdp follows the kernel's mangle chain within about a second, both
    when the rule appears and when it goes."""
    topo = native_topo
    mark_line, *ipvsadm_lines = SEED_FWMARK
    configure(topo, *ipvsadm_lines)
    assert refused(topo, CLIENT_ADDRS[0], f"https://{VIP}/")  # no mark yet: no service

    topo.kernel_iptables(mark_line)
    start = time.monotonic()
    while refused(topo, CLIENT_ADDRS[0], f"https://{VIP}/"):
        assert time.monotonic() - start < 2.5, "the kernel's rule was not followed"
        time.sleep(0.1)
    check_http_and_https_share_a_real(topo)

    words = shlex.split(mark_line)
    topo.kernel_iptables(shlex.join(["iptables", *words[1:3], "-D", *words[4:]]))
    start = time.monotonic()
    while not refused(topo, CLIENT_ADDRS[1], f"https://{VIP}/"):
        assert time.monotonic() - start < 2.5, "the deleted rule still marks"
        time.sleep(0.1)


# -- FTP --------------------------------------------------------------------


def check_ftp(topo: Topology, template: tuple[str, str]) -> dict[str, str]:
    """curl ftp:// (EPSV, then PASV) from every client: the file names the
    real that sent the data; control and data connections of a client are
    all on that real. template: (pro, virtual) of the clients' templates."""
    got = affinities(topo, CLIENT_ADDRS, ("ftp", "ftp-pasv"))
    for c in CLIENT_ADDRS:
        real = got[c]["ftp"]
        assert got[c]["ftp-pasv"] == real
        conns = conns_of(topo, c)
        control = [e for e in conns if port(e["virtual"]) == 21]
        data = [e for e in conns if PASV_PORTS[0] <= port(e["virtual"]) <= PASV_PORTS[1]]
        assert len(control) == 4 and len(data) == 4 and len(conns) == 8, conns
        assert {host(e["destination"]) for e in conns} == {REALS[real]}
        [t] = templates_of(topo, c)
        assert (t["pro"], t["virtual"], host(t["destination"])) == (*template, REALS[real])
    # The seed: the first client on .200; "another client" goes to .100.
    assert [got[c]["ftp"] for c in CLIENT_ADDRS] == [FIRST, SECOND, FIRST, SECOND]
    return got


@pytest.mark.kernels  # one of the seed's scenarios, on each kernel
def test_ftp_passive_with_the_seeds_marks_keeps_control_and_data_on_one_real(topo):
    configure(topo, *SEED_FTP)
    assert "FWM  10 rr persistent 360" in topo.ipvsadm("-L -n")
    check_ftp(topo, ("IP", "0.0.0.10:0"))


def test_ftp_rule_takes_passive_data_to_a_vip21_service_without_marks(native_topo):
    """IPVS's FTP rule: a persistent -t VIP:21 service also takes the
    client's TCP to port 20 or >= 1024 of the VIP, under one template with
    port 0."""
    topo = native_topo
    configure(topo, f"ipvsadm -A -t {VIP}:21 -s rr -p",
              *(f"ipvsadm -a -t {VIP}:21 -r {a} -g" for a in (REALS["r1"], REALS["r2"])))
    assert topo.iptables("iptables -t mangle -S").splitlines() == ["-P PREROUTING ACCEPT"]
    check_ftp(topo, ("TCP", f"{VIP}:0"))
    # Only the VIP:21 service's own ports: 80 is nobody's.
    assert refused(topo, CLIENT_ADDRS[0], f"http://{VIP}/")


# -- expiry and extension ----------------------------------------------------------

# ipvs-golden/05-timeouts.txt's settings: a FIN timeout shorter than the
# persistence timeout, so that a closed connection never outlives the
# template's timer (when it does, IPVS re-arms the template for a step).
SHORT = ("ipvsadm --set 900 1 300", f"ipvsadm -A -t {VIP}:0 -s rr -p 3",
         f"ipvsadm -a -t {VIP}:0 -r {REALS['r1']} -g", f"ipvsadm -a -t {VIP}:0 -r {REALS['r2']} -g")


def wait_until_no_template(topo: Topology, client: str, within: float) -> float:
    start = time.monotonic()
    while templates_of(topo, client):
        assert time.monotonic() - start < within, templates_of(topo, client)
        time.sleep(0.2)
    return time.monotonic() - start


def test_a_client_is_rescheduled_once_its_template_expired(native_topo):
    """-p 3 and tcpfin 1: three seconds after the client's last connection
    started, its template is gone and rr gives it the other real."""
    topo = native_topo
    configure(topo, *SHORT)
    assert f"TCP  {VIP}:0 rr persistent 3" in topo.ipvsadm("-L -n")
    c = CLIENT_ADDRS[0]
    assert ask(topo, c, "http") == FIRST
    time.sleep(1)
    assert ask(topo, c, "ssh") == FIRST  # within the timeout, which it re-arms
    [t] = templates_of(topo, c)
    assert seconds(t["expire"]) <= 3
    took = wait_until_no_template(topo, c, within=9)
    assert took >= 0.8  # the timeout ran from the last connection
    assert ask(topo, c, "http") == SECOND
    assert ask(topo, c, "https") == SECOND


def test_a_live_connection_extends_its_template_in_120_s_steps(native_topo):
    """The seed: "if the client's connection still exists after the
    timeout, it is extended by 2 minutes at a time". A client holds an
    idle connection past -p 3: its template stays, counting down a 120 s
    step, and new connections still go to its real; once the held
    connection closes and its FIN timeout (1 s) passes, the template stays
    to the end of the step its timer runs (ipvs-golden/05-timeouts.txt:
    IPVS drops it when the timer fires with no connection)."""
    topo = native_topo
    configure(topo, *SHORT)
    c = CLIENT_ADDRS[0]
    held = topo.hold_tcp(c, 80)
    try:
        assert held.real == FIRST
        time.sleep(3.5)
        [t] = templates_of(topo, c)
        assert 100 < seconds(t["expire"]) <= 120, t  # the extension step, not 00:00
        assert host(t["destination"]) == REALS[FIRST]
        [conn] = conns_of(topo, c)
        assert (port(conn["source"]), conn["state"]) == (held.cport, "ESTABLISHED")
        # Meanwhile other clients take turns, and this one keeps its real.
        assert ask(topo, CLIENT_ADDRS[1], "http") == SECOND
        assert ask(topo, CLIENT_ADDRS[2], "http") == FIRST
        for what in ("http", "https", "ssh"):
            assert ask(topo, c, what) == FIRST
        time.sleep(3.5)  # the new connections' timeouts passed: the held one keeps it
        [t] = templates_of(topo, c)
        assert seconds(t["expire"]) > 100
    finally:
        held.close()
    assert [e["state"] for e in conns_of(topo, c) if port(e["source"]) == held.cport] \
        in (["FIN_WAIT"], [])
    before = seconds(t["expire"])
    time.sleep(3.5)  # the FIN timeout passed: no connection left
    assert conns_of(topo, c) == []
    [t] = templates_of(topo, c)
    assert before - 10 < seconds(t["expire"]) < before, t  # the same step, counting down
    assert host(t["destination"]) == REALS[FIRST]


# -- UDP and IPv6 ---------------------------------------------------------------


def test_udp_service_keeps_each_clients_datagrams_on_one_real(topo):
    configure(topo, f"ipvsadm -A -u {VIP}:{UDP_PORT} -s rr -p",
              *(f"ipvsadm -a -u {VIP}:{UDP_PORT} -r {a} -g" for a in REALS.values()))
    got = affinities(topo, CLIENT_ADDRS, ("udp",), rounds=3)
    assert [got[c]["udp"] for c in CLIENT_ADDRS] == [FIRST, SECOND, FIRST, SECOND]
    # DR: the real saw the client itself, and answered from the VIP
    assert topo.udp_ask(CLIENT_ADDRS[1]) == f"{SECOND} {CLIENT_ADDRS[1]}"
    for c in CLIENT_ADDRS:
        conns = conns_of(topo, c)
        assert len(conns) >= 3
        assert all(e["pro"] == "UDP" and e["state"] == "UDP" for e in conns)
        assert {host(e["destination"]) for e in conns} == {REALS[got[c]["udp"]]}
        [t] = templates_of(topo, c)
        assert (t["pro"], t["virtual"]) == ("UDP", f"{VIP}:{UDP_PORT}")


def test_ipv6_services_keep_each_client_on_one_real(topo):
    """-t [VIP6]:80 -p (PPC) next to -t [VIP6]:0 -p (PCC for the other
    ports) on the same VIP."""
    lines = [f"ipvsadm -A -t [{VIP6}]:80 -s rr -p", f"ipvsadm -A -t [{VIP6}]:0 -s rr -p"]
    for p in (80, 0):
        lines += [f"ipvsadm -a -t [{VIP6}]:{p} -r [{a}] -g" for a in REALS6.values()]
    configure(topo, *lines, reals=tuple(REALS6.values()))
    listing = topo.ipvsadm("-L -n")
    assert f"TCP  [{VIP6}]:80 rr persistent 360" in listing
    assert f"  -> {'[' + REALS6['r1'] + ']:80':<28} Route   1" in listing

    got = affinities(topo, CLIENT_ADDRS6, ("http", "https", "ssh"))
    for c in CLIENT_ADDRS6:
        assert got[c]["https"] == got[c]["ssh"]  # PCC: every other port together
        assert topo.curl(c, f"http://[{VIP6}]/client") == f"{got[c]['http']} {c}"
    assert [got[c]["http"] for c in CLIENT_ADDRS6] == [FIRST, SECOND, FIRST, SECOND]
    assert [got[c]["ssh"] for c in CLIENT_ADDRS6] == [FIRST, SECOND, FIRST, SECOND]
    for c in CLIENT_ADDRS6:
        templates = {(e["virtual"], host(e["destination"])) for e in templates_of(topo, c)}
        assert templates == {(f"[{VIP6}]:80", REALS6[got[c]["http"]]),
                             (f"[{VIP6}]:0", REALS6[got[c]["ssh"]])}
    # the client reaches the VIP through the director's MAC, never a real's
    director_mac = lab.run(topo.director, "cat", f"/sys/class/net/{IFACE}/address").stdout
    neigh = lab.run(topo.client, "ip", "-6", "neigh", "show", VIP6).stdout.split()
    assert neigh[neigh.index("lladdr") + 1] == director_mac.strip()

