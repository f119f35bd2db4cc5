"""Eq. 3 and the paper's other measures against slow, obviously right numpy references."""

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import evaluation as ev


def small_lenet(seed=0, dtype=np.float64):
    """A LeNet-shaped net on 16x16 images with padding, max pooling, a ReLU and biases."""
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return fd.Network([
        fd.Conv(r(4, 1, 3, 3), r(4), pad=1),   # 16x16
        fd.Pool("max", size=2),                # 8x8
        fd.Conv(r(6, 4, 3, 3), r(6)),          # 6x6
        fd.Pool("max", size=2),                # 3x3
        fd.Conv(r(8, 6, 3, 3), r(8)),          # 1x1
        fd.ReLU(),
        fd.Conv(r(3, 8, 1, 1), r(3)),          # 1x1, three "classes"
    ])


def linear_net(seed=1, dtype=np.float64, classes=3):
    """Conv, average pooling, conv: linear, so adjoint decoding with biases is exact."""
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return fd.Network([
        fd.Conv(r(4, 1, 3, 3), r(4)),          # 10x10 -> 8x8
        fd.Pool("avg", size=2),                # 4x4
        fd.Conv(r(classes, 4, 4, 4), r(classes)),  # 1x1
    ])


def images(n, size=16, seed=2):
    return np.random.default_rng(seed).standard_normal((n, 1, size, size))


def correlate_reference(image, filters, stride, pad):
    """Valid correlation of one image (C, H, W) with filters (K, C, h, w), by loops."""
    pt, pb, pl, pr = pad
    x = np.pad(image, ((0, 0), (pt, pb), (pl, pr)))
    K, C, h, w = filters.shape
    sy, sx = stride
    Ho = (x.shape[1] - h) // sy + 1
    Wo = (x.shape[2] - w) // sx + 1
    out = np.zeros((K, Ho, Wo))
    for k in range(K):
        for i in range(Ho):
            for j in range(Wo):
                out[k, i, j] = np.sum(x[:, i * sy:i * sy + h, j * sx:j * sx + w] * filters[k])
    return out


def normalise_reference(a):
    lo, hi = float(np.min(a)), float(np.max(a))
    return np.zeros_like(a) if hi == lo else (a - lo) / (hi - lo)


def eq3_reference(net, x, layer, unpool, bias=False):
    """Eq. 3 image by image: (per-image errors, per-filter errors)."""
    dec = fd.decode_with_bias(net, layer, unpool=unpool)
    per_image, per_filter = [], []
    for image in x:
        R = net.forward(image[None], upto=layer)[0].astype(np.float64)
        D = correlate_reference(image, dec.filters.astype(np.float64), net.stride(layer),
                                net.padding(layer))
        if bias:
            D = D + dec.bias[:, None, None]
        sq = (normalise_reference(R) - normalise_reference(D)) ** 2
        per_image.append(sq.mean())
        per_filter.append(sq.mean(axis=(1, 2)))
    return np.array(per_image), np.mean(per_filter, axis=0)


@pytest.mark.parametrize("layer", ["layer1", "layer3", "layer5", "layer7"])
@pytest.mark.parametrize("unpool", ["nearest", "bicubic"])
def test_reconstruction_error_matches_per_image_reference(layer, unpool):
    net = small_lenet()
    x = images(7)
    got = fd.reconstruction_error(net, x, layer, unpool=unpool, progress=False)
    per_image, per_filter = eq3_reference(net, x, layer, unpool)
    np.testing.assert_allclose(got.per_image, per_image, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.per_filter, per_filter, rtol=1e-10, atol=1e-14)
    assert got.mean == pytest.approx(per_image.mean(), rel=1e-10)
    assert got.std == pytest.approx(per_image.std(), rel=1e-10)
    assert got[:2] == (got.mean, got.std)
    assert got.n_constant == (0, 0)
    assert got.mean == pytest.approx(got.per_filter.mean(), rel=1e-10)


