"""ipvsadm's command lines and listings, without BPF: parsing, the checks
ipvsadm makes, and its output formats byte for byte."""

import ipaddress
import shlex

import pytest

from lvsxdp import ipvsadm, shared
from lvsxdp.ipvsadm import Entry, RealCounts, Snapshot
from lvsxdp.model import Config, ConfigError

SEED_PCC = [
    "-A -t 198.18.2.1:0 -s rr -p 360",
    "-a -t 198.18.2.1:0 -r 198.18.2.100 -g",
    "-a -t 198.18.2.1:0 -r 198.18.2.200 -g",
]
SEED_PPC = [
    "-A -t 198.18.2.1:22 -s rr -p",
    "-A -t 198.18.2.1:80 -s rr -p",
    "-a -t 198.18.2.1:22 -r 198.18.2.100 -g",
    "-a -t 198.18.2.1:22 -r 198.18.2.200 -g",
    "-a -t 198.18.2.1:80 -r 198.18.2.100 -g",
]


def configure(lines, config=None):
    config = config or Config()
    for line in lines:
        config = ipvsadm.apply(config, ipvsadm.parse(shlex.split(line)))
    return config


def listing(config, *args, snap=None):
    return ipvsadm.format_list(config, ipvsadm.parse(list(args)), snap or Snapshot())


def test_seed_pcc_lines_list_exactly_as_ipvsadm_prints_them():
    config = configure(SEED_PCC)
    snap = Snapshot(reals={r.index: RealCounts(active=1, inactive=2)
                           for r in config.services[0].reals})
    # ipvsadm 1.31 sorts reals by address; --nosort shows IPVS's list order
    # (newest first, tests/test_ipvsadm_listing.py)
    assert listing(config, "-L", "-n", snap=snap) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  198.18.2.1:0 rr persistent 360\n"
        "  -> 198.18.2.100:0               Route   1      1          2         \n"
        "  -> 198.18.2.200:0               Route   1      1          2         \n"
    )


def test_newest_real_is_listed_first_as_ipvs_adds_at_the_head():
    config = configure(SEED_PCC)
    assert [str(r.addr) for r in config.services[0].reals] == ["198.18.2.200", "198.18.2.100"]


def test_seed_ppc_bare_p_means_360_seconds_and_ports_are_separate_services():
    config = configure(SEED_PPC)
    out = listing(config, "-Ln")
    assert "TCP  198.18.2.1:22 rr persistent 360\n" in out
    assert "TCP  198.18.2.1:80 rr persistent 360\n" in out
    assert [len(s.reals) for s in config.services] == [2, 1]


def test_connection_listing_format():
    snap = Snapshot(entries=[
        Entry("TCP", 898, "ESTABLISHED", "198.18.2.50:41234", "198.18.2.1:80", "198.18.2.100:80"),
        Entry("TCP", 358, "NONE", "198.18.2.50:0", "198.18.2.1:0", "198.18.2.100:0"),
        Entry("IP", 358, "NONE", "198.18.2.50:0", "0.0.0.10:0", "198.18.2.100:0"),
    ])
    assert listing(Config(), "-L", "-n", "-c", snap=snap) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n"
        "TCP 14:58  ESTABLISHED 198.18.2.50:41234  198.18.2.1:80      198.18.2.100:80\n"
        "TCP 05:58  NONE        198.18.2.50:0      198.18.2.1:0       198.18.2.100:0\n"
        "IP  05:58  NONE        198.18.2.50:0      0.0.0.10:0         198.18.2.100:0\n"
    )


def test_save_output_restores_to_the_same_configuration():
    config = configure(SEED_PCC + SEED_PPC[:1] + [
        "-A -t [2001:db8::1]:443 -s wrr -p 60 -M 64",
        "-a -t [2001:db8::1]:443 -r 2001:db8::100 -g -w 3",
        "-A -u 198.18.2.1:53 -s rr",
        "-a -u 198.18.2.1:53 -r 198.18.2.100 -w 0",
    ])
    saved = ipvsadm.format_save(config)
    assert "-A -t [2001:db8::1]:443 -s wrr -p 60 -M 64\n" in saved
    assert "-a -u 198.18.2.1:53 -r 198.18.2.100:53 -g -w 0\n" in saved
    restored, errors = ipvsadm.restore(Config(), saved)
    assert errors == []
    assert ipvsadm.format_save(restored) == saved
    assert listing(restored, "-L", "-n") == listing(config, "-L", "-n")


