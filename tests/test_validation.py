"""Bad input: clear errors naming the argument, layer and shapes before compiled code runs."""

import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastdecode as fd

IMG = np.ones((1, 1, 6, 6))
FILT = np.ones((2, 1, 3, 3))


def lenet_like():
    rng = np.random.default_rng(0)
    return fd.Network([fd.Conv(rng.standard_normal((4, 1, 3, 3))), fd.Pool("avg", size=2),
                       fd.ReLU(), fd.Conv(rng.standard_normal((5, 4, 2, 2)), name="top")])


NET = lenet_like()

CASES = {
    # wrong number of dimensions
    "correlate x 2-D": (lambda: fd.correlate(np.ones((6, 6)), FILT), ValueError,
                        r"x must be 3-D or 4-D, got shape \(6, 6\)"),
    "correlate x 5-D": (lambda: fd.correlate(np.ones((1,) + IMG.shape), FILT), ValueError,
                        r"x must be 3-D or 4-D"),
    "correlate filters 3-D": (lambda: fd.correlate(IMG, np.ones((1, 3, 3))), ValueError,
                              r"filters must be 4-D, got shape \(1, 3, 3\)"),
    "substitute df 2-D": (lambda: fd.substitute(np.ones((3, 3)), FILT), ValueError,
                          r"df must be 3-D or 4-D"),
    "substitute weights 3-D": (lambda: fd.substitute(np.ones((1, 2, 3, 3)), np.ones((2, 3, 3))),
                               ValueError, r"weights must be 4-D"),
    "pool x 3-D": (lambda: fd.pool(np.ones((1, 6, 6))), ValueError, r"x must be 4-D"),
    "unpool a 1-D": (lambda: fd.unpool(np.ones(4), 2), ValueError, r"a must have at least 2"),
    "forward x 3-D": (lambda: NET.forward(np.ones((1, 8, 8))), ValueError,
                      r"x must be 4-D, got shape \(1, 8, 8\)"),
    "conv weights 3-D": (lambda: fd.Conv(np.ones((2, 3, 3))), ValueError,
                         r"conv weights must be 4-D \(K, C, h, w\), got shape \(2, 3, 3\)"),
    "conv weights 5-D": (lambda: fd.Conv(np.ones((1, 2, 1, 3, 3))), ValueError,
                         r"conv weights must be 4-D .*\(1, 2, 1, 3, 3\)"),
    # channel mismatches
    "correlate channels": (lambda: fd.correlate(np.ones((1, 2, 6, 6)), FILT), ValueError,
                           r"x has 2 channels but filters expect 1 \(x \(1, 2, 6, 6\), "
                           r"filters \(2, 1, 3, 3\)\)"),
    "substitute channels": (lambda: fd.substitute(np.ones((1, 3, 4, 4)), FILT), ValueError,
                            r"df has 3 channels but weights have 2 filters"),
    "network consecutive convs": (
        lambda: fd.Network([fd.Conv(np.ones((4, 2, 3, 3))), fd.Conv(np.ones((3, 5, 2, 2)))]),
        ValueError, r"conv layer 'layer2': filters \(3, 5, 2, 2\) \(depth 5\) do not fit an "
                    r"input of 4 channels"),
    "network bnorm channels": (
        lambda: fd.Network([fd.Conv(np.ones((4, 2, 3, 3))), fd.BatchNorm(*np.ones((4, 3)))]),
        ValueError, r"bnorm layer 'layer2' has 3 channels but its input has 4"),
    "forward channels": (lambda: NET.forward(np.ones((1, 3, 8, 8))), ValueError,
                         r"images have 3 channels but the network expects 1"),
    # bias length
    "conv bias length": (lambda: fd.Conv(FILT, np.ones(3)), ValueError,
                         r"bias has 3 values but weights \(2, 1, 3, 3\) have 2 filters"),
    "bnorm lengths": (lambda: fd.BatchNorm(np.ones(2), np.ones(3), np.ones(2), np.ones(2)),
                      ValueError, r"bias has 3 values, gain has 2"),
    # non-finite values
    "conv weights NaN": (lambda: fd.Conv(np.full((2, 1, 3, 3), np.nan)), ValueError,
                         r"weights contains 18 non-finite"),
    "conv bias inf": (lambda: fd.Conv(FILT, [1.0, np.inf]), ValueError,
                      r"bias contains 1 non-finite"),
    "bnorm sigma NaN": (lambda: fd.BatchNorm(np.ones(2), np.ones(2), np.ones(2), [1, np.nan]),
                        ValueError, r"sigma contains 1 non-finite"),
    "correlate x NaN": (lambda: fd.correlate(np.where(IMG > 0, np.nan, 0), FILT), ValueError,
                        r"x contains 36 non-finite"),
    "correlate filters inf": (lambda: fd.correlate(IMG, -np.inf * FILT), ValueError,
                              r"filters contains 18 non-finite"),
    "substitute df NaN": (lambda: fd.substitute(np.full((1, 2, 2, 2), np.nan), FILT),
                          ValueError, r"df contains 8 non-finite"),
    "unpool NaN": (lambda: fd.unpool(np.full((3, 3), np.nan), 2), ValueError,
                   r"a contains 9 non-finite"),
    "pool inf": (lambda: fd.pool(np.full((1, 1, 4, 4), np.inf)), ValueError,
                 r"x contains 16 non-finite"),
    "forward NaN": (lambda: NET.forward(np.full((1, 1, 8, 8), np.nan)), ValueError,
                    r"x contains 64 non-finite"),
    "relu leak NaN": (lambda: fd.relu(IMG, leak=np.nan), ValueError, r"leak must be finite"),
    "ReLU leak inf": (lambda: fd.ReLU(leak=np.inf), ValueError, r"relu leak must be finite"),
    "LRN alpha NaN": (lambda: fd.LRN(5, 1.0, np.nan, 0.75, name="norm1"), ValueError,
                      r"lrn layer 'norm1': alpha must be finite, got nan"),
    "LRN depth 0": (lambda: fd.LRN(0), ValueError, r"depth must be >= 1, got 0"),
    # unknown names and methods
    "unknown layer": (lambda: NET.forward(IMG, upto="conv9"), KeyError,
                      r"no layer named 'conv9'; layers are: layer1, layer2, layer3, top"),
    "decode unknown layer": (lambda: fd.decode(NET, "conv9"), KeyError, r"conv9.*layer1"),
    "layer index": (lambda: fd.decode(NET, 7), IndexError, r"layer index 7 out of range"),
    "decode unknown unpool": (lambda: fd.decode(NET, "top", unpool="lanczos"), ValueError,
                              r"unknown unpool method 'lanczos'.*nearest.*adjoint"),
    "unpool unknown method": (lambda: fd.unpool(np.ones((3, 3)), 2, "lanczos"), ValueError,
                              r"unknown unpool method 'lanczos'"),
    "pool unknown method": (lambda: fd.pool(IMG, "min"), ValueError,
                            r"unknown pooling method 'min'"),
    "Pool unknown method": (lambda: fd.Pool("median"), ValueError,
                            r"pool method must be 'max' or 'avg', got 'median'"),
    # images smaller than the filter
    "correlate small image": (lambda: fd.correlate(np.ones((1, 1, 2, 6)), FILT), ValueError,
                              r"padded image 2x6 is smaller than the filters 3x3"),
    "forward small image": (lambda: NET.forward(np.ones((1, 1, 3, 3))), ValueError,
                            r"images of 3x3 are too small for layer 'layer2' \(pool"),
    "pool small image": (lambda: fd.pool(np.ones((1, 1, 1, 4)), size=2), ValueError,
                         r"input 1x4 .* smaller than the pooling window"),
    "pool pad >= window": (lambda: fd.Pool("max", size=2, pad=2), ValueError,
                           r"pad \(2, 2, 2, 2\) must be smaller than the window \(2, 2\)"),
    # decoding what cannot be decoded
    "decode a pool layer": (lambda: fd.decode(NET, "layer2"), ValueError,
                            r"layer 'layer2' is a pool layer; only conv layers can be decoded "
                            r"\(conv layers: layer1, top\)"),
    "decode a relu layer": (lambda: fd.decode(NET, -2), ValueError, r"'layer3' is a relu"),
    "decode through softmax": (
        lambda: fd.decode(fd.Network([fd.Conv(FILT), fd.Softmax(),
                                      fd.Conv(np.ones((2, 2, 1, 1)))]), 2),
        ValueError, r"cannot decode through layer 'layer2' of type softmax"),
    "decode not a network": (lambda: fd.decode([fd.Conv(FILT)], 0), TypeError,
                             r"net must be a fastdecode.Network"),
    "forward empty images": (
        lambda: fd.Network([fd.Pool("max", size=3, pad=2)], input_channels=1).forward(
            np.ones((1, 1, 0, 3))), ValueError, r"x is empty, shape \(1, 1, 0, 3\)"),
    # filter selection
    "filter index too large": (lambda: fd.decode(NET, "top", filters=[0, 5]), IndexError,
                               r"filter index 5 out of range: layer 'top' has 5 filters"),
    "filter index too small": (lambda: fd.decode(NET, "top", filters=[-6]), IndexError,
                               r"filter index -6 out of range"),
    "filter index float": (lambda: fd.decode(NET, "top", filters=[1.5]), ValueError,
                           r"filters must be an integer"),
    "filters empty": (lambda: fd.decode(NET, "top", filters=[]), ValueError,
                      r"filters must be a non-empty 1-D list"),
    "filter mask length": (lambda: fd.decode(NET, "top", filters=[True, False]), ValueError,
                           r"boolean filters mask must have 5 entries, got 2"),
    # network construction
    "network empty": (lambda: fd.Network([]), ValueError, r"at least one layer"),
    "network non-layer": (lambda: fd.Network([FILT]), TypeError, r"layer 0 is a ndarray"),
    "layer name not str": (lambda: fd.Conv(FILT, name=3), TypeError,
                           r"layer name must be a string"),
    # memory budget
    "memory_limit negative": (lambda: fd.decode(NET, "top", memory_limit=-1), ValueError,
                              r"memory_limit must be a positive number"),
    "memory_limit string": (lambda: fd.correlate(IMG, FILT, memory_limit="1GB"), ValueError,
                            r"memory_limit must be a positive number"),
    "memory_limit bool": (lambda: fd.unpool(IMG, 2, memory_limit=True), ValueError,
                          r"memory_limit"),
    # threads
    "pad beyond C integers": (lambda: fd.correlate(IMG, FILT, pad=(0, 0, 0, 2**64)), ValueError,
                              r"pad must be at most"),
    "n_threads zero": (lambda: fd.correlate(IMG, FILT, n_threads=0), ValueError,
                       r"n_threads must be >= 1, got 0"),
    "n_threads bool": (lambda: fd.decode(NET, "top", n_threads=True), TypeError,
                       r"n_threads must be an integer, got a boolean"),
    "n_threads float": (lambda: NET.forward(IMG, n_threads=1.5), ValueError,
                        r"n_threads must be an integer, got 1.5"),
    # dtypes
    "complex input": (lambda: fd.correlate(IMG * 1j, FILT), TypeError,
                      r"x must be a real numeric array, got dtype complex128"),
    "string input": (lambda: fd.unpool("abc", 2), TypeError, r"a must be a real numeric array"),
}

