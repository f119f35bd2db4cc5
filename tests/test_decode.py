"""decode against a literal reference chain, and the exactness property of adjoint decoding."""

import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdecode as fd
from fastdecode import decoding
from fastdecode._engine import chain, resample
from fastdecode._engine.recursion import walk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as ref  # noqa: E402
from strategies import conv_indices, network_specs  # noqa: E402

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS = ["nearest", "bilinear", "bicubic", "adjoint"]


def lenet(dtype=np.float32, seed=0):
    """The paper's MNIST LeNet shapes, 0.01 * randn weights as MatConvNet initialises them."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (0.01 * rng.standard_normal(shape)).astype(dtype)
    return fd.Network([fd.Conv(w(20, 1, 5, 5), w(20)), fd.Pool("max", size=2),
                       fd.Conv(w(50, 20, 5, 5), w(50)), fd.Pool("max", size=2),
                       fd.Conv(w(500, 50, 4, 4), w(500)), fd.ReLU(),
                       fd.Conv(w(10, 500, 1, 1), w(10))])


# --- the decoding chain ----------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(METHODS), st.data())
def test_decode_by_winograd_matches_reference_chain(method, data):
    """Networks of 3x3 convs at stride 1 and 6x6 at stride 2 (with pools, bnorm, ...), every
    such substitution by Winograd's method, in float64 and float32, against the reference."""
    exact_windows = method in ("bilinear", "bicubic")
    specs, C0, _ = data.draw(network_specs(max_blocks=3, overlapping_pools=not exact_windows,
                                           winograd_kernels=True))
    for dtype, tol in ((np.float64, 1e-11), (np.float32, 2e-5)):
        net = ref.to_fastdecode(specs, C0).astype(dtype)
        for L in conv_indices(specs):
            K = specs[L]["w"].shape[0]
            with ref.forced_substitution_path("winograd"), \
                    mock.patch.object(decoding, "_decode_recursive", lambda *args: None):
                got = fd.decode(net, L, unpool=method)
            want = ref.decode(specs, L, C0, method)
            assert got.shape == want.shape == (K,) + net.decoded_shape(L)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("path", ["auto", "winograd", "phased", "col2im"])
@SETTINGS
@given(st.sampled_from(METHODS), st.data())
def test_decode_matches_reference_chain(path, method, data):
    """Per-pixel substitution loops and reference unpooling, filter by filter. bilinear and
    bicubic are MATLAB imresize enlargements, defined for windows equal to the stride.
    Every substitution by Winograd's method (where the kernel allows it, the phased GEMMs
    elsewhere), the phased GEMMs, col2im, or as chosen by shape; the first and last filters
    alone are decoded by the chain (with box unpoolings merged into the conv layer below), all
    of them as decode chooses."""
    exact_windows = method in ("bilinear", "bicubic")
    specs, C0, _ = data.draw(network_specs(max_blocks=3, overlapping_pools=not exact_windows))
    net = ref.to_fastdecode(specs, C0)
    for L in conv_indices(specs):
        K = specs[L]["w"].shape[0]
        with ref.forced_substitution_path(path):
            got = fd.decode(net, L, unpool=method)
            with mock.patch.object(decoding, "_decode_recursive", lambda *args: None):
                ends = fd.decode(net, L, unpool=method, filters=[0, K - 1])
        want = ref.decode(specs, L, C0, method)
        assert got.shape == want.shape == (K,) + net.decoded_shape(L)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())
        np.testing.assert_allclose(ends, want[[0, K - 1]], rtol=1e-11,
                                   atol=1e-11 * np.abs(want).max())


