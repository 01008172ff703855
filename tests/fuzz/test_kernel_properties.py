"""Property tests of every kernel binding of fastmlp._core: hypothesis draws the shapes
(0, 1, odd sizes, sizes around the vector widths, non-multiples of 16), the dtype, the
values (a seeded normal base of a drawn magnitude with drawn edits: zeros, signed zeros,
subnormals, the extremes of the range that keeps results finite), the transposes and
the scalar arguments, and each result is compared with the oracle on every ISA the
machine has, within the bounds the kernel tests state (tests/kernels/*.py,
tests/tolerances.py; imported, never restated). Further properties: a call with a
wrong-dtype or non-C-contiguous array is refused and writes nothing (the bindings never
convert or copy); the results are bitwise identical on 1 and 2 threads.

Deterministic and bounded: derandomize=True, no example database, a fixed number of
examples per test (about 25 s for the file on 2 cores).
"""
from __future__ import annotations

import collections
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastmlp
import oracle
from fastmlp import Dense, Sequential
from fastmlp import _core
from fastmlp.backends import NumPyBackend, native
from helpers import assert_close
from activation_cases import CASES as ACTIVATION_CASES
from test_elementwise import BACKWARD_EPS, forward_bound
from test_gemm import assert_gemm_close
from test_losses import ROW_SUM_EPS, SOFTMAX_OUT_EPS, TOL as LOSS_TOL
from test_math import RANGES as MATH_RANGES, ULP_TABLE
from test_optimizers import HYPER, USES

NP = NumPyBackend()
FUZZ_EXAMPLES: "collections.Counter[str]" = collections.Counter()   # inputs run, by kernel
ISAS = tuple(fastmlp.backend_info()["usable_isas"])
DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
ACTIVATIONS = oracle.ACTIVATIONS
LOSSES = oracle.LOSSES
# Sizes a vector path treats differently: empty, one, below/at/above the float32 and
# float64 lane counts of SSE/AVX2/AVX-512 and their doubles; plus any size up to `high`.
EDGE_SIZES = (0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65)


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def sizes(low: int = 0, high: int = 80):
    edge = [s for s in EDGE_SIZES if low <= s <= high]
    return st.one_of(st.sampled_from(edge), st.integers(low, high))


def every_isa(run):
    """{isa: run()} on every usable ISA, "auto" restored afterwards."""
    results = {}
    try:
        for name in ISAS:
            assert fastmlp.set_isa(name) == name
            results[name] = run()
    finally:
        fastmlp.set_isa("auto")
    return results


def specials(dtype: np.dtype, bound: float):
    """Finite values that stress a kernel and keep |x| <= bound."""
    fi = np.finfo(dtype)
    return st.sampled_from([0.0, -0.0, float(fi.smallest_subnormal), -float(fi.smallest_subnormal),
                            float(fi.tiny), bound, -bound, 1.0, -1.0])


@st.composite
def values(draw, shape, dtype, bound: float = 30.0, positive: bool = False):
    """An array of ``shape``: a seeded normal base times a drawn magnitude (clipped to
    +-bound), then up to 6 drawn edits, each a special value or any float in range."""
    seed = draw(st.integers(0, 2**32 - 1))
    magnitude = draw(st.sampled_from([1e-3, 0.1, 1.0, 4.0, bound]))
    x = np.random.default_rng(seed).standard_normal(shape) * magnitude
    x = np.clip(x, -bound, bound)
    if x.size:
        edit = st.one_of(specials(dtype, bound),
                         st.floats(-bound, bound, width=8 * dtype.itemsize))
        for index, value in draw(st.lists(st.tuples(st.integers(0, x.size - 1), edit), max_size=6)):
            x.flat[index] = value
    if positive:
        x = np.abs(x)
    return x.astype(dtype)


# =========================================================================================
# GEMM and the fused epilogue
# =========================================================================================

@st.composite
def gemm_cases(draw):
    dtype = draw(DTYPES)
    m, n, k = draw(sizes(high=160)), draw(sizes(high=160)), draw(sizes(high=300))
    ta, tb = draw(st.booleans()), draw(st.booleans())
    a = draw(values((k, m) if ta else (m, k), dtype, bound=1e3))
    b = draw(values((n, k) if tb else (k, n), dtype, bound=1e3))
    alpha = draw(st.one_of(st.sampled_from([1.0, -1.0, 0.5]), st.floats(-4, 4).filter(lambda v: v != 0)))
    beta = draw(st.one_of(st.sampled_from([0.0, 1.0, -0.5]), st.floats(-4, 4)))
    c0 = draw(values((m, n), dtype, bound=1e3))
    return a, b, c0, ta, tb, alpha, beta


@fuzz_settings(120)
@given(case=gemm_cases())
def test_gemm_matches_oracle(case):
    """C = alpha op(A) op(B) + beta C within test_gemm's bound on every ISA; beta == 0
    never reads C (it starts as NaN); avx2 and avx512 agree bit for bit."""
    a, b, c0, ta, tb, alpha, beta = case

    def run():
        c = c0.copy() if beta != 0 else np.full_like(c0, np.nan)
        _core.gemm(a, b, c, ta, tb, alpha, beta)
        return c

    results = every_isa(run)
    for isa, got in results.items():
        assert_gemm_close(got, a, b, c0, ta, tb, alpha, beta, f"{isa} {a.dtype} {a.shape} {b.shape}")
    if "avx2" in results and "avx512" in results:
        oracle.assert_same_bits({"avx2": results["avx2"], "avx512": results["avx512"]})
    FUZZ_EXAMPLES["gemm"] += 1


