"""IPVS's sysctls through `lvsxdp sysctl`, as an operator types them with
sysctl(8): they reach the running data plane and the saved configuration."""

import pytest
from nsdirector import cli, namespaces

from lvsxdp import runtime, shared


@pytest.fixture(scope="module")
def director(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sysctl")
    with namespaces(tmp, "lxy") as ([ns], env):
        cli(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096", "--templates", "4096")
        yield ns, env, tmp / "state" / f"{ns}.json"


def data_plane(ns):
    with runtime.Maps(runtime.PIN_ROOT / ns) as maps:
        return maps.read_config()


def test_defaults_read_as_ipvs_has_them(director):
    ns, env, _ = director
    assert cli(env, ns, "sysctl").stdout == (
        "net.ipv4.vs.expire_nodest_conn = 0\n"
        "net.ipv4.vs.expire_quiescent_template = 0\n"
        "lvsxdp.template_extension = 120\n")


def test_writes_reach_the_data_plane_and_the_saved_configuration(director):
    ns, env, state = director
    out = cli(env, ns, "sysctl", "-w", "net.ipv4.vs.expire_nodest_conn=1",
              "net.ipv4.vs.expire_quiescent_template=1", "lvsxdp.template_extension=60")
    assert out.stdout.splitlines() == ["net.ipv4.vs.expire_nodest_conn = 1",
                                       "net.ipv4.vs.expire_quiescent_template = 1",
                                       "lvsxdp.template_extension = 60"]
    cfg = data_plane(ns)
    assert cfg.flags & shared.CFG_F_EXPIRE_NODEST_CONN
    assert cfg.flags & shared.CFG_F_EXPIRE_QUIESCENT_TEMPLATE
    assert cfg.extend_ns == 60 * shared.NS
    assert '"expire_nodest_conn": true' in state.read_text()

    cli(env, ns, "sysctl", "-w", "net.ipv4.vs.expire_nodest_conn=0",
        "net.ipv4.vs.expire_quiescent_template=0", "lvsxdp.template_extension=120")
    cfg = data_plane(ns)
    assert not cfg.flags & (shared.CFG_F_EXPIRE_NODEST_CONN
                            | shared.CFG_F_EXPIRE_QUIESCENT_TEMPLATE)
    assert cfg.extend_ns == 120 * shared.NS


@pytest.mark.parametrize("word,message", [
    ("net.ipv4.vs.expire_nodest_conn=2",
     'sysctl: setting key "net.ipv4.vs.expire_nodest_conn": Invalid argument (0..1)'),
    ("lvsxdp.template_extension=0",
     'sysctl: setting key "lvsxdp.template_extension": Invalid argument (1..86400)'),
    ("net.ipv4.vs.conn_reuse_mode=0",
     "sysctl: cannot stat /proc/sys/net/ipv4/vs/conn_reuse_mode: No such file or directory "
     "(lvsxdp knows: net.ipv4.vs.expire_nodest_conn, net.ipv4.vs.expire_quiescent_template, "
     "lvsxdp.template_extension)"),
])
def test_bad_sysctl_changes_nothing(director, word, message):
    ns, env, state = director
    saved = state.read_bytes() if state.exists() else b""
    before = bytes(data_plane(ns))
    out = cli(env, ns, "sysctl", "-w", "lvsxdp.template_extension=90", word, check=False)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", message + "\n")
    assert (state.read_bytes() if state.exists() else b"") == saved
    assert bytes(data_plane(ns)) == before
