"""The lvsxdp command: thin wiring of parsing, planning and the runtime."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .model import ConfigError
from .runtime import RuntimeError_

SIZES = click.IntRange(1024, 1 << 26)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-n", "--netns", metavar="NETNS",
              help="Act on the director of this network namespace (like `ip -n`; "
                   "`ip netns exec NETNS lvsxdp ...` works too).")
def main(netns: str | None) -> None:
    """lvsxdp: LVS persistence and direct routing in XDP.

    \b
    lvsxdp up eth0
    lvsxdp ipvsadm -A -t 198.18.2.1:0 -s rr -p 360
    lvsxdp ipvsadm -a -t 198.18.2.1:0 -r 198.18.2.100 -g
    lvsxdp ipvsadm -L -n -c
    lvsxdp -n director status
    """
    from . import runtime  # noqa: PLC0415

    # `ip netns exec` hides the pins: every command goes back to the host's
    # mounts (the network namespace, which names the director, stays)
    runtime.see_host_pins()
    if netns:
        try:
            runtime.enter_netns(netns)
        except RuntimeError_ as e:
            _die(str(e))


def _die(msg: str, code: int = 1) -> None:
    click.echo(f"lvsxdp: {msg}", err=True)
    sys.exit(code)


@main.command()
@click.argument("ifaces", nargs=-1, required=True, metavar="IFACE...")
@click.option("--mode", type=click.Choice(["native", "generic", "auto"]), default="auto",
              show_default=True, help="XDP attach mode: native (driver), generic (skb), "
                                      "or auto (the kernel picks; kept on reload).")
@click.option("--conns", type=SIZES, default=None,
              help="Connection table size (default 1048576).")
@click.option("--templates", type=SIZES, default=None,
              help="Persistence template table size (default 262144).")
def up(ifaces: tuple[str, ...], mode: str, conns: int | None, templates: int | None) -> None:
    """Start (or reload) the director on IFACE... (the first: the VIP side).

    Compiles and loads the XDP program, pins its maps, restores the saved
    configuration, attaches to every IFACE, and starts the agent that keeps
    real servers' routes and MACs fresh. Direct routing sends a real's
    packets the way the kernel routes to it: out of the interface they came
    in on (XDP_TX), or out of another IFACE named here (redirect); a real
    that only an interface not named here reaches is unreachable (`lvsxdp
    status` says why). Run again to reload the program (or `lvsxdp
    restart`): templates and connections are kept, as are those a plain
    `down` kept.

    \b
    lvsxdp up eth0
    lvsxdp up eth0 eth1          # clients on eth0, reals behind eth1 too
    lvsxdp up eth0 --mode native --conns 4194304
    lvsxdp -n lab-director up eth0 --mode generic
    """
    from . import director  # noqa: PLC0415
    from .loader import LoadError  # noqa: PLC0415

    try:
        click.echo(director.up(list(ifaces), mode, conns, templates))
    except (RuntimeError_, LoadError, ConfigError) as e:
        _die(str(e))


@main.command()
@click.argument("ifaces", nargs=-1, required=True, metavar="IFACE...")
@click.option("--mode", type=click.Choice(["native", "generic", "auto"]), default="auto",
              show_default=True, help="XDP attach mode; auto keeps the running one (a "
                                      "change of mode re-attaches: not hitless).")
def restart(ifaces: tuple[str, ...], mode: str) -> None:
    """Restart the running director on IFACE... without dropping a connection.

    Compiles the new program while the old one forwards, swaps it in
    atomically, and starts a new agent: every connection and template is
    kept. Fails, changing nothing, when no director runs on IFACE. The VIP
    side alone keeps the interfaces it serves; naming them all changes them.

    \b
    lvsxdp restart eth0
    lvsxdp -n lab-director restart eth0
    """
    from . import director  # noqa: PLC0415
    from .loader import LoadError  # noqa: PLC0415

    try:
        click.echo(director.restart(list(ifaces), mode))
    except (RuntimeError_, LoadError, ConfigError) as e:
        _die(str(e))


@main.command()
@click.argument("ifaces", nargs=-1, required=True, metavar="IFACE...")
@click.option("--flush", is_flag=True,
              help="Also drop the connection and template tables (every pinned map).")
def down(ifaces: tuple[str, ...], flush: bool) -> None:
    """Detach from IFACE (the VIP side) and every interface it serves, and
    stop the agent; keep the tables.

    The connection and template tables stay pinned: the next `lvsxdp up`
    resumes every connection and template that has not expired meanwhile.
    `--flush` drops them. The configuration stays saved either way.

    \b
    lvsxdp down eth0
    lvsxdp down eth0 --flush
    """
    from . import director  # noqa: PLC0415

    try:
        click.echo(director.down(ifaces[0], flush))
    except RuntimeError_ as e:
        _die(str(e))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Is a director running here, and how is it doing.

    Exits 1 when anything is wrong, with one PROBLEM line for each: no
    director, a served interface without its program, the agent dead, a
    real the data plane cannot reach (no route, no MAC), a kernel mangle
    rule lvsxdp cannot follow, a damaged saved configuration.

    \b
    lvsxdp status
    lvsxdp -n director status --json
    """
    from . import director  # noqa: PLC0415

    try:
        st = director.status()
    except RuntimeError_ as e:
        _die(str(e))
    if as_json:
        click.echo(json.dumps(st, sort_keys=True))
        sys.exit(1 if st["problems"] else 0)
    alive = "running" if st["agent_alive"] else "NOT RUNNING"
    how = {"may_goto": ", walks by may_goto", "bounded": ", walks in bounded chunks"}
    click.echo(f"director  {st['netns']}: {' '.join(st['ifaces'] or [str(st['iface'])])} "
               f"({st['mode']} XDP, prog {st['prog_id']}"
               f"{how.get(st.get('loops'), '')})")
    by = f" (lvsxdp service pid {st['supervisor_pid']})" if st.get("supervisor_pid") else ""
    click.echo(f"agent     pid {st['agent_pid']} {alive}{by}")
    click.echo(f"config    {st['services']} services, {st['reals']} real servers")
    click.echo(f"tables    {st['connections']}/{st['conn_table_size']} connections, "
               f"{st['templates']}/{st['template_table_size']} templates")
    dropped = ", ".join(f"{k} {v}" for k, v in st["not_forwarded"].items() if v) or "none"
    click.echo(f"not fwd   {dropped}")
    checks = st.get("keepalived")
    if checks and checks["running"]:
        reals = checks.get("reals", [])
        down = [r for r in reals if not r["alive"]]
        click.echo(f"checkers  lvsxdp keepalived pid {checks['pid']} ({checks['conf']}): "
                   f"{len(reals)} real servers, {len(reals) - len(down)} up, {len(down)} down")
        for r in down:
            click.echo(f"down      {r['real']} of VS {r['vs']}: {r['why']}")
    for problem in st["problems"]:
        click.echo(f"PROBLEM   {problem}")
    sys.exit(1 if st["problems"] else 0)


