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
# than this many of its slots say "maybe" (half: some 45,000 keys). The
# filter then turns at least half of the unknown keys (an ACK flood's) away
# with one read of 128 KB that tables of that size leave in the caches, for
# a cached read more on each known connection's packet; past it, its
# "absent" gets rare while the held table grows out of the caches and takes
# the filter's lines with it: read first, it would add a miss to every known
# connection's packet (README, "Performance": 1,204 -> 1,394 ns at 1M).
SPARSE_SLOTS = shared.FILTER_SLOTS // 2


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
    def _index(kind: int, gen: int, where):
        """slots[kind][slot][generation]: a slot's two generations share a
        cache line, so the data plane reads and stores both at once."""
        return (kind * shared.FILTER_SLOTS + where) * 2 + gen

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

    def conn_slots_set(self) -> int:
        """How many connection slots a packet reads as "maybe" (either
        generation)."""
        import numpy as np  # noqa: PLC0415

        pairs = self._bytes()[:2 * shared.FILTER_SLOTS].reshape(-1, 2)
        return int(np.count_nonzero(pairs[:, 0] | pairs[:, 1]))

    def mark(self, kind: int, key: shared.Tuple) -> None:
        """Call before and after inserting key into a table of kind: user
        space is not inside an RCU read-side section, as a program run is,
        so the store after covers a rebuild that cleared between the two
        and read the key's bucket before the insert."""
        s = slot(key)
        for gen in (0, 1):
            self._mm[self._index(kind, gen, s)] = 1

    def stored(self, kind: int, gen: int, key: shared.Tuple) -> bool:
        """The key's byte in one generation."""
        return bool(self._mm[self._index(kind, gen, slot(key))])

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

    def finish_rebuild(self, gen: int, conn_keys, tpl_keys) -> None:
        """Stores the keys read after begin_rebuild: with them, and the keys
        inserted since the clear (stored by their inserts), gen has every
        key; the next rebuild clears the other."""
        b = self._bytes()
        for kind, keys in ((shared.FILTER_CONNS, conn_keys),
                           (shared.FILTER_TEMPLATES, tpl_keys)):
            if len(keys):
                b[self._index(kind, gen, slots(keys))] = 1
        del b  # the mapping cannot close while a view holds it
        self._built[0] = gen
        self.sparse = self.conn_slots_set() < SPARSE_SLOTS

    def rebuild(self, maps) -> None:
        """A whole rebuild, reading the tables itself."""
        from . import tables  # noqa: PLC0415 - tables imports runtime's users

        gen = self.begin_rebuild()
        ckeys, _ = tables.read_connections(maps)
        tkeys, _ = tables.read_templates(maps)
        self.finish_rebuild(gen, ckeys, tkeys)
