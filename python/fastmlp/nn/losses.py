"""Losses by name: target encoding, predictions and the metric of each (docs/conventions.md).

All losses take logits (the last layer is linear); the backend computes them:
softmax cross-entropy ``-sum_j y_j log_softmax(z)_j``, binary cross-entropy
``mean_j [max(z,0) - z y + log1p(e^-|z|)]``, MSE ``mean_j (z_j - y_j)^2`` and Poisson
(log link, mu = e^z) ``sum_j [y log y - y z - y + mu]`` per row.
Targets are encoded once into a dense ``(n, k)`` array of the model's dtype. Class
labels of any kind (numbers, strings) are mapped to output indices 0..k-1 by
:func:`class_indices`; the model keeps the classes as ``classes_``.

The registry (``LOSSES``, :func:`get_loss`) is the one list of losses: each loss object
holds its name (model files, the CLI), its backend kernel id (``kernel``: what
``Backend.loss`` and ``Backend.output`` take) and answers for its own behaviour, so no
code outside this module compares loss names. tests/kernels/test_registries.py checks
the kernel ids against the C++ core's.
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

from .._validation import as_labels, as_samples, first_index, to_dtype
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


def _identity(classes: np.ndarray, n_classes: int) -> bool:
    """Whether ``classes`` are the indices themselves, 0..n_classes-1."""
    return classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(n_classes))


def _indices_in_range(y: np.ndarray, n_classes: int) -> bool:
    """Whether every label is a whole number in 0..n_classes-1 (then it is its index)."""
    return y.dtype.kind in "biuf" and bool(
        np.all((y >= 0) & (y < n_classes) & (y == np.round(y))))


def class_indices(y: np.ndarray, name: str, n_classes: int, classes: Optional[np.ndarray],
                  loss: str) -> Tuple[np.ndarray, np.ndarray]:
    """(indices 0..n_classes-1 of the labels ``y`` (n,), the classes they index).

    With ``classes`` (the model's ``classes_``) every label must be one of them
    (ValueError naming the others). Without, the classes are learned: labels that are
    all whole numbers in 0..n_classes-1 are their own indices (classes 0..n_classes-1);
    any other labels (strings, negative or larger numbers) map to their position in
    ``np.unique(y)``, which must hold exactly n_classes values. Fractional numbers are
    not labels (ValueError: use loss="mse")."""
    if classes is not None:
        if _identity(classes, n_classes) and _indices_in_range(y, n_classes):
            return y.astype(np.intp), classes
        return _lookup(y, name, classes), classes
    if _indices_in_range(y, n_classes):
        return y.astype(np.intp), np.arange(n_classes)
    if y.dtype.kind == "f":
        fractional = y != np.round(y)
        if fractional.any():
            index = first_index(fractional)
            raise ValueError(f"{name} holds {y[index]} at index {index}, not a class label: "
                             f"labels for {loss} are whole numbers or strings (for "
                             f"real-valued targets use loss='mse')")
    classes, indices = np.unique(y, return_inverse=True)
    if len(classes) != n_classes:
        shown = classes[:10].tolist()
        raise ValueError(f"{name} holds {len(classes)} class{'es' * (len(classes) != 1)} "
                         f"{shown}{' ...' if len(classes) > 10 else ''} but the model has "
                         f"{n_classes} for {loss}: give the output layer one unit per class "
                         f"(1 for two classes with binary_cross_entropy)")
    return indices, classes


def _lookup(y: np.ndarray, name: str, classes: np.ndarray) -> np.ndarray:
    """The position of each label of ``y`` in ``classes`` (any order); ValueError naming
    the labels that are not there."""
    comparable = (y.dtype.kind == "U") == (classes.dtype.kind == "U")
    if comparable:
        order = np.argsort(classes, kind="stable")
        found = np.searchsorted(classes, y, sorter=order).clip(max=len(classes) - 1)
        indices = order[found]
        unseen = classes[indices] != y
    else:
        indices, unseen = None, np.ones(len(y), bool)
    if unseen.any():
        labels = np.unique(y[unseen])
        raise ValueError(f"{name} holds labels the model was not trained on: "
                         f"{labels[:10].tolist()}{' ...' if len(labels) > 10 else ''} (the "
                         f"first at index {first_index(unseen)}); its classes_ are "
                         f"{classes[:20].tolist()}{' ...' if len(classes) > 20 else ''}")
    return indices


def class_position(classes: np.ndarray, label) -> Optional[int]:
    """The index of the single label ``label`` in ``classes`` (None if it is not one of
    them): a string matches a string, a number (not a bool) a number."""
    text = isinstance(label, str)
    if isinstance(label, (bool, np.bool_)) or not (text or isinstance(label, numbers.Real)) \
            or text != (classes.dtype.kind == "U"):
        return None
    hits = np.flatnonzero(classes == label)
    return int(hits[0]) if len(hits) else None


def check_classes(classes, n_classes: int) -> np.ndarray:
    """``classes`` (a sequence of labels) as ``classes_``: 1-D, ``n_classes`` distinct
    labels, all numbers or all strings."""
    classes = as_labels(classes, "classes_")
    if classes.ndim != 1 or len(classes) != n_classes or len(np.unique(classes)) != n_classes:
        raise ValueError(f"classes_ must list the model's {n_classes} classes, each once, "
                         f"in the order of the outputs; got {classes.tolist()[:20]}")
    return classes


class SoftmaxCrossEntropy:
    """Targets: class labels (n,) of any kind, as :func:`class_indices` maps them, or
    one-hot rows (n, k). Predictions: the class (of ``classes_``) of the largest logit."""

    name = kernel = "softmax_cross_entropy"
    classifier = True
    one_hot = True          # labels (n,) become one output per class
    output_activation = "softmax"
    metric_name = Accuracy.name
    labels_layout = (np.dtype(np.int64), False)   # predict's labels: one class index per row

    def units_problem(self, units: int) -> Optional[str]:
        """Why an output layer of ``units`` cannot serve this loss (None if it can)."""
        if units >= 2:
            return None
        return (f"needs an output layer of at least 2 units; for two classes use 2 units, "
                f"or 1 unit with {BinaryCrossEntropy.name}")

    def label_classes(self, n_outputs: int) -> int:
        """The classes of one label per sample that ``n_outputs`` units predict."""
        return n_outputs

    def label_indices(self, Y: np.ndarray) -> np.ndarray:
        """The class index of each row of the encoded targets ``Y`` (one-hot)."""
        return Y.argmax(axis=1)

    def n_classes(self, n_outputs: int) -> int:
        return n_outputs

    def targets(self, y, name: str, n_outputs: int, dtype: np.dtype,
                classes: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(dense one-hot targets (n, k) of ``dtype``, the classes they index)."""
        y = as_labels(y, name)
        if y.ndim == 2:
            y = _columns(as_samples(y, name, (2,)), name, n_outputs)
            _check_binary(y, name, self.name)
            bad_rows = y.sum(axis=1) != 1
            if bad_rows.any():
                row = first_index(bad_rows)
                raise ValueError(f"{name} of shape (n_samples, k) must be one-hot for "
                                 f"{self.name} (exactly one 1 per row); row {row} is "
                                 f"{y[row].tolist()}")
            return to_dtype(y, name, dtype), _known(classes, n_outputs)
        indices, classes = class_indices(y, name, n_outputs, classes, self.name)
        onehot = np.zeros((len(y), n_outputs), dtype)
        onehot[np.arange(len(y)), indices] = 1
        return onehot, classes

    def predict(self, logits: np.ndarray, backend) -> np.ndarray:
        return logits.argmax(axis=1)

    def labels(self, predicted: np.ndarray, classes: Optional[np.ndarray]) -> np.ndarray:
        """predict's class indices as classes (unchanged without classes)."""
        return predicted if classes is None else classes[predicted]

    def metric(self, backend) -> Accuracy:
        return Accuracy(lambda z, y: int(np.count_nonzero(z.argmax(axis=1) == y.argmax(axis=1))))


def _known(classes: Optional[np.ndarray], n_classes: int) -> np.ndarray:
    """The model's classes, or 0..n_classes-1 when it has none yet (one-hot or
    multilabel targets: each column is the class of its index)."""
    return np.arange(n_classes) if classes is None else classes


class BinaryCrossEntropy:
    """Targets: for one output, two classes (n,) of any kind, as :func:`class_indices`
    maps them (0/1 are their own); for k outputs, 0/1 (n, k) for k independent labels.
    Predictions: where sigmoid(z) > 0.5, i.e. z > 0: the second class of ``classes_``
    (1), else the first (0); 0/1 (n, k) for k outputs."""

    name = kernel = "binary_cross_entropy"
    classifier = True
    one_hot = False         # one output holds two classes
    output_activation = "sigmoid"
    metric_name = Accuracy.name
    labels_layout = (np.dtype(np.int64), True)   # predict's labels: 0/1 per output

    def units_problem(self, units: int) -> None:
        return None

    def label_classes(self, n_outputs: int) -> Optional[int]:
        """2 for one output; None for k outputs (k independent labels, not one)."""
        return 2 if n_outputs == 1 else None

    def label_indices(self, Y: np.ndarray) -> np.ndarray:
        """The class index (0 or 1) of each row of the encoded targets ``Y`` (n, 1)."""
        return Y[:, 0] > 0.5

    def n_classes(self, n_outputs: int) -> int:
        return 2 if n_outputs == 1 else n_outputs

    def targets(self, y, name: str, n_outputs: int, dtype: np.dtype,
                classes: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(dense 0/1 targets (n, k) of ``dtype``, the classes)."""
        y = as_labels(y, name)
        if n_outputs == 1 and (y.ndim == 1 or y.shape[1] == 1):
            indices, classes = class_indices(y.reshape(len(y)), name, 2, classes, self.name)
            return indices.astype(dtype).reshape(len(y), 1), classes
        y = _columns(as_samples(y, name, (1, 2)), name, n_outputs)
        _check_binary(y, name, self.name)
        return to_dtype(y, name, dtype), _known(classes, n_outputs)

    def predict(self, logits: np.ndarray, backend) -> np.ndarray:
        return (logits > 0).astype(np.int64)

    def labels(self, predicted: np.ndarray, classes: Optional[np.ndarray]) -> np.ndarray:
        """predict's 0/1 as classes for one output (unchanged without classes, or for
        k outputs)."""
        return predicted if classes is None or predicted.ndim == 2 else classes[predicted]

    def metric(self, backend) -> Accuracy:
        return Accuracy(lambda z, y: int(np.count_nonzero(((z > 0) == (y > 0.5)).all(axis=1))))


class MeanSquaredError:
    """Targets: real values (n,) or (n, k). Predictions: the outputs themselves."""

    name = kernel = "mse"
    classifier = False
    one_hot = False
    output_activation = "identity"
    metric_name = R2.name
    labels_layout = (None, True)   # predict's labels: the outputs, in the model's dtype

    def units_problem(self, units: int) -> None:
        return None

    def label_classes(self, n_outputs: int) -> None:
        """None: real-valued targets hold no class labels."""
        return None

    def n_classes(self, n_outputs: int) -> None:
        return None

    def targets(self, y, name: str, n_outputs: int, dtype: np.dtype,
                classes: Optional[np.ndarray] = None) -> Tuple[np.ndarray, None]:
        """(the targets (n, k) of ``dtype``, None: no classes)."""
        y = to_dtype(_columns(as_samples(y, name, (1, 2)), name, n_outputs), name, dtype)
        return y, None

    def predict(self, logits: np.ndarray, backend) -> np.ndarray:
        return logits.copy()

    def labels(self, predicted: np.ndarray, classes: None) -> np.ndarray:
        return predicted

    def metric(self, backend) -> R2:
        return R2()


class Poisson(MeanSquaredError):
    """Half the Poisson deviance with a log link (scikit-learn's MLPRegressor
    loss="poisson"): the outputs are log(mu). Targets: counts or rates, real values >= 0
    (n,) or (n, k); a target 0 adds mu (xlogy(0, .) = 0). Predictions: mu = e^z, by the
    backend's output kernel (the value the fused predictor gives); the metric is R^2 of
    mu against y."""

    name = kernel = "poisson"
    output_activation = "exp"

    def targets(self, y, name: str, n_outputs: int, dtype: np.dtype,
                classes: Optional[np.ndarray] = None) -> Tuple[np.ndarray, None]:
        """(the targets (n, k) of ``dtype``, None); ValueError naming the first negative."""
        y, _ = super().targets(y, name, n_outputs, dtype)
        negative = y < 0
        if negative.any():
            row, col = np.unravel_index(first_index(negative.ravel()), y.shape)
            raise ValueError(f"{name} must be >= 0 for {self.name} (a log link predicts "
                             f"positive means); got {y[row, col]} at row {row}, column {col}")
        return y, None

    def predict(self, logits: np.ndarray, backend) -> np.ndarray:
        means = np.empty_like(logits)
        backend.output(self.kernel, logits, means)
        return means

    def metric(self, backend) -> R2:
        return R2(lambda logits: self.predict(logits, backend))


_REGISTRY = {loss.name: loss for loss in (SoftmaxCrossEntropy(), BinaryCrossEntropy(),
                                          MeanSquaredError(), Poisson())}
LOSSES = tuple(_REGISTRY)     # the names, as model files and the CLI spell them


def get_loss(name: str):
    """The loss object registered under ``name`` (already validated)."""
    return _REGISTRY[name]
