"""The kernels (correlate, substitute, unpool, pool, relu) against tests/reference.py."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastdecode as fd
from fastdecode import _validation, ops
from fastdecode._engine import correlation, maps, substitution, tuning, winograd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as ref  # noqa: E402

DTYPES = [np.float32, np.float64]
SETTINGS = settings(max_examples=40, deadline=None)


def assert_within_rounding(got, want, bound, dtype, terms):
    """|got - want| <= 4 * terms * eps(dtype) * bound elementwise, ``bound`` being the same
    computation on absolute values (the classical bound for a sum of ``terms`` products)."""
    eps = np.finfo(dtype).eps
    assert got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    allowed = 4 * terms * eps * bound + np.finfo(dtype).tiny
    assert np.all(err <= allowed), "max error %g, allowed there %g" % (
        err.max(), allowed.flat[np.argmax(err - allowed)])


@st.composite
def correlation_case(draw):
    N, C, K = (draw(st.integers(1, n)) for n in (2, 3, 3))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    H = max(1, h - pad[0] - pad[1] + draw(st.integers(0, 6)))
    W = max(1, w - pad[2] - pad[3] + draw(st.integers(0, 6)))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    f = rng.standard_normal((K, C, h, w)).astype(dtype)
    return x, f, (sy, sx), pad


@SETTINGS
@given(correlation_case())
def test_correlate_matches_reference(case):
    x, f, stride, pad = case
    got = fd.correlate(x, f, stride=stride, pad=pad)
    assert got.dtype == x.dtype
    want = ref.correlate(x, f, stride, pad)
    bound = ref.correlate(np.abs(x), np.abs(f), stride, pad)
    assert_within_rounding(got, want, bound, x.dtype, f[0].size)


def test_correlate_output_size_is_floor():
    x = np.ones((1, 1, 10, 9))
    f = np.ones((2, 1, 3, 2))
    out = fd.correlate(x, f, stride=(3, 2), pad=(1, 0, 2, 1))
    # floor((10 + 1 - 3) / 3) + 1 = 3, floor((9 + 3 - 2) / 2) + 1 = 6
    assert out.shape == (1, 2, 3, 6)


def test_correlate_is_not_flipped():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = 1.0
    f = np.arange(9.0).reshape(1, 1, 3, 3)
    assert fd.correlate(x, f)[0, 0, 0, 0] == f[0, 0, 0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate_single_image(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7, 6)).astype(dtype)
    f = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    got = fd.correlate(x, f, stride=2, pad=1)
    assert got.shape == fd.correlate(x[None], f, stride=2, pad=1)[0].shape
    np.testing.assert_array_equal(got, fd.correlate(x[None], f, stride=2, pad=1)[0])
    np.testing.assert_allclose(got, ref.correlate(x[None], f, 2, 1)[0],
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("xd, fdt, want", [
    (np.float32, np.float64, np.float64), (np.float64, np.float32, np.float64),
    (np.float32, np.float32, np.float32), (np.int64, np.float32, np.float64),
    (np.int32, np.int32, np.float64)])
def test_correlate_mixed_dtypes(xd, fdt, want):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 2, 6, 5)) * 4).astype(xd)
    f = (rng.standard_normal((3, 2, 2, 3)) * 4).astype(fdt)
    got = fd.correlate(x, f, stride=(1, 2))
    assert got.dtype == want
    # The result is the float64 correlation of the values as given.
    np.testing.assert_allclose(got, ref.correlate(x, f, (1, 2)),
                               rtol=1e-5 if want == np.float32 else 1e-12, atol=1e-4)


def test_views_and_byte_orders_give_the_same_results():
    """Non-contiguous, Fortran-ordered and big-endian inputs are the same numbers."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    f = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    want = fd.correlate(x, f, stride=2, pad=1)
    flipped = np.ascontiguousarray(x[:, :, ::-1])[:, :, ::-1]
    for xv in (np.asfortranarray(x), flipped, x.astype(">f4")):
        for fv in (f, np.asfortranarray(f), f.astype(">f4")):
            got = fd.correlate(xv, fv, stride=2, pad=1)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)
    big = x.astype(">f4")
    assert np.array_equal(fd.unpool(big, 2, "bicubic"), fd.unpool(x, 2, "bicubic"))
    assert fd.unpool(big, 2, "bicubic").dtype == np.float32
    assert np.array_equal(fd.pool(big, "avg", size=3), fd.pool(x, "avg", size=3))
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    got = fd.substitute(big, w.astype(">f4"), stride=2)
    assert got.dtype == np.float32
    assert np.array_equal(got, fd.substitute(x, w, stride=2))


