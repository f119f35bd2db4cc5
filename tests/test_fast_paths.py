"""The BLAS-based kernels (im2col/col2im around GEMM, shifted GEMMs over padded planes,
Winograd's minimal filtering) against the direct loops and the references.

Every form of the substitution (GEMM + col2im with rows over the maps' pixels or over the
weights' entries, shifted GEMMs, Winograd) and the blocked correlation are exercised on shapes
that make the blocks uneven, for float32 and float64, and their results must be bitwise
identical for 1, 2 and 3 threads.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastdecode as fd
from fastdecode import _validation
from fastdecode._engine import (blas, correlation, grid, layout, resample, substitution, tuning,
                                winograd, workspace)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as ref  # noqa: E402

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _close(a, b, dtype):
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL[dtype] * scale)


# (F, J, H, W) maps, (J, C, kh, kw) weights, stride: shapes for the phased shifted GEMMs
PHASED_CASES = [
    ((3, 8, 20, 17), (8, 40, 3, 3), 1),
    ((2, 6, 16, 19), (6, 33, 4, 4), 2),        # a 2x2 pool and a 3x3 conv merged
    ((1, 5, 30, 12), (5, 64, 5, 3), (1, 2)),
    ((4, 3, 11, 14), (3, 32, 6, 6), 2),
]
# shapes that substitute by Winograd's method: 3x3 kernels at stride 1 on large enough maps
WINOGRAD_CASES = [
    ((2, 64, 20, 21), (64, 64, 3, 3), 1),
    ((3, 64, 10, 30), (64, 65, 3, 3), (1, 1)),  # many maps, tiles running across maps
    ((2, 64, 20, 21), (64, 64, 6, 6), 2),        # stride 2: four phases of 3x3 kernels
]
# all of them, with shapes for GEMM + col2im
SUBSTITUTE_CASES = [
    ((3, 4, 5, 6), (4, 2, 3, 3), 1),           # maps layout
    ((2, 6, 9, 4), (6, 5, 2, 3), (2, 3)),      # maps layout, anisotropic stride
    ((1, 5, 2, 3), (5, 3, 7, 8), 2),           # weights layout
    ((7, 3, 1, 1), (3, 2, 4, 4), 3),           # 1x1 maps
    ((40, 8, 3, 3), (8, 3, 30, 31), 4),        # weights layout, many maps, overlapping blocks
    ((1, 3, 3, 3), (3, 2, 5, 5), 7),           # stride larger than the weights: gaps
] + PHASED_CASES + WINOGRAD_CASES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("df_shape, w_shape, stride", SUBSTITUTE_CASES)
def test_substitute_matches_reference(df_shape, w_shape, stride, dtype):
    rng = np.random.default_rng(sum(df_shape) + sum(w_shape))
    df = rng.standard_normal(df_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    out = fd.substitute(df, w, stride=stride)
    assert out.dtype == dtype
    _close(out, ref.substitute(df, w, stride), dtype)


@pytest.mark.parametrize("layout_maps", [True, False])
def test_substitute_both_layouts_agree_with_direct_loop(layout_maps):
    # A large problem so that several tasks and several GEMM row blocks per task occur.
    rng = np.random.default_rng(3)
    if layout_maps:
        df, w = rng.standard_normal((5, 16, 37, 29)), rng.standard_normal((16, 40, 3, 3))
    else:
        df, w = rng.standard_normal((300, 16, 3, 3)), rng.standard_normal((16, 3, 61, 60))
    layout = substitution.substitute_blocks(*df.shape, *w.shape[1:])[0]
    assert layout == ("maps" if layout_maps else "weights")
    out = fd.substitute(df, w, stride=2)
    _close(out, ref.substitute(df, w, 2), np.float64)


# (N, C, H, W) images, (K, C, h, w) filters, stride, pad
CORRELATE_CASES = [
    ((3, 2, 9, 8), (4, 2, 3, 2), 1, 0),
    ((20, 1, 28, 28), (50, 1, 28, 28), 1, 0),     # a pure GEMM: one output pixel
    ((2, 3, 11, 13), (5, 3, 4, 4), (2, 3), (1, 0, 2, 1)),
    ((30, 4, 7, 7), (600, 4, 3, 3), 2, 1),         # filters split over tasks
    ((1, 2, 5, 5), (3, 2, 5, 5), 1, 2),
    ((2, 3, 20, 19), (5, 3, 3, 3), 1, 1),            # large planes: GEMM straight into them
    ((1, 2, 30, 31), (600, 2, 5, 4), (2, 3), (1, 2, 0, 1)),
    ((3, 70, 12, 12), (4, 70, 3, 3), 1, 0),          # deep patches: several row blocks
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, f_shape, stride, pad", CORRELATE_CASES)
def test_correlate_gemm_matches_reference(x_shape, f_shape, stride, pad, dtype):
    rng = np.random.default_rng(sum(x_shape) + sum(f_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    f = rng.standard_normal(f_shape).astype(dtype)
    out = fd.correlate(x, f, stride=stride, pad=pad)
    assert out.dtype == dtype
    _close(out, ref.correlate(x, f, stride, pad), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_kernels_bitwise_identical_for_any_thread_count(dtype):
    rng = np.random.default_rng(11)
    df = rng.standard_normal((9, 12, 14, 15)).astype(dtype)
    w = rng.standard_normal((12, 20, 3, 3)).astype(dtype)
    small = rng.standard_normal((70, 12, 3, 3)).astype(dtype)
    big = rng.standard_normal((12, 3, 40, 41)).astype(dtype)
    x = rng.standard_normal((37, 3, 20, 20)).astype(dtype)
    f = rng.standard_normal((33, 3, 5, 5)).astype(dtype)
    for run in (lambda t: fd.substitute(df, w, stride=2, n_threads=t),
                lambda t: fd.substitute(small, big, stride=4, n_threads=t),
                lambda t: fd.correlate(x, f, stride=1, pad=2, n_threads=t)):
        one, two, three = run(1), run(2), run(3)
        assert np.array_equal(one, two) and np.array_equal(one, three)


def test_correlate_takes_both_paths():
    rng = np.random.default_rng(12)
    for hw in (8, 9, 30):  # 1, 4 and 784 output pixels per image around PLANES_MIN_PIXELS
        x = rng.standard_normal((3, 2, hw, hw))
        f = rng.standard_normal((7, 2, 8, 8))
        _close(fd.correlate(x, f), ref.correlate(x, f), np.float64)
    assert (30 - 8 + 1) ** 2 >= tuning.PLANES_MIN_PIXELS > (9 - 8 + 1) ** 2


def test_block_sizes_depend_on_shapes_only():
    # The partition into tasks must not change with the thread count: it takes no such argument.
    assert substitution.substitute_blocks(1, 512, 3, 3, 3, 164, 164)[0] == "weights"
    assert substitution.substitute_blocks(1, 512, 40, 40, 512, 3, 3)[0] == "maps"
    nb, kb, pr = correlation.correlate_blocks(10000, 500, 1, 784)
    assert 1 <= nb <= 10000 and 1 <= kb <= 500 and 1 <= pr <= nb
    # one large image: the im2col scratch is bounded by pixel chunks, not by the image
    nb, kb, pr = correlation.correlate_blocks(1, 512, 224 * 224, 512 * 9)
    assert nb == 1 and pr * 512 * 9 <= 2 * tuning.GEMM_BLOCK_ELEMENTS
    kb, rb = correlation.correlate_plane_blocks(512, 224, 224, 512 * 9)
    assert rb * 224 * 512 * 9 <= 4 * tuning.GEMM_BLOCK_ELEMENTS
    kb, rb = correlation.correlate_plane_blocks(10, 100, 100, 512 * 28 * 28)  # huge filters: one row
    assert rb == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["nearest", "adjoint"])
@pytest.mark.parametrize("factor", [2, 3, (2, 3)])
def test_box_unpooling_fast_path_is_the_separable_resampling(dtype, method, factor):
    from fastdecode._engine import _resample
    rng = np.random.default_rng(14)
    a = rng.standard_normal((4, 3, 7, 6)).astype(dtype)
    fy, fx = _validation.as_pair("factor", factor)
    got = fd.unpool(a, factor, method)
    ridx, rw = resample.METHODS[method].taps(7, fy, fy)
    cidx, cw = resample.METHODS[method].taps(6, fx, fx)
    tmp = np.empty((12, 7 * fy, 6), dtype=dtype)
    _resample.resample_rows(a.reshape(12, 7, 6), ridx, rw, tmp, 1)
    expected = np.empty((12, 7 * fy, 6 * fx), dtype=dtype)
    _resample.resample_cols(tmp, cidx, cw, expected, 1)
    assert np.array_equal(got, expected.reshape(got.shape))
    _close(got, ref.unpool(a, (fy, fx), (fy, fx), method), dtype)


def test_reused_buffers_give_the_same_results():
    rng = np.random.default_rng(15)
    # maps smaller than the weights: the "weights" layout, which makes transposed copies
    big = (rng.standard_normal((6, 9, 3, 2)), rng.standard_normal((9, 4, 5, 4)))
    small = (rng.standard_normal((2, 5, 4, 4)), rng.standard_normal((5, 3, 2, 2)))
    expected = [fd.substitute(*big, stride=2), fd.substitute(*small)]
    with workspace.reuse() as ws:
        with workspace.reuse() as inner:  # nested: released by the outermost only
            assert inner is ws and workspace.current() is ws
            got = [fd.substitute(*big, stride=2), fd.substitute(*small)]
        assert len(ws)
        again = fd.substitute(*big, stride=2)
    assert not len(ws) and workspace.current() is not ws
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert np.array_equal(again, expected[0])


def test_balanced_blocks():
    assert grid.balanced(64, 57) == 32
    assert grid.balanced(512, 57) == 57
    assert grid.balanced(3, 57) == 3
    assert grid.balanced(128, 57) == 43


# --- phase-wise shifted GEMMs over padded planes -------------------------------------------------

def _unpad(buf, H, W, P, off):
    F, C, _ = buf.shape
    return buf[:, :, off:off + H * P].reshape(F, C, H, P)[:, :, :, :W]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 7),
       st.integers(1, 7), st.integers(1, 5), st.integers(1, 5), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2),
       st.integers(0, 2), st.integers(1, 4), st.integers(1, 5), st.sampled_from(DTYPES),
       st.integers(0, 2**31 - 1))
def test_phased_substitution_matches_reference(F, J, C, H, W, kh, kw, sy, sx, more_pitch,
                                               more_off, out_pitch, out_off, rb, cb, dtype,
                                               seed):
    # Any pitch and offset at least the least layout, any output layout, any blocks: the valid
    # pixels are the substitution and everything else in the output planes is exactly zero.
    from fastdecode._engine import _substitution
    rng = np.random.default_rng(seed)
    df = rng.standard_normal((F, J, H, W)).astype(dtype)
    w = rng.standard_normal((J, C, kh, kw)).astype(dtype)
    P, off = layout.phased_layout(W, kw, sx)
    P, off = P + more_pitch, off + more_off
    maps = layout.pad_maps(df, P, off, 2, out=np.full(F * J * (off + H * P) + 5, np.nan, dtype))
    assert np.array_equal(_unpad(maps.buf, H, W, P, off), df)
    assert np.count_nonzero(maps.buf) == np.count_nonzero(df)
    Ho, Wo = (H - 1) * sy + kh, (W - 1) * sx + kw
    Po, off_out = Wo + out_pitch, out_off
    out = np.full((F, C, off_out + Ho * Po + 3), np.nan, dtype)
    cb = min(cb, C)
    scratch = np.empty((2, sy * sx * cb * rb * P), dtype)
    with blas.single_threaded():
        _substitution.substitute_phased(maps.buf, substitution.phased_weights(w, (sy, sx)), out,
                                        H, W, P, off, Ho, Wo, Po, off_out, kh, kw, sy, sx, rb, cb,
                                        scratch, 2)
    got = _unpad(out, Ho, Wo, Po, off_out)
    _close(got, ref.substitute(df, w, (sy, sx)), dtype)
    assert np.count_nonzero(out) == np.count_nonzero(got)  # no NaN left, zeros around


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path, df_shape, w_shape, stride",
                         [("phased",) + case for case in PHASED_CASES]
                         + [("winograd",) + case for case in WINOGRAD_CASES])
def test_substitute_takes_its_path(path, df_shape, w_shape, stride, dtype, monkeypatch):
    monkeypatch.setattr(tuning, "PARALLEL_MIN_FLOPS", 0)   # small shapes, yet several threads
    rng = np.random.default_rng(sum(df_shape) + sum(w_shape))
    df = rng.standard_normal(df_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    sy, sx = _validation.as_pair("stride", stride)
    assert substitution.substitution_path(*df.shape[1:], *w.shape[1:], sy, sx, df.itemsize) == path
    out = fd.substitute(df, w, stride=stride)   # the values: test_substitute_matches_reference
    # bitwise the same for any thread count
    one, two, three = (fd.substitute(df, w, stride=stride, n_threads=t) for t in (1, 2, 3))
    assert np.array_equal(one, out) and np.array_equal(two, out) and np.array_equal(three, out)


def test_phased_blocks_depend_on_shapes_only():
    for F, Hp, P, C in [(16, 16, 16, 512), (1, 194, 196, 64), (1, 3, 5, 4096), (300, 2, 3, 3),
                        (1, 20, 100, 64)]:
        for itemsize in (4, 8):
            for phases in (1, 4):
                rb, cb = substitution.phased_blocks(F, Hp, P, C, itemsize, phases)
                assert 1 <= rb <= Hp and 1 <= cb <= min(C, tuning.PHASED_MAX_CHANNELS // phases)
                assert rb * P <= max(tuning.PHASED_GEMM_ROWS[itemsize], P)
                tasks = F * -(-Hp // rb) * -(-C // cb)
                assert tasks >= min(tuning.PHASED_MIN_TASKS, F * Hp * -(-C // cb))
    # a single map is still cut into several tasks
    rb, cb = substitution.phased_blocks(1, 194, 196, 64, 4)
    assert -(-194 // rb) >= tuning.PHASED_MIN_TASKS
    assert not substitution.phased_suits(512, 3, 3, 512, 3, 3, 1, 1)     # tiny maps: col2im
    assert not substitution.phased_suits(64, 194, 194, 3, 3, 3, 1, 1)    # three output channels: col2im
    assert not substitution.phased_suits(512, 14, 14, 512, 3, 3, 1, 1)   # deep, small maps: col2im
    assert substitution.phased_suits(256, 40, 40, 256, 3, 3, 1, 1)


# --- Winograd's minimal filtering -----------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 12),
       st.integers(1, 12), st.integers(0, 2), st.integers(0, 3), st.integers(0, 2),
       st.integers(0, 2), st.integers(1, 20), st.integers(1, 6), st.sampled_from(DTYPES),
       st.sampled_from(sorted(winograd.WINOGRAD_TRANSFORMS)), st.integers(1, 2), st.integers(1, 2),
       st.integers(0, 2**31 - 1))
def test_winograd_substitution_matches_reference(F, J, C, H, W, more_pitch, off, out_pitch,
                                                 out_off, tb, cb, dtype, mr, sy, sx, seed):
    # Maps in any padded layout with NaN around them (never read), any output layout, any
    # blocks, every F(m, r) in both dtypes, strides (phases): the valid pixels are the
    # substitution within the rounding bound of the method, everything else in the output
    # planes exactly zero.
    from fastdecode._engine import _winograd
    m, r = mr
    rng = np.random.default_rng(seed)
    df = rng.standard_normal((F, J, H, W)).astype(dtype)
    w = rng.standard_normal((J, C, sy * r, sx * r)).astype(dtype)
    P = W + more_pitch
    buf = np.full((F, J, off + H * P + 2), np.nan, dtype)
    buf[:, :, off:off + H * P].reshape(F, J, H, P)[..., :W] = df
    Ho, Wo = sy * (H + r - 1), sx * (W + r - 1)
    Po = Wo + out_pitch
    cb = min(cb, C)
    a, ntx = m + r - 1, -(-(W + r - 1) // m)
    BT, _, AT = winograd.WINOGRAD_TRANSFORMS[(m, r)]
    scratch = np.empty((3, a * a * tb * (J + cb) + (m * a + 1) * ntx + a * (m * ntx + a)), dtype)
    u = winograd.winograd_weights(w, m, (sy, sx))
    outs = []
    for threads in (2, 1, 3):
        out = np.full((F, C, out_off + Ho * Po + 3), np.nan, dtype)
        with blas.single_threaded():
            _winograd.substitute_winograd(buf, u, out, H, W, P, off, Ho, Wo, Po, out_off, sy,
                                          sx, BT.astype(dtype), AT.astype(dtype), tb, cb,
                                          scratch, threads)
        outs.append(out)
    out = outs[0]
    assert np.array_equal(outs[1], out) and np.array_equal(outs[2], out)  # any thread count
    got = _unpad(out, Ho, Wo, Po, out_off)
    want = ref.substitute(df, w, (sy, sx))
    bound = (ref.substitute(np.abs(df), np.abs(w), (sy, sx))
             + ref.winograd_rounding_bound(df, w, m, (sy, sx)))
    err = np.abs(got - want)
    allowed = 8 * (J * r * r + a * a) * np.finfo(dtype).eps * bound + np.finfo(dtype).tiny
    assert np.all(err <= allowed), "max error %g" % err.max()
    assert np.count_nonzero(out) == np.count_nonzero(got)  # no NaN left, zeros around


def test_winograd_transforms_compute_the_correlation():
    # y = AT [(G g) * (BT d)] is the correlation of d with g, for every F(m, r) in use; BT has
    # integer entries (exact in binary floating point).
    rng = np.random.default_rng(5)
    for (m, r), (BT, G, AT) in winograd.WINOGRAD_TRANSFORMS.items():
        a = m + r - 1
        assert BT.shape == (a, a) and G.shape == (a, r) and AT.shape == (m, a)
        assert np.array_equal(BT, np.round(BT))
        d, g = rng.standard_normal(a), rng.standard_normal(r)
        want = [np.dot(d[o:o + r], g) for o in range(m)]
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="distinct points"):
        winograd.cook_toom(2, 3, (0, 1, 1))


def test_winograd_routing_and_blocks():
    for itemsize in (4, 8):
        path = lambda *shapes: substitution.substitution_path(*shapes, itemsize)  # noqa: E731
        assert path(512, 28, 28, 512, 3, 3, 1, 1) == "winograd"
        assert path(64, 194, 194, 64, 3, 3, 1, 1) == "winograd"
        assert path(512, 3, 3, 512, 3, 3, 1, 1) == "col2im"    # tiny maps: tiles overhang
        assert path(128, 46, 46, 128, 6, 6, 2, 2) == "winograd"  # four phases of 3x3 kernels
        assert path(128, 46, 46, 128, 4, 4, 2, 2) != "winograd"  # 2x2 phases: no gain
        assert path(128, 46, 46, 128, 5, 5, 2, 2) != "winograd"  # phases of unequal kernels
        assert path(128, 46, 46, 128, 3, 3, 2, 2) != "winograd"
        assert path(32, 40, 40, 64, 3, 3, 1, 1) != "winograd"   # few channels
        assert path(64, 40, 40, 32, 3, 3, 1, 1) != "winograd"
        for n_tiles, J, C in [(16, 512, 512), (20000, 64, 64), (7, 3, 5), (900, 512, 4096)]:
            a = tuning.WINOGRAD_TILE[(itemsize, 3)] + 2
            tb, cb = winograd.winograd_blocks(n_tiles, J, C, a, itemsize)
            assert 1 <= tb <= n_tiles and 1 <= cb <= min(C, tuning.WINOGRAD_CHANNELS)
            assert (tb <= 16 or a * a * tb * (J + cb) * itemsize <= tuning.WINOGRAD_SCRATCH_BYTES)
            assert tb <= max(16, tuning.WINOGRAD_TILES)
            if n_tiles >= 16 * tuning.WINOGRAD_MIN_TASKS:   # enough tiles to share out
                assert -(-n_tiles // tb) >= tuning.WINOGRAD_MIN_TASKS
    with pytest.raises(ValueError, match="no Winograd form"):
        winograd.winograd_weights(np.zeros((2, 2, 6, 4)), 2, (2, 2))   # phases of 3x2 taps


def test_workspace_reuses_memory_by_key_and_dtype():
    ws = workspace.Workspace()
    a = ws.get("a", (3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    assert ws.get("a", (2, 5), np.float32).base is a.base          # fits: the same memory
    assert ws.holds("a", a) and not ws.holds("b", a)
    b = ws.get("a", (3, 4), np.float64)                              # another dtype, its own
    assert not np.may_share_memory(a, b) and ws.holds("a", b)
    big = ws.get("a", (5, 5), np.float32, reserve=100)               # grows, with room kept
    assert big.base.size == 100 and ws.get("a", (10, 10), np.float32).base is big.base
    first = ws.alternate("chain", (4,), np.float64)
    second = ws.alternate("chain", (4,), np.float64)
    assert not np.may_share_memory(first, second)
    assert ws.alternate("chain", (4,), np.float64).base is first.base
    small = workspace.Workspace(keep_bytes=64)
    assert small.get("x", (100,), np.float64).base is not small.get("x", (100,), np.float64).base
    assert small.get("y", (4,), np.float64).base is small.get("y", (4,), np.float64).base
    ws.clear()
    assert not len(ws)


def test_one_error_for_an_unknown_unpool_method():
    rng = np.random.default_rng(16)
    net = fd.Network([fd.Conv(rng.standard_normal((2, 1, 3, 3))), fd.Pool("avg", size=2),
                      fd.Conv(rng.standard_normal((2, 2, 2, 2)))])
    message = "unknown unpool method 'lanczos'; choose one of nearest, bilinear, bicubic, adjoint"
    for call in (lambda: fd.unpool(np.ones((2, 2)), 2, "lanczos"),
                 lambda: fd.decode(net, "layer3", unpool="lanczos"),
                 lambda: fd.decode_with_bias(net, "layer3", unpool="lanczos"),
                 lambda: fd.decode_all(net, unpool="lanczos"),
                 lambda: fd.reconstruction_error(net, np.ones((1, 1, 8, 8)), "layer3",
                                                 unpool="lanczos", progress=False)):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == message
    assert fd.UNPOOL_METHODS == ("nearest", "bilinear", "bicubic", "adjoint")
