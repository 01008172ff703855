"""The bfloat16 GEMM, C = alpha * bf16(op(A)) @ bf16(op(B)) + beta * C (float32 in and
out; csrc/kernels/gemm_bf16.hpp, docs/bfloat16.md), on every level that runs it:

* the rounding of the operands is the NumPy backend's round_to_bfloat16, which is
  VCVTNEPS2BF16's (nearest even, subnormals to signed zero, NaN quiet, overflow to inf);
* the result is the contract's float32 chain (oracle.bf16_gemm_chain) bit for bit: the
  portable path in IEEE arithmetic, avx512_bf16 with VDPBF16PS's flush of subnormals;
* against the exact product of the rounded operands, within the derived bound
  bf16_tolerance (a float32 rounding per step and three in the epilogue);
* no dependence on the thread count or the batch; beta == 0 never reads C.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import oracle
from fastmlp import _core
from fastmlp.backends.numpy import NumPyBackend, round_to_bfloat16

TRANS = [(False, False), (False, True), (True, False), (True, True)]
TRANS_IDS = ["NN", "NT", "TN", "TT"]
# (m, n, k): one row across many panels and a short tile row (3 rows) included
SHAPES = [(1, 1, 1), (1, 7, 17), (1, 300, 40), (3, 70, 50), (7, 17, 33), (17, 1, 257), (33, 257, 7),
          (145, 33, 64), (12, 40, 1000)]
U = 2.0 ** -24   # float32's unit roundoff


def gemm_bf16(a, b, c, ta=False, tb=False, alpha=1.0, beta=0.0):
    _core.gemm(a, b, c, ta, tb, alpha, beta, bf16=True)


def flushes(level: str) -> bool:
    """Whether the level's dot products flush subnormals (VDPBF16PS, TDPBF16PS) or keep them."""
    return level in ("avx512_bf16", "amx")


def chain(a_bf16, b_bf16, level: str):
    """The contract's chain as `level` runs it: generic (no FMA) rounds a subnormal product
    before adding it; amx sums in TDPBF16PS's order (oracle.bf16_amx_chain)."""
    if level == "amx":
        return oracle.bf16_amx_chain(a_bf16, b_bf16)
    return oracle.bf16_gemm_chain(a_bf16, b_bf16, flushes(level), round_products=level == "generic")