def test_restore_reports_a_bad_line_and_goes_on_as_ipvsadm_does():
    config = configure(SEED_PCC)
    before = config.to_json()
    new, errors = ipvsadm.restore(config, "-A -t 198.18.2.1:80 -s rr\n"
                                          "-a -t 198.18.2.9:80 -r 198.18.2.100\n"
                                          "-A -t 198.18.2.1:81 -s rr\n")
    assert errors == ["Service not defined"]
    assert [s.port for s in new.services] == [0, 80, 81]
    assert config.to_json() == before


def test_edit_weight_and_quiescent_real():
    config = configure(SEED_PCC + ["-e -t 198.18.2.1:0 -r 198.18.2.100 -w 0"])
    assert {str(r.addr): r.weight for r in config.services[0].reals} == {
        "198.18.2.200": 1, "198.18.2.100": 0}


def test_delete_and_clear():
    config = configure(SEED_PCC + ["-d -t 198.18.2.1:0 -r 198.18.2.100"])
    assert [str(r.addr) for r in config.services[0].reals] == ["198.18.2.200"]
    assert configure(["-C"], config).services == []
    assert configure(["-D -t 198.18.2.1:0"], config).services == []


def test_delete_names_a_masquerading_real_by_its_own_port_as_ipvsadm_d_does():
    config = configure(["-A -t 198.18.2.1:80 -s rr", "-a -t 198.18.2.1:80 -r 198.18.1.2:8080 -m",
                        "-a -t 198.18.2.1:80 -r 198.18.1.2:8081 -m",
                        "-a -t 198.18.2.1:80 -r 198.18.1.3 -g"])
    config = configure(["-d -t 198.18.2.1:80 -r 198.18.1.2:8081",
                        "-d -t 198.18.2.1:80 -r 198.18.1.3:80"], config)
    assert [(str(r.addr), r.port) for r in config.services[0].reals] == [("198.18.1.2", 8080)]
    with pytest.raises(ConfigError, match="No such destination"):
        configure(["-d -t 198.18.2.1:80 -r 198.18.1.2:8081"], config)


def test_real_slots_get_new_generations_when_reused():
    config = configure(SEED_PCC)
    old = {str(r.addr): r.ref for r in config.services[0].reals}
    config = configure(["-d -t 198.18.2.1:0 -r 198.18.2.100"], config)
    # in the trash, its slot stays taken while anything names its ref
    assert [(str(r.addr), r.ref) for _, r in config.trashed()] == [
        ("198.18.2.100", old["198.18.2.100"])]
    config.purge_trash({old["198.18.2.100"]})
    assert len(config.trashed()) == 1
    config.purge_trash(set())  # nothing names it any more: the slot is free
    assert config.trashed() == []
    config = configure(["-a -t 198.18.2.1:0 -r 198.18.2.150"], config)
    new = {str(r.addr): r.ref for r in config.services[0].reals}
    assert new["198.18.2.200"] == old["198.18.2.200"]
    assert new["198.18.2.150"] & 0xFFFF == old["198.18.2.100"] & 0xFFFF
    assert new["198.18.2.150"] != old["198.18.2.100"]


def test_a_removed_real_added_back_is_revived_with_its_slot_and_ref():
    config = configure(SEED_PCC)
    old = {str(r.addr): (r.index, r.ref) for r in config.services[0].reals}
    config = configure(["-d -t 198.18.2.1:0 -r 198.18.2.100",
                        "-a -t 198.18.2.1:0 -r 198.18.2.150",  # takes no trashed slot
                        "-a -t 198.18.2.1:0 -r 198.18.2.100 -w 3"], config)
    reals = {str(r.addr): r for r in config.services[0].reals}
    assert (reals["198.18.2.100"].index, reals["198.18.2.100"].ref) == old["198.18.2.100"]
    assert reals["198.18.2.100"].weight == 3  # the new line's settings
    assert reals["198.18.2.150"].index not in {i for i, _ in old.values()}
    assert config.trash == []
    # -C and -D trash every real of the service; a new service of the same
    # key revives them too
    config = configure(["-C", "-A -t 198.18.2.1:0 -s rr -p 360",
                        "-a -t 198.18.2.1:0 -r 198.18.2.200"], config)
    assert config.services[0].reals[0].ref == old["198.18.2.200"][1]
    assert sorted(str(r.addr) for _, r in config.trashed()) == ["198.18.2.100", "198.18.2.150"]
    # and the trash survives a save
    assert Config.from_json(config.to_json()).trashed() == config.trashed()


