"""Kernel benchmarks: substitution (Winograd, shifted GEMMs, both col2im layouts), forward
correlation, unpooling. Substitutions count the FLOPs of the form they take."""

import numpy as np
import pytest

import fastdecode as fd

import _util
import models
from _util import DTYPES, THREADS

rng = np.random.default_rng(0)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_substitute_vgg_layer(measure, dtype, threads):
    """A chain step at VGG-16 size (Winograd): 8 maps 512x28x28 through 512x512x3x3 weights."""
    df = rng.standard_normal((8, 512, 28, 28)).astype(dtype)
    w = rng.standard_normal((512, 512, 3, 3)).astype(dtype)
    flops, path = _util.substitute_work(df.shape, w.shape, dtype)
    assert path == "winograd"
    measure(lambda: fd.substitute(df, w, n_threads=threads), flops, dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_substitute_wide_layer(measure, dtype, threads):
    """Chain steps on wide maps: 8 maps 128x92x92 through 128x128x3x3 weights (Winograd), and the
    merged 2x2 unpooling + conv of 8 maps 128x46x46 (4x4 weights at stride 2, shifted GEMMs)."""
    df = rng.standard_normal((8, 128, 92, 92)).astype(dtype)
    w = rng.standard_normal((128, 128, 3, 3)).astype(dtype)
    half = rng.standard_normal((8, 128, 46, 46)).astype(dtype)
    w4 = rng.standard_normal((128, 128, 4, 4)).astype(dtype)
    flops, path = _util.substitute_work(df.shape, w.shape, dtype)
    merged, path4 = _util.substitute_work(half.shape, w4.shape, dtype, stride=2)
    assert (path, path4) == ("winograd", "phased")
    flops += merged
    measure(lambda: (fd.substitute(df, w, n_threads=threads),
                     fd.substitute(half, w4, stride=2, n_threads=threads)), flops, dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_substitute_recursive_step(measure, dtype, threads):
    """A recursive step at VGG-16 conv5 size: 32 filters' weights onto decoded maps 3x100x100."""
    w = rng.standard_normal((32, 512, 3, 3)).astype(dtype)
    E = rng.standard_normal((512, 3, 100, 100)).astype(dtype)
    measure(lambda: fd.substitute(w, E, stride=16, n_threads=threads),
            _util.substitute_flops(w.shape, E.shape), dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate_dataset(measure, dtype, threads):
    """Forward correlation of 10,000 28x28 images with 500 decoded filters: a GEMM."""
    x = rng.standard_normal((10000, 1, 28, 28)).astype(dtype)
    f = rng.standard_normal((500, 1, 28, 28)).astype(dtype)
    measure(lambda: fd.correlate(x, f, n_threads=threads),
            _util.correlate_flops(x.shape, f.shape, (1, 1)), dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", ["layer3", "layer5"])
def test_correlate_decoded_lenet(measure, dtype, threads, layer):
    """The public correlate of 10,000 28x28 images with LeNet's decoded layer3 (50 filters
    14x14 at stride 2) or layer5 (500 filters 28x28) filters, the inputs' NaN/inf check
    included: the workload on which checking x from the result instead saved -6.5% to +5.2%."""
    net = models.lenet(dtype)
    x = rng.standard_normal((10000, 1, 28, 28)).astype(dtype)
    D = fd.decode(net, layer, n_threads=threads)
    stride, pad = net.stride(layer), net.padding(layer)
    measure(lambda: fd.correlate(x, D, stride=stride, pad=pad, n_threads=threads),
            _util.correlate_flops(x.shape, D.shape,
                                  fd.correlate(x[:1], D, stride=stride, pad=pad).shape[2:]),
            dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_eq3_dataset(measure, dtype, threads):
    """Eq. 3 of LeNet's layer5 over 10,000 28x28 images (decoded filters given): the forward
    pass and the decoded correlation; FLOPs of the correlations only. extra_info also holds the
    seconds BLAS alone takes for the same GEMMs (same_gemms_seconds)."""
    net = models.lenet(dtype)
    x = rng.standard_normal((10000, 1, 28, 28)).astype(dtype)
    D = fd.decode(net, "layer5", n_threads=threads)
    same, _ = _util.eq3_gemms(net, "layer5", x.shape, dtype, threads)
    measure(lambda: fd.reconstruction_error(net, x, "layer5", decoded=D, n_threads=threads,
                                            progress=False),
            _util.eq3_flops(net, "layer5", x.shape), dtype, threads,
            same_gemms_seconds=_util.best_of(same, 3)[0])


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate_conv_layer(measure, dtype, threads):
    """A 3x3 conv layer: 8 images 64x56x56 with 128 filters, pad 1."""
    x = rng.standard_normal((8, 64, 56, 56)).astype(dtype)
    f = rng.standard_normal((128, 64, 3, 3)).astype(dtype)
    measure(lambda: fd.correlate(x, f, pad=1, n_threads=threads),
            _util.correlate_flops(x.shape, f.shape, (56, 56)), dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "adjoint"])
def test_unpool(measure, dtype, threads, method):
    """Unpooling 64 maps 64x56x56 by 2 (2 FLOPs per tap; a GEMM is not its yardstick)."""
    a = rng.standard_normal((64, 64, 56, 56)).astype(dtype)
    taps = {"nearest": 1, "adjoint": 1, "bilinear": 2, "bicubic": 4}[method]
    # rows pass (H*2 x W outputs) + columns pass (H*2 x W*2 outputs)
    flops = 2.0 * taps * 64 * 64 * (112 * 56 + 112 * 112)
    measure(lambda: fd.unpool(a, 2, method, n_threads=threads), flops, dtype, threads)