@st.composite
def epilogue_cases(draw):
    dtype = draw(DTYPES)
    m, n, k = draw(sizes(high=100)), draw(sizes(high=100)), draw(sizes(high=200))
    ta, tb = draw(st.booleans()), draw(st.booleans())
    a = draw(values((k, m) if ta else (m, k), dtype, bound=10.0))
    b = draw(values((n, k) if tb else (k, n), dtype, bound=10.0))
    bias = draw(values((n,), dtype, bound=10.0))
    act = draw(st.sampled_from(ACTIVATIONS))
    param = draw(st.sampled_from([oracle.PARAM[act], 0.2, 0.5]))
    return a, b, bias, ta, tb, act, param


@fuzz_settings(80)
@given(case=epilogue_cases())
def test_gemm_bias_act_equals_gemm_then_bias_act(case):
    """The fused epilogue's contract: z and out equal gemm then bias_act_forward bit for
    bit (whose accuracy the other properties check), on every ISA."""
    a, b, bias, ta, tb, act, param = case
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]

    def fused():
        z, out = np.full((m, n), np.nan, a.dtype), np.full((m, n), np.nan, a.dtype)
        _core.gemm_bias_act(a, b, bias, z, out, ta, tb, act, param)
        return z, out

    def unfused():
        z, out = np.full((m, n), np.nan, a.dtype), np.full((m, n), np.nan, a.dtype)
        _core.gemm(a, b, z, ta, tb, 1.0, 0.0)
        _core.bias_act_forward(z, bias, out, act, param)
        return z, out

    for isa, got in every_isa(fused).items():
        assert fastmlp.set_isa(isa) == isa
        oracle.assert_same_bits({f"fused {isa}": got, "gemm + bias_act": unfused()})
    FUZZ_EXAMPLES["gemm_bias_act"] += 1


@st.composite
def backward_epilogue_cases(draw):
    a, b, _, ta, tb, act, param = draw(epilogue_cases())
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    return a, b, draw(values((m, n), a.dtype, bound=40.0)), ta, tb, act, param


@fuzz_settings(80)
@given(case=backward_epilogue_cases())
def test_gemm_act_backward_equals_gemm_then_act_backward(case):
    """The backward epilogue's contract: dz (and dx, when kept) equal gemm then
    act_backward bit for bit, on every ISA; dz over dx when dz is dx."""
    a, b, z, ta, tb, act, param = case
    act_z = np.empty_like(z)
    _core.bias_act_forward(z.copy(), np.zeros(z.shape[1], z.dtype), act_z, act, param)

    def fused():
        dx, dz = np.full_like(z, np.nan), np.full_like(z, np.nan)
        _core.gemm_act_backward(a, b, z, act_z, dx, dz, ta, tb, act, param)
        over = np.full_like(z, np.nan)
        _core.gemm_act_backward(a, b, z, act_z, over, over, ta, tb, act, param)
        return dx, dz, over

    def unfused():
        dx, dz = np.full_like(z, np.nan), np.full_like(z, np.nan)
        _core.gemm(a, b, dx, ta, tb, 1.0, 0.0)
        _core.act_backward(z, act_z, dx, dz, act, param)
        return dx, dz, dz

    for isa, got in every_isa(fused).items():
        assert fastmlp.set_isa(isa) == isa
        oracle.assert_same_bits({f"fused {isa}": got, "gemm + act_backward": unfused()})
    FUZZ_EXAMPLES["gemm_act_backward"] += 1


# =========================================================================================
# Elementwise: bias + activation, its derivative, column sums, mul
# =========================================================================================

@st.composite
def activation_cases(draw):
    dtype = draw(DTYPES)
    shape = (draw(sizes(high=40)), draw(sizes(high=70)))
    z = draw(values(shape, dtype, bound=40.0))
    bias = draw(values((shape[1],), dtype, bound=5.0))
    da = draw(values(shape, dtype, bound=10.0))
    return draw(st.sampled_from(ACTIVATIONS)), z, bias, da


@fuzz_settings(120)
@given(case=activation_cases())
def test_bias_act_forward_matches_oracle(case):
    """z += bias is the IEEE sum; a = act(z) within FORWARD_ULPS of the exact act."""
    act, z0, bias, _ = case
    dtype = z0.dtype

    def run():
        z, a = z0.copy(), np.full_like(z0, np.nan)
        _core.bias_act_forward(z, bias, a, act, oracle.PARAM[act])
        return z, a

    results = every_isa(run)
    oracle.assert_same_bits(results)
    z, a = results[ISAS[0]]
    assert np.array_equal(z, z0 + bias)
    err = oracle.ulp_error(a, oracle.act(act, z.astype(np.longdouble), oracle.PARAM[act]), dtype)
    over = err > forward_bound(act, z, dtype)
    assert not over.any(), (act, z[over], a[over], err[over])
    FUZZ_EXAMPLES["bias_act_forward"] += 1


@fuzz_settings(120)
@given(case=activation_cases())
def test_act_backward_matches_oracle(case):
    """dz = da * act'(z) (sigmoid and tanh from the given a) within BACKWARD_EPS."""
    act, z, _, da = case
    dtype, p = z.dtype, oracle.PARAM[act]
    a = oracle.act(act, z, p).astype(dtype)

    def run():
        dz = np.full_like(z, np.nan)
        _core.act_backward(z, a, da, dz, act, p)
        return dz

    results = every_isa(run)
    oracle.assert_same_bits(results)
    ks, scale_of = BACKWARD_EPS[act]
    z64, a64, da64 = (v.astype(np.longdouble) for v in (z, a, da))
    grad = oracle.act_grad_given(act, z64, a64, p)
    oracle.assert_within_eps(results[ISAS[0]], da64 * grad, scale_of(z64, a64, da64, p, dtype), dtype,
                             ks[dtype.name], f"{act}' {z.shape}")
    FUZZ_EXAMPLES["act_backward"] += 1