BAD_LINES = [
    ("-A -t 198.18.2.1:0 -s rr", "Zero port specified for non-persistent service"),
    ("-A -t 198.18.2.1:0 -s rr -p 360", "Service already exists"),
    ("-A -t 198.18.2.300:80 -s rr", "illegal virtual server address[:port] specified"),
    ("-A -t 198.18.2.1:99999 -s rr", "illegal virtual server address[:port] specified"),
    ("-A -t 198.18.2.1:80 -s nosuch", "Scheduler or persistence engine not found"),
    ("-A -t 198.18.2.1:80 -p abc", "invalid timeout value `abc' specified"),
    ("-A -t 198.18.2.1:80 -p 0", "invalid timeout value `0' specified"),
    ("-A -s rr", "You need to supply the 'service-address' option for the 'add-service' command"),
    ("-A -t 198.18.2.1:80 -u 198.18.2.1:80", "multiple 'service-address' options specified"),
    ("-A -t 198.18.2.1:80 -a", "multiple commands specified"),
    ("-A -t 198.18.2.1:80 -s rr -r 198.18.2.100",
     "Illegal 'real-server' option with the 'add-service' command"),
    ("-A -t 198.18.2.1:0 -s rr -p -M 255.0.255.0",
     "lvsxdp: a persistent netmask must be contiguous (255.0.255.0 is not)"),
    ("-A -t 198.18.2.1:80 -s rr -p -M 255.255.256.0",
     "illegal virtual server persistent mask specified"),
    ("-A -t 198.18.2.1:80 -s rr -s wlc", "multiple 'scheduler' options specified"),
    ("-A -t 198.18.2.1:80 -s rr -p -5", "-5: unknown option"),
    ("-A -t nosuchhost.invalid:80 -s rr", "illegal virtual server address[:port] specified"),
    ("-A -t 198.18.2.1:nosuchservice -s rr", "illegal virtual server address[:port] specified"),
    ("-A -t 198.18.2.1:80 -s rr -o", "One-Packet Scheduling is only for UDP virtual services"),
    ("-C -t 198.18.2.1:80", "Illegal 'service-address' option with the 'flush' command"),
    ("-E -t 198.18.2.9:80 -s rr", "No such service"),
    ("-D -t 198.18.2.9:80", "No such service"),
    ("-a -t 198.18.2.9:0 -r 198.18.2.100", "Service not defined"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.100", "Destination already exists"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.x", "illegal real server address[:port] specified"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -w 65536", "illegal weight specified (lvsxdp: 0-65535)"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -w -1", "illegal weight specified"),
    ("-a -t 198.18.2.1:0", "You need to supply the 'real-server' option for the 'add-server' "
                           "command"),
    ("-a -t 198.18.2.1:0 -r 2001:db8::5", "Different address family is allowed only for "
                                          "tunneling servers"),
    ("-d -t 198.18.2.1:0 -r 198.18.2.150", "No such destination"),
    ("-e -t 198.18.2.1:0 -r 198.18.2.150 -w 2", "No such destination"),
    ("--frobnicate", "Try `ipvsadm -h' or 'ipvsadm --help' for more information."),
    ("-A -t", "-t: missing argument"),
    ("-t 198.18.2.1:80 -A", "Try `ipvsadm -h' or 'ipvsadm --help' for more information."),
    ("--set 900 120", "--set option requires 3 timeout values"),
    ("--set 900 x 300", "invalid timeout value `x' specified"),
]


@pytest.mark.parametrize("line,message", BAD_LINES)
def test_bad_line_gives_one_line_and_changes_nothing(line, message):
    config = configure(SEED_PCC)
    before = config.to_json()
    with pytest.raises(ConfigError) as err:
        ipvsadm.apply(config, ipvsadm.parse(shlex.split(line)))
    assert str(err.value) == message
    assert "\n" not in str(err.value)
    assert config.to_json() == before