@pytest.mark.parametrize("layer", ["c2", "c3"])
def test_reconstruction_error_of_a_graph_matches_per_image_reference(layer):
    rng = np.random.default_rng(5)
    net = fd.Network([
        fd.Conv(rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4), pad=1, name="c1"),
        fd.ReLU(name="r"),
        fd.Conv(rng.standard_normal((4, 4, 3, 3)), rng.standard_normal(4), pad=1, name="c2"),
        fd.Add(inputs=("c2", "r"), name="sum"),
        fd.Pool("avg", size=2, name="p"),
        fd.Conv(rng.standard_normal((5, 4, 3, 3)), name="c3")])
    x = images(6)
    got = fd.reconstruction_error(net, x, layer, unpool="adjoint", progress=False)
    per_image, per_filter = eq3_reference(net, x, layer, "adjoint")
    np.testing.assert_allclose(got.per_image, per_image, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.per_filter, per_filter, rtol=1e-10, atol=1e-14)
    table = fd.table1(net, x, layers=["c2", "c3"], methods=("nearest",), progress=False)
    assert set(table) == {("c2", "nearest"), ("c3", "nearest")}


def test_reconstruction_error_float32_close_to_float64():
    net64 = small_lenet()
    net32 = net64.astype(np.float32)
    x = images(5)
    a = fd.reconstruction_error(net64, x, "layer3", progress=False)
    b = fd.reconstruction_error(net32, x.astype(np.float32), "layer3", progress=False)
    np.testing.assert_allclose(b.per_image, a.per_image, rtol=1e-3, atol=1e-6)


def test_exact_on_linear_network_with_adjoint_unpooling_and_bias():
    net = linear_net()
    x = images(6, size=10)
    exact = fd.reconstruction_error(net, x, "layer3", unpool="adjoint", bias=True,
                                    progress=False)
    assert exact.mean < 1e-20 and np.all(exact.per_filter < 1e-20)
    # the decoded bias is what makes it exact: without it the layer's biases are missing
    without = fd.reconstruction_error(net, x, "layer3", unpool="adjoint", progress=False)
    assert without.mean > 1e-4
    per_image, _ = eq3_reference(net, x, "layer3", "adjoint", bias=True)
    np.testing.assert_allclose(exact.per_image, per_image, atol=1e-20)