@st.composite
def matrices(draw, high_rows=300, high_cols=80, bound=1e3):
    dtype = draw(DTYPES)
    return draw(values((draw(sizes(high=high_rows)), draw(sizes(high=high_cols))), dtype, bound=bound))


@fuzz_settings(80)
@given(x=matrices())
def test_col_sum_matches_oracle(x):
    """Rows added in ascending order in the dtype (bit for bit), hence within the
    recursive-summation bound of the float64 sum (test_elementwise.test_col_sum)."""
    def run():
        out = np.full(x.shape[1], np.nan, x.dtype)
        _core.col_sum(x, out)
        return out

    results = every_isa(run)
    oracle.assert_same_bits(results)
    acc = np.zeros(x.shape[1], x.dtype)
    for row in x:
        acc += row
    oracle.assert_same_bits({"col_sum": results[ISAS[0]], "ascending": acc})
    k = max(x.shape[0] - 1, 0) / 2 * 1.01
    oracle.assert_within_eps(results[ISAS[0]], x.astype(np.float64).sum(axis=0),
                             np.abs(x.astype(np.float64)).sum(axis=0), x.dtype, k, "col_sum")
    FUZZ_EXAMPLES["col_sum"] += 1


@st.composite
def pairs(draw):
    dtype = draw(DTYPES)
    shape = tuple(draw(st.lists(sizes(high=40), min_size=1, max_size=3)))
    return draw(values(shape, dtype, bound=1e3)), draw(values(shape, dtype, bound=1e3))


@fuzz_settings(60)
@given(case=pairs())
def test_mul_is_the_ieee_product(case):
    a, b = case

    def run():
        out = np.full_like(a, np.nan)
        _core.mul(a, b, out)
        return out

    results = every_isa(run)
    oracle.assert_same_bits({**results, "a * b": a * b})
    FUZZ_EXAMPLES["mul"] += 1


# =========================================================================================
# Losses and output functions
# =========================================================================================

