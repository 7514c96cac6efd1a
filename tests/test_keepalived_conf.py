"""keepalived.conf read as keepalived 2.2 reads it: includes (globs, paths
relative to the including file), @conditionals, $parameters, groups and
their ranges, keepalived's defaults and warnings, errors as
`(FILE: Line N) what`, and one error refusing the whole file (the saved
configuration untouched)."""

from __future__ import annotations

import ipaddress
import os
import queue
import subprocess
import textwrap
import time
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
    assert (vs.proto, vs.sched, vs.fwd.method, vs.persistence_timeout, vs.delay_loop) == \
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
    ("virtual_server 198.18.2.1 80 {\n lvs_method TUN type gre remcsum\n}\n", 2,
     "gre tunnels do not support remote checksum option."),
    ("virtual_server 198.18.2.1 80 {\n lvs_method TUN type gue\n}\n", 2,
     "gue tunnels require port, otherwise cannot have port."),
    ("virtual_server 198.18.2.1 80 {\n lvs_method TUN port 6080\n}\n", 2,
     "gue tunnels require port, otherwise cannot have port."),
    ("virtual_server 198.18.2.1 80 {\n lvs_method TUN csum\n}\n", 2,
     "ipip tunnels do not support checksum option."),
    ("virtual_server 198.18.2.1 80 {\n lvs_method TUN type gue port 0\n}\n", 2,
     "Invalid gue tunnel port 0 for virtual server."),
    ("virtual_server 198.18.2.1 80 {\n lvs_method TUN type\n}\n", 2,
     "Missing tunnel type for virtual server."),
    ("virtual_server 198.18.2.1 80 {\n lvs_method TUN type vxlan\n}\n", 2,
     "Unknown tunnel type vxlan for virtual server."),
    ("virtual_server 198.18.2.1 80 {\n protocol TCP\n real_server 198.18.2.100 80 {\n"
     "  lvs_method TUN type gue port\n }\n}\n", 4, "Missing port for real server gue tunnel."),
    ("virtual_server 198.18.2.1 80 {\n protocol TCP\n real_server 198.18.2.100 80 {\n"
     "  lvs_method TUN tos 4\n }\n}\n", 4, "Invalid tunnel option tos for real server."),
    ("virtual_server 198.18.2.1 80 {\n protocol TCP\n sorry_server 198.18.2.250 80\n"
     " sorry_server_lvs_method FOO\n real_server 198.18.2.100 80 {\n }\n}\n", 4,
     "PARSER : unknown [FOO] routing method for sorry server."),
    ("virtual_server 198.18.2.1 80 {\n protocol TCP\n tun_type gue\n}\n", 3,
     "Unknown keyword 'tun_type'"),
    ("virtual_server 198.18.2.1 80 {\n protocol TCP\n lvs_method TUN\n"
     " real_server 2001:db8::100 80 {\n }\n}\n", 1,
     "lvsxdp tunnels IPv4 in IPv4 and IPv6 in IPv6 only"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n lb_algo lblc\n protocol TCP\n real_server "
     "198.18.2.100 80 {\n }\n}\n", 1, "lvsxdp has no scheduler"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  BFD_CHECK {\n  }\n }\n}\n", 5, "lvsxdp does not run BFD_CHECK"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  FILE_CHECK {\n  }\n }\n}\n", 5, "FILE_CHECK has no track_file specified"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  FILE_CHECK {\n   track_file nope\n  }\n }\n}\n", 6, "track_file nope not found"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  FILE_CHECK {\n   connect_port 80\n  }\n }\n}\n", 6,
     "Unknown keyword 'connect_port'"),
    ("track_file t {\n weight 2\n}\n", 1, "No file set for track_file t"),
    ("track_file t {\n file /x\n weight 2 sideways\n}\n", 3,
     "unknown track file weight option sideways"),
    ("track_file t {\n file /x\n weight 70000\n}\n", 3,
     "weight for track file must be in [-65535..65535] inclusive"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  HTTP_GET {\n   url {\n    path /\n    regex \"a(\"\n   }\n  }\n }\n}\n", 6,
     "Invalid regex: 'a(' at offset 1: missing ), unterminated subpattern"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  HTTP_GET {\n   url {\n    path /\n    regex_options ucp\n   }\n  }\n }\n}\n", 8,
     "Unknown regex option ucp"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  UDP_CHECK {\n   payload 0a0g\n  }\n }\n}\n", 6,
     "Invalid hex string for UDP_CHECK payload"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  UDP_CHECK {\n   min_reply_length 9\n   max_reply_length 4\n  }\n }\n}\n", 5,
     "UDP_CHECK min_reply_length 9 > max_reply_length 4"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  DNS_CHECK {\n   type SRVX\n  }\n }\n}\n", 6, "DNS_CHECK: unknown type 'SRVX'"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  DNS_CHECK {\n   name a..b\n  }\n }\n}\n", 6, "DNS_CHECK: invalid name 'a..b'"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  PING_CHECK {\n   payload 00\n  }\n }\n}\n", 6, "Unknown keyword 'payload'"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  SMTP_CHECK {\n   host {\n    connect_ip nope\n   }\n  }\n }\n}\n", 7,
     "Invalid connect_ip IP address nope"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.2.100 "
     "80 {\n  weight 70000\n }\n}\n", 5, "Real server weight 70000 is outside range 0-65535"),
    ("virtual_server 198.18.2.1 80 {\n lb_kind DR\n protocol TCP\n lb_algo nope\n}\n", 4,
     "Invalid lvs_scheduler 'nope'"),
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


