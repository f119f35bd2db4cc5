"""from_torch on real trained networks: torchvision's ImageNet MobileNetV2 and MTCNN's P-Net
(weights in ../shared/data/torch, read with weights_only=True), against PyTorch itself."""

import sys
from pathlib import Path

import numpy as np
import pytest

import fastdecode as fd

torch = pytest.importorskip("torch")
F = torch.nn.functional
sys.path.insert(0, str(Path(__file__).resolve().parent))

from torch_models import IMAGENET_MEAN, IMAGENET_STD, PNet, load_state, mobilenet_v2  # noqa: E402
from torch_oracles import check_decoding_against_twin, hooked_outputs  # noqa: E402


@pytest.fixture(scope="module")
def mobilenet(shared_data):
    path = shared_data / "torch" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        pytest.skip("%s not found" % path)
    return load_state(mobilenet_v2(), path)


@pytest.fixture(scope="module")
def mobilenet_net(mobilenet):
    return fd.from_torch(mobilenet, (3, 224, 224))


def imagenet_input(image):
    """An RGB uint8 photo as torchvision prepares ImageNet images: shorter side resized to 256
    (antialiased), centre crop of 224, normalised by ImageNet's mean and std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[2:]
    size = (256, round(256 * w / h)) if h <= w else (round(256 * h / w), 256)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - 224) // 2, (size[1] - 224) // 2
    x = x[:, :, top:top + 224, left:left + 224]
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    return ((x - mean) / std).numpy()


def test_mobilenet_logits_equal_pytorch_to_float32_rounding(mobilenet, mobilenet_net):
    net = mobilenet_net
    assert net.dtype == np.float32 and net.input_shape == (3, 224, 224)
    assert net.meta["outputs"] == ["classifier.1"] and net.layers[-1].name == "classifier.1"
    assert len(net.conv_layers) == 52
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    want = mobilenet(torch.from_numpy(x)).detach().numpy()
    got = net.forward(x)
    assert got.shape == (1, 1000)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_mobilenet_in_float64_equals_pytorch_to_rounding(mobilenet):
    model = mobilenet_v2().double()
    model.load_state_dict(mobilenet.state_dict())
    net = fd.from_torch(model, (3, 32, 32))
    assert net.dtype == np.float64
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32))
    want = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(net.forward(x), want, rtol=0, atol=1e-11 * np.abs(want).max())


@pytest.mark.parametrize("photo, classes", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_mobilenet_classifies_photos_as_imagenet_does(mobilenet, mobilenet_net, photo, classes):
    data = pytest.importorskip("skimage.data")
    x = imagenet_input(getattr(data, photo)())
    logits = mobilenet_net.forward(x)
    assert int(np.argmax(logits)) in classes
    assert int(np.argmax(logits)) == int(mobilenet(torch.from_numpy(x)).argmax())


def test_mobilenet_blocks_are_addressable_and_equal_the_submodules(mobilenet):
    net = fd.from_torch(mobilenet, (3, 96, 96))
    names = ["features.0", "features.3.conv.1.0", "features.5", "features.13", "features"]
    # features.5 is a whole inverted-residual block, its residual addition included
    assert net[net.aliases["features.5"]].type == "add"
    assert net["features.13"].type == "add" and net["features.14"].type == "bnorm"
    x = np.random.default_rng(2).standard_normal((1, 3, 96, 96)).astype(np.float32)
    want = hooked_outputs(mobilenet, names, torch.from_numpy(x))
    for name in names:
        got = net.forward(x, upto=name)
        w = want[name].numpy()
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-5 * np.abs(w).max(), err_msg=name)


def test_mobilenet_decodes_as_the_gradient_of_its_linear_twin(mobilenet):
    model = mobilenet_v2().double()
    model.load_state_dict(mobilenet.state_dict())
    net = fd.from_torch(model, (3, 64, 64))
    # a conv, a depthwise conv, a whole block with its residual addition
    check_decoding_against_twin(model, net, {"features.0.0": [0, 31], "features.3.conv.1.0":
                                             [0, 100], "features.5": [0, 13, 31]})


def test_every_layer_of_mobilenet_decodes(mobilenet_net):
    net = mobilenet_net
    lower = net.conv_layers[:20]
    every = fd.decode_all(net, layers=lower)
    for name in lower:
        D = every[name]
        assert D.shape == (net.channels(name),) + net.decoded_shape(name)
        assert np.all(np.isfinite(D)) and np.abs(D).max() > 0
    D = every[lower[-1]][:2]
    np.testing.assert_allclose(fd.decode(net, lower[-1], filters=[0, 1]), D, rtol=0,
                               atol=1e-5 * np.abs(D).max())
    top = fd.decode(net, "features.18", filters=[0])   # the last block, receptive field 491
    assert top.shape == (1, 3, 491, 491) and np.all(np.isfinite(top))


@pytest.fixture(scope="module")
def pnet(shared_data):
    path = shared_data / "torch" / "mtcnn-pnet.pt"
    if not path.is_file():
        pytest.skip("%s not found" % path)
    return load_state(PNet(), path)


def test_pnet_heads_equal_pytorch(pnet):
    net = fd.from_torch(pnet, (3, 25, 31))   # odd sizes: the ceil-mode pooling matters
    assert net.meta["outputs"] == ["conv4_2", "softmax4_1"]
    assert net["pool1"].ceil_mode and net["prelu1"].slopes.size == 10
    x = np.random.default_rng(3).standard_normal((2, 3, 25, 31)).astype(np.float32)
    boxes, probs = pnet(torch.from_numpy(x))
    got = net.forward(x)   # the first output
    np.testing.assert_allclose(got, boxes.detach().numpy(), rtol=0, atol=1e-5)
    # float32 rounding of the logits (about 1e-6 of them) moves a softmax of them as much
    np.testing.assert_allclose(net.forward(x, upto="softmax4_1"), probs.detach().numpy(),
                               rtol=0, atol=1e-5)


def test_pnet_decodes_as_the_gradient_of_its_linear_twin(pnet):
    model = PNet().double().eval()
    model.load_state_dict(pnet.state_dict())
    net = fd.from_torch(model, (3, 24, 24))
    assert net.dtype == np.float64
    every = fd.decode_all(net)
    assert set(every) == set(net.conv_layers)
    check_decoding_against_twin(model, net, {"conv1": [0, 9], "conv3": [0, 5, 31],
                                             "conv4_2": [0, 1, 2, 3]})
