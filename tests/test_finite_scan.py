"""The NaN/inf scan of every public entry point (``_checks.require_finite``): the compiled scan
of ``_kernels/_arrays.pyx`` for contiguous float32/float64 arrays, NumPy's for the others.
Both must say the same for every kind of value at every position."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cytorch import _checks, functional as F
from cytorch._kernels import load

SPECIALS = {
    np.float32: [np.nan, -np.nan, np.inf, -np.inf,
                 np.frombuffer(np.uint32(0x7f800001).tobytes(), np.float32)[0],   # signalling
                 np.frombuffer(np.uint32(0xffc00123).tobytes(), np.float32)[0]],  # payload
    np.float64: [np.nan, -np.nan, np.inf, -np.inf,
                 np.frombuffer(np.uint64(0x7ff0000000000001).tobytes(), np.float64)[0],
                 np.frombuffer(np.uint64(0xfff8000000abcdef).tobytes(), np.float64)[0]],
}


def finite_extremes(dtype):
    info = np.finfo(dtype)
    return [info.max, -info.max, info.tiny, -info.tiny, info.smallest_subnormal,
            -info.smallest_subnormal, 0.0, -0.0, 1.0, -1.0]


def compiled_says(a):
    """What both compiled scans say: of the bits (``all_finite``) and of the array itself
    (``scan_finite``, which require_finite calls), which must agree."""
    bits = np.uint32 if a.dtype == np.float32 else np.uint64
    says = load("_arrays").all_finite(a.reshape(-1).view(bits))
    assert load("_arrays").scan_finite(a) is says
    return says


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_extremes_pass_and_every_non_finite_value_is_found_anywhere(dtype):
    # lengths around the vector widths (4, 8 and 16 values, unrolled loops) and a tail
    for n in (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100):
        base = np.resize(np.array(finite_extremes(dtype), dtype=dtype), n)
        assert compiled_says(base)
        _checks.require_finite(base, "x")
        for i in sorted({0, n // 2, n - 1}):
            for special in SPECIALS[dtype]:
                a = base.copy()
                a[i] = special
                assert not compiled_says(a), (n, i, special)
                with pytest.raises(ValueError, match=r"^x contains 1 NaN or infinite value"):
                    _checks.require_finite(a, "x")


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), n=st.integers(1, 300),
       data=st.data())
def test_compiled_scan_agrees_with_numpy_on_random_bits(dtype, n, data):
    # random bit patterns: about one in 256 (float32) or 2048 (float64) is NaN or inf
    bits = np.uint32 if dtype == np.float32 else np.uint64
    raw = data.draw(st.lists(st.integers(0, int(np.iinfo(bits).max)), min_size=n, max_size=n))
    a = np.array(raw, dtype=bits).view(dtype)
    if data.draw(st.booleans()):
        a[data.draw(st.integers(0, n - 1))] = data.draw(st.sampled_from(SPECIALS[dtype]))
    assert compiled_says(a) == bool(np.isfinite(a).all())


def test_empty_arrays_are_finite():
    for dtype in (np.float32, np.float64):
        _checks.require_finite(np.empty((0, 3), dtype), "x")
        assert compiled_says(np.empty(0, dtype))


@pytest.mark.parametrize("make", [
    lambda a: a,                                        # C order: compiled
    lambda a: np.asfortranarray(a),                     # F order: compiled, no copy
    lambda a: a[:, ::2],                                # strided: NumPy
    lambda a: a.astype(a.dtype.newbyteorder(">")),      # big-endian: NumPy
    lambda a: np.frombuffer(b"\0" + a.tobytes(), a.dtype, a.size, 1).reshape(a.shape),  # unaligned
    lambda a: a.astype(np.float16),                     # another float: NumPy
], ids=["C", "F", "strided", "big-endian", "unaligned", "float16"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layout_is_scanned_and_nothing_is_written(make, dtype):
    a = make(np.arange(24, dtype=dtype).reshape(4, 6))
    a.flags.writeable = False       # a read-only array is scanned as well
    _checks.require_finite(a, "images")
    base = np.arange(24, dtype=dtype).reshape(4, 6)
    base[1, 2] = np.inf           # both inside the strided view (its columns 0, 2, 4)
    base[3, 4] = np.nan
    b = make(base)
    before = b.copy(order="K")
    n_bad = int(np.size(b) - np.count_nonzero(np.isfinite(b)))
    with pytest.raises(ValueError, match=rf"^images contains {n_bad} NaN or infinite value"):
        _checks.require_finite(b, "images")
    np.testing.assert_array_equal(b, before)


def test_the_entry_points_scan_with_the_compiled_module(monkeypatch):
    # conv2d_forward scans x, w and b: each contiguous float32 array goes through _arrays
    scanned = []
    module = load("_arrays")
    real = module.scan_finite

    class Spy:
        def __getattr__(self, name):
            return getattr(module, name)

        def scan_finite(self, a):
            scanned.append(a.size)
            return real(a)

    monkeypatch.setattr(_checks, "load", lambda name: Spy() if name == "_arrays" else load(name))
    x = np.ones((2, 6, 6, 3), np.float32)
    w = np.ones((3, 3, 3, 4), np.float32)
    F.conv2d_forward(x, w, np.zeros(4, np.float32))
    assert sorted(scanned) == [4, 108, 216]
    x[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"^x contains 1 NaN"):
        F.conv2d_forward(x, w)


@pytest.mark.parametrize("make, reads", [
    (lambda a: a, True),
    (lambda a: np.asfortranarray(a), True),
    (lambda a: a[:, ::2], False),
    (lambda a: a.astype(a.dtype.newbyteorder(">")), False),
    (lambda a: np.frombuffer(b"\0" + a.tobytes(), a.dtype, a.size, 1).reshape(a.shape), False),
    (lambda a: a.astype(np.float16), False),
    (lambda a: a.astype(np.complex64), False),
    (lambda a: a.view(np.int32 if a.dtype == np.float32 else np.int64), False),
    (lambda a: a[:0], True),
], ids=["C", "F", "strided", "big-endian", "unaligned", "float16", "complex", "int", "empty"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scan_finite_reads_only_native_contiguous_aligned_floats(make, reads, dtype):
    # None hands the array to NumPy's scan; True/False is the compiled answer
    base = np.arange(24, dtype=dtype).reshape(4, 6)
    says = load("_arrays").scan_finite(make(base))
    assert says is (True if reads else None)
    base[0, 0] = np.nan
    says = load("_arrays").scan_finite(make(base))
    assert says is (make(base).size == 0 if reads else None)   # only the empty one is finite
