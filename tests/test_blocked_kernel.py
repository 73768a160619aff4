"""The blocked conv2d path's layout copies (``_kernels/_blocked.h``: transposes of small
matrices in blocks of vector moves), called directly in every instruction-set variant.

Each copy reads whole vectors past the last row it needs when it may (never past the end of
its source: ``src`` here is exactly as long as the copy needs, so AddressSanitizer, which runs
this file in ``.ci/asan.sh``, would see a read past it), and writes nothing but the numbers it
copies (the rest of ``dst`` holds the -0.0 sentinel of ``test_kernel_bounds``).
"""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from cytorch._kernels import load
from test_kernel_bounds import ISA_VARIANTS, SENTINEL, running

blocked = load("_blocked")


@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=150, deadline=None, derandomize=True)
@given(R=st.integers(1, 21), S=st.integers(1, 21), row_gap=st.integers(0, 3),
       column_gap=st.integers(0, 3))
# LeNet c2's copies on avx2 (blocks of 8): the image's rows (14 pixels x 6 channels) into
# channel rows, dout (100 pixels x 16 filters) planar, dx back (6 channel rows of 14 pixels:
# fewer columns than a vector, rows stored whole over the next ones); keras_mnist c2's 20
# filters and 10 channels; one channel
@example(R=6, S=14, row_gap=0, column_gap=4)
@example(R=16, S=21, row_gap=0, column_gap=12)
@example(R=14, S=6, row_gap=0, column_gap=0)
@example(R=20, S=8, row_gap=0, column_gap=0)
@example(R=12, S=10, row_gap=0, column_gap=0)
@example(R=1, S=21, row_gap=0, column_gap=0)
@example(R=21, S=1, row_gap=0, column_gap=0)
@example(R=21, S=3, row_gap=0, column_gap=0)
def test_blocked_transpose_reads_and_writes_only_its_numbers(isa_variant, dtype, R, S, row_gap,
                                                             column_gap):
    lds, ldd = R + row_gap, S + column_gap
    rng = np.random.default_rng(R * 100 + S)
    src = rng.standard_normal((S - 1) * lds + R).astype(dtype)      # nothing past the last
    dst = np.full((R - 1) * ldd + S, SENTINEL["f"], dtype=dtype)
    with running(isa_variant):
        blocked._transposed(src, dst, ldd, lds, R, S)
    want = np.full_like(dst, SENTINEL["f"])
    for r in range(R):
        want[r * ldd:r * ldd + S] = src[r:r + (S - 1) * lds + 1:lds]
    np.testing.assert_array_equal(dst, want)
    assert (np.signbit(dst) == np.signbit(want)).all(), "a gap between dst's rows was written"


def test_blocked_transpose_refuses_what_does_not_fit():
    src, dst = np.zeros(10, np.float32), np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        blocked._transposed(src, dst, 5, 5, 5, 3)       # src needs 2 * 5 + 5 = 15 numbers


# The forward tiles that hold the output pixels in the lanes (``fwdp``, avx2 and the default
# variant: rows of whole vectors, filters not): every tile width (1 to 3 vectors of a row, or
# of rows one vector wide), 4 filters at a time and the last 4 again (K >= 4) or fewer (K < 4),
# with padding (the image copied) and without (read in place), zeros and -0.0 biases.  Each
# output adds its taps to its bias in the same order with the same multiply-add as the tiles
# with the filters in the lanes: the same bits.
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=40, deadline=None, derandomize=True)
@given(vectors=st.integers(1, 5), Ho=st.integers(1, 9), C=st.integers(1, 11),
       K=st.integers(1, 23), window=st.sampled_from([(1, 1), (3, 3), (5, 5), (2, 4)]),
       pads=st.sampled_from([(0, 0, 0, 0), (1, 2, 2, 0)]),
       activation=st.sampled_from(["linear", "relu"]))
