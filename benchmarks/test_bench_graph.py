"""Graph benchmarks: decode_all of a ResNet-shaped network (random weights) against PyTorch
autograd computing the same decoded filters (the gradient of a centre unit of the linear twin,
batched over channels), both on the same thread count.

The baseline decodes a sample of channels per layer and is scaled to all channels (said in
``extra_info``).
"""

import time

import numpy as np
import pytest

import fastdecode as fd

import _util
import graph_models

THREADS = 2
SAMPLE = 8


def resnet_shaped(dtype=np.float32, seed=0, size=112,
                  stages=((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))):
    """A ResNet-18-shaped network: a 7x7 stem at stride 2, a 3x3 max pool at stride 2, then
    basic blocks (two 3x3 convs beside an identity or a 1x1 projection shortcut, added)."""
    rng = np.random.default_rng(seed)

    def conv(K, C, k, s, p, name, inputs=None):
        w = (rng.standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype(dtype)
        return fd.Conv(w, None, stride=s, pad=p, name=name, inputs=inputs)
    layers = [conv(64, 3, 7, 2, 3, "stem"), fd.ReLU(name="stem_relu"),
              fd.Pool("max", size=3, stride=2, pad=1, name="pool")]
    prev, C = "pool", 64
    for b, (K, s) in enumerate(stages):
        layers += [conv(K, C, 3, s, 1, "b%d_a" % b, prev), fd.ReLU(name="b%d_relu" % b),
                   conv(K, K, 3, 1, 1, "b%d_b" % b)]
        shortcut = prev
        if s != 1 or K != C:
            layers.append(conv(K, C, 1, s, 0, "b%d_proj" % b, prev))
            shortcut = "b%d_proj" % b
        layers += [fd.Add(inputs=("b%d_b" % b, shortcut), name="b%d_sum" % b),
                   fd.ReLU(name="b%d_out" % b)]
        prev, C = "b%d_out" % b, K
    return fd.Network(layers, input_shape=(3, size, size))


def torch_twin_seconds(net, threads, sample=SAMPLE):
    """Seconds PyTorch autograd takes for every conv layer's decoded filters: the gradient of
    a centre unit of the linear twin (:func:`graph_models.twin_gradients`), ``sample``
    channels at once per layer, scaled to the layer's channels."""
    total = 0.0
    for name in net.conv_layers:
        n = min(sample, net.channels(name))
        _, seconds, _ = graph_models.twin_gradients(net, name, list(range(n)), threads)
        total += seconds * net.channels(name) / n
    return total


def test_resnet_shaped_decode_all_against_torch_autograd(benchmark):
    if not _util.torch_available():
        pytest.skip("torch is not installed")
    net = resnet_shaped()
    out = benchmark.pedantic(lambda: fd.decode_all(net, n_threads=THREADS), rounds=2,
                             iterations=1, warmup_rounds=0)
    baseline = torch_twin_seconds(net, THREADS)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        best = stats.stats.min
        benchmark.extra_info.update(
            threads=THREADS, filters=sum(a.shape[0] for a in out.values()), seconds=best,
            torch_autograd_seconds=baseline, torch_sampled_channels=SAMPLE,
            speedup=baseline / best)
    assert len(out) == len(net.conv_layers)


# --- ResNet-50 and MobileNetV2 at 224x224 ---------------------------------------------------
#
# Every conv layer's decoded filters take 20 GB in float32 for either network (ResNet-50:
# 26,560 filters, up to 3x427x427; MobileNetV2: 17,056, up to 3x491x491), more than this
# machine's memory: decode_all runs on the first conv layers whose results fit BUDGET, and the
# baseline on the same layers (SAMPLE channels per layer, scaled).

BUDGET = 1.5e9


def _graph_case(benchmark, make):
    if not _util.torch_available():
        pytest.skip("torch is not installed")
    net = make()
    if net is None:
        pytest.skip("the real model or its importer's dependency is absent")
    names, nbytes, filters, all_filters = graph_models.prefix_fitting(net, BUDGET)
    timer = graph_models.StepTimer()

    def run():
        with timer:
            return fd.decode_all(net, layers=names, n_threads=THREADS, memory_limit=6e9)
    t0 = time.perf_counter()
    out = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    seconds = time.perf_counter() - t0
    del out
    baseline = 0.0
    for name in names:
        n = min(SAMPLE, net.channels(name))
        _, sec, _ = graph_models.twin_gradients(net, name, list(range(n)), THREADS)
        baseline += sec * net.channels(name) / n
    gemm = timer.gemm_shaped()
    gemm_flops = sum(s[3] for s in gemm)
    gemm_seconds = sum(s[4] for s in gemm)
    numpy_seconds = graph_models.numpy_gemm_seconds(gemm)
    other = [s for s in timer.steps if s[2] != 1]
    info = dict(threads=THREADS, layers=len(names), of_layers=len(net.conv_layers),
                filters=filters, of_filters=all_filters, result_gb=nbytes / 1e9,
                seconds=seconds, torch_autograd_seconds=baseline,
                torch_sampled_channels=SAMPLE, speedup=baseline / seconds,
                gemm_steps=len(gemm), gemm_gflop=gemm_flops / 1e9,
                gemm_steps_seconds=gemm_seconds,
                gemm_steps_gflops=gemm_flops / gemm_seconds / 1e9,
                numpy_gemm_seconds=numpy_seconds,
                numpy_gemm_gflops=gemm_flops / numpy_seconds / 1e9,
                gemm_fraction=numpy_seconds / gemm_seconds,
                grouped_steps=len(other), grouped_gflop=sum(s[3] for s in other) / 1e9,
                grouped_seconds=sum(s[4] for s in other))
    print("\n" + ", ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v)
                           for k, v in info.items()))
    if getattr(benchmark, "extra_info", None) is not None:
        benchmark.extra_info.update(info)


def test_resnet50_decode_all_against_torch_autograd(benchmark):
    _graph_case(benchmark, graph_models.resnet50)


def test_mobilenet_v2_decode_all_against_torch_autograd(benchmark):
    _graph_case(benchmark, graph_models.mobilenet_v2)


def test_mobilenet_v2_imported_from_torch_decode_all_against_torch_autograd(benchmark):
    """The same on the real ImageNet weights, imported with from_torch."""
    _graph_case(benchmark, graph_models.mobilenet_v2_imported)


def test_open_nsfw_imported_from_onnx_decode_all_against_torch_autograd(benchmark):
    """A real ResNet-50 (open-nsfw), imported with load_onnx."""
    _graph_case(benchmark, graph_models.open_nsfw_imported)