def rounding_steps(k: int, level: str) -> int:
    """Float32 roundings of one element's sums: k + 1 on the vector levels (an odd k adds
    a +0); on amx the k products, two more per tile of 16 pairs (even + odd, acc + that)."""
    if level == "amx":
        tiles = ((k + 1) // 2 + 15) // 16
        return k + 1 + 2 * tiles
    return k + 1


def operands(rng, m, n, k, ta, tb, scale=1.0):
    a = (rng.standard_normal((k, m) if ta else (m, k)) * scale).astype(np.float32)
    b = (rng.standard_normal((n, k) if tb else (k, n)) * scale).astype(np.float32)
    return a, b


def op(x, t):
    return x.T if t else x


def bf16_tolerance(k: int, alpha: float, beta: float, scale_ab, c0, flush: bool, steps: int):
    """The bound on |C - exact|, exact = alpha * A_bf16 @ B_bf16 + beta * C0 in float64.
    The sums of the k exact products, in whichever order the level takes them (a chain, or
    amx's tiles), round a product's share at most k - 1 times (an addition of an exact zero
    is exact; Higham, Accuracy and Stability, 4.2): |acc - sum| <= gamma(k + 1) * sum |a b|
    with gamma(n) = n u / (1 - n u); the epilogue rounds alpha * acc, beta * C and their
    sum: three more. A rounding into the subnormal range errs by up to 2^-150 absolute
    instead (fl(x) = x (1 + d) + e, |e| <= 2^-150); with the flush, each of the `steps`
    roundings (rounding_steps) may lose anything below 2^-126 instead."""
    n = k + 4
    gamma = n * U / (1 - n * U)
    bound = gamma * (abs(alpha) * scale_ab + abs(beta) * np.abs(c0.astype(np.float64)))
    underflow = 2.0 ** -126 if flush else 2.0 ** -150
    return bound + abs(alpha) * steps * underflow + 3 * 2.0 ** -150


def check_against_exact(got, a, b, ta, tb, alpha, beta, c0, level):
    A = round_to_bfloat16(op(a, ta)).astype(np.float64)
    B = round_to_bfloat16(op(b, tb)).astype(np.float64)
    exact = alpha * (A @ B) + (beta * c0.astype(np.float64) if beta != 0 else 0.0)
    bound = bf16_tolerance(A.shape[1], alpha, beta, np.abs(A) @ np.abs(B), c0, flushes(level),
                           rounding_steps(A.shape[1], level))
    excess = np.abs(got.astype(np.float64) - exact) - bound
    assert excess.max(initial=-1.0) <= 0, f"{level}: error over the bound by {excess.max()}"


# ------------------------------------------------------------------------------------
# The rounding
# ------------------------------------------------------------------------------------

SPECIAL = np.array([
    0.0, -0.0, 1.0, -1.0,
    1.00390625,            # 1 + 2^-8: the tie between 1 and 1 + 2^-7, to even (1)
    1.01171875,            # 1 + 3 * 2^-8: the tie between 1 + 2^-7 and 1 + 2^-6, to even (up)
    1.0 + 2.0 ** -8 + 2.0 ** -20,   # just past the tie: up
    np.float32(2.0 ** -126) * 1.999,                   # normal; rounds up into the next binade
    2.0 ** -130, -(2.0 ** -130),                       # subnormal: a zero of its sign
    3.3895e38, 3.4e38, -3.4e38,                        # near the top: the last rounds to inf
    np.inf, -np.inf, np.nan,
], dtype=np.float32)


def test_round_to_bfloat16_hand_worked():
    """Values whose rounding is worked out by hand in the comments above."""
    r = round_to_bfloat16(SPECIAL)
    assert r[4] == 1.0 and r[5] == np.float32(1.015625) and r[6] == np.float32(1.0078125)
    assert r[8] == 0 and not np.signbit(r[8]) and r[9] == 0 and np.signbit(r[9])
    assert r[7] == np.float32(2.0 ** -125)
    assert np.isinf(r[11]) and r[11] > 0 and np.isinf(r[12]) and r[12] < 0
    assert np.isfinite(r[10]) and np.isnan(r[15])
    bits = r.view(np.uint32)
    assert (bits & 0xFFFF).max() == 0, "a bfloat16 value has zero low bits"
    assert bits[15] & 0x00400000, "a NaN stays a quiet NaN"


def test_round_to_bfloat16_is_nearest():
    """On random normal floats: the result is one of the two bfloat16 neighbours and no
    farther than half a bfloat16 ulp (2^-8 relative)."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(100_000) * np.exp(rng.uniform(-60, 60, 100_000))).astype(np.float32)
    r = round_to_bfloat16(x).astype(np.float64)
    assert np.all(np.abs(r - x) <= np.abs(x) * 2.0 ** -8)
    assert np.count_nonzero(r != x) > 90_000, "the rounding must change most values"


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_packing_rounds_like_the_oracle(bf16_isa, ta, tb):
    """C = X @ I and I @ X (and their transposed forms) reproduce each element of X as
    the packing rounded it: one product with 1 and sums with +0. Every finite special
    value that stays finite (an infinity or NaN would spread over its row through inf * 0)
    and 6,000 random
    ones, on both operands' packing paths."""
    rng = np.random.default_rng(1)
    finite = SPECIAL[np.isfinite(round_to_bfloat16(SPECIAL))]
    x = np.concatenate([finite, rng.standard_normal(6000).astype(np.float32) * 1e3]).astype(np.float32)
    x = np.resize(x, (97, 63)).astype(np.float32)
    eye_k = np.eye(x.shape[1], dtype=np.float32)
    got = np.empty_like(x)
    gemm_bf16(np.ascontiguousarray(x.T) if ta else x, eye_k, got, ta, tb)
    want = round_to_bfloat16(x)
    want = np.where(want == 0, np.float32(0), want)   # +0 + (-0) is +0: signs of zeros drop
    np.testing.assert_array_equal(got, want)
    eye_m = np.eye(x.shape[0], dtype=np.float32)
    got = np.empty_like(x)
    gemm_bf16(eye_m, np.ascontiguousarray(x.T) if tb else x, got, ta, tb)
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------
# The arithmetic
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_gemm_bf16_is_the_contracts_chain(bf16_isa, m, n, k, ta, tb):
    """Bit for bit the contract's float32 chain over the rounded operands (alpha 1, beta
    0), and within the derived bound of the exact product."""
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a, b = operands(rng, m, n, k, ta, tb)
    got = np.full((m, n), np.nan, np.float32)   # beta == 0: C is never read
    gemm_bf16(a, b, got, ta, tb)
    want = chain(round_to_bfloat16(op(a, ta)), round_to_bfloat16(op(b, tb)), bf16_isa)
    np.testing.assert_array_equal(got, want)
    check_against_exact(got, a, b, ta, tb, 1.0, 0.0, np.zeros((m, n), np.float32), bf16_isa)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.5, 2.0), (3.0, -1.0), (0.0, 1.0)])