# --- substitution ----------------------------------------------------------------------------

@st.composite
def substitution_case(draw, winograd_kernels=False):
    K, J, C = (draw(st.integers(1, n)) for n in (2, 3, 3))
    H, W = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if winograd_kernels and draw(st.integers(0, 3)):   # mostly kernels of 3 times the stride
        h, w = 3 * stride[0], 3 * stride[1]
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    df = rng.standard_normal((K, J, H, W)).astype(dtype)
    wts = rng.standard_normal((J, C, h, w)).astype(dtype)
    return df, wts, stride


@pytest.mark.parametrize("path", ["auto", "winograd", "phased", "col2im"])
@SETTINGS
@given(st.data())
def test_substitute_matches_literal_loop(path, data):
    df, w, stride = data.draw(substitution_case(winograd_kernels=path == "winograd"))
    sy, sx = (stride, stride) if np.isscalar(stride) else stride
    with ref.forced_substitution_path(path):
        got = fd.substitute(df, w, stride=stride)
        taken = substitution.substitution_path(*df.shape[1:], *w.shape[1:], sy, sx, df.itemsize)
    assert got.dtype == df.dtype
    want = ref.substitute(df, w, stride)
    bound = ref.substitute(np.abs(df), np.abs(w), stride)
    terms = df.shape[1] * w.shape[2] * w.shape[3]
    if taken == "winograd":
        m, _ = winograd.winograd_tile(w.shape[2:], (sy, sx), df.itemsize)
        bound = bound + ref.winograd_rounding_bound(df, w, m, (sy, sx))
    assert_within_rounding(got, want, bound, df.dtype, terms)


@pytest.mark.parametrize("path", ["auto", "winograd", "phased", "col2im"])
@SETTINGS
@given(st.data())
def test_substitute_refuses_a_single_non_finite_value_in_df(path, data):
    """One NaN or inf anywhere in df, even against zero weights, raises the input's error on
    every path (df is checked first), never an overflow error or a result."""
    df, w, stride = data.draw(substitution_case(winograd_kernels=path == "winograd"))
    where = tuple(data.draw(st.integers(0, n - 1)) for n in df.shape)
    df[where] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    kind = data.draw(st.sampled_from(["random", "zero", "channel zero"]))
    if kind == "zero":
        w[:] = 0
    elif kind == "channel zero":
        w[where[1]] = 0
    with ref.forced_substitution_path(path):
        with pytest.raises(ValueError, match=r"^df contains 1 non-finite values"):
            fd.substitute(df, w, stride=stride, n_threads=data.draw(st.sampled_from([1, 2])))


def test_substitute_stride_one_is_full_convolution():
    rng = np.random.default_rng(3)
    df = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((3, 2, 3, 2))
    np.testing.assert_allclose(fd.substitute(df, w), ref.substitute_full_convolution(df, w),
                               rtol=1e-12, atol=1e-12)


