"""Writers that lay MatConvNet networks out in files as MATLAB does, for the loader's tests.

Values are given in MATLAB's orientation: numeric arrays with MATLAB's shape (filters [H W C K]),
``str`` for char rows, :func:`cell` for cell arrays, ``dict`` for 1x1 structs,
:class:`StructArray` for struct arrays, :class:`Empty` for typed empty arrays and :class:`Object`
for MATLAB objects (v7.3 only). ``write_v5`` goes through scipy.io.savemat; ``write_v73`` writes the
HDF5 layout MATLAB's ``save -v7.3`` uses (axes reversed, cells as object references into
``#refs#``, char as uint16, ``MATLAB_class``/``MATLAB_fields``/``MATLAB_empty`` attributes, a
512-byte MAT header in the user block).
"""

import struct
import zlib

import numpy as np
import scipy.io


class StructArray:
    """A 1xN MATLAB struct array of ``records`` (dicts with the same keys)."""

    def __init__(self, records):
        self.records = list(records)
        self.fields = list(self.records[0]) if self.records else []


class Empty:
    """A typed empty MATLAB array: 'double', 'cell', 'struct', 'char'."""

    def __init__(self, matlab_class="double"):
        self.matlab_class = matlab_class


class Object:
    """A MATLAB object (e.g. a gpuArray) that a loader must not interpret."""

    def __init__(self, matlab_class="gpuArray"):
        self.matlab_class = matlab_class


def cell(*items, column=False):
    """A 1xN (or Nx1) cell array."""
    out = np.empty((len(items), 1) if column else (1, len(items)), dtype=object)
    for i, x in enumerate(items):
        out.flat[i] = x
    return out


# --- MatConvNet layers, as cnn_train and vl_simplenn_tidy leave them ------------------------------

def conv(name, filters, bias, *, stride=1, pad=0, dilate=1, legacy=False, hyper=np.float64):
    """A simplenn conv layer; ``legacy`` uses the beta16 fields filters/biases."""
    layer = {"name": name, "type": "conv"}
    if legacy:
        layer.update(filters=filters, biases=bias)
    else:
        layer["weights"] = cell(filters, bias if bias is not None else np.zeros((0, 0), np.float32))
    layer.update(stride=hyper_value(stride, hyper), pad=hyper_value(pad, hyper),
                 dilate=hyper_value(dilate, hyper), opts=cell(),
                 learningRate=np.array([[1, 1]], np.uint8),
                 weightDecay=np.array([[1, 0]], np.uint8), precious=np.array([[False]]))
    if name is None:
        del layer["name"]
    return layer


def hyper_value(v, dtype):
    return np.array(v, dtype=dtype).reshape(1, -1)


def pool(name, method, size, *, stride=1, pad=0):
    return {"name": name, "type": "pool", "method": method,
            "pool": np.array(size, np.float64).reshape(1, -1) if np.ndim(size) else float(size),
            "stride": hyper_value(stride, np.float64), "pad": hyper_value(pad, np.float64),
            "opts": cell(), "precious": np.array([[False]])}


def relu(name, leak=0.0):
    return {"name": name, "type": "relu", "leak": float(leak), "precious": np.array([[False]])}


def bnorm(name, gain, bias, mean, sigma):
    K = len(gain)
    col = lambda a: np.asarray(a, np.float32).reshape(K, 1)
    return {"name": name, "type": "bnorm",
            "weights": cell(col(gain), col(bias), np.hstack([col(mean), col(sigma)])),
            "epsilon": 1e-5, "precious": np.array([[False]])}


def softmaxloss(name, labels):
    layer = {"type": "softmaxloss", "class": np.asarray(labels, np.float32).reshape(1, -1)}
    if name is not None:
        layer["name"] = name
    return layer


def simplenn(layers, meta=None):
    net = {"layers": cell(*layers)}
    if meta is not None:
        net["meta"] = meta
    return net