UNSUPPORTED_YET = [
    ("-A -t 198.18.2.1:80 -s lblc", "lvsxdp has no scheduler lblc"),
    ("-A -t 198.18.2.1:80 -s fo", "lvsxdp has no scheduler fo"),
    ("-A --sctp-service 198.18.2.1:80 -s rr", "lvsxdp balances TCP and UDP only"),
    ("-A -u 198.18.2.1:53 -s rr -o", "lvsxdp has no one-packet scheduling"),
]


@pytest.mark.parametrize("line,message", UNSUPPORTED_YET)
def test_what_lvsxdp_does_not_do_yet_is_refused_by_name(line, message):
    config = configure(SEED_PCC)
    before = config.to_json()
    with pytest.raises(ConfigError, match="^" + message):
        ipvsadm.apply(config, ipvsadm.parse(shlex.split(line)))
    assert config.to_json() == before


def test_set_timeouts():
    config = configure(["--set 600 60 120"])
    assert (config.settings.tcp, config.settings.tcpfin, config.settings.udp) == (600, 60, 120)
    config = configure(["--set 0 30 0"], config)
    assert (config.settings.tcp, config.settings.tcpfin, config.settings.udp) == (600, 30, 120)


def test_long_options_and_bundled_flags():
    config = configure(["--add-service --tcp-service 198.18.2.1:0 --scheduler rr --persistent 30",
                        "--add-server --tcp-service=198.18.2.1:0 --real-server 198.18.2.100 "
                        "--gatewaying --weight 2"])
    assert listing(config, "-Ln").splitlines()[3:] == [
        "TCP  198.18.2.1:0 rr persistent 30",
        "  -> 198.18.2.100:0               Route   2      0          0         ",
    ]


FORWARDING = [
    "-A -t 198.18.2.1:80 -s rr",
    "-a -t 198.18.2.1:80 -r 198.18.2.100 -g",
    "-a -t 198.18.2.1:80 -r 198.18.2.210 -m",
    "-a -t 198.18.2.1:80 -r 198.18.2.211:8080 -m",
    "-a -t 198.18.2.1:80 -r 198.18.2.212 -i",
    "-a -t 198.18.2.1:80 -r 198.18.2.213 -i --tun-type gue --tun-port 6080",
    "-a -t 198.18.2.1:80 -r 198.18.2.214 -i --tun-type gue --tun-port 6081 --tun-csum",
    "-a -t 198.18.2.1:80 -r 198.18.2.215 -i --tun-type gue --tun-port 6082 --tun-remcsum",
    "-a -t 198.18.2.1:80 -r 198.18.2.216 -i --tun-type gre",
    "-a -t 198.18.2.1:80 -r 198.18.2.217 -i --tun-type gre --tun-csum",
    "-a -t 198.18.2.1:80 -r 198.18.2.218 -i --tun-type gre --tun-remcsum",
]


