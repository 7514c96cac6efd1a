"""keepalived.conf read as keepalived 2.2 reads it: includes (globs, paths
relative to the including file), @conditionals, $parameters, groups and
their ranges, keepalived's defaults and warnings, errors as
`(FILE: Line N) what`, and one error refusing the whole file (the saved
configuration untouched)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from nsdirector import LVSXDP

from lvsxdp import checkers, keepalived
from lvsxdp.model import Config

SIMPLE = """\
! Configuration File for keepalived
global_defs {
   notification_email { admin@example.org }
   router_id LVS_DEVEL
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        198.18.2.1
    }
}
virtual_server 198.18.2.1 80 {
    delay_loop 6
    lb_algo rr
    lb_kind DR
    persistence_timeout 50
    protocol TCP

    real_server 198.18.2.100 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 198.18.2.200 80 {
        weight 1
        inhibit_on_failure
        HTTP_GET {
            url {
              path /healthz
              digest 640205b7b0fc66c1ea91c463fac6334d
              status_code 200-299 404
            }
            connect_timeout 2
            nb_get_retry 3
            delay_before_retry 3
        }
    }
}
"""


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def lines(conf: keepalived.KeepalivedConf) -> list[str]:
    return checkers.dump(conf).splitlines()


def test_the_man_pages_example_reads_with_keepalived_defaults(tmp_path):
    conf = keepalived.parse(str(write(tmp_path, "keepalived.conf", SIMPLE)))
    assert conf.ignored == ["global_defs", "vrrp_instance"]
    assert conf.warnings == []
    (vs,) = conf.virtual_servers
    assert (vs.proto, vs.sched, vs.method, vs.persistence_timeout, vs.delay_loop) == \
        ("tcp", "rr", "DR", 50, 6.0)
    r1, r2 = vs.reals
    assert (r1.weight, r1.inhibit, r2.weight, r2.inhibit) == (3, False, 1, True)
    (tcp,) = r1.checkers
    # keepalived's checker defaults: retry 1, delay_before_retry 1 s, the VS's delay_loop
    assert (tcp.kind, tcp.connect_timeout, tcp.retry, tcp.delay_before_retry,
            tcp.delay_loop) == ("TCP_CHECK", 3.0, 1, 1.0, 6.0)
    (http,) = r2.checkers
    assert (http.retry, http.delay_before_retry, http.connect_timeout) == (3, 3.0, 2.0)
    (url,) = http.urls
    assert url.path == "/healthz" and url.digest == "640205b7b0fc66c1ea91c463fac6334d"
    assert [url.status_ok(c) for c in (200, 250, 299, 300, 404, 500)] == \
        [True, True, True, False, True, False]
    assert lines(conf)[1:] == [
        "ipvsadm -A -t 198.18.2.1:80 -s rr -p 50",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.2.100:80 -g -w 3   # TCP_CHECK every 6 s",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.2.200:80 -g -w 1   # HTTP_GET every 6 s",
    ]


def test_defaults_keepalived_sets_with_a_warning(tmp_path):
    conf = keepalived.parse(str(write(tmp_path, "k.conf", """\
        virtual_server 198.18.2.1 0 {
            lvs_method DR
            real_server 198.18.2.100 8080 {
            }
        }
        virtual_server fwmark 10 {
            lvs_method DR
            protocol TCP
            quorum 5
            hysteresis 2
            real_server 198.18.2.100 80 {
                weight 2
            }
        }
        """)))
    f = str(tmp_path / "k.conf")
    assert conf.warnings == [
        f"({f}: Line 1) Virtual server [198.18.2.1]:none:0: no protocol set - defaulting to "
        "UDP",
        f"({f}: Line 1) Virtual server [198.18.2.1]:udp:0: zero port only valid for "
        "persistent services - setting",
        f"({f}: Line 1) Virtual server [198.18.2.1]:udp:0: no scheduler set, setting default "
        "'wlc'",
        f"({f}: Line 1) WARNING - virtual server [198.18.2.1]:udp:0 and real server "
        "[198.18.2.100]:udp:8080 ports don't match - resetting",
        f"({f}: Line 6) Warning: Virtual server FWM 10: protocol specified for fwmark - "
        "protocol will be ignored",
        f"({f}: Line 6) Virtual server FWM 10: no scheduler set, setting default 'wlc'",
        f"({f}: Line 6) Warning - quorum 5 for FWM 10 exceeds total weight of real servers 2, "
        "reducing quorum to 2",
        f"({f}: Line 6) Virtual server FWM 10: hysteresis 2 >= quorum 2; setting hysteresis "
        "to 1",
    ]
    assert lines(conf)[1:3] == ["ipvsadm -A -u 198.18.2.1:0 -s wlc -p 360",
                                "ipvsadm -a -u 198.18.2.1:0 -r 198.18.2.100 -g -w 1"]
    assert lines(conf)[4:] == ["ipvsadm -A -f 10 -s wlc",
                               "ipvsadm -a -f 10 -r 198.18.2.100 -g -w 2"]
    assert (conf.virtual_servers[1].quorum, conf.virtual_servers[1].hysteresis) == (2, 1)


def test_includes_globs_relative_paths_conditionals_and_parameters(tmp_path):
    main = write(tmp_path, "etc/keepalived.conf", """\
        $VIP=198.18.2.1
        $SCHED=wrr
        include conf.d/*.conf
        include conf.d/none-*.conf
        @thisnode virtual_server ${VIP} 443 {
        @^thisnode virtual_server ${VIP} 444 {
            lvs_sched $SCHED
            lvs_method DR
            protocol TCP
            include reals.inc
        }
        """)
    write(tmp_path, "etc/reals.inc", """\
        real_server 198.18.2.100 443 {
            weight 2
            SSL_GET { url { path / } }
        }
        """)
    write(tmp_path, "etc/conf.d/b.conf", """\
        virtual_server fwmark 7 {
            lb_algo sh
            lb_kind DR
            real_server 198.18.2.200 0 { MISC_CHECK { misc_path "/bin/sh -c 'exit 3'"
                                                      misc_dynamic } }
        }
        """)
    write(tmp_path, "etc/conf.d/a.conf", """\
        virtual_server_group pool {
            198.18.2.10-12 80
            2001:db8::1 80
        }
        """)
    with pytest.raises(keepalived.ConfError, match=r"a\.conf: Line 3\) Cannot mix IPv4 and "
                                                   r"IPv6 in virtual server group - pool"):
        keepalived.parse(str(main), config_id="thisnode")
    write(tmp_path, "etc/conf.d/a.conf", """\
        virtual_server_group pool {
            198.18.2.10-12 80
        }
        virtual_server group pool {
            lb_algo rr
            lb_kind DR
            protocol TCP
            real_server 198.18.2.100 80 {
            }
        }
        """)
    conf = keepalived.parse(str(main), config_id="thisnode")
    assert [vs.name() for vs in conf.virtual_servers] == \
        ["[pool]:0", "FWM 7", "[198.18.2.1]:tcp:443"]
    assert [s.name() for s in conf.virtual_servers[0].services] == \
        ["198.18.2.10:80", "198.18.2.11:80", "198.18.2.12:80"]
    misc = conf.virtual_servers[1].reals[0].checkers[0]
    assert (misc.misc_path, misc.misc_dynamic) == ("/bin/sh -c 'exit 3'", True)
    assert "ipvsadm -A -t 198.18.2.1:443 -s wrr" in lines(conf)
    # the other node takes the @^ line instead
    other = keepalived.parse(str(main), config_id="othernode")
    assert other.virtual_servers[2].services[0].port == 444
    assert conf.files == [str(main), str(tmp_path / "etc/conf.d/a.conf"),
                          str(tmp_path / "etc/conf.d/b.conf"), str(tmp_path / "etc/reals.inc")]


def test_scheduler_flags_granularity_and_per_real_methods():
    conf = keepalived.parse_text("""\
        virtual_server 198.18.2.1 443 {
            lvs_method DR
            lvs_sched sh
            flag-1
            sh-port
            protocol TCP
            persistence_granularity 255.255.255.0
            sorry_server 198.18.2.250 443
            sorry_server_lvs_method DR
            real_server 198.18.2.100 443 {
                lvs_method DR
                uthreshold 100
                lthreshold 50
            }
        }
        """)
    assert checkers.dump(conf).splitlines()[1:] == [
        "ipvsadm -A -t 198.18.2.1:443 -s sh -b sh-fallback,sh-port -p 360 -M 255.255.255.0",
        "ipvsadm -a -t 198.18.2.1:443 -r 198.18.2.100:443 -g -w 1 -x 100 -y 50"]


def test_a_range_in_a_group_expands_as_keepalived_does():
    conf = keepalived.parse_text("""\
        virtual_server_group g6 {
            2001:db8::a-c 53
            fwmark 9
        }
        virtual_server group g6 {
            lvs_method DR
            protocol UDP
            lvs_sched mh
            real_server 2001:db8::100 53 {
            }
        }
        """)
    svcs = conf.virtual_servers[0].services
    assert [s.spec() for s in svcs] == [["-u", "[2001:db8::a]:53"], ["-u", "[2001:db8::b]:53"],
                                       ["-u", "[2001:db8::c]:53"], ["-f", "9", "-6"]]
    assert svcs[0].addr == ipaddress.ip_address("2001:db8::a")


@pytest.mark.parametrize(("text", "line", "msg"), [
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.1000 "
     "80 {\n }\n}\n", 4, "Invalid real server IP address 198.18.2.1000"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n delay_loop x\n}\n", 4,
     "delay_loop: invalid number 'x'"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocl TCP\n}\n", 3,
     "Unknown keyword 'protocl'"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind NAT\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n }\n}\n", 1, "Virtual server [198.18.2.1]:tcp:80: lvs_method NAT: lvsxdp forwards "
     "by direct routing only (DR)"),
    ("virtual_server 198.18.2.1 80 {\n protocol TCP\n real_server 198.18.2.100 80 {\n }\n}\n",
     1, "no forwarding method set (keepalived's default is NAT)"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n lb_algo lblc\n protocol TCP\n real_server "
     "198.18.2.100 80 {\n }\n}\n", 1, "lvsxdp has no scheduler"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  SMTP_CHECK {\n  }\n }\n}\n", 5, "lvsxdp does not run SMTP_CHECK"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  weight 70000\n }\n}\n", 5, "Real server weight 70000 is outside range 0-65535"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n lb_algo nope\n}\n", 4,
     "Invalid lvs_scheduler 'nope'"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  lvs_method TUN\n }\n}\n", 5, "lvs_method TUN: lvsxdp forwards by direct routing "
     "only (DR)"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  retry 0\n }\n}\n", 5, "retry value invalid - 0"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n lb_algo rr\n sh-port\n"
     " real_server 198.18.2.100 80 {\n }\n}\n", 1, "sh-port only applies to the sh scheduler"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  HTTP_GET {\n   url {\n    status_code 200\n   }\n  }\n }\n}\n", 6,
     "HTTP/SSL_GET checker url has no path"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n", 1, "Missing '}'"),
    ("}\n", 1, "Extra '}' found"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  HTTP_GET {\n   url {\n    digest 12\n   }\n  }\n }\n}\n", 7,
     "digest '12' is not an MD5 in hex"),
    ("virtual_server group nope {\n lb_kind DR\n real_server 198.18.2.100 80 {\n }\n}\n", 1,
     "Virtual server group nope not found"),
    ("include missing.conf\n", 1, "Unable to find include file missing.conf"),
])
def test_errors_name_the_file_and_line_as_keepalived_does(tmp_path, text, line, msg):
    path = write(tmp_path, "keepalived.conf", text)
    with pytest.raises(keepalived.ConfError) as e:
        keepalived.parse(str(path))
    assert str(e.value).startswith(f"({path}: Line {line}) ")
    assert msg in str(e.value)


def test_two_virtual_servers_for_one_service_are_refused():
    with pytest.raises(keepalived.ConfError, match=r"Line 7\) Virtual server "
                                                   r"198.18.2.1:80 is already defined at"):
        keepalived.parse_text("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n"
                              " real_server 198.18.2.100 80 {\n }\n}\n" * 2)


def table(config: Config) -> dict:
    return {s.name(): {(str(r.addr), r.weight) for r in s.reals} for s in config.services}


def test_desired_table_and_the_lines_that_reach_it():
    conf = keepalived.parse_text(SIMPLE + """
virtual_server 198.18.2.1 81 {
    lb_kind DR
    protocol TCP
    quorum 2
    sorry_server 198.18.2.250 81
    real_server 198.18.2.100 81 {
        weight 1
    }
    real_server 198.18.2.200 81 {
        weight 1
    }
}
""")
    vs80, vs81 = conf.virtual_servers

    class St:
        def __init__(self, alive, weight):
            self.alive, self.weight = alive, weight

    states = {checkers._real_key(vs, rs): St(True, rs.weight) for vs in (vs80, vs81)
              for rs in vs.reals}
    quorum = {checkers._vs_key(vs80): True, checkers._vs_key(vs81): True}
    want = checkers.desired(conf, states, quorum)
    config = checkers.apply_lines(Config(), checkers.changes(Config(), want, set()))
    assert table(config) == {"TCP  198.18.2.1:80": {("198.18.2.100", 3), ("198.18.2.200", 1)},
                             "TCP  198.18.2.1:81": {("198.18.2.100", 1), ("198.18.2.200", 1)}}
    # nothing to change: the same lines leave the table as it is
    again = checkers.apply_lines(config, checkers.changes(config, want, set(want)))
    assert again.to_json() == config.to_json()
    # r2 fails: inhibit_on_failure on :80 gives weight 0; on :81 the quorum
    # of 2 is lost, the sorry server takes the reals' place
    states[checkers._real_key(vs80, vs80.reals[1])].alive = False
    states[checkers._real_key(vs81, vs81.reals[1])].alive = False
    quorum[checkers._vs_key(vs81)] = False
    want = checkers.desired(conf, states, quorum)
    new = checkers.apply_lines(config, checkers.changes(config, want, set(want)))
    assert table(new) == {"TCP  198.18.2.1:80": {("198.18.2.100", 3), ("198.18.2.200", 0)},
                          "TCP  198.18.2.1:81": {("198.18.2.250", 1)}}
    # a service the conf no longer names goes; one it never named stays
    config = checkers.apply_lines(new, [["-A", "-t", "198.18.2.9:22", "-s", "rr"]])
    want.pop(vs81.services[0].key())
    gone = checkers.apply_lines(config, checkers.changes(config, want, {
        vs80.services[0].key(), vs81.services[0].key()}))
    assert [s.name() for s in gone.services] == ["TCP  198.18.2.1:80", "TCP  198.18.2.9:22"]


def test_config_test_prints_problems_and_a_bad_file_changes_nothing(tmp_path):
    state = tmp_path / "state"
    env = dict(os.environ, LVSXDP_STATE_DIR=str(state), LVSXDP_RUN_DIR=str(tmp_path / "run"))
    good = write(tmp_path, "good.conf", SIMPLE.replace("protocol TCP\n", ""))
    out = subprocess.run([LVSXDP, "keepalived", "-t", "-f", str(good)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stderr == (f"({good}: Line 14) Virtual server [198.18.2.1]:none:80: no protocol "
                          "set - defaulting to UDP\n")
    bad = write(tmp_path, "bad.conf", SIMPLE.replace("weight 1\n", "weight one\n"))
    for args in (["-t"], ["-n"]):
        out = subprocess.run([LVSXDP, "keepalived", *args, "-f", str(bad)], env=env,
                             capture_output=True, text=True, timeout=30)
        assert (out.returncode, out.stdout) == (1, "")
        assert out.stderr == (f"({bad}: Line 28) Real server weight one is outside range "
                              "0-65535\n")
    assert not state.exists()  # nothing saved, nothing applied
    out = subprocess.run([LVSXDP, "keepalived", "-f", str(tmp_path / "nope.conf")], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert str(tmp_path / "nope.conf") in out.stderr
    out = subprocess.run([LVSXDP, "keepalived", "-P"], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr == \
        "lvsxdp: keepalived -P (VRRP only): lvsxdp has no VRRP\n"


def test_a_fwmark_takes_its_reals_family():
    conf = keepalived.parse_text("virtual_server fwmark 5 {\n lb_kind DR\n"
                                 " real_server 2001:db8::100 80 {\n }\n}\n")
    assert lines(conf)[1:] == ["ipvsadm -A -f 5 -6 -s wlc",
                               "ipvsadm -a -f 5 -6 -r [2001:db8::100] -g -w 1"]


def test_persistence_timeout_0_is_no_persistence_as_keepalived_goes_on_without_it():
    conf = keepalived.parse_text("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n"
                                 " lb_algo rr\n persistence_timeout 0\n"
                                 " real_server 198.18.2.100 80 {\n }\n}\n")
    assert conf.warnings == ["(keepalived.conf: Line 5) persistence_timeout invalid"]
    assert lines(conf)[1] == "ipvsadm -A -t 198.18.2.1:80 -s rr"
