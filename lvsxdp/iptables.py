"""`iptables -t mangle ... -j MARK` lines -> mark rules, and mark rules ->
lookup tables the data plane classifies with at line rate. Pure.

XDP runs before netfilter, so lvsxdp classifies firewall marks itself. The
rules keep iptables' meaning: every matching rule is applied in order (MARK
does not terminate; ACCEPT and RETURN do), so the mark a packet ends with is
the fold of the matching rules' --set-xmark over 0.

Compiling: each dimension a rule can test (destination, source, protocol and
destination port; the interface is known when compiling, since the program
runs on one NIC) is cut into classes within which every rule decides alike:
address prefixes go into LPM tries (the longest stored prefix of an address
determines which rules' prefixes contain it), port ranges into one array per
protocol. The mark of each combination of classes that some rule matches is
computed here, once; a packet costs one lookup per dimension plus one hash
lookup, however many rules there are.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from .model import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "all": 0}
PROTO_NAMES = {v: k for k, v in PROTO_NUMBERS.items()}
CHAIN = "PREROUTING"
TERMINAL = ("ACCEPT", "RETURN")


@dataclass
class MarkRule:
    """One rule of mangle PREROUTING."""

    dst: Network | None = None
    dst_neg: bool = False
    src: Network | None = None
    src_neg: bool = False
    iface: str | None = None
    iface_neg: bool = False
    proto: str | None = None  # tcp | udp | icmp | None (all)
    proto_neg: bool = False
    ports: list[tuple[int, int]] = field(default_factory=list)  # destination port ranges
    ports_neg: bool = False
    multiport: bool = False
    target: str = "MARK"  # MARK | ACCEPT | RETURN
    xmark: tuple[int, int] = (0, 0xFFFFFFFF)  # --set-xmark value/mask
    comment: str | None = None

    def apply_mark(self, mark: int) -> int:
        value, mask = self.xmark
        return ((mark & ~mask) ^ value) & 0xFFFFFFFF

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["dst"] = str(self.dst) if self.dst else None
        d["src"] = str(self.src) if self.src else None
        d["ports"] = [list(p) for p in self.ports]
        d["xmark"] = list(self.xmark)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MarkRule:
        d = dict(d)
        d["dst"] = ipaddress.ip_network(d["dst"]) if d.get("dst") else None
        d["src"] = ipaddress.ip_network(d["src"]) if d.get("src") else None
        d["ports"] = [tuple(p) for p in d.get("ports", [])]
        d["xmark"] = tuple(d.get("xmark", (0, 0xFFFFFFFF)))
        return cls(**d)


@dataclass
class Command:
    op: str  # append | insert | delete | flush | list | save
    rules: list[MarkRule] = field(default_factory=list)  # one per -s/-d combination
    number: int | None = None
    numeric: bool = False
    verbose: bool = False
    line_numbers: bool = False


def _fail(msg: str) -> ConfigError:
    return ConfigError(msg)


def _network(text: str, what: str) -> list[Network]:
    """iptables addresses are IPv4 (ip6tables is another table set)."""
    out = []
    for part in text.split(","):
        try:
            out.append(ipaddress.IPv4Network(part, strict=False))
        except ValueError:
            raise _fail(f"host/network `{part}' not found") from None
    return out


def _port(text: str) -> int:
    if not re.fullmatch(r"\d+", text) or not 0 <= int(text) <= 65535:
        raise _fail(f"invalid port/service `{text}' specified")
    return int(text)


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    a = _port(lo) if lo else 0
    b = _port(hi) if hi else (65535 if sep else a)
    if a > b:
        raise _fail(f"invalid portrange `{text}' specified")
    return a, b


def _mark_value(text: str) -> tuple[int, int | None]:
    value, _, mask = text.partition("/")
    try:
        v = int(value, 0)
        m = int(mask, 0) if mask else None
    except ValueError:
        raise _fail(f"Bad MARK value \"{text}\"") from None
    if not 0 <= v <= 0xFFFFFFFF or (m is not None and not 0 <= m <= 0xFFFFFFFF):
        raise _fail(f"Bad MARK value \"{text}\"")
    return v, m


def parse(argv: list[str]) -> Command:
    """Parses one iptables command line (without the word iptables)."""
    toks = list(argv)
    table = "filter"
    op = None
    chain = None
    number = None
    rule = MarkRule()
    dsts: list[Network] | None = None
    srcs: list[Network] | None = None
    matches: set[str] = set()
    target = None
    cmd = Command(op="")
    neg = False
    i = 0

    def take(opt: str) -> str:
        nonlocal i
        if i >= len(toks):
            raise _fail(f"option \"{opt}\" requires an argument")
        i += 1
        return toks[i - 1]

    def set_op(name: str) -> None:
        nonlocal op
        if op is not None:
            raise _fail("Cannot use more than one command at a time")
        op = name

    while i < len(toks):
        tok = toks[i]
        i += 1
        if tok == "!":
            if neg:
                raise _fail("multiple `!' flags not allowed")
            neg = True
            continue
        was_neg, neg = neg, False
        if tok in ("-t", "--table"):
            table = take(tok)
        elif tok in ("-A", "--append", "-I", "--insert", "-D", "--delete"):
            set_op({"-A": "append", "--append": "append", "-I": "insert", "--insert": "insert",
                    "-D": "delete", "--delete": "delete"}[tok])
            chain = take(tok)
            if op in ("insert", "delete") and i < len(toks) and re.fullmatch(r"\d+", toks[i]):
                number = int(toks[i])
                i += 1
                if number < 1:
                    raise _fail("Invalid rule number")
        elif tok in ("-F", "--flush", "-L", "--list", "-S", "--list-rules"):
            set_op({"-F": "flush", "--flush": "flush", "-L": "list", "--list": "list",
                    "-S": "save", "--list-rules": "save"}[tok])
            if i < len(toks) and not toks[i].startswith("-"):
                chain = toks[i]
                i += 1
        elif tok in ("-n", "--numeric"):
            cmd.numeric = True
        elif tok in ("-v", "--verbose"):
            cmd.verbose = True
        elif tok == "--line-numbers":
            cmd.line_numbers = True
        elif tok in ("-d", "--destination", "--dst"):
            dsts = _network(take(tok), "destination")
            rule.dst_neg = was_neg
        elif tok in ("-s", "--source", "--src"):
            srcs = _network(take(tok), "source")
            rule.src_neg = was_neg
        elif tok in ("-i", "--in-interface"):
            rule.iface = take(tok)
            rule.iface_neg = was_neg
        elif tok in ("-o", "--out-interface"):
            raise _fail("Can't use -o with PREROUTING")
        elif tok in ("-p", "--protocol"):
            proto = take(tok).lower()
            if proto not in PROTO_NUMBERS:
                raise _fail(f"unknown protocol \"{proto}\" specified (lvsxdp: tcp, udp, icmp, all)")
            rule.proto = None if proto == "all" else proto
            rule.proto_neg = was_neg
        elif tok in ("-m", "--match"):
            name = take(tok)
            if name not in ("tcp", "udp", "multiport", "comment"):
                raise _fail(f"match \"{name}\" is not supported by lvsxdp "
                            "(supported: tcp, udp, multiport, comment)")
            matches.add(name)
        elif tok in ("--dport", "--destination-port"):
            if "multiport" in matches:
                rule.ports = [_port_range(p) for p in take(tok).split(",")]
                rule.multiport = True
            else:
                if rule.proto not in ("tcp", "udp") or rule.proto_neg:
                    raise _fail("--dport needs -p tcp or -p udp")
                rule.ports = [_port_range(take(tok))]
            rule.ports_neg = was_neg
        elif tok in ("--dports", "--destination-ports"):
            if "multiport" not in matches:
                raise _fail(f"unknown option \"{tok}\" (needs -m multiport)")
            rule.ports = [_port_range(p) for p in take(tok).split(",")]
            rule.multiport = True
            rule.ports_neg = was_neg
        elif tok in ("--sport", "--source-port", "--sports", "--source-ports", "--ports"):
            raise _fail(f"option \"{tok}\" is not supported by lvsxdp (destination ports only)")
        elif tok == "--comment":
            if "comment" not in matches:
                raise _fail("unknown option \"--comment\" (needs -m comment)")
            rule.comment = take(tok)
        elif tok in ("-j", "--jump"):
            target = take(tok)
            if target not in ("MARK",) + TERMINAL:
                raise _fail(f"target \"{target}\" is not supported by lvsxdp "
                            "(supported: MARK, ACCEPT, RETURN)")
            rule.target = target
        elif tok in ("--set-mark", "--set-xmark", "--and-mark", "--or-mark", "--xor-mark"):
            if target != "MARK":
                raise _fail(f"unknown option \"{tok}\" (needs -j MARK)")
            v, m = _mark_value(take(tok))
            if tok == "--set-xmark":
                rule.xmark = (v, 0xFFFFFFFF if m is None else m)
            elif tok == "--set-mark":
                rule.xmark = (v, v | (0xFFFFFFFF if m is None else m))
            elif tok == "--and-mark":
                rule.xmark = (0, (~v) & 0xFFFFFFFF)
            elif tok == "--or-mark":
                rule.xmark = (v, v)
            else:
                rule.xmark = (v, 0)
        else:
            raise _fail(f"unknown option \"{tok}\" (not supported by lvsxdp)")
        if was_neg and tok not in ("-d", "--destination", "--dst", "-s", "--source", "--src",
                                   "-i", "--in-interface", "-p", "--protocol", "--dport",
                                   "--destination-port", "--dports", "--destination-ports"):
            raise _fail(f"cannot negate {tok}")

    if op is None:
        raise _fail("no command specified")
    if table != "mangle":
        raise _fail(f"table `{table}' is not supported by lvsxdp (only -t mangle)")
    if chain is not None and chain != CHAIN:
        raise _fail(f"chain `{chain}' is not supported by lvsxdp (only {CHAIN})")
    if op in ("append", "insert") or (op == "delete" and number is None):
        if target is None:
            raise _fail("lvsxdp needs a target: -j MARK --set-mark N (or ACCEPT, RETURN)")
        if target == "MARK" and not any(t in argv for t in (
                "--set-mark", "--set-xmark", "--and-mark", "--or-mark", "--xor-mark")):
            raise _fail("MARK target: Parameter --set-xmark/--set-mark/--and-mark/--or-mark/"
                        "--xor-mark is required")
        if rule.ports and rule.proto not in ("tcp", "udp"):
            raise _fail("multiport needs `-p tcp' or `-p udp'")
        # iptables expands -s and -d lists into one rule per pair
        for s in srcs or [None]:
            for d in dsts or [None]:
                if s is not None and d is not None and s.version != d.version:
                    continue
                r = MarkRule(**{**rule.__dict__, "src": s, "dst": d,
                                "ports": list(rule.ports)})
                cmd.rules.append(r)
        if not cmd.rules:
            raise _fail("source and destination address families differ")
    cmd.op = op
    cmd.number = number
    return cmd


def apply(rules: list[MarkRule], cmd: Command) -> list[MarkRule]:
    new = list(rules)
    if cmd.op == "append":
        new.extend(cmd.rules)
    elif cmd.op == "insert":
        pos = (cmd.number or 1) - 1
        if pos > len(new):
            raise _fail("Index of insertion too big")
        new[pos:pos] = cmd.rules
    elif cmd.op == "delete":
        if cmd.number is not None:
            if cmd.number > len(new):
                raise _fail("Index of deletion too big")
            del new[cmd.number - 1]
        else:
            for r in cmd.rules:
                if r not in new:
                    raise _fail("Bad rule (does a matching rule exist in that chain?)")
                new.remove(r)
    elif cmd.op == "flush":
        new = []
    else:
        raise _fail(f"iptables {cmd.op} is not a change")
    return new


# -- output ------------------------------------------------------------------

def _net_text(net: Network) -> str:
    return f"{net.network_address}/{net.prefixlen}"


def _ports_text(rule: MarkRule) -> str:
    return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in rule.ports)


def rule_spec(rule: MarkRule) -> str:
    """The rule as `iptables -S` prints it."""
    out = []
    if rule.src is not None:
        out.append(("! " if rule.src_neg else "") + f"-s {_net_text(rule.src)}")
    if rule.dst is not None:
        out.append(("! " if rule.dst_neg else "") + f"-d {_net_text(rule.dst)}")
    if rule.iface is not None:
        out.append(("! " if rule.iface_neg else "") + f"-i {rule.iface}")
    if rule.proto is not None:
        out.append(("! " if rule.proto_neg else "") + f"-p {rule.proto}")
    if rule.ports:
        neg = "! " if rule.ports_neg else ""
        if rule.multiport:
            out.append(f"-m multiport {neg}--dports {_ports_text(rule)}")
        else:
            out.append(f"-m {rule.proto} {neg}--dport {_ports_text(rule)}")
    if rule.comment is not None:
        out.append(f"-m comment --comment {_quote(rule.comment)}")
    if rule.target == "MARK":
        out.append(f"-j MARK --set-xmark {rule.xmark[0]:#x}/{rule.xmark[1]:#x}")
    else:
        out.append(f"-j {rule.target}")
    return " ".join(out)


def _quote(text: str) -> str:
    return f'"{text}"' if re.search(r"\s", text) or not text else text


def format_save(rules: list[MarkRule]) -> str:
    return "-P PREROUTING ACCEPT\n" + "".join(f"-A PREROUTING {rule_spec(r)}\n" for r in rules)


def format_list(rules: list[MarkRule], cmd: Command) -> str:
    """`iptables -t mangle -L PREROUTING -n [-v] [--line-numbers]`, column for
    column as iptables 1.8 prints it (addresses always numeric)."""
    num = "num  " if cmd.line_numbers else ""
    if cmd.verbose:
        head = ["Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)",
                num + " pkts bytes target     prot opt in     out     source               "
                "destination         "]
    else:
        head = ["Chain PREROUTING (policy ACCEPT)",
                num + "target     prot opt source               destination         "]
    lines = head
    for n, r in enumerate(rules, 1):
        prot = str(PROTO_NUMBERS[r.proto]) if r.proto else "0"
        src = _list_addr(r.src) if r.src else "0.0.0.0/0"
        dst = _list_addr(r.dst) if r.dst else "0.0.0.0/0"
        extra = ""
        if r.ports:
            neg = "!" if r.ports_neg else ""
            if r.multiport:
                extra += f" multiport dports {neg}{_ports_text(r)}"
            elif r.ports[0][0] == r.ports[0][1]:
                extra += f" {r.proto} dpt:{neg}{r.ports[0][0]}"
            else:
                extra += f" {r.proto} dpts:{neg}{r.ports[0][0]}:{r.ports[0][1]}"
        if r.comment is not None:
            extra += f" /* {r.comment} */"
        if r.target == "MARK":
            v, m = r.xmark
            extra += f" MARK set {v:#x}" if m == 0xFFFFFFFF else f" MARK xset {v:#x}/{m:#x}"
        line = f"{n:<4} " if cmd.line_numbers else ""
        if cmd.verbose:
            line += f"{0:>5} {0:>5} "
        line += f"{r.target:<9} " + ("!" if r.proto_neg else " ") + f"{prot:<4} -- "
        if cmd.verbose:
            line += ("!" if r.iface_neg else " ") + f"{r.iface or '*':<6} {'*':<6} "
        line += ("!" if r.src_neg else " ") + f"{src:<19} "
        line += ("!" if r.dst_neg else " ") + f"{dst:<19} " + extra
        lines.append(line)
    return "\n".join(lines) + "\n"


def _list_addr(net: Network) -> str:
    full = 32 if net.version == 4 else 128
    return str(net.network_address) if net.prefixlen == full else _net_text(net)


def parse_save(text: str) -> tuple[list[MarkRule], list[str]]:
    """The mangle PREROUTING rules of `iptables-save -t mangle` output: the
    rules lvsxdp can follow, and the lines it cannot (with why)."""
    rules, skipped = [], []
    for line in text.splitlines():
        if not line.startswith("-A PREROUTING "):
            continue
        import shlex  # noqa: PLC0415

        words = ["-t", "mangle"] + shlex.split(line)
        try:
            cmd = parse(words)
        except ConfigError as e:
            skipped.append(f"{line}: {e}")
            continue
        rules.extend(cmd.rules)
    return rules, skipped


# -- compiling -----------------------------------------------------------------

@dataclass
class MarkTables:
    """What the data plane looks marks up in (see classify.h)."""

    dst: dict[tuple[int, Network], int] = field(default_factory=dict)  # (family, net) -> class
    src: dict[tuple[int, Network], int] = field(default_factory=dict)
    ports: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    # proto -> [(lo, hi, class)]
    combos: dict[tuple[int, int, int], int] = field(default_factory=dict)  # -> mark
    uses_src: bool = False

    @property
    def empty(self) -> bool:
        return not self.combos


def _iface_matches(rule: MarkRule, iface: str) -> bool:
    if rule.iface is None:
        return True
    name = rule.iface
    hit = iface.startswith(name[:-1]) if name.endswith("+") else iface == name
    return hit != rule.iface_neg


def _bits(bits: int):
    """The rule indices set in a bitset, lowest first."""
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


def _addr_classes(rules: list[MarkRule], attr: str) -> tuple[dict, dict[int, int]]:
    """Prefix -> class for one address dimension, and class -> rule bitset.
    A stored prefix stands for the addresses whose longest stored prefix it
    is: inside every stored prefix that contains it, outside all others."""
    unconditioned = 0
    negated_all = 0
    pos: dict[Network, int] = {}
    neg: dict[Network, int] = {}
    for n, r in enumerate(rules):
        net = getattr(r, attr)
        if net is None:
            unconditioned |= 1 << n
        elif getattr(r, attr + "_neg"):
            neg[net] = neg.get(net, 0) | 1 << n
            negated_all |= 1 << n
        else:
            pos[net] = pos.get(net, 0) | 1 << n
    prefixes = set(pos) | set(neg) | {ipaddress.IPv4Network("0.0.0.0/0")}
    by_bits: dict[int, int] = {}
    out = {}
    for p in prefixes:
        inside = 0
        excluded = 0
        for plen in range(p.prefixlen, -1, -1):
            a = p.supernet(new_prefix=plen) if plen != p.prefixlen else p
            inside |= pos.get(a, 0)
            excluded |= neg.get(a, 0)
        bits = unconditioned | inside | (negated_all & ~excluded)
        out[(4, p)] = by_bits.setdefault(bits, len(by_bits))
    return out, {c: b for b, c in by_bits.items()}


def _port_classes(rules: list[MarkRule]) -> tuple[dict, dict[int, int]]:
    """Per protocol (6, 17), elementary port intervals -> class: each rule's
    ranges mark only the intervals they cover."""
    import bisect  # noqa: PLC0415

    by_bits: dict[int, int] = {}
    out = {}
    cuts = {0, 65536}
    for r in rules:
        for a, b in r.ports:
            cuts.update((a, b + 1))
    edges = sorted(cuts)
    for proto_num, proto in ((6, "tcp"), (17, "udp")):
        anyport = 0  # rules of this protocol without a port condition
        negated = 0
        covered = [0] * (len(edges) - 1)
        for n, r in enumerate(rules):
            if r.proto is not None and (r.proto == proto) == r.proto_neg:
                continue
            if not r.ports:
                anyport |= 1 << n
                continue
            if r.ports_neg:
                negated |= 1 << n
            for a, b in r.ports:
                for i in range(bisect.bisect_left(edges, a), bisect.bisect_left(edges, b + 1)):
                    covered[i] |= 1 << n
        intervals = []
        for i, lo in enumerate(edges[:-1]):
            hi = edges[i + 1] - 1
            inside = covered[i]
            bits = anyport | (inside & ~negated) | (negated & ~inside)
            cls = by_bits.setdefault(bits, len(by_bits))
            if intervals and intervals[-1][2] == cls:
                intervals[-1] = (intervals[-1][0], hi, cls)
            else:
                intervals.append((lo, hi, cls))
        out[proto_num] = intervals
    return out, {c: b for b, c in by_bits.items()}


def compile_rules(rules: list[MarkRule], iface: str) -> MarkTables:
    """Raises ConfigError, before anything is written, when the tables would
    not fit the data plane's maps."""
    from . import shared  # noqa: PLC0415

    rules = [r for r in rules if _iface_matches(r, iface)]
    tables = MarkTables()
    if not rules:
        return tables
    tables.uses_src = any(r.src is not None for r in rules)
    tables.dst, dst_bits = _addr_classes(rules, "dst")
    if tables.uses_src:
        tables.src, src_bits = _addr_classes(rules, "src")
    else:
        src_bits = {0: (1 << len(rules)) - 1}
    tables.ports, port_bits = _port_classes(rules)
    # For each combination only the port classes of rules it holds can match.
    rule_ports: list[list[int]] = [[] for _ in rules]
    for pc, pb in port_bits.items():
        for n in _bits(pb):
            rule_ports[n].append(pc)
    for dc, db in dst_bits.items():
        for sc, sb in src_bits.items():
            ds = db & sb
            if not ds:
                continue
            candidates = set()
            for n in _bits(ds):
                candidates.update(rule_ports[n])
            for pc in candidates:
                mark = 0
                for n in _bits(ds & port_bits[pc]):
                    if rules[n].target in TERMINAL:
                        break
                    mark = rules[n].apply_mark(mark)
                if mark:
                    tables.combos[(dc, sc, pc)] = mark
                    # both generations share the maps while one replaces the other
                    if len(tables.combos) > shared.MARK_COMBOS // 2:
                        raise _fail(f"these mark rules need more than {shared.MARK_COMBOS // 2}"
                                    " class combinations: fewer or simpler rules")
    for name in ("dst", "src"):
        if len(getattr(tables, name)) > shared.MARK_PREFIXES // 2:
            raise _fail(f"these mark rules use more than {shared.MARK_PREFIXES // 2} "
                        f"{name} prefixes")
    return tables


def classify(rules: list[MarkRule], iface: str, family: int, src, dst, proto: int,
             dport: int) -> int:
    """The mark the kernel's mangle PREROUTING would give a packet: the
    reference the compiled tables are tested against (a linear walk).
    iptables sees IPv4 only: an IPv6 packet gets no mark."""
    mark = 0
    if family != 4:
        return 0
    for r in rules:
        if not _iface_matches(r, iface):
            continue
        if r.dst is not None and (dst in r.dst) == r.dst_neg:
            continue
        if r.src is not None and (src in r.src) == r.src_neg:
            continue
        if r.proto is not None and ((PROTO_NUMBERS[r.proto] == proto) == r.proto_neg):
            continue
        if r.ports and (any(a <= dport <= b for a, b in r.ports) == r.ports_neg):
            continue
        if r.target in TERMINAL:
            break
        mark = r.apply_mark(mark)
    return mark
