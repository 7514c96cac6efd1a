"""Each keepalived checker lvsxdp runs, against real servers: a namespace
lxk<4 hex>-p with an HTTP server, an HTTPS server (a self-signed
certificate) and a port whose SYNs are dropped; the probes run inside it, as
`lvsxdp -n NS keepalived` runs them in the director's namespace."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import subprocess
import sys
import textwrap
import time

import pytest

from lvsxdp.lab import run

ADDR = "198.18.4.1"
OTHER = "198.18.4.2"  # a second address of the namespace, for bindto
HTTP, HTTPS, DROPPED, CLOSED = 8080, 8443, 9999, 7001

SERVER = r"""
import ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
cert, key = sys.argv[1:]

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        codes = {"/": 200, "/missing": 404, "/err": 500, "/client": 200}
        code = codes.get(self.path, 404)
        body = (self.client_address[0] if self.path == "/client" else f"page {self.path}")
        body = (body + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

plain = ThreadingHTTPServer(("0.0.0.0", 8080), H)
tls = ThreadingHTTPServer(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
print("ready", flush=True)
plain.serve_forever()
"""

PROBE = r"""
import json, sys
from lvsxdp import checkers, keepalived
conf = keepalived.parse_text(sys.argv[1])
out = []
for rs in conf.virtual_servers[0].reals:
    for c in rs.checkers:
        v = checkers.probe(c, rs.addr, rs.port)
        out.append([v.ok, v.why, v.weight])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ns(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lxk-probes")
    name = f"lxk{secrets.token_hex(2)}-p"
    server = None
    run(None, "ip", "netns", "add", name)
    try:
        run(name, "ip", "link", "set", "lo", "up")
        run(name, "ip", "addr", "add", f"{ADDR}/32", "dev", "lo")
        run(name, "ip", "addr", "add", f"{OTHER}/32", "dev", "lo")
        run(name, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(DROPPED), "-j", "DROP")
        run(None, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={ADDR}",
            "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem"))
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER,
                                   str(tmp / "cert.pem"), str(tmp / "key.pem")],
                                  stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert server.stdout.readline().strip() == b"ready"
        yield name
    finally:
        if server is not None:
            server.kill()
            server.wait()
        with contextlib.suppress(Exception):
            run(None, "ip", "netns", "del", name)


def probe(ns: str, checker: str, port: int = HTTP, addr: str = ADDR) -> list:
    """Runs the checker block once from inside ns against addr:port; returns
    [ok, why, weight] per checker."""
    conf = textwrap.dedent(f"""\
        virtual_server {addr} {port} {{
            lb_kind DR
            protocol TCP
            real_server {addr} {port} {{
        {textwrap.indent(textwrap.dedent(checker), '        ')}
            }}
        }}
        """)
    out = run(ns, sys.executable, "-c", PROBE, conf, timeout=30)
    return json.loads(out.stdout)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324


def test_tcp_check_passes_on_a_listening_port_and_fails_on_a_closed_one(ns):
    assert probe(ns, "TCP_CHECK { connect_timeout 2 }") == [[True, "", None]]
    ((ok, why, _),) = probe(ns, "TCP_CHECK { connect_timeout 2 }", port=CLOSED)
    assert not ok
    assert why.startswith(f"TCP connection to [{ADDR}]:tcp:{CLOSED} failed (Connection refused")
    # connect_ip / connect_port check another address and port than the real's
    assert probe(ns, f"""\
        TCP_CHECK {{
            connect_ip {OTHER}
            connect_port {HTTP}
        }}""", port=CLOSED) == [[True, "", None]]


def test_connect_timeout_bounds_a_check_whose_syn_is_dropped(ns):
    start = time.monotonic()
    ((ok, why, _),) = probe(ns, "TCP_CHECK {\n connect_timeout 0.5\n}", port=DROPPED)
    took = time.monotonic() - start
    assert not ok and "timed out" in why
    assert took < 3  # the python start-up included; the probe itself waits 0.5 s


def test_http_get_checks_status_codes_and_the_body_digest(ns):
    assert probe(ns, "HTTP_GET { url { path / } }") == [[True, "", None]]
    ((ok, why, _),) = probe(ns, "HTTP_GET { url { path /missing } }")
    assert not ok and why == f"HTTP_GET to [{ADDR}]:tcp:{HTTP}/missing: HTTP status code 404"
    assert probe(ns, """\
        HTTP_GET {
            url {
                path /missing
                status_code 404
            }
        }""")[0][0]
    assert probe(ns, f"""\
        HTTP_GET {{
            url {{
                path /
                digest {md5("page /" + chr(10))}
            }}
        }}""") == [[True, "", None]]
    ((ok, why, _),) = probe(ns, f"""\
        HTTP_GET {{
            url {{
                path /
                digest {md5("another page")}
            }}
        }}""")
    assert not ok and f"MD5 digest {md5('page /' + chr(10))} is not {md5('another page')}" in why
    # every url must pass
    ((ok, why, _),) = probe(ns, """\
        HTTP_GET {
            url {
                path /
            }
            url {
                path /err
            }
        }""")
    assert not ok and why.endswith("/err: HTTP status code 500")


def test_bindto_sets_the_checks_source_address(ns):
    for source in (ADDR, OTHER):
        assert probe(ns, f"""\
            HTTP_GET {{
                url {{
                    path /client
                    digest {md5(source + chr(10))}
                }}
                bindto {source}
            }}""")[0][0]


def test_ssl_get_speaks_tls(ns):
    assert probe(ns, f"""\
        SSL_GET {{
            url {{
                path /
                digest {md5("page /" + chr(10))}
            }}
            connect_port {HTTPS}
        }}""") == [[True, "", None]]
    # plain HTTP's port does not speak TLS
    ((ok, why, _),) = probe(ns, "SSL_GET { url { path / } }")
    assert not ok and why.startswith(f"SSL_GET to [{ADDR}]:tcp:{HTTP} failed")


def test_misc_check_by_exit_status_and_misc_dynamic_weights(ns):
    def misc(code: str, extra: str = "") -> list:
        return probe(ns, f'MISC_CHECK {{\n misc_path "/bin/sh -c \'{code}\'"\n {extra}\n}}')[0]

    assert misc("exit 0") == [True, "", None]
    assert misc("exit 1")[0] is False
    assert misc("exit 7")[0] is False  # 2-255 only count as success with misc_dynamic
    assert misc("exit 7", "misc_dynamic") == [True, "", 5]
    assert misc("exit 1", "misc_dynamic")[0] is False
    start = time.monotonic()
    ok, why, _ = misc("sleep 5", "misc_timeout 0.5")
    assert not ok and "timed out" in why and time.monotonic() - start < 4


TIMELINE = r"""
import json, queue, socket, sys, time
from lvsxdp import checkers, keepalived
conf = keepalived.parse_text(sys.argv[1])
rs = conf.virtual_servers[0].reals[0]
addr, port = sys.argv[2], int(sys.argv[3])

def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen()
    return s

out = queue.Queue()
run = checkers.CheckerRun(rs.checkers[0], rs, port, out)
events = {"up_at_start": run.up}
srv = listen()
run.start()
if not events["up_at_start"]:  # alpha: the first passing check brings it up
    out.get(timeout=5)
    events["alpha_up_checks"] = run.checks
time.sleep(0.3)
srv.close()
stopped, checks = time.monotonic(), run.checks
_, verdict = out.get(timeout=10)
events["down_after"] = time.monotonic() - stopped
events["failed_probes"] = run.checks - checks
events["why"] = verdict.why
srv = listen()
started = time.monotonic()
out.get(timeout=10)
events["up_after"] = time.monotonic() - started
run.stop.set()
print(json.dumps(events))
"""


@pytest.mark.parametrize("alpha", [False, True])
def test_a_real_goes_down_after_its_retries_and_comes_back_at_its_first_pass(ns, alpha):
    port = 7002
    conf = textwrap.dedent(f"""\
        virtual_server {ADDR} {port} {{
            lb_kind DR
            protocol TCP
            {'alpha' if alpha else ''}
            real_server {ADDR} {port} {{
                TCP_CHECK {{
                    delay_loop 1
                    retry 2
                    delay_before_retry 0.3
                    connect_timeout 1
                }}
            }}
        }}
        """)
    out = run(ns, sys.executable, "-c", TIMELINE, conf, ADDR, str(port), timeout=60)
    events = json.loads(out.stdout)
    assert events["up_at_start"] is (not alpha)
    if alpha:
        assert events["alpha_up_checks"] == 1
    # once up, the first failure is retried twice, 0.3 s apart: down at the
    # third failing probe, between 0.6 s and one delay_loop + 0.6 s after
    assert events["failed_probes"] == 3
    assert 0.6 <= events["down_after"] <= 1.0 + 0.6 + 0.3
    assert events["why"].startswith(f"TCP connection to [{ADDR}]:tcp:{port} failed")
    # a real that is down comes back at the first check that passes
    assert events["up_after"] <= 1.0 + 0.3


# UDP echo, a UDP port that never answers, a DNS responder, two SMTP servers
SERVICES = r"""
import socket, struct, threading
A = "198.18.4.1"

def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((A, port))
    return s

def echo(s):
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)

def dns(s):
    # name "type-N.example": NOERROR only when the query's type is N;
    # nx./refused./silent./wrongid.example answer as they say; query.example
    # sends the query back (QR clear), then the answer
    while True:
        q, peer = s.recvfrom(65535)
        qid, flags = struct.unpack("!HH", q[:4])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        name = ".".join(labels)
        rcode = {"nx.example": 3, "refused.example": 5}.get(name, 0)
        if name.startswith("type-") and int(name.split(".")[0][5:]) != qtype:
            rcode = 1
        if name == "silent.example" or not flags & 0x0100:
            continue
        if name == "wrongid.example":
            qid ^= 1
        if name == "query.example":  # REFUSED, were it taken for the answer
            s.sendto(q[:2] + struct.pack("!H", (flags & 0x7FF0) | 5) + q[4:], peer)
        s.sendto(struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, 0, 0, 0) + q[12:i + 5], peer)

def smtp(port, banner):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((A, port))
    ls.listen()
    while True:
        c, _ = ls.accept()
        f = c.makefile("rb")
        c.sendall(banner)
        if not banner.startswith(b"220"):
            c.close()
            continue
        helo = f.readline()
        if helo.startswith(b"HELO director.example"):
            c.sendall(b"250-mx.example hello\r\n250 ok\r\n")
        else:
            c.sendall(b"501 who are you\r\n")
        if f.readline() == b"QUIT\r\n":
            c.sendall(b"221 bye\r\n")
        c.close()

silent = udp(5001)  # bound, never read: no ICMP error, no reply
for target, args in ((echo, (udp(5000),)), (dns, (udp(5300),)),
                     (smtp, (2525, b"220-mx.example ESMTP\r\n220 ready\r\n")),
                     (smtp, (2526, b"554 no service here\r\n"))):
    threading.Thread(target=target, args=args, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.fixture(scope="module")
def services(ns):
    run(ns, "ip", "addr", "add", "2001:db8:4::1/128", "dev", "lo", "nodad")
    # reachable by route, owned by nobody: echoes to it go unanswered
    run(ns, "ip", "route", "add", "198.18.5.0/24", "dev", "lo")
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVICES],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert p.stdout.readline().strip() == b"ready"
        yield ns
    finally:
        p.kill()
        p.wait()


def test_udp_check_is_down_on_port_unreachable_or_a_missing_or_wrong_reply(services):
    fast = "connect_timeout 0.5"
    assert probe(services, f"UDP_CHECK {{ {fast} }}", port=5000) == [[True, "", None]]
    # silence is up, unless a reply is required
    assert probe(services, f"UDP_CHECK {{ {fast} }}", port=5001) == [[True, "", None]]
    ((ok, why, _),) = probe(services, f"UDP_CHECK {{ {fast}\n require_reply }}", port=5001)
    assert (ok, why) == (False, f"UDP check to [{ADDR}]:udp:5001 failed (no reply)")
    # nothing bound: the ICMP port unreachable takes it down at once
    start = time.monotonic()
    ((ok, why, _),) = probe(services, "UDP_CHECK { connect_timeout 5 }", port=5002)
    assert not ok and "Connection refused" in why and time.monotonic() - start < 4
    # the echo's reply starts with the payload: require_reply's pattern is a prefix
    def check(pattern: str, extra: str = "") -> str:
        return f"UDP_CHECK {{ {fast}\n payload 68656c6c6f\n require_reply {pattern}\n {extra} }}"

    assert probe(services, check("6865"), port=5000) == [[True, "", None]]
    ((ok, why, _),) = probe(services, check("6869"), port=5000)
    assert (ok, why) == (False, f"UDP check to [{ADDR}]:udp:5000 reply data mismatch")
    # x nibbles match anything; a pattern longer than the reply is compared as
    # far as the reply goes (check_udp.c's check_udp_reply)
    assert probe(services, check("6x 6X 6c"), port=5000) == [[True, "", None]]
    assert probe(services, check("68656c6c6f2121"), port=5000) == [[True, "", None]]
    ((ok, why, _),) = probe(services, check("68", "min_reply_length 6"), port=5000)
    assert (ok, why) == (False, f"UDP check to [{ADDR}]:udp:5000 failed (reply length 5)")
    assert probe(services, check("68", "max_reply_length 5"), port=5000)[0][0] is True
    ((ok, why, _),) = probe(services, check("68", "max_reply_length 4"), port=5000)
    assert (ok, why) == (False, f"UDP check to [{ADDR}]:udp:5000 failed (reply length 5)")
    # the lengths bound a reply only against a pattern: without one, any reply is up
    assert probe(services, f"UDP_CHECK {{ {fast}\n payload 68656c6c6f\n require_reply\n"
                           " min_reply_length 9 }", port=5000) == [[True, "", None]]


def test_ping_check_over_icmp_and_icmpv6(services):
    assert probe(services, "PING_CHECK { connect_timeout 1 }") == [[True, "", None]]
    assert probe(services, "PING_CHECK { connect_timeout 1 }",
                 addr="2001:db8:4::1") == [[True, "", None]]
    start = time.monotonic()
    ((ok, why, _),) = probe(services, "PING_CHECK { connect_timeout 0.5 }",
                            addr="198.18.5.9")
    assert (ok, why) == (False, "ICMP connection to [198.18.5.9] failed (no echo reply)")
    assert time.monotonic() - start < 3


def test_dns_check_wants_its_query_id_and_noerror(services):
    def dns(name: str, extra: str = "") -> list:
        return probe(services, f"DNS_CHECK {{\n connect_timeout 0.5\n name {name}\n {extra}\n}}",
                     port=5300)[0]

    where = f"DNS_CHECK ([{ADDR}]:udp:5300)"
    assert dns("www.example") == [True, "", None]
    # the type goes into the query as its code: SOA (6) unless told
    assert dns("type-6.example")[0] is True
    assert dns("type-28.example", "type AAAA")[0] is True
    assert dns("type-1.example", "type MX")[:2] == [False, f"{where} RCODE error (FORMERR)"]
    assert dns("nx.example")[:2] == [False, f"{where} RCODE error (NXDOMAIN)"]
    assert dns("refused.example")[:2] == [False, f"{where} RCODE error (REFUSED)"]
    assert dns("silent.example")[:2] == [False, f"{where} failed (timeout)"]
    assert dns("wrongid.example")[:2] == [False, f"{where} failed (timeout)"]
    # a datagram with the id but QR clear is no answer: keepalived reads on
    assert dns("query.example") == [True, "", None]


def test_smtp_check_banner_helo_quit(services):
    assert probe(services, "SMTP_CHECK {\n helo_name director.example\n connect_timeout 2\n}",
                 port=2525) == [[True, "", None]]
    where = f"[{ADDR}]:tcp:2525"
    # keepalived's default HELO name is not the one this server wants
    ((ok, why, _),) = probe(services, "SMTP_CHECK { connect_timeout 2 }", port=2525)
    assert (ok, why) == (False, f"SMTP server {where} refused HELO (501 who are you)")
    ((ok, why, _),) = probe(services, "SMTP_CHECK { connect_timeout 2 }", port=2526)
    assert (ok, why) == (False, f"SMTP server [{ADDR}]:tcp:2526 bad banner (554 no service "
                                "here)")
    # connect_ip / connect_port, and the old host blocks, name the server elsewhere
    assert probe(services, f"""\
        SMTP_CHECK {{
            helo_name director.example
            host {{
                connect_ip {ADDR}
                connect_port 2525
            }}
            host {{
                connect_port {CLOSED}
            }}
        }}""", port=HTTP) == [[True, "", None], [False, f"SMTP connection to [{ADDR}]:tcp:"
                                                       f"{CLOSED} failed (Connection refused)",
                                                None]]


def test_http_get_url_regex_must_match_or_with_regex_no_match_must_not(ns):
    def get(extra: str) -> list:
        return probe(ns, f"HTTP_GET {{\n connect_timeout 2\n url {{\n  path /\n  {extra}\n }}\n"
                         "}")[0]

    # the body is "page /\n"
    assert get('regex "^page /$"\n regex_options multiline') == [True, "", None]
    assert get('regex "PAGE"\n regex_options caseless')[0] is True
    ok, why, _ = get('regex "^nothing"')
    assert not ok and why == f"HTTP_GET to [{ADDR}]:tcp:{HTTP}/: regex '^nothing' did not match"
    ok, why, _ = get('regex "page"\n regex_no_match')
    assert not ok and why.endswith("regex 'page' matched")
    assert get('regex "nothing"\n regex_no_match')[0] is True
    # offsets bound where a match may be: "page" starts at 0
    assert get('regex "page"\n regex_min_offset 1')[0] is False
    assert get('regex "pa"\n regex_max_offset 3')[0] is True
    assert get('regex "page"\n regex_max_offset 3')[0] is False
