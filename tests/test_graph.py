"""Graph networks: construction, validation, the forward pass against PyTorch, geometry."""

import numpy as np
import pytest

import fastdecode as fd

torch = pytest.importorskip("torch")
F = torch.nn.functional


def rnd(rng, *shape):
    return rng.standard_normal(shape)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def tconv(x, layer):
    """A fastdecode Conv in torch: correlation with (top, bottom, left, right) zero padding."""
    pt, pb, pl, pr = layer.pad
    x = F.pad(x, (pl, pr, pt, pb))
    b = None if layer.bias is None else t(layer.bias)
    return F.conv2d(x, t(layer.weights), b, stride=layer.stride, dilation=layer.dilate)


def residual_net(rng, C=3, K=4):
    """A ResNet basic block with a projection shortcut at stride 2, then a plain block."""
    return fd.Network([
        fd.Conv(rnd(rng, K, C, 3, 3), rnd(rng, K), stride=2, pad=1, name="c1"),
        fd.BatchNorm(rng.random(K) + 0.5, rnd(rng, K), rnd(rng, K), rng.random(K) + 0.5,
                     name="bn1"),
        fd.ReLU(name="r1"),
        fd.Conv(rnd(rng, K, K, 3, 3), rnd(rng, K), pad=1, name="c2"),
        fd.Conv(rnd(rng, K, C, 1, 1), rnd(rng, K), stride=2, name="proj", inputs="input"),
        fd.Add(inputs=("c2", "proj"), name="sum1"),
        fd.ReLU(name="r2"),
        fd.Conv(rnd(rng, K, K, 3, 3), None, pad=1, name="c3"),
        fd.ReLU(name="r3"),
        fd.Conv(rnd(rng, K, K, 3, 3), None, pad=1, name="c4"),
        fd.Add(inputs=("c4", "r2"), name="sum2"),
        fd.ReLU(name="out"),
    ])


def residual_torch(net, x):
    L = {l.name: l for l in net.layers}
    a, c = L["bn1"].scale_shift()
    h = F.relu(tconv(x, L["c1"]) * t(a)[None, :, None, None] + t(c)[None, :, None, None])
    s1 = tconv(h, L["c2"]) + tconv(x, L["proj"])
    r2 = F.relu(s1)
    h = tconv(F.relu(tconv(r2, L["c3"])), L["c4"])
    return {"sum1": s1, "r2": r2, "out": F.relu(h + r2)}


def test_residual_block_matches_torch():
    rng = np.random.default_rng(1)
    net = residual_net(rng)
    x = rnd(rng, 2, 3, 11, 13)
    want = residual_torch(net, t(x))
    for name, y in want.items():
        np.testing.assert_allclose(net.forward(x, upto=name), y.numpy(), rtol=1e-12, atol=1e-12)
    assert not net.is_chain and net.inputs("sum1") == ("c2", "proj")


def inception_net(rng, C=2):
    return fd.Network([
        fd.Conv(rnd(rng, 3, C, 1, 1), rnd(rng, 3), name="b1"),
        fd.Conv(rnd(rng, 2, C, 1, 1), None, name="b2a", inputs="input"),
        fd.ReLU(name="b2r"),
        fd.Conv(rnd(rng, 4, 2, 3, 3), rnd(rng, 4), pad=1, name="b3"),
        fd.Conv(rnd(rng, 2, C, 5, 5), rnd(rng, 2), pad=2, name="b5", inputs="input"),
        fd.Pool("max", size=3, stride=1, name="pool", inputs="input"),
        fd.Conv(rnd(rng, 1, C, 1, 1), None, pad=1, name="bp"),
        fd.Concat(inputs=("b1", "b3", "b5", "bp"), name="cat"),
        fd.Conv(rnd(rng, 3, 10, 3, 3), None, stride=2, name="top"),
    ])


