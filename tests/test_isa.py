"""The instruction-set variants of the vector kernels (``_kernels/_isa.h``): every variant this
CPU can run computes the same numbers, CYTORCH_ISA forces one, and the variants contain the
instructions they were written for (when objdump is installed)."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cytorch
from cytorch import functional as F
from cytorch._kernels import ISA_MODULES, isa_in_use, load

VARIANTS = load("_direct").isa_variants()


MODULES = ISA_MODULES      # _direct, _winograd, _pool, _activation


@pytest.fixture
def restore_isa():
    yield
    for name in MODULES:
        load(name)._select_isa("best")


def conv_and_pool(dtype):
    """Direct-path conv2d (forward + backward) and 2x2 max pooling on fixed random data,
    shaped so that every block size of every variant and a tail run."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 13, 11, 2)).astype(dtype)
    w = rng.standard_normal((3, 4, 2, 3)).astype(dtype)
    out, cache = F.conv2d_forward(x, w, np.ones(3, dtype), 1, "same")
    assert load("_direct").uses_direct_path(x.shape, w.shape, out.shape, (1, 1), dtype)
    results = [out, *F.conv2d_backward(rng.standard_normal(out.shape).astype(dtype), cache)]
    p = rng.integers(-3, 4, (2, 10, 14, 5)).astype(dtype)
    pooled, pcache = F.max_pool2d_forward(p, 2)
    return results + [pooled, pcache["argidx"]] + winograd(dtype)


def winograd(dtype):
    """Winograd conv2d forward + backward: 21 channels (vector blocks and a tail in every
    variant), ragged edges, "same" padding."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 7, 21)).astype(dtype)
    w = rng.standard_normal((3, 3, 21, 19)).astype(dtype)
    old = load("_winograd")._set_mode("always")
    try:
        out, cache = F.conv2d_forward(x, w, np.ones(19, dtype), 1, "same")
        assert load("_winograd").uses_winograd_path(x.shape, w.shape, out.shape, (1, 1), dtype)
        return [out, *F.conv2d_backward(rng.standard_normal(out.shape).astype(dtype), cache)]
    finally:
        load("_winograd")._set_mode(old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_computes_the_same(dtype, restore_isa):
    results = {}
    for variant in VARIANTS:
        for name in MODULES:
            assert load(name)._select_isa(variant) == variant
        assert isa_in_use() == dict.fromkeys(MODULES, variant)
        results[variant] = conv_and_pool(dtype)
    best = results[VARIANTS[0]]
    for variant, got in results.items():
        for i, (g, r) in enumerate(zip(got, best)):
            if variant in ("avx2", "avx512") or i >= len(got) - 4:
                # the Winograd transforms (the last 4 results) only add and subtract, in one
                # order: every variant, the default too, gives the same bits
                # both fuse each multiply-add and sum every lane in the same order
                np.testing.assert_array_equal(g, r, err_msg=variant)
            else:  # no FMA: the products are rounded first
                np.testing.assert_allclose(g, r, rtol=1e-5 if dtype == np.float32 else 1e-13,
                                           atol=1e-5 if dtype == np.float32 else 1e-13,
                                           err_msg=variant)


def fused_epilogues(dtype):
    """conv2d with each activation the kernels apply themselves (``_epilogue.pxd``), forward +
    backward, on the direct path (stride 1) and im2col + GEMM (stride 2)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 13, 11, 2)).astype(dtype)
    w = rng.standard_normal((3, 4, 2, 3)).astype(dtype)
    results = {}
    for activation in F.CONV2D_ACTIVATIONS[1:]:
        for strides in (1, 2):
            y, cache = F.conv2d_forward(x, w, np.ones(3, dtype), strides, "same",
                                        activation=activation)
            dout = rng.standard_normal(y.shape).astype(dtype)
            results[activation, strides] = [y, *F.conv2d_backward(dout, cache)]
    return results


