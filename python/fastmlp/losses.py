"""Losses by name: target encoding, predictions and the metric of each (DESIGN.md §3-4).

All losses take logits (the last layer is linear); the backend computes them:
softmax cross-entropy ``-sum_j y_j log_softmax(z)_j``, binary cross-entropy
``mean_j [max(z,0) - z y + log1p(e^-|z|)]`` and MSE ``mean_j (z_j - y_j)^2`` per row.
Targets are encoded once into a dense ``(n, k)`` array of the model's dtype.
"""
from __future__ import annotations

import numpy as np

from ._validation import as_samples, first_index, to_dtype
from .backends.base import LOSSES
from .metrics import R2, Accuracy


def _columns(y: np.ndarray, name: str, n_outputs: int) -> np.ndarray:
    """y (n,) or (n, k) as (n, k), k matching the output layer's units."""
    if y.ndim == 1 and n_outputs != 1:
        raise ValueError(f"{name} of shape (n_samples,) needs an output layer of 1 unit; "
                         f"the model's has {n_outputs}: pass {name} of shape "
                         f"(n_samples, {n_outputs})")
    if y.ndim == 2 and y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {y.shape[1]} columns (shape {y.shape}) but the output "
                         f"layer has {n_outputs} units")
    return y.reshape(len(y), n_outputs)


def _check_binary(y: np.ndarray, name: str, loss: str) -> None:
    bad = (y != 0) & (y != 1)
    if bad.any():
        index = first_index(bad)
        raise ValueError(f"{name} must hold 0/1 targets for {loss}; got {y[index]} at index "
                         f"{index}")


class SoftmaxCrossEntropy:
    """Targets: integer labels 0..k-1 of shape (n,) or one-hot rows (n, k).
    Predictions: the label of the largest logit."""

    name = "softmax_cross_entropy"
    classifier = True
    metric_name = Accuracy.name

    def targets(self, y, name: str, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        y = as_samples(y, name, (1, 2))
        if y.ndim == 2:
            y = _columns(y, name, n_outputs)
            _check_binary(y, name, self.name)
            bad_rows = y.sum(axis=1) != 1
            if bad_rows.any():
                row = first_index(bad_rows)
                raise ValueError(f"{name} of shape (n_samples, k) must be one-hot for "
                                 f"{self.name} (exactly one 1 per row); row {row} is "
                                 f"{y[row].tolist()}")
            return to_dtype(y, name, dtype)
        onehot = np.zeros((len(y), n_outputs), dtype)
        onehot[np.arange(len(y)), self._labels(y, name, n_outputs)] = 1
        return onehot

    def _labels(self, y: np.ndarray, name: str, n_outputs: int) -> np.ndarray:
        if y.dtype.kind == "f":
            fractional = y != np.round(y)
            if fractional.any():
                index = first_index(fractional)
                raise ValueError(f"{name} must hold integer class labels for {self.name}; "
                                 f"got {y[index]} at index {index}")
        outside = (y < 0) | (y >= n_outputs)
        if outside.any():
            index = first_index(outside)
            raise ValueError(f"{name} holds label {y[index]} at index {index}; with an output "
                             f"layer of {n_outputs} units labels must be in 0..{n_outputs - 1}")
        return y.astype(np.intp)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return logits.argmax(axis=1)

    def metric(self) -> Accuracy:
        return Accuracy(lambda z, y: int(np.count_nonzero(z.argmax(axis=1) == y.argmax(axis=1))))


class BinaryCrossEntropy:
    """Targets: 0/1 of shape (n,) for one output or (n, k) for k independent labels.
    Predictions: 1 where sigmoid(z) > 0.5, i.e. z > 0."""

    name = "binary_cross_entropy"
    classifier = True
    metric_name = Accuracy.name

    def targets(self, y, name: str, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        y = _columns(as_samples(y, name, (1, 2)), name, n_outputs)
        _check_binary(y, name, self.name)
        return to_dtype(y, name, dtype)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return (logits > 0).astype(np.int64)

    def metric(self) -> Accuracy:
        return Accuracy(lambda z, y: int(np.count_nonzero(((z > 0) == (y > 0.5)).all(axis=1))))


class MeanSquaredError:
    """Targets: real values (n,) or (n, k). Predictions: the outputs themselves."""

    name = "mse"
    classifier = False
    metric_name = R2.name

    def targets(self, y, name: str, n_outputs: int, dtype: np.dtype) -> np.ndarray:
        return to_dtype(_columns(as_samples(y, name, (1, 2)), name, n_outputs), name, dtype)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return logits.copy()

    def metric(self) -> R2:
        return R2()


_REGISTRY = {loss.name: loss for loss in (SoftmaxCrossEntropy(), BinaryCrossEntropy(),
                                          MeanSquaredError())}
assert tuple(_REGISTRY) == LOSSES


def get_loss(name: str):
    """The loss object registered under ``name`` (already validated)."""
    return _REGISTRY[name]
