"""Network: naming and addressing, forward against a reference forward, geometry by brute force."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastdecode as fd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as ref  # noqa: E402
from strategies import conv_indices, network_specs  # noqa: E402

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def small_net(dtype=np.float64):
    rng = np.random.default_rng(0)
    return fd.Network([
        fd.Conv(rng.standard_normal((4, 2, 3, 3)).astype(dtype)),
        fd.Pool("max", size=2),
        fd.ReLU(),
        fd.Conv(rng.standard_normal((3, 4, 2, 2)).astype(dtype), name="fc"),
    ])


# --- naming and addressing -------------------------------------------------------------------

def test_default_names_are_one_based():
    net = small_net()
    assert [l.name for l in net.layers] == ["layer1", "layer2", "layer3", "fc"]
    assert net.conv_layers == ["layer1", "fc"]


def test_lookup_by_name_index_and_negative_index():
    net = small_net()
    for i, layer in enumerate(net.layers):
        assert net[layer.name] is layer
        assert net[i] is layer
        assert net[i - len(net)] is layer
        assert net.index(layer.name) == i == net.index(i - len(net)) == net.index(np.int64(i))
    assert net.index(net.layers[2]) == 2


def test_unknown_layer_name_lists_the_layers():
    net = small_net()
    with pytest.raises(KeyError, match="layer9.*layer1, layer2, layer3, fc"):
        net.index("layer9")
    with pytest.raises(KeyError, match="conv5"):
        net.forward(np.zeros((1, 2, 8, 8)), upto="conv5")
    with pytest.raises(IndexError, match="4 layers"):
        net.index(4)
    with pytest.raises(IndexError, match="out of range"):
        net.index(-5)
    with pytest.raises(TypeError, match="name or an index"):
        net.index(1.0)
    with pytest.raises(TypeError, match="name or an index"):
        net.index(True)


def test_network_does_not_rename_the_callers_layers():
    conv = fd.Conv(np.ones((1, 1, 2, 2)))
    net = fd.Network([conv, fd.ReLU()])
    assert conv.name is None and net.layers[0].name == "layer1"


def test_duplicate_names_are_refused():
    w = np.ones((1, 1, 1, 1))
    with pytest.raises(ValueError, match="share the name 'a'"):
        fd.Network([fd.Conv(w, name="a"), fd.Conv(w, name="a")])
    # A default name taken by an explicit one is a clash too.
    with pytest.raises(ValueError, match="layer1"):
        fd.Network([fd.Conv(w), fd.Conv(w, name="layer1")])


def test_network_dtype():
    assert small_net(np.float32).dtype == np.float32
    rng = np.random.default_rng(1)
    net = fd.Network([fd.Conv(rng.standard_normal((2, 1, 2, 2)).astype(np.float32)),
                      fd.Conv(rng.standard_normal((2, 2, 2, 2)))])
    assert net.dtype == np.float64
    assert all(l.weights.dtype == np.float64 for l in net.layers)
    assert net.forward(np.ones((1, 1, 4, 4), dtype=np.float32)).dtype == np.float64
    net32 = small_net(np.float32)
    assert net32.forward(np.ones((1, 2, 8, 8))).dtype == np.float32
    assert net32.astype(np.float64).forward(np.ones((1, 2, 8, 8))).dtype == np.float64


def test_summary_lists_every_layer():
    net = small_net()
    text = net.summary()
    for layer in net.layers:
        assert layer.name in text


# --- forward ---------------------------------------------------------------------------------

@SETTINGS
@given(network_specs(max_blocks=3), st.sampled_from([np.float32, np.float64]), st.data())
def test_forward_matches_reference(case, dtype, data):
    specs, C0, (H, W) = case
    net = ref.to_fastdecode(specs, C0).astype(dtype)
    x = np.random.default_rng(len(specs)).standard_normal((2, C0, H, W)).astype(dtype)
    upto = data.draw(st.integers(0, len(specs) - 1))
    got = net.forward(x, upto=upto)
    assert got.dtype == dtype
    want = ref.forward(specs, x.astype(np.float64), upto)
    assert got.shape == want.shape == net.output_shape(x.shape, upto)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


def test_groups_like_alexnet_conv2():
    """Filters of depth 3 on 6 channels: 2 groups of consecutive channels and filters."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    net = fd.Network([fd.Conv(w, b, pad=1)], input_channels=6)
    assert net.layers[0].groups == 2
    x = rng.standard_normal((2, 6, 7, 8))
    got = net.forward(x)
    want = np.concatenate([ref.correlate(x[:, :3], w[:2], 1, 1),
                           ref.correlate(x[:, 3:], w[2:], 1, 1)], axis=1) + b[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(4, 3, 3, 3\).*5 channels"):
        fd.Network([fd.Conv(w)], input_channels=5)
    with pytest.raises(ValueError, match="do not fit"):  # 3 groups do not divide 4 filters
        fd.Network([fd.Conv(w)], input_channels=9)


def test_dilation_inserts_zeros_between_taps():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2, 1, 2, 3))
    x = rng.standard_normal((1, 1, 9, 11))
    net = fd.Network([fd.Conv(w, dilate=(3, 2), stride=(1, 2), pad=(1, 0, 0, 2))])
    dense = np.zeros((2, 1, 4, 5))
    dense[:, :, ::3, ::2] = w
    np.testing.assert_allclose(net.forward(x), ref.correlate(x, dense, (1, 2), (1, 0, 0, 2)),
                               rtol=1e-12, atol=1e-12)
    assert net.receptive_field(0) == (4, 5)


