"""Decoding benchmarks: LeNet and VGG-16 (random weights), float32/float64, 1 and all threads."""

import numpy as np
import pytest

import fastdecode as fd

import _util
import models
from _util import ALL_THREADS, DTYPES, THREADS

_nets = {}


def net(name, dtype):
    key = (name, np.dtype(dtype).name)
    if key not in _nets:
        _nets[key] = getattr(models, name)(dtype)
    return _nets[key]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lenet_layer5_all_filters(measure, dtype, threads):
    lenet = net("lenet", dtype)
    out = measure(lambda: fd.decode(lenet, "layer5", n_threads=threads),
                  _util.recursive_flops(lenet, "layer5"), dtype, threads, rounds=10,
                  chain_gflop=_util.decode_flops(lenet, "layer5") / 1e9)
    assert out.shape == (500, 1, 28, 28)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lenet_decode_all(measure, dtype, threads):
    lenet = net("lenet", dtype)
    out = measure(lambda: fd.decode_all(lenet, n_threads=threads), _util.decode_all_flops(lenet),
                  dtype, threads, rounds=10)
    assert len(out) == 4


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer, n_filters", [("conv3_3", 16), ("conv4_3", 4), ("conv5_3", 1)])
def test_vgg16_layer_by_chain(measure, dtype, threads, layer, n_filters):
    vgg = net("vgg16", dtype)
    sel = np.arange(n_filters)
    out = measure(lambda: fd.decode(vgg, layer, filters=sel, n_threads=threads),
                  _util.chain_flops(vgg, layer, n_filters), dtype, threads, rounds=2)
    assert out.shape == (n_filters,) + vgg.decoded_shape(layer)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vgg16_decode_all(measure, full_vgg, dtype):
    vgg = net("vgg16", dtype)
    out = measure(lambda: fd.decode_all(vgg, n_threads=ALL_THREADS), _util.decode_all_flops(vgg),
                  dtype, ALL_THREADS, rounds=1)
    assert sum(a.shape[0] for a in out.values()) == 4224


def test_vgg16_conv5_3_all_filters_peak_memory(measure, full_vgg, benchmark):
    vgg = net("vgg16", np.float32)
    peak, out = _util.peak_memory(lambda: fd.decode(vgg, "conv5_3", n_threads=ALL_THREADS))
    assert out.shape == (512, 3, 196, 196)
    measure(lambda: fd.decode(vgg, "conv5_3", n_threads=ALL_THREADS),
            _util.recursive_flops(vgg, "conv5_3"), np.float32, ALL_THREADS, rounds=1,
            peak_bytes=peak, result_bytes=out.nbytes)
