import numpy as np

import fastdecode as fd


def test_readme_example_shapes():
    rng = np.random.default_rng(0)
    net = fd.Network([
        fd.Conv(rng.standard_normal((20, 1, 5, 5), dtype=np.float32)),
        fd.Pool("max", size=2),
        fd.Conv(rng.standard_normal((50, 20, 5, 5), dtype=np.float32)),
    ])
    D = fd.decode(net, "layer3")
    assert D.shape == (50, 1, 14, 14) and D.dtype == np.float32
    images = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    est = fd.correlate(images, D, stride=net.stride("layer3"), pad=net.padding("layer3"))
    assert est.shape == net.forward(images, upto="layer3").shape == (8, 50, 8, 8)
