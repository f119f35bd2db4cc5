"""Mutations of real MAT files for fuzzing the reader: structural edits of the decompressed MAT v5
stream (tag sizes, dimensions, class codes, flags), byte flips, truncations, corrupt zlib
streams, and edits of MAT v7.3 files through h5py."""

import os
import shutil
import signal
import struct
import zlib

import numpy as np

from fastdecode._matfile import MatConvNetError, read_mat


class Hang(Exception):
    """Raised by the watchdog: a case ran past its time bound."""


def v5_elements(data):
    """[(inflated bytes or None, raw element bytes)] of a v5 file's top-level elements."""
    out, pos = [], 128
    while pos + 8 <= len(data):
        mtype, n = struct.unpack("<II", data[pos:pos + 8])
        raw = data[pos:pos + 8 + n]
        out.append((zlib.decompress(raw[8:]) if mtype == 15 else None, raw))
        pos += 8 + n + (0 if mtype == 15 else -n % 8)
    return out


def mutate_v5(data, rng):
    """One mutated copy of a v5 file (bytes)."""
    kind = rng.integers(6)
    if kind == 0:  # truncation
        return data[:rng.integers(0, len(data))], "truncate"
    if kind == 1:  # byte flips anywhere in the file (mostly inside zlib streams)
        b = bytearray(data)
        for _ in range(rng.integers(1, 8)):
            i = rng.integers(0, len(b))
            b[i] ^= 1 << rng.integers(8)
        return bytes(b), "flip"
    elements = v5_elements(data)
    comp = [i for i, (inf, _) in enumerate(elements) if inf is not None]
    if not comp:
        return data[:-1], "truncate"
    i = comp[rng.integers(len(comp))]
    inflated = bytearray(elements[i][0])
    words = len(inflated) // 4
    if kind == 2:  # a 4-byte word (a tag type or size, a dimension, flags) set to a hostile value
        for _ in range(rng.integers(1, 4)):
            w = rng.integers(0, min(words, 4096))
            value = int(rng.choice([0, 1, 2, 3, 7, 14, 15, 16, 17, 255, 0x7FFFFFFF, 0x80000000,
                                    0xFFFFFFFF, 1 << 20, 1 << 28, rng.integers(0, 1 << 32)]))
            inflated[4 * w:4 * w + 4] = struct.pack("<I", value)
        label = "word"
    elif kind == 3:  # byte flips in the inflated stream
        for _ in range(rng.integers(1, 16)):
            j = rng.integers(0, len(inflated))
            inflated[j] ^= 1 << rng.integers(8)
        label = "inflated-flip"
    elif kind == 4:  # a cut of the inflated stream, recompressed
        inflated = inflated[:rng.integers(0, len(inflated))]
        label = "inflated-cut"
    else:  # a corrupt zlib stream: flips in the compressed bytes of one element
        raw = bytearray(elements[i][1])
        for _ in range(rng.integers(1, 4)):
            j = rng.integers(8, len(raw))
            raw[j] = rng.integers(256)
        parts = [r for _, r in elements]
        parts[i] = bytes(raw)
        return data[:128] + b"".join(parts), "zlib"
    z = zlib.compress(bytes(inflated), 1)
    parts = [r for _, r in elements]
    parts[i] = struct.pack("<II", 15, len(z)) + z
    return data[:128] + b"".join(parts), label


def mutate_v73(src, dst, rng):
    """A mutated copy of a v7.3 file at ``dst`` (edits through h5py, or raw byte edits)."""
    import h5py
    shutil.copyfile(src, dst)
    kind = rng.integers(4)
    if kind == 0:
        data = bytearray(open(src, "rb").read())
        for _ in range(rng.integers(1, 8)):
            j = rng.integers(512, len(data))
            data[j] ^= 1 << rng.integers(8)
        open(dst, "wb").write(bytes(data))
        return "flip"
    if kind == 1:
        open(dst, "r+b").truncate(int(rng.integers(0, os.path.getsize(src))))
        return "truncate"
    with h5py.File(dst, "r+") as f:
        names = []
        f.visit(names.append)
        name = names[rng.integers(len(names))]
        obj = f[name]
        if kind == 2:
            attr = ["MATLAB_class", "MATLAB_empty", "MATLAB_fields"][rng.integers(3)]
            value = [np.bytes_("cell"), np.bytes_("struct"), np.bytes_("char"), np.uint8(1),
                     np.bytes_("double"), np.bytes_("\x1b[2J")][rng.integers(6)]
            obj.attrs[attr] = value
            return "attr"
        parent = f[os.path.dirname("/" + name) or "/"]
        del f[name]
        if rng.integers(2):
            other = names[rng.integers(len(names))]
            try:  # a hard link to another object (possibly an ancestor: a cycle), or zeros
                parent[os.path.basename(name)] = f[other] if other in f else np.zeros((3, 3))
            except (KeyError, ValueError, OSError, RuntimeError):
                pass
        return "delete"


def run_case(path, *, memory_limit=64 * 2**20, seconds=10.0):
    """Read ``path``; 'loaded' or 'refused', raising anything else (and Hang past ``seconds``)."""
    def alarm(signum, frame):
        raise Hang("reading %s took more than %.0f s" % (path, seconds))
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        out = read_mat(path, memory_limit=memory_limit)
        assert isinstance(out, dict)
        return "loaded"
    except MatConvNetError as exc:
        assert str(path) in str(exc)
        return "refused"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