@example(vectors=1, Ho=8, C=10, K=20, window=(5, 5), pads=(0, 0, 0, 0), activation="relu")
@example(vectors=3, Ho=3, C=1, K=10, window=(5, 5), pads=(0, 0, 0, 0), activation="linear")
def test_blocked_forward_pixel_lanes_give_the_filter_tiles_bits(isa_variant, dtype, vectors, Ho,
                                                                C, K, window, pads, activation):
    kh, kw = window
    pt, pb, pl, pr = pads
    V = 8 if dtype == np.float32 else 4
    Wo = vectors * V
    H, W = Ho + kh - 1 - pt - pb, Wo + kw - 1 - pl - pr
    if H < 1 or W < 1:
        return
    rng = np.random.default_rng(Ho * 1000 + K * 10 + C)
    x = rng.standard_normal((2, H, W, C)).astype(dtype)
    x[0, : H // 2] = 0.0
    w = rng.standard_normal((kh, kw, C, K)).astype(dtype)
    b = np.where(rng.random(K) < 0.5, -0.0, rng.standard_normal(K)).astype(dtype)
    results = []
    with running(isa_variant):
        for on in (False, True):
            old = blocked._set_pixel_lanes(on)
            try:
                out = np.full((2, Ho, Wo, K), np.nan, dtype)
                blocked.conv2d_forward(x, w, b, out, pt, pl, 1, activation)
            finally:
                blocked._set_pixel_lanes(old)
            results.append(out)
    np.testing.assert_array_equal(results[1], results[0])
    assert (np.signbit(results[1]) == np.signbit(results[0])).all()


# dW with the taps in the lanes (``dwp``, avx2 and the default variant, where the filters are
# not whole vectors and a kernel row's taps fill more lanes than they would): tiles of 1 to 3
# vectors of a kernel row's taps, or of kernel rows one vector wide; 1 to 4 filters; the last
# vector reading past the image (in place: the next image's numbers; the last image, or a
# padded one: the copy's room); several units of images (2 threads).  Each dW sum adds the
# same products pixel after pixel, image after image, so the bits are the filter tiles'.
@pytest.mark.parametrize("isa_variant", ISA_VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=40, deadline=None, derandomize=True)
@given(N=st.integers(1, 5), Ho=st.integers(1, 7), Wo=st.integers(1, 9), C=st.integers(1, 12),
       K=st.integers(1, 23), window=st.sampled_from([(1, 1), (3, 3), (5, 5), (2, 4)]),
       pads=st.sampled_from([(0, 0, 0, 0), (1, 2, 2, 0)]), threads=st.integers(1, 2),
       activation=st.sampled_from(["linear", "relu"]))
@example(N=5, Ho=8, Wo=8, C=10, K=20, window=(5, 5), pads=(0, 0, 0, 0), threads=2,
         activation="relu")
@example(N=2, Ho=4, Wo=3, C=3, K=5, window=(3, 3), pads=(0, 0, 0, 0), threads=1,
         activation="linear")
def test_blocked_dw_tap_lanes_give_the_filter_tiles_bits(isa_variant, dtype, N, Ho, Wo, C, K,
                                                         window, pads, threads, activation):
    kh, kw = window
    pt, pb, pl, pr = pads
    H, W = Ho + kh - 1 - pt - pb, Wo + kw - 1 - pl - pr
    if H < 1 or W < 1:
        return
    rng = np.random.default_rng(Ho * 1000 + K * 10 + C)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((kh, kw, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    dout = rng.standard_normal((N, Ho, Wo, K)).astype(dtype)
    y = np.empty_like(dout)
    results = []
    with running(isa_variant):
        blocked.conv2d_forward(x, w, b, y, pt, pl, 1, activation)
        for on in (False, True):
            old = blocked._set_tap_lanes(on)
            try:
                dw, db = np.full_like(w, np.nan), np.full_like(b, np.nan)
                blocked.conv2d_backward(dout, x, w, None, dw, db, pt, pl, threads, activation,
                                        y if activation != "linear" else None)
            finally:
                blocked._set_tap_lanes(old)
            results.append((dw, db))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_array_equal(got, want)


# -- calls side by side ----------------------------------------------------------------------------
def test_calls_from_several_threads_give_the_bits_of_serial_calls():
    # each call takes its scratch (packed filters, padded images, planes, partial sums) for
    # itself: calls running side by side, as predict's workers do, on different shapes and two
    # kernel threads each, give the numbers of the same calls one after the other
    import threading
    import cytorch
    from cytorch import functional as F
    rng = np.random.default_rng(7)
    shapes = [((5, 14, 14, 6), (5, 5, 6, 16), None), ((4, 12, 12, 4), (5, 5, 4, 12), "relu"),
              ((3, 28, 28, 1), (5, 5, 1, 6), "tanh"), ((6, 9, 11, 3), (3, 2, 3, 8), None)]
    cases = []
    for i, (x_shape, w_shape, act) in enumerate(shapes * 2):
        dtype = (np.float32, np.float64)[i // len(shapes)]
        x, w, b = (rng.standard_normal(shape).astype(dtype)
                   for shape in (x_shape, w_shape, w_shape[3]))
        cases.append((x, w, b, act))

    def run(x, w, b, act):
        out, cache = F.conv2d_forward(x, w, b, 1, "same", activation=act)
        assert cache["path"] == "_blocked"
        dout = np.cos(np.arange(out.size, dtype=x.dtype)).reshape(out.shape)
        pooled = F.conv2d_max_pool2d_forward(x, w, b, 1, "same", activation=act)
        return [out, pooled, *F.conv2d_backward(dout, cache)]

    cytorch.set_num_threads(2)
    try:
        want = [run(*case) for case in cases]
        got = [None] * len(cases)

        def worker(k):
            for _ in range(5):
                for i in range(k, len(cases), 2):
                    got[i] = run(*cases[i])
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        cytorch.set_num_threads(None)
    for w_arrays, g_arrays in zip(want, got):
        for a, b in zip(w_arrays, g_arrays):
            np.testing.assert_array_equal(a, b)