def test_gemm_bf16_alpha_beta(bf16_isa, alpha, beta):
    """C = alpha * acc + beta * C, each rounded in float32, within the bound; the same bits
    as the chain finished in float32 by the contract's epilogue."""
    rng = np.random.default_rng(7)
    m, n, k = 29, 35, 131
    a, b = operands(rng, m, n, k, False, True)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    got = c0.copy()
    gemm_bf16(a, b, got, False, True, alpha, beta)
    want = chain(round_to_bfloat16(a), round_to_bfloat16(b.T), bf16_isa)
    np.testing.assert_array_equal(got, np.float32(alpha) * want + np.float32(beta) * c0)
    check_against_exact(got, a, b, False, True, alpha, beta, c0, bf16_isa)


def test_gemm_bf16_subnormal_range(bf16_isa):
    """Operands near 2^-70 put every product and partial sum below 2^-126 (|a b| < 2^-132
    for |a|, |b| < 8): VDPBF16PS flushes them, the portable path keeps them; each is its
    own chain bit for bit, within the bound (which counts the flush), and only the
    flushing level returns zeros."""
    rng = np.random.default_rng(3)
    a, b = operands(rng, 9, 21, 40, False, False, scale=2.0 ** -70)
    got = np.empty((9, 21), np.float32)
    gemm_bf16(a, b, got)
    np.testing.assert_array_equal(got, chain(round_to_bfloat16(a), round_to_bfloat16(b), bf16_isa))
    check_against_exact(got, a, b, False, False, 1.0, 0.0, np.zeros_like(got), bf16_isa)
    assert (np.count_nonzero(got) == 0) == flushes(bf16_isa)


def test_gemm_bf16_nan_and_inf(bf16_isa):
    """A NaN operand makes its row NaN; inf * 0 is NaN; inf alone stays inf."""
    a = np.ones((3, 5), np.float32)
    b = np.ones((5, 4), np.float32)
    a[0, 2] = np.nan
    a[1, 1] = np.inf
    b[1, 3] = 0.0
    c = np.empty((3, 4), np.float32)
    gemm_bf16(a, b, c)
    assert np.isnan(c[0]).all()
    assert np.isinf(c[1, :3]).all() and np.isnan(c[1, 3])
    np.testing.assert_array_equal(c[2], np.array([5, 5, 5, 4], np.float32))


def test_bf16_is_coarser_than_float32(bf16_isa):
    """The operands really are rounded: the bf16 product differs from the float32 one by
    about 2^-9 relative on random data, far beyond float32 rounding."""
    rng = np.random.default_rng(11)
    a, b = operands(rng, 64, 64, 256, False, False)
    c16 = np.empty((64, 64), np.float32)
    c32 = np.empty((64, 64), np.float32)
    gemm_bf16(a, b, c16)
    _core.gemm(a, b, c32)
    rel = np.linalg.norm(c16 - c32) / np.linalg.norm(c32)
    assert 2.0 ** -12 < rel < 2.0 ** -6, rel


# ------------------------------------------------------------------------------------
# Reproducibility and the edges of the contract
# ------------------------------------------------------------------------------------

