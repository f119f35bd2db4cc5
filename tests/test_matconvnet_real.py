"""The real MatConvNet networks in ../shared/data: they load, compute what they were trained
for, round-trip, and are described by ``fastdecode info``."""

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.ndimage import gaussian_filter

import fastdecode as fd
from fastdecode import cli
from fastdecode.matconvnet import MatConvNetError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_matconvnet import (assert_same_meta, assert_same_network, h5py,  # noqa: E402
                             needs_h5py)


def real(shared_data, name):
    path = shared_data / "matconvnet" / name
    if not path.exists():
        pytest.skip("%s is absent" % path)
    return path


def psnr_gain(net, clean, rng):
    noisy = (clean + rng.standard_normal(clean.shape) * 25 / 255).astype(np.float32)
    residual = net.forward(noisy[None, None])[0, 0]  # DnCNN predicts the noise
    denoised = noisy - residual
    return np.mean((noisy - clean) ** 2), np.mean((denoised - clean) ** 2), residual


def smooth_image(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return 0.5 + 0.3 * np.sin(x / 7.0) * np.cos(y / 9.0) + 0.1 * x / w


@needs_h5py
def test_real_dncnn_denoises(shared_data):
    plain = fd.load_matconvnet(real(shared_data, "dncnn-sigma25-simplenn-v73.mat"))
    bnorm = fd.load_matconvnet(real(shared_data, "dncnn-sigma25-bnorm-simplenn-v73.mat"))
    assert len(plain.conv_layers) == len(bnorm.conv_layers) == 17
    assert plain["layer1"].weights.shape == (64, 1, 3, 3)
    assert plain["layer48"].weights.shape == (1, 64, 3, 3)  # stored 3x3x64 in the file
    assert sum(l.type == "bnorm" for l in bnorm) == 15
    assert bnorm.meta["losses"] == [{"name": "layer49", "type": "loss"}]
    clean = smooth_image(36, 44)  # DnCNN's convention: pixels in [0, 1], noise sigma 25/255
    before, after, residual = psnr_gain(plain, clean, np.random.default_rng(1))
    assert after < before / 8
    # The bnorm file is the same network with batch normalisation not yet folded into the filters.
    _, after_bn, residual_bn = psnr_gain(bnorm, clean, np.random.default_rng(1))
    assert after_bn < before / 8
    np.testing.assert_allclose(residual_bn, residual, atol=1e-4)


@needs_h5py
def test_real_dncnn_dagnn_loads_as_a_graph_denoises_and_decodes(shared_data):
    net = fd.load_matconvnet(real(shared_data, "dncnn-dagnn-epoch50-v73.mat"))
    assert not net.is_chain and len(net.conv_layers) == 17
    assert net["sum49"].type == "add" and net.inputs("sum49") == ("conv48", "input")
    clean = smooth_image(36, 44)
    rng = np.random.default_rng(1)
    noisy = (clean + rng.standard_normal(clean.shape) * 25 / 255).astype(np.float32)
    denoised = net.forward(noisy[None, None], upto="sum49")[0, 0]  # the residual added inside
    gain = 10 * np.log10(np.mean((noisy - clean) ** 2) / np.mean((denoised - clean) ** 2))
    assert gain > 9   # about 13.5 dB
    for layer in net.layers:
        D = fd.decode(net, layer.name)
        assert D.shape == (net.channels(layer.name),) + net.decoded_shape(layer.name)
        assert np.all(np.isfinite(D))
    # the sum decodes as the last conv's decoded filter plus the identity at the centre
    D = fd.decode(net, "sum49")[0, 0]
    delta = np.zeros_like(D)
    delta[17, 17] = 1
    np.testing.assert_allclose(D, fd.decode(net, "conv48")[0, 0] + delta, rtol=1e-5, atol=1e-6)


def plate_digit(digit):
    """A 20x20 licence-plate character: DejaVu Sans Bold, white on black, in a 10x18 box."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.ndimage import zoom
    fig = Figure(figsize=(2, 2), dpi=50)
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_facecolor("black")
    fig.text(0.5, 0.5, str(digit), color="white", fontsize=60, ha="center", va="center",
             family="DejaVu Sans", weight="bold")
    canvas.draw()
    a = np.asarray(canvas.buffer_rgba())[:, :, 0].astype(np.float64)
    rows, cols = np.flatnonzero(a.max(axis=1)), np.flatnonzero(a.max(axis=0))
    glyph = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    out = np.zeros((20, 20))
    out[1:19, 5:15] = np.clip(zoom(glyph, (18 / glyph.shape[0], 10 / glyph.shape[1]), order=1),
                              0, 255)
    return out


def test_real_plate_chars_classifier_reads_digits(shared_data):
    net = fd.load_matconvnet(real(shared_data, "plate-chars-simplenn-v5.mat"))
    assert net.meta["inputSize"] == (20, 20, 1)
    avg = net.meta["normalization"]["averageImage"]
    assert avg.shape == (1, 20, 20)
    assert net.meta["losses"] == [{"name": "layer8", "type": "softmaxloss"}]
    # MatConvNet's preprocessing: pixels 0..255 minus the training mean image.
    images = (np.stack([plate_digit(d) for d in range(10)])[:, None] - avg).astype(np.float32)
    scores = net.forward(images)
    assert scores.shape == (10, 65, 1, 1) and np.isfinite(scores).all()
    probs = fd.Network(list(net.layers) + [fd.Softmax(name="prob")]).forward(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    right = int(np.sum(probs.argmax(axis=1).ravel() == np.arange(10)))  # classes 0-9: digits
    assert right >= 8  # chance is 10/65 in all
    # Filters read with rows and columns swapped (a common converter mistake) read worse.
    swapped = fd.Network([fd.Conv(l.weights.transpose(0, 1, 3, 2), l.bias, stride=l.stride,
                                  pad=l.pad, name=l.name) if isinstance(l, fd.Conv) else l
                          for l in net.layers])
    assert np.sum(swapped.forward(images).argmax(axis=1).ravel() == np.arange(10)) <= right - 3


def test_real_text_deblur_sharpens(shared_data):
    path = real(shared_data, "text-deblur-small-simplenn-v5.mat")
    net = fd.load_matconvnet(path)
    assert net.meta["losses"] == [{"name": "loss", "type": "custom"}]
    assert net["prediction"].weights.shape == (1, 32, 3, 3)
    # The loss layer keeps the last batch's sharp targets (64x64x1x6, text in [-1, 0]).
    loss = scipy.io.loadmat(path, variable_names=["net"])["net"]["layers"][0, 0][0, 5]
    sharp = loss["class"][0, 0].transpose(3, 2, 0, 1).astype(np.float32)
    blurred = gaussian_filter(sharp, (0, 0, 1.5, 1.5), mode="nearest")
    out = net.forward(blurred)
    assert out.shape == blurred.shape
    error = np.mean((out - sharp) ** 2)
    assert error < 0.5 * np.mean((blurred - sharp) ** 2)
    swapped = fd.Network([fd.Conv(l.weights.transpose(0, 1, 3, 2), l.bias, pad=l.pad, name=l.name)
                          if isinstance(l, fd.Conv) else l for l in net.layers])
    assert np.mean((swapped.forward(blurred) - sharp) ** 2) > 1.5 * error


def test_real_legacy_cifar_lenet(shared_data):
    net = fd.load_matconvnet(real(shared_data, "mnist2class-cifarlenet-simplenn-v5-legacy.mat"))
    assert net.layers[0].name == "conv\x01-compRand-gen"
    assert net["pool\x01"].pad == (0, 1, 0, 1) and net["pool\x04"].method == "avg"
    assert net.meta["losses"] == [{"name": "layer13", "type": "softmaxloss"}]
    scores = net.forward(np.random.default_rng(0).standard_normal((2, 3, 32, 32)))
    assert scores.shape == (2, 10, 1, 1) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["plate-chars-simplenn-v5.mat",
                                  "mnist2class-cifarlenet-simplenn-v5-legacy.mat",
                                  pytest.param("dncnn-sigma25-bnorm-simplenn-v73.mat",
                                               marks=needs_h5py)])
def test_real_round_trip(shared_data, tmp_path, name):
    net = fd.load_matconvnet(real(shared_data, name))
    fd.save_matconvnet(net, tmp_path / "again.mat")
    again = fd.load_matconvnet(tmp_path / "again.mat")
    assert_same_network(net, again)
    assert_same_meta(net.meta, again.meta)


def test_info_command_on_real_files(shared_data, capsys):
    path = real(shared_data, "plate-chars-simplenn-v5.mat")
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    # conv 3, pool 2/2, conv 3, pool 2/2, conv 3: receptive fields 3, 3+1+2*2 = 8,
    # 8+1*2+2*4 = 18; strides 1, 2, 4.
    table = out.split("conv layers")[1].splitlines()[2:]
    rows = {line.split()[0]: line.split() for line in table if line.strip()}
    assert sorted(rows) == ["layer1", "layer4", "layer7"]
    assert rows["layer1"][1:] == ["3x3x1x20", "3x3", "1x1", "1x3x3"]
    assert rows["layer4"][1:] == ["3x3x20x100", "8x8", "2x2", "1x8x8"]
    assert rows["layer7"][1:] == ["3x3x100x65", "18x18", "4x4", "1x18x18"]
    assert "softmaxloss" in out

    legacy = real(shared_data, "mnist2class-cifarlenet-simplenn-v5-legacy.mat")
    assert cli.main(["info", str(legacy)]) == 0
    out = capsys.readouterr().out
    assert "conv\\x01-compRand-gen" in out and "\x01" not in out
    assert "pool max 3x3 stride (2, 2) pad (0, 1, 0, 1)" in out  # nothing truncated

    if h5py is not None:
        dag = real(shared_data, "dncnn-dagnn-epoch50-v73.mat")
        assert cli.main(["info", str(dag)]) == 0
        assert "sum49" in capsys.readouterr().out