def test_udp_ping_dns_and_smtp_checks_read_with_keepalived_defaults():
    conf = keepalived.parse_text("""\
virtual_server 198.18.2.1 53 {
    lb_kind DR
    protocol UDP
    real_server 198.18.2.100 53 {
        UDP_CHECK {
            payload 1 02ff 0a0
            require_reply 0a0B x1 2X
            min_reply_length 2
            max_reply_length 100
            connect_timeout 2
        }
        UDP_CHECK {
        }
        PING_CHECK {
            retry 3
        }
        DNS_CHECK {
            type aaaa
            name www.example.
        }
        DNS_CHECK {
        }
        SMTP_CHECK {
            helo_name director.example
            connect_port 2525
        }
    }
    real_server 198.18.2.101 53 {
        SMTP_CHECK {
            connect_timeout 3
            host {
                connect_ip 198.18.2.201
                connect_port 25
            }
            host {
                connect_ip 198.18.2.202
            }
        }
    }
}
""")
    udp, udp_default, ping, dns, dns_default, smtp = conf.virtual_servers[0].reals[0].checkers
    # read_hex_str's octets: two digits, or one before a space or the end;
    # x is a nibble that matches anything
    assert (udp.payload, udp.require_reply) == (b"\x01\x02\xff\x0a\x00", True)
    assert (udp.reply_pattern, udp.reply_mask) == (b"\n\x0b\x01\x20", b"\0\0\xf0\x0f")
    assert (udp.min_reply_length, udp.max_reply_length, udp.connect_timeout) == (2, 100, 2.0)
    assert (udp_default.payload, udp_default.require_reply) == (b"", False)
    assert (udp_default.min_reply_length, udp_default.max_reply_length) == (0, 255)
    assert (udp_default.retry, udp_default.delay_before_retry,
            udp_default.connect_timeout) == (1, 1.0, 5.0)
    assert ping.kind == "PING_CHECK" and ping.retry == 3
    assert (dns.dns_type, dns.dns_name) == ("AAAA", "www.example.")
    assert (dns_default.dns_type, dns_default.dns_name) == ("SOA", ".")
    assert (smtp.helo_name, smtp.connect_port) == ("director.example", 2525)
    # the old host blocks: a checker each, with the block's other settings
    hosts = conf.virtual_servers[0].reals[1].checkers
    assert [(c.kind, c.connect_ip, c.connect_port, c.connect_timeout, c.helo_name)
            for c in hosts] == [
        ("SMTP_CHECK", "198.18.2.201", 25, 3.0, "smtpchecker.keepalived.org"),
        ("SMTP_CHECK", "198.18.2.202", None, 3.0, "smtpchecker.keepalived.org")]
    assert sum("SMTP_CHECK host block is deprecated" in w for w in conf.warnings) == 2