@main.command(context_settings={"ignore_unknown_options": True,
                                "allow_interspersed_args": False,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ipvsadm(args: tuple[str, ...]) -> None:
    """ipvsadm's command lines, as operators type them.

    \b
    lvsxdp ipvsadm -A -t 198.18.2.1:0 -s rr -p 360
    lvsxdp ipvsadm -a -t 198.18.2.1:0 -r 198.18.2.100 -g
    lvsxdp ipvsadm -a -t 198.18.2.1:0 -r 198.18.2.200 -g
    lvsxdp ipvsadm -L -n
    lvsxdp ipvsadm -L -n -c
    lvsxdp ipvsadm -S -n > rules; lvsxdp ipvsadm -R < rules
    """
    argv = list(args)
    if argv and argv[0] == "ipvsadm":  # `lvsxdp ipvsadm ipvsadm -A ...` from pasted lines
        argv = argv[1:]
    sys.exit(run_ipvsadm(argv))


def run_ipvsadm(argv: list[str], stdin=None) -> int:
    """One ipvsadm command line against this namespace's director: prints
    what ipvsadm prints and returns its exit status (2: a line ipvsadm
    refuses, 255: one the kernel refuses, 1: list of a missing service)."""
    from . import director, runtime  # noqa: PLC0415

    stdin = sys.stdin if stdin is None else stdin
    try:
        runtime.see_host_pins()
        out, errors = director.ipvsadm_command(argv, stdin)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return e.code
    except RuntimeError_ as e:
        print(f"ipvsadm: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ipvsadm: {_os_error(e)}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    sys.stdout.flush()
    for err in errors:  # -R goes on after a bad line, as ipvsadm does
        print(err, file=sys.stderr)
    return 0


def _os_error(e: OSError) -> str:
    msg = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    if isinstance(e, PermissionError) and os.geteuid() != 0:
        msg += " (lvsxdp needs root)"
    return msg


def _one_line(prog: str, run) -> None:
    """Runs a command; whatever escapes it is one line, never a traceback
    (LVSXDP_DEBUG=1 shows it)."""
    try:
        sys.exit(run())
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if os.environ.get("LVSXDP_DEBUG"):
            raise
        if isinstance(e, OSError):
            msg = _os_error(e)
        else:
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print(f"{prog}: {msg}", file=sys.stderr)
        sys.exit(1)


def entry() -> None:
    """The installed `lvsxdp` command."""
    _one_line("lvsxdp", main)


def ipvsadm_main() -> None:
    """The installed `ipvsadm` command."""
    _one_line("ipvsadm", lambda: run_ipvsadm(sys.argv[1:]))


def ipvsadm_save_main() -> None:
    """The installed `ipvsadm-save [-n]`: ipvsadm -S [-n]."""
    _one_line("ipvsadm-save", lambda: run_ipvsadm(["-S", *sys.argv[1:]]))


def ipvsadm_restore_main() -> None:
    """The installed `ipvsadm-restore`: ipvsadm -R, the rules on stdin."""
    _one_line("ipvsadm-restore", lambda: run_ipvsadm(["-R", *sys.argv[1:]]))


@main.command(context_settings={"ignore_unknown_options": True,
                                "allow_interspersed_args": False,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def iptables(args: tuple[str, ...]) -> None:
    """iptables' mangle MARK lines, as the seed types them.

    XDP runs before netfilter, so lvsxdp classifies marks itself: from these
    rules and from the kernel's own mangle PREROUTING chain (plain
    `iptables -t mangle -A PREROUTING ...`), which a running director follows
    within about a second. MARK does not terminate: the last matching rule
    decides.

    \b
    lvsxdp iptables -t mangle -A PREROUTING -d 198.18.2.1 -i eth0 -p tcp \\
        -m multiport --dport 80,443 -j MARK --set-mark 10
    lvsxdp iptables -t mangle -A PREROUTING -i eth0 -d 198.18.2.1 -p tcp \\
        --dport 2000:2100 -j MARK --set-mark 10
    lvsxdp iptables -t mangle -S PREROUTING
    """
    from . import director  # noqa: PLC0415

    try:
        out = director.iptables_command(list(args))
    except ConfigError as e:
        click.echo(f"iptables: {e}", err=True)
        sys.exit(2)
    except RuntimeError_ as e:
        _die(str(e))
    click.echo(out, nl=False)


@main.command()
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the frame's data as one JSON object and exit.")
@click.option("-d", "--interval", type=click.FloatRange(0, 60), default=1.0, show_default=True,
              help="Seconds between refreshes. --once and --json measure rates over one "
                   "interval (0: counters only, no rates).")
@click.option("--sort", type=click.Choice(["conns", "left", "client", "service", "real", "age"]),
              default="conns", show_default=True, help="Order of the affinity table.")
@click.option("--reverse", is_flag=True, help="Reverse that order.")
@click.option("--service", metavar="SERVICE",
              help="Only templates of this service: 198.18.2.1:0, 'TCP 198.18.2.1:0', 'FWM 10'.")
@click.option("--real", metavar="ADDR[:PORT]", help="Only templates that lead to this real.")
@click.option("--client", metavar="ADDR[/LEN]",
              help="Only templates of this client or client network.")
@click.option("-N", "--limit", type=click.IntRange(0), default=None,
              help="Affinity rows (default: what fits; --json 100; 0: all).")
def top(once: bool, as_json: bool, interval: float, sort: str, reverse: bool,
        service: str | None, real: str | None, client: str | None, limit: int | None) -> None:
    """The director live: traffic, services and reals, the affinity table.

    Reads the pinned maps (never compiles). Keys: o sort, i invert,
    v service, r real, / client (Enter applies, Esc cancels), x clear
    filters, p or space pause, q quit.

    \b
    lvsxdp top
    lvsxdp -n lxl-dir top --sort left
    lvsxdp top --once --client 198.18.2.0/24
    lvsxdp top --json --limit 0 | jq '.services[].reals[] | {name, pps}'
    """
    from . import top as top_mod  # noqa: PLC0415 - numpy only where needed

    view = top_mod.View(sort=sort, reverse=reverse, service=service, real=real, client=client,
                        limit=limit)
    try:
        top_mod.main(view, interval, once, as_json)
    except (RuntimeError_, OSError) as e:
        _die(str(e))


@main.command()
@click.option("--listen", default="127.0.0.1:9652", show_default=True, metavar="[ADDR]:PORT",
              help="Where to serve /metrics (in the director's network namespace); "
                   "`:9652` listens on every address, the VIPs included.")
def metrics(listen: str) -> None:
    """Serve the director's numbers to Prometheus (text format over HTTP).

    Counters per service and real (connections, packets, bytes), drops by
    reason, connection and template counts, weights, MAC state, the kernel
    mangle rules lvsxdp cannot follow. Read from the maps at each scrape.
    Listens on 127.0.0.1 unless told otherwise.

    \b
    lvsxdp metrics
    lvsxdp -n lxl-dir metrics --listen 198.18.2.2:9652
    curl -s http://198.18.2.2:9652/metrics | grep lvsxdp_real_packets_total
    """
    from . import metrics as metrics_mod  # noqa: PLC0415

    try:
        metrics_mod.main(listen)
    except (RuntimeError_, OSError) as e:
        _die(str(e))


@main.command(context_settings={"ignore_unknown_options": True,
                                "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sysctl(args: tuple[str, ...]) -> None:
    """IPVS's sysctls, read and written as sysctl(8) does.

    \b
    net.ipv4.vs.expire_nodest_conn         1: a connection whose real was
                                           removed is forgotten at its next
                                           packet (0: its packets are dropped)
    net.ipv4.vs.expire_quiescent_template  1: a template whose real has weight
                                           0 is not used
    lvsxdp.template_extension              seconds a template whose client
                                           still has connections is extended
                                           by at expiry (the seed: 120)

    \b
    lvsxdp sysctl -w net.ipv4.vs.expire_nodest_conn=1
    lvsxdp sysctl net.ipv4.vs.expire_quiescent_template
    lvsxdp sysctl
    """
    from . import director  # noqa: PLC0415

    try:
        click.echo(director.sysctl_command(list(args)), nl=False)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    except RuntimeError_ as e:
        _die(str(e))


@main.group(invoke_without_command=True)
@click.option("--unit", is_flag=True, help="Print the systemd unit (lvsxdp.service).")
@click.option("--example", is_flag=True, help="Print an example /etc/default/lvsxdp.")
@click.option("--config", "defaults", metavar="FILE", default="/etc/default/lvsxdp",
              show_default=True, help="The settings file `service run` reads.")
@click.pass_context
def service(ctx, unit: bool, example: bool, defaults: str) -> None:
    """lvsxdp as a system service (systemd, or any service manager).

    `service run` brings the director up on IFACES, loads RULES at boot when
    AUTO=true (as Debian's ipvsadm package does), and restarts the agent if
    it dies. SIGHUP re-reads FILE without touching forwarding; SIGTERM
    detaches and keeps the tables, so a restart resumes every session.

    \b
    lvsxdp service --example > /etc/default/lvsxdp
    lvsxdp service --unit > /etc/systemd/system/lvsxdp.service
    systemctl daemon-reload && systemctl enable --now lvsxdp
    ipvsadm-save -n > /etc/ipvsadm.rules     # what AUTO=true loads at boot
    """
    from . import service as service_mod  # noqa: PLC0415

    ctx.obj = Path(defaults)
    if ctx.invoked_subcommand is not None:
        return
    if unit == example:
        _die("say --unit, --example, or `service run`", 2)
    if unit:
        click.echo(service_mod.unit(service_mod.installed_exe(), Path(defaults)), nl=False)
    else:
        click.echo(service_mod.EXAMPLE, nl=False)


@service.command("run")
@click.pass_obj
def service_run(defaults) -> None:
    """Run the director as a service, in the foreground (the unit's ExecStart)."""
    from . import service as service_mod  # noqa: PLC0415

    sys.exit(service_mod.run(defaults))


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--use-file", "conf", metavar="FILE", default=None,
              help="keepalived.conf to read (default /etc/keepalived/keepalived.conf).")
@click.option("-n", "--dont-fork", is_flag=True, help="Stay in the foreground.")
@click.option("-l", "--log-console", is_flag=True, help="Log to the console too.")
@click.option("-D", "--log-detail", is_flag=True, help="Detailed log messages.")
@click.option("-S", "--log-facility", type=click.IntRange(0, 7), default=None,
              help="Syslog facility LOG_LOCAL[0-7] (default LOG_DAEMON).")
@click.option("-g", "--log-file", default=None, metavar="FILE", help="Log to FILE too.")
@click.option("-G", "--no-syslog", is_flag=True, help="Do not log to syslog.")
@click.option("-t", "--config-test", is_flag=True,
              help="Check the configuration, print its problems to stderr, exit.")
@click.option("-d", "--dump-conf", is_flag=True,
              help="Print the configuration as the ipvsadm lines lvsxdp applies, then run.")
@click.option("-i", "--config-id", default=None, metavar="ID",
              help="Take '@ID' lines, skip '@^ID' ones (default: the host name).")
@click.option("-p", "--pid", "pidfile", default=None, metavar="FILE",
              help="Pid file (default /run/lvsxdp/<netns>.keepalived.pid).")
@click.option("-c", "--checkers_pid", "checkers_pid", default=None, metavar="FILE",
              help="The same as --pid: the checkers are the only process.")
@click.option("-I", "--dont-release-ipvs", is_flag=True,
              help="Leave the virtual servers in the table on stop.")
@click.option("-C", "--check", is_flag=True, help="Health checkers only (all lvsxdp runs).")
@click.option("-P", "--vrrp", is_flag=True, help="VRRP only: lvsxdp has no VRRP.")
@click.option("-R", "--dont-respawn", is_flag=True, help="Accepted: there is no child to "
                                                         "respawn.")
@click.option("-s", "--namespace", default=None, metavar="NAME",
              help="Run in network namespace NAME (as `lvsxdp -n NAME`).")
@click.option("-v", "--version", is_flag=True, help="Print the version and exit.")
def keepalived(conf, dont_fork, log_console, log_detail, log_facility, log_file, no_syslog,
               config_test, dump_conf, config_id, pidfile, checkers_pid, dont_release_ipvs,
               check, vrrp, dont_respawn, namespace, version) -> None:
    """keepalived's LVS part: virtual_server blocks and their health checkers.

    Reads keepalived.conf (virtual_server, virtual_server_group, real_server,
    TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK; vrrp_* and global_defs are
    ignored, and named once), sets up the director's services, runs the
    checkers, and removes a failing real (inhibit_on_failure: weight 0)
    until it passes again. SIGHUP re-reads the file (a bad file changes
    nothing), SIGTERM stops and removes the virtual servers (not with -I).

    \b
    lvsxdp keepalived -t -f /etc/keepalived/keepalived.conf
    lvsxdp keepalived -n -l -D
    lvsxdp -n lxl-dir keepalived -f ./keepalived.conf -n -l
    kill -HUP $(cat /run/lvsxdp/host.keepalived.pid)
    """
    from . import checkers  # noqa: PLC0415
    from . import keepalived as conf_mod  # noqa: PLC0415

    if version:
        click.echo("Keepalived v2.2 configuration, health checkers run by lvsxdp "
                   "(no VRRP, no IPVS: the table is lvsxdp's)")
        return
    if vrrp:
        _die("keepalived -P (VRRP only): lvsxdp has no VRRP")
    if namespace:
        from . import runtime  # noqa: PLC0415

        try:
            runtime.enter_netns(namespace)
        except RuntimeError_ as e:
            _die(str(e))
    path = conf or conf_mod.DEFAULT_CONF
    try:
        parsed = conf_mod.parse(path, config_id)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    if config_test:
        for w in parsed.warnings:
            click.echo(w, err=True)
        return
    if dump_conf:  # keepalived dumps, then runs
        click.echo(checkers.dump(parsed), nl=False)
    checkers.setup_logging(log_console, log_detail, log_facility, log_file, not no_syslog)
    pid = checkers.pid_file(pidfile or checkers_pid)
    running = checkers.running_pid(pid)
    if running:
        _die(f"keepalived is already running (pid {running}, {pid})")
    os.makedirs(os.path.dirname(pid) or ".", exist_ok=True)
    from . import runtime  # noqa: PLC0415

    runtime.see_host_pins()  # under `ip netns exec`, the director's maps are the host's
    try:
        sys.exit(checkers.serve(path, config_id, pid, dont_release_ipvs, dont_fork))
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    except RuntimeError_ as e:
        _die(str(e))


@main.command()
@click.option("--keep", is_flag=True,
              help="Leave the lab up for exploring (lvsxdp -n lxl-dir ...); "
                   "`lvsxdp lab --down` removes it.")
@click.option("--down", "teardown", is_flag=True, help="Remove a lab left up by --keep.")
def lab(keep: bool, teardown: bool) -> None:
    """The built-in lab: every example of the seed in network namespaces.

    Builds a client, a director and two real servers on one L2 segment
    (198.18.2.0/24), and walks through the seed's PCC, PPC, firewall-mark
    (http + https) and passive FTP examples: its ipvsadm and iptables lines
    verbatim, real traffic, the affinity tables, a check of each. Exits 0
    only if every check holds.

    \b
    lvsxdp lab
    lvsxdp lab --keep
    """
    from . import lab as lab_mod  # noqa: PLC0415

    sys.exit(lab_mod.main(keep=keep, teardown=teardown))


if __name__ == "__main__":
    main()