BAD_STRIDES = [
    (0, ValueError, r"must be >= 1, got 0"), (-2, ValueError, r"must be >= 1, got -2"),
    (1.5, ValueError, r"must be an integer, got 1.5"), (np.nan, ValueError, r"must be an integer"),
    (True, TypeError, r"must be an integer, got a boolean"),
    ("2", ValueError, r"must be an integer, got '2'"),
    ((1, 2, 3), ValueError, r"must be an int or a pair"),
    ((2, 0), ValueError, r"must be >= 1, got 0"),
    (2**63, ValueError, r"must be at most 9223372036854775807, got 9223372036854775808"),
    ((1, 10**30), ValueError, r"must be at most"),
]
STRIDE_TAKERS = {
    "correlate stride": ("stride", lambda s: fd.correlate(IMG, FILT, stride=s)),
    "substitute stride": ("stride", lambda s: fd.substitute(np.ones((1, 2, 3, 3)), FILT, stride=s)),
    "unpool factor": ("factor", lambda s: fd.unpool(np.ones((3, 3)), s)),
    "pool stride": ("stride", lambda s: fd.pool(IMG, "avg", stride=s)),
    "Conv stride": ("stride", lambda s: fd.Conv(FILT, stride=s)),
    "Conv dilate": ("dilate", lambda s: fd.Conv(FILT, dilate=s)),
    "Pool stride": ("stride", lambda s: fd.Pool("max", stride=s)),
    "Pool size": ("size", lambda s: fd.Pool("max", size=s)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_with_a_clear_message(case):
    call, exc, match = CASES[case]
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("taker", sorted(STRIDE_TAKERS))
@pytest.mark.parametrize("value, exc, match", BAD_STRIDES,
                         ids=[repr(b[0]) for b in BAD_STRIDES])
def test_bad_strides_and_sizes(taker, value, exc, match):
    name, call = STRIDE_TAKERS[taker]
    with pytest.raises(exc, match=name + " " + match):
        call(value)


@pytest.mark.parametrize("taker", ["correlate stride", "substitute stride", "unpool factor",
                                   "Conv stride", "Conv dilate", "Pool size"])
def test_stride_none_is_refused(taker):
    name, call = STRIDE_TAKERS[taker]
    with pytest.raises(ValueError, match=name + " must be an integer, got None"):
        call(None)


def test_integral_float_stride_is_accepted():
    np.testing.assert_array_equal(fd.correlate(IMG, FILT, stride=2.0),
                                  fd.correlate(IMG, FILT, stride=2))
    np.testing.assert_array_equal(fd.correlate(IMG, FILT, stride=np.int64(2)),
                                  fd.correlate(IMG, FILT, stride=(2, 2)))


def test_relu_refuses_non_finite_input():
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        fd.relu(np.array([-np.inf, 1.0]))


@pytest.mark.parametrize("method", ["max", "avg"])
def test_pool_refuses_empty_images(method):
    with pytest.raises(ValueError, match="x"):
        fd.pool(np.ones((1, 1, 0, 3)), method, size=3, pad=2)
    with pytest.raises(ValueError, match="non-empty"):
        fd.pool(np.ones((0, 1, 4, 4)), method, size=2)


# --- absurd sizes: refused before allocation --------------------------------------------------

def _refused_without_allocating(call, exc=MemoryError):
    tracemalloc.start()
    try:
        with pytest.raises(exc) as info:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, "allocated %d bytes before refusing" % peak
    return str(info.value)


ABSURD = {
    "correlate": lambda: fd.correlate(IMG, np.ones((1, 1, 1, 1)), pad=10**6),
    "substitute": lambda: fd.substitute(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), stride=10**9),
    "unpool": lambda: fd.unpool(np.ones((3, 3)), 10**9),
    "unpool window": lambda: fd.unpool(np.ones((3, 3)), 2, "adjoint", size=10**9),
    "decode": lambda: fd.decode(fd.Network([fd.Conv(np.ones((2, 1, 1, 1))),
                                            fd.Pool("avg", size=10**5),
                                            fd.Conv(np.ones((2, 2, 3, 3)))]), 2),
    "decode many filters": lambda: fd.decode(fd.Network([
        fd.Conv(np.ones((2, 1, 1, 1))), fd.Pool("avg", size=2, stride=10**4),
        fd.Conv(np.ones((2, 2, 3, 3)))]), 2, unpool="bicubic"),
    "forward": lambda: fd.Network([fd.Conv(np.ones((2, 1, 1, 1)), pad=10**6)]).forward(IMG),
}


@pytest.mark.parametrize("case", sorted(ABSURD))
def test_absurd_sizes_refused_with_the_bytes_needed(case):
    message = _refused_without_allocating(ABSURD[case])
    assert "would need" in message and "memory limit" in message
    assert any(unit in message for unit in ("GiB", "TiB"))


SCRATCH_PROBE = textwrap.dedent("""
    import resource
    import numpy as np
    import fastdecode as fd
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
    x = np.ones((1, 3, 2000, 2000), dtype=np.float32)   # 48 MB
    f = np.ones((1, 3, 11, 11), dtype=np.float32)
    try:
        out = fd.correlate(x, f, n_threads=1)             # 15 MB of output
    except MemoryError:
        print("refused")
    else:
        assert out.shape == (1, 1, 1990, 1990) and np.all(out == 363), "wrong result"
        print("computed")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_correlate_survives_a_failed_scratch_allocation(tmp_path):
    """With 2 GiB of address space, a correlation whose output is 15 MB either runs in
    bounded scratch memory or raises MemoryError; it never kills the process."""
    # Run outside the project root, whose unbuilt fastdecode/ would shadow the installed one.
    proc = subprocess.run([sys.executable, "-c", SCRATCH_PROBE], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, "exit code %d: %s" % (proc.returncode, proc.stderr[-500:])
    assert proc.stdout.strip() in ("computed", "refused")


def test_memory_limit_is_a_parameter():
    x = np.ones((1, 1, 40, 40))
    with pytest.raises(MemoryError, match=r"would need 25.0 KiB .*\(1, 2, 40, 40\), float64.*"
                                          r"memory limit of 20.0 KiB"):
        fd.correlate(x, np.ones((2, 1, 1, 1)), memory_limit=20 * 1024)
    assert fd.correlate(x, np.ones((2, 1, 1, 1)), memory_limit=25 * 1024).shape == (1, 2, 40, 40)
    with pytest.raises(MemoryError, match=r"decoded filters of layer 'top' would need"):
        fd.decode(NET, "top", memory_limit=100)
    with pytest.raises(MemoryError, match=r"forward output of layer 'layer1' would need"):
        NET.forward(x, memory_limit=100)
    # Every layer's output counts, not only the last one: layer1 is 4 x 38 x 38 (46208 bytes),
    # the top 5 x 18 x 18 (12960 bytes).
    with pytest.raises(MemoryError, match=r"forward output of layer 'layer1' would need 45.1 KiB"):
        NET.forward(x, memory_limit=20000)



def test_forward_memory_limit_above_the_default_reaches_the_convolutions(monkeypatch):
    import fastdecode._validation as validation
    monkeypatch.setattr(validation, "DEFAULT_MEMORY_LIMIT", 1000)
    x = np.ones((1, 1, 40, 40))
    with pytest.raises(MemoryError, match=r"memory limit of 1000 B"):
        NET.forward(x)
    assert NET.forward(x, memory_limit=np.inf).shape == (1, 5, 18, 18)
    assert NET.forward(x, memory_limit=10**6).shape == (1, 5, 18, 18)


def test_infinite_memory_limit():
    np.testing.assert_array_equal(fd.decode(NET, "top", memory_limit=np.inf), fd.decode(NET, "top"))
    assert fd.correlate(IMG, FILT, memory_limit=float("inf")).shape == (1, 2, 4, 4)


def test_more_threads_than_cores_is_harmless():
    """Thread counts are capped at the cores: no crash, same bits."""
    want = fd.correlate(IMG, FILT, n_threads=1)
    for n in (64, 10**5, 2**40):
        np.testing.assert_array_equal(fd.correlate(IMG, FILT, n_threads=n), want)
    np.testing.assert_array_equal(fd.decode(NET, "top", n_threads=10**5), fd.decode(NET, "top"))


# --- never a crash ---------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=5),
       st.lists(st.integers(0, 4), min_size=2, max_size=5),
       st.one_of(st.integers(-1, 3), st.tuples(st.integers(-1, 3), st.integers(-1, 3))),
       st.one_of(st.integers(-1, 3), st.tuples(*[st.integers(-1, 2)] * 4)),
       st.sampled_from([np.float32, np.float64, np.int8, bool]))
def test_kernels_never_crash_on_arbitrary_shapes(xshape, fshape, stride, pad, dtype):
    """Any shapes, strides and pads: a result of the documented shape or a clean error."""
    x = np.ones(xshape, dtype=dtype)
    f = np.ones(fshape, dtype=dtype)
    calls = [lambda: fd.correlate(x, f, stride=stride, pad=pad),
             lambda: fd.substitute(x, f, stride=stride),
             lambda: fd.unpool(x, stride, "bicubic")]
    if min(xshape) > 0:  # empty images: test_pool_refuses_empty_images
        calls.append(lambda: fd.pool(x, "avg", size=fshape[-1], stride=stride, pad=pad))
    for call in calls:
        try:
            out = call()
        except (ValueError, TypeError, MemoryError):
            continue
        assert np.all(np.isfinite(out))


def test_overflowing_results_are_refused_not_returned_as_inf():
    x = np.full((1, 1, 3, 3), 1e38, np.float32)
    f = np.full((1, 1, 3, 3), 10, np.float32)
    with pytest.raises(ValueError, match="correlation .* overflows float32"):
        fd.correlate(x, f)
    with pytest.raises(ValueError, match="substitution .* overflows float32"):
        fd.substitute(x, f)
    assert np.isfinite(fd.correlate(x.astype(np.float64), f)).all()
    big = fd.Network([fd.Conv(np.full((2, 1, 3, 3), 1e30, np.float32)),
                      fd.Conv(np.full((2, 2, 3, 3), 1e30, np.float32))])
    for unpool in ("nearest", "bilinear"):
        with pytest.raises(ValueError, match="decoding layer 'layer2' overflows float32"):
            fd.decode(big, "layer2", unpool=unpool)
    with pytest.raises(ValueError, match="overflows float32"):
        fd.decode_all(big)
    assert np.isfinite(fd.decode(big.astype(np.float64), "layer2")).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_arrays_are_checked_for_nan_and_inf_everywhere(dtype):
    from fastdecode._engine.tuning import PARALLEL_CHECK_ELEMENTS
    from fastdecode._validation import all_finite
    n = PARALLEL_CHECK_ELEMENTS + 12345          # blocks of 2**16 and a ragged tail
    x = np.random.default_rng(0).standard_normal(n).astype(dtype)
    assert all_finite(x) and all_finite(x[::2])
    big = np.full(n, np.finfo(dtype).max, dtype)  # finite, however large
    assert all_finite(big) and all_finite(-big)
    fortran = np.asfortranarray(x[:n - n % 8].reshape(-1, 8))
    swapped = x.astype(x.dtype.newbyteorder())     # other byte order: numpy's check
    assert all_finite(fortran) and all_finite(swapped)
    fortran[100, 3], swapped[n - 1] = np.nan, np.inf
    assert not all_finite(fortran) and not all_finite(swapped)
    for pos in (0, 7, 8, 65535, 65536, n // 2, n - 1):
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[pos] = bad
            assert not all_finite(y) and not all_finite(y[::-1])
            with pytest.raises(ValueError, match="1 non-finite"):
                fd.substitute(y.reshape(1, 1, -1, 1), np.ones((1, 1, 1, 1), dtype))