FILE_CONF = """\
track_file ready {
    file %s
    weight 3 reverse
    init_file 5 overwrite
}
track_file gate {
    file /nonexistent/gate
}
virtual_server 198.18.2.1 80 {
    lb_kind DR
    protocol TCP
    delay_loop 10
    real_server 198.18.2.100 80 {
        weight 10
        FILE_CHECK {
            track_file ready
        }
        FILE_CHECK {
            track_file gate
            weight 0
        }
        FILE_CHECK {
            track_file gate
            weight 2
        }
    }
}
"""


def test_file_check_weights_as_keepalived_moves_them(tmp_path):
    path = tmp_path / "ready"
    conf = keepalived.parse_text(FILE_CONF % path)
    ready, gate0, gate2 = conf.virtual_servers[0].reals[0].checkers
    assert (ready.track_file.name, ready.file_weight, ready.file_reverse) == ("ready", 3, True)
    assert (ready.track_file.init_value, ready.track_file.init_overwrite) == (5, True)
    # weight 0 in the FILE_CHECK: the track_file's (default 1, not reversed)
    assert (gate0.file_weight, gate0.file_reverse, gate2.file_weight) == (1, False, 2)
    # the file is watched (polled) every second, and counts at once
    assert (ready.delay_loop, ready.retry, ready.alpha, ready.base_weight) == (1.0, 0, False, 10)

    def verdict(c, text=None):
        if text is not None:
            path.write_text(text)
        v = checkers.probe(c, ipaddress.ip_address("198.18.2.100"), 80)
        return (v.ok, v.weight, v.why)

    checkers.init_track_file(ready.track_file)
    assert path.read_text() == "5\n"
    # weight 3 reverse: the real's weight 10 moves by -3 per unit, floored at 0
    assert verdict(ready) == (True, 0, "")
    assert verdict(ready, "2") == (True, 4, "")
    assert verdict(ready, "-0x2 junk") == (True, 16, "")
    assert verdict(ready, "0\n") == (True, 10, "")
    # a missing file is 0; weight 1 over a missing file: the weight stays
    assert verdict(gate0) == (True, 10, "")
    path.write_text("1")
    gate0.track_file.path = gate2.track_file.path = str(path)
    assert verdict(gate2) == (True, 12, "")
    # a FILE_CHECK weight 0 over a track_file weight 0: non-zero is down
    conf = keepalived.parse_text((FILE_CONF % path).replace("file /nonexistent/gate",
                                                             f"file {path}\nweight 0"))
    gate0 = conf.virtual_servers[0].reals[0].checkers[1]
    assert verdict(gate0, "1") == (False, None, "tracked file gate now FAULT state")
    assert verdict(gate0, "0") == (True, None, "")


def test_a_file_checks_change_reaches_its_real_within_a_second(tmp_path):
    path = tmp_path / "ready"
    conf = keepalived.parse_text(FILE_CONF.replace("weight 3 reverse", "weight 0") % path)
    rs = conf.virtual_servers[0].reals[0]
    out: queue.Queue = queue.Queue()
    run = checkers.CheckerRun(rs.checkers[0], rs, 80, out)
    run.start()
    try:
        _, v = out.get(timeout=3)
        assert path.read_text() == "5\n"  # init_file, at start
        assert (v.ok, v.why) == (False, "tracked file ready now FAULT state")
        written = time.monotonic()
        path.write_text("0")
        _, v = out.get(timeout=3)
        assert v.ok and time.monotonic() - written <= 1.5
    finally:
        run.stop.set()
        run.join()


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


