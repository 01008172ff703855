"""The poisson loss (csrc/kernels/losses.hpp poisson_row; log link, mu = e^z): half the
Poisson deviance summed over the outputs, scikit-learn's MLPRegressor loss="poisson".

Row loss sum_j [y log y - y z - y + e^z] (y log y = 0 at y = 0, so a zero target adds
e^z); grad = scale * (e^z - y). Checked as test_losses.py checks the other losses: the
long-double oracle against scikit-learn's and scipy's definitions and finite differences,
then the kernel against the oracle in eps of its error scale on every ISA and both
dtypes, and bit for bit across ISAs and thread counts.
"""
from __future__ import annotations

import numpy as np

import oracle
from fastmlp import _core
from test_math import ULP_TABLE

NAME = "poisson"
# k in eps of the oracle's error scale (test_losses.py's units); measured max over
# 20 seeds of the SHAPES below, every ISA, float32 / float64 noted.
TOL = {"value": {"float32": 1, "float64": 1},        # 0.33 / 0.32
       "grad": {"float32": 2, "float64": 2}}         # 0.82 / 0.79
# (rows, outputs): the output counts cover a single lane, tails and many Sum16 rounds
SHAPES = [(1, 1), (3, 7), (65, 17), (5, 33), (2, 257)]


def _case(shape, dtype, seed, spread=1.5):
    """Logits around log(y), targets: Poisson counts (zeros included) and some rates."""
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * spread).astype(dtype)
    y = rng.poisson(np.exp(rng.standard_normal(shape))).astype(float)
    y[rng.random(shape) < 0.2] *= rng.uniform(0.1, 2.0)
    return z, y.astype(dtype)


def _loss(z, y, scale, with_grad=True):
    grad = np.full_like(z, np.nan) if with_grad else None
    value = _core.loss(NAME, z, y, grad, scale)
    return value, grad


def _check_against_oracle(z, y, scale, dtype, what):
    value, grad = _loss(z, y, scale)
    ref, ref_grad, value_scale, grad_scale = oracle.loss(NAME, z, y, scale)
    oracle.assert_within_eps(value, ref, value_scale.sum(), dtype, TOL["value"][dtype.name], f"value {what}")
    oracle.assert_within_eps(grad, ref_grad, grad_scale, dtype, TOL["grad"][dtype.name], f"grad {what}")
    return value, grad


# ---------------------------------------------------------------------------------
# The oracle: hand-worked values and finite differences (against scikit-learn's and
# scipy's definitions: tests/reference/test_losses.py, as the ISA stage has neither)
# ---------------------------------------------------------------------------------

def test_oracle_hand_worked_values():
    close = lambda a, b: abs(a - b) <= 1e-14 * max(1, abs(b))
    # y = 0 adds mu = e^z; y = 2 at z = log 2 adds 2 log 2 - 2 log 2 - 2 + 2 = 0
    v, g, _, _ = oracle.loss(NAME, np.array([[0.0, np.log(2)]]), np.array([[0.0, 2.0]]), 0.5)
    assert close(v, 1.0) and np.allclose(g, [[0.5, 0.0]], rtol=0, atol=1e-16)
    v, _, _, _ = oracle.loss(NAME, np.array([[0.0, 0.0]]), np.array([[1.0, 3.0]]))
    assert close(v, 3 * np.log(3) - 2)