def test_bnorm_forward():
    rng = np.random.default_rng(4)
    gain, bias, mean = rng.standard_normal((3, 3))
    sigma = rng.uniform(0.5, 2, 3)
    net = fd.Network([fd.Conv(np.eye(3).reshape(3, 3, 1, 1)),
                      fd.BatchNorm(gain, bias, mean, sigma)])
    x = rng.standard_normal((2, 3, 4, 5))
    g, b, m, s = (a[None, :, None, None] for a in (gain, bias, mean, sigma))
    want = g * (x - m) / s + b
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_lrn_forward_matches_matconvnet_formula(depth):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 3, 4)) * 3
    net = fd.Network([fd.Conv(np.eye(5).reshape(5, 5, 1, 1)),
                      fd.LRN(depth, kappa=2.0, alpha=1e-2, beta=0.75)])
    np.testing.assert_allclose(net.forward(x), ref.lrn(x, depth, 2.0, 1e-2, 0.75),
                               rtol=1e-13, atol=1e-13)


def test_lrn_window_is_asymmetric_for_even_depth():
    """Depth 2: channel k sums channels k and k+1 (floor((N-1)/2) = 0 below, 1 above)."""
    x = np.zeros((1, 3, 1, 1))
    x[0, 2] = 1.0  # only channel 2 is non-zero
    net = fd.Network([fd.Conv(np.eye(3).reshape(3, 3, 1, 1)), fd.LRN(2, kappa=1.0, alpha=1.0,
                                                                     beta=1.0)])
    y = net.forward(x + np.array([1.0, 1.0, 0.0])[None, :, None, None])
    # channel 1 sees 1^2 + 1^2 = 2 -> 1 / 3; channel 0 sees 1 + 1 = 2 -> 1 / 3; channel 2 sees 1
    np.testing.assert_allclose(y.ravel(), [1 / 3, 1 / 3, 1 / 2], rtol=1e-15)


def test_pool_stride_defaults_to_its_size():
    assert fd.Pool("max", size=3).stride == (3, 3)
    assert fd.Pool("avg", size=(2, 3)).stride == (2, 3)
    assert fd.Pool("avg", size=(2, 3), stride=1).stride == (1, 1)
    x = np.random.default_rng(9).standard_normal((1, 2, 7, 8))
    net = fd.Network([fd.Pool("avg", size=(2, 3))], input_channels=2).astype(np.float64)
    np.testing.assert_allclose(net.forward(x), ref.pool(x, "avg", (2, 3), (2, 3)), rtol=1e-14)