def test_nat_and_tun_land_in_the_directors_table_as_ipvsadm_m_and_i_give_them():
    # a real takes the virtual server's method as it stands when the real is
    # declared (alloc_rs); one declared before any lvs_method takes the
    # final one; lvs_method inside a real is its own (keepalived 2.2)
    conf = keepalived.parse_text("""\
virtual_server 198.18.2.1 80 {
    protocol TCP
    lb_algo rr
    real_server 198.18.1.2 8080 {
    }
    lvs_method TUN type gue port 6080 csum
    real_server 198.18.1.3 81 {
    }
    lvs_method NAT
    real_server 198.18.1.2 8081 {
        weight 2
    }
    real_server 198.18.1.4 {
        lvs_method DR
    }
    real_server 198.18.1.5 {
        lvs_method TUN
    }
    real_server 198.18.1.6 {
        lvs_method TUN type gue port 7000
    }
    real_server 198.18.1.8 {
        lvs_method TUN type gre csum
    }
    real_server 198.18.1.9 {
        lvs_method TUN type gue port 7001 remcsum
    }
}
virtual_server fwmark 7 {
    lb_kind NAT
    lb_algo rr
    real_server 198.18.1.7 8080 {
    }
}
""")
    assert conf.warnings == ["(keepalived.conf: Line 1) WARNING - virtual server "
                             "[198.18.2.1]:tcp:80 and real server [198.18.1.3]:tcp:81 ports "
                             "don't match - resetting"]
    assert lines(conf)[1:10] == [
        "ipvsadm -A -t 198.18.2.1:80 -s rr",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.2:8080 -m -w 1",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.3:80 -i --tun-type gue --tun-port 6080 "
        "--tun-csum -w 1",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.2:8081 -m -w 2",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.4:80 -g -w 1",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.5:80 -i -w 1",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.6:80 -i --tun-type gue --tun-port 7000 "
        "--tun-nocsum -w 1",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.8:80 -i --tun-type gre --tun-csum -w 1",
        "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.9:80 -i --tun-type gue --tun-port 7001 "
        "--tun-remcsum -w 1",
    ]
    assert lines(conf)[11:] == ["ipvsadm -A -f 7 -s rr",
                               "ipvsadm -a -f 7 -r 198.18.1.7:8080 -m -w 1"]
    config = apply_all(conf)
    svc = config.find_service(("tcp", ipaddress.ip_address("198.18.2.1"), 80))
    got = {(str(r.addr), r.port): (r.fwd, r.tun_type, r.tun_port, r.tun_flags, r.weight)
           for r in svc.reals}
    assert got == {("198.18.1.2", 8080): ("masq", "ipip", 0, 0, 1),
                   ("198.18.1.3", 80): ("tunnel", "gue", 6080, 1, 1),
                   ("198.18.1.2", 8081): ("masq", "ipip", 0, 0, 2),
                   ("198.18.1.4", 80): ("route", "ipip", 0, 0, 1),
                   ("198.18.1.5", 80): ("tunnel", "ipip", 0, 0, 1),
                   ("198.18.1.6", 80): ("tunnel", "gue", 7000, 0, 1),
                   ("198.18.1.8", 80): ("tunnel", "gre", 0, 1, 1),
                   ("198.18.1.9", 80): ("tunnel", "gue", 7001, 2, 1)}
    (fwm,) = [s for s in config.services if s.fwmark == 7]
    assert [(str(r.addr), r.port, r.fwd) for r in fwm.reals] == [("198.18.1.7", 8080, "masq")]


def apply_all(conf: keepalived.KeepalivedConf, alive: bool = True) -> Config:
    """The table the daemon makes of conf with every real's checkers as given."""
    class St:
        def __init__(self, weight):
            self.alive, self.weight = alive, weight

    states = {checkers._real_key(vs, rs): St(rs.weight) for vs in conf.virtual_servers
              for rs in vs.reals}
    quorum = {checkers._vs_key(vs): alive for vs in conf.virtual_servers}
    want = checkers.desired(conf, states, quorum)
    return checkers.apply_lines(Config(), checkers.changes(Config(), want, set()))


def test_no_lvs_method_is_keepalived_default_nat_for_the_reals_and_the_sorry_server():
    conf = keepalived.parse_text("virtual_server 198.18.2.1 80 {\n protocol TCP\n lb_algo rr\n"
                                 " sorry_server 198.18.1.9 8000\n"
                                 " real_server 198.18.1.2 8080 {\n }\n"
                                 " real_server 198.18.1.3 {\n }\n}\n")
    assert conf.warnings == ["(keepalived.conf: Line 1) Virtual server [198.18.2.1]:tcp:80: no "
                             "forwarding method set, setting default NAT"]
    vs = conf.virtual_servers[0]
    assert [rs.fwd.method for rs in vs.reals] == ["NAT", "NAT"]
    # a NAT real without a port takes the service's (validate_check_config)
    assert lines(conf)[2:] == ["ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.2:8080 -m -w 1",
                               "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.3:80 -m -w 1"]
    # every real down, no quorum: the sorry server masquerades on its own port
    config = apply_all(conf, alive=False)
    (svc,) = config.services
    assert [(str(r.addr), r.port, r.fwd, r.weight) for r in svc.reals] == \
        [("198.18.1.9", 8000, "masq", 1)]


