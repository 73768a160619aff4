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
from conftest import POSITION_DEPENDENT

VARIANTS = load("_direct").isa_variants()


@pytest.fixture
def restore_isa():
    yield
    for name in ISA_MODULES:
        load(name)._select_isa("best")


def conv_and_pool(dtype):
    """Direct-path conv2d (forward + backward) and 2x2 max pooling on fixed random data,
    shaped so that every block size of every variant and a tail run."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 13, 11, 3)).astype(dtype)
    w = rng.standard_normal((3, 4, 3, 2)).astype(dtype)
    out, cache = F.conv2d_forward(x, w, np.ones(2, dtype), 1, "same")
    assert load("_direct").uses_direct_path(x.shape, w.shape, out.shape, (1, 1), dtype)
    results = [out, *F.conv2d_backward(rng.standard_normal(out.shape).astype(dtype), cache)]
    # the blocked path (LeNet c2-like, channels over two dx tiles, filters over a vector and a
    # part, rows over several pixel tiles): every tile size of every variant
    x = rng.standard_normal((3, 14, 29, 7)).astype(dtype)
    w = rng.standard_normal((5, 4, 7, 13)).astype(dtype)
    out, cache = F.conv2d_forward(x, w, np.ones(13, dtype), 1, ((2, 1), (0, 3)))
    assert F._conv_fast_path(x, w, out, (1, 1), (1, 1)) == "_blocked"
    results += [out, *F.conv2d_backward(rng.standard_normal(out.shape).astype(dtype), cache)]
    # keras_mnist's first layer in small (one and two channels, 10 and 12 filters, "valid"):
    # avx512 sums dW in tiles of several kernel rows, avx2 of one; dx adds neighbouring taps
    # of one plane, across pixel tiles 48 lanes wide on avx512, 16 on avx2
    for C, K in ((1, 10), (2, 12)):
        x = rng.standard_normal((2, 12, 11, C)).astype(dtype)
        w = rng.standard_normal((5, 5, C, K)).astype(dtype)
        out, cache = F.conv2d_forward(x, w, np.ones(K, dtype))
        assert F._conv_fast_path(x, w, out, (1, 1), (1, 1)) == "_blocked"
        results += [out, *F.conv2d_backward(rng.standard_normal(out.shape).astype(dtype),
                                            cache)]
    # filters in whole vectors and a remainder that G neighbouring pixels share (fwdr): float32
    # 20 (avx2: 2 x 8 + 4 in pairs; avx512: 16 + 4 in fours, two-row tiles) and 18 (avx2: 2 x 8
    # + 2 in fours), float64 10 (avx2: 2 x 4 + 2 in pairs), rows of 7 pixels (the last ones in
    # the one-vector-a-pixel tiles)
    for K in (20, 18) if dtype == np.float32 else (10,):
        x = rng.standard_normal((2, 11, 9, 3)).astype(dtype)
        w = rng.standard_normal((3, 3, 3, K)).astype(dtype)
        out, cache = F.conv2d_forward(x, w, np.ones(K, dtype))
        assert F._conv_fast_path(x, w, out, (1, 1), (1, 1)) == "_blocked"
        results += [out, *F.conv2d_backward(rng.standard_normal(out.shape).astype(dtype),
                                            cache)]
    p = rng.integers(-3, 4, (2, 10, 14, 5)).astype(dtype)
    pooled, pcache = F.max_pool2d_forward(p, 2)
    return results + [pooled, pcache["argidx"]] + winograd(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_pooling_is_the_same_in_every_variant(dtype, restore_isa):
    # global max/min/avg pooling (``_pool2x2.h``): vectors of channels plus a scalar tail (37
    # channels), ties (small integers) and a NaN, whose channel keeps its NaN only when it is
    # the first cell; every channel sees its cells in order, so even the default variant
    # (no FMA is involved) gives the same bits
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, (3, 5, 7, 37)).astype(dtype)
    x[1, 0, 0, 4] = x[2, 3, 1, 20] = np.nan
    dout = rng.standard_normal((3, 37)).astype(dtype)
    results = {}
    for variant in VARIANTS:
        load("_pool")._select_isa(variant)
        got = []
        for kind in ("max", "min", "avg"):
            out, cache = getattr(F, f"global_{kind}_pool2d_forward")(x, check_finite=False)
            dx = getattr(F, f"global_{kind}_pool2d_backward")(dout, cache)
            got += [out, dx] + ([cache["argidx"]] if kind != "avg" else [])
        results[variant] = got
    for variant, got in results.items():
        for g, r in zip(got, results[VARIANTS[0]]):
            np.testing.assert_array_equal(g, r, err_msg=variant)
    assert np.isnan(results[VARIANTS[0]][0][1, 4])          # max: NaN first, it stays
    assert not np.isnan(results[VARIANTS[0]][0][2, 20])     # elsewhere it never wins


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_pooling_is_the_same_in_every_variant(dtype, restore_isa):
    # max/min 2x2 pooling without winners, with and without ReLU: every channel count from 1
    # to 40 (scalar loop, each vector width, overlapping last vectors), ties, -0.0, a NaN
    rng = np.random.default_rng(2)
    xs = [rng.integers(-3, 4, (2, 5, 7, C)).astype(dtype) for C in range(1, 41)]
    for x in xs:
        x[0, 0, 0, 0], x[1, 2, 3, -1] = -0.0, np.nan
    results = {}
    for variant in VARIANTS:
        load("_pool")._select_isa(variant)
        results[variant] = [
            getattr(F, f"{kind}_pool2d_forward")(x, 2, check_finite=False,
                                                 activation=activation,
                                                 need_backward=False)[0]
            for x in xs for kind in ("max", "min") for activation in (None, "relu")]
    for variant, got in results.items():
        for g, r in zip(got, results[VARIANTS[0]]):
            np.testing.assert_array_equal(g, r, err_msg=variant)
            np.testing.assert_array_equal(np.signbit(g), np.signbit(r), err_msg=variant)


def winograd(dtype):
    """Winograd conv2d forward + backward with relu fused, F(2x2, 3x3) and F(4x4, 3x3): 21
    channels (vector blocks and a tail in every variant), ragged edges (9 x 7: not multiples of
    2 or 4), "same" padding."""
    results = []
    for tile in (2, 4):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((2, 9, 7, 21)).astype(dtype)
        w = rng.standard_normal((3, 3, 21, 19)).astype(dtype)
        old = load("_winograd")._set_mode("always")
        old_tile = load("_winograd")._set_tile(tile)
        try:
            out, cache = F.conv2d_forward(x, w, np.ones(19, dtype), 1, "same", activation="relu")
            assert load("_winograd").uses_winograd_path(x.shape, w.shape, out.shape, (1, 1),
                                                        dtype)
            results += [out, *F.conv2d_backward(rng.standard_normal(out.shape).astype(dtype),
                                                cache)]
        finally:
            load("_winograd")._set_mode(old)
            load("_winograd")._set_tile(old_tile)
    return results


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_computes_the_same(dtype, restore_isa):
    results = {}
    for variant in VARIANTS:
        for name in ISA_MODULES:
            assert load(name)._select_isa(variant) == variant
        assert isa_in_use() == {name: variant for name in ISA_MODULES}
        results[variant] = conv_and_pool(dtype)
    best = results[VARIANTS[0]]
    for variant, got in results.items():
        for i, (g, r) in enumerate(zip(got, best)):
            if variant in ("avx2", "avx512"):
                # avx2 and avx512 both fuse each multiply-add and sum every lane in the same
                # order (the Winograd path's tile products too, and its transforms only add,
                # subtract and multiply by powers of two, in one order)
                np.testing.assert_array_equal(g, r, err_msg=variant)
            else:  # no FMA: the products are rounded first (errors scale with the sums)
                tol = 1e-5 if dtype == np.float32 else 1e-13
                np.testing.assert_allclose(g, r, rtol=tol, atol=tol * max(1, np.abs(r).max()),
                                           err_msg=variant)


def fused_epilogues(dtype):
    """conv2d with each activation the kernels apply themselves (``_epilogue.pxd``), forward +
    backward, on every path: direct (stride 1), im2col + GEMM (stride 2), blocked (the shape
    of ``conv_and_pool``) and Winograd (forced, the shape of ``winograd``); and depthwise."""
    rng = np.random.default_rng(0)
    cases = {"direct": ((3, 13, 11, 3), (3, 4, 3, 2), 1, "same"),
             "gemm": ((3, 13, 11, 2), (3, 4, 2, 3), 2, "same"),
             "blocked": ((3, 14, 29, 7), (5, 4, 7, 13), 1, ((2, 1), (0, 3))),
             "winograd": ((2, 9, 7, 21), (3, 3, 21, 19), 1, "same")}
    results = {}
    old = load("_winograd")._set_mode("always")
    try:
        for path, (xs, ws, strides, padding) in cases.items():
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            b = np.ones(ws[3], dtype)
            out = F.conv2d_forward(x, w, b, strides, padding)[0]
            want = {"direct": "_direct", "gemm": None, "blocked": "_blocked",
                    "winograd": "_winograd"}[path]
            assert F._conv_fast_path(x, w, out, (strides,) * 2, (1, 1)) == want, path
            for activation in F.CONV2D_ACTIVATIONS[1:]:
                y, cache = F.conv2d_forward(x, w, b, strides, padding, activation=activation)
                dout = rng.standard_normal(y.shape).astype(dtype)
                results[activation, path] = [y, *F.conv2d_backward(dout, cache)]
    finally:
        load("_winograd")._set_mode(old)
    # the depthwise kernel: stride (2, 1), dm = 3 (a lane tail: x copied), clipped windows
    x = rng.standard_normal((3, 13, 11, 7)).astype(dtype)
    w = rng.standard_normal((5, 3, 7, 3)).astype(dtype)
    b = np.ones(21, dtype)
    for activation in F.CONV2D_ACTIVATIONS[1:]:
        y, cache = F.depthwise_conv2d_forward(x, w, b, (2, 1), ((1, 2), (1, 1)),
                                              activation=activation)
        dout = rng.standard_normal(y.shape).astype(dtype)
        results[activation, "depthwise"] = [y, *F.depthwise_conv2d_backward(dout, cache)]
    return results


# POSITION_DEPENDENT (conftest.py): the results whose last bit depends on where a block of the
# epilogue ends, which is not the same in the avx2 and avx512 variants
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_computes_the_same_fused_epilogue(dtype, restore_isa):
    results = {}
    for variant in VARIANTS:
        for name in ISA_MODULES:
            load(name)._select_isa(variant)
        results[variant] = fused_epilogues(dtype)
    best = results[VARIANTS[0]]
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for variant, got in results.items():
        for (activation, path), arrays in got.items():
            for g, r in zip(arrays, best[activation, path]):
                what = f"{variant} {activation} {path}"
                if variant != "default" and (activation, dtype) not in POSITION_DEPENDENT:
                    np.testing.assert_array_equal(g, r, err_msg=what)
                else:   # no FMA at all, or the last bit of a block's tail (above); the
                    # errors scale with the sums
                    np.testing.assert_allclose(g, r, rtol=tol,
                                               atol=tol * max(1, np.abs(r).max()), err_msg=what)


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
        assert out.strip() == str({name: variant for name in ISA_MODULES})


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
    if "<__asan_init" in text or "__asan_report_" in text:
        # .ci/asan.sh's build: a check before every access keeps GCC from vectorising, and
        # these tests are about the release build's code generation, not memory safety
        pytest.skip(f"{module} is instrumented by AddressSanitizer")
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
    # and every block's loop over the terms keeps its accumulators in registers (the avx2
    # variant's 6-vector blocks need 12 of its 16: no spill)
    check_hot_loops("_direct", function, register, fma)


@pytest.mark.parametrize("kernel", ["fwd", "fwdr", "dw", "dx"])
@pytest.mark.parametrize("variant, register, fma", [
    ("avx512_f", "zmm", True), ("avx2_f", "ymm", True), ("avx512_d", "zmm", True),
    ("avx2_d", "ymm", True), ("default_f", "xmm", False)])
def test_blocked_variants_use_their_instruction_set(kernel, variant, register, fma):
    # issue 13: an AVX2 clone without FMA and with ~600 stack references.  Every innermost loop
    # (a backward jump, no other jump inside) of the micro-kernels multiplies-adds on the
    # variant's registers and keeps its accumulators there: no stack reference in the loop.
    check_hot_loops("_blocked", f"cy_blk_{variant}_{kernel}", register, fma)


@pytest.mark.parametrize("variant, register", [
    ("avx512_f", "zmm"), ("avx2_f", "ymm"), ("avx512_d", "zmm"), ("avx2_d", "ymm")])
def test_blocked_dw_remainder_tiles_use_their_instruction_set(variant, register):
    # dwr (dW when K is whole vectors and 16 bytes of filters, keras_mnist c2's 20): the same
    # check, and its groups' remainders are multiplied as whole vectors (no scalar lanes)
    check_hot_loops("_blocked", f"cy_blk_{variant}_dwr", register, True)
    for body in innermost_loops(disassembly("_blocked", f"cy_blk_{variant}_dwr")):
        text = "\n".join(body)
        assert not re.search(r"v(fmadd|mul)\w*s[sd]\s", text), f"scalar multiply-add:\n{text}"


@pytest.mark.parametrize("variant, register", [
    ("avx512_f", "zmm"), ("avx2_f", "ymm"), ("avx512_d", "zmm"), ("avx2_d", "ymm"),
    ("default_f", "xmm")])
def test_blocked_dx_gather_adds_whole_vectors(variant, register):
    # the blocked dx's last step adds the kw column-shifted planes of a channel: masked vector
    # adds on the variant's registers, the sum kept in a register (no stack in the loop)
    code = disassembly("_blocked", f"cy_blk_{variant}_gather")
    assert re.search(rf"v?and\w*\s+[^\n]*%{register}", code), code
    assert re.search(rf"v?addp[sd]\s+[^\n]*%{register}", code), code
    for body in innermost_loops(code):
        assert "(%rsp)" not in "\n".join(body), "\n".join(body)


@pytest.mark.parametrize("kernel", ["fwd", "dw", "dx"])
@pytest.mark.parametrize("variant, register, fma", [
    ("avx512_f", "zmm", True), ("avx2_f", "ymm", True), ("avx512_d", "zmm", True),
    ("avx2_d", "ymm", True), ("default_f", "xmm", False)])
def test_depthwise_variants_use_their_instruction_set(kernel, variant, register, fma):
    # (dx adds into memory: its loop loads and stores, but never the stack)
    check_hot_loops("_depthwise", f"cy_dw_{variant}_{kernel}", register, fma)


def innermost_loops(code):
    """The innermost loops of a disassembled function: each a list of its lines, from the
    target of a backward jump to the jump, with no other jump inside."""
    lines = [line for line in code.splitlines() if ":" in line]
    addresses = [int(line.split(":")[0], 16) for line in lines]
    loops = []
    for i, line in enumerate(lines):
        jump = re.search(r"\bj\w+\s+([0-9a-f]+) <", line)
        if jump and int(jump.group(1), 16) < addresses[i]:
            body = [text for a, text in zip(addresses, lines)
                    if int(jump.group(1), 16) <= a <= addresses[i]]
            if not any(re.search(r"\bj\w+\s", text) for text in body[:-1]):
                loops.append(body)
    return loops


def check_hot_loops(module, function, register, fma):
    """Every innermost loop of ``function`` that multiplies vectors does it on ``register``
    (with FMA when ``fma``) and never touches the stack."""
    code = disassembly(module, function)
    hot = [body for body in innermost_loops(code)
           if any(re.search(r"(mul|fmadd)\w*p[sd]", t) for t in body)]
    assert hot, f"{function}: no vector loop found"
    for body in hot:
        text = "\n".join(body)
        assert ("vfmadd" in text) == fma, text
        assert re.search(rf"(fmadd|mul)\w*p[sd]\s+[^\n]*%{register}", text), text
        assert "(%rsp)" not in text, f"stack in a hot loop:\n{text}"   # (rbp: a plain register)


@pytest.mark.parametrize("function, register", [
    ("cy_wino_input_avx512_f", "zmm"), ("cy_wino_input_avx2_f", "ymm"),
    ("cy_wino_output_avx512_d", "zmm"), ("cy_wino_output_adjoint_avx2_d", "ymm"),
    ("cy_wino_input_default_f", "xmm"),
    ("cy_wino4_input_avx512_f", "zmm"), ("cy_wino4_input_avx2_f", "ymm"),
    ("cy_wino4_input_default_d", "xmm"), ("cy_wino4_output_avx2_f", "ymm"),
    ("cy_wino4_output_avx512_d", "zmm"), ("cy_wino4_output_adjoint_avx2_d", "ymm"),
    ("cy_wino4_output_adjoint_avx512_f", "zmm")])
def test_winograd_transforms_use_their_vectors(function, register):
    # the loops over channels are vectorised by GCC (``#pragma GCC ivdep``): check it did
    code = disassembly("_winograd", function)
    assert re.search(rf"(v?subp[sd]|v?addp[sd])\s+[^\n]*%{register}", code), \
        f"{function}: no vector add/sub on {register}"


@pytest.mark.parametrize("variant, register, fma", [
    ("avx512_f", "zmm", True), ("avx2_f", "ymm", True), ("avx512_d", "zmm", True),
    ("avx2_d", "ymm", True), ("default_f", "xmm", False), ("default_d", "xmm", False)])
def test_winograd_tile_products_use_their_instruction_set(variant, register, fma):
    # the 16 products per group of tiles (_winograd.h, no BLAS): every tile size of the switch
    # keeps its accumulators in registers and multiplies-adds on the variant's vectors (the
    # loop's end may be compared with the stack: 12 rows of A take 12 general registers)
    code = disassembly("_winograd", f"cy_wino_product_{variant}")
    hot = [body for body in innermost_loops(code)
           if any(re.search(r"(mul|fmadd)\w*p[sd]", t) for t in body)]
    assert len(hot) >= 12, f"{variant}: {len(hot)} vector loops"   # (tile sizes x 1-2 vectors)
    for body in hot:
        text = "\n".join(body)
        assert ("vfmadd" in text) == fma, text
        assert re.search(rf"(fmadd|mul)\w*p[sd]\s+[^\n]*%{register}", text), text
        assert not re.search(r"mm\d+[^\n]*\(%rsp\)|\(%rsp\)[^\n]*mm\d+", text), \
            f"vector registers spilled in a hot loop:\n{text}"


@pytest.mark.parametrize("module", ["_direct", "_conv", "_blocked", "_winograd"])
@pytest.mark.parametrize("function, register", [
    ("cy_col_sums_avx512_f", "zmm"), ("cy_col_sums_avx2_f", "ymm"),
    ("cy_col_sums_avx512_d", "zmm"), ("cy_col_sums_avx2_d", "ymm"),
    ("cy_col_sums_default_f", "xmm")])
def test_conv_epilogue_sums_db_in_whole_vectors(module, function, register):
    # db, the column sums of the fused epilogue (``_epilogue.pxd``'s derivative_db): as a plain
    # loop over rows and the K columns GCC left it scalar (a VGG-ish relu backward step 26.6 ms
    # against 18.9 ms with vector loops); the float32 variants widen whole vectors to float64
    code = disassembly(module, function)
    assert re.search(rf"addpd\s+[^\n]*%{register}", code), f"{function}: no vector add"
    if function.endswith("_f"):
        assert re.search(rf"cvtps2pd\s+[^\n]*%{register}", code), f"{function}: no widening"


@pytest.mark.parametrize("function, register", [
    ("cy_extreme_row_avx512_f", "ymm"), ("cy_extreme_row_avx2_f", "ymm"),
    ("cy_extreme_row_avx2_f", "xmm"), ("cy_extreme_row_avx512_d", "zmm")])
def test_fused_conv_pooling_compares_whole_vectors(function, register):
    # conv2d_max_pool2d_forward's pooling: ``_pool2x2.h``'s inference row pass, compiled into
    # the blocked module too (keras_mnist's K = 10 filters: ymm)
    code = disassembly("_blocked", function)
    assert re.search(rf"cmp\w*p[sd]\s+[^\n]*%{register}", code), f"{function}: no vector compare"


@pytest.mark.parametrize("function, register", [
    ("cy_extreme_2x2_avx512_f", "zmm"), ("cy_extreme_2x2_avx2_f", "ymm"),
    ("cy_extreme_2x2_default_f", "xmm"),
    # inference (no winners): each variant's widest vectors, and narrower ones for fewer
    # channels (keras_mnist's C = 10: ymm, also in the avx512 variant)
    ("cy_extreme_row_avx512_f", "zmm"), ("cy_extreme_row_avx512_f", "ymm"),
    ("cy_extreme_row_avx2_f", "ymm"), ("cy_extreme_row_avx2_f", "xmm"),
    ("cy_extreme_row_avx512_d", "zmm"), ("cy_extreme_row_avx2_d", "ymm"),
    ("cy_extreme_row_default_f", "xmm")])
def test_pool2x2_variants_compare_whole_vectors(function, register):
    code = disassembly("_pool", function)
    assert re.search(rf"cmp\w*p[sd]\s+[^\n]*%{register}", code), f"{function}: no vector compare"


@pytest.mark.parametrize("function, register", [
    ("cy_optim_step_avx512_f", "zmm"), ("cy_optim_step_avx2_f", "ymm"),
    ("cy_optim_step_default_f", "xmm"), ("cy_optim_step_avx512_d", "zmm"),
    ("cy_optim_step_avx2_d", "ymm"), ("cy_optim_step_default_d", "xmm")])
def test_optim_variants_take_whole_vector_roots_without_fma(function, register):
    # the step's square roots and divisions in the variant's vectors, and no fused multiply-add:
    # it would round once where the NumPy twin rounds twice (setup.py: -ffp-contract=off)
    code = disassembly("_optim", function)
    assert re.search(rf"sqrtp[sd]\s+[^\n]*%{register}", code), f"{function}: no vector sqrt"
    assert re.search(rf"divp[sd]\s+[^\n]*%{register}", code), f"{function}: no vector division"
    assert "vfmadd" not in code and "vfmsub" not in code and "vfnmadd" not in code


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
