"""Bad lines against a running director, through the lvsxdp command: one
clear line on stderr, a non-zero exit, and the configuration - the saved
file and every map the data plane reads it from - byte for byte as before."""

import ctypes
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from nsdirector import LVSXDP, cli, namespaces

from lvsxdp import runtime

CONFIG_MAPS = ("config", "vips", "services", "svc_conf", "reals", "sched_ring", "mark_cfg",
               "mark_dst", "mark_src", "mark_port", "mark_combo")
SETUP = [
    ("ipvsadm", "-A -t 198.18.2.1:0 -s rr -p 360"),
    ("ipvsadm", "-a -t 198.18.2.1:0 -r 198.18.2.100 -g"),
    ("ipvsadm", "-a -t 198.18.2.1:0 -r 198.18.2.200 -g"),
    ("ipvsadm", "-A -f 10 -s rr -p"),
    ("ipvsadm", "-a -f 10 -r 198.18.2.100 -g"),
    ("iptables", "-t mangle -A PREROUTING -d 198.18.2.1 -i eth0 -p tcp -m multiport "
                 "--dport 80,443 -j MARK --set-mark 10"),
]
BAD = [
    ("ipvsadm", "-A -t 198.18.2.1:0 -s rr"),
    ("ipvsadm", "-A -t 198.18.2.1:0 -s rr -p 360"),
    ("ipvsadm", "-A -t 198.18.2.1:80 -s nosuch"),
    ("ipvsadm", "-a -t 198.18.2.1:0 -r 198.18.2.100"),
    ("ipvsadm", "-a -t 198.18.2.9:0 -r 198.18.2.100"),
    ("ipvsadm", "-a -t 198.18.2.1:0 -r 198.18.2.150 -w 70000"),
    ("ipvsadm", "-a -t 198.18.2.1:0 -r 198.18.2.150 -i --tun-type gue"),  # no --tun-port
    ("ipvsadm", "-d -f 10 -r 198.18.2.200"),
    ("ipvsadm", "-D -t 198.18.2.1:80"),
    ("ipvsadm", "--frobnicate"),
    ("iptables", "-A PREROUTING -p tcp -j MARK --set-mark 1"),
    ("iptables", "-t mangle -A PREROUTING -m conntrack --ctstate NEW -j MARK --set-mark 1"),
    ("iptables", "-t mangle -A PREROUTING -p tcp --dport 90:80 -j MARK --set-mark 1"),
    ("iptables", "-t mangle -A PREROUTING -j DROP"),
    ("iptables", "-t mangle -D PREROUTING 7"),
]


