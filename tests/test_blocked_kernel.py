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
