"""optimizer_update and sum_squares: the native kernels against the NumPy oracle
(fastmlp.backends.numpy, which mirrors the kernel's evaluation order) on every ISA and
both dtypes, plus the bindings' argument checks.

The oracle itself is checked against hand-worked steps, Nesterov's look-ahead form and
convergence in tests/api/test_optimizers.py; its sum of squares against math.fsum here.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastmlp import _core
from fastmlp.backends.native import NativeBackend
from fastmlp.backends.numpy import NumPyBackend
from fastmlp.optim.optimizers import REGISTRY

NATIVE, ORACLE = NativeBackend(), NumPyBackend()

# ---------------------------------------------------------------------------------
# Tolerances (the issue's): ||native - oracle|| / ||oracle|| after each of 100 steps is
# below 1e-12 in float64 and below 1e-5 * sqrt(step) in float32. (Measured: 0, the
# oracle mirrors the kernel bit for bit; test_bit_for_bit_on_parallel_sizes says so.)
# Kept here, like the other kernel tables, so this file runs on its own.
# ---------------------------------------------------------------------------------
STEP_TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
STEPS = 100

# The kernel's hyperparameters per optimizer (b1: mu or beta1, b2: rho or beta2).
HYPER = {
    "sgd": {},
    "momentum": {"b1": 0.9},
    "nesterov": {"b1": 0.9},
    "adagrad": {"eps": 1e-8},
    "rmsprop": {"b2": 0.9, "eps": 1e-8},
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8},
    "adamw": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}
# (uses m, uses v) per kernel, from the registry (checked against the core's:
# test_registries.py).
USES = {row.kernel: (row.uses_m, row.uses_v) for row in REGISTRY}
N = 1037          # not a multiple of any vector width: every path has a tail


def _problem(dtype, n, steps, seed=0):
    """Start parameters, and gradients g_t = 0.7 p_t + noise (so errors feed back), with
    exact zeros and a spread of magnitudes."""
    rng = np.random.default_rng(seed)
    p = (rng.standard_normal(n) * np.exp(rng.uniform(-3, 3, n))).astype(dtype)
    p[::97] = 0
    noise = [(rng.standard_normal(n) * 0.1).astype(dtype) for _ in range(steps)]
    return p, noise


def _run(backend, name, dtype, steps=STEPS, n=N, hyper=None):
    """The trajectory (p, m, v after each step) with a varying rate, a clipping scale on
    every third step and a zero gradient on one step."""
    hyper = HYPER[name] if hyper is None else hyper
    p, noise = _problem(dtype, n, steps)
    uses_m, uses_v = USES[name]
    m = np.zeros(n, dtype) if uses_m else None
    v = np.zeros(n, dtype) if uses_v else None
    out = []
    for t in range(1, steps + 1):
        g = (p * dtype.type(0.7) + noise[t - 1]) if t != 7 else np.zeros(n, dtype)
        backend.optimizer_update(name, p, g, m, v, lr=0.01 / math.sqrt(t),
                                 grad_scale=0.3 if t % 3 == 0 else 1.0, step=t, **hyper)
        out.append(tuple(None if x is None else x.copy() for x in (p, m, v)))
    return out


def _relative(a, b) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    scale = np.linalg.norm(b)
    assert scale > 0
    return float(np.linalg.norm(a - b) / scale)


_oracle_runs: dict = {}


def _oracle(name, dtype):
    key = (name, dtype.name)
    if key not in _oracle_runs:                       # one oracle run serves every ISA
        _oracle_runs[key] = _run(ORACLE, name, dtype)
    return _oracle_runs[key]


@pytest.mark.parametrize("name", list(HYPER))
def test_hundred_steps_match_the_oracle(name, isa, dtype):
    native = _run(NATIVE, name, dtype)
    for step, (got, want) in enumerate(zip(native, _oracle(name, dtype)), 1):
        limit = STEP_TOLERANCE[dtype.name] * (math.sqrt(step) if dtype == np.float32 else 1)
        for label, a, b in zip("pmv", got, want):
            if b is None:
                assert a is None
                continue
            error = _relative(a, b)
            assert error < limit, f"{name} {label} at step {step}: {error:.3g} >= {limit:g}"


def test_a_wrong_oracle_would_fail(dtype):
    """The comparison above is sensitive: a momentum of 0.9 vs 0.9001 over 100 steps
    differs by far more than the tolerance."""
    right = _run(ORACLE, "momentum", dtype, steps=20)[-1][0]
    wrong = _run(NATIVE, "momentum", dtype, steps=20, hyper={"b1": 0.9001})[-1][0]
    assert _relative(wrong, right) > STEP_TOLERANCE[dtype.name] * math.sqrt(20)


@pytest.mark.parametrize("name", list(HYPER))
def test_bit_for_bit_on_parallel_sizes(name, dtype, isa, nthreads):
    """Above the parallel threshold (two threads), a few steps equal the oracle exactly:
    same operations in the same order, the combinations rounded once from double."""
    n = 70_001
    with nthreads(2):
        native = _run(NATIVE, name, dtype, steps=3, n=n)
        assert _core._testing.last_team_size() == 2
    for got, want in zip(native, _run(ORACLE, name, dtype, steps=3, n=n)):
        for a, b in zip(got, want):
            if b is not None:
                np.testing.assert_array_equal(a, b)


def test_hyper_combinations_are_rounded_once_from_double(isa):
    """float32, the defaults b1 = 0.9, b2 = 0.999: T(1 - b) (0.1, 0.001: rounded once
    from double) differs from 1 - T(b) (0.100000024, 0.0009999871); the kernel uses the
    former, like the oracle."""
    b1, b2, f32 = 0.9, 0.999, np.float32
    assert f32(1 - b1) != f32(1) - f32(b1) and f32(1 - b2) != f32(1) - f32(b2)
    p, g = np.ones(8, f32), np.full(8, 3.0, f32)
    m, v = np.zeros(8, f32), np.zeros(8, f32)
    NATIVE.optimizer_update("adam", p, g, m, v, lr=0.1, b1=b1, b2=b2, eps=1e-8)
    np.testing.assert_array_equal(m, f32(1 - b1) * g)
    np.testing.assert_array_equal(v, f32(1 - b2) * (g * g))


# ---------------------------------------------------------------------------------
# Adam's eps before the bias correction (eps_before_correction: scikit-learn's form)
# ---------------------------------------------------------------------------------
ODD_SIZES = [0, 1, 7, 17, 33, 257]


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("n", ODD_SIZES)
def test_eps_before_correction_equals_the_oracle_bit_for_bit(name, n, isa, dtype):
    hyper = {**HYPER[name], "eps_before_correction": True}
    native = _run(NATIVE, name, dtype, steps=20, n=n, hyper=hyper)
    for got, want in zip(native, _run(ORACLE, name, dtype, steps=20, n=n, hyper=hyper)):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_eps_before_correction_bit_for_bit_on_two_threads(dtype, isa, nthreads):
    hyper = {**HYPER["adam"], "eps_before_correction": True}
    with nthreads(2):
        native = _run(NATIVE, "adam", dtype, steps=3, n=70_001, hyper=hyper)
        assert _core._testing.last_team_size() == 2
    for got, want in zip(native, _run(ORACLE, "adam", dtype, steps=3, n=70_001, hyper=hyper)):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


# p = 1, g = 2, lr = 0.1, b1 = 0.5, b2 = 0.75, eps = 0.5, t = 1: m = 0.5 * 2 = 1,
# v = 0.25 * 4 = 1. After the correction: m_hat = 1 / 0.5 = 2, sqrt(v_hat) = sqrt(1 / 0.25)
# = 2, p = 1 - 0.1 * 2 / (2 + 0.5) = 0.92. Before it: lr_t = 0.1 * sqrt(0.25) / 0.5 = 0.1,
# p = 1 - 0.1 * 1 / (sqrt(1) + 0.5) = 1 - 1/15. With b1 = 0 (no first moment): m = g = 2,
# lr_t = 0.1 * 0.5 / 1 = 0.05, p = 1 - 0.05 * 2 / 1.5 = 1 - 1/15 as well.
@pytest.mark.parametrize("b1, before, want", [(0.5, False, 0.92), (0.5, True, 1 - 1 / 15),
                                              (0.0, True, 1 - 1 / 15)])
@pytest.mark.parametrize("backend", [NATIVE, ORACLE], ids=["native", "oracle"])
def test_adam_step_by_hand(backend, b1, before, want):
    p, g = np.ones(3), np.full(3, 2.0)
    m, v = np.zeros(3), np.zeros(3)
    backend.optimizer_update("adam", p, g, m, v, lr=0.1, b1=b1, b2=0.75, eps=0.5,
                             eps_before_correction=before)
    np.testing.assert_allclose(p, want, rtol=1e-15)


# ---------------------------------------------------------------------------------
# The state rule: a new m or v below the smallest normal in magnitude becomes +0
# (docs/conventions.md), in the kernels and the oracle alike
# ---------------------------------------------------------------------------------
STATEFUL = [name for name, (uses_m, uses_v) in USES.items() if uses_m or uses_v]


def _near_the_normal_range(dtype, n, seed):
    """State entries that one decay step takes below the smallest normal (and some that
    stay above, zeros, negatives, NaN and inf), with zero gradients except a few."""
    rng = np.random.default_rng(seed)
    tiny = np.finfo(dtype).tiny
    state = (tiny * rng.uniform(0.5, 3.0, n) * rng.choice([-1, 1], n)).astype(dtype)
    state[::11] = 0
    state[5::13] = np.finfo(dtype).tiny / 4          # subnormal already
    state[3::17] = rng.standard_normal(len(state[3::17]))
    state[7::29] = np.nan
    state[9::31] = np.inf
    g = np.zeros(n, dtype)
    g[::7] = rng.standard_normal(len(g[::7])) * tiny * 8
    return state, g


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("n", [1, 7, 17, 33, 257])
def test_state_below_the_normal_range_becomes_zero(name, n, isa, dtype):
    hyper = {**HYPER[name], "b1": 0.5, "b2": 0.5} if name not in ("adagrad", "sgd") \
        else HYPER[name]
    finfo = np.finfo(dtype)
    results = []
    for backend in (NATIVE, ORACLE):
        m, g = _near_the_normal_range(dtype, n, 1)
        v, _ = _near_the_normal_range(dtype, n, 2)
        v = np.abs(v)                                  # a second moment is never negative
        p = np.ones(n, dtype)
        uses_m, uses_v = USES[name]
        with np.errstate(all="ignore"):
            backend.optimizer_update(name, p, g, m if uses_m else None, v if uses_v else None,
                                     lr=0.01, **hyper)
        results.append((p, m, v))
        for state, used in ((m, uses_m), (v, uses_v)):
            if used:
                finite = state[np.isfinite(state)]
                assert not np.any((finite != 0) & (np.abs(finite) < finfo.tiny)), \
                    f"{backend.name} left a subnormal in the state"
                assert np.isnan(state[7::29]).all()     # NaN stays
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
    # the rule did something: some entries were normal before and are exactly 0 now
    m0, _ = _near_the_normal_range(dtype, n, 1)
    state = results[0][1] if USES[name][0] else results[0][2]
    start = m0 if USES[name][0] else np.abs(_near_the_normal_range(dtype, n, 2)[0])
    if name != "adagrad" and n >= 7:
        assert np.any((np.abs(start) >= finfo.tiny) & np.isfinite(start) & (state == 0))


# ---------------------------------------------------------------------------------
# sum_squares
# ---------------------------------------------------------------------------------
SIZES = [0, 1, 15, 16, 17, 100, 16_384, 16_385, 70_001]


@pytest.mark.parametrize("n", SIZES)
def test_sum_squares_equals_the_oracle_bit_for_bit(n, isa, dtype):
    x = (np.random.default_rng(n).standard_normal(n) * 3).astype(dtype)
    assert NATIVE.sum_squares(x) == ORACLE.sum_squares(x)


def test_sum_squares_same_on_any_thread_count(dtype, nthreads):
    x = np.random.default_rng(3).standard_normal(200_001).astype(dtype)
    one = NATIVE.sum_squares(x)
    with nthreads(2):
        two = NATIVE.sum_squares(x)
        assert _core._testing.last_team_size() == 2
    assert one == two


@pytest.mark.parametrize("n", SIZES[1:])
def test_oracle_sum_squares_against_fsum(n, dtype):
    """Within the recursive-summation bound: (n/16 + 4) roundings of the dtype per
    partial, the squares' own rounding included."""
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    exact = math.fsum(float(a) ** 2 for a in x)
    eps = float(np.finfo(dtype).eps)
    bound = (min(n, 16_384) / 16 + 6) * eps * exact
    assert abs(ORACLE.sum_squares(x) - exact) <= bound


