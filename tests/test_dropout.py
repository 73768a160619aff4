"""Dropout: the compiled kernel against its twin (bit for bit), the statistics of the mask,
seeding, the identity at inference, gradients, and argument checks."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cytorch
from cytorch import functional as F
from cytorch import reference
from cytorch._gradcheck import numerical_gradient, relative_error
from cytorch._kernels import load
from cytorch.errors import ShapeError


def dropout(x, rate, seed, dout=None, backend="compiled", training=True):
    with cytorch.backend(backend):
        out, cache = F.dropout_forward(x, rate, seed, training=training)
        dx = F.dropout_backward(out if dout is None else dout, cache)
    return out, cache, dx


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       rate=st.one_of(st.sampled_from([0.0, 0.5, 0.999]), st.floats(0, 1, exclude_max=True)),
       seed=st.one_of(st.integers(0, 1000), st.integers(2 ** 62, 2 ** 63 - 1)),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_compiled_equals_twin_bit_for_bit(shape, rate, seed, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    got = dropout(x, rate, seed)
    want = dropout(x, rate, seed, backend="reference")
    for g, w in ((got[0], want[0]), (got[1]["mask"], want[1]["mask"]), (got[2], want[2])):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    assert got[0].dtype == dtype and got[1]["mask"].dtype == np.uint8


def test_splitmix64_reference_values():
    # the published first outputs of splitmix64 seeded with 0 (as in Vigna's C reference code)
    np.testing.assert_array_equal(reference.splitmix64(0, 3), np.array(
        [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F], dtype=np.uint64))


def test_same_seed_same_mask_other_seed_other_mask():
    x = np.ones((64, 100), dtype=np.float32)
    a = dropout(x, 0.5, 42)[0]
    np.testing.assert_array_equal(a, dropout(x, 0.5, 42)[0])
    assert (a != dropout(x, 0.5, 43)[0]).mean() > 0.4   # unrelated masks differ in ~half
    # the mask does not depend on the thread count
    for n in (1, 3):
        cytorch.set_num_threads(n)
        try:
            np.testing.assert_array_equal(a, dropout(x, 0.5, 42)[0])
        finally:
            cytorch.set_num_threads(None)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_kept_fraction_and_expectation(rate):
    n = 1_000_000
    x = np.random.default_rng(1).uniform(1, 2, n)
    out, cache, _ = dropout(x, rate, 7)
    kept = cache["mask"].mean()
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs(kept - (1 - rate)) < 5 * sigma
    # survivors are scaled by 1/(1 - rate), so the mean is preserved
    np.testing.assert_allclose(out[cache["mask"] == 1], x[cache["mask"] == 1] / (1 - rate))
    assert (out[cache["mask"] == 0] == 0).all()
    assert abs(out.mean() - x.mean()) < 5 * x.mean() * np.sqrt(rate / (1 - rate) / n) + 1e-3


def test_rate_zero_keeps_everything():
    x = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    out, cache, dx = dropout(x, 0.0, 3, dout=np.ones((4, 5)))
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(dx, 1.0)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_identity_when_not_training(backend):
    x = np.random.default_rng(3).standard_normal((3, 4, 4, 2))
    out, cache, dx = dropout(x, 0.5, 1, dout=np.ones_like(x), backend=backend, training=False)
    np.testing.assert_array_equal(out, x)
    assert out is not x and not np.shares_memory(out, x)   # writing to out leaves x alone
    np.testing.assert_array_equal(dx, 1.0)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_gradient_matches_finite_differences(backend):
    x = np.random.default_rng(4).standard_normal((3, 5, 4))
    dout = np.random.default_rng(5).standard_normal(x.shape)

    def f(z):
        with cytorch.backend(backend):
            return F.dropout_forward(z, 0.3, 11)[0]

    _, cache, dx = dropout(x, 0.3, 11, dout=dout, backend=backend)
    assert relative_error(dx, numerical_gradient(f, x, dout)) < 1e-8
    np.testing.assert_allclose(dx, dout * cache["mask"] / 0.7, rtol=1e-15)


def test_inputs_are_left_alone_and_ints_become_float32():
    x = np.random.default_rng(6).standard_normal((8, 8))
    x.setflags(write=False)
    before = x.copy()
    dout = np.ones((8, 8))
    dropout(x, 0.5, 0, dout=dout)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(dout, 1.0)
    out, _, _ = dropout(np.arange(10), 0.5, 0)
    assert out.dtype == np.float32


def test_bad_arguments():
    x = np.ones((2, 3))
    for rate in (1.0, -0.1, 1.5, True, "0.5", None):
        with pytest.raises(ValueError, match=r"rate must be a float in \[0, 1\), got "):
            F.dropout_forward(x, rate, 0)
    for seed in (-1, 2 ** 63, 1.5, None, True):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*63\), got "):
            F.dropout_forward(x, 0.5, seed)
    bad = x.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="x contains 1 NaN or infinite"):
        F.dropout_forward(bad, 0.5, 0)
    _, cache = F.dropout_forward(x, 0.5, 0)
    with pytest.raises(ShapeError, match=r"dout must have the dropout input's shape \(2, 3\), "
                                         r"got \(3, 2\)"):
        F.dropout_backward(np.ones((3, 2)), cache)
    with pytest.raises(ValueError, match="needs the cache returned by dropout_forward"):
        F.dropout_backward(x, {"argidx": None})
    D = load("_dropout")
    with pytest.raises(ValueError, match="must have the same length"):
        D.dropout_forward(np.ones(5), np.empty(5), np.empty(4, np.uint8), 0, 0, 1.0, 1)
    with pytest.raises(ValueError, match="must have the same length"):
        D.dropout_backward(np.ones(5), np.ones(6, np.uint8), np.empty(5), 1.0, 1)
