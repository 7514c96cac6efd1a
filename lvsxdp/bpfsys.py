"""The bpf(2) calls lvsxdp needs, through ctypes: pinned maps and test runs.

Commands that only read or write maps (ipvsadm, list, top, status) use this
module instead of bcc, so they start fast and never compile anything.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Iterator

_SYS_BPF = 321  # x86_64

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_UPDATE_BATCH = 26

BPF_ANY = 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10

XDP_ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    pass


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    ret = _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, os.strerror(err))
    return ret


class _MapElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _ObjAttr(ctypes.Structure):
    _fields_ = [
        ("pathname", ctypes.c_uint64),
        ("bpf_fd", ctypes.c_uint32),
        ("file_flags", ctypes.c_uint32),
        ("path_fd", ctypes.c_int32),
        ("pad", ctypes.c_uint32),
    ]


class _InfoAttr(ctypes.Structure):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("rest", ctypes.c_uint8 * 64),
    ]


class _TestRunAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class _BatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


@functools.cache
def possible_cpus() -> int:
    """Number of possible CPUs: per-CPU map values hold one slot each."""
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
    ]


BPF_PROG_TYPE_XDP = 6


def prog_load(prog_type: int, insns: bytes, name: str) -> int:
    """Loads a program from raw instructions (for the lab's tiny ones, which
    need no compiler); returns its fd."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = _ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8,
                         insns=ctypes.addressof(code), license=ctypes.addressof(license_),
                         prog_name=name.encode()[:15])
    return _bpf(BPF_PROG_LOAD, attr)


class _GetFdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


def prog_get_fd_by_id(prog_id: int) -> int:
    """A new fd of a loaded program (such as the one attached to a NIC)."""
    return _bpf(BPF_PROG_GET_FD_BY_ID, _GetFdAttr(id=prog_id))


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(path.encode())
    _bpf(BPF_OBJ_PIN, _ObjAttr(pathname=ctypes.addressof(p), bpf_fd=fd))


def obj_get(path: str) -> int:
    p = ctypes.create_string_buffer(path.encode())
    attr = _ObjAttr(pathname=ctypes.addressof(p))
    return _bpf(BPF_OBJ_GET, attr)