def test_a_sorry_server_has_its_own_method_and_nat_reals_sharing_an_address_come_and_go():
    conf = keepalived.parse_text("virtual_server 198.18.2.1 80 {\n protocol TCP\n lb_algo rr\n"
                                 " lvs_method NAT\n sorry_server 198.18.1.9 8000\n"
                                 " sorry_server_lvs_method TUN type gue port 6080\n"
                                 " real_server 198.18.1.2 8080 {\n }\n"
                                 " real_server 198.18.1.2 8081 {\n }\n}\n")
    assert conf.warnings == []
    vs = conf.virtual_servers[0]
    assert vs.sorry_fwd == keepalived.Fwd("TUN", "gue", 6080, "nocsum")
    config = apply_all(conf, alive=False)
    (svc,) = config.services
    # a tunnelled sorry server takes the service's port, as ipvsadm -i does
    assert [(str(r.addr), r.port, r.fwd, r.tun_type) for r in svc.reals] == \
        [("198.18.1.9", 80, "tunnel", "gue")]
    # the reals come back: both ports of one address, the sorry server goes
    up = apply_all(conf)
    st = {checkers._real_key(vs, rs): type("St", (), {"alive": True, "weight": 1})()
          for rs in vs.reals}
    want = checkers.desired(conf, st, {checkers._vs_key(vs): True})
    again = checkers.apply_lines(config, checkers.changes(config, want, set(want)))
    assert table(again) == table(up) == {"TCP  198.18.2.1:80": {("198.18.1.2", 1)}}
    assert sorted(r.port for r in again.services[0].reals) == [8080, 8081]
    # one of them leaves the conf: -d names it by its own port
    vs.reals.pop()
    want = checkers.desired(conf, st, {checkers._vs_key(vs): True})
    one = checkers.apply_lines(again, checkers.changes(again, want, set(want)))
    assert [(str(r.addr), r.port) for r in one.services[0].reals] == [("198.18.1.2", 8080)]


def test_tunnel_words_with_nat_or_dr_are_read_and_unused_as_keepalived_does():
    conf = keepalived.parse_text("virtual_server 198.18.2.1 80 {\n protocol TCP\n"
                                 " lvs_method DR type gue port 6080\n"
                                 " real_server 198.18.1.2 80 {\n }\n}\n")
    assert lines(conf)[2] == "ipvsadm -a -t 198.18.2.1:80 -r 198.18.1.2:80 -g -w 1"


def test_a_reload_that_changes_a_reals_method_changes_it_in_the_table():
    def conf_with(method: str, port: int) -> keepalived.KeepalivedConf:
        return keepalived.parse_text(f"virtual_server 198.18.2.1 80 {{\n protocol TCP\n"
                                     f" lb_algo rr\n lvs_method {method}\n"
                                     f" real_server 198.18.1.2 {port} {{\n }}\n}}\n")

    config = Config()
    seen = []
    for method, port in (("DR", 80), ("NAT", 8080), ("TUN type gue port 6080 csum", 80),
                         ("NAT", 80), ("DR", 80)):
        conf = conf_with(method, port)
        (vs,) = conf.virtual_servers
        st = {checkers._real_key(vs, rs): type("St", (), {"alive": True, "weight": 1})()
              for rs in vs.reals}
        want = checkers.desired(conf, st, {checkers._vs_key(vs): True})
        config = checkers.apply_lines(config, checkers.changes(config, want, set(want)))
        seen.append([(r.port, r.fwd, r.tun_type, r.tun_port, r.tun_flags)
                     for r in config.services[0].reals])
    assert seen == [[(80, "route", "ipip", 0, 0)], [(8080, "masq", "ipip", 0, 0)],
                    [(80, "tunnel", "gue", 6080, 1)], [(80, "masq", "ipip", 0, 0)],
                    [(80, "route", "ipip", 0, 0)]]
