"""The estimators' input checks: X and y as scikit-learn's MLP validates them, the dtype
they are converted to (scikit-learn's rule), the targets a network trains on, and the
class weights folded into the row weights.

Each function takes the estimator (its parameters and fitted state) and returns plain
arrays; :mod:`fastmlp.sklearn.estimators` calls them at the start of fit, partial_fit and
predict.
"""
from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from .heldout import binarize, fitted_label_binarizer

#: the scipy.sparse formats X may come in (the model reads CSR: docs/sparse.md)
SPARSE = ("csr", "csc")


def validated(estimator, *args, **kwargs):
    """scikit-learn's validate_data with NumPy's cast-overflow warning silenced: a value
    beyond the dtype's range becomes inf, which validate_data then refuses with its
    ValueError naming X (the warning would come first, and be the error under -W error)."""
    with np.errstate(over="ignore"):
        return validate_data(estimator, *args, **kwargs)


def input_dtype(estimator, first_pass: bool):
    """The dtype X is converted to: float32 with a ``precision`` (its master weights);
    ``dtype`` when set; else, as scikit-learn, float32
    or float64 input kept and anything else float64 for a new network, and the fitted
    network's dtype for partial_fit and warm-start fits (scikit-learn updates its coefs_
    in place, so they keep their dtype)."""
    if estimator.precision is not None:      # bfloat16 products keep float32 masters
        return np.float32
    if estimator.dtype is not None:
        return estimator.dtype
    if first_pass:
        return (np.float64, np.float32)
    if hasattr(estimator, "model_"):
        return estimator.model_.dtype
    dtype = np.result_type(*estimator.__dict__["_coefs"])     # coefs_ set by hand
    return dtype if dtype in (np.float32, np.float64) else np.float64


def _x_and_y(estimator, X, y, reset: bool, dtype, **checks):
    """X in ``dtype`` (one or a tuple of allowed dtypes) and y, a one-column y made 1-D
    (with scikit-learn's DataConversionWarning)."""
    X, y = validated(estimator, X, y, multi_output=True, accept_sparse=SPARSE, dtype=dtype,
                     order="C", reset=reset, **checks)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return X, y


def classifier_input(estimator, X, y, incremental: bool, reset: bool, dtype):
    """X, the binarized targets (n, k) in X's dtype and the labels (for stratification
    and the validation score); classes_ as scikit-learn sets them."""
    X, y = _x_and_y(estimator, X, y, reset, dtype)
    if not hasattr(estimator, "classes_") or (not estimator.warm_start and not incremental):
        estimator._label_binarizer = fitted_label_binarizer(y)
        estimator.classes_ = estimator._label_binarizer.classes_
    else:
        classes = unique_labels(y)
        if estimator.warm_start and not incremental and set(classes) != set(estimator.classes_):
            raise ValueError("warm_start can only be used where `y` has the same classes "
                             f"as in the previous call to fit. Previously got "
                             f"{estimator.classes_}, `y` has {classes}")
        if len(np.setdiff1d(classes, estimator.classes_, assume_unique=True)):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                             f"has {estimator.classes_}. 'y' has {classes}.")
    Y = binarize(estimator._label_binarizer, y).astype(X.dtype)
    return X, Y, y


def regressor_input(estimator, X, y, reset: bool, dtype):
    """X, the targets (n, k) in X's dtype, and y."""
    X, y = _x_and_y(estimator, X, y, reset, dtype, y_numeric=True)
    Y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=X.dtype)
    return X, Y, y


def with_class_weight(class_weight, labels, sample_weight, incremental: bool):
    """``sample_weight`` times each row's class weight (scikit-learn's
    ``compute_sample_weight``: a dict {label: weight}, or "balanced",
    n_samples / (n_classes * bincount(y)) of this call's y, so not with partial_fit)."""
    if class_weight is None:
        return sample_weight
    if incremental and class_weight == "balanced":
        raise ValueError("class_weight='balanced' weighs the classes by their counts in "
                         "the whole y, which partial_fit does not see: pass a dict "
                         "{label: weight} for partial_fit")
    weights = compute_sample_weight(class_weight, labels)
    return weights if sample_weight is None else sample_weight * weights