class Map:
    """A BPF map by fd, with typed keys and values (ctypes types).

    For per-CPU maps `lookup` returns a list with one value per possible CPU.
    """

    def __init__(self, fd: int, key_type, value_type, name: str = "") -> None:
        self.fd = fd
        self.key_type = key_type
        self.value_type = value_type
        info = map_info(fd)
        self.name = name or info.name.decode()
        self.map_type = info.type
        self.max_entries = info.max_entries
        if info.key_size != ctypes.sizeof(key_type) or info.value_size != ctypes.sizeof(value_type):
            raise BpfError(
                errno.EINVAL,
                f"map {self.name}: key/value sizes {info.key_size}/{info.value_size} "
                f"do not match {ctypes.sizeof(key_type)}/{ctypes.sizeof(value_type)}",
            )
        self.percpu = info.type in (
            BPF_MAP_TYPE_PERCPU_HASH,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            BPF_MAP_TYPE_LRU_PERCPU_HASH,
        )
        self._value_slot = (ctypes.sizeof(value_type) + 7) & ~7

    @classmethod
    def pinned(cls, path: str, key_type, value_type) -> Map:
        return cls(obj_get(path), key_type, value_type, os.path.basename(path))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _value_buffer(self):
        if self.percpu:
            return ctypes.create_string_buffer(self._value_slot * possible_cpus())
        return self.value_type()

    def _unpack(self, buf):
        if not self.percpu:
            return buf
        raw = buf.raw
        return [
            self.value_type.from_buffer_copy(raw, i * self._value_slot)
            for i in range(possible_cpus())
        ]

    def lookup(self, key):
        value = self._value_buffer()
        attr = _MapElemAttr(
            map_fd=self.fd,
            key=ctypes.addressof(key),
            value=ctypes.addressof(value),
        )
        try:
            _bpf(BPF_MAP_LOOKUP_ELEM, attr)
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return self._unpack(value)

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        if self.percpu:
            buf = ctypes.create_string_buffer(self._value_slot * possible_cpus())
            values = value if isinstance(value, list) else [value] * possible_cpus()
            for i, v in enumerate(values):
                ctypes.memmove(ctypes.addressof(buf) + i * self._value_slot,
                               ctypes.addressof(v), ctypes.sizeof(v))
            value = buf
        attr = _MapElemAttr(
            map_fd=self.fd,
            key=ctypes.addressof(key),
            value=ctypes.addressof(value),
            flags=flags,
        )
        _bpf(BPF_MAP_UPDATE_ELEM, attr)

    def delete(self, key) -> bool:
        attr = _MapElemAttr(map_fd=self.fd, key=ctypes.addressof(key))
        try:
            _bpf(BPF_MAP_DELETE_ELEM, attr)
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self) -> Iterator:
        key = None
        while True:
            nxt = self.key_type()
            attr = _MapElemAttr(
                map_fd=self.fd,
                key=ctypes.addressof(key) if key is not None else 0,
                value=ctypes.addressof(nxt),
            )
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except BpfError as e:
                if e.errno == errno.ENOENT:
                    return
                raise
            yield nxt
            key = nxt

    def batches(self, batch: int = 4096):
        """Every entry, BPF_MAP_LOOKUP_BATCH at a time: yields (keys, values,
        count) with the entries packed in two bytes objects (no Python object
        per entry). Not for per-CPU maps."""
        ksz = ctypes.sizeof(self.key_type)
        vsz = ctypes.sizeof(self.value_type)
        keys = ctypes.create_string_buffer(ksz * batch)
        values = ctypes.create_string_buffer(vsz * batch)
        token_in = ctypes.create_string_buffer(max(ksz, 8))
        token_out = ctypes.create_string_buffer(max(ksz, 8))
        first = True
        while True:
            attr = _BatchAttr(
                in_batch=0 if first else ctypes.addressof(token_in),
                out_batch=ctypes.addressof(token_out),
                keys=ctypes.addressof(keys),
                values=ctypes.addressof(values),
                count=batch,
                map_fd=self.fd,
            )
            done = False
            try:
                _bpf(BPF_MAP_LOOKUP_BATCH, attr)
            except BpfError as e:
                if e.errno != errno.ENOENT:
                    raise
                done = True
            yield keys.raw[:attr.count * ksz], values.raw[:attr.count * vsz], attr.count
            if done:
                return
            ctypes.memmove(token_in, token_out, len(token_out))
            first = False

    def items(self, batch: int = 4096) -> list:
        """Every (key, value) pair, read with BPF_MAP_LOOKUP_BATCH."""
        if self.percpu:
            return [(k, v) for k in self.keys() if (v := self.lookup(k)) is not None]
        ksz = ctypes.sizeof(self.key_type)
        vsz = ctypes.sizeof(self.value_type)
        out = []
        for kraw, vraw, count in self.batches(batch):
            for i in range(count):
                out.append((
                    self.key_type.from_buffer_copy(kraw, i * ksz),
                    self.value_type.from_buffer_copy(vraw, i * vsz),
                ))
        return out

    def used(self, batch: int = 4096) -> list:
        """The (key, value) pairs whose value is not all zero bytes: an array's
        slots in use. Read like items(), but only those entries become Python
        objects (an array of 4,096 reals with 3 in use costs 3, not 4,096).
        Not for per-CPU maps, whose batches hold a value per CPU."""
        if self.percpu:
            raise BpfError(errno.EINVAL, f"map {self.name}: used() reads plain maps only")
        import numpy as np  # noqa: PLC0415 - only the control plane's readers need it

        ksz = ctypes.sizeof(self.key_type)
        vsz = ctypes.sizeof(self.value_type)
        out = []
        for kraw, vraw, count in self.batches(batch):
            rows = np.frombuffer(vraw, dtype=np.uint8, count=count * vsz).reshape(count, vsz)
            for i in np.flatnonzero(rows.any(axis=1)).tolist():
                out.append((self.key_type.from_buffer_copy(kraw, i * ksz),
                            self.value_type.from_buffer_copy(vraw, i * vsz)))
        return out

    @property
    def value_bytes(self) -> int:
        """Bytes of one entry's value as batch calls move it (per-CPU: one
        8-byte-aligned slot per possible CPU)."""
        if self.percpu:
            return self._value_slot * possible_cpus()
        return ctypes.sizeof(self.value_type)

    def read_raw(self, keys, values, batch: int = 65536) -> int:
        """Reads entries with BPF_MAP_LOOKUP_BATCH straight into two writable
        buffers (bytearray, numpy array: anything with the buffer protocol),
        with no Python object per entry; for tables too large for items().
        Entries are packed: key i at i * key size, value i at i * value_bytes.
        Stops when the buffers are full (size them for max_entries and some
        more: a map that changes while it is read can show a few entries
        twice). Returns how many entries were read."""
        ksz = ctypes.sizeof(self.key_type)
        vsz = self.value_bytes
        cap = min(memoryview(keys).nbytes // ksz, memoryview(values).nbytes // vsz)
        kaddr = ctypes.addressof(ctypes.c_char.from_buffer(keys)) if cap else 0
        vaddr = ctypes.addressof(ctypes.c_char.from_buffer(values)) if cap else 0
        token_in = ctypes.create_string_buffer(max(ksz, 8))
        token_out = ctypes.create_string_buffer(max(ksz, 8))
        n = 0
        while n < cap:
            attr = _BatchAttr(
                in_batch=ctypes.addressof(token_in) if n else 0,
                out_batch=ctypes.addressof(token_out),
                keys=kaddr + n * ksz,
                values=vaddr + n * vsz,
                count=min(batch, cap - n),
                map_fd=self.fd,
            )
            try:
                _bpf(BPF_MAP_LOOKUP_BATCH, attr)
            except BpfError as e:
                if e.errno == errno.ENOENT:  # the end: attr.count holds the last ones
                    return n + attr.count
                if e.errno == errno.ENOSPC and attr.count == 0:  # a bucket > what is left
                    return n
                raise
            n += attr.count
            ctypes.memmove(token_in, token_out, len(token_out))
        return n

    def write_raw(self, keys, values, count: int, batch: int = 65536) -> None:
        """Writes count packed entries (as read_raw reads them) with
        BPF_MAP_UPDATE_BATCH."""
        ksz = ctypes.sizeof(self.key_type)
        vsz = self.value_bytes
        kaddr = ctypes.addressof(ctypes.c_char.from_buffer(keys))
        vaddr = ctypes.addressof(ctypes.c_char.from_buffer(values))
        for start in range(0, count, batch):
            attr = _BatchAttr(keys=kaddr + start * ksz, values=vaddr + start * vsz,
                              count=min(batch, count - start), map_fd=self.fd)
            _bpf(BPF_MAP_UPDATE_BATCH, attr)


def map_info(fd: int) -> _MapInfo:
    info = _MapInfo()
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info


def prog_info(fd: int) -> dict[str, int]:
    """What the kernel made of a loaded program: its size after the verifier
    (xlated instructions), JITed bytes, and the instructions the verifier
    walked to accept it (Linux 5.16 and later; 0 before)."""
    info = (ctypes.c_uint8 * 232)()  # struct bpf_prog_info up to attach_btf_id
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    raw = bytes(info)

    def u32(off: int) -> int:
        return int.from_bytes(raw[off:off + 4], "little")

    return {"id": u32(4), "jited_bytes": u32(16), "xlated_insns": u32(20) // 8,
            "verified_insns": u32(216)}


def prog_test_run(prog_fd: int, frame: bytes, repeat: int = 1,
                  out_size: int = 4096) -> tuple[int, bytes, int]:
    """Runs an XDP program on one frame: (action, output frame, ns per run)."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(out_size)
    attr = _TestRunAttr(
        prog_fd=prog_fd,
        data_size_in=len(frame),
        data_size_out=out_size,
        data_in=ctypes.addressof(data_in),
        data_out=ctypes.addressof(data_out),
        repeat=repeat,
    )
    _bpf(BPF_PROG_TEST_RUN, attr)
    return attr.retval, data_out.raw[: attr.data_size_out], attr.duration
