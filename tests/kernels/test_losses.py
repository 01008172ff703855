"""Losses from logits and the output functions (csrc/kernels/losses.hpp) against the
float64 oracle, with the oracle itself checked by hand-worked numbers and finite
differences (docs/conventions.md, §5.8).

The value is sum_i loss_i; grad = scale * d(sum_i loss_i)/d logits (base.py).
Errors are in units of the dtype's epsilon relative to the oracle's error scale (the
magnitudes of the terms rounded, oracle.loss), summed over the elements for the value.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import oracle
from fastmlp import _core
from test_math import ULP_TABLE

LOSSES = oracle.LOSSES

# ---------------------------------------------------------------------------------
# Tolerances (k in eps * scale). The value's scale is the oracle's
# value_scale summed over all elements; the gradient's is per element. Row sums use 16
# partial sums, so the bound grows with k/16 only; the shapes below keep k <= 40.
# Measured max (float32/float64) noted on each line: on random logits, then (second
# figure, value rows only) on rows one huge term dominates (test_edge_values.py), where
# Sum16's four halving levels each round by up to half an ulp of the big partial sum:
# up to 2 eps, the bound the value entries now state.
# ---------------------------------------------------------------------------------
TOL = {
    "softmax_cross_entropy": {"value": {"float32": 1, "float64": 2},     # 0.56 / 1.60
                              "grad": {"float32": 3, "float64": 3}},     # 2.44 / 2.65
    "binary_cross_entropy": {"value": {"float32": 2, "float64": 2},      # 0.48, 1.19 / 1.18
                             "grad": {"float32": 3, "float64": 3}},      # 2.03 / 1.88
    "mse": {"value": {"float32": 3, "float64": 3},                       # 1.18, 2.10 / 2.17
            "grad": {"float32": 2, "float64": 2}},                       # 1.30 / 1.15
}
# (float64 values also carry the double sum over rows, hence the larger k.)
# output(): softmax against the oracle in eps * p (1 + |z - max|) (oracle.
# softmax_error_scale) plus |sum_j p_j - 1| in eps; sigmoid in ulps (the math table's
# bound); identity bit for bit.
SOFTMAX_OUT_EPS = {"float32": 3, "float64": 4}                           # 2.09 / 3.85
ROW_SUM_EPS = {"float32": 3, "float64": 5}                               # 2.07 / 4.00

SHAPES = [(1, 1), (1, 2), (7, 3), (64, 10), (65, 10), (130, 17), (5, 33), (3, 40)]


def _targets(name, shape, rng, kind="hard"):
    n, k = shape
    if name == "softmax_cross_entropy":
        if kind == "hard":
            return np.eye(k)[rng.integers(0, k, n)]
        y = rng.dirichlet(np.ones(k), n)                   # soft labels, rows sum to 1
        if kind == "weighted":
            y *= rng.uniform(0.5, 2.0, (n, 1))             # rows summing to != 1
        return y
    if name == "binary_cross_entropy":
        return (rng.random(shape) < 0.5).astype(float) if kind == "hard" else rng.random(shape)
    return rng.standard_normal(shape)


def _case(name, shape, dtype, seed, kind="hard", spread=4.0):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * spread).astype(dtype)
    y = _targets(name, shape, rng, kind).astype(dtype)
    return z, y


def _loss(name, z, y, scale, with_grad=True):
    grad = np.full_like(z, np.nan) if with_grad else None
    value = _core.loss(name, z, y, grad, scale)
    assert isinstance(value, float)
    return value, grad


def _check_against_oracle(name, z, y, scale, dtype, what):
    value, grad = _loss(name, z, y, scale)
    ref, ref_grad, value_scale, grad_scale = oracle.loss(name, z, y, scale)
    tol = TOL[name]
    oracle.assert_within_eps(value, ref, value_scale.sum(), dtype, tol["value"][dtype.name], f"{name} value {what}")
    oracle.assert_within_eps(grad, ref_grad, grad_scale, dtype, tol["grad"][dtype.name], f"{name} grad {what}")
    return value, grad


# ---------------------------------------------------------------------------------
# The oracle against hand-worked numbers and finite differences
# ---------------------------------------------------------------------------------

def test_oracle_hand_worked_values():
    close = lambda a, b: abs(a - b) <= 1e-14 * max(1, abs(b))
    v, g, _, _ = oracle.loss("softmax_cross_entropy", np.array([[1.0, 2.0, 3.0]]), np.array([[0, 0, 1.0]]))
    assert close(v, np.log(1 + np.exp(-1) + np.exp(-2)))        # 0.4076059644443806
    assert close(v, 0.4076059644443806)
    v, g, _, _ = oracle.loss("softmax_cross_entropy", np.zeros((2, 2)), np.array([[1.0, 0], [0, 1]]), 0.5)
    assert close(v, 2 * np.log(2)) and np.allclose(g, [[-0.25, 0.25], [0.25, -0.25]], rtol=0, atol=1e-16)
    v, g, _, _ = oracle.loss("binary_cross_entropy", np.array([[0.0, 2.0]]), np.array([[1.0, 0.0]]))
    assert close(v, (np.log(2) + 2.1269280110429727) / 2)      # softplus(2) = 2.12692801104297
    assert np.allclose(g, [[-0.25, 0.44039853898894116]], rtol=1e-15)   # (sigmoid - y) / 2
    v, g, _, _ = oracle.loss("mse", np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]), 1.0)
    assert close(v, 2.5) and np.array_equal(g, [[1.0, 2.0]])


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_oracle_gradient_matches_finite_differences(name, kind):
    z, y = _case(name, (4, 5), np.float64, 3, kind, spread=2.0)
    _, grad, _, _ = oracle.loss(name, z, y, scale=0.7)
    np.testing.assert_allclose(grad, oracle.loss_gradient_by_differences(name, z, y, 0.7),
                               rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------
# Values and gradients
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
def test_hand_worked_values_on_the_kernel(name, dtype, isa):
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype)
    y = {"softmax_cross_entropy": [[0, 0, 1], [1, 0, 0]],
         "binary_cross_entropy": [[1, 0, 1], [1, 1, 0]],
         "mse": [[0, 0, 0], [1, -1, 2]]}[name]
    want = {"softmax_cross_entropy": 0.4076059644443806 + np.log(3),
            # row 1: (log1p(e^-1) + 2 + log1p(e^-2) + log1p(e^-3)) / 3; row 2: log 2
            "binary_cross_entropy": (0.31326168751822286 + 2.1269280110429727 + 0.04858735157374206) / 3 + np.log(2),
            "mse": 14 / 3 + 2.0}[name]
    value, _ = _loss(name, z, np.array(y, dtype), 1.0)
    assert abs(value - want) <= 4 * np.finfo(dtype).eps * abs(want), (value, want)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_matches_oracle(name, dtype, isa):
    for seed, shape in enumerate(SHAPES):
        z, y = _case(name, shape, dtype, seed)
        _check_against_oracle(name, z, y, 1.0 / shape[0], dtype, f"{shape} {isa}")


@pytest.mark.parametrize("kind", ["soft", "weighted"])
def test_softmax_cross_entropy_soft_labels(kind, dtype, isa):
    for seed, shape in enumerate(SHAPES):
        z, y = _case("softmax_cross_entropy", shape, dtype, seed, kind)
        _check_against_oracle("softmax_cross_entropy", z, y, 0.37, dtype, f"{kind} {shape} {isa}")


@pytest.mark.parametrize("k", [1, 6])
def test_binary_cross_entropy_single_and_multilabel(k, dtype, isa):
    """(n, 1): one output; (n, k): k independent labels, averaged over the outputs."""
    z, y = _case("binary_cross_entropy", (50, k), dtype, k)
    value, grad = _check_against_oracle("binary_cross_entropy", z, y, 1 / 50, dtype, f"k={k} {isa}")
    if k > 1:  # the multilabel row loss is the mean of k single-output losses
        singles = [_loss("binary_cross_entropy", z[:, [j]].copy(), y[:, [j]].copy(), 1.0)[0] for j in range(k)]
        assert abs(value - sum(singles) / k) <= 4 * np.finfo(dtype).eps * abs(value) * k


@pytest.mark.parametrize("name,k", [("binary_cross_entropy", 1), ("softmax_cross_entropy", 3),
                                    ("softmax_cross_entropy", 10), ("softmax_cross_entropy", 16)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_rows_by_lanes_do_not_depend_on_their_neighbours(name, k, weighted, dtype, isa):
    """One output of binary cross-entropy, and softmax with up to 16 outputs, run W rows
    per vector (a row per lane): each row's gradient and loss are the bits it has alone
    (the total: the rows' values added in order in double), whatever its lane, in full
    vectors and in the tail, with and without row weights."""
    rng = np.random.default_rng(3)
    for rows in (1, 5, 8, 16, 17, 37):
        z, y = _case(name, (rows, k), dtype, rows, kind="weighted")   # soft, rows != 1
        y[::3, 0] = 0                              # a zero target adds nothing to the loss
        if name == "binary_cross_entropy":
            y[1::3, 0] = 1                         # 0, 1 and soft: bce's three formulas
        w = (rng.random(rows) * 3).astype(dtype) if weighted else None
        grad = np.full_like(z, np.nan)
        total = _core.loss(name, z, y, grad, 0.37, w)
        alone_total = 0.0
        for i in range(rows):
            alone = np.full_like(z[i:i + 1], np.nan)
            alone_total += _core.loss(name, z[i:i + 1].copy(), y[i:i + 1].copy(), alone, 0.37,
                                      None if w is None else w[i:i + 1].copy())
            assert grad[i].tobytes() == alone.tobytes(), f"row {i} of {rows}"
        assert total == alone_total, f"{rows} rows"


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_is_scale_times_derivative(name, dtype, isa):
    """grad(scale) == scale * grad(1) up to one rounding, and scale = 0 gives zeros."""
    z, y = _case(name, (9, 5), dtype, 1)
    _, g1 = _loss(name, z, y, 1.0)
    _, g4 = _loss(name, z, y, 4.0)           # a power of two: exact
    assert np.array_equal(g4, 4 * g1)
    v0, g0 = _loss(name, z, y, 0.0)
    assert np.array_equal(g0, np.zeros_like(z)) and v0 == _loss(name, z, y, 1.0, with_grad=False)[0]


@pytest.mark.parametrize("name", LOSSES)
def test_value_without_grad_is_the_same(name, dtype):
    z, y = _case(name, (65, 7), dtype, 2)
    assert _loss(name, z, y, 0.5, with_grad=False)[0] == _loss(name, z, y, 0.5)[0]


@pytest.mark.parametrize("name", LOSSES)
def test_grad_may_overwrite_logits(name, dtype):
    z, y = _case(name, (9, 19), dtype, 4)
    value, grad = _loss(name, z, y, 0.25)
    zz = z.copy()
    assert _core.loss(name, zz, y, zz, 0.25) == value
    assert np.array_equal(zz, grad)


@pytest.mark.parametrize("name", LOSSES)
def test_empty_batch(name, dtype):
    z = np.zeros((0, 4), dtype)
    assert _core.loss(name, z, z.copy(), np.zeros_like(z), 1.0) == 0.0


# ---------------------------------------------------------------------------------
# Extreme and non-finite logits
# ---------------------------------------------------------------------------------

EXTREMES = [1e4, 88.0, 709.0]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("big", EXTREMES)
def test_extreme_logits_give_finite_loss_and_grad(name, big, dtype, isa):
    """Log-sum-exp: no overflow for |z| up to 1e4 (e^88 overflows float32, e^709.8
    float64), and the values still match the oracle."""
    rng = np.random.default_rng(int(big))
    shape = (6, 19)
    z = (rng.choice([-1.0, 1.0], shape) * big * rng.uniform(0.5, 1, shape)).astype(dtype)
    z[0, :] = big                 # ties at the max
    z[1, :] = -big
    z[2, 3] = -big
    z[2, 5] = big
    y = _targets(name, shape, rng).astype(dtype)
    value, grad = _check_against_oracle(name, z, y, 1.0, dtype, f"+-{big} {isa}")
    assert np.isfinite(value) and np.isfinite(grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_nan_logit_gives_nan_loss(name, dtype, isa):
    """A NaN in the head, a middle or the tail lane of a row: NaN loss, NaN gradient in
    that row (for softmax the whole row, otherwise that element) and nowhere else."""
    for cols in (1, 5, 16, 19, 33):
        for pos in sorted({0, cols // 2, cols - 1}):
            z, y = _case(name, (3, cols), dtype, cols)
            z[1, pos] = np.nan
            value, grad = _loss(name, z, y, 1.0)
            assert np.isnan(value), (name, cols, pos, value)
            bad = np.isnan(grad)
            assert bad[1, pos] and not bad[[0, 2]].any(), (name, cols, pos)
            if name != "softmax_cross_entropy":
                assert bad.sum() == 1
            elif cols > 1:
                assert bad[1].all()


# ---------------------------------------------------------------------------------
# output()
# ---------------------------------------------------------------------------------

def _output(name, z):
    out = np.full_like(z, np.nan)
    _core.output(name, z, out)
    return out


def test_output_softmax(dtype, isa):
    eps = float(np.finfo(dtype).eps)
    for seed, shape in enumerate(SHAPES + [(4, 1000)]):
        z, _ = _case("softmax_cross_entropy", shape, dtype, seed, spread=10.0)
        z[0, 0] = 1e4 if dtype == np.float64 else 80.0
        p = _output("softmax_cross_entropy", z)
        ref = oracle.softmax(z)
        oracle.assert_within_eps(p, ref, oracle.softmax_error_scale(z), dtype, SOFTMAX_OUT_EPS[dtype.name],
                                 f"softmax {shape} {isa}")
        sums = np.array([math.fsum(row) for row in p.astype(np.float64)])   # exact sums
        assert np.abs(sums - 1).max() <= ROW_SUM_EPS[dtype.name] * eps, (shape, sums)
        assert (p >= 0).all() and (p <= 1).all()


def test_output_sigmoid_and_identity(dtype, isa):
    z, _ = _case("binary_cross_entropy", (33, 17), dtype, 1, spread=20.0)
    s = _output("binary_cross_entropy", z)
    err = oracle.ulp_error(s, oracle.math_ref("sigmoid", z), dtype)
    assert err.max() <= ULP_TABLE["sigmoid"][dtype.name][1]
    # the same function as the math kernel, bit for bit
    flat = np.empty(z.size, dtype)
    _core._testing.math("sigmoid", z.ravel().copy(), flat)
    assert np.array_equal(s.ravel(), flat)
    ident = _output("mse", z)
    assert np.array_equal(ident, z)


def test_output_nan_propagates(dtype, isa):
    for name in LOSSES:
        z, _ = _case(name, (3, 21), dtype, 0)
        z[1, 20] = np.nan
        out = _output(name, z)
        assert np.isnan(out[1, 20]) and not np.isnan(out[[0, 2]]).any(), name


# ---------------------------------------------------------------------------------
# Identical across ISAs and thread counts
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
def test_loss_identical_across_isas(name, dtype, every_isa):
    z, y = _case(name, (200, 37), dtype, 6, kind="soft")
    z[3, 4], z[7, 0] = 700.0 if dtype == np.float64 else 80.0, -1e4
    def run():
        value, grad = _loss(name, z, y, 1 / 200)
        return np.array(value), grad, _output(name, z)
    oracle.assert_same_bits(every_isa(run))


@pytest.mark.parametrize("name", LOSSES)
def test_loss_identical_across_thread_counts(name, dtype, nthreads):
    """Above the threshold (rows * cols * 8 >= 2 * 32Ki) the fixed 64-row blocks make
    the value and the gradient independent of the thread count."""
    z, y = _case(name, (4099, 10), dtype, 7, kind="soft")
    with nthreads(1):
        one = _loss(name, z, y, 1 / 4099)
    with nthreads(2):
        two = _loss(name, z, y, 1 / 4099)
        assert _core._testing.last_team_size() == 2, "the 2-thread call ran on one thread"
    assert one[0] == two[0]
    assert np.array_equal(one[1], two[1])


# ---------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------

def test_loss_argument_checks():
    z = np.zeros((4, 3), np.float32)
    y = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        _core.loss("hinge", z, y, None, 1.0)
    with pytest.raises(TypeError, match="y has dtype float64, expected float32"):
        _core.loss("mse", z, y.astype(np.float64), None, 1.0)
    with pytest.raises(TypeError, match="grad has dtype float64"):
        _core.loss("mse", z, y, np.zeros((4, 3)), 1.0)
    with pytest.raises(TypeError, match="grad must be a numpy array or None"):
        _core.loss("mse", z, y, [[0.0] * 3] * 4, 1.0)
    with pytest.raises(TypeError):
        _core.loss("mse", z.tolist(), y, None, 1.0)
    with pytest.raises(ValueError, match=r"logits is \(4, 3\), y is \(4, 2\)"):
        _core.loss("mse", z, np.zeros((4, 2), np.float32), None, 1.0)
    with pytest.raises(ValueError, match=r"logits is \(4, 3\), grad is \(3, 4\)"):
        _core.loss("mse", z, y, np.zeros((3, 4), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"y must be 2-D, got shape \(4,\)"):
        _core.loss("mse", z, np.zeros(4, np.float32), None, 1.0)
    with pytest.raises(ValueError, match="grad must be C-contiguous"):
        _core.loss("mse", z, y, np.zeros((3, 4), np.float32).T, 1.0)
    g = np.zeros((4, 3), np.float32)
    g.setflags(write=False)
    with pytest.raises(ValueError, match="grad is read-only"):
        _core.loss("mse", z, y, g, 1.0)
    with pytest.raises(ValueError, match="grad overlaps y"):
        _core.loss("mse", z, y, y, 1.0)


def test_output_argument_checks():
    z = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="unknown loss"):
        _core.output("softmax", z, np.empty_like(z))
    with pytest.raises(TypeError, match="out has dtype float64"):
        _core.output("mse", z, np.empty((4, 3)))
    with pytest.raises(ValueError, match=r"logits is \(4, 3\), out is \(4, 4\)"):
        _core.output("mse", z, np.empty((4, 4), np.float32))
    with pytest.raises(ValueError, match="out overlaps logits"):
        _core.output("mse", z, z)
    ro = np.empty_like(z)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        _core.output("mse", z, ro)