def test_softmax_and_dropout_forward():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 3, 3)) * 5
    net = fd.Network([fd.Conv(np.eye(4).reshape(4, 4, 1, 1)), fd.Dropout(0.5), fd.Softmax()])
    e = np.exp(x)
    np.testing.assert_allclose(net.forward(x), e / e.sum(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_array_equal(net.forward(x, upto=1), x)


def test_forward_bitwise_identical_for_1_and_2_threads():
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        net = fd.Network([
            fd.Conv(rng.standard_normal((6, 3, 3, 3)), rng.standard_normal(6), pad=1),
            fd.BatchNorm(*rng.uniform(0.5, 2, (4, 6))), fd.ReLU(leak=0.1),
            fd.Pool("avg", size=3, stride=2, pad=1), fd.LRN(3),
            fd.Conv(rng.standard_normal((4, 3, 2, 2)), stride=2, dilate=2),
            fd.Pool("max", size=2, stride=1)]).astype(dtype)
        x = rng.standard_normal((3, 3, 19, 17)).astype(dtype)
        assert np.array_equal(net.forward(x, n_threads=1), net.forward(x, n_threads=2))


# --- geometry --------------------------------------------------------------------------------

def positive_version(specs):
    """The same architecture with a strictly positive response to a non-negative impulse:
    positive weights, no biases, bnorm without shift."""
    out = []
    for s in specs:
        s = dict(s)
        if s["type"] == "conv":
            s["w"] = np.abs(s["w"]) + 0.1
            s["b"] = None
        elif s["type"] == "bnorm":
            s["bias"] = s["gain"] * s["mean"] / s["sigma"]
        out.append(s)
    return out


@SETTINGS
@given(network_specs(max_blocks=3), st.data())
def test_geometry_by_perturbing_input_pixels(case, data):
    """Each output unit responds to exactly the pixels rows i*S - P_top ... + R - 1 (cols alike)
    when that window lies inside the image: stride(), padding() and receptive_field() measured."""
    specs, C0, (H, W) = case
    specs = positive_version(specs)
    net = ref.to_fastdecode(specs, C0)
    L = data.draw(st.integers(0, len(specs) - 1))
    S, P, R = net.stride(L), net.padding(L), net.receptive_field(L)
    impulses = np.zeros((H * W, C0, H, W))
    impulses[np.arange(H * W), 0, np.arange(H * W) // W, np.arange(H * W) % W] = 1.0
    response = net.forward(impulses, upto=L)  # (H*W, K, Ho, Wo)
    change = np.abs(response - net.forward(np.zeros((1, C0, H, W)), upto=L))
    hit = (change > 1e-9 * change.max()).any(axis=1).reshape(H, W, *response.shape[2:])
    checked = 0
    for i in range(response.shape[2]):
        top = i * S[0] - P[0]
        for j in range(response.shape[3]):
            left = j * S[1] - P[2]
            rows = np.flatnonzero(hit[:, :, i, j].any(axis=1))
            cols = np.flatnonzero(hit[:, :, i, j].any(axis=0))
            inside = top >= 0 and top + R[0] <= H and left >= 0 and left + R[1] <= W
            if rows.size == 0:  # a unit that sees only padding
                assert not inside
                continue
            # Never outside the nominal window, whatever the borders.
            assert rows.min() >= top and rows.max() <= top + R[0] - 1
            assert cols.min() >= left and cols.max() <= left + R[1] - 1
            if inside:
                assert (rows.min(), rows.max()) == (top, top + R[0] - 1)
                assert (cols.min(), cols.max()) == (left, left + R[1] - 1)
                checked += 1
    assume(checked > 0)


@SETTINGS
@given(network_specs(max_blocks=3))
def test_output_shape_and_padding_match_forward(case):
    """output_shape() is forward's shape, and correlating with the decoded size at the
    cumulative stride and padding gives that shape too (the bottom/right padding)."""
    specs, C0, (H, W) = case
    net = ref.to_fastdecode(specs, C0)
    x = np.random.default_rng(7).standard_normal((1, C0, H, W))
    for L in range(len(specs)):
        want = ref.forward(specs, x, L).shape
        assert net.output_shape(x.shape, L) == want
        S, P, R = net.stride(L), net.padding(L), net.receptive_field(L)
        assert ((H + P[0] + P[1] - R[0]) // S[0] + 1, (W + P[2] + P[3] - R[1]) // S[1] + 1) \
            == want[2:]
    for L in conv_indices(specs):
        assert net.decoded_shape(L) == (C0,) + net.receptive_field(L)


def test_geometry_of_the_paper_lenet():
    net = fd.Network([fd.Conv(np.ones((20, 1, 5, 5))), fd.Pool("max", size=2),
                      fd.Conv(np.ones((50, 20, 5, 5))), fd.Pool("max", size=2),
                      fd.Conv(np.ones((500, 50, 4, 4))), fd.ReLU(),
                      fd.Conv(np.ones((10, 500, 1, 1)))])
    assert [net.receptive_field(i) for i in (0, 2, 4, 6)] == [(5, 5), (14, 14), (28, 28), (28, 28)]
    assert [net.stride(i) for i in (0, 1, 2, 3, 4, 6)] == [(1, 1), (2, 2), (2, 2), (4, 4),
                                                           (4, 4), (4, 4)]
    assert net.output_shape((3, 1, 28, 28)) == (3, 10, 1, 1)
    with pytest.raises(ValueError,
                       match="layer2.*pool.*conv layers: layer1, layer3, layer5, layer7"):
        net.decoded_shape("layer2")


def test_overflow_inside_the_network_names_the_layer():
    rng = np.random.default_rng(11)
    net = fd.Network([fd.Conv(rng.standard_normal((3, 1, 3, 3)).astype(np.float32)),
                      fd.ReLU(), fd.Conv(np.full((2, 3, 1, 1), 1e30, np.float32))])
    x = np.full((1, 1, 5, 5), 1e10, np.float32)
    with pytest.raises(ValueError, match=r"output of layer 'layer3' \(conv 1x1x3x2\) overflows "
                                         r"float32"):
        net.forward(x)
    assert np.isfinite(net.forward(x, upto=1)).all()
    assert np.isfinite(net.astype(np.float64).forward(x)).all()


def test_layer_forward_methods_check_their_input():
    x = np.ones((1, 2, 4, 4))
    x[0, 1, 2, 3] = np.nan
    for layer in (fd.Conv(np.ones((3, 2, 2, 2))), fd.Pool("max"), fd.ReLU()):
        with pytest.raises(ValueError, match="non-finite"):
            layer.forward(x, 1)
    with pytest.raises(ValueError, match="smaller than the pooling window"):
        fd.Pool("max", size=5).forward(np.ones((1, 1, 4, 4)), 1)


def test_layer_outputs_refuse_an_out_that_shares_their_input():
    from fastdecode._engine import maps
    x = np.ones((1, 2, 4, 4))
    with pytest.raises(ValueError, match="share memory"):
        maps.pool_into(x, x.reshape(-1)[:8].reshape(1, 2, 2, 2), "max", (2, 2), (2, 2),
                       (0, 0, 0, 0), 1)
    with pytest.raises(ValueError, match="share memory"):
        maps.relu_into(x, x.view(), 0.0, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        strided = (-np.ones((4, 4)))[:, :3]
        maps.relu_into(strided, strided, 0.0, 1)
    y = np.arange(-16.0, 16.0).reshape(1, 2, 4, 4)
    assert maps.relu_into(y, y, 0.5, 2) is y   # in place, as a network's forward pass does
    np.testing.assert_array_equal(y.reshape(-1), np.r_[np.arange(-8.0, 0, 0.5), np.arange(16.0)])
    with pytest.raises(ValueError, match="shape"):
        maps.relu_into(x, np.empty((1, 2, 4, 3)), 0.0, 1)


def test_forward_leaves_the_images_alone():
    """ReLUs rectify the pass's own outputs in place, never the caller's array (a network that
    starts with a ReLU, or whose ReLU follows a layer passing its input on)."""
    x = np.random.default_rng(3).standard_normal((2, 1, 6, 6))
    keep = x.copy()
    for layers in ([fd.ReLU(), fd.Conv(np.ones((2, 1, 3, 3)))],
                   [fd.Dropout(), fd.ReLU()],
                   [fd.Conv(np.ones((2, 1, 3, 3))), fd.ReLU(), fd.Dropout(), fd.ReLU()]):
        net = fd.Network(layers, input_channels=1).astype(np.float64)  # x is used uncopied
        got = net.forward(x)
        np.testing.assert_array_equal(x, keep)
        assert got.min() >= 0
    net = fd.Network([fd.Dropout(), fd.ReLU()], input_channels=1)
    np.testing.assert_array_equal(net.forward(x), np.maximum(x.astype(net.dtype), 0))

    class Stored(fd.Layer):
        """A layer of one's own returning an array it keeps (read-only or not)."""

        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x, n_threads):
            return self.value

    for writeable in (True, False):
        kept = np.array([[[[-1.0, 2.0], [-3.0, 4.0]]]])
        kept.setflags(write=writeable)
        net = fd.Network([Stored(kept), fd.ReLU()], input_channels=1).astype(np.float64)
        net.layers[0].value = kept
        got = net.forward(np.zeros((1, 1, 2, 2)))
        np.testing.assert_array_equal(kept, [[[[-1.0, 2.0], [-3.0, 4.0]]]])
        np.testing.assert_array_equal(got, [[[[0.0, 2.0], [0.0, 4.0]]]])


def test_overflow_by_the_bias_names_the_layer():
    """A finite correlation that the bias pushes past float32's range is refused too."""
    big = np.finfo(np.float32).max
    net = fd.Network([fd.Conv(np.ones((2, 1, 1, 1), np.float32),
                              np.array([0, big], np.float32))])
    x = np.full((1, 1, 3, 4), big, np.float32)
    x[0, 0, 0, 0] = 1.0
    with pytest.raises(ValueError, match=r"output of layer 'layer1' .* overflows float32"):
        net.forward(x)
    assert np.array_equal(net.forward(x[:, :, :1, :1]), [[[[1.0]], [[big]]]])


def test_layers_have_plain_geometry_attributes():
    conv = fd.Conv(np.ones((2, 1, 3, 3)), stride=2, pad=(1, 0))
    pool = fd.Pool("avg", size=3, stride=2, pad=1)
    assert conv.stride == (2, 2) and conv.pad == (1, 1, 0, 0) and conv.kernel == (3, 3)
    assert pool.stride == (2, 2) and pool.pad == (1, 1, 1, 1) and pool.kernel == (3, 3)
    assert fd.ReLU().stride == (1, 1) and fd.ReLU().pad == (0, 0, 0, 0)
    for layer in (conv, pool, fd.ReLU()):
        assert not hasattr(layer, "stride_") and not hasattr(layer, "pad_")
    assert fd.network.Conv is fd.layers.Conv is fd.Conv


def test_a_new_layer_type_plugs_into_forward_and_decoding():
    """A per-channel gate written against the Layer interface alone: the network runs it and
    decoding scales by it, as for a bnorm layer with the same scale."""
    from fastdecode.layers import Layer

    class Gate(Layer):
        type = "gate"
        decode_role = "scale"
        new_output = True

        def __init__(self, scale, name=None):
            super().__init__(name)
            self.scale = np.asarray(scale, dtype=np.float64)

        def scale_shift(self, dtype=None):
            a = self.scale if dtype is None else self.scale.astype(dtype)
            return a, np.zeros_like(a)

        def run(self, x, threads, *, out=None, memory_limit=None):
            return x * self.scale.astype(x.dtype)[None, :, None, None], True

    rng = np.random.default_rng(4)
    w1, w2 = rng.standard_normal((3, 1, 3, 3)), rng.standard_normal((2, 3, 3, 3))
    scale = np.array([0.5, 2.0, -1.0])
    gated = fd.Network([fd.Conv(w1), Gate(scale), fd.Conv(w2)])
    bnorm = fd.Network([fd.Conv(w1), fd.BatchNorm(scale, np.zeros(3), np.zeros(3), np.ones(3)),
                        fd.Conv(w2)])
    x = rng.standard_normal((2, 1, 9, 9))
    np.testing.assert_allclose(gated.forward(x), bnorm.forward(x), rtol=1e-12)
    np.testing.assert_allclose(fd.decode(gated, "layer3"), fd.decode(bnorm, "layer3"),
                               rtol=1e-12)
    np.testing.assert_allclose(fd.decode_all(gated)["layer3"], fd.decode(bnorm, "layer3"),
                               rtol=1e-12)


def test_subpackages_load_on_first_use_and_matplotlib_does_not(tmp_path):
    import subprocess
    code = ("import sys, fastdecode as fd\n"
            "assert 'matplotlib' not in sys.modules\n"
            "assert 'fastdecode.models' not in sys.modules\n"
            "net = fd.models.load('lenet-mnist')\n"
            "assert isinstance(net, fd.Network) and fd.datasets.__name__ == 'fastdecode.datasets'\n"
            "assert 'matplotlib' not in sys.modules\n")
    import os
    # the package tested here, from outside the source tree (unbuilt in CI)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fd.__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=str(tmp_path))
