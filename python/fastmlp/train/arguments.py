"""fit's arguments as the loop uses them: the optimizer, the validation arrays, the
per-sample weights (from ``sample_weight`` and ``class_weight``)."""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Union

import numpy as np

from .._validation import check_nonnegative_float, check_sample_weight
from ..io.sources import as_source
from ..nn.losses import class_position, get_loss
from ..optim.optimizers import SGD, Optimizer, get_optimizer

__all__ = ["PreparedData", "fit_data", "fit_optimizer", "sample_weights", "validation_pass"]


class PreparedData(NamedTuple):
    """A Sequential's fit X and y as its ``prepare_data`` returns them: X checked and
    converted (an (n, input_dim) finite C-contiguous array of the model's dtype, or CSR
    rows) and dense targets Y (n, k) in the model's dtype, one-hot or 0/1 as the model's
    classification loss takes them. A caller that made them so itself (the scikit-learn
    classifier, after its own validation) passes one as X, with y None: fit then takes
    them unchecked (prepare_data's checks cost about 140 us for digits' 1,797 rows).
    Not for users."""

    X: object
    Y: np.ndarray


def fit_optimizer(model, optimizer, learning_rate) -> Optimizer:
    """The optimizer this fit uses, not yet stored on the model (docs/conventions.md): a given
    one (a name: a new instance at ``learning_rate`` or its default rate; an instance:
    as is, ValueError with learning_rate); else the model's kept one (a new SGD the first
    time), whose rate a given learning_rate replaces (its state and counters are kept)."""
    if optimizer is not None:
        return get_optimizer(optimizer, learning_rate)
    if model.optimizer is None:
        return SGD() if learning_rate is None else SGD(learning_rate)
    if learning_rate is not None:
        model.optimizer.learning_rate = learning_rate
    return model.optimizer


def fit_data(model, X: Union[PreparedData, object], y):
    """fit's X and dense targets: ``model.prepare_data(X, y)``, or a :class:`PreparedData`
    X's as they are, the model learning their classes as prepare_data does from dense
    targets (its own, else each column's index)."""
    if type(X) is not PreparedData:
        if y is None:
            raise TypeError("fit needs the targets y with arrays X (y=None only with a "
                            "streamed source that holds them, or PreparedData)")
        return model.prepare_data(X, y)
    if y is not None:
        raise TypeError("fit takes PreparedData as X with y None")
    n_classes = get_loss(model.loss).n_classes(X.Y.shape[1])
    if model.classes_ is None and n_classes is not None:
        model.classes_ = np.arange(n_classes)
    return X.X, X.Y


def validation_pass(model, validation_data) -> Optional[Callable[[], dict]]:
    """fit's ``validation_data`` as a call that evaluates the model on it (None without):
    a pair (X_val, y_val) of arrays, checked and converted once; or a source, read again
    at each call: a :class:`fastmlp.io.sources.Source`, or a pair that fit's ``X, y``
    would make one (an .npy path and its targets, a Parquet path and its target column,
    a Dask collection...)."""
    if validation_data is None:
        return None
    pair = isinstance(validation_data, (tuple, list))
    if pair and len(validation_data) != 2:
        raise TypeError(f"validation_data must be a pair (X_val, y_val) or a source; got "
                        f"a {type(validation_data).__name__} of {len(validation_data)}")
    try:
        source = (as_source(*validation_data) if pair else as_source(validation_data, None))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"validation_data: {exc}") from None
    if source is None:
        if not pair:
            raise TypeError("validation_data must be a pair (X_val, y_val) or a source; "
                            f"got {type(validation_data).__name__}")
        X, Y = model.prepare_data(*validation_data, "validation_data[0]", "validation_data[1]")
        return functools.partial(model.evaluate_arrays, X, Y)
    return functools.partial(model.evaluate_source, source)


def _class_weights(model, Y: np.ndarray, class_weight) -> np.ndarray:
    """Per-sample weights (float64) from ``class_weight``: a dict {label: weight} over
    labels of ``model.classes_`` (labels missing from it weigh 1) or "balanced":
    n_samples / (n_classes * bincount(y)) over the classes present in y, as
    scikit-learn's compute_class_weight."""
    loss = get_loss(model.loss)
    if not loss.classifier:
        raise ValueError("class_weight needs a classification loss; this model's loss is "
                         f"{loss.name!r}: use sample_weight")
    n_classes = loss.label_classes(Y.shape[1])
    if n_classes is None:
        raise ValueError(f"class_weight needs one label per sample; with {loss.name} "
                         f"over {Y.shape[1]} outputs (multilabel) use sample_weight")
    labels = loss.label_indices(Y).astype(np.intp)
    counts = np.bincount(labels, minlength=n_classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict {{label: weight}} or 'balanced'; "
                             f"got {class_weight!r}")
        present = counts > 0
        per_class = np.ones(n_classes)
        per_class[present] = len(labels) / (np.count_nonzero(present) * counts[present])
        return per_class[labels]
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{label: weight}} or 'balanced'; got "
                        f"{type(class_weight).__name__}")
    per_class = np.ones(n_classes)
    for label, weight in class_weight.items():
        index = class_position(model.classes_, label)
        if index is None:
            raise ValueError(f"class_weight has key {label!r}, not one of the model's "
                             f"classes_ {model.classes_.tolist()[:20]}")
        per_class[index] = check_nonnegative_float(weight, f"class_weight[{label!r}]")
    return per_class[labels]


def sample_weights(model, X: np.ndarray, Y: np.ndarray, sample_weight,
                   class_weight) -> Optional[np.ndarray]:
    """The per-sample weights fit uses (None when neither is given): sample_weight times
    the weight of each sample's class, in the model's dtype."""
    if sample_weight is None and class_weight is None:
        return None
    weights = np.ones(len(X))
    if sample_weight is not None:
        weights = check_sample_weight(sample_weight, len(X), np.dtype(np.float64))
    if class_weight is not None:
        weights = weights * _class_weights(model, Y, class_weight)
    return check_sample_weight(weights, len(X), model.dtype)
