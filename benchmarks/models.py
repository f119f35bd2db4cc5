"""Networks and cases shared by the benchmarks: LeNet and VGG-16 with random weights."""

import numpy as np

import fastdecode as fd

#: VGG-16's conv blocks: (filters, convs) per block; 3x3 convs with pad 1, 2x2 max pools between.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def lenet(dtype=np.float32, seed=0):
    """MatConvNet's MNIST LeNet (layer5 is the 500-filter 4x4 conv decoded to 28x28)."""
    rng = np.random.default_rng(seed)

    def conv(K, C, k):
        return fd.Conv((rng.standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype(dtype),
                       np.zeros(K, dtype))

    return fd.Network([conv(20, 1, 5), fd.Pool("max", size=2), conv(50, 20, 5),
                       fd.Pool("max", size=2), conv(500, 50, 4), fd.ReLU(), conv(10, 500, 1),
                       fd.Softmax()])


def vgg16(dtype=np.float32, seed=0, blocks=VGG16_BLOCKS):
    """VGG-16's 13 conv layers (named conv1_1 ... conv5_3) with random weights."""
    rng = np.random.default_rng(seed)
    layers, c = [], 3
    for b, (k, n) in enumerate(blocks):
        for i in range(n):
            w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(dtype)
            layers += [fd.Conv(w, np.zeros(k, dtype), pad=1, name="conv%d_%d" % (b + 1, i + 1)),
                       fd.ReLU(name="relu%d_%d" % (b + 1, i + 1))]
            c = k
        layers.append(fd.Pool("max", size=2, name="pool%d" % (b + 1)))
    return fd.Network(layers)
