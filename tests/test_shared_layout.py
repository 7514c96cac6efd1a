"""bpf/lvsxdp_shared.h and lvsxdp/shared.py describe the same bytes: the
control plane writes maps with the ctypes mirrors, the program reads them
with the C structs. Compared here against what the compiler made of the
header (bcc's types for each map), field by field, and constant by
constant against the header's #defines.
"""

from __future__ import annotations

import ast
import ctypes
import operator
import re

import pytest

from lvsxdp import loader, shared

# Runs on each kernel of the matrix too (make test-kernels).
pytestmark = pytest.mark.kernels

HEADER = loader.BPF_DIR / "lvsxdp_shared.h"


def layout(t) -> list[tuple[str, int, int]]:
    """(field, offset, size) of a struct, padding bcc adds by name left out;
    a scalar or array is one unnamed field."""
    if not issubclass(t, ctypes.Structure):
        return [("", 0, ctypes.sizeof(t))]
    return [(name, getattr(t, name).offset, getattr(t, name).size)
            for name, *_ in t._fields_ if not name.startswith("__pad")]


def compiled_types(director, name: str):
    table = director.bpf[name.encode()]
    key, leaf = table.Key, table.Leaf
    if director.maps.pinned_map(name).percpu:
        leaf = leaf._type_  # bcc gives a per-CPU map's value as one slot per CPU
    return key, leaf


@pytest.mark.parametrize("name", list(shared.MAPS))
def test_map_key_and_value_layout_matches_the_compiled_header(director, name):
    compiled_key, compiled_value = compiled_types(director, name)
    mirror_key, mirror_value = shared.MAPS[name]
    for what, compiled, mirror in (("key", compiled_key, mirror_key),
                                   ("value", compiled_value, mirror_value)):
        assert ctypes.sizeof(mirror) == ctypes.sizeof(compiled), f"{name} {what} size"
        assert layout(mirror) == layout(compiled), f"{name} {what} fields"


def test_every_pinned_map_of_the_program_has_a_mirror(director):
    source = loader.program_text()
    pinned = re.findall(r"BPF_TABLE_PINNED\([^,]+,[^,]+,[^,]+,\s*(\w+)\s*,", source)
    pinned += re.findall(r"^LVS_DEVMAP_PINNED\((\w+),", source, re.M)
    assert sorted(pinned) == sorted(shared.MAPS)


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.LShift: operator.lshift}


def _value(node: ast.AST, known: dict[str, int]) -> int:
    """A constant expression of the header: numbers, + - * <<, and
    constants defined above it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left, known), _value(node.right, known))
    raise ValueError(ast.dump(node))


def header_defines() -> dict[str, int]:
    """Every object-like #define of the header with a constant value."""
    out: dict[str, int] = {}
    for name, text in re.findall(r"^#define\s+(LVS_\w+)\s+([^/\n]+?)\s*(?:/\*.*)?$",
                                 HEADER.read_text(), re.M):
        try:
            out[name] = _value(ast.parse(text, mode="eval").body, out)
        except (SyntaxError, ValueError):
            pass  # a function-like macro, e.g. LVS_REF_IDX(ref)
    return out


def mirror_of(name: str) -> int:
    """The value lvsxdp/shared.py holds for a header constant."""
    short = name.removeprefix("LVS_")
    if short == "R_COUNT":
        return len(shared.REASONS)
    if short == "S_COUNT":
        return len(shared.STATES)
    if short == "S_SLOTS":
        return len(shared.Config().timeout_ns)
    if short.startswith("R_"):
        return shared.R[short[2:].lower()]
    if short.startswith("S_"):
        return shared.S[short[2:]]
    return getattr(shared, short)


def test_every_header_constant_has_the_same_value_in_python():
    defines = header_defines()
    assert len(defines) > 40, "the header's constants were not found"
    mismatched = {}
    for name, value in defines.items():
        try:
            mirror = mirror_of(name)
        except (AttributeError, KeyError):
            mirror = "missing"
        if mirror != value:
            mismatched[name] = (value, mirror)
    assert mismatched == {}, "header constants without an equal value in lvsxdp/shared.py"


def test_default_timeouts_cover_every_state():
    assert sorted(shared.DEFAULT_TIMEOUTS) == sorted(shared.STATES)