@st.composite
def loss_cases(draw):
    dtype = draw(DTYPES)
    name = draw(st.sampled_from(LOSSES))
    shape = (draw(sizes(high=130)), draw(sizes(low=1, high=40)))
    z = draw(values(shape, dtype, bound=draw(st.sampled_from([5.0, 30.0, 80.0]))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, k = shape
    if name == "softmax_cross_entropy":
        soft = draw(st.booleans())
        y = rng.dirichlet(np.ones(k), n) if soft else np.eye(k)[rng.integers(0, k, n)]
    elif name == "binary_cross_entropy":
        y = rng.random(shape) if draw(st.booleans()) else (rng.random(shape) < 0.5).astype(float)
    else:
        y = rng.standard_normal(shape) * 3
    scale = draw(st.sampled_from([1.0, 1.0 / max(n, 1), 0.37]))
    return name, z, y.astype(dtype), scale


@fuzz_settings(120)
@given(case=loss_cases())
def test_loss_matches_oracle(case):
    """Value and gradient within test_losses.TOL (eps times the oracle's error scale);
    the same bits on every ISA."""
    name, z, y, scale = case
    dtype = z.dtype

    def run():
        grad = np.full_like(z, np.nan)
        value = _core.loss(name, z, y, grad, scale)
        return np.array(value), grad

    results = every_isa(run)
    oracle.assert_same_bits(results)
    value, grad = results[ISAS[0]]
    ref, ref_grad, value_scale, grad_scale = oracle.loss(name, z, y, scale)
    tol = LOSS_TOL[name]
    oracle.assert_within_eps(value, ref, value_scale.sum(), dtype, tol["value"][dtype.name], f"{name} value")
    oracle.assert_within_eps(grad, ref_grad, grad_scale, dtype, tol["grad"][dtype.name], f"{name} grad")
    FUZZ_EXAMPLES["loss"] += 1


@fuzz_settings(80)
@given(case=loss_cases())
def test_output_matches_oracle(case):
    """softmax within SOFTMAX_OUT_EPS and rows summing to 1 within ROW_SUM_EPS; sigmoid
    within the math table's ulps; identity for mse."""
    name, z, _, _ = case
    dtype = z.dtype

    def run():
        out = np.full_like(z, np.nan)
        _core.output(name, z, out)
        return out

    results = every_isa(run)
    oracle.assert_same_bits(results)
    out = results[ISAS[0]]
    if name == "softmax_cross_entropy":
        oracle.assert_within_eps(out, oracle.softmax(z), oracle.softmax_error_scale(z), dtype,
                                 SOFTMAX_OUT_EPS[dtype.name], "softmax")
        sums = np.array([math.fsum(row) for row in out.astype(np.float64)])
        assert np.abs(sums - 1).max(initial=0) <= ROW_SUM_EPS[dtype.name] * np.finfo(dtype).eps
    elif name == "binary_cross_entropy":
        err = oracle.ulp_error(out, oracle.math_ref("sigmoid", z), dtype)
        assert err.max(initial=0) <= ULP_TABLE["sigmoid"][dtype.name][1]
    else:
        oracle.assert_same_bits({"identity": out, "z": z})
    FUZZ_EXAMPLES["output"] += 1


@st.composite
def weighted_loss_cases(draw):
    name, z, y, scale = draw(loss_cases())
    n = z.shape[0]
    w = draw(values((n,), z.dtype, bound=3.0, positive=True))
    return name, z, y, scale, w


@fuzz_settings(60)
@given(case=weighted_loss_cases())
def test_weighted_loss_matches_numpy_backend(case):
    """With sample weights: the native value and gradient within the weighted_loss
    tolerance of the NumPy backend's (tests/tolerances.py), on every ISA."""
    name, z, y, scale, w = case
    if not np.abs(z).max(initial=0) or not z.size:
        return

    def run(fn):
        grad = np.full_like(z, np.nan)
        return np.array(fn(name, z, y, grad, scale, weights=w)), grad

    want = run(NP.loss)
    for isa, got in every_isa(lambda: run(_core.loss)).items():
        for g, r in zip(got, want):
            if np.any(r != 0):
                assert_close(g, r, "weighted_loss", z.dtype)
            else:
                assert np.all(g == 0), isa
    FUZZ_EXAMPLES["weighted loss"] += 1


# =========================================================================================
# Optimizers, sums of squares, weight penalties
# =========================================================================================

@st.composite
def optimizer_cases(draw):
    dtype = draw(DTYPES)
    name = draw(st.sampled_from(sorted(HYPER)))
    n = draw(sizes(high=300))
    p = draw(values((n,), dtype, bound=100.0))
    grads = [draw(values((n,), dtype, bound=100.0)) for _ in range(draw(st.integers(1, 3)))]
    hyper = dict(HYPER[name])
    if "b1" in hyper:
        hyper["b1"] = draw(st.floats(0, 0.99))
    if "b2" in hyper:
        hyper["b2"] = draw(st.floats(0.5, 0.9999))
    if "eps" in hyper:
        hyper["eps"] = draw(st.floats(1e-8, 1e-4))
    if "weight_decay" in hyper:
        hyper["weight_decay"] = draw(st.floats(0, 0.1))
    lr = draw(st.floats(1e-5, 1.0))
    grad_scale = draw(st.sampled_from([1.0, 0.3, 2.0]))
    step0 = draw(st.integers(1, 10_000))
    return name, p, grads, hyper, lr, grad_scale, step0


def _trajectory(update, name, p0, grads, hyper, lr, grad_scale, step0):
    uses_m, uses_v = USES[name]
    p = p0.copy()
    m = np.zeros_like(p) if uses_m else None
    v = np.zeros_like(p) if uses_v else None
    for t, g in enumerate(grads, step0):
        update(name, p, g, m, v, lr=lr, grad_scale=grad_scale, step=t, **hyper)
    return tuple(x for x in (p, m, v) if x is not None)


@fuzz_settings(80)
@given(case=optimizer_cases())
def test_optimizer_update_equals_numpy_backend(case):
    """Every optimizer, drawn hyperparameters and start step: the NumPy backend mirrors
    the kernel's operations, so a short trajectory agrees bit for bit (the kernel tests'
    claim, test_optimizers.test_bit_for_bit_on_parallel_sizes), on every ISA."""
    native = lambda *a, **k: _core.optimizer_update(*a[:5], k.pop("lr"), k.pop("grad_scale"),
                                                   k.get("b1", 0.0), k.get("b2", 0.0),
                                                   k.get("eps", 0.0), k.get("weight_decay", 0.0),
                                                   k["step"])
    want = _trajectory(NP.optimizer_update, *case)
    results = every_isa(lambda: _trajectory(native, *case))
    oracle.assert_same_bits({**results, "numpy": want})
    FUZZ_EXAMPLES["optimizer_update"] += 1


@fuzz_settings(60)
@given(x=st.builds(lambda d, n, s: np.random.default_rng(s).standard_normal(n).astype(d) * d.type(30),
                   DTYPES, sizes(high=40_000), st.integers(0, 2**32 - 1)))
def test_sum_squares_equals_numpy_backend(x):
    """The fixed Sum16 order: equal to the NumPy backend's value on every ISA."""
    results = every_isa(lambda: np.array(_core.sum_squares(x)))
    oracle.assert_same_bits({**results, "numpy": np.array(NP.sum_squares(x))})
    FUZZ_EXAMPLES["sum_squares"] += 1


@st.composite
def regularize_cases(draw):
    dtype = draw(DTYPES)
    n = draw(st.one_of(sizes(high=300), st.integers(16_000, 40_000)))
    w = draw(values((n,), dtype, bound=10.0))
    dw = draw(values((n,), dtype, bound=10.0))
    l1 = draw(st.one_of(st.just(0.0), st.floats(1e-8, 1)))
    l2 = draw(st.one_of(st.just(0.0), st.floats(1e-8, 1)))
    return w, dw, l1, l2


@fuzz_settings(60)
@given(case=regularize_cases())
def test_regularize_matches_numpy_backend(case):
    """Penalty and gradient bit for bit with the NumPy backend; the penalty within the
    regularize_penalty tolerance of the long-double l1 sum|w| + l2/2 sum w^2."""
    w, dw0, l1, l2 = case

    def run(fn):
        dw = dw0.copy()
        return np.array(fn(w, dw, l1, l2)), dw

    results = every_isa(lambda: run(_core.regularize))
    penalty, _ = results[ISAS[0]]
    oracle.assert_same_bits({**results, "numpy": run(NP.regularize)})
    ld = w.astype(np.longdouble)
    exact = float(l1 * np.abs(ld).sum() + np.longdouble(l2) / 2 * (ld ** 2).sum())
    tiny = float(np.finfo(w.dtype).tiny)
    if exact >= tiny:
        assert_close(penalty, exact, "regularize_penalty", w.dtype)
    else:   # below the smallest normal the dtype's squares underflow: a relative bound
        # cannot hold (w = 1e-45 in float32 gives 0), each term is off by less than tiny
        assert abs(float(penalty) - exact) <= len(w) * tiny
    FUZZ_EXAMPLES["regularize"] += 1


# =========================================================================================
# Transcendentals
# =========================================================================================

def _inward(bound: float, dtype: np.dtype, toward: float) -> float:
    """``bound`` as a value of ``dtype``, rounded toward ``toward`` if it is not one."""
    value = dtype.type(bound)
    if float(value) != bound and (float(value) < bound) == (toward > bound):
        value = np.nextafter(value, dtype.type(toward))
    return float(value)


def _domain_floats(kind: str, lo, hi, dtype: np.dtype):
    fi = np.finfo(dtype)
    lo = float(fi.smallest_subnormal) if lo is None else _inward(lo, dtype, np.inf)
    hi = float(fi.max) if hi is None else _inward(hi, dtype, -np.inf)
    width = 8 * dtype.itemsize
    positive = st.floats(lo, hi, width=width)
    if kind == "lin":
        return positive
    if kind == "log+":
        return positive
    return st.one_of(positive, positive.map(lambda v: -v))


@st.composite
def math_cases(draw):
    dtype = draw(DTYPES)
    fn = draw(st.sampled_from(oracle.MATH_FUNCTIONS))
    kind, lo, hi = draw(st.sampled_from(MATH_RANGES[fn][dtype.name]))
    x = draw(hnp.arrays(dtype, draw(sizes(low=1, high=40)), elements=_domain_floats(kind, lo, hi, dtype)))
    return fn, x


@fuzz_settings(120)
@given(case=math_cases())
def test_math_within_ulp_table(case):
    """Every function on inputs drawn from the ranges where test_math states its bound
    (subnormals and the overflow edges included): within ULP_TABLE, every ISA alike."""
    fn, x = case
    if x.dtype == np.float64 and not oracle.LONGDOUBLE_IS_WIDE:
        pytest.skip("np.longdouble is float64 here: no reference for float64 ulps")

    def run():
        out = np.full_like(x, np.nan)
        _core._testing.math(fn, x, out)
        return out

    results = every_isa(run)
    oracle.assert_same_bits(results)
    ref = oracle.math_ref(fn, x)
    ref = ref.astype(np.float64) if x.dtype == np.float32 else ref
    err = oracle.ulp_error(results[ISAS[0]], ref, x.dtype)
    j = int(np.argmax(err))
    assert err[j] <= ULP_TABLE[fn][x.dtype.name][1], (fn, x[j], results[ISAS[0]][j], ref[j], float(err[j]))
    FUZZ_EXAMPLES["math"] += 1


# act(-inf), act(+inf): the limits (docs/conventions.md parameters)
LIMITS = {name: case.limits for name, case in ACTIVATION_CASES.items()}


@st.composite
def nan_cases(draw):
    dtype = draw(DTYPES)
    rows, cols = draw(sizes(low=1, high=40)), draw(sizes(low=1, high=70))
    x = draw(values((rows, cols), dtype, bound=20.0))
    position = (draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1)))
    return x, position, draw(st.sampled_from([np.nan, np.inf, -np.inf]))


