"""The estimators' streamed fits (README "Training from disk"): a source
(:mod:`fastmlp.io.sources`) read through the estimator's own input checks, chunk by chunk.

Before training, :func:`survey` reads what the network's shape and scikit-learn's fitted
attributes need: the first chunk (the features' count and names, the dtype, a regressor's
outputs) and, when the source does not know them, the rows; a classifier's first fit
reads every chunk's labels (``Source.targets``: the targets alone from .npy files and
Parquet) for classes_ and their counts for ``class_weight="balanced"``, which then weighs
the classes by the whole stream's counts, as fit on arrays does.
partial_fit's first call takes ``classes`` as for arrays. Then :class:`EstimatorChunks`
hands the network each chunk as fit hands it arrays: X validated (the fitted feature
count and names), targets binarized (classifier) or made 2-D (regressor), class weights
folded into the row weights.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np

from ..io.sources import Chunk, Source
from .heldout import fitted_label_binarizer
from .inputs import validated


class StreamShape(NamedTuple):
    """What a survey finds: rows, features, targets' width, dtype, class weights."""
    n: int
    n_features: int
    n_outputs: int
    dtype: np.dtype
    class_weight: object


def refuse(estimator, sample_weight, given, incremental: bool) -> None:
    """ValueError for what a streamed fit cannot do."""
    if estimator.solver == "lbfgs":
        raise ValueError("solver='lbfgs' evaluates the whole data at every iteration and "
                         "needs arrays; a streamed X trains with a stochastic solver "
                         "('adam', 'sgd', ...)")
    if sample_weight is not None:
        raise ValueError("a streamed fit takes its sample weights from the source (e.g. "
                         "fastmlp.sources.Npy(X, y, sample_weight=...) or a Parquet column), "
                         "not sample_weight=")
    if estimator.early_stopping and not incremental and given[0] is None:
        raise ValueError("early_stopping=True with a streamed X needs validation data: "
                         "X_val and y_val (arrays, or a source as X is: e.g. X_val="
                         "fastmlp.sources.Npy('val_X.npy', 'val_y.npy')); a "
                         "validation_fraction hold-out cannot be drawn from a stream")


def survey(estimator, source: Source, dtype, first_pass: bool, incremental: bool,
           classifier: bool) -> StreamShape:
    """The stream's shape (module docstring); sets n_features_in_, and a classifier's
    classes_ when fit on arrays would (fastmlp.sklearn.inputs.classifier_input)."""
    sizes = source.chunk_sizes()
    learn = classifier and (not hasattr(estimator, "classes_")
                            or (not estimator.warm_start and not incremental))
    class_weight = getattr(estimator, "class_weight", None)
    if class_weight == "balanced" and incremental:
        raise ValueError("class_weight='balanced' weighs the classes by their counts in the "
                         "whole y, which partial_fit does not see: pass a dict "
                         "{label: weight} for partial_fit")
    count = learn or class_weight == "balanced"
    first, first_y = _first_chunk(estimator, source, dtype, first_pass)
    rows, labels, counts = 0, [], {}
    if sizes is None or count:        # a pass over the targets (alone, where they can be)
        for y in source.targets():
            y = np.asarray(y)
            rows += len(y)
            if count and y.ndim == 1 and len(y):
                values, found = np.unique(y, return_counts=True)
                labels.append(values)
                for value, count in zip(values.tolist(), found.tolist()):
                    counts[value] = counts.get(value, 0) + count
    n = sum(sizes) if sizes is not None else rows
    if learn:
        estimator._label_binarizer = fitted_label_binarizer(
            np.unique(np.concatenate(labels)) if labels else first_y)
        estimator.classes_ = estimator._label_binarizer.classes_
    if class_weight == "balanced" and counts:
        class_weight = {label: n / (len(counts) * found) for label, found in counts.items()}
    if classifier:
        binarizer = estimator._label_binarizer
        n_outputs = 1 if binarizer.y_type_ == "binary" else len(binarizer.classes_)
    else:
        n_outputs = 1 if first_y.ndim == 1 else first_y.shape[1]
    return StreamShape(n, first.shape[1], n_outputs, first.dtype, class_weight)


def _first_chunk(estimator, source: Source, dtype, first_pass: bool):
    """The first non-empty chunk's X, validated as fit's (n_features_in_ and the feature
    names set on a first pass), and its targets."""
    for X, y, _ in source.chunks():
        if len(X):
            return (validated(estimator, X, reset=first_pass, accept_sparse=False, dtype=dtype,
                              order="C"), np.asarray(y))
    raise ValueError(f"the {source.kind} source holds no rows")


class EstimatorChunks(Source):
    """A source's chunks as the estimator's network trains on them (module docstring)."""

    def __init__(self, estimator, source: Source, dtype, class_weight):
        self.estimator, self.source, self.dtype = estimator, source, dtype
        self.kind = source.kind
        self.per_class = None    # class_weight per entry of classes_ (missing labels: 1)
        if class_weight is not None:
            self.per_class = np.array([float(class_weight.get(label, 1.0))
                                       for label in estimator.classes_.tolist()])

    def chunk_sizes(self):
        return self.source.chunk_sizes()

    def read(self, i: int) -> Iterator[Chunk]:
        return (self._mapped(*piece) for piece in self.source.read(i))

    def chunks(self, order=None) -> Iterator[Chunk]:
        return (self._mapped(*piece) for piece in self.source.chunks(order))

    def _mapped(self, X, y, w) -> Chunk:
        estimator = self.estimator
        X, Y, labels = estimator._validate_input(X, y, True, reset=False, dtype=self.dtype)
        if self.per_class is None:
            return X, Y, w
        weights = self.per_class[np.searchsorted(estimator.classes_, labels)]
        return X, Y, weights if w is None else weights * np.asarray(w, np.float64)


def network_classes(loss, n_outputs: int) -> Optional[np.ndarray]:
    """The network's classes for binarized targets (as fit_data sets them)."""
    n_classes = loss.n_classes(n_outputs)
    return None if n_classes is None else np.arange(n_classes)
