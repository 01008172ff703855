"""The NumPy backend's layer math (dropout, maxout, batch normalization, weighted losses,
weight penalties) against centered finite differences in float64 (docs/conventions.md: eps
1e-7, difference below 1e-7), hand-worked numbers, and the dropout hash's definition
written with Python integers."""
import math

import numpy as np
import pytest

from fastmlp.backends import NumPyBackend
from fastmlp.nn.losses import LOSSES
from helpers import assert_close, assert_gradient_close, numeric_gradient

backend = NumPyBackend()
M64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------
# Dropout: the hash on Python ints, independent of NumPy's uint64 arithmetic
# ---------------------------------------------------------------------------------

def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def test_splitmix64_known_values():
    # SplitMix64 seeded with 0 (Vigna's splitmix64.c): its first output is splitmix64(0)
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    # the next outputs mix the state 0 + k * golden ratio increment, k = 1, 2
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    assert splitmix64((2 * 0x9E3779B97F4A7C15) & M64) == 0x06C45D188009454F


@pytest.mark.parametrize("rate, seed, layer, step", [
    (0.5, 0, 0, 0), (0.25, 2**64 - 1, 2**64 - 1, 2**64 - 1), (0.9, 42, 3, 1000), (0.0, 7, 1, 1)])
def test_dropout_mask_matches_the_integer_definition(rate, seed, layer, step):
    x = np.arange(1, 201, dtype=np.float64).reshape(10, 20)
    y, mask = np.empty_like(x), np.empty_like(x)
    backend.dropout_forward(x, y, mask, rate, seed, layer, step)
    key = splitmix64(splitmix64(splitmix64(seed) ^ layer) ^ step)
    keep = [(splitmix64(key ^ i) >> 40) * 2.0**-24 >= rate for i in range(x.size)]
    want = np.where(keep, 1 / (1 - rate), 0.0).reshape(x.shape)
    np.testing.assert_array_equal(mask, want)
    np.testing.assert_array_equal(y, x * want)


def test_dropout_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6))
    r = rng.normal(size=x.shape)
    mask = np.empty_like(x)

    def objective():
        y = np.empty_like(x)
        backend.dropout_forward(x, y, mask, 0.4, 11, 2, 5)
        return float((y * r).sum())

    objective()
    dx = np.empty_like(x)
    backend.mul(r, mask, dx)
    assert (mask == 0).any() and (mask != 0).any()
    assert_gradient_close(numeric_gradient(objective, x), dx)


# ---------------------------------------------------------------------------------
# Maxout
# ---------------------------------------------------------------------------------

def test_maxout_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    m, units, k = 4, 3, 3
    z = rng.normal(size=(m, units * k))      # continuous: no ties within 1e-7
    r = rng.normal(size=(m, units))
    a, argmax = np.empty((m, units)), np.empty((m, units), np.int32)

    def objective():
        backend.maxout_forward(z, a, argmax)
        return float((a * r).sum())

    objective()
    dz = np.empty_like(z)
    backend.maxout_backward(r, argmax, dz)
    assert_gradient_close(numeric_gradient(objective, z), dz)


def test_maxout_hand_worked():
    z = np.array([[1.0, 3.0, 3.0, -1.0, np.nan, 2.0]])        # units 2, pieces 3
    a, argmax = np.empty((1, 2)), np.empty((1, 2), np.int32)
    backend.maxout_forward(z, a, argmax)
    assert argmax.tolist() == [[1, 1]]                        # tie: lowest; NaN: first NaN
    assert a[0, 0] == 3.0 and math.isnan(a[0, 1])


# ---------------------------------------------------------------------------------
# Batch normalization
# ---------------------------------------------------------------------------------

def test_batchnorm_hand_worked():
    x = np.array([[1.0, -2.0], [3.0, -2.0], [5.0, -2.0]])    # column 1 constant: var 0
    gamma, beta = np.array([2.0, 3.0]), np.array([0.5, -1.0])
    y, xhat = np.empty_like(x), np.empty_like(x)
    mean, inv_std = np.empty(2), np.empty(2)
    backend.batchnorm_forward_train(x, gamma, beta, y, xhat, mean, inv_std, 0.25)
    # column 0: mean 3, var 8/3, inv_std 1/sqrt(8/3 + 1/4) = 1/sqrt(35/12)
    assert_close(mean, [3.0, -2.0], "hand_worked", "float64")
    assert_close(inv_std, [1 / math.sqrt(35 / 12), 2.0], "hand_worked", "float64")
    s = 1 / math.sqrt(35 / 12)
    assert_close(xhat[:, 0], [-2 * s, 0.0, 2 * s], "hand_worked", "float64")
    np.testing.assert_array_equal(xhat[:, 1], 0.0)
    assert_close(y, [[0.5 - 4 * s, -1.0], [0.5, -1.0], [0.5 + 4 * s, -1.0]], "hand_worked", "float64")
    out = np.empty_like(x)
    backend.batchnorm_forward_infer(x, gamma, beta, np.array([3.0, -2.0]), np.array([8 / 3, 0.0]),
                                    0.25, out)
    assert_close(out, y, "hand_worked", "float64")