@fuzz_settings(80)
@given(case=nan_cases())
def test_special_value_stays_in_its_place(case):
    """NaN or +-inf at a drawn element (any vector lane or tail): bias_act_forward and
    every math function give the oracle's special value there (NaN stays NaN) and the
    clean result everywhere else; col_sum spoils only that column; gemm only that row."""
    clean, (r, c), special = case
    x = clean.copy()
    x[r, c] = special
    others = np.ones(x.shape, bool)
    others[r, c] = False
    for act in ACTIVATIONS:
        outs = []
        for z0 in (clean, x):
            a = np.empty_like(z0)
            _core.bias_act_forward(z0.copy(), np.zeros(z0.shape[1], z0.dtype), a, act, oracle.PARAM[act])
            outs.append(a)
        want = np.nan if np.isnan(special) else LIMITS[act][special > 0]
        oracle.assert_same_bits({act: outs[1][r, c], "limit": x.dtype.type(want)})
        oracle.assert_same_bits({"clean": outs[0][others], act: outs[1][others]})
    for fn in oracle.MATH_FUNCTIONS:
        outs = [np.empty(x.size, x.dtype), np.empty(x.size, x.dtype)]
        _core._testing.math(fn, clean.ravel().copy(), outs[0])
        _core._testing.math(fn, x.ravel().copy(), outs[1])
        assert np.isnan(outs[1][r * x.shape[1] + c]) == np.isnan(oracle.math_ref(fn, np.array([special]))[0])
        oracle.assert_same_bits({"clean": outs[0][others.ravel()], fn: outs[1][others.ravel()]})
    sums = np.empty(x.shape[1], x.dtype)
    _core.col_sum(x, sums)
    assert not np.isfinite(sums[c]) and np.isfinite(np.delete(sums, c)).all()
    w = np.ones((3, x.shape[1]), x.dtype)
    product = np.zeros((x.shape[0], 3), x.dtype)
    _core.gemm(x, w, product, False, True, 1.0, 0.0)
    assert not np.isfinite(product[r]).any() and np.isfinite(np.delete(product, r, axis=0)).all()
    FUZZ_EXAMPLES["special values"] += 1


# =========================================================================================
# Layers: dropout, maxout, batch normalization
# =========================================================================================

