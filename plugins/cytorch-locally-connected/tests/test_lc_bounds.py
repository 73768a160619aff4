"""Out-of-bounds safety of the compiled locally-connected kernel, called directly.

Every input lives in the middle of a buffer whose guards hold NaN: a read past an end turns up
as NaN in the results.  (The kernel allocates its outputs itself; a build with
``CYTORCH_DEBUG_CYTHON=1`` or AddressSanitizer checks its writes.)

Two sweeps: legal extreme geometries (1x1 images, a window as large as the padded input,
strides larger than the window, padding much larger than the image) against the NumPy twin;
and geometries the front door would never pass -- any number of output positions, any top/left
padding -- which the kernel's entry points accept, because ``gather``/``scatter_add`` clip every
window to the image: there the results must match the definition, computed here cell by cell.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st

from cytorch.checks import resolve_padding
from cytorch_locally_connected import _lc, reference

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True)
GUARD = 32


def guarded(values):
    """``values`` in the middle of a buffer of NaN."""
    size = math.prod(values.shape)
    buffer = np.full(size + 2 * GUARD, np.nan)
    array = buffer[GUARD:GUARD + size].reshape(values.shape)
    array[...] = values
    return array


def assert_close(got, want, what):
    assert np.isfinite(got).all(), f"{what}: read out of bounds (NaN from a guard)"
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=what)


def operands(N, H, W, C, kh, kw, H_out, W_out, K, seed=0):
    rng = np.random.default_rng(seed)
    return (guarded(rng.standard_normal((N, H, W, C))),
            guarded(rng.standard_normal((H_out, W_out, kh * kw * C, K))),
            guarded(rng.standard_normal((H_out, W_out, K))),
            guarded(rng.standard_normal((N, H_out, W_out, K))))


@st.composite
def legal(draw):
    N, H, W, C = (draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)),
                  draw(st.integers(1, 3)))
    kh, kw = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    sh, sw = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "full"]), st.integers(0, 7),
                             st.tuples(st.tuples(st.integers(0, 7), st.integers(0, 7)),
                                       st.tuples(st.integers(0, 7), st.integers(0, 7)))))
    pads = resolve_padding(padding, H, W, kh, kw, sh, sw)
    assume(H + pads[0] + pads[1] >= kh and W + pads[2] + pads[3] >= kw)
    return (N, H, W, C), (kh, kw), (sh, sw), pads


@pytest.mark.parametrize("threads, cap", [(1, 1 << 17), (2, 1)])   # cap 1: one image per GEMM
@SETTINGS
@given(geometry=legal())
@example(geometry=((1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0)))
@example(geometry=((2, 4, 3, 2), (4, 3), (1, 1), (0, 0, 0, 0)))      # window == input
@example(geometry=((1, 1, 1, 2), (1, 1), (1, 1), (7, 7, 7, 7)))      # 15x15 positions, 1 real
@example(geometry=((2, 6, 6, 1), (2, 2), (9, 9), (0, 0, 0, 0)))      # stride > window
@example(geometry=((1, 3, 3, 1), (2, 2), (8, 8), (7, 7, 7, 7)))      # windows in the padding
def test_legal_geometries_stay_in_bounds(threads, cap, geometry):
    (N, H, W, C), (kh, kw), (sh, sw), (pt, pb, pl, pr) = geometry
    H_out, W_out = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
    x, w, b, dout = operands(N, H, W, C, kh, kw, H_out, W_out, K=2)
    padding = ((pt, pb), (pl, pr))
    want_out, cache = reference.locally_connected2d_forward(x, w, b, (kh, kw), (sh, sw), padding)
    want = reference.locally_connected2d_backward(dout, cache)
    assert_close(_lc.forward(x, w, b, kh, kw, sh, sw, pt, pl, threads, cap=cap), want_out,
                 "forward")
    got = _lc.backward(dout, x, w, True, kh, kw, sh, sw, pt, pl, threads, cap=cap)
    for name, g, r in zip(("dx", "dw", "db"), got, want):
        assert_close(g, r, name)


def by_definition(x, w, b, dout, kh, kw, sh, sw, pt, pl):
    """out, dx, dw, db one window cell at a time; cells outside the image count as zeros."""
    N, H, W, C = x.shape
    H_out, W_out, _, K = w.shape
    out = np.broadcast_to(b, (N, H_out, W_out, K)).copy()
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(H_out):
        for j in range(W_out):
            for a in range(kh):
                for c in range(kw):
                    y, z = i * sh - pt + a, j * sw - pl + c
                    if 0 <= y < H and 0 <= z < W:
                        rows = slice((a * kw + c) * C, (a * kw + c + 1) * C)
                        out[:, i, j] += x[:, y, z] @ w[i, j, rows]
                        dx[:, y, z] += dout[:, i, j] @ w[i, j, rows].T
                        dw[i, j, rows] += x[:, y, z].T @ dout[:, i, j]
    return out, dx, dw, dout.sum(axis=0)


@SETTINGS
@given(N=st.integers(1, 2), H=st.integers(1, 4), W=st.integers(1, 4), C=st.integers(1, 2),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 5), sw=st.integers(1, 5),
       pt=st.integers(0, 6), pl=st.integers(0, 6), H_out=st.integers(1, 6),
       W_out=st.integers(1, 6), threads=st.integers(1, 2))
def test_any_geometry_the_entry_points_accept_stays_in_bounds(N, H, W, C, kh, kw, sh, sw, pt,
                                                               pl, H_out, W_out, threads):
    """Output positions whose windows fall past the image (any H_out, W_out, pt, pl) read
    zeros, never memory outside x."""
    x, w, b, dout = operands(N, H, W, C, kh, kw, H_out, W_out, K=2)
    want = by_definition(x, w, b, dout, kh, kw, sh, sw, pt, pl)
    assert_close(_lc.forward(x, w, b, kh, kw, sh, sw, pt, pl, threads, cap=2), want[0],
                 "forward")
    got = _lc.backward(dout, x, w, True, kh, kw, sh, sw, pt, pl, threads, cap=2)
    for name, g, r in zip(("dx", "dw", "db"), got, want[1:]):
        assert_close(g, r, name)
