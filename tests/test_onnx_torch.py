"""load_onnx on models exported by torch.onnx.export, both the older exporter (dynamo=False,
which folds BatchNorm into the convs) and the dynamo exporter (with external data), against
PyTorch's own outputs; MobileNetV2 with its real ImageNet weights."""

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import fastdecode as fd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_helpers import close, interior, linearised, run  # noqa: E402
import torch_models  # noqa: E402

EXPORTERS = ["legacy", "dynamo"]


def export(model, x, path, exporter):
    """``model`` exported to ``path`` for inputs like ``x``; the dynamo exporter writes its
    weights to ``path + ".data"``."""
    torch.set_num_threads(1)
    with torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=True,
                              verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["images"],
                              opset_version=17)
    return str(path)


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, 4, 1), nn.Conv2d(4, c, 1)

    def forward(self, x):
        g = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(g))))


class Small(nn.Module):
    """conv (strides (2, 1), asymmetric padding), bnorm, relu, grouped conv, add, cat,
    squeeze-and-excitation, depthwise 'same' conv, hardswish (the op and the subgraph),
    x * sigmoid(x), leaky relu, max pool with padding, prelu, upsampling, average pool,
    hardsigmoid, relu6, tanh, flatten and linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=(2, 1), padding=(1, 2))
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c3 = nn.Conv2d(8, 6, 1)
        self.se = SE(14)
        self.dw = nn.Conv2d(14, 14, 3, padding="same", groups=14)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(14 * 8 * 8, 10)
        self.prelu = nn.PReLU(14)
        self.bn2 = nn.BatchNorm2d(14)

    def forward(self, x):
        x = F.relu(self.bn1(self.c1(x)))
        x = torch.cat([self.c2(x) + x, self.c3(x)], 1)
        x = self.se(x)
        x = F.hardswish(self.dw(x))
        x = x * torch.sigmoid(x)
        x = x * F.relu6(x + 3) / 6
        x = self.pool(F.leaky_relu(x, 0.1))
        x = F.interpolate(self.prelu(x), scale_factor=2, mode="nearest")
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.avg(self.avg(x))
        x = torch.tanh(F.relu6(F.hardsigmoid(self.bn2(x)) * 8))
        return self.fc(torch.flatten(x, 1))


class Pools(nn.Module):
    """Pooling with PyTorch's ceil mode and count_include_pad."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.p1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.p2 = nn.AvgPool2d(3, 2, padding=1, count_include_pad=True)
        self.p3 = nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)

    def forward(self, x):
        return self.p3(self.p2(self.p1(self.conv(x))))


def randomise_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    return model.eval()


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_small_models_round_trip(exporter, tmp_path):
    torch.manual_seed(0)
    cases = [("small", Small(), (2, 3, 32, 14))]
    if exporter == "legacy":   # the dynamo exporter's pools are the same ops
        cases.append(("pools", Pools(), (2, 3, 17, 14)))
    for name, model, shape in cases:
        model = randomise_bn(model)
        x = torch.randn(*shape)
        path = export(model, x, tmp_path / (name + ".onnx"), exporter)
        if exporter == "dynamo":
            assert (tmp_path / (name + ".onnx.data")).is_file()
        net = fd.load_onnx(path)
        assert net.input_shape == shape[1:]
        with torch.no_grad():
            ref = model(x).numpy()
        assert close(net.forward(x.numpy()), ref), (name, exporter)
        types = [l.type for l in net.layers]
        if name == "small":
            for t in ("gate", "silu", "hardswish", "prelu", "leakyrelu", "upsample", "linear",
                      "concat", "add", "hardsigmoid", "relu6", "tanh"):
                assert t in types, (t, exporter)
            assert types.count("hardswish") == 2 and types.count("sigmoid") == 1
            assert net[net.conv_layers[0]].stride == (2, 1)
            assert net[net.conv_layers[0]].pad == (1, 1, 2, 2)
        else:
            assert [l.ceil_mode for l in net.layers if l.type == "pool"] == [True, False, True]


@pytest.fixture(scope="module")
def mobilenet(shared_data):
    path = shared_data / "torch" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        pytest.skip("mobilenet_v2-b0353104.pth not in the shared data")
    return torch_models.load_state(torch_models.mobilenet_v2(), path)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_mobilenet_v2_logits_equal_torch(mobilenet, exporter, tmp_path):
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    path = export(mobilenet, x, tmp_path / "mobilenet.onnx", exporter)
    net = fd.load_onnx(path)
    with torch.no_grad():
        ref = mobilenet(x).numpy()
    y = net.forward(x.numpy(), n_threads=1)
    assert y.shape == (1, 1000)
    assert close(y, ref, rtol=1e-4)
    assert np.argmax(y) == np.argmax(ref)
    assert sum(l.type == "add" for l in net.layers) == 10   # the residual connections
    assert sum(l.type == "relu6" for l in net.layers) == 35

    if exporter == "legacy":
        # decoding the imported graph (depthwise convs, BatchNorm folded, a residual add)
        # against onnxruntime running its linear twin (ReLU6 as the identity)
        layer = "/features/features.3/Add"
        assert net[layer].type == "add"
        dec = fd.decode_with_bias(net, layer, unpool="adjoint")
        S, P = net.stride(layer), net.padding(layer)
        img = x.numpy()[:, :, :64, :64].astype(np.float64)
        y = fd.correlate(img, dec.filters.astype(np.float64), stride=S, pad=P)
        y = y + dec.bias[None, :, None, None]
        big = np.zeros((1, 3, 224, 224), np.float32)
        big[:, :, :64, :64] = img
        ref = run(linearised(onnx.load(path)), big, outputs=[layer + "_output_0"])[0]
        rows, cols = interior(dec.filters.shape[2:], y.shape[2:], S, P, (64, 64))
        assert len(rows) >= 4
        assert close(y[0][:, rows, cols], ref[0][:, rows, cols], rtol=1e-4)


def test_mobilenet_v2_decodes_as_from_torch_up_to_each_channels_batchnorm_scale(mobilenet,
                                                                                 tmp_path):
    """The older exporter folds each BatchNorm into the conv before it: the ONNX network's
    decoded filters of a conv layer are from_torch's times that BatchNorm's per-channel scale
    (the BatchNorms below are in both decodings)."""
    path = export(mobilenet, torch.zeros(1, 3, 224, 224), tmp_path / "mobilenet.onnx", "legacy")
    onet = fd.load_onnx(path)
    tnet = fd.from_torch(mobilenet, (3, 224, 224))
    assert len(onet.conv_layers) == len(tnet.conv_layers) == 52
    for i in (0, 3, 7, 10):
        oname, tname = onet.conv_layers[i], tnet.conv_layers[i]
        bn = tnet.layers[tnet.index(tname) + 1]
        assert bn.type == "bnorm"
        scale, _ = bn.scale_shift()
        filters = [0, 5, 11]
        got = fd.decode(onet, oname, filters=filters, n_threads=1).astype(np.float64)
        want = fd.decode(tnet, tname, filters=filters, n_threads=1).astype(np.float64)
        want *= scale[filters][:, None, None, None]
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), (oname, tname)