def test_every_level_agrees_bit_for_bit_on_normal_data(every_isa):
    """The portable path and VDPBF16PS take the same steps in the same order: on data whose
    partial sums stay normal every level returns the same bits."""
    rng = np.random.default_rng(5)
    a, b = operands(rng, 300, 77, 517, False, False)

    def run():
        c = np.empty((300, 77), np.float32)
        gemm_bf16(a, b, c)
        return c

    results = every_isa(run)
    amx = results.pop("amx", None)   # its own order: its own chain (test_gemm_bf16_is_the_contracts_chain)
    oracle.assert_same_bits(results)
    if amx is not None:
        assert not np.array_equal(amx, results["avx512_bf16"]), "amx summed in VDPBF16PS's order"


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_threads_and_batches_do_not_change_bits(bf16_isa, nthreads, ta, tb):
    """1 and 2 threads, and each row alone, give the same bits (one chain per element)."""
    rng = np.random.default_rng(9)
    m, n, k = 300, 70, 129
    a, b = operands(rng, m, n, k, ta, tb)
    results = []
    for t in (1, 2):
        c = np.empty((m, n), np.float32)
        with nthreads(t):
            gemm_bf16(a, b, c, ta, tb)
            if t == 2:
                assert _core._testing.last_team_size() == 2
        results.append(c)
    np.testing.assert_array_equal(results[0], results[1])
    row = np.empty((1, n), np.float32)
    a_row = np.ascontiguousarray(a[:, 150:151]) if ta else a[150:151]
    gemm_bf16(a_row, b, row, ta, tb)
    np.testing.assert_array_equal(row[0], results[0][150])


def test_empty_and_k_zero(bf16_isa):
    """m or n == 0 writes nothing; k == 0 gives beta * C (zeros when beta == 0)."""
    c = np.empty((0, 3), np.float32)
    gemm_bf16(np.empty((0, 4), np.float32), np.ones((4, 3), np.float32), c)
    c = np.full((2, 3), 2.0, np.float32)
    gemm_bf16(np.empty((2, 0), np.float32), np.empty((0, 3), np.float32), c, beta=0.5)
    np.testing.assert_array_equal(c, np.ones((2, 3), np.float32))
    c[:] = np.nan
    gemm_bf16(np.empty((2, 0), np.float32), np.empty((0, 3), np.float32), c)
    np.testing.assert_array_equal(c, np.zeros((2, 3), np.float32))