# The element functions of ``_mathfn.h`` round some multiply-adds differently in a loop's vector
# body and its remainder (one is contracted into an FMA, the other not), and the body is 16
# floats wide in the avx512 variant, 8 in avx2: so a value near the end of a block can differ
# in its last bit between the two.  Measured here (3x13x11x2, blocks of one image or one image
# group): tanh' in both dtypes, sigmoid and softplus forward in float64.  Everything else of
# the epilogue is bit-identical across avx2 and avx512.
POSITION_DEPENDENT = {("tanh", np.float32), ("tanh", np.float64), ("sigmoid", np.float64),
                      ("softplus", np.float64)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_computes_the_same_fused_epilogue(dtype, restore_isa):
    results = {}
    for variant in VARIANTS:
        for name in MODULES:
            load(name)._select_isa(variant)
        results[variant] = fused_epilogues(dtype)
    best = results[VARIANTS[0]]
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for variant, got in results.items():
        for (activation, strides), arrays in got.items():
            for g, r in zip(arrays, best[activation, strides]):
                what = f"{variant} {activation} strides {strides}"
                if variant != "default" and (activation, dtype) not in POSITION_DEPENDENT:
                    np.testing.assert_array_equal(g, r, err_msg=what)
                else:   # no FMA at all, or the last bit of a block's tail (above)
                    np.testing.assert_allclose(g, r, rtol=tol, atol=tol, err_msg=what)


def test_variant_names_and_refusal(restore_isa):
    assert VARIANTS[-1] == "default" and set(VARIANTS) <= {"avx512", "avx2", "default"}
    with pytest.raises(ValueError, match=r"CYTORCH_ISA='sse9' is not a variant this CPU can run"):
        load("_direct")._select_isa("sse9")


def test_environment_variable_forces_a_variant():
    code = ("import cytorch; from cytorch._kernels import isa_in_use; print(isa_in_use())")
    for variant in VARIANTS:
        env = dict(os.environ, CYTORCH_ISA=variant)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        assert out.strip() == str(dict.fromkeys(MODULES, variant))


def test_info_names_the_cpu_and_the_variants():
    from cytorch.info import build_info
    info = build_info()
    assert info["cpu"] and info["isa"] == isa_in_use()
    import io
    text = io.StringIO()
    cytorch.show_build(file=text)
    assert f"_direct {isa_in_use()['_direct']}" in text.getvalue()
    assert info["cpu"] in text.getvalue()


def disassembly(module, function):
    """The instructions of one function of a compiled module, or skip without objdump."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump is not installed")
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", load(module).__file__],
                          capture_output=True, text=True, check=True).stdout
    match = re.search(rf"^[0-9a-f]+ <{function}>:\n(.*?)(?:\n\n|\Z)", text, re.S | re.M)
    if match is None:
        pytest.skip(f"{function} not found (another compiler or CPU)")
    return match.group(1)


@pytest.mark.parametrize("function, register, fma", [
    ("cy_lanes_dot_avx512_f", "zmm", True), ("cy_lanes_dot_avx2_f", "ymm", True),
    ("cy_lanes_dot_avx512_d", "zmm", True), ("cy_lanes_dot_avx2_d", "ymm", True),
    ("cy_lanes_dot_default_f", "xmm", False)])
def test_lanes_variants_use_their_instruction_set(function, register, fma):
    # issue 13: target_clones("avx2") compiled the AVX2 clone without a single FMA
    code = disassembly("_direct", function)
    fmas = re.findall(rf"vfmadd\w+\s+[^\n]*%{register}", code)
    assert bool(fmas) == fma, f"{function}: {len(fmas)} FMA on {register}"
    if not fma:
        assert "vfmadd" not in code and re.search(r"mulp[sd]\s+[^\n]*%xmm", code)


@pytest.mark.parametrize("function, register", [
    ("cy_wino_input_avx512_f", "zmm"), ("cy_wino_input_avx2_f", "ymm"),
    ("cy_wino_output_avx512_d", "zmm"), ("cy_wino_output_adjoint_avx2_d", "ymm"),
    ("cy_wino_input_default_f", "xmm")])
def test_winograd_transforms_use_their_vectors(function, register):
    # the loops over channels are vectorised by GCC (``#pragma GCC ivdep``): check it did
    code = disassembly("_winograd", function)
    assert re.search(rf"(v?subp[sd]|v?addp[sd])\s+[^\n]*%{register}", code), \
        f"{function}: no vector add/sub on {register}"


@pytest.mark.parametrize("function, register", [
    ("cy_extreme_2x2_avx512_f", "zmm"), ("cy_extreme_2x2_avx2_f", "ymm"),
    ("cy_extreme_2x2_default_f", "xmm")])
def test_pool2x2_variants_compare_whole_vectors(function, register):
    code = disassembly("_pool", function)
    assert re.search(rf"cmp\w*ps\s+[^\n]*%{register}", code), f"{function}: no vector compare"


# -- the element functions of _mathfn.h (module _activation) ------------------------------------
def activation_inputs(dtype):
    """A strided sample of every float32 bit pattern (all signs, exponents, subnormals, inf,
    NaN) and, for float64, of every float32 exponent widened plus random digits."""
    bits = np.arange(0, 2**32, 9973, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    if dtype == np.float64:
        rng = np.random.default_rng(0)
        with np.errstate(invalid="ignore"):    # (NaN payloads)
            x = x.astype(np.float64) * (1 + rng.uniform(-0.5, 0.5, x.size))
    return np.concatenate([x, np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)])


ACTIVATIONS = [("tanh", 0.0), ("sigmoid", 0.0), ("exp", 0.0), ("expm1", 0.0), ("elu", 1.0),
               ("softplus", 0.0), ("silu", 0.0), ("relu", 0.0), ("leaky_relu", 0.2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, alpha", ACTIVATIONS)
def test_every_variant_computes_the_same_activation(dtype, name, alpha, restore_isa):
    kernel = load("_activation")
    x = activation_inputs(dtype)
    dout = np.random.default_rng(1).standard_normal(x.size).astype(dtype)
    results = {}
    for variant in VARIANTS:
        assert kernel._select_isa(variant) == variant
        y = np.empty_like(x)
        kernel.forward(name, x, y, alpha)
        got = [y]
        if name not in kernel.NO_BACKWARD:
            dx = np.empty_like(x)
            kernel.backward(name, dout, x if name in kernel.FROM_INPUT else y, dx, alpha)
            got.append(dx)
        results[variant] = got
    best = results[VARIANTS[0]]
    for variant, got in results.items():
        for what, g, r in zip(("forward", "backward"), got, best):
            if variant in ("avx2", "avx512"):
                # the same operations, the same multiply-adds fused
                np.testing.assert_array_equal(g, r, err_msg=f"{variant} {what}")
            else:
                # no FMA: products rounded first, so the last bits may differ; in backward
                # relative to |dout| (1 - y*y cancels near |y| = 1, where its product with
                # dout is small anyway)
                eps = np.finfo(dtype).eps
                atol = 8 * eps * np.abs(dout) if what == "backward" else np.finfo(dtype).tiny
                with np.errstate(invalid="ignore"):
                    close = np.isclose(g, r, rtol=4 * eps, atol=0, equal_nan=True)
                    close |= np.abs(g - r) <= atol
                assert close.all(), (f"{variant} {what}: {np.count_nonzero(~close)} values "
                                     f"differ, e.g. x={x[~close][:3]}: {g[~close][:3]} vs "
                                     f"{r[~close][:3]}")


@pytest.mark.parametrize("function, register", [
    ("cy_act_forward_avx512_f", "zmm"), ("cy_act_forward_avx2_f", "ymm"),
    ("cy_act_forward_avx512_d", "zmm"), ("cy_act_forward_avx2_d", "ymm"),
    ("cy_act_forward_default_f", "xmm")])
def test_activation_variants_use_their_vectors(function, register):
    # the element functions are written branch-free so that these loops vectorise: a select
    # left as a branch would make GCC keep the loop scalar ("control flow in loop")
    code = disassembly("_activation", function)
    assert re.search(rf"divp[sd]\s+[^\n]*%{register}", code), f"{function}: no vector division"
    if register != "xmm":
        assert re.search(rf"vfmadd\w+\s+[^\n]*%{register}", code), f"{function}: no FMA"
