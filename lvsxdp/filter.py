"""User space's side of the "may be present" filters (bpf/filter.h): the same
hash, a byte store before and after every insert user space makes, and the
rebuild of the generation packets do not read: the agent's sweep, the one
rebuilder of a running director (two at once could clear the generation the
other just switched to); tests and tools without an agent call rebuild.

The map is used through mmap only: single bytes are stored (numpy uint8), as
the data plane stores them, so a store never overwrites another's. A word
written through the bpf syscall would write back 7 bytes it read earlier.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import time

from . import bpfsys, shared

K = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F)
SHIFT = 32 - shared.FILTER_BITS
MEMBARRIER_CMD_GLOBAL = 1
SYS_MEMBARRIER = 324  # x86_64

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def slots(keys):
    """The filter slot of each key (numpy array of tables.TUPLE)."""
    import numpy as np  # noqa: PLC0415 - only the agent's rebuild needs it

    u = np.uint32
    ca = np.bitwise_xor.reduce(keys["caddr"].astype(u), axis=1)
    va = np.bitwise_xor.reduce(keys["vaddr"].astype(u), axis=1)
    ports = keys["cport"].astype(u) | (keys["vport"].astype(u) << u(16))
    h = ca * u(K[0])
    h = (h ^ va) * u(K[1])
    h = (h ^ ports) * u(K[2])
    h = (h ^ keys["proto"].astype(u)) * u(K[3])
    return (h >> u(SHIFT)).astype(np.int64)


def slot(key: shared.Tuple) -> int:
    """One key's slot (shared.Tuple; an IPv4 key with its first words only)."""
    m = 0xFFFFFFFF
    ca = key.caddr[0] ^ key.caddr[1] ^ key.caddr[2] ^ key.caddr[3]
    va = key.vaddr[0] ^ key.vaddr[1] ^ key.vaddr[2] ^ key.vaddr[3]
    h = ca * K[0] & m
    h = (h ^ va) * K[1] & m
    h = (h ^ (key.cport | key.vport << 16)) * K[2] & m
    h = (h ^ key.proto) * K[3] & m
    return h >> SHIFT


