"""The ONNX importer's converters of the ops that move data without computing on it: shapes,
reshapes (flattening, channel shuffles), transposes of the images, zero padding, and
resizing, which becomes :class:`~fastdecode.Upsample` where it is the same map.
"""

import numpy as np

from ._onnx_fold import FoldError, reshape_target, shape_slice
from ._onnx_graph import Act, Virtual, Walker
from .graph_layers import Upsample, interpolation_matrix
from .layers import Conv


def resize_matrix(n, out, scale, mode, coord, nearest):
    """The (out, n) matrix of ONNX ``Resize`` along one axis of n samples (ValueError for a
    coordinate or nearest mode it does not know)."""
    d = np.arange(out, dtype=np.float64)
    if coord in ("half_pixel", "half_pixel_symmetric") or (coord == "pytorch_half_pixel"
                                                            and out > 1):
        if coord == "half_pixel_symmetric" and out != n * scale:
            raise ValueError("half_pixel_symmetric for a fractional size is not supported")
        x = (d + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = np.zeros(out)
    elif coord == "align_corners":
        x = d * (n - 1) / (out - 1) if out > 1 else np.zeros(out)
    elif coord == "asymmetric":
        x = d / scale
    elif coord == "tf_half_pixel_for_nn":
        x = (d + 0.5) / scale
    else:
        raise ValueError("coordinate_transformation_mode %r is not supported" % (coord,))
    m = np.zeros((out, n))
    if mode == "nearest":
        rounding = {"round_prefer_floor": lambda v: np.ceil(v - 0.5),
                    "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                    "floor": np.floor, "ceil": np.ceil}
        if nearest not in rounding:
            raise ValueError("nearest_mode %r is not supported" % (nearest,))
        idx = np.clip(rounding[nearest](x), 0, n - 1).astype(np.intp)
        m[np.arange(out), idx] = 1.0
        return m
    x0 = np.floor(x)
    lam = x - x0
    i0 = np.clip(x0, 0, n - 1).astype(np.intp)
    i1 = np.clip(x0 + 1, 0, n - 1).astype(np.intp)
    np.add.at(m, (np.arange(out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(out), i1), lam)
    return m


class LayoutOps(Walker):
    """Converters of the data-moving ops (a base of :class:`fastdecode._onnx_ops.Converter`)."""

    # --- shapes ---------------------------------------------------------------------------------
    def op_Shape(self, node, a):
        v = self.value(node.input[0])
        full = v.full_shape if isinstance(v, (Act, Virtual)) and v.full_shape else None
        if isinstance(v, Virtual) and v.kind == "nhwc":
            C, H, W = v.src.shape
            full = (v.src.batch, H, W, C)
        if full is None:
            raise self.fail("the shape of this input is not known")
        self.bind(shape_slice(full, a))

    def reshape_to(self, v, target):
        if isinstance(v, Virtual) and v.kind == "flat":
            if target == v.src.full_shape:
                return self.bind(v.src)
            if target == v.full_shape:
                return self.bind(v)
        elif isinstance(v, Virtual) and v.kind == "split":
            x = v.src
            if target == x.full_shape:
                if not v.info[2]:
                    return self.bind(x)
                g, m = v.info[:2]
                C = x.shape[0]
                P = np.zeros((C, C, 1, 1), dtype=self.float_dtype)
                for i in range(g):
                    for j in range(m):
                        P[j * g + i, i * m + j] = 1
                return self.emit(self.make(Conv, P, name=self.layer_name(), inputs=x.layer), x,
                                 nonneg=x.nonneg)
        elif isinstance(v, Virtual) and v.kind == "vec":
            return self.reshape_to(v.src, target)
        elif isinstance(v, Act):
            C, H, W = v.shape
            if target == v.full_shape:
                return self.bind(v)
            N = v.batch
            if (H, W) == (1, 1) and target not in ((N, C), (N, C, 1, 1)) and target[0] == N \
                    and int(np.prod(target)) == C:
                # the C values of a 1x1 map in another shape: only reshaped back to a vector
                return self.bind(Virtual("vec", v.like(False),
                                         full_shape=target))
            if target in ((N, C * H * W), (N, C, 1, 1)) and (H, W) == (1, 1):
                return self.bind(v.like(len(target) == 2))
            if target == (N, C * H * W):
                if (H, W) == (1, 1):
                    return self.bind(v.like(True))
                return self.bind(Virtual("flat", v, full_shape=target))
            if len(target) == 5 and target[3:] == (H, W) and target[1] * target[2] == C \
                    and not v.vector:
                return self.bind(Virtual("split", v, (target[1], target[2], False),
                                         full_shape=target))
        shape = v.full_shape if isinstance(v, (Act, Virtual)) else None
        raise self.fail("reshape of %s to %s is not supported (only flattening a map, channel "
                        "shuffles and reshapes that keep the shape)" % (shape, target))

    def op_Reshape(self, node, a):
        v = self.value(node.input[0])
        if isinstance(v, Virtual) and v.kind in ("nhwc", "pad", "product"):
            self.act(node.input[0])
        shape = [int(s) for s in self.const(node.input[1], "shape").ravel()]
        try:
            target = reshape_target(v.full_shape, shape, a.get("allowzero", 0))
        except FoldError as exc:
            raise self.fail(str(exc)) from None
        self.reshape_to(v, target)

    def op_Flatten(self, node, a):
        v = self.value(node.input[0])
        if isinstance(v, Virtual) and v.kind in ("nhwc", "pad", "product", "split"):
            v = self.act(node.input[0])
        if isinstance(v, np.ndarray):
            raise self.fail("constant input")
        axis = a.get("axis", 1)
        rank = len(v.full_shape)
        if (axis + rank if axis < 0 else axis) != 1:
            raise self.fail("flatten at axis %d: only axis 1 (keeping the batch) is supported"
                            % axis)
        self.reshape_to(v, (v.full_shape[0], int(np.prod(v.full_shape[1:]))))

    def op_Squeeze(self, node, a):
        x = self.act(node.input[0])
        axes = a.get("axes")
        if self.opset >= 13 and len(node.input) > 1 and node.input[1]:
            axes = [int(t) for t in self.const(node.input[1], "axes").ravel()]
        if x.vector or x.shape[1:] != (1, 1) or (axes is not None and
                                                  sorted(t % 4 for t in axes) != [2, 3]):
            raise self.fail("squeeze of %s along %s: only (N, C, 1, 1) to (N, C) is supported"
                            % (x.full_shape, axes))
        self.bind(x.like(True))

    def op_Unsqueeze(self, node, a):
        x = self.act(node.input[0])
        axes = a.get("axes")
        if self.opset >= 13 and len(node.input) > 1:
            axes = [int(t) for t in self.const(node.input[1], "axes").ravel()]
        if not x.vector or axes is None or sorted(t % 4 for t in axes) != [2, 3]:
            raise self.fail("unsqueeze of %s along %s: only (N, C) to (N, C, 1, 1) is supported"
                            % (x.full_shape, axes))
        self.bind(x.like(False))

    def op_Transpose(self, node, a):
        v = self.value(node.input[0])
        perm = list(a.get("perm", []))
        if isinstance(v, Virtual) and v.kind == "nhwc" and perm == [0, 3, 1, 2]:
            return self.bind(v.src)
        if isinstance(v, Virtual) and v.kind == "split" and perm == [0, 2, 1, 3, 4]:
            g, m, t = v.info
            f = v.full_shape
            return self.bind(Virtual("split", v.src, (g, m, not t),
                                     full_shape=(f[0], f[2], f[1]) + f[3:]))
        if isinstance(v, Act) and perm == list(range(len(v.full_shape))):
            return self.bind(v)
        raise self.fail("transpose %s is not supported (only NHWC images to NCHW, and channel "
                        "shuffles)" % (perm,))

    def op_Pad(self, node, a):
        x = self.act(node.input[0])
        if a.get("mode", "constant") != "constant":
            raise self.fail("pad mode %r is not supported (zeros only)" % a["mode"])
        if self.opset < 11:
            pads, value = list(a.get("pads", ())), a.get("value", 0.0)
        else:
            pads = [int(p) for p in self.const(node.input[1], "pads").ravel()]
            c = self.const(node.input[2], "constant_value", required=False) \
                if len(node.input) > 2 else None
            value = 0.0 if c is None or np.size(c) == 0 else float(np.asarray(c).ravel()[0])
            if len(node.input) > 3 and node.input[3]:
                axes = [int(t) % 4 for t in self.const(node.input[3], "axes").ravel()]
                full = [0] * 8
                for k, ax in enumerate(axes):
                    full[ax], full[4 + ax] = pads[k], pads[len(axes) + k]
                pads = full
        if value != 0:
            raise self.fail("padding by %g is not supported (zeros only)" % value)
        if x.vector or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            raise self.fail("pads %s: only non-negative spatial padding of a map is supported"
                            % (pads,))
        pad = (pads[2], pads[6], pads[3], pads[7])
        C, H, W = x.shape
        self.bind(Virtual("pad", x, pad, full_shape=(x.batch, C, H + pad[0] + pad[1],
                                                     W + pad[2] + pad[3])))

    def op_Cast(self, node, a):
        x = self.act(node.input[0])
        if a.get("to") not in (1, 10, 11):
            raise self.fail("cast of the images' path to data type %r is not supported"
                            % a.get("to"))
        self.bind(x)

    def resize(self, scales, sizes, mode, coord, nearest):
        x = self.act(self.node.input[0])
        if x.vector:
            raise self.fail("resizing a vector is not supported")
        full = x.full_shape
        if sizes is not None:
            out = [int(s) for s in sizes.ravel()]
            if len(out) != 4:
                raise self.fail("sizes %s: four sizes (N, C, H, W) are supported" % (out,))
            sc = [o / i for o, i in zip(out, full)]
        elif scales is not None:
            sc = [float(s) for s in scales.ravel()]
            if len(sc) != 4:
                raise self.fail("scales %s: four scales (N, C, H, W) are supported" % (sc,))
            out = [int(np.floor(i * s)) for i, s in zip(full, sc)]
        else:
            raise self.fail("needs scales or sizes")
        if out[:2] != list(full[:2]) or any(o % i for o, i in zip(out[2:], full[2:])):
            raise self.fail("resize of %s to %s: only integer enlargements of the height and "
                            "width are supported" % (full, tuple(out)))
        factor = (out[2] // full[2], out[3] // full[3])
        if mode not in ("nearest", "linear"):
            raise self.fail("resize mode %r is not supported (nearest and linear)" % mode)
        method = "nearest" if mode == "nearest" else "bilinear"
        for axis in (2, 3):
            try:
                m = resize_matrix(full[axis], out[axis], sc[axis], mode, coord, nearest)
            except ValueError as exc:
                raise self.fail(str(exc)) from None
            ours = interpolation_matrix(full[axis], factor[axis - 2], method)
            if not np.allclose(m, ours, atol=1e-6):
                raise self.fail("resize %s with coordinate_transformation_mode %r and "
                                "nearest_mode %r is not the %s upsampling supported (nearest: "
                                "each pixel repeated; linear: half-pixel centres, edges "
                                "clamped)" % (mode, coord, nearest, method))
        self.emit(self.make(Upsample, factor, method, name=self.layer_name(), inputs=x.layer),
                  x, nonneg=x.nonneg)

    def op_Upsample(self, node, a):
        scales = a.get("scales")
        if len(node.input) > 1:
            scales = self.const(node.input[1], "scales")
        self.resize(np.asarray(scales), None, a.get("mode", "nearest"), "asymmetric", "floor")

    def op_Resize(self, node, a):
        ins = list(node.input) + [""] * 4
        if self.opset < 11:
            self.resize(self.const(ins[1], "scales"), None, a.get("mode", "nearest"),
                        "asymmetric", "floor")
            return
        if a.get("antialias", 0) or a.get("axes") is not None or \
                a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise self.fail("antialias, axes and keep_aspect_ratio_policy are not supported")
        scales = self.const(ins[2], "scales", required=False)
        sizes = self.const(ins[3], "sizes", required=False)
        if scales is not None and scales.size == 0:
            scales = None
        self.resize(scales, sizes, a.get("mode", "nearest"),
                    a.get("coordinate_transformation_mode", "half_pixel"),
                    a.get("nearest_mode", "round_prefer_floor"))
