"""from_torch on small modules covering every converted module, function and method, against
PyTorch's own forward pass (float64), plus a ResNet-style model and the errors."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastdecode as fd

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_oracles import check_decoding_against_twin, hooked_outputs  # noqa: E402


def converted(module, shape, *, n=2, seed=0, tol=1e-10):
    """from_torch(module) in float64, checked against the module's forward on random input."""
    torch.manual_seed(seed)
    module = module.double().eval()
    for m in module.modules():   # non-trivial statistics for every BatchNorm
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    net = fd.from_torch(module, shape)
    assert net.dtype == np.float64 and net.input_shape == tuple(shape)
    x = np.random.default_rng(seed).standard_normal((n,) + tuple(shape))
    with torch.no_grad():
        want = module(torch.from_numpy(x))
    first = want[0] if isinstance(want, tuple) else want
    got = net.forward(x)
    assert got.shape == tuple(first.shape)
    np.testing.assert_allclose(got, first.numpy(), rtol=0, atol=tol * max(1, first.abs().max()))
    return net, x, want


class Functional(nn.Module):
    """Activations, pools and parameters through their functional forms and tensor methods."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 3, 3, 3))
        self.b = nn.Parameter(torch.randn(6))
        self.slopes = nn.Parameter(torch.rand(6))
        self.register_buffer("rm", torch.randn(6))
        self.register_buffer("rv", torch.rand(6) + 0.5)
        self.lw = nn.Parameter(torch.randn(5, 6 * 2 * 2))

    def forward(self, x):
        y = F.conv2d(x, self.w, self.b, 1, 1)
        y = F.batch_norm(y, self.rm, self.rv, None, None, False, 0.1, 1e-3)
        y = F.leaky_relu(y, 0.1) + F.prelu(y, self.slopes) + F.relu(y) + torch.relu(y)
        y = F.hardswish(y) + F.hardsigmoid(y) + F.silu(y) + F.gelu(y) + torch.sigmoid(y)
        y = torch.tanh(y) + y.relu() + y.sigmoid() + y.tanh() + F.relu6(y)
        y = F.hardtanh(y, -1.0, 2.0) + y.clamp(0, 6) + y.clamp(min=0) + torch.clamp(y, -1, 2)
        y = F.dropout(y, 0.3, self.training) + F.local_response_norm(y, 5, 0.2)
        y = F.max_pool2d(y, 3, 2, 1, ceil_mode=True)
        y = F.avg_pool2d(y, 2, ceil_mode=True, count_include_pad=False)
        y = F.adaptive_avg_pool2d(y, (2, 2))
        return F.softmax(F.linear(torch.flatten(y, 1), self.lw), dim=1)


class Merges(nn.Module):
    """Adds in every spelling, a concatenation, a squeeze-and-excitation gate, the spatial
    mean, flattening by view and reshape, constants per channel."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.fc1 = nn.Conv2d(8, 2, 1)
        self.fc2 = nn.Conv2d(2, 8, 1)
        self.head = nn.Linear(8, 3)
        self.head2 = nn.Linear(8 * 4 * 4, 3)
        self.register_buffer("mean", torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 2.0, 1.5]).view(1, 3, 1, 1))

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = 2.0 * x + 0.5
        a, b = self.a(x), self.b(x)
        y = a + b
        y = torch.add(y, a)
        y += b
        y = y.add(a)
        c = torch.cat([y, a], dim=1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(c.mean((2, 3), keepdim=True)))))
        c = s * c
        c = F.avg_pool2d(c, 2)
        v = self.head(c.mean([-1, -2])) + self.head2(c.view(c.size(0), -1))
        return v + self.head2(c.reshape(c.shape[0], -1))


