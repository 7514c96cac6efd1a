"""The seed's PCC example end to end: real clients (curl, an ssh-like
banner) talk to the VIP of a director running `lvsxdp up`, in native and
generic XDP mode; real servers answer straight back (direct routing).

Every test builds its own lab in namespaces lxe<4 hex>-* and removes it,
whatever happens."""

from __future__ import annotations

import pytest
from nsdirector import native_nics

from lvsxdp import lab, runtime, shared
from lvsxdp.lab import CLIENT_ADDRS, IFACE, REALS, SEED_PCC, VIP, Topology

MODES = ("native", "generic")


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def topo(mode, tmp_path):
    with Topology(lab.unique_prefix(), native=(mode == "native"),
                  state_dir=tmp_path / "state", run_dir=tmp_path / "run",
                  nics=native_nics() if mode == "native" else None) as t:
        yield t


def director_up(topo: Topology, mode: str) -> None:
    topo.lvsxdp("up", IFACE, "--mode", mode)
    assert lab.xdp_mode(topo.director, IFACE) == mode
    for line in SEED_PCC:
        topo.ipvsadm(line)
    topo.wait_for_reals(tuple(REALS.values()))  # else rr may find one real not yet reachable
    # one NIC: the kernel routes to every real out of the receiving interface,
    # so DR keeps the XDP_TX fast path (bpf/lvsxdp.bpf.c, forward())
    with runtime.Maps(runtime.PIN_ROOT / topo.director) as maps:
        egress = {r.ifindex for _, r in maps.reals.used() if r.flags & shared.REAL_F_MAC_VALID}
        assert egress == {maps.read_config().ifindex}


def conn_entries(topo: Topology) -> list[dict]:
    """`ipvsadm -L -n -c`, one dict per entry."""
    out = topo.ipvsadm("-L -n -c").splitlines()
    assert out[:2] == ["IPVS connection entries",
                       "pro expire state       source             virtual            destination"]
    keys = ("pro", "expire", "state", "source", "virtual", "destination")
    return [dict(zip(keys, line.split(), strict=True)) for line in out[2:]]


def one_real_per_client(seen: dict) -> dict[str, str]:
    """The real each client reached; fails unless it was one real for all
    of a client's connections (and every connection got an answer)."""
    reals = {}
    for addr, answers in seen.items():
        got = {real for _, real in answers}
        assert len(got) == 1 and None not in got, f"client {addr}: {answers}"
        reals[addr] = got.pop()
    return reals


@pytest.mark.kernels  # one of the seed's scenarios, on each kernel
def test_pcc_sends_every_port_of_a_client_to_one_real(topo, mode):
    director_up(topo, mode)
    listing = topo.ipvsadm("-L -n")
    assert f"TCP  {VIP}:0 rr persistent 360" in listing
    for addr in REALS.values():
        assert f"-> {addr}:0".ljust(31) + " Route   1" in listing

    seen = lab.drive_clients(topo, rounds=2)
    real_of = one_real_per_client(seen)
    assert set(real_of.values()) == set(REALS), "rr over 4 clients uses both reals"
    for addr, real in real_of.items():
        # direct routing: the real sees the client itself, not the director
        assert topo.curl(addr, f"http://{VIP}/client") == f"{real} {addr}"

    entries = conn_entries(topo)
    for addr, real in real_of.items():
        rip = REALS[real]
        templates = [e for e in entries if e["source"] == f"{addr}:0"]
        assert templates == [{"pro": "TCP", "expire": templates[0]["expire"], "state": "ASSURED",
                              "source": f"{addr}:0", "virtual": f"{VIP}:0",
                              "destination": f"{rip}:0"}]
        conns = [e for e in entries if e["source"].startswith(f"{addr}:")
                 and e["state"] not in lab.TEMPLATE_STATES]
        assert len(conns) == len(seen[addr]) + 1  # + the /client request
        for e in conns:
            port = e["virtual"].rsplit(":", 1)[1]
            assert port in ("80", "8080", "22")
            assert e["pro"] == "TCP" and e["virtual"] == f"{VIP}:{port}"
            assert e["destination"] == f"{rip}:{port}"

    topo.lvsxdp("down", IFACE)
    assert lab.xdp_mode(topo.director, IFACE) is None
    assert topo.lvsxdp("status", check=False).returncode != 0
    # Without lvsxdp the VIP is only the director's own address: nobody serves it.
    with pytest.raises(lab.LabError):
        topo.curl(CLIENT_ADDRS[0], f"http://{VIP}/", timeout=1)


def test_reload_keeps_templates_so_clients_keep_their_real(topo, mode):
    director_up(topo, mode)
    before = one_real_per_client(lab.drive_clients(topo, rounds=1))
    templates = sorted((e["source"], e["destination"]) for e in conn_entries(topo)
                       if e["state"] in lab.TEMPLATE_STATES)

    topo.lvsxdp("up", IFACE, "--mode", mode)
    assert lab.xdp_mode(topo.director, IFACE) == mode
    assert sorted((e["source"], e["destination"]) for e in conn_entries(topo)
                  if e["state"] in lab.TEMPLATE_STATES) == templates
    # In reverse order: a round robin started afresh would now hand each
    # client the other real, so only the kept templates give the old ones.
    after = one_real_per_client(lab.drive_clients(topo, rounds=1,
                                                  clients=CLIENT_ADDRS[::-1]))
    assert after == before
