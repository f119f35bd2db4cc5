"""The shipped LeNets: exact architecture, the files read independently with scipy, preprocessing,
and accuracy on real data where it is present."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io

import fastdecode as fd
from fastdecode import models
from fastdecode.datasets import FASHION_CLASSES, MNIST_CLASSES, fashion_sample, load_directory

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MODELS_DIR = Path(models.__file__).resolve().parent
NAMES = ["lenet-fashion", "lenet-mnist"]
CLASSES = {"lenet-mnist": list(MNIST_CLASSES), "lenet-fashion": list(FASHION_CLASSES)}


@pytest.fixture(scope="module", params=NAMES)
def shipped(request):
    return request.param, models.load(request.param)


def accuracy(net, images, labels):
    logits = net.forward(models.preprocess(net, images))
    assert logits.shape == (len(images), 10, 1, 1)
    return float((logits.reshape(len(images), 10).argmax(1) == labels).mean())


def test_available_and_unknown():
    assert models.available() == NAMES
    with pytest.raises(KeyError, match="lenet-cifar.*lenet-fashion, lenet-mnist"):
        models.load("lenet-cifar")
    with pytest.raises(KeyError, match="available models"):
        models.load(None)


def test_load_returns_a_fresh_network():
    a, b = models.load("lenet-mnist"), models.load("lenet-mnist")
    assert a is not b and a.layers[0] is not b.layers[0]
    np.testing.assert_array_equal(a.layers[0].weights, b.layers[0].weights)


def test_exact_architecture(shipped):
    name, net = shipped
    assert isinstance(net, fd.Network)
    expected = [("conv", (20, 1, 5, 5)), ("pool", 2), ("conv", (50, 20, 5, 5)), ("pool", 2),
                ("conv", (500, 50, 4, 4)), ("relu", None), ("conv", (10, 500, 1, 1))]
    assert [layer.type for layer in net.layers] == [kind for kind, _ in expected]
    for layer, (kind, spec) in zip(net.layers, expected):
        if kind == "conv":
            assert layer.weights.shape == spec and layer.weights.dtype == np.float32
            assert layer.bias is not None and layer.bias.shape == (spec[0],)
            assert layer.stride == (1, 1) and layer.pad == (0, 0, 0, 0)
            assert layer.dilate == (1, 1) and layer.groups == 1
            assert np.abs(layer.weights).max() > 0 and np.isfinite(layer.weights).all()
        elif kind == "pool":
            assert layer.method == "max" and layer.size == (2, 2) and layer.stride == (2, 2)
            assert layer.pad == (0, 0, 0, 0)
        else:
            assert layer.leak == 0
    assert net.dtype == np.float32 and net.input_channels == 1
    assert net.conv_layers == ["layer1", "layer3", "layer5", "layer7"]
    assert net.receptive_field("layer7") == (28, 28) and net.stride("layer7") == (4, 4)
    assert net.output_shape((3, 1, 28, 28)) == (3, 10, 1, 1)


def test_meta(shipped):
    name, net = shipped
    assert [str(c) for c in net.meta["classes"]["name"]] == CLASSES[name]
    assert [int(v) for v in np.ravel(net.meta["inputSize"])] == [28, 28, 1]
    mean = np.asarray(net.meta["normalization"]["averageImage"])
    assert mean.shape == (1, 28, 28)
    assert mean.dtype == np.float32 and 0 <= mean.min() and 20 < mean.mean() < 100 < mean.max() < 255


def _matconvnet_forward(path, images):
    """LeNet's forward straight from the file read with scipy (simplenn: filters [H W C K],
    correlation, 2x2 max pooling), a slow reference for what load() and forward() compute."""
    net = scipy.io.loadmat(path)["net"][0, 0]
    layers = [net["layers"][0, i][0, 0] for i in range(net["layers"].shape[1])]
    mean = net["meta"][0, 0]["normalization"][0, 0]["averageImage"].astype(np.float64)
    x = images.astype(np.float64)[..., None] - mean.reshape(28, 28, 1)   # (N, H, W, C)
    for layer in layers:
        kind = str(layer["type"][0])
        if kind == "conv":
            w = layer["weights"][0, 0].astype(np.float64)
            w = w.reshape(w.shape[:3] + (-1,))                         # [H W C K]
            b = layer["weights"][0, 1].astype(np.float64).ravel()
            win = np.lib.stride_tricks.sliding_window_view(x, w.shape[:2], axis=(1, 2))
            x = np.einsum("nijcyx,yxck->nijk", win, w) + b              # window dims last
        elif kind == "pool":
            N, H, W, C = x.shape
            x = x[:, :H // 2 * 2, :W // 2 * 2].reshape(N, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))
        elif kind == "relu":
            x = np.maximum(x, 0)
        else:
            assert kind == "softmaxloss"
    return x.reshape(len(images), -1)


def test_file_read_independently_matches(shipped):
    name, net = shipped
    images = fashion_sample().images[:16]
    reference = _matconvnet_forward(MODELS_DIR / (name + ".mat"), images)
    logits = net.forward(models.preprocess(net, images)).reshape(16, 10)
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_preprocess(shipped):
    name, net = shipped
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    mean = np.asarray(net.meta["normalization"]["averageImage"], dtype=np.float64)
    x = models.preprocess(net, images)
    assert x.shape == (4, 1, 28, 28) and x.dtype == net.dtype
    np.testing.assert_allclose(x, images[:, None] - mean[None], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(models.preprocess(net, images.astype(np.float64)[:, None]), x)
    assert models.preprocess(net.astype(np.float64), images).dtype == np.float64
    with pytest.raises(ValueError, match=r"\(4, 28, 27\).*\(1, 28, 28\)"):
        models.preprocess(net, images[:, :, :27])
    with pytest.raises(ValueError, match=r"\(4, 3, 28, 28\).*\(1, 28, 28\)"):
        models.preprocess(net, np.zeros((4, 3, 28, 28)))
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        models.preprocess(net, images[0])
    with pytest.raises(ValueError, match="non-finite"):
        models.preprocess(net, np.full((1, 28, 28), np.nan))
    with pytest.raises(TypeError, match="numeric"):
        models.preprocess(net, np.array([["a"] * 28] * 28)[None])


def test_preprocess_per_channel_mean():
    net = fd.Network([fd.Conv(np.ones((2, 3, 3, 3), np.float32))],
                     meta={"normalization": {"averageImage": np.array([1.0, 2.0, 4.0])[:, None, None]}})
    images = np.arange(2 * 3 * 5 * 6).reshape(2, 3, 5, 6)
    x = models.preprocess(net, images)
    assert x.shape == (2, 3, 5, 6) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 2], images[:, 2] - 4)
    with pytest.raises(ValueError, match=r"\(2, 5, 6\).*\(3, 1, 1\)"):
        models.preprocess(net, images[:, 0])


def test_preprocess_needs_a_mean_image(tmp_path):
    net = fd.Network([fd.Conv(np.ones((2, 1, 3, 3), np.float32))])
    with pytest.raises(KeyError, match="averageImage"):
        models.preprocess(net, np.zeros((1, 28, 28)))
    # an empty averageImage ([] in MATLAB, None once loaded) is no mean image either
    net.meta["normalization"] = {"averageImage": np.zeros((0, 0))}
    fd.save_matconvnet(net, tmp_path / "n.mat")
    loaded = fd.load_matconvnet(tmp_path / "n.mat")
    assert loaded.meta["normalization"]["averageImage"] is None
    with pytest.raises(KeyError, match="averageImage"):
        models.preprocess(loaded, np.zeros((1, 28, 28)))


def test_mean_image_is_the_training_mean(shared_data):
    mnist = load_directory(shared_data / "mnist")
    mean = models.load("lenet-mnist").meta["normalization"]["averageImage"]
    np.testing.assert_allclose(mean[0], mnist.images[:8000].mean(axis=0), rtol=1e-6, atol=1e-4)


def test_lenet_mnist_accuracy_on_held_out_digits(shared_data):
    mnist = load_directory(shared_data / "mnist")
    net = models.load("lenet-mnist")
    assert accuracy(net, mnist.images[8000:], mnist.labels[8000:]) >= 0.97


def test_lenet_fashion_accuracy_on_the_sample():
    sample = fashion_sample()
    net = models.load("lenet-fashion")
    acc = accuracy(net, sample.images, sample.labels)
    assert acc >= 0.85
    # The orientation matters: the same images transposed are recognised far less often.
    assert accuracy(net, sample.images.transpose(0, 2, 1), sample.labels) < acc - 0.2


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_lenet_fashion_accuracy_on_the_test_set():
    test = load_directory(FASHION_DIR)
    net = models.load("lenet-fashion")
    assert accuracy(net, test.images, test.labels) >= 0.88
    train = load_directory(FASHION_DIR, split="train")
    np.testing.assert_allclose(net.meta["normalization"]["averageImage"][0],
                               train.images.mean(axis=0), rtol=1e-6, atol=1e-4)