def cnn_train_variables(net):
    """What cnn_train saves in net-epoch-N.mat: net, state, stats."""
    return {"net": net,
            "state": {"solverState": cell(np.zeros((3, 3, 1, 2), np.float32))},
            "stats": {"train": StructArray([{"objective": 2.3, "top1err": 0.9}]),
                      "val": StructArray([{"objective": 2.2, "top1err": 0.8}])}}


def dagnn(blocks, params, meta=None):
    """A DagNN saveobj() struct: ``blocks`` are (name, type, inputs, outputs, params, block)."""
    layers = StructArray([{"name": n, "type": t, "inputs": cell(*i), "outputs": cell(*o),
                           "params": cell(*p), "block": b}
                          for n, t, i, o, p, b in blocks])
    return {"vars": StructArray([{"name": v, "precious": False}
                                 for v in sorted({x for b in blocks for x in b[2] + b[3]})]),
            "params": StructArray([{"name": n, "value": v, "learningRate": 1.0,
                                    "weightDecay": 1.0} for n, v in params]),
            "layers": layers,
            "meta": meta if meta is not None else {}}


# --- MAT v5 (scipy.io.savemat) --------------------------------------------------------------------

def _to_scipy(v):
    if isinstance(v, dict):
        return {k: _to_scipy(x) for k, x in v.items()}
    if isinstance(v, StructArray):
        dtype = [(f, object) for f in v.fields]
        out = np.empty((1, len(v.records)), dtype=dtype)
        for i, rec in enumerate(v.records):
            for f in v.fields:
                out[0, i][f] = _to_scipy(rec[f])
        return out
    if isinstance(v, Empty):
        return {"cell": np.empty((0, 0), object), "char": "",
                "struct": np.empty((0, 0), [("a", object)])}.get(v.matlab_class, np.zeros((0, 0)))
    if isinstance(v, Object):
        raise TypeError("MATLAB objects are written in v7.3 files only")
    if isinstance(v, np.ndarray) and v.dtype == object:
        out = np.empty(v.shape, dtype=object)
        for i, x in enumerate(v.flat):
            out.flat[i] = _to_scipy(x)
        return out
    if isinstance(v, bool):
        return np.array([[v]])
    return v


def write_v5(path, variables, *, compress=True):
    """A MAT v5 file (``save -v7`` compresses, ``-v6`` does not) via scipy.io.savemat."""
    scipy.io.savemat(path, {k: _to_scipy(v) for k, v in variables.items()}, format="5",
                     do_compression=compress, long_field_names=True, oned_as="row")


# --- MAT v7.3 (HDF5) ------------------------------------------------------------------------------

_H5_CLASSES = {"f8": "double", "f4": "single", "i1": "int8", "u1": "uint8", "i2": "int16",
               "u2": "uint16", "i4": "int32", "u4": "uint32", "i8": "int64", "u8": "uint64"}


def _fields_attr(names):
    import h5py
    vlen = h5py.vlen_dtype(np.dtype("S1"))
    out = np.empty(len(names), dtype=object)
    for i, n in enumerate(names):
        out[i] = np.array(list(n), dtype="S1")
    return out, vlen