def test_batching_does_not_change_results():
    net = small_lenet()
    x = images(11)
    whole = fd.reconstruction_error(net, x, "layer3", progress=False)
    for bs in (1, 3, 4, 100):
        part = fd.reconstruction_error(net, x, "layer3", batch_size=bs, progress=False)
        np.testing.assert_allclose(part.per_image, whole.per_image, rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(part.per_filter, whole.per_filter, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_that_pass_their_input_on_do_not_alias_the_batch_arrays(dtype):
    """Dropout (and its like) returns its input: the conv after it must not write over it.
    A VGG-like head (fc, ReLU, dropout, fc, ReLU, dropout, fc), several batches."""
    rng = np.random.default_rng(21)
    r = lambda *s: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(dtype)  # noqa
    net = fd.Network([
        fd.Conv(r(6, 1, 3, 3), r(6)), fd.ReLU(), fd.Dropout(),           # 8x8 -> 6x6
        fd.Conv(r(6, 6, 3, 3), r(6)), fd.Dropout(), fd.ReLU(),           # 4x4
        fd.Conv(r(6, 6, 1, 1), r(6)), fd.ReLU(), fd.Dropout(),           # 4x4, same size
        fd.Conv(r(3, 6, 4, 4), r(3)),                                    # 1x1
    ])
    x = images(7, size=8).astype(dtype)
    R = net.forward(x)
    scores = fd.filter_scores(net, x, batch_size=3, progress=False)
    np.testing.assert_array_equal(scores.network, R.max(axis=(2, 3)))
    for layer in ("layer4", "layer7", "layer10"):
        got = fd.reconstruction_error(net, x, layer, batch_size=2, progress=False)
        per_image, _ = eq3_reference(net.astype(np.float64), x.astype(np.float64), layer,
                                     "nearest")
        tol = 1e-5 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got.per_image, per_image, rtol=tol, atol=tol)


def test_threads_do_not_change_results():
    net = small_lenet(dtype=np.float32)
    x = images(6).astype(np.float32)
    one = fd.reconstruction_error(net, x, "layer5", n_threads=1, progress=False)
    two = fd.reconstruction_error(net, x, "layer5", n_threads=2, progress=False)
    np.testing.assert_array_equal(one.per_image, two.per_image)


def test_given_decoded_filters_are_used():
    net = small_lenet()
    x = images(4)
    D = fd.decode(net, "layer3", unpool="bilinear")
    a = fd.reconstruction_error(net, x, "layer3", decoded=D, progress=False)
    b = fd.reconstruction_error(net, x, "layer3", unpool="bilinear", progress=False)
    np.testing.assert_allclose(a.per_image, b.per_image, rtol=1e-12)
    with pytest.raises(ValueError, match="layer3.*shape"):
        fd.reconstruction_error(net, x, "layer3", decoded=D[:, :, :-1], progress=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eq3_sums_match_the_definition(dtype):
    """The compiled Eq. 3 sums against normalise_reference, with constant R and D images, and
    the same bits for 1 and 3 threads."""
    from fastdecode._engine import eq3
    rng = np.random.default_rng(5)
    R = rng.standard_normal((7, 4, 3, 5)).astype(dtype)
    D = (R + rng.standard_normal(R.shape)).astype(dtype)
    R[2] = 1.5
    D[4] = -2.0
    R[6] = D[6] = 0.0
    per_image, per_filter, constant = eq3.eq3_sums(R, D, 1)
    for n in range(7):
        sq = (normalise_reference(R[n].astype(np.float64))
              - normalise_reference(D[n].astype(np.float64))) ** 2
        assert per_image[n] == pytest.approx(sq.mean(), rel=1e-13, abs=1e-300)
        np.testing.assert_allclose(per_filter[n], sq.sum(axis=(1, 2)), rtol=1e-13, atol=1e-300)
    assert constant.tolist() == [[n in (2, 6), n in (4, 6)] for n in range(7)]
    again = eq3.eq3_sums(R, D, 3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (per_image, per_filter, constant)))


def test_constant_maps_are_rescaled_to_zero_and_counted():
    net = small_lenet()
    x = np.zeros((3, 1, 16, 16))  # D = 0 everywhere, R = the biases' effect
    got = fd.reconstruction_error(net, x, "layer3", progress=False)
    assert got.n_constant == (0, 3)
    R = net.forward(x, upto="layer3")
    expect = [np.mean(normalise_reference(r) ** 2) for r in R]
    np.testing.assert_allclose(got.per_image, expect, rtol=1e-12)


def test_table1_equals_reconstruction_error_per_layer_and_method():
    net = small_lenet()
    x = images(5)
    table = fd.table1(net, x, methods=("nearest", "bilinear"), batch_size=2, progress=False)
    assert list(table) == [(l, m) for l in ("layer3", "layer5", "layer7")
                           for m in ("nearest", "bilinear")]
    for (layer, method), r in table.items():
        one = fd.reconstruction_error(net, x, layer, unpool=method, progress=False)
        np.testing.assert_allclose(r.per_image, one.per_image, rtol=1e-12)


@pytest.mark.parametrize("call", [
    lambda net: fd.reconstruction_error(net, images(2), "layer2", progress=False),
    lambda net: fd.reconstruction_error(net, np.zeros((2, 3, 16, 16)), "layer3", progress=False),
    lambda net: fd.reconstruction_error(net, np.zeros((0, 1, 16, 16)), "layer3", progress=False),
    lambda net: fd.reconstruction_error(net, images(2), "layer3", unpool="linear",
                                        progress=False),
    lambda net: fd.reconstruction_error(net, images(2)[0], "layer3", progress=False),
])
def test_bad_inputs_raise_value_errors(call):
    with pytest.raises(ValueError):
        call(small_lenet())


def test_channel_mismatch_names_the_images_shape():
    with pytest.raises(ValueError, match=r"images have 3 channels but the network expects 1 "
                                         r"\(images \(5, 3, 16, 16\)\)"):
        fd.reconstruction_error(small_lenet(), np.zeros((5, 3, 16, 16)), "layer3", progress=False)


def test_unknown_layer_raises_key_error():
    with pytest.raises(KeyError, match="no layer named 'conv9'"):
        fd.reconstruction_error(small_lenet(), images(2), "conv9", progress=False)


# --- scores, Figure 1, classifier, top images -------------------------------------------------

def test_filter_scores_match_forward_and_correlation():
    net = small_lenet()
    x = images(6)
    s = fd.filter_scores(net, x, "layer3", unpool="bilinear", batch_size=4, progress=False)
    R = net.forward(x, upto="layer3").max(axis=(2, 3))
    D = fd.decode(net, "layer3", unpool="bilinear")
    Dr = np.array([correlate_reference(i, D, net.stride("layer3"), net.padding("layer3"))
                   for i in x]).max(axis=(2, 3))
    np.testing.assert_allclose(s.network, R, rtol=1e-12)
    np.testing.assert_allclose(s.decoded, Dr, rtol=1e-10, atol=1e-12)
    assert s.layer == "layer3"
    top = fd.filter_scores(net, x, progress=False)
    assert top.layer == "layer7" and top.network.shape == (6, 3)


def test_max_activation_matrix_reference():
    rng = np.random.default_rng(3)
    scores = ev.FilterScores(rng.standard_normal((20, 4)), rng.standard_normal((20, 4)), "L")
    m = fd.max_activation_matrix(scores)
    for S, M, best in ((scores.network, m.network, m.network_images),
                       (scores.decoded, m.decoded, m.decoded_images)):
        for j in range(4):
            assert best[j] == max(range(20), key=lambda n: S[n, j])
            for i in range(4):
                assert M[i, j] == S[best[j], i]
        # each filter's row peaks on its own image (the diagonal)
        np.testing.assert_array_equal(M.max(axis=1), np.diag(M))


def synthetic_classes(net, n, seed=4, noise=0.3):
    """Images made of one decoded top filter each (the class) plus noise, and their labels."""
    rng = np.random.default_rng(seed)
    D = fd.decode(net, net.conv_layers[-1], unpool="adjoint")
    D = D / np.abs(D).max(axis=(1, 2, 3), keepdims=True)
    labels = rng.integers(0, D.shape[0], n)
    x = D[labels] + noise * rng.standard_normal((n,) + D.shape[1:])
    return x, labels


def test_classifier_accuracy_of_decoded_filters_on_synthetic_classes():
    net = linear_net(classes=4)
    x, labels = synthetic_classes(net, 60)
    s = fd.filter_scores(net, x, unpool="adjoint", bias=True, progress=False)
    acc = fd.classifier_accuracy(s, labels)
    # reference: class k scores the image's dot product with decoded filter k plus its bias
    dec = fd.decode_with_bias(net, "layer3", unpool="adjoint")
    ref_scores = np.einsum("nchw,kchw->nk", x, dec.filters) + dec.bias
    ref_pred = ref_scores.argmax(axis=1)
    np.testing.assert_array_equal(acc.decoded_predictions, ref_pred)
    assert acc.decoded == np.mean(ref_pred == labels)
    # the net is linear and decoding exact, so the net predicts the same
    np.testing.assert_array_equal(acc.network_predictions, ref_pred)
    assert acc.network == acc.decoded
    assert acc.decoded > 0.6  # well above chance (0.25) on these separable classes


def test_classifier_accuracy_without_bias_and_with_relu():
    net = small_lenet()
    x = images(30, seed=5)
    labels = np.random.default_rng(6).integers(0, 3, 30)
    s = fd.filter_scores(net, x, progress=False)
    acc = fd.classifier_accuracy(s, labels)
    D = fd.decode(net, "layer7")
    ref = np.array([correlate_reference(i, D, net.stride("layer7"), net.padding("layer7"))
                    for i in x]).reshape(30, 3).argmax(axis=1)
    np.testing.assert_array_equal(acc.decoded_predictions, ref)
    net_pred = net.forward(x).reshape(30, 3).argmax(axis=1)
    assert acc.network == np.mean(net_pred == labels)
    with pytest.raises(ValueError, match="labels"):
        fd.classifier_accuracy(s, labels[:-1])
    with pytest.raises(ValueError, match="labels"):
        fd.classifier_accuracy(s, labels + 3)


def test_top_images_reference_and_overlap():
    network = np.array([[5., 0], [4, 1], [3, 2], [2, 3], [1, 4], [0, 5]])
    decoded = np.array([[5., 5], [0, 4], [4, 3], [3, 2], [1, 1], [2, 0]])
    t = fd.top_images(ev.FilterScores(network, decoded, "L"), k=3)
    np.testing.assert_array_equal(t.network, [[0, 1, 2], [5, 4, 3]])
    np.testing.assert_array_equal(t.decoded, [[0, 2, 3], [0, 1, 2]])
    np.testing.assert_allclose(t.overlap, [2 / 3, 0])
    with pytest.raises(ValueError, match="k=7"):
        fd.top_images(ev.FilterScores(network, decoded, "L"), k=7)


def test_top_images_match_sorting_on_a_network():
    net = small_lenet()
    x = images(25, seed=7)
    s = fd.filter_scores(net, x, "layer5", progress=False)
    t = fd.top_images(s, k=5)
    for f in range(8):
        assert set(t.network[f]) == set(np.argsort(s.network[:, f])[-5:])
        assert set(t.decoded[f]) == set(np.argsort(s.decoded[:, f])[-5:])
        assert t.overlap[f] == len(set(t.network[f]) & set(t.decoded[f])) / 5


# --- self-consistency ------------------------------------------------------------------------

def test_self_consistency_on_a_linear_network_is_the_gram_matrix():
    net = fd.Network([l for l in linear_net(classes=5).layers])
    net.layers[0].bias = None
    net.layers[2].bias = None
    D = fd.decode(net, "layer3", unpool="adjoint")
    sc = fd.self_consistency(net, unpool="adjoint")
    gram = np.einsum("ichw,jchw->ij", D, D)
    np.testing.assert_allclose(sc.responses, gram, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(sc.winners, gram.argmax(axis=1))
    assert sc.fraction == np.mean(gram.argmax(axis=1) == np.arange(5))


def test_self_consistency_with_relu_and_biases():
    net = small_lenet()
    sc = fd.self_consistency(net, "layer5")
    D = fd.decode(net, "layer5")
    R = net.forward(D, upto="layer5").max(axis=(2, 3))
    np.testing.assert_allclose(sc.responses, R, rtol=1e-12)
    assert sc.fraction == np.mean(R.argmax(axis=1) == np.arange(8))


def test_threshold_filters_reference():
    f = np.array([[[[1.0, -0.4], [0.6, -2.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    got = fd.threshold_filters(f, 0.6)
    np.testing.assert_array_equal(got, [[[[0, 0], [0, -2.0]]], [[[0, 0], [0, 0]]]])
    np.testing.assert_array_equal(fd.threshold_filters(f, 0.25), [[[[1.0, 0], [0.6, -2.0]]],
                                                                  [[[0, 0], [0, 0]]]])
    with pytest.raises(ValueError, match="fraction"):
        fd.threshold_filters(f, 1.5)


def test_progress_bars_go_to_stderr_and_can_be_disabled(capsys):
    net = small_lenet()
    x = images(6)
    fd.reconstruction_error(net, x, "layer3", batch_size=2, progress=True)
    fd.table1(net, x, batch_size=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "Eq. 3 layer3" in err and "Table 1" in err and "/6 " in err
    fd.reconstruction_error(net, x, "layer3", batch_size=2, progress=False)
    fd.filter_scores(net, x, progress=False)
    assert capsys.readouterr() == ("", "")


# --- arguments checked before any work ---------------------------------------------------------

def test_given_decoded_filters_must_have_the_layers_decoded_shape():
    net = small_lenet()
    x = images(3)
    D = fd.decode(net, "layer5")
    s = fd.filter_scores(net, x, "layer5", decoded=D, progress=False)
    np.testing.assert_allclose(s.decoded, fd.filter_scores(net, x, "layer5",
                                                           progress=False).decoded, rtol=1e-10)
    # filters of another size would be correlated at other positions: refused, not scored
    for bad in (D[:, :, :-3, :-3], D[:-1], np.zeros((8, 1, 30, 30))):
        for call in (lambda: fd.filter_scores(net, x, "layer5", decoded=bad, progress=False),
                     lambda: fd.self_consistency(net, "layer5", decoded=bad),
                     lambda: fd.reconstruction_error(net, x, "layer5", decoded=bad,
                                                     progress=False)):
            with pytest.raises(ValueError, match=r"'layer5' must have shape \(8, 1, 18, 18\)"):
                call()


def test_images_too_small_are_refused_naming_the_layer():
    net = small_lenet()
    for call in (lambda x: fd.reconstruction_error(net, x, "layer5", progress=False),
                 lambda x: fd.table1(net, x, progress=False),
                 lambda x: fd.filter_scores(net, x, "layer5", progress=False)):
        with pytest.raises(ValueError, match=r"images of 4x4 are too small for layer 'layer3'"):
            call(images(2, size=4))


def test_memory_is_checked_per_image_not_per_data_set():
    net = small_lenet(dtype=np.float32)
    # one image of 20,000 x 20,000 pixels would need 6 GiB at layer 1: refused before any work
    with pytest.raises(MemoryError, match="layer1"):
        fd.reconstruction_error(net, np.broadcast_to(np.float32(0), (1, 1, 20000, 20000)),
                                "layer1", progress=False)
    # many small images are fine: they are processed in batches
    got = fd.reconstruction_error(net, images(40), "layer3", batch_size=8, progress=False)
    assert got.per_image.shape == (40,)


def test_table1_arguments():
    net = small_lenet()
    x = images(3)
    one = fd.table1(net, x, layers="layer5", methods="bilinear", progress=False)
    assert list(one) == [("layer5", "bilinear")]
    np.testing.assert_allclose(one[("layer5", "bilinear")].per_image,
                               fd.reconstruction_error(net, x, "layer5", unpool="bilinear",
                                                       progress=False).per_image, rtol=1e-12)
    twice = fd.table1(net, x, layers=["layer5", "layer5"], methods=["nearest", "nearest"],
                      progress=False)
    assert list(twice) == [("layer5", "nearest")]
    with pytest.raises(ValueError, match="layers is empty"):
        fd.table1(net, x, layers=[], progress=False)
    with pytest.raises(ValueError, match="methods is empty"):
        fd.table1(net, x, methods=(), progress=False)


def test_scores_must_be_non_empty_and_of_one_shape():
    for network, decoded in ((np.zeros((0, 3)), np.zeros((0, 3))),
                             (np.zeros((4, 3)), np.zeros((4, 2))),
                             (np.zeros(4), np.zeros(4))):
        s = ev.FilterScores(network, decoded, "L")
        with pytest.raises(ValueError, match=r"non-empty \(N, K\) arrays of one shape"):
            fd.max_activation_matrix(s)
        with pytest.raises(ValueError, match=r"non-empty \(N, K\) arrays of one shape"):
            fd.classifier_accuracy(s, np.zeros(len(network), int))
        with pytest.raises(ValueError, match=r"non-empty \(N, K\) arrays of one shape"):
            fd.top_images(s, 1)


def test_a_network_without_conv_layers_is_refused_clearly():
    net = fd.Network([fd.Pool("avg", size=2), fd.ReLU()], input_channels=1)
    x = images(2)
    for call in (lambda: fd.filter_scores(net, x, progress=False),
                 lambda: fd.self_consistency(net),
                 lambda: fd.table1(net, x, progress=False)):
        with pytest.raises(ValueError, match="no conv layer"):
            call()
    one = fd.Network([fd.Conv(np.ones((2, 1, 3, 3)))])
    with pytest.raises(ValueError, match="a single conv layer"):
        fd.table1(one, x, progress=False)


def test_overflow_is_refused_not_averaged_into_nan():
    net = small_lenet(dtype=np.float32)
    x = images(3).astype(np.float32) * np.float32(3e37)
    with pytest.raises(ValueError, match="overflows float32"):
        fd.reconstruction_error(net, x, "layer3", progress=False)


def test_rescale_per_image_maps_each_image_to_0_1_and_constant_ones_to_zeros():
    maps = np.stack([np.arange(24.0).reshape(2, 3, 4) - 5, np.full((2, 3, 4), 7.0)])
    out, constant = ev.rescale_per_image(maps.astype(np.float32))
    assert out.dtype == np.float64 and out.shape == maps.shape
    np.testing.assert_allclose(out[0], (maps[0] - maps[0].min()) / np.ptp(maps[0]))
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(constant, [False, True])
    np.testing.assert_allclose(out[0], normalise_reference(maps[0]))


def test_decoded_response_is_the_correlation_at_the_layer_grid_plus_bias():
    net = small_lenet()
    x = images(2)
    dec = fd.decode_with_bias(net, "layer5")
    D = ev.decoded_response(net, x, "layer5", dec.filters, dec.bias, 1)
    assert D.shape == net.forward(x, upto="layer5").shape
    plain = ev.decoded_response(net, x, 4, dec.filters, None, None)
    np.testing.assert_allclose(D - plain, np.broadcast_to(dec.bias[None, :, None, None], D.shape),
                               rtol=1e-10, atol=1e-10)


def _block_graph(seed=5):
    """Residual block, pooling and a concatenation; only the first conv pads, no activation:
    linear, so adjoint decoding with biases is exact everywhere at every layer."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal
    return fd.Network([
        fd.Conv(r((4, 1, 3, 3)), r(4), pad=1, name="c1"),
        fd.Conv(r((4, 4, 1, 1)), r(4), name="c2"),
        fd.Conv(r((4, 4, 1, 1)), r(4), name="proj", inputs="c1"),
        fd.Add(inputs=("c2", "proj"), name="sum"),
        fd.Pool("avg", size=2, name="pool"),
        fd.Conv(r((2, 4, 1, 1)), r(2), name="a", inputs="pool"),
        fd.Conv(r((3, 4, 2, 2)), r(3), stride=2, name="b", inputs="pool"),
        fd.Conv(r((2, 2, 2, 2)), r(2), stride=2, name="a2", inputs="a"),
        fd.Concat(inputs=("a2", "b"), name="cat")])


@pytest.mark.parametrize("layer", ["sum", "pool", "cat"])
def test_reconstruction_error_at_a_blocks_sum_pool_or_concatenation(layer):
    """Eq. 3 is measured at any layer decoding starts from, not only conv layers: against the
    per-image reference, and exact (with adjoint unpooling and biases) on a linear graph."""
    net = _block_graph()
    x = images(5)
    got = fd.reconstruction_error(net, x, layer, unpool="nearest", progress=False)
    per_image, per_filter = eq3_reference(net, x, layer, "nearest")
    assert got.per_filter.shape == (net.channels(layer),)
    np.testing.assert_allclose(got.per_image, per_image, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.per_filter, per_filter, rtol=1e-10, atol=1e-14)
    exact = fd.reconstruction_error(net, x, layer, unpool="adjoint", bias=True, progress=False)
    assert exact.mean < 1e-20
    assert fd.reconstruction_error(net, x, layer, unpool="adjoint", progress=False).mean > 1e-6
    table = fd.table1(net, x, layers=[layer, "c2"], methods=("nearest",), progress=False)
    assert table[(layer, "nearest")].mean == pytest.approx(got.mean, rel=1e-12)
    scores = fd.filter_scores(net, x, layer, progress=False)
    R = net.forward(x, upto=layer).max(axis=(2, 3))
    np.testing.assert_allclose(scores.network, R, rtol=1e-12)
    assert scores.decoded.shape == R.shape


def test_a_linear_layers_vector_is_not_measured():
    rng = np.random.default_rng(0)
    net = fd.Network([fd.Conv(rng.standard_normal((3, 1, 3, 3)), name="c"),
                      fd.Linear(rng.standard_normal((4, 3 * 6 * 6)), name="fc")],
                     input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="'fc' is a linear layer"):
        fd.reconstruction_error(net, images(2, size=8), "fc", progress=False)