def test_concatenated_branches_match_torch():
    rng = np.random.default_rng(2)
    net = inception_net(rng)
    L = {l.name: l for l in net.layers}
    x = rnd(rng, 2, 2, 9, 10)
    tx = t(x)
    b3 = tconv(F.relu(tconv(tx, L["b2a"])), L["b3"])
    bp = tconv(F.max_pool2d(tx, 3, 1), L["bp"])
    cat = torch.cat([tconv(tx, L["b1"]), b3, tconv(tx, L["b5"]), bp], dim=1)
    np.testing.assert_allclose(net.forward(x, upto="cat"), cat.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.forward(x), tconv(cat, L["top"]).numpy(), rtol=1e-12,
                               atol=1e-12)
    assert net.channels("cat") == 10


@pytest.mark.parametrize("method", ["avg", "max"])
def test_global_pool_and_linear_head_match_torch(method):
    rng = np.random.default_rng(3)
    W1, b1 = rnd(rng, 5, 4 * 3 * 4), rnd(rng, 5)
    net = fd.Network([
        fd.Conv(rnd(rng, 4, 2, 3, 3), None, stride=2, name="c"),
        fd.Linear(W1, b1, name="fc"),
        fd.ReLU(name="fr"),
        fd.GlobalPool(method, name="gp", inputs="c"),
        fd.Linear(rnd(rng, 3, 4), None, name="fc2"),
        fd.Tanh(name="th"),
    ], input_shape=(2, 7, 9))
    x = rnd(rng, 3, 2, 7, 9)
    c = tconv(t(x), net["c"])
    fc = F.linear(torch.flatten(c, 1), t(W1), t(b1))
    gp = c.mean((2, 3)) if method == "avg" else c.amax((2, 3))
    np.testing.assert_allclose(net.forward(x, upto="fc"), fc.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.forward(x, upto="gp"), gp[:, :, None, None].numpy(),
                               rtol=1e-12, atol=1e-12)
    head = torch.tanh(F.linear(gp, t(net["fc2"].weights)))
    assert net.forward(x).shape == (3, 3)
    np.testing.assert_allclose(net.forward(x), head.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net["fc"].forward(c.numpy()), fc.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
@pytest.mark.parametrize("factor", [2, 3, (2, 3)])
def test_upsample_matches_torch(method, factor):
    rng = np.random.default_rng(4)
    x = rnd(rng, 2, 3, 5, 4)
    net = fd.Network([fd.Upsample(factor, method)], input_channels=3).astype(np.float64)
    kw = {} if method == "nearest" else {"align_corners": False}
    f = factor if isinstance(factor, tuple) else (factor, factor)
    want = F.interpolate(t(x), scale_factor=f, mode=method, **kw)
    np.testing.assert_allclose(net.forward(x), want.numpy(), rtol=1e-12, atol=1e-12)


def test_unet_shaped_graph_matches_torch():
    rng = np.random.default_rng(5)
    net = fd.Network([
        fd.Conv(rnd(rng, 3, 1, 3, 3), rnd(rng, 3), pad=1, name="e1"),
        fd.ReLU(name="er"),
        fd.Pool("max", size=2, name="down"),
        fd.Conv(rnd(rng, 4, 3, 3, 3), rnd(rng, 4), pad=1, name="mid"),
        fd.Upsample(2, "bilinear", name="up"),
        fd.Concat(inputs=("er", "up"), name="cat"),
        fd.Conv(rnd(rng, 2, 7, 3, 3), None, pad=1, name="dec"),
    ])
    x = rnd(rng, 2, 1, 8, 10)
    L = {l.name: l for l in net.layers}
    er = F.relu(tconv(t(x), L["e1"]))
    up = F.interpolate(tconv(F.max_pool2d(er, 2), L["mid"]), scale_factor=2, mode="bilinear",
                       align_corners=False)
    want = tconv(torch.cat([er, up], 1), L["dec"])
    np.testing.assert_allclose(net.forward(x), want.numpy(), rtol=1e-12, atol=1e-12)
    assert "up" in net.summary() and "er,up" in net.summary()


ACTIVATIONS = [
    (fd.LeakyReLU(0.1), lambda x: F.leaky_relu(x, 0.1)),
    (fd.ReLU6(), F.relu6),
    (fd.Clip(-0.5, 0.7), lambda x: torch.clamp(x, -0.5, 0.7)),
    (fd.PReLU([0.1, -0.2, 0.3]), lambda x: F.prelu(x, torch.tensor([0.1, -0.2, 0.3],
                                                                    dtype=x.dtype))),
    (fd.PReLU(0.25), lambda x: F.prelu(x, torch.tensor([0.25], dtype=x.dtype))),
    (fd.Sigmoid(), torch.sigmoid),
    (fd.Tanh(), torch.tanh),
    (fd.SiLU(), F.silu),
    (fd.HardSwish(), F.hardswish),
    (fd.HardSigmoid(), F.hardsigmoid),
    (fd.GELU(), F.gelu),
]


@pytest.mark.parametrize("layer, fn", ACTIVATIONS, ids=lambda v: getattr(v, "type", ""))
def test_activations_match_torch(layer, fn):
    rng = np.random.default_rng(6)
    x = rnd(rng, 2, 3, 5, 5) * 4
    x[0, 0, 0, :3] = [-3.0, 3.0, 0.0]
    net = fd.Network([fd.Conv(np.eye(3)[:, :, None, None]), layer])
    np.testing.assert_allclose(net.forward(x), fn(t(x)).numpy(), rtol=1e-13, atol=1e-14)
    x32 = x.astype(np.float32)
    assert net.astype(np.float32).forward(x32).dtype == np.float32


def test_squeeze_excitation_gate_matches_torch():
    rng = np.random.default_rng(7)
    W1, W2 = rnd(rng, 2, 4), rnd(rng, 4, 2)
    net = fd.Network([
        fd.Conv(rnd(rng, 4, 3, 3, 3), rnd(rng, 4), pad=1, name="c"),
        fd.GlobalPool("avg", name="squeeze"),
        fd.Linear(W1, name="fc1"),
        fd.ReLU(name="fr"),
        fd.Linear(W2, name="fc2"),
        fd.HardSigmoid(name="g"),
        fd.Gate(inputs=("c", "g"), name="gate"),
        fd.Conv(rnd(rng, 2, 4, 1, 1), name="top"),
    ], input_shape=(3, 6, 6))
    x = rnd(rng, 2, 3, 6, 6)
    c = tconv(t(x), net["c"])
    g = F.hardsigmoid(F.linear(F.relu(F.linear(c.mean((2, 3)), t(W1))), t(W2)))
    gated = c * g[:, :, None, None]
    np.testing.assert_allclose(net.forward(x, upto="gate"), gated.numpy(), rtol=1e-12,
                               atol=1e-12)
    assert net.forward(x, upto="g").shape == (2, 4)
    np.testing.assert_allclose(net.forward(x), tconv(gated, net["top"]).numpy(), rtol=1e-12,
                               atol=1e-12)


def test_shared_tensor_is_not_overwritten_in_place():
    """A ReLU working in place must not overwrite a tensor another layer still reads."""
    rng = np.random.default_rng(8)
    net = fd.Network([fd.Conv(rnd(rng, 2, 1, 3, 3), name="c"), fd.ReLU(name="r"),
                      fd.Dropout(name="d", inputs="c"), fd.ReLU(name="r2"),
                      fd.Add(inputs=("c", "r", "r2"), name="s")])
    x = rnd(rng, 1, 1, 6, 6)
    c = net.forward(x, upto="c")
    np.testing.assert_array_equal(net.forward(x), c + 2 * np.maximum(c, 0))
    x0 = x.copy()
    net.forward(x)
    np.testing.assert_array_equal(x, x0)
    net = fd.Network([fd.ReLU(inputs="input", name="r"), fd.Add(inputs=("input", "r"))],
                     input_channels=1).astype(np.float64)
    np.testing.assert_array_equal(net.forward(x), x + np.maximum(x, 0))
    np.testing.assert_array_equal(x, x0)


def test_forward_is_bitwise_the_same_for_1_and_2_threads():
    rng = np.random.default_rng(9)
    net = residual_net(rng, C=3, K=8)
    x = rnd(rng, 2, 3, 32, 32)
    for name in ("sum1", "out"):
        np.testing.assert_array_equal(net.forward(x, upto=name, n_threads=1),
                                      net.forward(x, upto=name, n_threads=2))


def test_every_layer_addressable_and_output_shape():
    rng = np.random.default_rng(10)
    net = inception_net(rng)
    x = rnd(rng, 1, 2, 9, 10)
    for layer in net.layers:
        y = net.forward(x, upto=layer.name)
        assert y.shape == net.output_shape(x.shape, upto=layer.name)


def test_aliases_address_a_block_by_its_last_layer():
    rng = np.random.default_rng(11)
    plain = residual_net(rng)
    net = fd.Network(plain.layers, aliases={"block1": "r2", "block2": "out"})
    x = rnd(rng, 1, 3, 9, 9)
    np.testing.assert_array_equal(net.forward(x, upto="block1"), net.forward(x, upto="r2"))
    assert net.index("block2") == net.index("out") == len(net) - 1
    assert net.stride("block1") == net.stride("r2")
    np.testing.assert_array_equal(fd.decode(net, "block1"), fd.decode(net, "r2"))
    assert net.astype(np.float32).aliases == {"block1": "r2", "block2": "out"}
    with pytest.raises(ValueError, match="'c1' is already the name of a layer"):
        fd.Network(plain.layers, aliases={"c1": "r2"})
    with pytest.raises(ValueError, match="names 'nope', which is not a layer"):
        fd.Network(plain.layers, aliases={"b": "nope"})
    with pytest.raises(ValueError, match="the images"):
        fd.Network(plain.layers, aliases={"input": "c1"})
    with pytest.raises(TypeError, match="aliases must be a dict"):
        fd.Network(plain.layers, aliases=[("b", "c1")])


# --- validation ---------------------------------------------------------------------------

def test_unknown_and_later_input_names_are_refused():
    w = np.ones((1, 1, 1, 1))
    with pytest.raises(ValueError, match="'b' reads 'nope', which is not a layer.*earlier.*a"):
        fd.Network([fd.Conv(w, name="a"), fd.Conv(w, name="b", inputs="nope")])
    with pytest.raises(ValueError, match="'a' reads 'b', which is a later layer"):
        fd.Network([fd.Conv(w, name="a", inputs="b"), fd.Conv(w, name="b")])
    with pytest.raises(ValueError, match="reserved"):
        fd.Network([fd.Conv(w, name="input")])
    with pytest.raises(ValueError, match="needs inputs="):
        fd.Add(inputs=("a",))
    with pytest.raises(TypeError, match="inputs"):
        fd.Conv(w, inputs=3)


def test_mismatched_merges_are_refused_naming_layers_and_shapes():
    w = np.ones((2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"add layer 's'.*'a', 'input'.*2x4x4, 1x6x6"):
        fd.Network([fd.Conv(w, name="a"), fd.Add(inputs=("a", "input"), name="s")],
                   input_shape=(1, 6, 6))
    with pytest.raises(ValueError, match=r"concat layer 'c'.*heights and widths.*2x4x4, 1x6x6"):
        fd.Network([fd.Conv(w, name="a"), fd.Concat(inputs=("a", "input"), name="c")],
                   input_shape=(1, 6, 6))
    # without input_shape: caught at the first forward pass
    net = fd.Network([fd.Conv(w, name="a"), fd.Concat(inputs=("a", "input"), name="c")])
    with pytest.raises(ValueError, match=r"concat layer 'c'.*2x4x4, 1x6x6"):
        net.forward(np.ones((1, 1, 6, 6)))
    with pytest.raises(ValueError, match="add layer 's'.*2x4x4, 2x2x2"):
        fd.Network([fd.Conv(w, name="a"), fd.Conv(np.ones((2, 2, 3, 3)), name="b"),
                    fd.Add(inputs=("a", "b"), name="s")],
                   input_shape=(1, 6, 6))


def test_linear_and_global_layers_check_their_input():
    with pytest.raises(ValueError, match=r"linear layer 'fc'.*D = 10.*\(2, 3, 3\) has 18"):
        fd.Network([fd.Linear(np.ones((4, 10)), name="fc")], input_shape=(2, 3, 3))
    with pytest.raises(ValueError, match=r"layer 'gp' \(globalpool\).*input_shape"):
        fd.Network([fd.Conv(np.ones((1, 1, 1, 1))), fd.GlobalPool(name="gp")])
    with pytest.raises(ValueError, match=r"layer 'fc' \(linear\).*input_shape"):
        fd.Network([fd.Conv(np.ones((1, 1, 1, 1))), fd.Linear(np.ones((2, 4)), name="fc")])
    net = fd.Network([fd.Linear(np.ones((4, 18)), name="fc")], input_shape=(2, 3, 3))
    with pytest.raises(ValueError, match=r"linear layer 'fc'.*D = 18.*has 32"):
        net.forward(np.ones((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="gate layer 'g'"):
        fd.Network([fd.Conv(np.ones((2, 1, 1, 1)), name="a"), fd.Gate(inputs=("a", "a"),
                                                                      name="g")],
                   input_shape=(1, 4, 4))


def test_branches_of_different_strides_are_refused_in_geometry():
    w = np.ones((1, 1, 3, 3))
    net = fd.Network([fd.Conv(w, stride=2, name="a"),
                      fd.Conv(np.ones((1, 1, 7, 7)), name="b", inputs="input"),
                      fd.Concat(inputs=("a", "b"), name="c")], input_shape=(1, 10, 10))
    with pytest.raises(ValueError, match="concat layer 'c'.*a, b.*2x2, 1x1"):
        net.stride("c")
    assert net.forward(np.ones((1, 1, 10, 10))).shape == (1, 2, 4, 4)


# --- geometry -----------------------------------------------------------------------------

def _brute_geometry(net, name, x_shape):
    """The image pixels each unit of ``name`` depends on, by perturbing the linear twin."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    base = net.forward(x, upto=name)
    dep = {}
    for i in range(x_shape[2]):
        for j in range(x_shape[3]):
            x2 = x.copy()
            x2[0, :, i, j] += 1.0
            d = np.abs(net.forward(x2, upto=name) - base)[0].sum(0) > 1e-12
            for u, v in zip(*np.nonzero(d)):
                dep.setdefault((u, v), []).append((i, j))
    return base.shape, dep


def test_union_box_geometry():
    """The decoded box of a unit covers what it reads, at stride and padding offsets, and the
    correlation with that box has the forward output's shape."""
    rng = np.random.default_rng(11)
    net = fd.Network([
        fd.Conv(rnd(rng, 2, 1, 3, 3), stride=2, pad=1, name="a"),
        fd.Conv(rnd(rng, 2, 1, 1, 1), stride=2, name="b", inputs="input"),
        fd.Conv(rnd(rng, 2, 1, 5, 5), stride=2, pad=(0, 4, 1, 3), name="c", inputs="input"),
        fd.Add(inputs=("a", "b", "c"), name="s"),
        fd.Conv(rnd(rng, 2, 2, 3, 3), pad=1, name="top"),
    ])
    for name in ("s", "top"):
        S, P, R = net.stride(name), net.padding(name), net.receptive_field(name)
        for H, W in ((9, 11), (10, 12)):
            shape, dep = _brute_geometry(net, name, (1, 1, H, W))
            y = fd.correlate(np.ones((1, 1, H, W)), np.ones((1, 1) + R), stride=S, pad=P)
            assert y.shape[2:] == shape[2:]
            for (u, v), pix in dep.items():
                for i, j in pix:
                    assert 0 <= i - (u * S[0] - P[0]) < R[0]
                    assert 0 <= j - (v * S[1] - P[2]) < R[1]
    assert net.padding("s") == (1, 4, 1, 3) and net.receptive_field("s") == (6, 5)