@pytest.fixture(scope="module")
def director(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    with namespaces(tmp, "lxc") as ([ns], env):
        cli(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096", "--templates", "4096")
        for tool, line in SETUP:
            cli(env, ns, tool, *line.split())
        settle(ns)
        yield ns, env, tmp / "state" / f"{ns}.json"


def settle(ns, timeout=15.0):
    """Waits until the agent has caught up with the setup (its next pass may
    still rewrite the maps): two reads a second apart that agree."""
    deadline = time.monotonic() + timeout
    last = map_bytes(ns)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = map_bytes(ns)
        if now == last:
            return
        last = now
    raise AssertionError("the director's maps kept changing after the setup")


def map_bytes(ns):
    """Every entry of the maps that hold the configuration, as bytes (in the
    maps' own order, which does not change while a map does not)."""
    out = {}
    with runtime.Maps(runtime.PIN_ROOT / ns) as maps:
        for name in CONFIG_MAPS:
            m = getattr(maps, name)
            ksz, vsz = ctypes.sizeof(m.key_type), m.value_bytes
            keys = bytearray(ksz * (m.max_entries + 64))
            values = bytearray(vsz * (m.max_entries + 64))
            n = m.read_raw(keys, values)
            out[name] = (bytes(keys[:n * ksz]), bytes(values[:n * vsz]))
    return out


@pytest.mark.parametrize("tool,line", BAD)
def test_bad_line_changes_nothing(director, tool, line):
    ns, env, state = director
    saved = state.read_bytes()
    maps = map_bytes(ns)
    out = cli(env, ns, tool, *line.split(), check=False)
    # ipvsadm's own: 2 for what it refuses itself, 255 for what the kernel refuses
    assert out.returncode in ((2, 255) if tool == "ipvsadm" else (2,))
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert state.read_bytes() == saved
    assert map_bytes(ns) == maps


def test_a_good_line_does_change_the_maps(director):
    """The check above would see a change: a good line makes one."""
    ns, env, state = director
    maps = map_bytes(ns)
    cli(env, ns, "ipvsadm", "-e", "-t", "198.18.2.1:0", "-r", "198.18.2.100", "-g", "-w", "3")
    assert map_bytes(ns)["reals"] != maps["reals"]
    cli(env, ns, "ipvsadm", "-e", "-t", "198.18.2.1:0", "-r", "198.18.2.100", "-g", "-w", "1")


@pytest.mark.parametrize("args,says", [
    (("restart", "eth1"), "lvsxdp: the director here is up on eth0, not eth1"),
    (("up", "eth0", "--conns", "8192"),
     "lvsxdp: the running director has --conns 4096; `lvsxdp down eth0 --flush` first to "
     "resize (that drops every connection and template)"),
])
def test_restart_elsewhere_or_resize_is_refused_and_changes_nothing(director, args, says):
    ns, env, state = director
    saved = state.read_bytes()
    maps = map_bytes(ns)
    out = cli(env, ns, *args, check=False)
    assert (out.returncode, out.stdout, out.stderr) == (1, "", says + "\n")
    assert state.read_bytes() == saved
    assert map_bytes(ns) == maps


def test_restart_or_down_with_no_director_says_so_in_one_line(tmp_path):
    with namespaces(tmp_path, "lxc") as ([ns], env):
        for args, says in (
                (("restart", "eth0"), f"no director is running in network namespace {ns} "
                                      "(`lvsxdp up eth0` starts one)"),
                (("down", "eth0"), f"no director is running in network namespace {ns}"),
                (("down", "eth0", "--flush"), f"no director is running in network namespace "
                                              f"{ns}")):
            out = cli(env, ns, *args, check=False)
            assert (out.returncode, out.stdout, out.stderr) == (1, "", f"lvsxdp: {says}\n")
        assert not (runtime.PIN_ROOT / ns).exists()
        assert not (tmp_path / "run" / f"{ns}.json").exists()


def one_line_error(out):
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    return out.stderr.strip()


def test_up_on_a_missing_interface_says_so_in_one_line(tmp_path):
    with namespaces(tmp_path, "lxm") as ([ns], env):
        out = cli(env, ns, "up", "eth9", check=False)
        assert one_line_error(out) == "lvsxdp: no such interface: eth9"
        assert not (runtime.PIN_ROOT / ns).exists()


@pytest.mark.parametrize("garbage", ["garbage\n", '{"services": 5}', '{"services": [{"port": 1}]}',
                                     "", "[]"])
def test_a_damaged_state_file_is_named_not_a_traceback(tmp_path, garbage):
    with namespaces(tmp_path, "lxj") as ([ns], env):
        state = tmp_path / "state" / f"{ns}.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(garbage)
        # what changes or saves the configuration stops, naming the file
        for args in (("ipvsadm", "-S", "-n"), ("ipvsadm", "-A", "-t", "198.18.2.1:80", "-s", "rr"),
                     ("up", "eth0")):
            out = cli(env, ns, *args, check=False)
            msg = one_line_error(out)
            assert str(state) in msg and "damaged" in msg, msg
        # a listing only reads: one warning line, and what is readable
        out = cli(env, ns, "ipvsadm", "-L", "-n", check=False)
        assert out.returncode == 0 and out.stdout.startswith("IP Virtual Server"), out.stderr
        [warning] = out.stderr.splitlines()
        assert warning.startswith("lvsxdp: warning: the saved configuration")
        assert str(state) in warning
        assert state.read_text() == garbage  # nothing is written over it
        out = cli(env, ns, "status", check=False)
        assert one_line_error(out) == f"lvsxdp: no director is running in network namespace {ns}"
        assert not (tmp_path / "run" / f"{ns}.json").exists()
        assert not (runtime.PIN_ROOT / ns).exists()


def test_read_only_commands_of_a_running_director_read_a_hand_edited_state(tmp_path):
    """A hand edit that broke one service: status (a PROBLEM, exit 1), top
    and the listings go on with the rest, one warning line each."""
    with namespaces(tmp_path, "lxj") as ([ns], env):
        cli(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096", "--templates", "4096")
        cli(env, ns, "ipvsadm", "-A", "-t", "198.18.2.1:80", "-s", "rr")
        cli(env, ns, "ipvsadm", "-A", "-t", "198.18.2.1:443", "-s", "rr")
        state = tmp_path / "state" / f"{ns}.json"
        raw = json.loads(state.read_text())
        raw["services"][1]["addr"] = "198.18.2.999"
        state.write_text(json.dumps(raw))
        out = cli(env, ns, "status", check=False)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        problems = [line for line in out.stdout.splitlines() if line.startswith("PROBLEM")]
        assert len(problems) == 1 and "damaged" in problems[0], out.stdout
        out = cli(env, ns, "top", "--json", "--interval", "0", check=False)
        assert out.returncode == 0 and len(out.stderr.splitlines()) == 1, out.stderr
        assert len(json.loads(out.stdout)["services"]) == 1
        out = cli(env, ns, "ipvsadm", "-L", "-n", check=False)
        assert out.returncode == 0 and len(out.stderr.splitlines()) == 1, out.stderr
        assert out.stdout.count("TCP  198.18.2.1:") == 1


def test_a_kernel_too_old_is_one_line_before_anything_is_pinned(tmp_path):
    # setarch makes uname(2) say 2.6.x for this command alone
    with namespaces(tmp_path, "lxk") as ([ns], env):
        out = subprocess.run(["setarch", os.uname().machine, "--uname-2.6", LVSXDP, "-n", ns,
                              "up", "eth0"], env=env, capture_output=True, text=True,
                             timeout=60)
        msg = one_line_error(out)
        assert msg.startswith("lvsxdp: this kernel (2.6.") and "lvsxdp needs Linux 5.18" in msg
        assert not (runtime.PIN_ROOT / ns).exists()


def test_no_bpffs_is_mounted_for_up_and_one_line_when_it_cannot_be(tmp_path):
    with namespaces(tmp_path, "lxb") as ([ns], env):
        # a pin root whose parent is no bpffs and cannot be made (under a file)
        (tmp_path / "file").write_text("")
        bad = dict(env, LVSXDP_PIN_ROOT=str(tmp_path / "file" / "bpf" / "lvsxdp"))
        out = cli(bad, ns, "up", "eth0", check=False)
        assert one_line_error(out) == (f"lvsxdp: no bpffs at {tmp_path}/file/bpf, and it cannot "
                                       "be made: Not a directory")
        for args in (("status",), ("top", "--once"), ("ipvsadm", "-L", "-n")):
            out = cli(bad, ns, *args, check=False)
            assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) <= 1, out.stderr
        # absent but possible: `up` mounts it, as systemd would, in a mount
        # namespace of the test's own so that it goes with it
        pins = tmp_path / "bpf" / "lvsxdp"
        out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                              f"{LVSXDP} -n {ns} up eth0 --mode generic --conns 4096 "
                              f"--templates 4096 && {LVSXDP} -n {ns} status --json; "
                              f"{LVSXDP} -n {ns} down eth0 --flush"],
                             env=dict(env, LVSXDP_PIN_ROOT=str(pins)), capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "lvsxdp up on eth0" in out.stdout, out.stderr
        assert '"agent_alive": true' in out.stdout


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("args", [
    ("ipvsadm", "-A", "-t", "198.18.2.1:80", "-s", "rr"),
    ("up", "eth0"),
    ("down", "eth0"),
    ("status",),
    ("-n", "lxnobody-none", "ipvsadm", "-L", "-n"),
    ("sysctl", "-w", "net.ipv4.vs.expire_nodest_conn=1"),
    ("restart", "eth0"),
    ("top", "--once"),
    ("metrics",),
    ("service", "--config", "/nonexistent", "run"),
])
def test_commands_as_a_user_say_what_is_wrong_in_one_line(tmp_path, args):
    # a state dir of its own that the user may read, a run dir it may not write
    (tmp_path / "state").mkdir()
    (tmp_path / "run").mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    env = dict(os.environ, LVSXDP_STATE_DIR=str(tmp_path / "state"),
               LVSXDP_RUN_DIR=str(tmp_path / "run"), LVSXDP_NETNS="lxnobody")
    out = subprocess.run([*NOBODY, LVSXDP, *args], env=env, capture_output=True, text=True,
                         timeout=60)
    one_line_error(out)


def test_ipvsadm_list_as_a_user_reads_the_saved_configuration():
    # pytest's tmp_path sits in a directory only root may enter
    with tempfile.TemporaryDirectory(prefix="lvsxdp-nobody-") as tmp:
        os.chmod(tmp, 0o755)
        save_as_nobody(Path(tmp))


def save_as_nobody(tmp_path):
    env = dict(os.environ, LVSXDP_STATE_DIR=str(tmp_path / "state"),
               LVSXDP_RUN_DIR=str(tmp_path / "run"), LVSXDP_NETNS="lxnobody")
    ipvsadm = str(Path(LVSXDP).with_name("ipvsadm"))
    subprocess.run([ipvsadm, "-A", "-t", "198.18.2.1:80", "-s", "rr"], env=env, check=True)
    os.chmod(tmp_path / "state", 0o755)
    os.chmod(tmp_path / "state" / "lxnobody.json", 0o644)
    out = subprocess.run([*NOBODY, ipvsadm, "-S", "-n"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "-A -t 198.18.2.1:80 -s rr\n", ""), \
        out.stderr