def test_every_forwarding_method_lists_saves_and_restores_as_ipvsadm_does():
    config = configure(FORWARDING)
    assert listing(config, "-L", "-n").splitlines()[3:] == [
        "TCP  198.18.2.1:80 rr",
        "  -> 198.18.2.100:80              Route   1      0          0         ",
        "  -> 198.18.2.210:80              Masq    1      0          0         ",
        "  -> 198.18.2.211:8080            Masq    1      0          0         ",
        "  -> 198.18.2.212:80              Tunnel  1      0          0         ",
        "  -> 198.18.2.213:80              Tunnel  1      0          0         ",
        "  -> 198.18.2.214:80              Tunnel  1      0          0         ",
        "  -> 198.18.2.215:80              Tunnel  1      0          0         ",
        "  -> 198.18.2.216:80              Tunnel  1      0          0         ",
        "  -> 198.18.2.217:80              Tunnel  1      0          0         ",
        "  -> 198.18.2.218:80              Tunnel  1      0          0         ",
    ]
    # print_title and fwd_tun_info
    assert listing(config, "-L", "-n", "--tun-info").splitlines()[2:] == [
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn",
        "TCP  198.18.2.1:80 rr",
        "  -> 198.18.2.100:80              Route   n/a           1      0          0         ",
        "  -> 198.18.2.210:80              Masq    n/a           1      0          0         ",
        "  -> 198.18.2.211:8080            Masq    n/a           1      0          0         ",
        "  -> 198.18.2.212:80              Tunnel  ipip          1      0          0         ",
        "  -> 198.18.2.213:80              Tunnel  gue:6080:-c   1      0          0         ",
        "  -> 198.18.2.214:80              Tunnel  gue:6081:+c   1      0          0         ",
        "  -> 198.18.2.215:80              Tunnel  gue:6082:r+c  1      0          0         ",
        "  -> 198.18.2.216:80              Tunnel  gre:-c        1      0          0         ",
        "  -> 198.18.2.217:80              Tunnel  gre:+c        1      0          0         ",
        "  -> 198.18.2.218:80              Tunnel  gre:r+c       1      0          0         ",
    ]
    saved = ipvsadm.format_save(config)
    assert saved.splitlines()[1:] == [
        "-a -t 198.18.2.1:80 -r 198.18.2.100:80 -g -w 1",
        "-a -t 198.18.2.1:80 -r 198.18.2.210:80 -m -w 1",
        "-a -t 198.18.2.1:80 -r 198.18.2.211:8080 -m -w 1",
        "-a -t 198.18.2.1:80 -r 198.18.2.212:80 -i -w 1 --tun-type ipip",
        "-a -t 198.18.2.1:80 -r 198.18.2.213:80 -i -w 1 --tun-type gue --tun-port 6080 "
        "--tun-nocsum",
        "-a -t 198.18.2.1:80 -r 198.18.2.214:80 -i -w 1 --tun-type gue --tun-port 6081 "
        "--tun-csum",
        "-a -t 198.18.2.1:80 -r 198.18.2.215:80 -i -w 1 --tun-type gue --tun-port 6082 "
        "--tun-remcsum",
        "-a -t 198.18.2.1:80 -r 198.18.2.216:80 -i -w 1 --tun-type gre --tun-nocsum",
        "-a -t 198.18.2.1:80 -r 198.18.2.217:80 -i -w 1 --tun-type gre --tun-csum",
        "-a -t 198.18.2.1:80 -r 198.18.2.218:80 -i -w 1 --tun-type gre --tun-remcsum",
    ]
    restored, errors = ipvsadm.restore(Config(), saved)
    assert errors == []
    assert ipvsadm.format_save(restored) == saved
    # -e sets the method it names, and the tunnel's settings go with it
    config = configure(["-e -t 198.18.2.1:80 -r 198.18.2.213 -m"], config)
    real = config.services[0].find_real(ipaddress.ip_address("198.18.2.213"), 80)
    assert (real.fwd, real.tun_type, real.tun_port) == ("masq", "ipip", 0)
    # and back to a GRE tunnel with its checksum, into the maps' numbers
    config = configure(["-e -t 198.18.2.1:80 -r 198.18.2.213 -i --tun-type gre --tun-csum"],
                       config)
    real = config.services[0].find_real(ipaddress.ip_address("198.18.2.213"), 80)
    assert (real.fwd, real.tun_type, real.tun_flags) == ("tunnel", "gre", shared.TUN_F_CSUM)


@pytest.mark.parametrize("line,message", [
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -g --tun-type ipip",
     "Tunnel options conflict with forward method"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -m --tun-port 5",
     "Tunnel options conflict with forward method"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-type gue",
     "You need to supply the 'tun-port' option for the 'gue' tunnel type"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-port 5",
     "Illegal 'tun-port' option with the 'ipip' tunnel type"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-type gue --tun-port 5 --tun-nocsum "
     "--tun-csum", "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the "
     "'gue' tunnel type"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-type vxlan", "illegal tunnel type specified"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-type gue --tun-port 0",
     "illegal tunnel port specified"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-type gre --tun-port 6080",
     "Illegal 'tun-port' option with the 'gre' tunnel type"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-type gre --tun-csum --tun-remcsum",
     "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gre' tunnel type"),
    ("-a -t 198.18.2.1:0 -r 198.18.2.150 -g -m",
     "multiple 'forwarding-method' options specified"),
])
def test_tunnel_options_are_checked_as_ipvsadm_checks_them(line, message):
    config = configure(SEED_PCC)
    before = config.to_json()
    with pytest.raises(ConfigError) as err:
        ipvsadm.apply(config, ipvsadm.parse(shlex.split(line)))
    assert (str(err.value), err.value.code) == (message, 2)
    assert config.to_json() == before
