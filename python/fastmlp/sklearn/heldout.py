"""The estimators' validation data: ``fit(X, y, X_val=..., y_val=..., sample_weight_val=...)``
as scikit-learn's HistGradientBoosting takes it, checked against the training data
(:func:`given_validation`), and the validation set's loss and score; the
classifier's label binarizer, fitted and applied (:func:`fitted_label_binarizer`,
:func:`binarize`), here as the training and validation labels share it.

A :class:`Validation` is what the stopping rule (fastmlp.sklearn.stopping) scores and
measures each epoch: the rows ``X``, the binarized targets ``Y`` (in the network's
layout), the targets as given ``y`` (for the score) and the row weights ``weight``
(float64, or None). A :class:`StreamedValidation` does the same from a source (X_val a
source, or a path or Dask collection with y_val its targets, as fit takes X and y), read
a chunk at a time at each use, every chunk checked as arrays are.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_array, column_or_1d

from .._validation import check_sample_weight
from ..io.sources import Source, as_source


class Validation(NamedTuple):
    X: np.ndarray
    Y: np.ndarray
    y: np.ndarray
    weight: Optional[np.ndarray]

    def as_input(self, model) -> "Validation":
        """X as ``model`` takes it (``as_input``: sparse rows as CSR rows), converted once
        rather than at every epoch's check."""
        return self._replace(X=model.as_input(self.X, "X_val"))

    def loss(self, model, data_factor: float) -> np.float64:
        """scikit-learn's data loss (no penalty) of ``model`` on the validation rows: the
        weighted mean of the per-sample loss with ``weight``, in scikit-learn's units
        (fastmlp's loss times ``data_factor``, the network module's d)."""
        loss = model.evaluate_arrays(self.X, self.Y, None, _model_weights(model, self.weight))
        return np.float64(loss["loss"] * data_factor)

    def score(self, estimator) -> float:
        """The estimator's early-stopping score (accuracy or R^2) on the rows."""
        return estimator._score(self.X, self.y, self.weight)