UINT64 = st.one_of(st.sampled_from([0, 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))


@st.composite
def dropout_cases(draw):
    x = draw(matrices(high_rows=100, high_cols=70, bound=10.0))
    rate = draw(st.one_of(st.sampled_from([0.0, 2.0**-24, 0.5, 1 - 2.0**-24]),
                          st.floats(0, 1, exclude_max=True)))
    return x, rate, draw(UINT64), draw(UINT64), draw(UINT64)


@fuzz_settings(60)
@given(case=dropout_cases())
def test_dropout_equals_numpy_backend(case):
    """The counter-based mask and the scaled output bit for bit with the NumPy backend."""
    x, rate, seed, layer, step = case

    def run(fn):
        y, mask = np.full_like(x, 7.0), np.full_like(x, 7.0)
        fn(x, y, mask, rate, seed, layer, step)
        return y, mask

    oracle.assert_same_bits({**every_isa(lambda: run(_core.dropout_forward)),
                             "numpy": run(NP.dropout_forward)})
    FUZZ_EXAMPLES["dropout_forward"] += 1


@st.composite
def maxout_cases(draw):
    dtype = draw(DTYPES)
    rows, units, pieces = draw(sizes(high=60)), draw(sizes(low=1, high=20)), draw(st.integers(1, 6))
    z = draw(values((rows, units * pieces), dtype, bound=3.0))
    if draw(st.booleans()):
        z = np.round(z)          # small integers: ties between pieces
    da = draw(values((rows, units), dtype, bound=10.0))
    return z, units, da


@fuzz_settings(60)
@given(case=maxout_cases())
def test_maxout_equals_numpy_backend(case):
    """Forward (max, lowest winning piece) and backward bit for bit with the NumPy backend."""
    z, units, da = case

    def run(forward, backward):
        a = np.full((z.shape[0], units), 7.0, z.dtype)
        argmax = np.full((z.shape[0], units), -7, np.int32)
        forward(z, a, argmax)
        dz = np.full_like(z, 7.0)
        backward(da, argmax, dz)
        return a, argmax, dz

    oracle.assert_same_bits({**every_isa(lambda: run(_core.maxout_forward, _core.maxout_backward)),
                             "numpy": run(NP.maxout_forward, NP.maxout_backward)})
    FUZZ_EXAMPLES["maxout"] += 1


@st.composite
def batchnorm_cases(draw):
    dtype = draw(DTYPES)
    m, n = draw(sizes(low=1, high=300)), draw(sizes(high=60))
    offset = draw(values((n,), dtype, bound=50.0))
    x = draw(values((m, n), dtype, bound=30.0)) + offset
    gamma = draw(values((n,), dtype, bound=2.0))
    beta = draw(values((n,), dtype, bound=2.0))
    dy = draw(values((m, n), dtype, bound=10.0))
    var = draw(values((n,), dtype, bound=5.0, positive=True))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return x, gamma, beta, dy, var, eps


@fuzz_settings(60)
@given(case=batchnorm_cases())
def test_batchnorm_equals_numpy_backend(case):
    """Training forward, backward and inference bit for bit with the NumPy backend (it
    mirrors the kernels' summation orders)."""
    x, gamma, beta, dy, var, eps = case
    m, n = x.shape

    def run(train, backward, infer):
        y, xhat = np.full_like(x, 7.0), np.full_like(x, 7.0)
        mean, inv_std = np.full(n, 7.0, x.dtype), np.full(n, 7.0, x.dtype)
        train(x, gamma, beta, y, xhat, mean, inv_std, eps)
        dx, dgamma, dbeta = np.full_like(x, 7.0), np.full(n, 7.0, x.dtype), np.full(n, 7.0, x.dtype)
        backward(dy, xhat, gamma, inv_std, dx, dgamma, dbeta)
        y_infer = np.full_like(x, 7.0)
        infer(x, gamma, beta, mean, var, eps, y_infer)
        return y, xhat, mean, inv_std, dx, dgamma, dbeta, y_infer

    native = (_core.batchnorm_forward_train, _core.batchnorm_backward, _core.batchnorm_forward_infer)
    numpy = (NP.batchnorm_forward_train, NP.batchnorm_backward, NP.batchnorm_forward_infer)
    oracle.assert_same_bits({**every_isa(lambda: run(*native)), "numpy": run(*numpy)})
    FUZZ_EXAMPLES["batchnorm"] += 1


# =========================================================================================
# The fused predictor
# =========================================================================================

@st.composite
def predictor_cases(draw):
    dtype = draw(DTYPES)
    loss = draw(st.sampled_from(LOSSES))
    features = draw(sizes(low=1, high=40))
    hidden = draw(st.lists(st.tuples(sizes(low=1, high=48), st.sampled_from(ACTIVATIONS)), max_size=2))
    outputs = draw(st.integers(2 if loss == "softmax_cross_entropy" else 1, 6))
    layers = [Dense(units, act) for units, act in hidden] + [Dense(outputs)]
    model = Sequential(layers, input_dim=features, loss=loss, dtype=dtype.name,
                       seed=draw(st.integers(0, 2**32 - 1)))
    X = draw(values((draw(sizes(high=150)), features), dtype, bound=5.0))
    chunk = draw(st.one_of(st.none(), st.integers(1, 64)))
    return model, X, chunk


@fuzz_settings(60)
@given(case=predictor_cases())
def test_predictor_equals_per_op_forward(case):
    """The fused predictor's logits equal the per-op native forward bit for bit, its
    probabilities the output kernel's, its labels predict's rule, in any chunking and on
    every ISA; a single linear layer's logits are within GEMM's bound of the oracle."""
    model, X, chunk = case
    step = 256 if chunk is None else chunk

    def run():
        predictor = model._predictor()
        assert isinstance(predictor, native.FusedPredictor)
        logits = predictor.run(X, 0, step)
        per_op = np.concatenate([z.copy() for _, z in model._logits(X, chunk)] or
                                [np.empty((0, model.n_outputs), X.dtype)])
        oracle.assert_same_bits({"predictor": logits, "per-op": per_op})
        labels = predictor.run(X, 2, step)
        assert np.array_equal(labels, model._loss.predict(logits, model.backend))
        if model.loss != "mse":
            proba = np.full_like(logits, np.nan)
            _core.output(model.loss, logits, proba)
            oracle.assert_same_bits({"predictor": predictor.run(X, 1, step), "output": proba})
        return logits

    results = every_isa(run)
    if len(model.layers) == 1 and X.size:
        dense = model.layers[0]
        got = results[ISAS[0]] - dense.b          # the bias add is exact to within one rounding
        assert_gemm_close(got, X, dense.W, np.zeros_like(got), False, True, 1.0, 0.0, "predictor")
    FUZZ_EXAMPLES["Predictor"] += 1


# =========================================================================================
# Threads: 1 and 2 give the same bits (sizes drawn across the parallel thresholds)
# =========================================================================================

THREADED = {
    "gemm": lambda rng, d, n: _run_gemm(rng, d, n),
    "loss": lambda rng, d, n: _run_loss(rng, d, n),
    "col_sum": lambda rng, d, n: _run_col_sum(rng, d, n),
    "regularize": lambda rng, d, n: _run_regularize(rng, d, n),
    "batchnorm_forward_train": lambda rng, d, n: _run_batchnorm(rng, d, n),
    "sum_squares": lambda rng, d, n: np.array(_core.sum_squares(rng.standard_normal(n * 300).astype(d))),
}


def _run_gemm(rng, dtype, n):
    a = rng.standard_normal((n, 300)).astype(dtype)
    b = rng.standard_normal((257, 300)).astype(dtype)
    c = np.zeros((n, 257), dtype)
    _core.gemm(a, b, c, False, True, 1.0, 0.0)
    return c


def _run_loss(rng, dtype, n):
    z = rng.standard_normal((n * 10, 10)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, n * 10)]
    grad = np.empty_like(z)
    return np.array(_core.loss("softmax_cross_entropy", z, y, grad, 1.0 / len(z))), grad


