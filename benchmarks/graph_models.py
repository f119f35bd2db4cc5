"""Graph networks for the benchmarks, built with fastdecode layers (random weights): a
ResNet-50 (torchvision's layer shapes) and a MobileNetV2 (torchvision's, as in
tests/torch_models.py), and their linear twins in PyTorch for the autograd baseline."""

import sys
import time
from pathlib import Path

import numpy as np

import fastdecode as fd


def _builder(rng, dtype):
    def conv(K, C, k, s, p, name, inputs=None):
        w = (rng.standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
        return fd.Conv(w, None, stride=s, pad=p, name=name, inputs=inputs)

    def bn(K, name):
        return fd.BatchNorm((rng.random(K) + 0.5).astype(dtype),
                            (0.1 * rng.standard_normal(K)).astype(dtype),
                            (0.1 * rng.standard_normal(K)).astype(dtype),
                            (rng.random(K) + 0.5).astype(dtype), name=name)
    return conv, bn


def resnet50(dtype=np.float32, seed=0, size=224):
    """torchvision's ResNet-50: a 7x7 stem at stride 2, a 3x3 max pool at stride 2,
    bottlenecks [3, 4, 6, 3] (1x1, 3x3 at the stage's stride, 1x1 to 4x the width, beside an
    identity or a 1x1 projection shortcut at the stride), global average pooling, fc."""
    rng = np.random.default_rng(seed)
    conv, bn = _builder(rng, dtype)
    layers = [conv(64, 3, 7, 2, 3, "conv1"), bn(64, "bn1"), fd.ReLU(name="relu"),
              fd.Pool("max", size=3, stride=2, pad=1, name="maxpool")]
    prev, C = "maxpool", 64
    for s_i, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                    (512, 3, 2))):
        for b in range(blocks):
            n = "layer%d.%d." % (s_i + 1, b)
            s = stride if b == 0 else 1
            layers += [conv(planes, C, 1, 1, 0, n + "conv1", prev), bn(planes, n + "bn1"),
                       fd.ReLU(name=n + "relu1"),
                       conv(planes, planes, 3, s, 1, n + "conv2"), bn(planes, n + "bn2"),
                       fd.ReLU(name=n + "relu2"),
                       conv(4 * planes, planes, 1, 1, 0, n + "conv3"), bn(4 * planes, n + "bn3")]
            shortcut = prev
            if b == 0:
                layers += [conv(4 * planes, C, 1, s, 0, n + "downsample.0", prev),
                           bn(4 * planes, n + "downsample.1")]
                shortcut = n + "downsample.1"
            layers += [fd.Add(inputs=(n + "bn3", shortcut), name=n + "add"),
                       fd.ReLU(name=n + "relu")]
            prev, C = n + "relu", 4 * planes
    layers += [fd.GlobalPool("avg", name="avgpool"),
               fd.Linear((rng.standard_normal((1000, C)) / np.sqrt(C)).astype(dtype), None,
                         name="fc")]
    return fd.Network(layers, input_shape=(3, size, size))


MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(dtype=np.float32, seed=0, size=224):
    """torchvision's MobileNetV2 (width 1.0): a 3x3 stem at stride 2, inverted residual blocks
    (1x1 expansion, 3x3 depthwise at the stride, 1x1 projection; added to the block's input
    where stride 1 keeps the width), a 1x1 conv to 1280, global average pooling, fc."""
    rng = np.random.default_rng(seed)
    conv, bn = _builder(rng, dtype)

    def cba(K, C, k, s, name, inputs=None, groups=1):
        return [conv(K, C // groups, k, s, (k - 1) // 2, name + ".0", inputs),
                bn(K, name + ".1"), fd.ReLU6(name=name + ".2")]
    layers = cba(32, 3, 3, 2, "features.0")
    prev, C, f = "features.0.2", 32, 1
    for t, c, n, s in MOBILENET_V2:
        for i in range(n):
            name = "features.%d.conv" % f
            hidden = C * t
            block, j, src = [], 0, prev
            if t != 1:
                block += cba(hidden, C, 1, 1, "%s.%d" % (name, j), src)
                j, src = j + 1, None
            block += cba(hidden, hidden, 3, s if i == 0 else 1, "%s.%d" % (name, j), src,
                         groups=hidden)
            block += [conv(c, hidden, 1, 1, 0, "%s.%d" % (name, j + 1)),
                      bn(c, "%s.%d" % (name, j + 2))]
            layers += block
            out = "%s.%d" % (name, j + 2)
            if (s if i == 0 else 1) == 1 and C == c:
                layers.append(fd.Add(inputs=(out, prev), name="features.%d" % f))
                out = "features.%d" % f
            prev, C, f = out, c, f + 1
    layers += cba(1280, C, 1, 1, "features.%d" % f, prev)
    layers += [fd.GlobalPool("avg", name="avgpool"),
               fd.Linear((rng.standard_normal((1000, 1280)) / np.sqrt(1280)).astype(dtype),
                         None, name="classifier.1")]
    return fd.Network(layers, input_shape=(3, size, size))


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def mobilenet_v2_imported(size=224):
    """torchvision's MobileNetV2 with its ImageNet weights (``../shared/data/torch``), imported
    by :func:`fastdecode.from_torch`; None where the weights or torch are absent."""
    path = SHARED / "torch" / "mobilenet_v2-b0353104.pth"
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    if not path.is_file():
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch_models
    return fd.from_torch(torch_models.load_state(torch_models.mobilenet_v2(), path),
                         (3, size, size))


def open_nsfw_imported():
    """The open-nsfw ResNet-50 (``../shared/data/onnx``, tf2onnx, NHWC), imported by
    :func:`fastdecode.load_onnx`; None where the file or onnx are absent."""
    path = SHARED / "onnx" / "open-nsfw-resnet50.onnx"
    try:
        import onnx  # noqa: F401
    except ImportError:
        return None
    return fd.load_onnx(path) if path.is_file() else None


def twin_gradients(net, name, channels, threads):
    """PyTorch autograd's decoded filters of ``channels`` of conv layer ``name``: the gradient,
    with respect to the image, of a centre unit of each channel of the linear twin (ReLU and
    ReLU6 the identity, pooling a sum pooling, bnorm its scale), the channels batched; the
    image just holds the unit's box. Returns (gradients, seconds)."""
    import torch
    F = torch.nn.functional
    torch.set_num_threads(threads)
    S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
    u, v = -(-P[0] // S[0]), -(-P[2] // S[1])
    H, W = u * S[0] - P[0] + R[0] + S[0], v * S[1] - P[2] + R[1] + S[1]
    n = len(channels)
    top = net.index(name)
    params = {}
    for i in fd._graph.ancestors(net._inputs, top):   # parameters made before timing
        layer = net.layers[i]
        if layer.type == "conv":
            params[i] = torch.from_numpy(np.ascontiguousarray(layer.weights))
        elif layer.decode_role == "scale":
            a, _ = layer.scale_shift()
            params[i] = torch.from_numpy(a.astype(np.float32))[None, :, None, None]
    x = torch.zeros((n, net.input_channels, H, W), dtype=torch.float32, requires_grad=True)
    t0 = time.perf_counter()
    T = {-1: x}
    for i in fd._graph.ancestors(net._inputs, top):
        layer, ins = net.layers[i], [T[s] for s in net._inputs[i]]
        a = ins[0]
        if layer.type == "conv":
            pt, pb, pl, pr = layer.pad
            y = F.conv2d(F.pad(a, (pl, pr, pt, pb)), params[i], stride=layer.stride,
                         groups=layer.groups)
        elif layer.type == "pool":
            pt, pb, pl, pr = layer.pad
            kh, kw = layer.kernel
            y = F.avg_pool2d(F.pad(a, (pl, pr, pt, pb)), layer.kernel,
                             layer.stride) * (kh * kw)
        elif layer.type == "add":
            y = ins[0] + ins[1]
        elif layer.decode_role == "scale":
            y = a * params[i]
        else:
            y = a
        T[i] = y
    sel = torch.as_tensor(channels)
    g, = torch.autograd.grad(T[top][torch.arange(n), sel, u, v].sum(), x)
    seconds = time.perf_counter() - t0
    return g, seconds, (u * S[0] - P[0], v * S[1] - P[2])


def prefix_fitting(net, budget):
    """The first conv layers of ``net`` whose decoded filters (float32) take at most
    ``budget`` bytes together: [names], bytes, their filters, the network's filters."""
    names, total = [], 0
    for name in net.conv_layers:
        b = net.channels(name) * int(np.prod(net.decoded_shape(name))) * net.dtype.itemsize
        if total + b > budget:
            break
        names.append(name)
        total += b
    return names, total, sum(net.channels(n) for n in names), sum(
        net.channels(n) for n in net.conv_layers)


class StepTimer:
    """Times the graph recursion's substitution steps (monkeypatched in): per step its shape,
    groups, FLOPs (2 K J/groups kh kw C0 h w) and seconds."""

    def __init__(self):
        from fastdecode._engine import graph_recursion
        self.module = graph_recursion
        self.steps = []

    def __enter__(self):
        original = self.original = self.module.substitute_groups

        def timed(w, D, out, S, groups, threads):
            t0 = time.perf_counter()
            r = original(w, D, out, S, groups, threads)
            K, J, kh, kw = w.shape
            flops = 2.0 * K * (J // groups) * kh * kw * int(np.prod(D.shape[1:]))
            self.steps.append((w.shape, D.shape, groups, flops, time.perf_counter() - t0))
            return r
        self.module.substitute_groups = timed
        return self

    def __exit__(self, *exc):
        self.module.substitute_groups = self.original

    def gemm_shaped(self):
        return [s for s in self.steps if s[2] == 1]


def numpy_gemm_seconds(steps, dtype=np.float32):
    """Seconds numpy's GEMM takes for every step's product as one GEMM of its shape:
    (K, J kh kw) @ (J kh kw, C0 h w), on operands made beforehand (best of 2)."""
    total = 0.0
    rng = np.random.default_rng(0)
    for wshape, dshape, _, _, _ in steps:
        K, J, kh, kw = wshape
        a = rng.standard_normal((K, J * kh * kw)).astype(dtype)
        b = rng.standard_normal((J * kh * kw, int(np.prod(dshape[1:])))).astype(dtype)
        best = None
        for _ in range(2):
            t0 = time.perf_counter()
            np.dot(a, b)
            t = time.perf_counter() - t0
            best = t if best is None else min(best, t)
        total += best
        del a, b
    return total