class _V73Writer:
    def __init__(self, f):
        self.f = f
        self.refs = f.create_group("#refs#")
        self.count = 0

    def _ref_name(self):
        self.count += 1
        return "r%d" % self.count

    def put(self, group, name, v):
        import h5py
        if isinstance(v, dict):
            g = group.create_group(name)
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            if v:
                names, vlen = _fields_attr(list(v))
                g.attrs.create("MATLAB_fields", names, dtype=vlen)
            for k, x in v.items():
                self.put(g, k, x)
            return g
        if isinstance(v, StructArray):
            g = group.create_group(name)
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            names, vlen = _fields_attr(v.fields)
            g.attrs.create("MATLAB_fields", names, dtype=vlen)
            for fld in v.fields:
                refs = [self.put(self.refs, self._ref_name(), rec[fld]).ref for rec in v.records]
                # MATLAB shape 1xN -> HDF5 (N, 1); struct-array field datasets carry no class.
                group_ds = g.create_dataset(fld, data=np.array(refs, dtype=h5py.ref_dtype)
                                            .reshape(len(refs), 1))
                del group_ds
            return g
        if isinstance(v, Empty) or (isinstance(v, np.ndarray) and v.size == 0):
            cls = v.matlab_class if isinstance(v, Empty) else (
                "cell" if v.dtype == object else _H5_CLASSES[v.dtype.str[1:]])
            ds = group.create_dataset(name, data=np.array([0, 0], np.uint64))
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            ds.attrs["MATLAB_empty"] = np.uint8(1)
            return ds
        if isinstance(v, Object):
            ds = group.create_dataset(name, data=np.array([[3707764736, 2, 1, 1, 1, 1]],
                                                          np.uint32))
            ds.attrs["MATLAB_class"] = np.bytes_(v.matlab_class)
            ds.attrs["MATLAB_object_decode"] = np.int32(3)
            return ds
        if isinstance(v, str):
            codes = np.array([ord(c) for c in v], np.uint16).reshape(len(v), 1)
            ds = group.create_dataset(name, data=codes)
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
            return ds
        if isinstance(v, np.ndarray) and v.dtype == object:
            refs = np.empty(v.shape, dtype=object)
            for idx in np.ndindex(v.shape):
                refs[idx] = self.put(self.refs, self._ref_name(), v[idx]).ref
            ds = group.create_dataset(name, data=np.asarray(refs.T, dtype=h5py.ref_dtype))
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
            return ds
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, np.ndarray) and v.dtype == bool):
            a = np.atleast_2d(np.asarray(v, dtype=np.uint8))
            ds = group.create_dataset(name, data=a.T)
            ds.attrs["MATLAB_class"] = np.bytes_("logical")
            ds.attrs["MATLAB_int_decode"] = np.int32(1)
            return ds
        a = np.asarray(v, dtype=np.float64 if isinstance(v, (int, float)) else None)
        a = a.reshape((1,) * (2 - a.ndim) + a.shape) if a.ndim < 2 else a
        ds = group.create_dataset(name, data=np.ascontiguousarray(a.T))
        ds.attrs["MATLAB_class"] = np.bytes_(_H5_CLASSES[a.dtype.str[1:]])
        return ds


def mat_header(text):
    """The 128-byte MAT header of a v7.3 file."""
    head = text.encode("ascii").ljust(116, b" ")
    return head + b"\0" * 8 + struct.pack("<H", 0x0200) + b"IM"


def write_v73(path, variables, *, subsystem=False):
    """A MAT v7.3 file laid out as MATLAB's ``save -v7.3`` does."""
    import h5py
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        w = _V73Writer(f)
        for k, v in variables.items():
            w.put(f, k, v)
        if subsystem:  # MCOS object data, as in files holding objects
            g = f.create_group("#subsystem#")
            g.create_dataset("MCOS", data=np.zeros((1, 4), np.uint8))
    with open(path, "r+b") as f:
        f.write(mat_header("MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 "
                           "00:00:00 2018 HDF5 schema 1.00 ."))


# --- hostile files --------------------------------------------------------------------------------

def _v5_header():
    text = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018"
    return text.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"


def _tag(mtype, nbytes):
    return struct.pack("<II", mtype, nbytes)