# With 2 rows and a small eps, xhat is +-1 whatever x is: dx is ~1e-5 and finite
# differences only resolve it to ~1e-6 relative, so that case uses eps = 1.
@pytest.mark.parametrize("shape, eps", [((5, 4), 1e-3), ((2, 3), 1.0), ((9, 1), 1e-3)])
def test_batchnorm_backward_matches_finite_differences(shape, eps):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape) * 2 + 1
    gamma = rng.uniform(0.5, 2.0, shape[1])
    beta = rng.normal(size=shape[1])
    r = rng.normal(size=shape)
    cache = {}

    def objective():
        y, xhat = np.empty(shape), np.empty(shape)
        mean, inv_std = np.empty(shape[1]), np.empty(shape[1])
        backend.batchnorm_forward_train(x, gamma, beta, y, xhat, mean, inv_std, eps)
        cache.update(xhat=xhat, inv_std=inv_std)
        return float((y * r).sum())

    objective()
    dx, dgamma, dbeta = np.empty(shape), np.empty(shape[1]), np.empty(shape[1])
    backend.batchnorm_backward(r, cache["xhat"], gamma, cache["inv_std"], dx, dgamma, dbeta)
    assert_gradient_close(numeric_gradient(objective, x), dx)
    assert_gradient_close(numeric_gradient(objective, gamma), dgamma)
    assert_gradient_close(numeric_gradient(objective, beta), dbeta)


# ---------------------------------------------------------------------------------
# Weighted losses
# ---------------------------------------------------------------------------------

def _targets(loss, shape, rng):
    m, k = shape
    if loss == "softmax_cross_entropy":
        return np.eye(k)[rng.integers(0, k, m)]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, shape).astype(np.float64)
    if loss == "poisson":
        return rng.poisson(1.5, shape).astype(np.float64)
    return rng.normal(size=shape)


@pytest.mark.parametrize("loss", LOSSES)
def test_weighted_loss_gradient_matches_finite_differences(loss):
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(5, 3))
    y = _targets(loss, logits.shape, rng)
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0])
    scale = 1 / w.sum()
    grad = np.empty_like(logits)
    value = backend.loss(loss, logits, y, grad, scale, weights=w)
    numeric = numeric_gradient(
        lambda: scale * backend.loss(loss, logits, y, None, 1.0, weights=w), logits)
    assert_gradient_close(numeric, grad)
    rows = [backend.loss(loss, logits[i:i + 1], y[i:i + 1], None, 1.0) for i in range(5)]
    assert_close(value, float(np.dot(w, rows)), "hand_worked", "float64")


@pytest.mark.parametrize("loss", LOSSES)
def test_weight_two_equals_a_duplicated_row(loss):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 4))
    y = _targets(loss, logits.shape, rng)
    w = np.ones(6)
    w[2] = 2.0
    grad, grad_d = np.empty_like(logits), np.empty((7, 4))
    value = backend.loss(loss, logits, y, grad, 0.1, weights=w)
    dup = lambda a: np.insert(a, 2, a[2], axis=0)
    value_d = backend.loss(loss, dup(logits), dup(y), grad_d, 0.1)
    assert_close(value, value_d, "hand_worked", "float64")
    np.testing.assert_array_equal(grad[2], grad_d[2] + grad_d[3])
    np.testing.assert_array_equal(np.delete(grad, 2, axis=0), np.delete(grad_d, [2, 3], axis=0))


# ---------------------------------------------------------------------------------
# Weight penalties
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("l1, l2", [(0.3, 0.0), (0.0, 0.7), (0.3, 0.7)])
def test_regularize_gradient_matches_finite_differences(l1, l2):
    rng = np.random.default_rng(5)
    w = rng.normal(size=20)
    w[np.abs(w) < 0.01] = 0.5                  # away from the kink of |w|
    dw = np.zeros_like(w)
    penalty = backend.regularize(w, dw, l1, l2)
    assert_close(penalty, l1 * np.abs(w).sum() + l2 / 2 * (w * w).sum(), "hand_worked", "float64")
    numeric = numeric_gradient(lambda: backend.regularize(w, np.zeros_like(w), l1, l2), w)
    assert_gradient_close(numeric, dw)


def test_regularize_hand_worked():
    w = np.array([0.0, -0.0, 2.0, -3.0])
    dw = np.array([1.0, 1.0, 1.0, 1.0])
    penalty = backend.regularize(w, dw, 0.5, 0.25)
    # sign(0) = 0: dw += 0.5 * sign(w) + 0.25 * w
    np.testing.assert_array_equal(dw, [1.0, 1.0, 1.0 + 0.5 + 0.5, 1.0 - 0.5 - 0.75])
    assert penalty == 0.5 * 5.0 + 0.125 * 13.0
    dw = np.zeros(4)
    assert backend.regularize(w, dw, 0.0, 0.0) == 0.0 and not dw.any()