def _run_col_sum(rng, dtype, n):
    x = rng.standard_normal((n * 10, 300)).astype(dtype)
    out = np.empty(300, dtype)
    _core.col_sum(x, out)
    return out


def _run_regularize(rng, dtype, n):
    w = rng.standard_normal(n * 300).astype(dtype)
    dw = np.ones_like(w)
    return np.array(_core.regularize(w, dw, 0.01, 0.003)), dw


def _run_batchnorm(rng, dtype, n):
    x = rng.standard_normal((n * 2, 300)).astype(dtype)
    ones = np.ones(300, dtype)
    y, xhat, mean, inv_std = np.empty_like(x), np.empty_like(x), np.empty(300, dtype), np.empty(300, dtype)
    _core.batchnorm_forward_train(x, ones, ones * 0, y, xhat, mean, inv_std, 1e-5)
    return y, xhat, mean, inv_std


@fuzz_settings(40)
@given(kernel=st.sampled_from(sorted(THREADED)), dtype=DTYPES, n=st.integers(1, 600),
       seed=st.integers(0, 2**32 - 1))
def test_one_and_two_threads_give_the_same_bits(kernel, dtype, n, seed):
    results = {}
    for count in (1, 2):
        with fastmlp.threads(count):
            results[count] = THREADED[kernel](np.random.default_rng(seed), dtype, n)
    oracle.assert_same_bits(results)
    FUZZ_EXAMPLES["threads"] += 1


# =========================================================================================
# Layouts and dtypes: refused, never converted, nothing written
# =========================================================================================

def _f(*shape):
    return np.ones(shape, np.float32)


