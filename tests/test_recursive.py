"""Layer-recursive decoding (decode_all, and decode where it is cheaper) against the chain.

The chain (one substitution and unpooling walk per filter, ``decode_with_bias``, and the literal
reference of tests/reference.py on small nets) is the reference; the recursion must agree with
it to rounding for every conv layer, for nearest and adjoint unpooling, float32 and float64,
strided convs, overlapping and padded pools, dilation, groups and bnorm.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd
from fastdecode._engine import chain, cost, recursion, resample

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as ref  # noqa: E402

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def chain_cost(net, idx, n_filters):
    """FLOPs of the literal chain: unpoolings merged with no conv, every substitution counted
    in full (as by GEMM + col2im)."""
    plan = chain.ChainPlan(net, idx, resample.METHODS["bilinear"])
    return cost.chain_flops(plan, n_filters, path="col2im")


def _agree(a, b, dtype):
    scale = float(np.abs(b).max())
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=RTOL[dtype] * max(scale, 1e-30))


def _chain(net, layer, unpool):
    """Decoded filters by the chain alone (decode_with_bias always walks the chain)."""
    return fd.decode_with_bias(net, layer, unpool=unpool).filters


def _conv(rng, K, C, k, dtype, **kw):
    return fd.Conv(rng.standard_normal((K, C, k, k)).astype(dtype), **kw)


def lenet(dtype, rng):
    return fd.Network([
        _conv(rng, 20, 1, 5, dtype), fd.Pool("max", size=2),
        _conv(rng, 50, 20, 5, dtype), fd.Pool("max", size=2),
        _conv(rng, 500, 50, 4, dtype), fd.ReLU(),
        _conv(rng, 10, 500, 1, dtype), fd.Softmax()])


def vgg_small(dtype, rng, width=(4, 5, 6, 6, 6)):
    """VGG-16's 13 conv layers (3x3, pad 1, 2x2 max pools), few channels."""
    layers, c = [], 3
    for block, n_convs in enumerate((2, 2, 3, 3, 3)):
        for i in range(n_convs):
            layers += [_conv(rng, width[block], c, 3, dtype, pad=1,
                             name="conv%d_%d" % (block + 1, i + 1)), fd.ReLU()]
            c = width[block]
        if block < 4:
            layers.append(fd.Pool("max", size=2, name="pool%d" % (block + 1)))
    return fd.Network(layers)