def synchronize() -> None:
    """Waits until every program run that started before has ended
    (membarrier's global command is an RCU grace period: XDP runs inside one
    read-side section); a pause where the kernel lacks it."""
    if _libc.syscall(SYS_MEMBARRIER, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0:
        time.sleep(0.05)


BUILT_OFFSET = shared.Filter.built.offset
SPARSE_OFFSET = shared.Filter.sparse.offset
# A non-SYN reads the connection filter before the held tier while fewer
# than this many of its slots say "maybe" for the held tier (half: some
# 45,000 held keys; embryonic keys, a flood's or a burst of new clients',
# do not count: they cost the held table no lookup). The filter then turns
# at least half of the unknown keys (an ACK flood's) away from the held
# table with one read of 256 KB that tables of that size leave in the
# caches, for a cached read more on each known connection's packet; past
# it, its "absent" gets rare while the held table grows out of the caches
# and takes the filter's lines with it: read first, it would add a miss to
# every known connection's packet (README, "Performance": 1,204 -> 1,394 ns
# at 1M).
SPARSE_SLOTS = shared.FILTER_SLOTS // 2
# The tiers of a slot (bpf/filter.h): the held tables' keys, the embryonic's.
TIER_HELD, TIER_NEW = 0, 1
TIERS = (TIER_HELD, TIER_NEW)
HELD_BITS = 0x0000FFFF  # a slot's word, little-endian: the held tier's two bytes


class Filter:
    """The pinned `filter` map, mapped."""

    def __init__(self, m: bpfsys.Map) -> None:
        size = ctypes.sizeof(shared.Filter)
        self._mm = mmap.mmap(m.fd, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE,
                             mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._built = memoryview(self._mm)[BUILT_OFFSET:BUILT_OFFSET + 4].cast("I")
        self._sparse = memoryview(self._mm)[SPARSE_OFFSET:SPARSE_OFFSET + 4].cast("I")

    def close(self) -> None:
        self._built.release()
        self._sparse.release()
        self._mm.close()

    @staticmethod
    def _index(kind: int, gen: int, where, tier=0):
        """slots[kind][slot][tier][generation] (tier: TIER_HELD or
        TIER_NEW): a slot's four bytes are one word, which the data plane
        reads at once."""
        return ((kind * shared.FILTER_SLOTS + where) * 2 + tier) * 2 + gen

    @property
    def built(self) -> int:
        """The generation the last finished rebuild filled."""
        return self._built[0] & 1

    @property
    def sparse(self) -> bool:
        """Whether a non-SYN reads the connection filter first (bpf/conn.h)."""
        return bool(self._sparse[0])

    @sparse.setter
    def sparse(self, value: bool) -> None:
        self._sparse[0] = int(value)

    def conn_slots_set(self, held: bool = False) -> int:
        """How many connection slots a packet reads as "maybe" (either
        generation); held: for the held tier only, what a non-SYN's read of
        the filter before the held table can save (the agent's "sparse")."""
        import numpy as np  # noqa: PLC0415

        words = self._bytes()[:4 * shared.FILTER_SLOTS].view(np.uint32)
        return int(np.count_nonzero(words & np.uint32(HELD_BITS if held else 0xFFFFFFFF)))

    def mark(self, kind: int, key: shared.Tuple) -> None:
        """Call before and after inserting key into a table of kind: user
        space is not inside an RCU read-side section, as a program run is,
        so the store after covers a rebuild that cleared between the two
        and read the key's bucket before the insert. Both tiers: user
        space's inserts are few, and a tier's byte too many costs a lookup,
        never a key."""
        s = slot(key)
        for tier in TIERS:
            for gen in (0, 1):
                self._mm[self._index(kind, gen, s, tier)] = 1

    def stored(self, kind: int, gen: int, key: shared.Tuple, tiers=None) -> bool:
        """The key's byte in one generation, in either tier (or in those
        given)."""
        s = slot(key)
        return any(self._mm[self._index(kind, gen, s, t)] for t in (tiers or TIERS))

    def maybe(self, kind: int, key: shared.Tuple) -> bool:
        """What a packet reads: either generation's 1."""
        return self.stored(kind, 0, key) or self.stored(kind, 1, key)

    def all_maybe(self) -> None:
        """Every key may be present, in both generations (tables filled by
        a program that kept no filter), until two rebuilds cleared it."""
        self.sparse = False
        b = self._bytes()
        b[:] = 1
        del b

    def _bytes(self):
        import numpy as np  # noqa: PLC0415

        return np.frombuffer(self._mm, np.uint8, count=BUILT_OFFSET)

    def begin_rebuild(self) -> int:
        """Clears the generation the last rebuild did not fill (the other
        has every key: packets read both), then waits until every program
        run that may have stored into it before has ended (its insert is in
        the tables). The tables must be read after this. Returns the
        generation for finish_rebuild."""
        gen = self.built ^ 1
        b = self._bytes()
        b[gen::2] = 0  # byte by byte: the other generation's bytes untouched
        del b
        synchronize()
        return gen

    def finish_rebuild(self, gen: int, conn_keys, tpl_keys, conn_held=None,
                       tpl_held=None) -> None:
        """Stores the keys read after begin_rebuild: with them, and the keys
        inserted since the clear (stored by their inserts), gen has every
        key; the next rebuild clears the other. *_held: which keys are in
        the held tier (tables.read_*(tiers=True)); without it a key is
        stored in both tiers."""
        b = self._bytes()
        for kind, keys, held in ((shared.FILTER_CONNS, conn_keys, conn_held),
                                 (shared.FILTER_TEMPLATES, tpl_keys, tpl_held)):
            if not len(keys):
                continue
            where = slots(keys)
            if held is None:
                for tier in TIERS:
                    b[self._index(kind, gen, where, tier)] = 1
            else:
                b[self._index(kind, gen, where[held], TIER_HELD)] = 1
                b[self._index(kind, gen, where[~held], TIER_NEW)] = 1
        del b  # the mapping cannot close while a view holds it
        self._built[0] = gen
        self.sparse = self.conn_slots_set(held=True) < SPARSE_SLOTS

    def rebuild(self, maps) -> None:
        """A whole rebuild, reading the tables itself."""
        from . import tables  # noqa: PLC0415 - tables imports runtime's users

        gen = self.begin_rebuild()
        ckeys, _, cheld = tables.read_connections(maps, tiers=True)
        tkeys, _, theld = tables.read_templates(maps, tiers=True)
        self.finish_rebuild(gen, ckeys, tkeys, cheld, theld)