@pytest.mark.parametrize("method", METHODS)
def test_decode_lenet_shapes_and_reference(method):
    net = lenet(np.float32)
    shapes = [fd.decode(net, L, unpool=method, filters=[0, 3]).shape
              for L in ("layer1", "layer3", "layer5", "layer7")]
    assert shapes == [(2, 1, 5, 5), (2, 1, 14, 14), (2, 1, 28, 28), (2, 1, 28, 28)]
    specs = [{"type": "conv", "w": l.weights, "b": l.bias} if isinstance(l, fd.Conv) else
             {"type": "pool", "method": "max", "size": 2} if isinstance(l, fd.Pool) else
             {"type": "relu"} for l in net.layers]
    got = fd.decode(net, "layer5", unpool=method, filters=[7, 499])
    assert got.dtype == np.float32
    want = ref.decode(specs, 4, 1, method, filters=[7, 499])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_decode_first_layer_is_the_weights():
    net = lenet(np.float64)
    np.testing.assert_array_equal(fd.decode(net, 0), net.layers[0].weights)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_selection(dtype):
    net = lenet(dtype)
    full = fd.decode(net, "layer3", unpool="bilinear")
    assert full.dtype == dtype and full.shape == (50, 1, 14, 14)
    np.testing.assert_array_equal(fd.decode(net, "layer3", unpool="bilinear", filters=[4, 0, 4]),
                                  full[[4, 0, 4]])
    np.testing.assert_array_equal(fd.decode(net, "layer3", unpool="bilinear", filters=[-1, -50]),
                                  full[[49, 0]])
    np.testing.assert_array_equal(fd.decode(net, "layer3", unpool="bilinear", filters=7),
                                  full[[7]])
    mask = np.zeros(50, dtype=bool)
    mask[[2, 3, 40]] = True
    np.testing.assert_array_equal(fd.decode(net, "layer3", unpool="bilinear", filters=mask),
                                  full[mask])
    both = fd.decode_with_bias(net, "layer3", unpool="adjoint")
    part = fd.decode_with_bias(net, "layer3", unpool="adjoint", filters=[3, -1, 3])
    np.testing.assert_array_equal(part.filters, both.filters[[3, 49, 3]])
    np.testing.assert_array_equal(part.bias, both.bias[[3, 49, 3]])
    assert part.bias.dtype == dtype
    np.testing.assert_array_equal(fd.decoded_bias(net, "layer3", filters=[3], unpool="adjoint"),
                                  both.bias[[3]])
    # one default for both: decoded_bias is decode_with_bias's bias
    np.testing.assert_array_equal(fd.decoded_bias(net, "layer3"),
                                  fd.decode_with_bias(net, "layer3").bias)
    # By index, negative index and name alike.
    np.testing.assert_array_equal(fd.decode(net, 2, unpool="bilinear"), full)
    np.testing.assert_array_equal(fd.decode(net, -5, unpool="bilinear"), full)


@pytest.mark.parametrize("method", METHODS)
def test_empty_filter_mask_decodes_nothing(method):
    net = lenet(np.float64)
    got = fd.decode_with_bias(net, "layer3", unpool=method, filters=np.zeros(50, dtype=bool))
    assert got.filters.shape == (0, 1, 14, 14) and got.bias.shape == (0,)
    assert fd.decode(net, "layer3", unpool=method, filters=np.zeros(50, bool)).shape[0] == 0


def test_decode_in_chunks_equals_decode_at_once(monkeypatch):
    """A memory limit that forces a few filters at a time gives the same bits (LeNet; in
    general the GEMM blocks follow the number of filters, and chunks agree to rounding)."""
    import fastdecode.decoding as decoding
    chunks = []
    chunk_fn = chain.decode_chunk

    def counting(plan, sel, *args):
        chunks.append(len(sel))
        return chunk_fn(plan, sel, *args)
    monkeypatch.setattr(chain, "decode_chunk", counting)
    net = lenet(np.float64)
    full = fd.decode(net, "layer5", unpool="bicubic", filters=range(12))
    assert chunks == [12]
    limit = full.nbytes + 3 * chain.ChainPlan(net, 4, resample.METHODS["bicubic"]).bytes_per_filter
    small = fd.decode(net, "layer5", unpool="bicubic", filters=range(12), memory_limit=limit)
    assert chunks[1:] == [3, 3, 3, 3]
    np.testing.assert_array_equal(small, full)
    chunks.clear()
    full = fd.decode_with_bias(net, "layer5", unpool="adjoint", filters=range(12))
    limit = full.filters.nbytes + 3 * chain.ChainPlan(net, 4, resample.METHODS["adjoint"]).bytes_per_filter
    small = fd.decode_with_bias(net, "layer5", unpool="adjoint", filters=range(12),
                                memory_limit=limit)
    assert chunks == [12, 3, 3, 3, 3]
    np.testing.assert_array_equal(small.filters, full.filters)
    np.testing.assert_array_equal(small.bias, full.bias)


def test_decode_bitwise_identical_for_1_and_2_threads():
    for dtype in (np.float32, np.float64):
        net = lenet(dtype)
        for method in METHODS:
            a = fd.decode(net, "layer5", unpool=method, filters=range(8), n_threads=1)
            b = fd.decode(net, "layer5", unpool=method, filters=range(8), n_threads=2)
            assert np.array_equal(a, b)
            a = fd.decode(net, "layer3", unpool=method, n_threads=1)
            b = fd.decode(net, "layer3", unpool=method, n_threads=2)
            assert np.array_equal(a, b)
        a = fd.decode_with_bias(net, "layer7", unpool="adjoint", n_threads=1)
        b = fd.decode_with_bias(net, "layer7", unpool="adjoint", n_threads=2)
        assert np.array_equal(a.filters, b.filters) and np.array_equal(a.bias, b.bias)