def _element(mtype, payload):
    return _tag(mtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(cls, dims, name, body, *, nbytes=None):
    flags = _element(6, struct.pack("<II", cls, 0))
    dims_el = _element(5, struct.pack("<%di" % len(dims), *dims))
    name_el = _element(1, name.encode("ascii"))
    content = flags + dims_el + name_el + body
    return _tag(14, len(content) if nbytes is None else nbytes) + content


def write_v5_bomb(path, declared_dims, *, zeros=1 << 20):
    """A small MAT v5 file whose ``net.layers{1}.weights{1}`` declares a single array of
    ``declared_dims`` (compressed: a real zlib stream of ``zeros`` zero bytes of its data, then the
    stream ends). A reader that trusts the declaration allocates the whole array."""
    count = 1
    for d in declared_dims:
        count *= d
    data_bytes = count * 4
    padded = data_bytes + (-data_bytes % 8)
    # The array: class single (7), data element miSINGLE (7) of data_bytes bytes.
    weights = _matrix(7, declared_dims, "", _tag(7, data_bytes), nbytes=None)
    inner_len = len(weights) - 8 + padded
    weights = _tag(14, inner_len) + weights[8:]
    bias = _matrix(7, [0, 0], "", _element(7, b""))
    cell_body_len = len(weights) + padded + len(bias)
    cell_el = _matrix(1, [1, 2], "", b"")
    cell_el = _tag(14, len(cell_el) - 8 + cell_body_len) + cell_el[8:]
    names = [b"name", b"type", b"weights"]
    field_len = 32
    struct_fields = (_element(5, struct.pack("<i", field_len))
                     + _element(1, b"".join(n.ljust(field_len, b"\0") for n in names)))
    name_val = _matrix(4, [1, 5], "", _element(4, "conv1".encode("utf-16-le")))
    type_val = _matrix(4, [1, 4], "", _element(4, "conv".encode("utf-16-le")))
    layer_head = _matrix(2, [1, 1], "", struct_fields + name_val + type_val)
    layer_len = len(layer_head) - 8 + len(cell_el) + cell_body_len
    layer_head = _tag(14, layer_len) + layer_head[8:]
    layers_head = _matrix(1, [1, 1], "", b"")
    layers_len = len(layers_head) - 8 + 8 + layer_len
    layers_head = _tag(14, layers_len) + layers_head[8:]
    net_fields = (_element(5, struct.pack("<i", field_len))
                  + _element(1, b"layers".ljust(field_len, b"\0")))
    net_head = _matrix(2, [1, 1], "net", net_fields)
    net_len = len(net_head) - 8 + 8 + layers_len
    net_head = _tag(14, net_len) + net_head[8:]
    prefix = net_head + layers_head + layer_head + cell_el + weights
    z = zlib.compressobj(9)
    compressed = z.compress(prefix)
    chunk = b"\0" * (1 << 20)
    left = min(zeros, data_bytes)
    while left > 0:
        compressed += z.compress(chunk[:min(left, len(chunk))])
        left -= len(chunk)
    compressed += z.compress(b"\0" * (-data_bytes % 8) + bias)
    compressed += z.flush()
    with open(path, "wb") as f:
        f.write(_v5_header() + _tag(15, len(compressed)) + compressed)


def write_v5_cell_bomb(path, declared_cells):
    """A MAT v5 file whose variable ``net`` is a cell array declaring ``declared_cells`` cells
    with no data behind them."""
    body = _matrix(1, [1, declared_cells], "net", b"")
    with open(path, "wb") as f:
        f.write(_v5_header() + body)


def write_v73_bomb(path, declared_shape):
    """A small v7.3 file whose ``net.layers{1}.weights{1}`` is a chunked, compressed single
    dataset of ``declared_shape`` (HDF5 order) with nothing written: reading it allocates it all."""
    import h5py
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        w = refs.create_dataset("w", shape=declared_shape, dtype=np.float32,
                                chunks=(1,) * (len(declared_shape) - 2) + (64, 64),
                                compression="gzip")
        w.attrs["MATLAB_class"] = np.bytes_("single")
        b = refs.create_dataset("b", data=np.zeros((1, 1), np.float32))
        b.attrs["MATLAB_class"] = np.bytes_("single")
        weights = refs.create_dataset("weights", data=np.array([[w.ref], [b.ref]],
                                                               dtype=h5py.ref_dtype))
        weights.attrs["MATLAB_class"] = np.bytes_("cell")
        layer = refs.create_group("layer")
        layer.attrs["MATLAB_class"] = np.bytes_("struct")
        layer["weights"] = weights
        t = layer.create_dataset("type", data=np.array([[ord(c)] for c in "conv"], np.uint16))
        t.attrs["MATLAB_class"] = np.bytes_("char")
        net = f.create_group("net")
        net.attrs["MATLAB_class"] = np.bytes_("struct")
        layers = net.create_dataset("layers", data=np.array([[layer.ref]], dtype=h5py.ref_dtype))
        layers.attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as f:
        f.write(mat_header("MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 "
                           "00:00:00 2018 HDF5 schema 1.00 ."))