def test_oracle_gradient_matches_finite_differences():
    z, y = _case((4, 5), np.float64, 3)
    _, grad, _, _ = oracle.loss(NAME, z, y, scale=0.7)
    np.testing.assert_allclose(grad, oracle.loss_gradient_by_differences(NAME, z, y, 0.7),
                               rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------

def test_hand_worked_values_on_the_kernel(dtype, isa):
    z = np.array([[0.0, 0.0], [1.5, np.log(2)]], dtype)
    y = np.array([[1.0, 3.0], [0.0, 2.0]], dtype)
    want = 3 * np.log(3) - 2 + np.exp(1.5) + 0.0
    value, grad = _loss(z, y, 1.0)
    assert abs(value - want) <= 4 * np.finfo(dtype).eps * 6, (value, want)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(grad, np.exp(z.astype(np.float64)) - y, rtol=2 * eps, atol=4 * eps)


def test_loss_matches_oracle(dtype, isa):
    for seed, shape in enumerate(SHAPES):
        z, y = _case(shape, dtype, seed)
        _check_against_oracle(z, y, 1.0 / shape[0], dtype, f"{shape} {isa}")


def test_row_weights(dtype, isa):
    """Row i's loss times w_i, its gradient with scale * w_i (loss_rows, as every loss)."""
    z, y = _case((9, 5), dtype, 8)
    w = np.linspace(0.5, 2, 9).astype(dtype)
    grad = np.full_like(z, np.nan)
    value = _core.loss(NAME, z, y, grad, 0.25, weights=w)
    rows = []
    for i in range(9):
        vi, gi = _loss(z[i:i + 1].copy(), y[i:i + 1].copy(), float(dtype.type(0.25) * w[i]))
        assert np.array_equal(grad[i:i + 1], gi)
        rows.append(float(w[i]) * _loss(z[i:i + 1].copy(), y[i:i + 1].copy(), 1.0)[0])
    assert value == sum(rows)


def test_zero_targets_add_the_mean(dtype, isa):
    """y = 0: xlogy(0, .) = 0, the row loss is sum_j e^z_j, even at z = -inf (e^z = 0)."""
    z = np.array([[-np.inf, 0.0, 2.0]], dtype)
    y = np.zeros_like(z)
    value, grad = _loss(z, y, 1.0)
    assert np.isfinite(value) and np.isfinite(grad).all()
    ref = oracle.loss(NAME, z, y)[0]
    assert abs(value - ref) <= 2 * np.finfo(dtype).eps * ref


def test_gradient_is_scale_times_derivative(dtype, isa):
    z, y = _case((9, 5), dtype, 1)
    _, g1 = _loss(z, y, 1.0)
    _, g4 = _loss(z, y, 4.0)
    assert np.array_equal(g4, 4 * g1)
    v0, g0 = _loss(z, y, 0.0)
    assert np.array_equal(g0, np.zeros_like(z)) and v0 == _loss(z, y, 1.0, with_grad=False)[0]


def test_grad_may_overwrite_logits(dtype):
    z, y = _case((9, 19), dtype, 4)
    value, grad = _loss(z, y, 0.25)
    zz = z.copy()
    assert _core.loss(NAME, zz, y, zz, 0.25) == value
    assert np.array_equal(zz, grad)


def test_empty_batch(dtype):
    z = np.zeros((0, 4), dtype)
    assert _core.loss(NAME, z, z.copy(), np.zeros_like(z), 1.0) == 0.0
    out = np.zeros_like(z)
    _core.output(NAME, z, out)


def test_nan_logit_gives_nan_loss(dtype, isa):
    for cols in (1, 5, 16, 19, 33):
        for pos in sorted({0, cols // 2, cols - 1}):
            z, y = _case((3, cols), dtype, cols)
            z[1, pos] = np.nan
            value, grad = _loss(z, y, 1.0)
            assert np.isnan(value)
            bad = np.isnan(grad)
            assert bad[1, pos] and bad.sum() == 1, (cols, pos)


def test_output_is_exp(dtype, isa):
    """predict's means: the math kernel's exp, bit for bit, within its ulp bound."""
    z, _ = _case((33, 17), dtype, 1, spread=20.0)
    out = np.full_like(z, np.nan)
    _core.output(NAME, z, out)
    flat = np.empty(z.size, dtype)
    _core._testing.math("exp", z.ravel().copy(), flat)
    assert np.array_equal(out.ravel(), flat)
    err = oracle.ulp_error(out, oracle.output(NAME, z), dtype)
    assert err.max() <= ULP_TABLE["exp"][dtype.name][1]


def test_identical_across_isas(dtype, every_isa):
    z, y = _case((200, 37), dtype, 6)
    def run():
        value, grad = _loss(z, y, 1 / 200)
        out = np.empty_like(z)
        _core.output(NAME, z, out)
        return np.array(value), grad, out
    oracle.assert_same_bits(every_isa(run))


def test_identical_across_thread_counts(dtype, nthreads):
    z, y = _case((4099, 10), dtype, 7)
    with nthreads(1):
        one = _loss(z, y, 1 / 4099)
    with nthreads(2):
        two = _loss(z, y, 1 / 4099)
        assert _core._testing.last_team_size() == 2, "the 2-thread call ran on one thread"
    assert one[0] == two[0]
    assert np.array_equal(one[1], two[1])