def test_bad_arguments_name_themselves():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="gemm: bf16=True takes float32 arrays; a has dtype float64"):
        gemm_bf16(a.astype(np.float64), np.ones((3, 2)), np.empty((2, 2)))
    with pytest.raises(TypeError, match="gemm: b has dtype float64, expected float32"):
        gemm_bf16(a, np.ones((3, 2)), np.empty((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"gemm: shape mismatch: a is \(2, 3\), b is \(4, 2\)"):
        gemm_bf16(a, np.ones((4, 2), np.float32), np.empty((2, 2), np.float32))
    with pytest.raises(TypeError, match="gemm: bf16=True takes float32 arrays; b has dtype float64"):
        NumPyBackend().gemm(a, np.ones((3, 2)), np.empty((2, 2), np.float32), bf16=True)


def test_numpy_backend_is_the_oracle(bf16_isa):
    """The NumPy backend's gemm with bf16 (rounded operands, BLAS's float32 sums) and the native
    kernel are both within the bound of the exact product: they differ only in the order
    of the float32 sums."""
    rng = np.random.default_rng(13)
    a, b = operands(rng, 40, 30, 300, True, False)
    for backend in (NumPyBackend(), fastmlp.backends.get_backend("native")):
        c = np.empty((40, 30), np.float32)
        backend.gemm(a, b, c, trans_a=True, bf16=True)
        check_against_exact(c, a, b, True, False, 1.0, 0.0, np.zeros_like(c), bf16_isa)


def test_avx512_bf16_runs_avx512s_float_kernels(every_isa):
    """The bfloat16 levels add VDPBF16PS (avx512_bf16) or the tiles (amx) and nothing else:
    their float32 and float64 kernels are avx512's, the same bits."""
    usable = _core.backend_info()["usable_isas"]
    if "avx512_bf16" not in usable:
        pytest.skip(f"ISA level 'avx512_bf16' not usable here (usable: {usable})")
    rng = np.random.default_rng(17)
    operands_by_dtype = {dt: (rng.standard_normal((37, 300)).astype(dt), rng.standard_normal((300, 41)).astype(dt))
                         for dt in (np.float32, np.float64)}

    def run():
        out = []
        for a, b in operands_by_dtype.values():
            c = np.empty((a.shape[0], b.shape[1]), a.dtype)
            _core.gemm(a, b, c)
            out.append(c)
        return out

    results = every_isa(run)
    for level in ("avx512_bf16", "amx"):
        for mine, base in zip(results.get(level, ()), results["avx512"]):
            np.testing.assert_array_equal(mine, base, err_msg=level)


# ------------------------------------------------------------------------------------
# The fused epilogues and the pre-packed weights: the same bits as the plain product
# followed by the unfused kernel (the float32 contract, carried over)
# ------------------------------------------------------------------------------------

ACTIVATIONS = [*oracle.PARAM.items(), ("leaky_relu", 0.2), ("elu", 0.5)]
ACT_IDS = [f"{a}-{p}" for a, p in ACTIVATIONS]
LAYERS = [(1, 784, 256), (7, 17, 33), (33, 300, 10), (128, 256, 128), (145, 64, 40)]  # (batch, in, out)


def epilogue_cases(seed, ta, tb):
    """(rng, m, n, a, b, plain product) for two layers' shapes: the product by gemm alone."""
    rng = np.random.default_rng(seed)
    for m, k, n in LAYERS[:3]:
        a, b = operands(rng, m, n, k, ta, tb)
        product = np.full((m, n), np.nan, np.float32)
        gemm_bf16(a, b, product, ta, tb)
        yield rng, m, n, a, b, product


@pytest.mark.parametrize("act,param", ACTIVATIONS, ids=ACT_IDS)
@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_bias_act_epilogue_is_product_then_bias_act(bf16_isa, act, param, ta, tb):
    for rng, m, n, a, b, z_ref in epilogue_cases(21, ta, tb):
        bias = rng.standard_normal(n).astype(np.float32)
        out_ref = np.full_like(z_ref, np.nan)
        _core.bias_act_forward(z_ref, bias, out_ref, act, param)
        z, out = np.full_like(z_ref, np.nan), np.full_like(z_ref, np.nan)
        _core.gemm_bias_act(a, b, bias, z, out, ta, tb, act, param, bf16=True)
        oracle.assert_same_bits({"fused z": z, "gemm + bias_act z": z_ref})
        oracle.assert_same_bits({"fused out": out, "gemm + bias_act out": out_ref})
        alone = np.full_like(z_ref, np.nan)   # out == z: act(z) alone
        _core.gemm_bias_act(a, b, bias, alone, alone, ta, tb, act, param, bf16=True)
        oracle.assert_same_bits({"fused, out is z": alone, "gemm + bias_act out": out_ref})


@pytest.mark.parametrize("act,param", ACTIVATIONS, ids=ACT_IDS)
@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_act_backward_epilogue_is_product_then_act_backward(bf16_isa, act, param, ta, tb):
    for rng, m, n, a, b, dx_ref in epilogue_cases(23, ta, tb):
        z = rng.standard_normal((m, n)).astype(np.float32)
        az = np.full_like(z, np.nan)
        _core.bias_act_forward(z.copy(), np.zeros(n, np.float32), az, act, param)
        dz_ref = np.full_like(z, np.nan)
        _core.act_backward(z, az, dx_ref, dz_ref, act, param)
        dx, dz = np.full_like(z, np.nan), np.full_like(z, np.nan)
        _core.gemm_act_backward(a, b, z, az, dx, dz, ta, tb, act, param, bf16=True)
        oracle.assert_same_bits({"fused dx": dx, "gemm dx": dx_ref})
        oracle.assert_same_bits({"fused dz": dz, "gemm + act_backward dz": dz_ref})
        only = np.full_like(z, np.nan)   # dz over dx: dx not kept
        _core.gemm_act_backward(a, b, z, az, only, only, ta, tb, act, param, bf16=True)
        oracle.assert_same_bits({"fused dz over dx": only, "gemm + act_backward dz": dz_ref})


@pytest.mark.parametrize("batch,n_in,n_out", LAYERS)
@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bfloat16"])
def test_prepacked_weights_give_the_same_bits(bf16_isa, nthreads, batch, n_in, n_out, bf16):
    """W packed once (the predictor's path) and W packed per call: the same bits, on 1 and
    2 threads."""
    rng = np.random.default_rng(batch + n_in)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    z_ref, out_ref = np.full((batch, n_out), np.nan, np.float32), np.full((batch, n_out), np.nan, np.float32)
    _core.gemm_bias_act(x, w, bias, z_ref, out_ref, False, True, "relu", 0.0, bf16=bf16)
    for t in (1, 2):
        z, out = np.full_like(z_ref, np.nan), np.full_like(z_ref, np.nan)
        with nthreads(t):
            _core._testing.packed_gemm_bias_act(x, w, bias, z, out, "relu", 0.0, bf16)
        oracle.assert_same_bits({f"packed z, {t} threads": z, "per call z": z_ref})
        oracle.assert_same_bits({f"packed out, {t} threads": out, "per call out": out_ref})


def test_bfloat16_products_refuse_float64():
    x = np.ones((2, 3))
    out = np.empty((2, 2))
    with pytest.raises(TypeError, match="gemm_bias_act: bf16=True takes float32 arrays; a has dtype float64"):
        _core.gemm_bias_act(x, np.ones((2, 3)), np.zeros(2), out, out.copy(), False, True, "relu", 0.0, bf16=True)
    with pytest.raises(TypeError, match="gemm_act_backward: bf16=True takes float32 arrays"):
        _core.gemm_act_backward(x, np.ones((3, 2)), out, out, out.copy(), out.copy(), bf16=True)


# ------------------------------------------------------------------------------------
# Through a model: precision="bfloat16" (tests/api/test_bfloat16.py has the rest)
# ------------------------------------------------------------------------------------

def test_a_bfloat16_models_forward_is_the_chain(bf16_isa, monkeypatch):
    """predict of a 17-12-5 relu regressor with precision="bfloat16" on this level, fused
    predictor and per-op forward alike, equals the contract's chains layer by layer with
    the bias added and relu applied in float32, bit for bit."""
    from fastmlp.train import fused as fused_module
    rng = np.random.default_rng(29)
    X = rng.standard_normal((33, 17)).astype(np.float32)
    m = fastmlp.Sequential([fastmlp.Dense(12, "relu"), fastmlp.Dense(5)], input_dim=17, loss="mse",
                           precision="bfloat16", seed=3)
    w1, b1, w2, b2 = m.get_weights()
    z1 = chain(round_to_bfloat16(X), round_to_bfloat16(w1.T), bf16_isa) + b1
    a1 = np.maximum(z1, np.float32(0))
    want = chain(round_to_bfloat16(a1), round_to_bfloat16(w2.T), bf16_isa) + b2
    assert fused_module.predictor(m) is not None
    np.testing.assert_array_equal(m.predict(X), want)
    monkeypatch.setattr(fused_module, "predictor", lambda model: None)
    np.testing.assert_array_equal(m.predict(X), want)


def test_the_prepacking_hook_checks_its_outputs():
    """The tests' hook checks out and bias against z as gemm_bias_act does: a wrong shape
    or an out that overlaps an input is a ValueError naming it, never a write past it."""
    hook = _core._testing.packed_gemm_bias_act
    x, w = np.ones((4, 3), np.float32), np.ones((5, 3), np.float32)
    bias, z = np.zeros(5, np.float32), np.empty((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"packed_gemm_bias_act: .*z is \(4, 5\), out is \(4, 4\)"):
        hook(x, w, bias, z, np.empty((4, 4), np.float32), "relu", 0.0, True)
    with pytest.raises(ValueError, match=r"packed_gemm_bias_act: shape mismatch: bias is \(4,\)"):
        hook(x, w, np.zeros(4, np.float32), z, np.empty((4, 5), np.float32), "relu", 0.0, True)
    shared = np.ones(20, np.float32)
    with pytest.raises(ValueError, match="packed_gemm_bias_act: out overlaps x"):
        hook(shared[:12].reshape(4, 3), w, bias, z, shared.reshape(4, 5), "relu", 0.0, True)