def _model_weights(model, weight: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if weight is None else weight.astype(model.dtype)


class StreamedValidation:
    """Validation data read from ``source`` at each use, a chunk at a time (the module
    docstring): each chunk's rows converted as X was (``convert``), its targets as fit's
    y_val, its weights (the source's) as sample_weight_val; errors name the chunk."""

    def __init__(self, estimator, source: Source, n_features: int, n_outputs: int, convert):
        self.estimator, self.source = estimator, source
        self.n_features, self.n_outputs, self.convert = n_features, n_outputs, convert

    def as_input(self, model) -> "StreamedValidation":
        return self          # each chunk's rows are dense arrays of the model's dtype

    def chunks(self) -> Iterator[Validation]:
        """Every chunk as a :class:`Validation` of its rows; ValueError for none."""
        rows = 0
        for i, (X, y, w) in self.source.numbered():
            try:
                chunk = _checked_validation(self.estimator, X, self.source.checked_targets(y),
                                            w, self.n_features, self.n_outputs, self.convert)
            except ValueError as exc:
                raise self.source.in_chunk(exc, i) from None
            rows += len(chunk.y)
            yield chunk
        if rows == 0:
            raise ValueError(f"X_val: the {self.source.kind} source holds no rows")

    def loss(self, model, data_factor: float) -> np.float64:
        """:meth:`Validation.loss` over every chunk (one pass)."""
        loss = model.evaluate_chunks((chunk.X, chunk.Y, _model_weights(model, chunk.weight))
                                     for chunk in self.chunks())["loss"]
        return np.float64(loss * data_factor)

    def score(self, estimator) -> float:
        """:meth:`Validation.score` of every row (one pass: each chunk's predictions are
        kept, with its targets and weights, for the metric)."""
        predicted, targets, weights = [], [], []
        for chunk in self.chunks():
            predicted.append(estimator._predictions(chunk.X))
            targets.append(chunk.y)
            weights.append(chunk.weight)
        weight = None if all(w is None for w in weights) else np.concatenate(
            [np.ones(len(y)) if w is None else w for y, w in zip(targets, weights)])
        return estimator._score_predictions(np.concatenate(targets), np.concatenate(predicted),
                                            weight)


def given_validation(estimator, X_val, y_val, sample_weight_val, n_features: int,
                     n_outputs: int, convert) -> Optional[Validation]:
    """The checked validation data given to fit (None without): X_val converted as X was
    (``convert``), y_val through ``estimator._validation_targets(y_val, n_outputs)``.
    ValueError for one of X_val / y_val without the other, sample_weight_val without them,
    solver="lbfgs", another feature count, non-finite values, mismatched lengths, or
    targets the estimator cannot take (a label outside classes_)."""
    source = _validation_source(X_val, y_val)
    if source is not None:
        _refuse_source(estimator, sample_weight_val)
        return StreamedValidation(estimator, source, n_features, n_outputs, convert)
    if X_val is None and y_val is None:
        if sample_weight_val is not None:
            raise ValueError("sample_weight_val is given without X_val and y_val: pass the "
                             "validation data with its weights, or drop sample_weight_val")
        return None
    if X_val is None or y_val is None:
        given, missing = ("X_val", "y_val") if y_val is None else ("y_val", "X_val")
        raise ValueError(f"{given} is provided, but {missing} was not provided: pass both "
                         f"for validation, or neither")
    _refuse_lbfgs(estimator)
    return _checked_validation(estimator, X_val, y_val, sample_weight_val, n_features,
                               n_outputs, convert)


def _refuse_lbfgs(estimator) -> None:
    if estimator.solver == "lbfgs":
        raise ValueError("solver='lbfgs' has no epochs to validate (scikit-learn's lbfgs "
                         "has no early stopping): X_val and y_val need a stochastic solver")


def _validation_source(X_val, y_val) -> Optional[Source]:
    """X_val (and y_val) as a source when fit would take them as one for X (and y), else
    None; their errors name X_val."""
    if X_val is None:
        return None
    try:
        return as_source(X_val, y_val, memmap=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"X_val, y_val (read as fit reads X, y): {exc}") from None


def _refuse_source(estimator, sample_weight_val) -> None:
    _refuse_lbfgs(estimator)
    if sample_weight_val is not None:
        raise ValueError("a validation source holds its sample weights (e.g. fastmlp.sources."
                         "Npy(X_val, y_val, sample_weight=...)), not sample_weight_val=")


def _checked_validation(estimator, X_val, y_val, sample_weight_val, n_features: int,
                        n_outputs: int, convert) -> Validation:
    """The :class:`Validation` of arrays given to fit (or of a source's chunk)."""
    X_val = _validation_rows(X_val, n_features, convert)
    y_val = np.asarray(y_val)
    if len(y_val) != X_val.shape[0]:
        raise ValueError(f"X_val and y_val must have the same number of rows; got X_val "
                         f"shape {X_val.shape} and y_val shape {y_val.shape}")
    Y_val, y_val = estimator._validation_targets(y_val, n_outputs)
    weight = None if sample_weight_val is None else check_sample_weight(
        sample_weight_val, X_val.shape[0], np.dtype(np.float64), "sample_weight_val")
    return Validation(X_val, Y_val.astype(X_val.dtype), y_val, weight)


def _validation_rows(X_val, n_features: int, convert) -> np.ndarray:
    """X_val as fit converts X (``convert``: scikit-learn's validate_data without reset,
    so feature names are checked too), its errors naming X_val."""
    shape = X_val.shape if hasattr(X_val, "shape") else np.shape(X_val)   # sparse too
    if len(shape) != 2 or shape[1] != n_features:
        raise ValueError(f"X_val must have the shape (n_val, {n_features}) of X's "
                         f"{n_features} features; got shape {shape}")
    try:
        return convert(X_val)
    except ValueError as error:
        raise ValueError(f"X_val: {error}") from error


def fitted_label_binarizer(y) -> LabelBinarizer:
    """``LabelBinarizer().fit(y)`` of fit's validated y. For 1-D integer y, the usual
    labels, its fitted attributes are set here as fit sets them (y_type_ "binary" for at
    most two labels, else "multiclass"; classes_ the sorted labels in y's dtype; no sparse
    input): fit's checks (type_of_target twice) take about 0.3 ms, a fifth of a small
    fit's Python time."""
    binarizer = LabelBinarizer()
    if type(y) is not np.ndarray or y.ndim != 1 or y.dtype.kind not in "iu" or not len(y):
        return binarizer.fit(y)
    classes = np.unique(y)
    binarizer.y_type_ = "multiclass" if len(classes) > 2 else "binary"    # fit's order
    binarizer.sparse_input_ = False
    binarizer.classes_ = classes
    return binarizer


def binarize(label_binarizer, y: np.ndarray) -> np.ndarray:
    """``label_binarizer.transform(y)`` (int, (n, k)) for labels of its classes_: for
    binary and multiclass y computed here as label_binarize's rows, y == classes_ (one
    column, y == classes_[1], for two classes; zeros for one), which costs a few
    microseconds where transform's checks take about half a millisecond of a small fit;
    multilabel y through transform itself."""
    classes = label_binarizer.classes_
    if label_binarizer.y_type_ not in ("binary", "multiclass"):
        return label_binarizer.transform(y)
    onehot = np.asarray(y).reshape(-1, 1) == classes.reshape(1, -1)
    if label_binarizer.y_type_ == "binary":
        onehot = onehot[:, 1:] if len(classes) == 2 else np.zeros((len(onehot), 1), bool)
    return onehot.astype(int)


def classifier_targets(label_binarizer, y_val: np.ndarray):
    """(the binarized targets, the labels) of a classifier's y_val: labels of classes_
    only; for multilabel y an indicator matrix with one column per label."""
    if label_binarizer.y_type_.startswith("multilabel"):
        n_labels = len(label_binarizer.classes_)
        if y_val.ndim != 2 or y_val.shape[1] != n_labels or \
                not type_of_target(y_val).startswith("multilabel"):
            raise ValueError(f"y_val must be a 0/1 indicator matrix of shape (n_val, "
                             f"{n_labels}), as y was; got shape {y_val.shape}")
        return label_binarizer.transform(y_val), y_val
    if y_val.ndim == 2 and y_val.shape[1] == 1:
        y_val = column_or_1d(y_val)
    if y_val.ndim != 1:
        raise ValueError(f"y_val must be 1-D labels as y was; got shape {y_val.shape}")
    unknown = np.setdiff1d(unique_labels(y_val), label_binarizer.classes_)
    if len(unknown):
        raise ValueError(f"y_val has labels {unknown} not in classes_ "
                         f"{label_binarizer.classes_} (the labels of y)")
    return binarize(label_binarizer, y_val), y_val


def regressor_targets(y_val: np.ndarray, n_outputs: int):
    """(the (n_val, k) targets, y_val as given) of a regressor's y_val: numeric, finite,
    with the k outputs of y."""
    y_val = check_array(y_val, ensure_2d=False, dtype=np.float64, input_name="y_val")
    if y_val.ndim == 2 and y_val.shape[1] == 1 and n_outputs == 1:
        y_val = column_or_1d(y_val)
    width = 1 if y_val.ndim == 1 else y_val.shape[1]
    if y_val.ndim > 2 or width != n_outputs:
        raise ValueError(f"y_val must have y's {n_outputs} output(s); got shape "
                         f"{y_val.shape}")
    return y_val.reshape(len(y_val), -1), y_val