# name: (function, valid arguments by name in positional order, trailing arguments)
BINDINGS = {
    "gemm": (_core.gemm, lambda: {"a": _f(4, 3), "b": _f(3, 5), "c": _f(4, 5)}, ()),
    "gemm_bias_act": (_core.gemm_bias_act, lambda: {"a": _f(4, 3), "b": _f(3, 5), "bias": _f(5),
                                                    "z": _f(4, 5), "out": _f(4, 5)}, ()),
    "gemm_act_backward": (_core.gemm_act_backward,
                          lambda: {"a": _f(4, 3), "b": _f(3, 5), "z": _f(4, 5), "act_z": _f(4, 5),
                                   "dx": _f(4, 5), "dz": _f(4, 5)}, (False, False, "relu", 0.0)),
    "bias_act_forward": (_core.bias_act_forward, lambda: {"z": _f(4, 5), "bias": _f(5), "a": _f(4, 5)},
                         ("relu", 0.0)),
    "act_backward": (_core.act_backward, lambda: {"z": _f(4, 5), "a": _f(4, 5), "da": _f(4, 5),
                                                  "dz": _f(4, 5)}, ("tanh", 0.0)),
    "col_sum": (_core.col_sum, lambda: {"x": _f(4, 5), "out": _f(5)}, ()),
    "loss": (lambda logits, y, grad: _core.loss("mse", logits, y, grad, 1.0),
             lambda: {"logits": _f(4, 5), "y": _f(4, 5), "grad": _f(4, 5)}, ()),
    "output": (lambda logits, out: _core.output("softmax_cross_entropy", logits, out),
               lambda: {"logits": _f(4, 5), "out": _f(4, 5)}, ()),
    "optimizer_update": (lambda param, grad, m, v: _core.optimizer_update("adam", param, grad, m, v, 0.1),
                         lambda: {"param": _f(6), "grad": _f(6), "m": _f(6), "v": _f(6)}, ()),
    "sum_squares": (_core.sum_squares, lambda: {"x": _f(6)}, ()),
    "math": (lambda x, out: _core._testing.math("exp", x, out), lambda: {"x": _f(6), "out": _f(6)}, ()),
    "dropout_forward": (_core.dropout_forward, lambda: {"x": _f(4, 5), "y": _f(4, 5), "mask": _f(4, 5)},
                        (0.5, 1, 2, 3)),
    "mul": (_core.mul, lambda: {"a": _f(4, 5), "b": _f(4, 5), "out": _f(4, 5)}, ()),
    "maxout_forward": (_core.maxout_forward, lambda: {"z": _f(4, 6), "a": _f(4, 3),
                                                      "argmax": np.zeros((4, 3), np.int32)}, ()),
    "maxout_backward": (_core.maxout_backward, lambda: {"da": _f(4, 3), "argmax": np.zeros((4, 3), np.int32),
                                                        "dz": _f(4, 6)}, ()),
    "batchnorm_forward_train": (_core.batchnorm_forward_train,
                                lambda: {"x": _f(4, 5), "gamma": _f(5), "beta": _f(5), "y": _f(4, 5),
                                         "xhat": _f(4, 5), "mean": _f(5), "inv_std": _f(5)}, (1e-5,)),
    "batchnorm_forward_infer": (lambda x, gamma, beta, mean, var, y:
                                _core.batchnorm_forward_infer(x, gamma, beta, mean, var, 1e-5, y),
                                lambda: {"x": _f(4, 5), "gamma": _f(5), "beta": _f(5), "mean": _f(5),
                                         "var": _f(5), "y": _f(4, 5)}, ()),
    "batchnorm_backward": (_core.batchnorm_backward,
                           lambda: {"dy": _f(4, 5), "xhat": _f(4, 5), "gamma": _f(5), "inv_std": _f(5),
                                    "dx": _f(4, 5), "dgamma": _f(5), "dbeta": _f(5)}, ()),
    "regularize": (_core.regularize, lambda: {"w": _f(6), "dw": _f(6)}, (0.1, 0.2)),
    "Predictor.run": (lambda X: _PREDICTOR.run(X, 0, 8), lambda: {"X": _f(4, 3)}, ()),
}
_PREDICTOR = Sequential([Dense(5)], input_dim=3, loss="mse", seed=0)._predictor()

WRONG_DTYPES = [np.float16, np.float64, np.int32, np.int64, np.uint8, np.complex64, np.bool_]
LAYOUTS = ["strided", "fortran", "reversed", "list"]


def _relayout(good: np.ndarray, layout: str):
    """``good``'s values in another layout: a strided view, Fortran order (2-D), a
    negative stride, or a nested list."""
    if layout == "list":
        return good.tolist()
    if layout == "strided":
        return np.repeat(good, 2, axis=-1)[..., ::2]
    if layout == "reversed":
        return good[..., ::-1].copy()[..., ::-1]
    return np.asfortranarray(good) if good.ndim == 2 and min(good.shape) > 1 else None


@st.composite
def bad_layout_calls(draw):
    """(binding, arguments, the argument changed, its new value, the exception due): a
    wrong dtype or a list (TypeError), or a non-C-contiguous view (ValueError). A float64
    array where a one-array binding takes float32 or float64 is valid (None: accepted)."""
    name = draw(st.sampled_from(sorted(BINDINGS)))
    _, make, _ = BINDINGS[name]
    args = make()
    arg = draw(st.sampled_from(sorted(args)))
    good = args[arg]
    if draw(st.booleans()):
        wrong = np.dtype(draw(st.sampled_from([t for t in WRONG_DTYPES if np.dtype(t) != good.dtype])))
        valid = len(args) == 1 and name != "Predictor.run" and wrong == np.float64
        return name, args, arg, good.astype(wrong), None if valid else TypeError
    layout = draw(st.sampled_from(LAYOUTS))
    bad = _relayout(good, layout)
    if bad is None:
        return name, args, arg, good.T, None     # 1-D or a single row: .T is C-contiguous
    return name, args, arg, bad, TypeError if layout == "list" else ValueError


def _names_the_argument(message: str, name: str, args: dict, arg: str, bad) -> bool:
    """The message names ``arg``; when ``arg`` is the array whose dtype selects the
    kernel's (the first) and ``bad`` is float64 (the valid arguments are float32), the
    arrays that no longer match are the ones named."""
    dispatch = next(iter(args))
    if arg == dispatch and len(args) > 1 and getattr(bad, "dtype", None) == np.float64:
        return any(f"{other} has dtype" in message for other in args if other != arg)
    return f"{arg} " in message


@fuzz_settings(400)
@given(call=bad_layout_calls())
def test_wrong_dtype_or_layout_is_refused_and_nothing_is_written(call):
    """A wrong dtype (or a list) is a TypeError and a non-C-contiguous array a ValueError
    naming the argument; in both cases no array was converted, copied or written."""
    name, args, arg, bad, expected = call
    fn, _, extra = BINDINGS[name]
    args[arg] = bad
    before = {k: np.array(v, copy=True) for k, v in args.items()}
    if expected is None:
        fn(*args.values(), *extra)
        return
    with pytest.raises(expected) as info:
        fn(*args.values(), *extra)
    if isinstance(bad, np.ndarray):
        assert _names_the_argument(str(info.value), name, args, arg, bad), (
            f"{name}: the message does not name {arg!r}: {info.value}")
    for k, v in args.items():
        assert np.asarray(v).tobytes() == before[k].tobytes(), f"{name} wrote {k} after refusing the call"
    FUZZ_EXAMPLES["layouts"] += 1