def odd_net(dtype, rng):
    """Strided and dilated convs, grouped conv, overlapping and padded pools, bnorm, LRN."""
    return fd.Network([
        fd.Pool("avg", size=2, stride=1),                               # a pool on the image
        _conv(rng, 6, 2, 3, dtype, stride=2, pad=(1, 0, 2, 1)),
        fd.BatchNorm(rng.uniform(0.5, 2, 6), rng.standard_normal(6), rng.standard_normal(6),
                     rng.uniform(0.5, 2, 6)),
        fd.ReLU(), fd.LRN(3),
        fd.Pool("max", size=3, stride=2, pad=1),                        # overlapping, padded
        fd.Conv(rng.standard_normal((8, 3, 2, 3)).astype(dtype), dilate=(2, 1)),  # 2 groups
        fd.Dropout(),
        fd.Pool("avg", size=(2, 3), stride=(1, 2)),
        _conv(rng, 5, 8, 2, dtype, stride=(1, 2)),
        fd.Pool("max", size=2), fd.Pool("avg", size=3, stride=2),
        _conv(rng, 4, 5, 2, dtype)], input_channels=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("unpool", ["nearest", "adjoint"])
def test_decode_all_matches_chain_lenet(dtype, unpool):
    net = lenet(dtype, np.random.default_rng(0))
    out = fd.decode_all(net, unpool=unpool)
    assert list(out) == net.conv_layers == ["layer1", "layer3", "layer5", "layer7"]
    for name, D in out.items():
        assert D.dtype == dtype
        assert D.shape == (net[name].num_filters,) + net.decoded_shape(name)
        _agree(D, _chain(net, name, unpool), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_all_matches_chain_vgg_shaped(dtype):
    net = vgg_small(dtype, np.random.default_rng(1))
    out = fd.decode_all(net)
    assert list(out) == net.conv_layers and len(out) == 13
    assert out["conv5_3"].shape == (6, 3, 196, 196)
    for name, D in out.items():
        _agree(D, _chain(net, name, "nearest"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("unpool", ["nearest", "adjoint"])
def test_decode_all_matches_chain_strided_overlapping_padded(dtype, unpool):
    net = odd_net(dtype, np.random.default_rng(2))
    assert net[6].groups == 2
    out = fd.decode_all(net, unpool=unpool)
    for name, D in out.items():
        _agree(D, _chain(net, name, unpool), dtype)


def _specs(rng):
    return [
        {"type": "conv", "w": rng.standard_normal((3, 2, 3, 3)), "stride": 2, "pad": 1},
        {"type": "relu"},
        {"type": "pool", "method": "avg", "size": 3, "stride": 2},
        {"type": "conv", "w": rng.standard_normal((4, 3, 2, 2)), "dilate": 2},
        {"type": "pool", "method": "max", "size": 2, "stride": 1},
        {"type": "conv", "w": rng.standard_normal((2, 4, 2, 3)), "stride": (1, 2)},
    ]


@pytest.mark.parametrize("unpool", ["nearest", "adjoint"])
def test_decode_all_matches_literal_reference(unpool):
    specs = _specs(np.random.default_rng(3))
    net = ref.to_fastdecode(specs, 2)
    out = fd.decode_all(net, unpool=unpool)
    for i in (0, 3, 5):
        _agree(out[net.layers[i].name], ref.decode(specs, i, 2, unpool), np.float64)


@pytest.mark.parametrize("unpool", ["bilinear", "bicubic"])
def test_decode_all_uses_the_chain_for_interpolating_unpooling(unpool):
    net = lenet(np.float64, np.random.default_rng(4))
    out = fd.decode_all(net, unpool=unpool)
    for name, D in out.items():
        np.testing.assert_array_equal(D, fd.decode(net, name, unpool=unpool))
        _agree(D, _chain(net, name, unpool), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_routes_and_agrees_with_chain_on_subsets(dtype):
    net = vgg_small(dtype, np.random.default_rng(5), width=(4, 4, 8, 8, 16))
    for layer, filters in (("conv3_3", None), ("conv5_3", [3, 0, 15]), ("conv5_3", [7]),
                           ("conv4_1", np.arange(8) % 2 == 0)):
        got = fd.decode(net, layer, filters=filters)
        _agree(got, fd.decode_with_bias(net, layer, filters=filters).filters, dtype)


def test_cost_model_prefers_recursion_for_many_filters_and_chain_for_one():
    net = vgg_small(np.float32, np.random.default_rng(6), width=(64, 128, 256, 512, 512))
    idx = net.index("conv5_3")
    # all 4,224 filters of VGG-16 by the recursion: about 0.92 TFLOP
    total = sum(cost.recursion_cost(net, net.index(n), net[n].num_filters)[0]
                for n in ["conv5_3"])
    assert 0.5e12 < total < 1.5e12
    one_chain = chain_cost(net, idx, 1)
    assert 10e9 < one_chain < 20e9      # about 14.8 GFLOP per conv5_3 filter
    assert cost.recursion_cost(net, idx, 512)[0] < chain_cost(net, idx, 512)
    assert cost.recursion_cost(net, idx, 1)[0] > one_chain


def test_recursive_cost_counts_the_substitutions():
    rng = np.random.default_rng(7)
    net = fd.Network([_conv(rng, 4, 3, 3, np.float64), fd.Pool("max", size=2),
                      _conv(rng, 5, 4, 2, np.float64)])
    flops, peak = cost.recursion_cost(net, 2, 5)
    # box sum: 4 maps x 3 channels x 3x3 pixels x 4 taps x 2; substitution: 2*5*4*2*2*3*4*4
    assert flops == 2 * 4 * 3 * 9 * 4 + 2 * 5 * 4 * 4 * 3 * 4 * 4
    assert peak > 0
    assert chain_cost(net, 2, 1) > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_all_bitwise_identical_for_any_thread_count(dtype):
    net = odd_net(dtype, np.random.default_rng(8))
    one = fd.decode_all(net, n_threads=1)
    two = fd.decode_all(net, n_threads=2)
    assert all(np.array_equal(one[k], two[k]) for k in one)
    lenet_net = lenet(dtype, np.random.default_rng(9))
    a = fd.decode(lenet_net, "layer5", n_threads=1)
    b = fd.decode(lenet_net, "layer5", n_threads=2)
    assert np.array_equal(a, b)


def test_decode_all_memory_limit_and_bad_input():
    net = lenet(np.float32, np.random.default_rng(10))
    with pytest.raises(MemoryError, match="memory limit"):
        fd.decode_all(net, memory_limit=100_000)
    with pytest.raises(ValueError, match="unpool"):
        fd.decode_all(net, unpool="lanczos")
    with pytest.raises(TypeError, match="Network"):
        fd.decode_all([net.layers[0]])
    # decode falls back to the chain, in chunks, when the recursion would not fit the budget
    small = fd.decode(net, "layer5", memory_limit=2_000_000)
    _agree(small, fd.decode(net, "layer5"), np.float32)


def test_decode_all_refuses_layers_it_cannot_pass():
    rng = np.random.default_rng(11)
    net = fd.Network([_conv(rng, 3, 1, 3, np.float64), fd.Softmax(name="prob"),
                      _conv(rng, 2, 3, 1, np.float64)])
    with pytest.raises(ValueError, match="prob"):
        fd.decode_all(net)


def test_box_sum_is_the_substitution_of_identity_boxes():
    rng = np.random.default_rng(12)
    E = rng.standard_normal((3, 2, 4, 5))
    eye = np.zeros((3, 3, 2, 3))
    eye[np.arange(3), np.arange(3)] = 1.0
    expected = ref.substitute(eye, E, (3, 2))  # the identity as 2x3 boxes onto E at stride 3x2
    np.testing.assert_allclose(resample.box_sum(E, (2, 3), (3, 2)), expected, atol=1e-14)
    np.testing.assert_allclose(resample.box_sum(E, (2, 3), (3, 2), 1 / 6), expected / 6,
                               atol=1e-14)


def test_decode_takes_the_recursion_only_where_it_is_cheaper(monkeypatch):
    from fastdecode import decoding
    net = vgg_small(np.float32, np.random.default_rng(13), width=(16, 16, 32, 32, 32))
    top = net.index("conv5_3")
    calls = []
    walk = recursion.walk

    def spy(*args, **kwargs):
        calls.append(args[1])
        return walk(*args, **kwargs)

    monkeypatch.setattr(recursion, "walk", spy)
    plan = chain.ChainPlan(net, top, resample.METHODS["nearest"])  # box unpoolings merged
    assert cost.chain_flops(plan, 1) < chain_cost(net, top, 1)      # cheaper than unmerged
    assert cost.recursion_cost(net, top, 32)[0] < cost.chain_flops(plan, 32)
    assert cost.recursion_cost(net, top, 1)[0] > cost.chain_flops(plan, 1)
    fd.decode(net, "conv5_3")                      # all 32 filters: the recursion
    assert calls == [top]
    fd.decode(net, "conv5_3", filters=[2])         # one filter: the chain
    fd.decode(net, "conv3_1", unpool="bilinear")   # not shift-equivariant: the chain
    fd.decode_with_bias(net, "conv3_1")            # biases: the chain
    assert calls == [top]