class InPlace(nn.Module):
    """In-place operations whose input is read again afterwards."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.conv(x)
        z = self.relu(y)          # y is z now
        w = self.conv2(y) + z
        w.relu_()
        u = F.relu6(self.conv2(w), inplace=True)
        return w + u


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1),
                           nn.Conv2d(6, 6, 3, padding="same", dilation=2, groups=3),
                           nn.Conv2d(6, 4, (1, 3), padding=(0, 1), stride=(1, 2)),
                           nn.Conv2d(4, 4, 3, padding="valid", groups=4, bias=False),
                           nn.Conv2d(4, 4, 4, padding="same")), (3, 13, 15)),
    (lambda: nn.Sequential(nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(2, 3, 3, stride=2),
                           nn.ConvTranspose2d(3, 4, 3, padding=1),
                           nn.ConvTranspose2d(4, 2, (3, 5), dilation=2, padding=(2, 1))),
     (2, 9, 10)),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                           nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=True),
                           nn.AvgPool2d(2, padding=1, count_include_pad=False),
                           nn.MaxPool2d((2, 1), (1, 2)), nn.AdaptiveAvgPool2d((1, 2))),
     (2, 21, 26)),
    (lambda: nn.Sequential(nn.Conv2d(2, 6, 3), nn.AdaptiveAvgPool2d((2, 3)), nn.Conv2d(6, 4, 1),
                           nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 5),
                           nn.BatchNorm1d(5), nn.ReLU(), nn.Dropout(), nn.Linear(5, 3),
                           nn.Softmax(dim=1)), (2, 10, 11)),
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.ReLU6(),
                           nn.LeakyReLU(0.2), nn.Conv2d(4, 4, 1), nn.PReLU(4), nn.PReLU(),
                           nn.Hardswish(), nn.Conv2d(4, 4, 1), nn.Hardsigmoid(), nn.SiLU(),
                           nn.GELU(), nn.Sigmoid(), nn.Tanh(), nn.Hardtanh(-0.5, 0.5),
                           nn.Dropout(0.3), nn.Dropout2d(), nn.Identity(),
                           nn.LocalResponseNorm(3, 0.5, 0.6, 1.5), nn.Softmax(1)), (2, 6, 7)),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Upsample(scale_factor=2),
                           nn.Conv2d(3, 3, 3), nn.Upsample(scale_factor=(2, 3), mode="bilinear"),
                           nn.UpsamplingNearest2d(size=(40, 72))), (2, 6, 7)),
    (Functional, (3, 12, 12)),
    (Merges, (3, 8, 8)),
    (InPlace, (2, 6, 6)),
], ids=["convs", "pads-transposed", "pools", "adaptive-head", "activations", "upsample",
        "functional", "merges", "in-place"])
def test_modules_equal_pytorch(make, shape):
    torch.manual_seed(0)
    converted(make(), shape)


def test_interpolate_and_a_conv_made_of_constants():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 2, 3, 3))

        def forward(self, x):   # weight standardisation: computed from parameters only
            w = (self.w - self.w.mean()) / self.w.std()
            y = F.conv2d(x, w, padding=1)
            return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)

    net, _, _ = converted(M(), (2, 5, 6))
    assert [l.type for l in net.layers] == ["conv", "upsample"]


def test_several_outputs_are_all_layers_and_the_first_comes_last():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(2, 4, 3)
            self.a = nn.Conv2d(4, 2, 1)
            self.b = nn.Conv2d(4, 3, 1)

        def forward(self, x):
            y = self.body(x)
            return self.a(y), {"b": F.softmax(self.b(y), dim=1)}

    net, x, (a, rest) = converted(TwoHeads(), (2, 5, 5))
    assert net.meta["outputs"] == ["a", "softmax"] and net.layers[-1].name == "a"
    np.testing.assert_allclose(net.forward(x, upto="softmax"), rest["b"].numpy(), atol=1e-12)


class BasicBlock(nn.Module):
    def __init__(self, inp, out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inp != out:
            self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_resnet_blocks_are_addressable_and_decode_as_the_linear_twin():
    torch.manual_seed(1)
    model = TinyResNet()
    net, x, _ = converted(model, (3, 128, 128), n=1)
    model = model.double().eval()
    blocks = ["layer1.0", "layer1.1", "layer1", "layer2.0", "layer2.0.downsample", "layer2"]
    for name in blocks:
        assert name in net.aliases
    assert net["layer2.0"].type == "relu" and net["layer2.0.downsample"].type == "bnorm"
    assert net.inputs(net.inputs("layer2.0")[0]) == ("layer2.0.bn2", "layer2.0.downsample.1")
    want = hooked_outputs(model, blocks, torch.from_numpy(x))
    for name in blocks:
        np.testing.assert_allclose(net.forward(x, upto=name), want[name].numpy(), atol=1e-10)
    check_decoding_against_twin(model, net, {"conv1": [0, 7], "layer1.0": [0, 5],
                                             "layer2.0": [0, 3, 15]})
    every = fd.decode_all(net)
    assert set(every) == set(net.conv_layers)


def test_parameters_are_copied_and_float32_modules_give_float32_networks():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
    net = fd.from_torch(model, (1, 5, 5))
    assert net.dtype == np.float32
    before = net["0"].weights.copy()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    np.testing.assert_array_equal(net["0"].weights, before)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_convs_and_pools_equal_pytorch(data):
    draw = data.draw
    g = draw(st.sampled_from([1, 2]))
    C, K = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = draw(st.integers(1, 2))
    same = stride == (1, 1) and draw(st.booleans())
    padding = "same" if same else (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    pk = draw(st.integers(1, 3))
    method = draw(st.sampled_from(["max", "avg"]))
    pool_kw = dict(kernel_size=pk, stride=draw(st.integers(1, 3)),
                   padding=draw(st.integers(0, pk // 2)), ceil_mode=draw(st.booleans()))
    if method == "avg":
        pool_kw["count_include_pad"] = draw(st.booleans())
    H, W = draw(st.integers(4, 12)), draw(st.integers(4, 12))
    torch.manual_seed(draw(st.integers(0, 100)))
    model = nn.Sequential(nn.Conv2d(C, K, (kh, kw), stride, padding, dil, groups=g),
                          (nn.MaxPool2d if method == "max" else nn.AvgPool2d)(**pool_kw))
    try:
        model.double()(torch.zeros((1, C, H, W), dtype=torch.float64))
    except RuntimeError:
        assume(False)   # a configuration PyTorch refuses (input too small)
    converted(model, (C, H, W), n=1)


def test_import_fastdecode_does_not_import_torch():
    code = "import sys, fastdecode; assert 'torch' not in sys.modules; print(fastdecode.from_torch)"
    # the package under test, imported from outside the project root (whose unbuilt
    # fastdecode/ would shadow the installed one)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fd.__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=parent), cwd=tempfile.gettempdir())


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


class Unsupported(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op, self.conv = op, nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.op(self.conv(x))


@pytest.mark.parametrize("module, match", [
    (Branchy(), r"torch.fx cannot trace Branchy.*control flow.*load_onnx"),
    (nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4)),
     r"node '_1' calls module '1' \(torch.nn.modules.normalization.GroupNorm\).*no fastdecode "
     r"equivalent.*ONNX"),
    (nn.Sequential(nn.Conv3d(4, 4, 1)), r"module '0' .*Conv3d.*no fastdecode equivalent"),
    (nn.Sequential(nn.LSTM(4, 4)), r"LSTM.*no fastdecode equivalent"),
    (Unsupported(lambda y: y.permute(0, 1, 3, 2)), r"node 'permute'.*\.permute\(\).*no fastdecode"),
    (Unsupported(lambda y: torch.matmul(y, y)), r"node 'matmul'.*matmul.*no fastdecode"),
    (Unsupported(lambda y: y + y.mean((2, 3), keepdim=True)), r"broadcasting"),
    (Unsupported(lambda y: y * y), r"per-channel gate"),
    (Unsupported(lambda y: F.max_pool2d(F.pad(y, (1, 1, 1, 1)), 2)), r"only before a conv"),
    (Unsupported(lambda y: F.adaptive_avg_pool2d(y, 4)), r"unequal sizes"),
    (Unsupported(lambda y: y.view(y.shape[0], 4, -1)), r"reshaping .* not supported"),
    (Unsupported(lambda y: F.gelu(y, approximate="tanh")), r"exact GELU"),
    (Unsupported(lambda y: F.interpolate(y, scale_factor=1.5)), r"integer factors"),
    (Unsupported(lambda y: F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)),
     r"align_corners"),
    (Unsupported(lambda y: F.softmax(y, dim=2)), r"softmax over the channels"),
    (Unsupported(lambda y: torch.cat([y, y], dim=2)), r"along the channels"),
    (Unsupported(lambda y: torch.clamp(y, min=1)), r"clamping on one side"),
    (Unsupported(lambda y: y - y), r"between two tensors"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")), r"padding_mode"),
    (nn.Sequential(nn.ConvTranspose2d(4, 4, 2, stride=2)), r"stride 1.*\(2, 2\)"),
    (nn.Sequential(nn.Conv2d(4, 4, 1), nn.Linear(6, 2)), r"flatten the map first"),
    (nn.Sequential(nn.MaxPool2d(3, dilation=2)), r"dilation"),
    (nn.Sequential(nn.LocalResponseNorm(4)), r"even number of channels"),
    (nn.Sequential(nn.BatchNorm2d(4, track_running_stats=False)), r"running statistics"),
])
def test_unsupported_operations_get_one_clear_error(module, match):
    with pytest.raises(ValueError, match=match):
        fd.from_torch(module.eval(), (4, 6, 6))


def test_bad_arguments_get_clear_errors():
    model = nn.Sequential(nn.Conv2d(3, 2, 3))
    with pytest.raises(ValueError, match=r"training mode.*eval\(\)"):
        fd.from_torch(model.train(), (3, 8, 8))
    model.eval()
    model[0].train()
    with pytest.raises(ValueError, match=r"'0' is in training mode"):
        fd.from_torch(model, (3, 8, 8))
    model.eval()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fd.from_torch(lambda x: x, (3, 8, 8))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fd.from_torch(fd.Network([fd.ReLU()], input_channels=1), (3, 8, 8))
    for bad in [(3, 8), (3, 0, 8), "abc", (3, 8.5, 8), None, (3, -1, 8)]:
        with pytest.raises((ValueError, TypeError), match="input_shape"):
            fd.from_torch(model, bad)
    with pytest.raises(ValueError, match=r"Sequential fails on an input of shape \(1, 1, 8, 8\)"):
        fd.from_torch(model, (1, 8, 8))
    with pytest.raises(ValueError, match="example has shape"):
        fd.from_torch(model, (3, 8, 8), example=torch.zeros(1, 3, 9, 8))
    with pytest.raises(ValueError, match="output 0 of the module is the input itself"):
        fd.from_torch(nn.Sequential(nn.Identity()).eval(), (3, 8, 8))
    for example in (np.ones((2, 3, 8, 8), np.float32), torch.ones(1, 3, 8, 8).double()):
        net = fd.from_torch(model, (3, 8, 8), example=example)
        assert net.conv_layers == ["0"] and net.dtype == np.float32