def test_decoded_bias_without_biases_is_zero():
    rng = np.random.default_rng(1)
    net = fd.Network([fd.Conv(rng.standard_normal((3, 2, 3, 3))), fd.Pool("avg", size=2),
                      fd.Conv(rng.standard_normal((4, 3, 2, 2)))])
    np.testing.assert_array_equal(fd.decoded_bias(net, "layer3"), np.zeros(4))


# --- exactness -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["auto", "winograd", "phased", "col2im"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_specs(linear=True, max_blocks=3), st.sampled_from([np.float32, np.float64]))
def test_adjoint_decoding_reproduces_linear_forward(path, case, dtype):
    """Linear nets (conv with biases, groups, dilation and strides; average pooling with
    overlapping windows; bnorm; dropout), zero padding at the first layer only:
    correlate(x, D, stride=S, pad=P) + decoded bias == forward(x, upto=L) everywhere."""
    specs, C0, (H, W) = case
    net = ref.to_fastdecode(specs, C0).astype(dtype)
    x = np.random.default_rng(len(specs)).standard_normal((2, C0, H, W)).astype(dtype)
    for L in conv_indices(specs):
        with ref.forced_substitution_path(path):
            D, bias = fd.decode_with_bias(net, L, unpool="adjoint")
        assert D.dtype == bias.dtype == dtype
        est = fd.correlate(x, D, stride=net.stride(L), pad=net.padding(L)) \
            + bias[None, :, None, None]
        response = net.forward(x, upto=L)
        assert est.shape == response.shape
        want = ref.forward(specs, x.astype(np.float64), L)
        scale = np.abs(want).max() + np.abs(bias).max()
        tol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(est, want, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(response, want, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_network_forms_and_selections_agree(dtype):
    """A network wide enough for the automatic choice to take Winograd's method (64 channels,
    maps of 24 pixels and more) and the shifted GEMMs after it: the chain as chosen, the chain
    all by col2im, the recursion, a selection of filters and chunks agree to rounding."""
    rng = np.random.default_rng(7)

    def w(*shape):
        return rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    net = fd.Network([fd.Conv(w(32, 3, 3, 3)), fd.Pool("avg", size=2), fd.Conv(w(64, 32, 3, 3)),
                      fd.ReLU(), fd.Conv(w(64, 64, 3, 3)), fd.Conv(w(8, 64, 24, 24))],
                     input_channels=3).astype(dtype)
    top = 5
    plan = chain.ChainPlan(net, top, resample.METHODS["nearest"])
    paths = [step.path for step in plan.steps if step.kind == "substitute"]
    assert paths[:2] == ["winograd", "phased"], paths
    tol = 1e-5 if dtype == np.float32 else 1e-12
    by_chain = mock.patch.object(decoding, "_decode_recursive", lambda *args: None)
    with by_chain:
        got = fd.decode(net, top)
        chunked = fd.decode(net, top, memory_limit=got.nbytes + 3 * plan.bytes_per_filter)
        some = fd.decode(net, top, filters=[3, 0])
    with by_chain, ref.forced_substitution_path("col2im"):
        want = fd.decode(net, top)
    recursion = walk(net, top, resample.METHODS["nearest"], 2)[top]
    scale = np.abs(want).max()
    for other in (got, chunked, recursion):
        np.testing.assert_allclose(other, want, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(some, want[[3, 0]], rtol=0, atol=tol * scale)
    assert np.array_equal(fd.decode(net, top, n_threads=1), fd.decode(net, top, n_threads=3))


def test_exactness_interior_with_padding_above_the_first_layer():
    """Padding inside the net feeds zeros where the decoded filter sees image pixels: only
    units whose whole decoded window lies inside the image reproduce the forward."""
    rng = np.random.default_rng(2)
    net = fd.Network([fd.Conv(rng.standard_normal((3, 1, 3, 3)), rng.standard_normal(3)),
                      fd.Pool("avg", size=3, stride=2),
                      fd.Conv(rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4), pad=1)])
    x = rng.standard_normal((2, 1, 21, 21))
    D, bias = fd.decode_with_bias(net, "layer3", unpool="adjoint")
    est = fd.correlate(x, D, stride=net.stride(2), pad=net.padding(2)) + bias[None, :, None, None]
    response = net.forward(x, upto=2)
    # Pad 1 at stride 2 in the image: units 1 .. n-2 see no padding.
    np.testing.assert_allclose(est[..., 1:-1, 1:-1], response[..., 1:-1, 1:-1], rtol=0,
                               atol=1e-12 * np.abs(response).max())
    assert np.abs(est[..., 0, :] - response[..., 0, :]).max() > 1e-3