@pytest.mark.parametrize("bad, expected", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "inf")])
def test_sum_squares_non_finite(bad, expected, isa, dtype):
    x = np.ones(40, dtype)
    x[33] = bad
    assert repr(NATIVE.sum_squares(x)) == expected
    assert repr(ORACLE.sum_squares(x)) == expected


def test_sum_squares_overflow_is_inf(isa):
    """float32 squares of 1e20 overflow: inf, which the optimizer treats as divergence."""
    x = np.full(5, 1e20, np.float32)
    assert NATIVE.sum_squares(x) == math.inf == ORACLE.sum_squares(x)


# ---------------------------------------------------------------------------------
# Argument checks of the bindings (written arrays: exact dtype, never a silent copy)
# ---------------------------------------------------------------------------------
def _arrays(dtype=np.float32, n=6):
    return [np.zeros(n, dtype) for _ in range(4)]


@pytest.mark.parametrize("call, error, match", [
    (lambda p, g, m, v: _core.optimizer_update("adam", p, g, None, v, 0.1), TypeError,
     r"m must be a numpy array for this optimizer"),
    (lambda p, g, m, v: _core.optimizer_update("adagrad", p, g, None, None, 0.1), TypeError,
     r"v must be a numpy array"),
    (lambda p, g, m, v: _core.optimizer_update("adam", p, g, m, v.astype(np.float64), 0.1),
     TypeError, r"v has dtype float64, expected float32"),
    (lambda p, g, m, v: _core.optimizer_update("momentum", p, g, m[:5], None, 0.1),
     ValueError, r"shape mismatch: param is \(6,\), m is \(5,\)"),
    (lambda p, g, m, v: _core.optimizer_update("adam", p, g, m, m, 0.1), ValueError,
     r"m and v must be different arrays"),
    (lambda p, g, m, v: _core.optimizer_update("adam", p, g, m, v, 0.1, step=0), ValueError,
     r"step must be >= 1, got 0"),
    (lambda p, g, m, v: _core.optimizer_update("lion", p, g, m, v, 0.1), ValueError,
     r"unknown optimizer 'lion'"),
    (lambda p, g, m, v: _core.optimizer_update("sgd", p.astype(np.float64), g, None, None,
                                               0.1), TypeError,
     r"grad has dtype float32, expected float64"),
    (lambda p, g, m, v: _core.sum_squares(p.reshape(2, 3)), ValueError, r"1-D"),
    (lambda p, g, m, v: _core.sum_squares(p.astype(np.int32)), TypeError,
     r"x has dtype int32, expected float32 or float64"),
])
def test_bindings_refuse_bad_arguments(call, error, match):
    p, g, m, v = _arrays()
    with pytest.raises(error, match=match):
        call(p, g, m, v)
    assert not p.any() and not m.any() and not v.any()


