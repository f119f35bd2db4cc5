"""Builders of crafted MAT files: small files that declare, or expand to, far more than they hold.

Each MAT v5 builder streams its element through zlib, so a file that decompresses to gigabytes is
written in a few seconds and takes kilobytes. A piece of an element is bytes, or ``Zeros(n)`` (n
zero bytes), or ``Repeat(b, n)`` (bytes b, n times).
"""

import struct
import zlib

import numpy as np

MI_INT8, MI_UINT8, MI_INT32, MI_UINT32, MI_SINGLE, MI_DOUBLE = 1, 2, 5, 6, 7, 9
MI_UINT64, MI_MATRIX, MI_COMPRESSED, MI_UTF8 = 13, 14, 15, 16
MX_CELL, MX_STRUCT, MX_CHAR, MX_DOUBLE, MX_SINGLE, MX_UINT8 = 1, 2, 4, 6, 7, 9


class Zeros:
    def __init__(self, n):
        self.n = n


class Repeat:
    def __init__(self, data, n):
        self.data, self.n = bytes(data), n


def size(pieces):
    return sum(p.n if isinstance(p, Zeros) else len(p.data) * p.n if isinstance(p, Repeat)
               else len(p) for p in pieces)


def tag(mtype, nbytes):
    return struct.pack("<II", mtype, nbytes)


