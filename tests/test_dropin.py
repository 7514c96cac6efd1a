"""lvsxdp as a drop-in LVS director: the installed ipvsadm, ipvsadm-save and
ipvsadm-restore act on the director of the network namespace they run in
(also under `ip netns exec`), and a wheel carries the BPF sources `up`
compiles."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from nsdirector import LVSXDP, cli, namespaces
from test_cli_bad_input import map_bytes

from lvsxdp import runtime

REPO = Path(__file__).resolve().parent.parent
BIN = Path(LVSXDP).parent


def netns_exec(ns, env, *args, stdin=None):
    return subprocess.run(["ip", "netns", "exec", ns, *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_installed_ipvsadm_under_ip_netns_exec_changes_the_running_director(tmp_path):
    with namespaces(tmp_path, "lxd") as ([ns], env):
        cli(env, ns, "up", "eth0", "--mode", "generic", "--conns", "4096", "--templates", "4096")
        before = map_bytes(ns)
        for line in ("-A -t 198.18.2.1:80 -s rr -p", "-a -t 198.18.2.1:80 -r 198.18.2.100 -g"):
            out = netns_exec(ns, env, str(BIN / "ipvsadm"), *line.split())
            assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
        after = map_bytes(ns)
        assert after["services"] != before["services"]
        saved = netns_exec(ns, env, str(BIN / "ipvsadm-save"), "-n")
        assert saved.stdout == ("-A -t 198.18.2.1:80 -s rr -p 360\n"
                                "-a -t 198.18.2.1:80 -r 198.18.2.100:80 -g -w 1\n")
        # the same as `lvsxdp -n NS ipvsadm`
        assert cli(env, ns, "ipvsadm", "-S", "-n").stdout == saved.stdout
        assert netns_exec(ns, env, str(BIN / "ipvsadm"), "-C").returncode == 0
        assert cli(env, ns, "ipvsadm", "-S", "-n").stdout == ""
        out = netns_exec(ns, env, str(BIN / "ipvsadm-restore"), stdin=saved.stdout)
        assert (out.returncode, out.stderr) == (0, "")
        assert cli(env, ns, "ipvsadm", "-S", "-n").stdout == saved.stdout
        # a line restored twice: ipvsadm's message, and it goes on
        out = netns_exec(ns, env, str(BIN / "ipvsadm-restore"),
                         stdin=saved.stdout + "-A -t 198.18.2.1:81 -s rr\n")
        assert (out.returncode, out.stderr) == (0, "Service already exists\n"
                                                   "Destination already exists\n")
        assert "198.18.2.1:81" in cli(env, ns, "ipvsadm", "-S", "-n").stdout
        assert (runtime.PIN_ROOT / ns / "config").exists()


def test_a_wheel_carries_the_bpf_sources_and_runs_installed(tmp_path):
    src = tmp_path / "src"  # built from a copy: the checkout keeps no build/
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name) if src.exists() else (
            src.mkdir(), shutil.copy(REPO / name, src / name))
    for name in ("lvsxdp", "bpf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([BIN / "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", tmp_path / "dist", src], check=True)
    [wheel] = (tmp_path / "dist").glob("lvsxdp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in (REPO / "bpf").glob("*.[ch]"):
        assert f"lvsxdp/bpf/{source.name}" in names
    entry = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for script in ("ipvsadm", "ipvsadm-save", "ipvsadm-restore", "lvsxdp"):
        assert f"\n{script} = lvsxdp.cli:" in entry

    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", wheel], check=True)
    # lvsxdp's dependencies from the checkout's venv, as plain paths (not its
    # editable lvsxdp, which a .pth of its own would bring)
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and p.startswith(str(BIN.parent))]
    (site / "zz_lvsxdp_deps.pth").write_text("".join(p + "\n" for p in deps))
    out = subprocess.run([venv / "bin" / "lvsxdp", "--help"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0 and "lvsxdp ipvsadm" in out.stdout, out.stderr
    out = subprocess.run([venv / "bin" / "ipvsadm", "-v"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.stdout.startswith("ipvsadm v1.31 "), out.stderr
    out = subprocess.run([venv / "bin" / "python", "-c",
                          "from lvsxdp import loader; print(loader.MAIN_SOURCE); "
                          "print(len(loader.program_text()))"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    main_source, size = out.stdout.split()
    assert Path(main_source) == site / "lvsxdp" / "bpf" / "lvsxdp.bpf.c"
    assert int(size) > 10000

    # `up` from the installed package alone: compiles its sources, starts
    # its agent, from a directory that is no checkout
    installed = str(venv / "bin" / "lvsxdp")
    with namespaces(tmp_path, "lxw") as ([ns], env):
        out = subprocess.run([installed, "-n", ns, "up", "eth0", "--mode", "generic", "--conns",
                              "4096", "--templates", "4096"], env=env, capture_output=True,
                             text=True, cwd=tmp_path, timeout=300)
        assert out.returncode == 0 and out.stdout.startswith("lvsxdp up on eth0"), out.stderr
        info = json.loads((tmp_path / "run" / f"{ns}.json").read_text())
        with open(f"/proc/{info['agent_pid']}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0].startswith(bytes(venv / "bin" / "python"))
        out = subprocess.run([installed, "-n", ns, "down", "eth0", "--flush"], env=env,
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr


def test_pip_install_of_the_source_tree_is_not_editable_and_carries_bpf(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("lvsxdp", "bpf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", src], check=True)
    shutil.rmtree(src)  # nothing may point back into it
    site = next((venv / "lib").glob("python3*/site-packages"))
    for source in (REPO / "bpf").glob("*.[ch]"):
        assert (site / "lvsxdp" / "bpf" / source.name).read_bytes() == source.read_bytes()