def test_unused_state_may_be_none_or_anything():
    p, g, m, v = _arrays()
    g[:] = 1
    _core.optimizer_update("sgd", p, g, None, None, 0.5)
    _core.optimizer_update("momentum", p, g, m, "ignored", 0.5, b1=0.9)
    np.testing.assert_array_equal(p, np.float32(-0.5) + np.float32(-0.5))


# ---------------------------------------------------------------------------------
# all_finite (fit's check of the parameters and the optimizer's state)
# ---------------------------------------------------------------------------------
FINITE_SIZES = [0, 1, 7, 15, 16, 17, 33, 257, 16_385]


@pytest.mark.parametrize("n", FINITE_SIZES)
def test_all_finite_finds_every_non_finite_value_anywhere(n, isa, dtype):
    """The native kernel against the oracle: finite extremes (the largest, a subnormal,
    -0) pass; one NaN, +inf or -inf at the first, a middle or the last element (in the
    tail past the vector width too) fails."""
    info = np.finfo(dtype)
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    if n >= 4:
        x[:4] = [info.max, -info.max, info.smallest_subnormal, -0.0]
    assert NATIVE.all_finite(x) and ORACLE.all_finite(x)
    for at in sorted({0, n // 2, n - 1}) if n else []:
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[at] = bad
            assert not NATIVE.all_finite(y), (at, bad)
            assert not ORACLE.all_finite(y), (at, bad)


def test_all_finite_takes_flat_arrays_of_the_two_dtypes():
    with pytest.raises(ValueError, match="all_finite"):
        NATIVE.all_finite(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="all_finite"):
        NATIVE.all_finite(np.ones(3, np.int64))
    with pytest.raises(ValueError, match="all_finite: x must be 1-D"):
        ORACLE.all_finite(np.ones((2, 3)))
