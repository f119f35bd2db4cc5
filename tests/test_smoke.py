import numpy as np
from scipy.signal import convolve2d

import fastdecode as fd


def test_readme_example_shapes_and_values():
    rng = np.random.default_rng(0)
    net = fd.Network([
        fd.Conv(rng.standard_normal((20, 1, 5, 5), dtype=np.float32)),
        fd.Pool("max", size=2),
        fd.Conv(rng.standard_normal((50, 20, 5, 5), dtype=np.float32)),
    ])
    D = fd.decode(net, "layer3")
    assert D.shape == (50, 1, 14, 14) and D.dtype == np.float32
    # the same by hand: layer3's filters enlarged 2x (nearest), then each channel's map
    # substituted by layer1's filter of that channel (a full convolution), summed over channels
    W1 = net["layer1"].weights.astype(np.float64)
    W3 = net["layer3"].weights.astype(np.float64)
    for k in (0, 17, 49):
        want = sum(convolve2d(np.kron(W3[k, j], np.ones((2, 2))), W1[j, 0], mode="full")
                   for j in range(20))
        np.testing.assert_allclose(D[k, 0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    images = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    est = fd.correlate(images, D, stride=net.stride("layer3"), pad=net.padding("layer3"))
    assert est.shape == net.forward(images, upto="layer3").shape == (8, 50, 8, 8)
    # est[n, k, i, j] is the dot product of decoded filter k with the 14x14 patch at (2i, 2j)
    patch = images[3, 0, 2 * 5:2 * 5 + 14, 2 * 6:2 * 6 + 14].astype(np.float64)
    assert abs(est[3, 17, 5, 6] - np.sum(patch * D[17, 0])) < 1e-5 * np.abs(est).max()