def element(mtype, payload):
    return tag(mtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def header(text=b"MATLAB 5.0 MAT-file, crafted"):
    return text.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"


def matrix(cls, dims, name, body, *, flags=0, nbytes=None):
    """The pieces of a miMATRIX element: ``body`` is a list of pieces after flags, dims and name."""
    head = (element(MI_UINT32, struct.pack("<II", cls | flags, 0))
            + element(MI_INT32, struct.pack("<%di" % len(dims), *dims))
            + element(MI_INT8, name.encode("latin-1") if isinstance(name, str) else name))
    body = list(body)
    n = len(head) + size(body) if nbytes is None else nbytes
    return [tag(MI_MATRIX, n), head] + body


def numeric(cls, mi, dims, data, name=""):
    data = bytes(data)
    return matrix(cls, dims, name, [element(mi, data)])


def char(text, name=""):
    codes = text.encode("utf-16-le")
    return matrix(MX_CHAR, [1, len(text)], name, [element(4, codes)])


def struct_(fields, name="", dims=(1, 1), records=None):
    """A struct array; ``records`` a list of lists of pieces (one value per field), or one 1x1."""
    length = 32
    names = b"".join(f.encode().ljust(length, b"\0") for f in fields)
    body = [element(MI_INT32, struct.pack("<i", length)), element(MI_INT8, names)]
    for rec in records or []:
        for value in rec:
            body += value
    return matrix(MX_STRUCT, list(dims), name, body)


def cell(items, name="", dims=None):
    body = []
    for item in items:
        body += item
    return matrix(MX_CELL, list(dims or [1, len(items)]), name, body)


def write(path, *variables, compress=True, text=None):
    """Write the variables (lists of pieces), each in its own compressed element (or not)."""
    with open(path, "wb") as f:
        f.write(header() if text is None else header(text))
        for pieces in variables:
            if not compress:
                for p in pieces:
                    _emit(f.write, p)
                pad = -size(pieces) % 8
                f.write(b"\0" * pad)
                continue
            z = zlib.compressobj(9)
            out = []
            for p in pieces:
                _emit(lambda b: out.append(z.compress(b)), p)
            out.append(z.flush())
            data = b"".join(out)
            f.write(tag(MI_COMPRESSED, len(data)) + data)
    return path


def _emit(write, piece, step=1 << 22):
    if isinstance(piece, Zeros):
        chunk, left = b"\0" * min(piece.n, step), piece.n
        while left:
            write(chunk[:min(left, step)])
            left -= min(left, step)
    elif isinstance(piece, Repeat):
        per = max(1, step // max(1, len(piece.data)))
        left = piece.n
        while left:
            k = min(left, per)
            write(piece.data * k)
            left -= k
    else:
        write(piece)


# --- the crafted files -------------------------------------------------------------------------

def struct_records(path, n):
    """``net``: a struct array of n x 1 records with no fields (a few hundred bytes)."""
    return write(path, struct_([], "net", dims=(n, 1)))


def empty_cells(path, n):
    """``net``: an n x 1 cell of empty arrays (8 bytes each once inflated)."""
    return write(path, matrix(MX_CELL, [n, 1], "net", [Repeat(tag(MI_MATRIX, 0), n)]))


def scalar_cells(path, n):
    """``net``: an n x 1 cell of 1x1 doubles."""
    one = b"".join(numeric(MX_DOUBLE, MI_DOUBLE, [1, 1], struct.pack("<d", 1.0)))
    return write(path, matrix(MX_CELL, [n, 1], "net", [Repeat(one, n)]))


def utf8_chars(path, n):
    """``net``: a 1 x n char array stored as n bytes of UTF-8."""
    return write(path, matrix(MX_CHAR, [1, n], "net", [tag(MI_UTF8, n), Repeat(b"a", n),
                                                       b"\0" * (-n % 8)]))


def double_matrix(path, rows, cols, name="net"):
    """A rows x cols double matrix of zeros: a variable that can be no network."""
    n = 8 * rows * cols
    return write(path, matrix(MX_DOUBLE, [rows, cols], name, [tag(MI_DOUBLE, n), Zeros(n)]))


def _single(dims, name=""):
    n = 4
    for d in dims:
        n *= d
    return matrix(MX_SINGLE, list(dims), name, [tag(MI_SINGLE, n), Zeros(n), b"\0" * (-n % 8)])


def conv_network(path, h, w, c, k, *, momentum=0, momentum_dims=None, compress=True):
    """A valid simplenn ``net`` with one conv layer of [h w c k] single zeros; ``momentum`` extra
    fields, all named momentum, each a cell of one single array (the filters' shape, or
    ``momentum_dims``)."""
    extra = ["momentum"] * momentum
    mdims = momentum_dims or (h, w, c, k)
    weights = cell([_single((h, w, c, k)), _single((1, k))])
    values = [char("conv1"), char("conv"), weights,
              numeric(MX_DOUBLE, MI_DOUBLE, [1, 1], struct.pack("<d", 1.0)),
              numeric(MX_DOUBLE, MI_DOUBLE, [1, 1], struct.pack("<d", 0.0))]
    values += [cell([_single(mdims)]) for _ in extra]
    layer = struct_(["name", "type", "weights", "stride", "pad"] + extra, records=[values])
    net = struct_(["layers"], "net", records=[[cell([layer])]])
    return write(path, net, compress=compress)


def chars_stored_as(path, mi, codes, name="net"):
    """``net``: a 1 x len(codes) char array whose codes are stored as data type ``mi``."""
    dt = {MI_UINT64: "<u8", MI_DOUBLE: "<f8", MI_INT32: "<i4"}[mi]
    data = np.asarray(codes, dtype=dt).tobytes()
    return write(path, matrix(MX_CHAR, [1, len(codes)], name, [element(mi, data)]))


def dims_array(path, dims, name="net"):
    """``net``: a double array declaring ``dims`` and holding no data."""
    return write(path, matrix(MX_DOUBLE, list(dims), name, [element(MI_DOUBLE, b"")]))


def named(path, name, value=1.0):
    """One 1x1 double whose name is ``name`` (bytes, any characters)."""
    return write(path, numeric(MX_DOUBLE, MI_DOUBLE, [1, 1], struct.pack("<d", value), name=name))


def repeated(path, name, count):
    """The same 1x1 double variable ``count`` times."""
    v = numeric(MX_DOUBLE, MI_DOUBLE, [1, 1], struct.pack("<d", 1.0), name=name)
    return write(path, *([v] * count))


# --- v7.3 ---------------------------------------------------------------------------------------

def v73_header_file(path):
    """An HDF5 file with MATLAB's 512-byte user block header; returns the h5py.File (open)."""
    import h5py
    f = h5py.File(path, "w", userblock_size=512)
    return f


def v73_finish(path):
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, crafted".ljust(116, b" ") + b"\0" * 8
                + struct.pack("<H", 0x0200) + b"IM")
    return path


def v73(path, build):
    """Write a v7.3 file: ``build(f, h5py)`` fills the open file."""
    import h5py
    with h5py.File(path, "w", userblock_size=512) as f:
        build(f, h5py)
    return v73_finish(path)


def v73_empty(path, cls, dims, name="net"):
    """``name``: a dataset marked MATLAB_empty of class ``cls`` whose data says ``dims``."""
    def build(f, h5py):
        ds = f.create_dataset(name, data=np.asarray(dims, dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        ds.attrs["MATLAB_empty"] = np.uint8(1)
    return v73(path, build)


def v73_unwritten(path, cls, count, name="net", empty=False, dtype="u2"):
    """``name``: a chunked dataset of ``count`` elements none of which is written (a few KB)."""
    def build(f, h5py):
        ds = f.create_dataset(name, shape=(count, 1), dtype=dtype, chunks=(1 << 16, 1))
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        if empty:
            ds.attrs["MATLAB_empty"] = np.uint8(1)
    return v73(path, build)


def v73_reference_chain(path, depth, fanout=2, name="net"):
    """``name``: a cell whose ``fanout`` entries all refer to the next cell, ``depth`` times."""
    def build(f, h5py):
        refs = f.create_group("#refs#")
        leaf = refs.create_dataset("leaf", data=np.ones((1, 1)))
        leaf.attrs["MATLAB_class"] = np.bytes_("double")
        target = leaf
        for i in range(depth):
            ds = (refs if i < depth - 1 else f).create_dataset(
                "c%d" % i if i < depth - 1 else name, shape=(fanout, 1), dtype=h5py.ref_dtype)
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
            for j in range(fanout):
                ds[j, 0] = target.ref
            target = ds
    return v73(path, build)


# --- loading in a child process, bounded -------------------------------------------------------

def _vm_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _child(args):
    """Runs in the child: load the file, print one JSON line with what happened."""
    import json
    import os
    import sys
    import time
    if args.get("module"):  # another version of the reader, for comparisons
        import importlib.util
        spec = importlib.util.spec_from_file_location("other_matfile", args["module"])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        from fastdecode import _matfile as mod
    import fastdecode.matconvnet  # noqa: F401  (imported before the baseline is taken)
    budgets = []
    init = mod._Budget.__init__

    def record(self, *a, **k):
        init(self, *a, **k)
        budgets.append(self)
    mod._Budget.__init__ = record
    base = _vm_kib("VmRSS")
    t = time.perf_counter()
    kw = {"memory_limit": args["memory_limit"]}
    if args.get("expect"):
        kw["expect"] = args["expect"]
    try:
        if args.get("loader"):
            from fastdecode.matconvnet import load_matconvnet
            load_matconvnet(args["path"], memory_limit=args["memory_limit"])
        else:
            mod.read_mat(args["path"], args.get("names"), **kw)
        outcome, message = "loaded", ""
    except BaseException as exc:  # reported to the parent, whatever it is
        outcome, message = type(exc).__name__, str(exc)[:2000]
    seconds = time.perf_counter() - t
    charged = budgets[0].used if budgets else 0
    worked = getattr(budgets[0], "worked", 0) if budgets else 0
    sys.stdout.write(json.dumps({
        "outcome": outcome, "message": message, "seconds": seconds, "charged": charged,
        "worked": worked, "peak": (_vm_kib("VmHWM") - base) * 1024}) + "\n")
    sys.stdout.flush()
    os._exit(0)


def run_isolated(path, memory_limit, *, expect=None, names=None, loader=False, timeout=60,
                 address_space=6 * 2**30, module=None):
    """Load ``path`` in a child process limited to ``address_space`` bytes and ``timeout``
    seconds: a dict with outcome (exception name or 'loaded', 'timeout', 'killed'), message,
    seconds, charged (bytes the budget charged), worked and peak (bytes of resident memory above
    the child's own baseline)."""
    import json
    import os
    import resource
    import subprocess
    import sys
    import time

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    args = {"path": str(path), "memory_limit": memory_limit, "expect": expect,
            "names": names, "loader": loader, "module": module}
    import fastdecode
    env = dict(os.environ)
    # the package under test (installed, or built in place), not an unbuilt source tree
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastdecode.__file__)))
    env["PYTHONPATH"] = package_parent + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import sys, json; sys.path.insert(0, %r); import hostile_mat; "
             "hostile_mat._child(json.loads(sys.argv[1]))" % os.path.dirname(__file__),
             json.dumps(args)], capture_output=True, text=True, timeout=timeout,
            preexec_fn=limit, env=env, cwd=os.path.dirname(os.path.abspath(str(path))))
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout", "message": "", "seconds": time.perf_counter() - t,
                "charged": 0, "worked": 0, "peak": 0}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"outcome": "killed", "message": proc.stderr[-2000:],
                "seconds": time.perf_counter() - t, "charged": 0, "worked": 0, "peak": 0}
    return json.loads(lines[-1])