def test_substitute_single_map():
    rng = np.random.default_rng(4)
    df = rng.standard_normal((3, 4, 4))
    w = rng.standard_normal((3, 2, 2, 3))
    got = fd.substitute(df, w, stride=2)
    assert got.shape == (2, 8, 9)
    np.testing.assert_array_equal(got, fd.substitute(df[None], w, stride=2)[0])


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_substitute_is_adjoint_of_correlate(N, C, K, Ho, Wo, h, w, sy, sx, seed):
    """<correlate(x, W, s), df> == <x, substitute(df, W, s)> with x of (Ho-1)*s + h rows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, (Ho - 1) * sy + h, (Wo - 1) * sx + w))
    W = rng.standard_normal((K, C, h, w))
    df = rng.standard_normal((N, K, Ho, Wo))
    y = fd.correlate(x, W, stride=(sy, sx))
    assert y.shape == df.shape
    back = fd.substitute(df, W, stride=(sy, sx))
    assert back.shape == x.shape
    lhs, rhs = np.vdot(y, df), np.vdot(x, back)
    scale = np.vdot(np.abs(x), fd.substitute(np.abs(df), np.abs(W), stride=(sy, sx)))
    assert abs(lhs - rhs) <= 1e-13 * scale


# --- unpooling -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", [2, 3, (2, 3), (4, 1)])
def test_unpool_nearest_is_repeat(dtype, factor):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    fy, fx = (factor, factor) if np.ndim(factor) == 0 else factor
    got = fd.unpool(a, factor, "nearest")
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.repeat(np.repeat(a, fy, axis=-2), fx, axis=-1))


def test_unpool_bilinear_spot_value():
    """MATLAB: imresize([0 1 2], 2, 'bilinear') = [0 .25 .75 1.25 1.75 2]; a constant column
    stays constant, so each of the two output rows is that vector."""
    got = fd.unpool(np.array([[0.0, 1.0, 2.0]]), 2, "bilinear")
    row = [0, 0.25, 0.75, 1.25, 1.75, 2]
    np.testing.assert_allclose(got, [row, row], rtol=0, atol=1e-15)
    np.testing.assert_allclose(fd.unpool(np.array([[0.0], [1.0], [2.0]]), 2, "bilinear"),
                               np.transpose([row, row]), rtol=0, atol=1e-15)


@pytest.mark.parametrize("method, matlab", [
    ("nearest", [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]),
    ("bilinear", [0, 0, 0, 0.25, 0.75, 1, 1, 0.75, 0.25, 0]),
    # The tenth value, printed as -0.0703 in the same listing, is left out: imresize's own
    # contributions() mirrors tap 7 onto sample 4, which gives -0.0703 - 0.0234 = -0.0938.
    ("bicubic", [0, -0.0234, -0.0703, 0.2031, 0.7969, 1.0938, 1.0938, 0.7969, 0.2031]),
])
def test_unpool_matches_values_printed_by_matlab(method, matlab):
    """imresize([0 0 1 1 0], [1 10], method) as MATLAB prints it (4 decimals)."""
    a = np.array([[0.0, 0.0, 1.0, 1.0, 0.0]])
    n = len(matlab)
    np.testing.assert_allclose(fd.unpool(a, (1, 2), method)[0, :n], matlab, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ref.imresize(a, (1, 2), method)[0, :n], matlab, rtol=0, atol=1e-4)


@SETTINGS
@given(st.sampled_from(["nearest", "bilinear", "bicubic"]), st.integers(1, 7),
       st.integers(1, 7), st.integers(2, 4), st.integers(2, 4), st.sampled_from(DTYPES),
       st.integers(0, 2**32 - 1))
def test_unpool_matches_imresize_port(method, H, W, fy, fx, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((2, H, W)).astype(dtype)
    got = fd.unpool(a, (fy, fx), method)
    assert got.shape == (2, H * fy, W * fx) and got.dtype == dtype
    want = ref.imresize(a, (fy, fx), method)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(a).max())


def test_imresize_port_known_values():
    """Check the reference itself on values MATLAB documents or that follow by hand."""
    # bilinear [0 1 2] x2, and a constant stays constant under every method (weights sum to 1).
    np.testing.assert_allclose(ref.imresize(np.array([[0.0, 1.0, 2.0]]), (1, 2), "bilinear"),
                               [[0, 0.25, 0.75, 1.25, 1.75, 2]], atol=1e-15)
    for method in ("nearest", "bilinear", "bicubic"):
        np.testing.assert_allclose(ref.imresize(np.full((3, 4), 2.5), 3, method), 2.5, atol=1e-14)
    # bicubic, factor 2, first output: u = 0.75, 1-based taps -1, 0, 1, 2 (weights
    # -0.0234375, 0.2265625, 0.8671875, -0.0703125) mirrored onto samples 2, 1, 1, 2.
    a = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    first = -0.0234375 * a[1] + 0.2265625 * a[0] + 0.8671875 * a[0] - 0.0703125 * a[1]
    assert ref.imresize(a[None], (1, 2), "bicubic")[0, 0] == pytest.approx(first, abs=1e-15)
    assert fd.unpool(a[None], (1, 2), "bicubic")[0, 0] == pytest.approx(first, abs=1e-15)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
       st.integers(0, 2**32 - 1))
def test_unpool_adjoint_is_adjoint_of_average_pooling(C, N, Ho, Wo, sy, sx, ph, pw, seed):
    """<avgpool(x), y> == <x, unpool(y, s, 'adjoint', size=p)>, p != s included, no padding."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, (Ho - 1) * sy + ph, (Wo - 1) * sx + pw))
    y = rng.standard_normal((N, C, Ho, Wo))
    pooled = ref.pool(x, "avg", (ph, pw), (sy, sx))
    assert pooled.shape == y.shape
    back = fd.unpool(y, (sy, sx), "adjoint", size=(ph, pw))
    assert back.shape == x.shape
    assert np.vdot(pooled, y) == pytest.approx(np.vdot(x, back), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(back, ref.unpool_adjoint(y, (sy, sx), (ph, pw)), rtol=1e-13,
                               atol=1e-15)


@pytest.mark.parametrize("size", [2, 3, 5])
def test_unpool_nearest_box_for_larger_window(size):
    """nearest with a window larger than the stride substitutes a box of ones (overlaps add)."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((2, 3, 4))
    got = fd.unpool(a, 2, "nearest", size=size)
    np.testing.assert_allclose(got, ref.unpool_box(a, 2, size), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 5), (2, 1, 4, 5), (1, 2, 1, 4, 5)])
def test_unpool_keeps_leading_axes(shape):
    a = np.random.default_rng(7).standard_normal(shape)
    got = fd.unpool(a, 3, "bicubic")
    assert got.shape == shape[:-2] + (shape[-2] * 3, shape[-1] * 3)
    np.testing.assert_allclose(got, ref.imresize(a, 3, "bicubic"), rtol=1e-13, atol=1e-13)


# --- pooling and relu ------------------------------------------------------------------------

@SETTINGS
@given(st.sampled_from(["max", "avg"]), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 3), st.data(), st.sampled_from(DTYPES),
       st.integers(0, 2**32 - 1))
def test_pool_matches_reference(method, ph, pw, sy, sx, data, dtype, seed):
    pt, pb = (data.draw(st.integers(0, ph - 1)) for _ in range(2))
    pl, pr = (data.draw(st.integers(0, pw - 1)) for _ in range(2))
    H = max(1, ph - pt - pb + data.draw(st.integers(0, 5)))
    W = max(1, pw - pl - pr + data.draw(st.integers(0, 5)))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, H, W)).astype(dtype)
    got = fd.pool(x, method, size=(ph, pw), stride=(sy, sx), pad=(pt, pb, pl, pr))
    assert got.dtype == dtype
    want = ref.pool(x, method, (ph, pw), (sy, sx), (pt, pb, pl, pr))
    if method == "max":
        np.testing.assert_array_equal(got, want)
    else:
        tol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_pool_average_divides_by_clipped_area():
    x = np.ones((1, 1, 3, 3))
    got = fd.pool(x, "avg", size=2, stride=2, pad=1)  # windows of 1, 2 and 4 pixels
    np.testing.assert_array_equal(got, np.ones((1, 1, 2, 2)))
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    got = fd.pool(x, "avg", size=2, stride=2, pad=1)
    assert got[0, 0, 0, 0] == 0.0 and got[0, 0, 1, 1] == (4 + 5 + 7 + 8) / 4
    assert got[0, 0, 0, 1] == (1 + 2) / 2


def test_pool_max_ignores_padding():
    x = -np.ones((1, 1, 2, 2)) - np.arange(4.0).reshape(1, 1, 2, 2)
    got = fd.pool(x, "max", size=2, stride=1, pad=1)
    assert got.max() < 0  # zeros of the padding never win
    np.testing.assert_array_equal(got, ref.pool(x, "max", 2, 1, 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["max", "avg"])
def test_pool_halving_matches_reference(dtype, method):
    """2x2 windows at stride 2 without padding (a loop of their own): odd and even sizes, ties,
    1 and 2 threads."""
    rng = np.random.default_rng(12)
    for H, W in ((2, 2), (5, 7), (8, 6), (3, 2)):
        x = rng.standard_normal((3, 2, H, W)).astype(dtype)
        x[0, 0, :2, :2] = 1.5   # a window of ties
        got = fd.pool(x, method, size=2, stride=2, n_threads=1)
        assert got.shape == (3, 2, H // 2, W // 2)
        assert np.array_equal(got, fd.pool(x, method, size=2, stride=2, n_threads=2))
        want = ref.pool(x, method, 2, 2)
        if method == "max":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-7 if dtype == np.float32 else 1e-15)
            # the general loop (one row of padding, then cropped) gives the same bits
            padded = fd.pool(np.pad(x, ((0, 0), (0, 0), (2, 0), (0, 0))), method, size=2,
                             stride=2, pad=(0, 0, 0, 1))[:, :, 1:, :W // 2]
            assert np.array_equal(got, padded)
        # padding at the bottom and right: the last windows are clipped
        for pad in ((0, 1, 0, 0), (0, 0, 0, 1), (0, 1, 0, 1)):
            got = fd.pool(x, method, size=2, stride=2, pad=pad)
            want = ref.pool(x, method, 2, 2, pad)
            np.testing.assert_allclose(got, want, rtol=1e-7 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["planes", "rows", "one pixel"])
def test_correlation_adds_the_bias_and_finds_overflow_in_the_kernel(dtype, case):
    """Each GEMM path adds the bias as ``y + b`` would and reports a non-finite value anywhere:
    from the sums, from the bias, in the first or last image and filter."""
    rng = np.random.default_rng(13)
    shapes = {"planes": ((3, 2, 12, 11), (5, 2, 3, 3)), "rows": ((7, 2, 5, 4), (5, 2, 3, 3)),
              "one pixel": ((9, 2, 4, 4), (5, 2, 4, 4))}[case]
    x = rng.standard_normal(shapes[0]).astype(dtype)
    f = rng.standard_normal(shapes[1]).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    plain, finite = ops.correlate_finite(x, f)
    assert finite and np.array_equal(plain, fd.correlate(x, f))
    for threads in (1, 2):
        got, finite = ops.correlate_finite(x, f, bias=b, n_threads=threads)
        assert finite and np.array_equal(got, plain + b[None, :, None, None])
    # one input pixel at half the largest value, in a corner, reaches one output pixel only;
    # a bias of the largest value on one filter makes just that pixel overflow, wherever it lies
    big = np.finfo(dtype).max
    ones = np.ones_like(f)
    for n, k in ((0, 0), (len(x) - 1, 4), (len(x) // 2, 2)):
        for corner in (0, -1):
            y = np.ones_like(x)
            y[n, 0, corner, corner] = big / 2
            over = np.zeros(5, dtype)
            over[k] = big
            got, finite = ops.correlate_finite(y, ones, bias=over, n_threads=2)
            assert not finite
            assert np.isinf(got).sum() == 1 and np.isinf(got[n, k, corner, corner])
            over[k] = -big
            assert ops.correlate_finite(y, ones, bias=over)[1]
    huge = x.copy()
    huge[-1] = big
    assert not ops.correlate_finite(huge, np.abs(f) + 1)[1]
    with pytest.raises(ValueError, match="overflows"):
        fd.correlate(huge, np.abs(f) + 1)
    with pytest.raises(ValueError, match="one value per filter"):
        ops.correlate_finite(x, f, bias=b[:4])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, stride, pad", [
    ((2, 3, 20, 17), (5, 3, 3, 3), 1, 1),               # planes
    ((2, 2, 23, 19), (4, 2, 5, 4), (2, 3), (2, 0, 3, 1)),  # planes, strides, uneven padding
    ((1, 2, 12, 30), (3, 2, 3, 3), (1, 2), (4, 4, 0, 5)),  # padding wider than the kernel
    ((5, 3, 6, 5), (4, 3, 3, 3), 2, (1, 2, 2, 0)),       # rows
    ((5, 3, 6, 5), (4, 3, 3, 3), 2, (0, 2, 0, 2)),       # rows, padding at the bottom, right
    ((7, 2, 4, 4), (6, 2, 4, 4), 1, (0, 1, 1, 0)),       # rows, would be one pixel unpadded
    ((3, 2, 11, 10), (4, 2, 3, 3), 4, 0),               # strides skipping the last rows
])
def test_padding_read_as_zeros_gives_the_padded_copy_bits(dtype, shape, kernel, stride, pad):
    """The kernels read the padding as zeros instead of copying a padded image: the same bits
    as correlating the zero-padded copy, for 1 and 2 threads."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal(shape).astype(dtype)
    f = rng.standard_normal(kernel).astype(dtype)
    pt, pb, pl, pr = _validation.as_pad("pad", pad)
    padded = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    want = fd.correlate(padded, f, stride=stride)
    for threads in (1, 2):
        got = fd.correlate(x, f, stride=stride, pad=pad, n_threads=threads)
        np.testing.assert_array_equal(got, want)
    ref_out = ref.correlate(x, f, stride, pad)
    np.testing.assert_allclose(want, ref_out, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_planes_correlation_gathers_every_geometry(data):
    """The planes path (64 or more output pixels per image) for any kernel, stride and padding,
    padding wider than the kernel included: within rounding of the reference, and the same
    bits as the zero-padded copy (whose windows all lie inside it) for 1 and 2 threads."""
    draw = data.draw
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    sy, sx = draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3]))
    pad = tuple(draw(st.sampled_from([0, 0, 1, 2, 7])) for _ in range(4))
    Ho, Wo = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    if Ho * Wo < tuning.PLANES_MIN_PIXELS:
        Wo = -(-tuning.PLANES_MIN_PIXELS // Ho)
    H = max(1, (Ho - 1) * sy + h - pad[0] - pad[1] + draw(st.integers(0, sy - 1)))
    W = max(1, (Wo - 1) * sx + w - pad[2] - pad[3] + draw(st.integers(0, sx - 1)))
    N, C, K = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    block = draw(st.sampled_from([tuning.GEMM_BLOCK_ELEMENTS, 64, 700]))  # small: row blocks
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    f = rng.standard_normal((K, C, h, w)).astype(dtype)
    if (H + pad[0] + pad[1] - h) // sy + 1 <= 0 or (W + pad[2] + pad[3] - w) // sx + 1 <= 0:
        return
    padded = np.pad(x, ((0, 0), (0, 0), pad[:2], pad[2:]))
    saved = tuning.GEMM_BLOCK_ELEMENTS
    tuning.GEMM_BLOCK_ELEMENTS = block
    try:
        got = [fd.correlate(x, f, stride=(sy, sx), pad=pad, n_threads=t) for t in (1, 2)]
        of_padded = fd.correlate(padded, f, stride=(sy, sx))
    finally:
        tuning.GEMM_BLOCK_ELEMENTS = saved
    assert got[0].shape[2] * got[0].shape[3] >= tuning.PLANES_MIN_PIXELS
    np.testing.assert_array_equal(got[0], of_padded)
    np.testing.assert_array_equal(got[0], got[1])
    want = ref.correlate(x, f, (sy, sx), pad)
    bound = ref.correlate(np.abs(x), np.abs(f), (sy, sx), pad)
    assert_within_rounding(got[0], want, bound, dtype, C * h * w)


@st.composite
def non_finite_x_case(draw):
    """A correlation (on the planes, rows or one-pixel path) with one NaN or inf in x, and
    filters that are random, all zero, or random with the offending value's channel zeroed."""
    path = draw(st.sampled_from(["planes", "rows", "one pixel"]))
    N, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    if path == "one pixel":
        H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        h, w, stride, pad = H, W, (1, 1), (0, 0, 0, 0)
    else:
        h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
        lo = 9 if path == "planes" else 1
        hi = 24 if path == "planes" else 6
        H = max(h, draw(st.integers(lo * stride[0], hi * stride[0])))
        W = max(w, draw(st.integers(lo * stride[1], hi * stride[1])))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    where = tuple(draw(st.integers(0, n - 1)) for n in x.shape)
    x[where] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    f = rng.standard_normal((K, C, h, w)).astype(dtype)
    kind = draw(st.sampled_from(["random", "zero", "channel zero"]))
    if kind == "zero":
        f[:] = 0
    elif kind == "channel zero":
        f[:, where[1]] = 0
    return x, f, stride, pad


def test_correlate_refuses_nan_in_any_pixel_read_or_not():
    """NaN in each pixel in turn, over geometries where the windows skip rows or columns
    (stride above the kernel, padding on one side only, different padding on rows and columns)
    and where they read everything, on the rows and planes paths."""
    rng = np.random.default_rng(21)
    for trial in range(240):
        h, w = rng.integers(1, 4, size=2)
        sy, sx = rng.integers(1, 5, size=2)
        pad = tuple(int(p) for p in rng.integers(0, 3, size=4))
        big = trial % 4 == 0   # 64 or more output pixels: the planes path
        H = int(rng.integers(max(1, h - pad[0] - pad[1]), 6 + (12 * sy if big else 0)))
        W = int(rng.integers(max(1, w - pad[2] - pad[3]), 6 + (12 * sx if big else 0)))
        f = np.zeros((2, 1, h, w))
        cells = [(y, x) for y in range(H) for x in range(W)]
        for y, x in (cells if len(cells) <= 40 else
                     [cells[i] for i in rng.choice(len(cells), 40, replace=False)]):
            img = rng.standard_normal((1, 1, H, W))
            img[0, 0, y, x] = np.nan
            with pytest.raises(ValueError, match=r"^x contains 1 non-finite values"):
                fd.correlate(img, f, stride=(sy, sx), pad=pad)


@SETTINGS
@given(non_finite_x_case(), st.sampled_from([1, 2]))
def test_correlate_refuses_a_single_non_finite_value_in_x(case, threads):
    """Wherever it is, even in pixels no window reads and against zero filters, one NaN or inf
    in x raises the input's error (checked before the kernel), never an overflow error or a
    result."""
    x, f, stride, pad = case
    with pytest.raises(ValueError, match=r"^x contains 1 non-finite values"):
        fd.correlate(x, f, stride=stride, pad=pad, n_threads=threads)
    with pytest.raises(ValueError, match=r"^x contains 1 non-finite values"):
        ops.correlate_finite(x, f, stride=stride, pad=pad, n_threads=threads,
                              bias=np.ones(len(f)))


@pytest.mark.parametrize("shapes, stride, pad", [
    (((2, 3, 30, 9), (600, 3, 3, 3)), 1, 0),          # filters in two blocks, planes
    (((2, 2, 40, 12), (7, 2, 3, 3)), 2, (1, 0, 2, 1)),  # stride, padding, planes
    (((9, 2, 6, 5), (530, 2, 3, 3)), (2, 1), 1),        # rows, filters in blocks
    (((11, 3, 5, 5), (600, 3, 5, 5)), 1, 0),           # one pixel, filters in blocks
])
def test_correlation_flags_any_non_finite_value(shapes, stride, pad):
    """An inf or a NaN anywhere in x (the kernels' checks on, the input check off) is flagged
    exactly when the output holds one, on every path, for 1 and 3 threads."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal(shapes[0])
    f = rng.standard_normal(shapes[1])
    flagged = 0
    for trial in range(12):
        y = x.copy()
        y.reshape(-1)[rng.integers(y.size) if trial else -1] = np.nan if trial % 2 else np.inf
        for threads in (1, 3):
            got, finite = ops.correlate_finite(y, f, stride=stride, pad=pad, n_threads=threads,
                                                finite_inputs=True)
            assert finite == bool(np.isfinite(got).all())
            flagged += not finite
    assert flagged >= 12
    with pytest.raises(ValueError, match="one value per filter"):
        correlation.correlate_into(x, f, np.empty((1,)), 1, 1, 1, bias=np.ones(2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_blocks_and_special_values(dtype):
    """Sizes around the kernel's blocks of 2^16 values, 1-3 threads, in place or not, and the
    values where a select could go wrong: -0.0, +-inf, the largest and tiny ones."""
    rng = np.random.default_rng(16)
    special = np.array([-0.0, 0.0, np.inf, -np.inf, np.finfo(dtype).max, -np.finfo(dtype).max,
                        np.finfo(dtype).tiny, -np.finfo(dtype).tiny], dtype)
    for n in (0, 1, 7, 2**16 - 1, 2**16, 2**16 + 1, 3 * 2**16 + 5):
        x = rng.standard_normal(n).astype(dtype)
        x[:min(n, 8)] = special[:min(n, 8)]
        for leak in (0.0, 0.25):
            with np.errstate(invalid="ignore"):
                want = np.where(x > 0, x, dtype(leak) * x)
            for threads in (1, 2, 3):
                got = maps.relu_into(x, np.empty_like(x), leak, threads)
                assert np.array_equal(got, want, equal_nan=True)   # 0 * -inf is NaN
                assert np.array_equal(np.signbit(got), np.signbit(want))
            y = x.copy()
            maps.relu_into(y, y, leak, 2)
            assert np.array_equal(y, want, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("leak", [0.0, 0.1, -2.0])
def test_relu_matches_reference(dtype, leak):
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 5)).astype(dtype)
    x[0, 0, 0, :3] = 0.0
    got = fd.relu(x, leak=leak)
    assert got.dtype == dtype and got.shape == x.shape
    # The leak is applied in the data's precision (as MATLAB does for single data).
    np.testing.assert_array_equal(got, ref.relu(x, x.dtype.type(leak)).astype(dtype))


# --- threads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_bitwise_identical_for_1_and_2_threads(dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 17, 15)).astype(dtype)
    f = rng.standard_normal((5, 4, 3, 4)).astype(dtype)
    for kwargs in ({}, {"stride": (2, 3), "pad": (1, 0, 2, 1)}):
        a = fd.correlate(x, f, n_threads=1, **kwargs)
        b = fd.correlate(x, f, n_threads=2, **kwargs)
        assert np.array_equal(a, b)
    df = rng.standard_normal((3, 5, 6, 7)).astype(dtype)
    for s in (1, 2):
        assert np.array_equal(fd.substitute(df, f, stride=s, n_threads=1),
                              fd.substitute(df, f, stride=s, n_threads=2))
    for method in ("nearest", "bilinear", "bicubic", "adjoint"):
        assert np.array_equal(fd.unpool(df, 2, method, n_threads=1),
                              fd.unpool(df, 2, method, n_threads=2))
    assert np.array_equal(fd.unpool(df, 2, "adjoint", size=3, n_threads=1),
                          fd.unpool(df, 2, "adjoint", size=3, n_threads=2))
    for method in ("max", "avg"):
        assert np.array_equal(fd.pool(x, method, size=3, stride=2, pad=1, n_threads=1),
                              fd.pool(x, method, size=3, stride=2, pad=1, n_threads=2))
        assert np.array_equal(fd.pool(x, method, n_threads=1), fd.pool(x, method, n_threads=2))
    assert np.array_equal(fd.relu(x, leak=0.1, n_threads=1), fd.relu(x, leak=0.1, n_threads=2))
