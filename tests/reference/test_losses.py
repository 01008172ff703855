"""NumPy oracle losses and outputs: literal values, finite-difference gradients, and
stability for huge logits."""
import math

import numpy as np
import pytest

from fastmlp.nn import activations
from fastmlp.backends import NumPyBackend
from fastmlp.nn.losses import LOSSES
from helpers import assert_close, assert_gradient_close, numeric_gradient

backend = NumPyBackend()


def targets(loss: str, shape, rng, kind: str = "hard") -> np.ndarray:
    m, k = shape
    if loss == "softmax_cross_entropy":
        if kind == "soft":                                     # any non-negative weights
            return rng.uniform(size=shape)
        return np.eye(k)[rng.integers(0, k, m)]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, shape).astype(np.float64)
    if loss == "poisson":                                      # counts, zeros included
        return rng.poisson(1.5, shape).astype(np.float64)
    return rng.normal(size=shape)


# (loss, logits, targets, sum of row losses) worked out by hand
LITERALS = [
    # log_softmax([0, 0]) = [-log 2, -log 2]
    ("softmax_cross_entropy", [[0.0, 0.0]], [[1.0, 0.0]], math.log(2)),
    # -log(e^0 / (e^0 + e^ln3)) = log 4; second row: -log(3/4)
    ("softmax_cross_entropy", [[0.0, math.log(3)], [0.0, math.log(3)]],
     [[1.0, 0.0], [0.0, 1.0]], math.log(4) + math.log(4 / 3)),
    # max(0,0) - 0 + log1p(1) = log 2 per element, mean over the row's 2 elements
    ("binary_cross_entropy", [[0.0, 0.0]], [[1.0, 0.0]], math.log(2)),
    # z = ln 3, y = 1: -log sigmoid(ln 3) = -log(3/4)
    ("binary_cross_entropy", [[math.log(3)]], [[1.0]], math.log(4 / 3)),
    # ((1-0)^2 + (3-0)^2) / 2 + ((-1-1)^2 + (0-0)^2) / 2
    ("mse", [[1.0, 3.0], [-1.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]], 5.0 + 2.0),
    # y = 0 adds e^z = 1; y = 2 at z = log 2: 2 log 2 - 2 log 2 - 2 + 2 = 0
    ("poisson", [[0.0, math.log(2)]], [[0.0, 2.0]], 1.0),
    # (1 log 1 - 0 - 1 + 1) + (3 log 3 - 0 - 3 + 1)
    ("poisson", [[0.0, 0.0]], [[1.0, 3.0]], 3 * math.log(3) - 2),
    # huge logits: the loss is the margin, computed without overflow
    ("softmax_cross_entropy", [[1000.0, 0.0]], [[0.0, 1.0]], 1000.0),
    ("binary_cross_entropy", [[1000.0, -1000.0]], [[0.0, 1.0]], 1000.0),
]


def test_poisson_is_scikit_learns_poisson_loss():
    """sklearn.neural_network._base.poisson_loss(y, mu) = mean over samples of the row
    loss (summed over outputs) = mean_poisson_deviance / 2 for one output; the rows are
    sum_j xlogy(y, y / mu) - y + mu."""
    from scipy.special import xlogy
    from sklearn.metrics import mean_poisson_deviance
    from sklearn.neural_network._base import poisson_loss
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (40, 3))
    y, mu = targets("poisson", (40, 3), rng), np.exp(z)
    total = backend.loss("poisson", z, y, None, 1.0)
    assert abs(total / 40 - poisson_loss(y, mu)) <= 1e-13 * abs(total / 40)
    one = backend.loss("poisson", z[:, :1].copy(), y[:, :1].copy(), None, 1.0) / 40
    assert abs(one - mean_poisson_deviance(y[:, 0], mu[:, 0]) / 2) <= 1e-13 * one
    assert abs(total - (xlogy(y, y / mu) - y + mu).sum()) <= 1e-13 * total


@pytest.mark.parametrize("loss, logits, y, expected", LITERALS)
def test_loss_matches_hand_worked_values(loss, logits, y, expected):
    logits, y = np.array(logits), np.array(y)
    with np.errstate(all="raise"):
        value = backend.loss(loss, logits, y, None, 1.0)
    assert isinstance(value, float)
    assert_close(value, expected, "literal", "float64")


@pytest.mark.parametrize("loss, kind", [(loss, "hard") for loss in LOSSES]
                         + [("softmax_cross_entropy", "soft")])
def test_gradient_matches_finite_differences(loss, kind):
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=2.0, size=(5, 3))
    y = targets(loss, logits.shape, rng, kind)
    scale = 1 / 5
    grad = np.empty_like(logits)
    value = backend.loss(loss, logits, y, grad, scale)
    numeric = numeric_gradient(lambda: scale * backend.loss(loss, logits, y, None, 1.0), logits)
    assert_gradient_close(numeric, grad)
    assert value == backend.loss(loss, logits, y, None, 1.0)   # the grad does not change it


# poisson's e^z overflows past z ~ 88 (float32) or 709 (float64): inf is its answer
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", [name for name in LOSSES if name != "poisson"])
def test_huge_logits_stay_finite(loss, dtype):
    rng = np.random.default_rng(3)
    logits = np.array([[-1e4, 0.0, 1e4], [1e4, 1e4, -1e4]], dtype)
    y = targets(loss, logits.shape, rng).astype(dtype)
    grad = np.empty_like(logits)
    with np.errstate(all="raise"):
        value = backend.loss(loss, logits, y, grad, 0.5)
        out = np.empty_like(logits)
        backend.output(loss, logits, out)
    assert math.isfinite(value) and np.isfinite(grad).all() and np.isfinite(out).all()


def test_outputs_match_hand_worked_values():
    logits = np.array([[0.0, math.log(3)]])
    out = np.empty_like(logits)
    backend.output("softmax_cross_entropy", logits, out)
    assert_close(out, [[0.25, 0.75]], "literal", "float64")
    backend.output("binary_cross_entropy", logits, out)
    assert_close(out, [[0.5, 0.75]], "literal", "float64")
    backend.output("mse", logits, out)
    np.testing.assert_array_equal(out, logits)
    backend.output("poisson", logits, out)
    assert_close(out, [[1.0, 3.0]], "literal", "float64")


def test_unknown_names_are_rejected():
    z = np.zeros((1, 2))
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        backend.loss("hinge", z, z, None, 1.0)
    with pytest.raises(ValueError, match="unknown activation 'softmax'"):
        activations.kind("softmax")     # the backend takes the registry's row
