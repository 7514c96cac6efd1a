"""The director's life: up (compile, load, attach, start the agent), down,
status, and configuration changes. Only this module and the agent need root
and netlink; ipvsadm changes go straight into the pinned maps."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time

from . import ipvsadm, plan, routes, runtime, shared
from .model import Config, ConfigError
from .runtime import Paths, RuntimeError_

XDP_FLAGS = {"auto": 0, "generic": 2, "native": 4}
# IFLA_XDP_ATTACHED, as a number or as pyroute2 names it
XDP_ATTACHED = {1: "native", 2: "generic", 3: "offload", "xdpdrv": "native",
                "xdpgeneric": "generic", "xdpoffload": "offload", "xdp": "native"}
DEFAULT_CONNS = 1 << 20
DEFAULT_TEMPLATES = 1 << 18
AGENT_START_S = 60


def _ipr():
    from pyroute2 import IPRoute  # noqa: PLC0415 - netlink only where needed

    return IPRoute()


def link_info(ipr, iface: str) -> tuple[int, bytes, dict]:
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    try:
        links = ipr.link("get", ifname=iface) if iface else []
    except NetlinkError:
        links = []
    if not links:
        raise RuntimeError_(f"no such interface: {iface}")
    link = links[0]
    mac = bytes.fromhex(link.get_attr("IFLA_ADDRESS").replace(":", ""))
    xdp = link.get_attr("IFLA_XDP")
    attached = {}
    if xdp is not None:
        mode = xdp.get_attr("IFLA_XDP_ATTACHED")
        if mode:
            attached = {"mode": XDP_ATTACHED.get(mode, str(mode)),
                        "prog_id": xdp.get_attr("IFLA_XDP_PROG_ID")}
    return link["index"], mac, attached


def _attach(ipr, ifindex: int, fd: int, mode: str) -> None:
    ipr.link("set", index=ifindex,
             xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", XDP_FLAGS[mode])]})


def _detach(ipr, ifindex: int, mode: str) -> None:
    flags = XDP_FLAGS.get(mode, 0)
    ipr.link("set", index=ifindex,
             xdp={"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]})


def _remove_pins(p: Paths) -> None:
    if p.pins.exists():
        shutil.rmtree(p.pins, ignore_errors=True)


def agent_alive(info: dict | None) -> bool:
    if not info or not info.get("agent_pid"):
        return False
    try:
        with open(f"/proc/{info['agent_pid']}/cmdline", "rb") as f:
            return b"lvsxdp.agent" in f.read()
    except OSError:
        return False


def _real_addrs(config: Config) -> set:
    return {r.addr for s in config.services for r in s.reals}


def kernel_mark_rules() -> tuple[list, list[dict]]:
    """The kernel's own mangle PREROUTING rules in this namespace: the ones
    lvsxdp can follow, and the ones it cannot ({"rule", "why"})."""
    from . import netfilter  # noqa: PLC0415

    return netfilter.kernel_rules()


def apply_marks(maps: runtime.Maps, config: Config, kernel_rules: list) -> None:
    """Compiles the kernel's rules followed by lvsxdp's own for the NIC the
    program runs on, and writes them into the maps."""
    import socket  # noqa: PLC0415

    from . import iptables  # noqa: PLC0415

    ifindex = maps.read_config().ifindex
    try:
        iface = socket.if_indextoname(ifindex) if ifindex else ""
    except OSError:
        iface = ""
    tables = iptables.compile_rules(list(kernel_rules) + list(config.mark_rules), iface)
    runtime.apply_marks(maps, tables)


def _names(ifaces) -> list[str]:
    names = [ifaces] if isinstance(ifaces, str) else list(ifaces)
    if not names:
        raise RuntimeError_("which interfaces? (`lvsxdp up eth0 [eth1 ...]`)")
    if len(set(names)) != len(names):
        raise RuntimeError_(f"an interface is named twice: {' '.join(names)}")
    if len(names) > shared.MAX_IFACES:
        raise RuntimeError_(f"at most {shared.MAX_IFACES} interfaces")
    return names


def served_names(info: dict | None) -> list[str]:
    """The interfaces a runtime record says the director serves."""
    info = info or {}
    return info.get("ifaces") or ([info["iface"]] if info.get("iface") else [])


def up(ifaces, mode: str = "auto", conns: int | None = None,
       templates: int | None = None, agent: bool = True) -> str:
    """Starts the director on ifaces (the first is the VIP side, the others
    where reals may be), or reloads the running one in place; resumes the
    tables a plain `down` kept. agent=False: the caller (the service's
    supervisor) starts the agent itself."""
    names = _names(ifaces)
    info, how = _bring_up(names, mode, conns, templates, agent)
    iface = " ".join(names)
    verb = "reloaded" if how["running"] else "up"
    note = ""
    if how["resumed"]:
        held, tpls = _live_counts(runtime.paths())
        note = f"; resumed {held} connections, {tpls} templates"
    if how["dropped"]:
        note += f"; new layout, emptied: {', '.join(how['dropped'])}"
    return (f"lvsxdp {verb} on {iface} ({info['mode']} XDP, prog {info['prog_id']}, "
            f"scheduler walks by {how['loops']}, agent pid {info['agent_pid']}{note})")


def restart(ifaces, mode: str = "auto", agent: bool = True) -> str:
    """The operator's restart: the running director's reload, which compiles
    while the old program forwards and swaps the new one in atomically, so
    every connection and template is kept. Refused when none runs here."""
    p = runtime.paths()
    names = _names(ifaces)
    before = runtime.read_runtime(p)
    if before is None or not runtime.owns_pins(p):
        raise RuntimeError_(f"no director is running in network namespace {p.key} "
                            f"(`lvsxdp up {' '.join(names)}` starts one)")
    if before.get("iface") != names[0]:
        raise RuntimeError_(f"the director here is up on {before.get('iface')}, not {names[0]}")
    if len(names) == 1:
        names = served_names(before)  # the interfaces it serves now
    iface = " ".join(names)
    info, how = _bring_up(names, mode, None, None, agent)
    swap = "swapped in place"
    if before.get("mode") != info["mode"]:
        swap = f"re-attached from {before.get('mode')} XDP: a mode change cannot swap in place"
    note = f"; new layout, emptied: {', '.join(how['dropped'])}" if how["dropped"] else ""
    held, tpls = _live_counts(p)
    return (f"lvsxdp restarted on {iface} ({info['mode']} XDP, prog {before.get('prog_id')} -> "
            f"{info['prog_id']} {swap}, agent pid {before.get('agent_pid')} -> "
            f"{info['agent_pid']}, kept {held} connections, {tpls} templates{note})")


def _bring_up(names: list[str], mode: str, conns: int | None,
              templates: int | None, agent: bool = True) -> tuple[dict, dict]:
    """up's work: compile while whatever is attached forwards, refill the
    pinned maps, swap the program in, start a new agent. Returns the runtime
    record and how it went."""
    from . import loader  # noqa: PLC0415 - bcc: only `up` compiles

    if mode not in XDP_FLAGS:
        raise RuntimeError_(f"unknown XDP mode {mode!r} (native, generic, auto)")
    try:
        loader.check_kernel()
    except loader.LoadError as e:
        raise RuntimeError_(str(e)) from None
    p = runtime.paths()
    runtime.load_config(p)  # a damaged saved configuration stops `up` before it pins anything
    runtime.ensure_bpffs()
    iface = names[0]
    ipr = _ipr()
    try:
        info = runtime.read_runtime(p)
        links = {}
        for name in names:
            links[name] = link_info(ipr, name)
            held = links[name][2]
            if held and held.get("prog_id") != (info or {}).get("prog_id"):
                raise RuntimeError_(f"{name} already has an XDP program (id {held['prog_id']}) "
                                    "that is not this director's; remove it first")
        ifindex, mac, attached = links[iface]
        ifaces = routes.served(ipr, names)
        if not runtime.owns_pins(p):
            _remove_pins(p)  # left by a namespace that is gone, or never used
        else:
            if info and info.get("iface") not in (None, iface):
                raise RuntimeError_(f"a director is already up on {info['iface']} in this "
                                    "network namespace (lvsxdp down it first)")
            whose = "the running director has" if info else "the tables `lvsxdp down` kept have"
            sizes = {}
            for name, want in (("conns", conns), ("templates", templates)):
                m = runtime.pinned(p, "conns4" if name == "conns" else name)
                have = m.max_entries if m else want
                if m:
                    m.close()
                if want is not None and want != have:
                    raise RuntimeError_(f"{whose} --{name} {have}; `lvsxdp down {iface} "
                                        "--flush` first to resize (that drops every "
                                        "connection and template)")
                sizes[name] = have
            conns, templates = sizes["conns"], sizes["templates"]
        conns = conns or DEFAULT_CONNS
        templates = templates or DEFAULT_TEMPLATES
        dropped = []
        if (p.pins / "config").exists():
            # Maps pinned by an older lvsxdp with another layout are
            # re-created; those holding connections and templates lose them.
            for name in runtime.stale_layouts(p):
                (p.pins / name).unlink()
                if name not in runtime.REFILLED_MAPS:
                    dropped.append(name)
        fresh = not (p.pins / "config").exists()
        # a filter made next to kept tables knows none of their keys
        # (bpf/filter.h): all "maybe" until the agent rebuilt it (the agent
        # is its one rebuilder: two could clear each other's generation)
        new_filter = not fresh and not (p.pins / "filter").exists()

        try:
            loops = loader.loops_for_kernel()
        except loader.LoadError as e:
            raise RuntimeError_(str(e)) from None
        b, fn = loader.compile_program(str(p.pins), conns, templates, loops=loops)
        with runtime.locked(p), runtime.Maps(p.pins) as maps:
            cfg = maps.read_config()
            if fresh or cfg.netns_cookie != runtime.netns_cookie():
                cfg = shared.Config()
                cfg.netns_cookie = runtime.netns_cookie()
                cfg.started = runtime.monotonic_ns()
            cfg.ifindex = ifindex
            cfg.mac[:] = list(mac)
            maps.config.update(ctypes.c_uint32(0), cfg)
            if new_filter:
                maps.filter_bytes.all_maybe()
            elif fresh:  # empty tables: the agent's rebuilds keep it so
                maps.filter_bytes.sparse = True
            config = runtime.load_config(p)
            if config.trash:
                # the trash lives as long as the tables that name its reals
                from . import tables  # noqa: PLC0415
                config.purge_trash(None if fresh else
                                   tables.named_refs(maps, runtime.monotonic_ns()))
                runtime.save_config(p, config)
            for i in range(shared.MAX_IFACES):
                port = ifaces[i].ifindex if i < len(ifaces) else 0
                with contextlib.suppress(OSError):  # an empty slot cannot be deleted twice
                    if port:
                        maps.tx_ports.update(ctypes.c_uint32(i), ctypes.c_uint32(port))
                    else:
                        maps.tx_ports.delete(ctypes.c_uint32(i))
            # NAT replies come in on any served interface, and leave by
            # the one the kernel routes the client to
            routes.write_ifaces(maps, ifaces)
            hops = routes.resolve(ipr, _real_addrs(config), ifaces)
            runtime.apply_plan(maps, plan.build(config, hops, ifindex, mac))
            apply_marks(maps, config, kernel_mark_rules()[0])

        # The VIP side first, then every interface a real may sit behind:
        # a redirect's target needs an XDP program of its own (veth, and
        # drivers that set up their XDP send queues only then).
        for name in names:
            index, _, held = links[name]
            if held and held["mode"] != mode and mode != "auto":
                _detach(ipr, index, held["mode"])
            try:
                _attach(ipr, index, fn.fd, mode if mode != "auto" else
                        held.get("mode", attached.get("mode", "auto")))
            except Exception as e:
                raise RuntimeError_(f"cannot attach XDP to {name} in {mode} mode: {e}") from None
        # interfaces the director served before and serves no more
        for name in served_names(info):
            if name in names:
                continue
            with contextlib.suppress(RuntimeError_):
                index, _, held = link_info(ipr, name)
                if held and held.get("prog_id") == info.get("prog_id"):
                    _detach(ipr, index, held["mode"])
        _, _, attached = link_info(ipr, iface)
        b.cleanup()

        running = info is not None
        info = info or {}
        info.update(iface=iface, ifaces=names, ifindex=ifindex, mode=attached.get("mode"),
                    prog_id=attached.get("prog_id"), conns=conns, templates=templates,
                    netns=p.key, loops=loops)
        # A new agent with the code and the maps of this `up`: one left from
        # before would go on with an older lvsxdp and maps just replaced.
        _stop_agent(info)
        info["agent_pid"] = _start_agent(p) if agent else None
        runtime.write_runtime(p, info)
        return info, {"running": running, "resumed": not running and not fresh,
                      "dropped": dropped,
                      "loops": "may_goto" if loops == "may_goto" else "bounded chunks"}
    finally:
        ipr.close()


def _live_counts(p: Paths) -> tuple[int, int]:
    """Connections and templates in the pinned tables that have not expired."""
    from . import tables  # noqa: PLC0415 - numpy only where needed

    with runtime.Maps(p.pins) as maps:
        return tables.live_counts(maps, runtime.monotonic_ns())


def _stop_agent(info: dict | None) -> None:
    if agent_alive(info):
        os.kill(info["agent_pid"], signal.SIGTERM)
        for _ in range(250):
            if not agent_alive(info):
                return
            time.sleep(0.02)


def _start_agent(p: Paths) -> int:
    return start_agent(p).pid


def start_agent(p: Paths, logfile: bool = True) -> subprocess.Popen:
    """Starts the agent and waits until it is ready. Its output goes to
    the log file in /run, or (logfile=False: the service) where ours goes,
    the journal."""
    runtime.RUN_DIR.mkdir(parents=True, exist_ok=True)
    ready = runtime.RUN_DIR / f"{p.key}.ready"
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    log = open(p.log, "a") if logfile else None
    env = dict(os.environ, LVSXDP_NETNS=p.key)
    proc = subprocess.Popen([sys.executable, "-m", "lvsxdp.agent"], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, env=env, start_new_session=logfile,
                            close_fds=True)
    if log is not None:
        log.close()
    # ready in well under a second here; an emulated VM under load (the
    # kernel matrix's) has taken more than 10 s to import numpy and pyroute2
    deadline = time.monotonic() + AGENT_START_S
    while time.monotonic() < deadline:
        if ready.exists():
            return proc
        if proc.poll() is not None:
            raise RuntimeError_(f"the agent exited at start (see {p.log})")
        time.sleep(0.05)
    raise RuntimeError_(f"the agent did not start within {AGENT_START_S} s (see {p.log})")


def down(iface: str, flush: bool = False) -> str:
    """Detaches the program and stops the agent. The connection and template
    tables stay pinned (IPVS keeps its tables across a control-plane restart)
    for the next `up` to resume, unless flush: then every pin goes."""
    p = runtime.paths()
    info = runtime.read_runtime(p)
    owned = p.pins.exists() and runtime.owns_pins(p)
    if not info:
        if flush and p.pins.exists():
            _remove_pins(p)
            return f"lvsxdp down on {iface} (was not running; kept tables flushed)"
        if p.pins.exists() and not owned:
            _remove_pins(p)  # left by a namespace that is gone
        if owned:
            raise RuntimeError_(f"no director is running in network namespace {p.key}; "
                                f"its tables are kept (`lvsxdp down {iface} --flush` drops them)")
        raise RuntimeError_(f"no director is running in network namespace {p.key}")
    if info.get("iface") and info["iface"] != iface:
        raise RuntimeError_(f"the director here is up on {info['iface']}, not {iface}")
    ipr = _ipr()
    try:
        for name in served_names(info) or [iface]:
            try:
                ifindex, _, attached = link_info(ipr, name)
            except RuntimeError_:
                continue  # gone with its program
            # detach only our own program, never another tool's
            if attached and attached.get("prog_id") == info.get("prog_id"):
                _detach(ipr, ifindex, attached["mode"])
    finally:
        ipr.close()
    _stop_agent(info)
    # the log stays (in /run) for reading after the fact; without the
    # runtime record nothing reads kept tables as a running director
    for leftover in (p.runtime, p.lock, p.agent, runtime.RUN_DIR / f"{p.key}.ready"):
        leftover.unlink(missing_ok=True)
    if flush or not owned:
        _remove_pins(p)
        return f"lvsxdp down on {iface} (tables flushed)"
    held, tpls = _live_counts(p)
    return (f"lvsxdp down on {iface} (tables kept: {held} connections, {tpls} templates; "
            f"`lvsxdp up {iface}` resumes them, `down --flush` drops them)")


def status() -> dict:
    """The running director's state, and every problem found: a served
    interface without the director's program, the agent dead, a real the
    data plane cannot reach, a kernel mangle rule lvsxdp does not follow, a
    damaged saved configuration."""
    p = runtime.paths()
    maps = runtime.running_maps(p)
    if maps is None:
        kept = (p.pins / "config").exists() and runtime.owns_pins(p)
        raise RuntimeError_(f"no director is running in network namespace {p.key}" + (
            "; `lvsxdp down` kept its tables (`lvsxdp up IFACE` resumes them)" if kept else ""))
    with maps:
        info = runtime.read_runtime(p) or {}
        problems = []
        try:
            config = runtime.load_config(p)
        except RuntimeError_ as e:
            problems.append(str(e))
            config = runtime.load_config_readonly(p, warn=False)
        from . import snapshot  # noqa: PLC0415

        snap = snapshot.read(maps, config)
        reasons = {}
        for i, name in enumerate(shared.REASONS):
            reasons[name] = sum(v.value for v in maps.reasons.lookup(ctypes.c_uint32(i)))
        problems += _attach_problems(info)
        alive = agent_alive(info)
        if not alive:
            problems.append(f"the agent (pid {info.get('agent_pid')}) is not running: nothing "
                            "follows the reals' routes and MACs or tidies the tables "
                            f"(`lvsxdp restart {info.get('iface') or 'IFACE'}` starts one)")
        unreachable = unreachable_reals(maps, config)
        problems += [f"real {addr} UNREACHABLE: {why}" for addr, why in unreachable.items()]
        _, skipped = kernel_mark_rules()
        problems += [f"kernel mangle rule not followed: {s['rule']} ({s['why']}): packets it "
                     "marks get no firewall-mark service" for s in skipped]
        checks = _keepalived_state(p)
        if checks and not checks["running"]:
            problems.append(f"lvsxdp keepalived (pid {checks.get('pid')}, {checks.get('conf')}) "
                            "is not running: no health check changes the table any more")
        return {
            "netns": p.key,
            "iface": info.get("iface"),
            "ifaces": served_names(info),
            "reals_unreachable": unreachable,
            "kernel_rules_skipped": skipped,
            "mode": info.get("mode"),
            "prog_id": info.get("prog_id"),
            "loops": info.get("loops"),
            "agent_pid": info.get("agent_pid"),
            "agent_alive": alive,
            "supervisor_pid": info.get("supervisor_pid"),  # `lvsxdp service run`
            "services": len(config.services),
            "reals": sum(len(s.reals) for s in config.services),
            "connections": sum(1 for e in snap.entries if not e.template),
            "templates": sum(1 for e in snap.entries if e.template),
            "conn_table_size": maps.conns.max_entries,
            "template_table_size": maps.templates.max_entries,
            "not_forwarded": reasons,
            "keepalived": checks,
            "problems": problems,
        }


def _keepalived_state(p) -> dict | None:
    """What `lvsxdp keepalived` last wrote (its pid, each real's verdict),
    and whether it still runs; None when none was started here."""
    from . import checkers  # noqa: PLC0415

    state = runtime.read_json(p.keepalived)
    if not state:
        return None
    state["running"] = checkers.running(state)
    return state


def _attach_problems(info: dict) -> list[str]:
    """Served interfaces that do not run the director's program (detached
    by hand, or by another tool)."""
    out = []
    ipr = _ipr()
    try:
        for name in served_names(info):
            try:
                _, _, attached = link_info(ipr, name)
            except RuntimeError_:
                out.append(f"{name} is gone: nothing forwards there")
                continue
            if not attached:
                out.append(f"no XDP program attached to {name}: nothing forwards there "
                           f"(`lvsxdp restart {info.get('iface')}` attaches it)")
            elif attached.get("prog_id") != info.get("prog_id"):
                out.append(f"{name} runs XDP program {attached.get('prog_id')}, not the "
                           f"director's ({info.get('prog_id')})")
    finally:
        ipr.close()
    return out


# -- ipvsadm -------------------------------------------------------------------

def unreachable_reals(maps: runtime.Maps, config: Config) -> dict:
    """Every real the data plane cannot send to, and why: no route, a route
    through an interface lvsxdp does not serve, or no MAC yet."""
    addrs = _real_addrs(config)
    if not addrs:
        return {}
    ipr = _ipr()
    try:
        ifaces = routes.served(ipr, routes.served_ports(maps))
        hops = routes.resolve(ipr, addrs, ifaces)
    except Exception as e:  # an interface went away: say so for every real
        return {str(a): f"cannot look up routes ({e})" for a in sorted(addrs, key=_addr_order)}
    finally:
        ipr.close()
    known = runtime.known_macs(maps)
    tunnelled = {r.addr for s in config.services for r in s.reals if r.fwd == "tunnel"}
    out = {}
    for addr in sorted(addrs, key=_addr_order):
        hop = hops.get(addr)
        if hop is None:
            continue
        if hop.unreachable:
            out[str(addr)] = hop.unreachable
        elif not hop.mac and addr not in known:
            name = next((i.name for i in ifaces if i.ifindex == hop.ifindex), hop.ifindex)
            out[str(addr)] = f"no MAC on {name} yet (the neighbour entry is not resolved)"
        elif not hop.saddr and addr in tunnelled:
            out[str(addr)] = "no source address on the route to it for the tunnel's outer " \
                             "header (give the egress interface an address)"
    return out


def ipvsadm_command(argv: list[str], stdin=None) -> tuple[str, list[str]]:
    """Runs one ipvsadm command line against this namespace's director (or
    only its saved configuration when none runs). Returns what to print and
    the errors of the lines `-R` skipped; stdin is read by `-R` only."""
    cmd = ipvsadm.parse(argv)
    if cmd.op in ("help", "version"):
        return ipvsadm.HELP if cmd.op == "help" else ipvsadm.VERSION + "\n", []
    return _ipvsadm(cmd, stdin)


def _ipvsadm(cmd: ipvsadm.Command, stdin) -> tuple[str, list[str]]:
    p = runtime.paths()
    errors: list[str] = []
    if cmd.op in ("list", "save"):
        if cmd.op == "save":
            # what -S prints is saved as the rules (ipvsadm-save > rules):
            # never a part of a damaged configuration
            return ipvsadm.format_save(runtime.load_config(p), cmd), errors
        config = runtime.load_config_readonly(p)
        maps = runtime.running_maps(p)
        if maps is None:
            snap = ipvsadm.Snapshot()
        else:
            from . import snapshot  # noqa: PLC0415

            with maps:
                snap = snapshot.read(maps, config)
        return ipvsadm.format_list(config, cmd, snap), errors
    if cmd.op == "zero":
        with runtime.locked(p):
            services = ipvsadm.zero_targets(runtime.load_config(p), cmd)
            maps = runtime.running_maps(p)
            if maps is not None:
                from . import snapshot  # noqa: PLC0415

                with maps:
                    snapshot.zero(maps, services)
        return "", errors
    if cmd.op in ("start-daemon", "stop-daemon"):
        raise ConfigError(f"lvsxdp has no connection sync daemon ({cmd.op})")
    with runtime.locked(p):
        config = runtime.load_config(p)
        if cmd.op == "restore":
            new, errors = ipvsadm.restore(config, stdin.read() if stdin else "")
        else:
            new = ipvsadm.apply(config, cmd)
        maps = runtime.running_maps(p)
        if maps is not None:
            with maps:
                if new.trash:
                    from . import tables  # noqa: PLC0415 - numpy: only with a trash
                    new.purge_trash(tables.named_refs(maps, runtime.monotonic_ns()))
                macs = _macs_for(maps, new)
                runtime.apply_plan(maps, plan.build(new, macs))
        runtime.save_config(p, new)
    return "", errors


def edit(change) -> bool:
    """Applies change(config) -> new Config in one step under the director's
    lock: into the running maps (when a director runs here) and the saved
    configuration, as one ipvsadm command would. The keepalived checkers
    change services and reals this way. Returns whether anything changed."""
    p = runtime.paths()
    with runtime.locked(p):
        config = runtime.load_config(p)
        new = change(config)
        if new is None or new.to_json() == config.to_json():
            return False
        maps = runtime.running_maps(p)
        if maps is not None:
            with maps:
                if new.trash:
                    from . import tables  # noqa: PLC0415 - numpy: only with a trash
                    new.purge_trash(tables.named_refs(maps, runtime.monotonic_ns()))
                runtime.apply_plan(maps, plan.build(new, _macs_for(maps, new)))
        runtime.save_config(p, new)
    return True


def _macs_for(maps: runtime.Maps, config: Config) -> dict:
    """How to reach every real of config (plan.Hop by address) that the
    maps or the kernel know: a real added works at once, agent or not. The
    maps first; the kernel's routes and neighbours only for what is still
    missing."""
    want = _real_addrs(config)
    hops = runtime.known_macs(maps)
    missing = {a for a in want if a not in hops}
    ports = routes.served_ports(maps)
    if missing and ports:
        ipr = _ipr()
        try:
            hops.update(routes.resolve(ipr, missing, routes.served(ipr, ports)))
        except Exception:  # an interface is gone: the agent says so
            pass
        finally:
            ipr.close()
    return hops


def iptables_command(argv: list[str]) -> str:
    """Runs one `iptables -t mangle ...` line against lvsxdp's own mark rules
    (saved with the configuration; the running director follows at once)."""
    from . import iptables  # noqa: PLC0415

    if argv and argv[0] in ("iptables", "iptables-nft", "iptables-legacy"):
        argv = argv[1:]
    cmd = iptables.parse(argv)
    p = runtime.paths()
    if cmd.op in ("list", "save"):
        rules = runtime.load_config(p).mark_rules
        if cmd.op == "save":
            return iptables.format_save(rules)
        return iptables.format_list(rules, cmd)
    with runtime.locked(p):
        config = runtime.load_config(p)
        new = config.copy()
        new.mark_rules = iptables.apply(config.mark_rules, cmd)
        maps = runtime.running_maps(p)
        if maps is not None:
            with maps:
                apply_marks(maps, new, kernel_mark_rules()[0])
        runtime.save_config(p, new)
    return ""


# IPVS's sysctls an operator turns on (net.ipv4.vs.*), and lvsxdp's own
# template extension step, as `sysctl` names and prints them.
SYSCTLS = {
    "net.ipv4.vs.expire_nodest_conn": ("expire_nodest_conn", (0, 1)),
    "net.ipv4.vs.expire_quiescent_template": ("expire_quiescent_template", (0, 1)),
    "lvsxdp.template_extension": ("extend", (1, 86400)),
}


def sysctl_command(args: list[str]) -> str:
    """`lvsxdp sysctl [-w] NAME[=VALUE] ...`, as sysctl(8) reads and writes
    them; a write goes into the saved configuration and the running maps."""
    words = [a for a in args if a != "-w"]
    if not words:
        words = list(SYSCTLS)
    p = runtime.paths()
    out = []
    with runtime.locked(p):
        config = runtime.load_config(p)
        new = config.copy()
        for word in words:
            name, eq, value = word.partition("=")
            if name not in SYSCTLS:
                raise ConfigError(f"sysctl: cannot stat /proc/sys/{name.replace('.', '/')}: "
                                  f"No such file or directory (lvsxdp knows: "
                                  f"{', '.join(SYSCTLS)})")
            field, (lo, hi) = SYSCTLS[name]
            if eq:
                if not value.strip().isdigit() or not lo <= int(value) <= hi:
                    raise ConfigError(f"sysctl: setting key \"{name}\": Invalid argument "
                                      f"({lo}..{hi})")
                current = getattr(new.settings, field)
                setattr(new.settings, field, type(current)(int(value)))
            out.append(f"{name} = {int(getattr(new.settings, field))}")
        if new.settings != config.settings:
            maps = runtime.running_maps(p)
            if maps is not None:
                with maps:
                    macs = runtime.known_macs(maps)
                    runtime.apply_plan(maps, plan.build(new, macs))
            runtime.save_config(p, new)
    return "".join(line + "\n" for line in out)


def _addr_order(addr) -> tuple:
    """IPv4 before IPv6 (addresses of two families do not compare)."""
    return addr.version, addr
