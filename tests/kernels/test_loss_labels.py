"""The labels softmax cross-entropy's loss kernel writes for the fused trainer's accuracy
(csrc/kernels/losses.hpp, _testing.loss_with_labels): each row's np.argmax of the logits
and of the targets, exactly argmax_rows's (the first maximum, or the first NaN; -0 and +0
tie), on every ISA and both dtypes: k <= 16 from the rows in lanes, k > 16 from
argmax_rows itself. The loss and gradient stay those of _core.loss, bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp import _core

ROWS = [0, 1, 7, 17, 33, 257]
WIDTHS = list(range(1, 17)) + [17, 33]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0]


def _rows(m: int, k: int, dtype, seed: int) -> np.ndarray:
    """Random rows with ties, NaN, infinities and signed zeros planted in a fifth of the
    entries, and a few integer-valued rows (many ties)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(dtype)
    at = rng.random((m, k)) < 0.2
    x[at] = rng.choice(np.array(SPECIAL, dtype), int(at.sum()))
    ints = rng.random(m) < 0.3
    x[ints] = rng.integers(-1, 2, (int(ints.sum()), k)).astype(dtype)
    return x


def _check(z: np.ndarray, y: np.ndarray, weights, with_grad: bool) -> None:
    m, k = z.shape
    labels = np.full((m, 2), -1, np.int64)
    grad = np.full_like(z, 7) if with_grad else None
    got = _core._testing.loss_with_labels("softmax_cross_entropy", z, y, grad, 0.5, weights, labels)
    np.testing.assert_array_equal(labels[:, 0], np.argmax(z, axis=1))
    np.testing.assert_array_equal(labels[:, 1], np.argmax(y, axis=1))
    plain_grad = np.full_like(z, 7) if with_grad else None
    want = _core.loss("softmax_cross_entropy", z, y, plain_grad, 0.5, weights)
    assert np.array_equal(np.float64(got), np.float64(want), equal_nan=True)
    if with_grad:
        assert grad.tobytes() == plain_grad.tobytes()


@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize("m", ROWS)
def test_labels_are_argmax(m, k, isa, dtype):
    z = _rows(m, k, dtype, 1000 * m + k)
    y = _rows(m, k, dtype, 1000 * m + k + 1)
    _check(z, y, None, True)


@pytest.mark.parametrize("k", [1, 3, 10, 16, 17, 33])
@pytest.mark.parametrize("m", [7, 257])
def test_labels_with_weights_and_without_grad(m, k, isa, dtype):
    z = _rows(m, k, dtype, 7 * m + k)
    y = np.eye(k, dtype=dtype)[np.arange(m) % k]           # one-hot targets
    w = np.random.default_rng(m).random(m).astype(dtype)
    _check(z, y, w, True)
    _check(z, y, w, False)


def test_other_losses_leave_labels_alone():
    z = np.zeros((5, 3))
    labels = np.full((5, 2), -1, np.int64)
    _core._testing.loss_with_labels("mse", z, z, None, 1.0, None, labels)
    assert (labels == -1).all()


def test_labels_shape_is_checked():
    z = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"labels must be \(logits.shape\[0\], 2\)"):
        _core._testing.loss_with_labels("softmax_cross_entropy", z, z, None, 1.0, None,
                                        np.zeros((5, 1), np.int64))
    with pytest.raises(TypeError, match="labels"):
        _core._testing.loss_with_labels("softmax_cross_entropy", z, z, None, 1.0, None,
                                        np.zeros((5, 2), np.int32))
