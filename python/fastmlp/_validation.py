"""Checks of public arguments. Every message names the argument, what was expected and
what was given, so a mistake can be fixed from the message alone.

Type mistakes raise TypeError, wrong values or shapes raise ValueError.
"""
from __future__ import annotations

import math
import numbers
import sys
from typing import Iterable, NoReturn, Optional, Sequence

import numpy as np

from ._sparse import as_csr_rows, is_sparse_input

DTYPES = ("float32", "float64")


def check_int(value, name: str, *, minimum: int = 1) -> int:
    """An integer (not a bool) >= minimum."""
    if type(value) is int and value >= minimum:     # the common case, without the ABC check
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r} "
                        f"of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def _check_finite_real(value, name: str, expected: str, accept) -> float:
    """A finite real number (not a bool) for which ``accept(value)`` holds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}; got {value!r} "
                        f"of type {type(value).__name__}")
    if not (math.isfinite(value) and accept(value)):
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return float(value)


def check_finite_float(value, name: str) -> float:
    """A finite real number (not a bool)."""
    return _check_finite_real(value, name, "a finite number", lambda v: True)


def check_positive_float(value, name: str) -> float:
    """A finite real number > 0 (not a bool)."""
    return _check_finite_real(value, name, "a positive finite number", lambda v: v > 0)


def check_nonnegative_float(value, name: str) -> float:
    """A finite real number >= 0 (not a bool)."""
    return _check_finite_real(value, name, "a finite number >= 0", lambda v: v >= 0)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    """One of the names in ``choices``."""
    choices = list(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {choices}; got {value!r}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")
    return value


def check_dtype(value) -> np.dtype:
    """"float32" or "float64" given as a name, a NumPy type or a dtype. NumPy parses a
    string with a comma as a structured dtype and raises SyntaxError (",") or ValueError
    for a malformed one: every such name is a ValueError here too."""
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError, SyntaxError):
        dtype = None
    if dtype is None or dtype.name not in DTYPES or isinstance(value, bool):
        raise ValueError(f"dtype must be one of {list(DTYPES)}; got {value!r}")
    return dtype


def check_seed(seed) -> Optional[int]:
    if seed is None:
        return None
    return check_int(seed, "seed", minimum=0)


def first_index(mask: np.ndarray):
    """Index of the first True entry, as an int (1-D) or a tuple of ints."""
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    return index[0] if len(index) == 1 else index


# ------------------------------------------------------------------ pandas
# pandas is optional: an object is a DataFrame or Series only if pandas is already imported.
def _pandas_type(data, kind: str) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, getattr(pandas, kind))


def is_pandas(data) -> bool:
    """Whether ``data`` is a pandas DataFrame or Series."""
    return _pandas_type(data, "DataFrame") or _pandas_type(data, "Series")


def _is_numeric(dtype) -> bool:
    """A NumPy or pandas dtype of real numbers: bool, (nullable) integer, float."""
    return getattr(dtype, "kind", "O") in "biuf"


def _where(pandas_object, row: int) -> str:
    """Row ``row`` (0-based position) for messages, with its index label if that differs."""
    label = pandas_object.index[row]
    label = label.item() if isinstance(label, np.generic) else label
    return f"row {row}" if label == row else f"row {row} (index {label!r})"


def _missing_value(value) -> bool:
    """None, NaN, pd.NA, NaT: what pandas counts as missing."""
    return (value is None or type(value).__name__ in ("NAType", "NaTType")
            or (isinstance(value, numbers.Real) and value != value))


def _frame_array(frame, name: str) -> np.ndarray:
    """A DataFrame of bool, (nullable) integer and float columns as a float64 array.
    Any other column (text, category, dates) is a TypeError naming every such column
    and the fix; a missing value (NaN, pd.NA) or an infinity a ValueError naming its
    column and row."""
    other = {str(column): str(dtype) for column, dtype in frame.dtypes.items()
             if not _is_numeric(dtype)}
    if other:
        columns = list(other)
        raise TypeError(f"{name} must hold numbers; its columns {other} do not: drop them "
                        f"({name}.drop(columns={columns})) or encode them as numbers, e.g. "
                        f"pandas.get_dummies({name}, columns={columns}) or scikit-learn's "
                        f"OrdinalEncoder")
    array = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(array)
    if bad.any():
        row, column = first_index(bad)
        value = frame.iloc[row, column]
        fix = (f"; fill or drop the missing values first ({name}.fillna(...) or "
               f"{name}.dropna())" if _missing_value(value) else "")
        raise ValueError(f"{name} must be finite; column {str(frame.columns[column])!r} "
                         f"holds {value} at {_where(frame, row)}{fix}")
    return array


def _series_array(series, name: str) -> np.ndarray:
    """A Series as a NumPy array: a NumPy dtype as it is (NaN is found by the caller's
    checks); a nullable one (Int64, boolean, Float64) as its NumPy dtype; any other
    (text, category) as an object array of its values. A missing value (pd.NA, None) in
    a Series without a NumPy dtype is a ValueError naming its row."""
    if isinstance(series.dtype, np.dtype):
        return series.to_numpy()
    missing = series.isna().to_numpy()
    if missing.any():
        row = first_index(missing)
        raise ValueError(f"{name} holds a missing value ({series.iloc[row]}) at "
                         f"{_where(series, row)}; fill or drop it first")
    if _is_numeric(series.dtype):
        return series.to_numpy(dtype=series.dtype.numpy_dtype)
    return series.to_numpy(dtype=object)


def as_array(data, name: str) -> np.ndarray:
    """``data`` as a NumPy array: a pandas DataFrame by :func:`_frame_array`, a Series by
    :func:`_series_array`, anything else (arrays, nested lists) by ``np.asarray``."""
    if _pandas_type(data, "DataFrame"):
        return _frame_array(data, name)
    if _pandas_type(data, "Series"):
        return _series_array(data, name)
    try:
        return np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from None


def _real_array(data, name: str) -> np.ndarray:
    """``data`` (array, nested lists, DataFrame, Series) as a real array, bool taken as
    0/1."""
    array = as_array(data, name)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    return array.astype(np.int8) if array.dtype.kind == "b" else array


def check_finite(array: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        index = first_index(bad)
        raise ValueError(f"{name} must be finite; it holds {array[index]} at index {index}")


def to_dtype(array: np.ndarray, name: str, dtype: np.dtype, *,
             finite_checked_later: bool = False) -> np.ndarray:
    """``array`` as finite C-contiguous ``dtype`` (copied only if needed); a value beyond
    the dtype's range (1e39 as float32) is an error, not an inf. ``finite_checked_later``:
    the caller's next step (the fused predictor, as it reads each chunk) checks
    finiteness and calls :func:`raise_not_finite` on failure, so an array that needs no
    conversion is returned unchecked."""
    if array.dtype == dtype and array.flags.c_contiguous:
        if finite_checked_later:
            return array
        converted = array                      # nothing to convert (the common case)
    else:
        with np.errstate(over="ignore"):
            converted = np.ascontiguousarray(array, dtype=dtype)
    if not np.isfinite(converted).all():       # one pass; the index only on failure
        raise_not_finite(array, converted, name)
    return converted


def raise_not_finite(array: np.ndarray, converted: np.ndarray, name: str) -> NoReturn:
    """The ValueError for the first element of ``converted`` (``array`` after the
    conversion to the model's dtype) that is not finite: NaN or an infinity in ``array``,
    or a value beyond the dtype's range."""
    index = first_index(~np.isfinite(converted))
    if np.isfinite(array[index]):
        raise ValueError(f"{name} holds {array[index]} at index {index}, beyond the range "
                         f"of {converted.dtype}")
    raise ValueError(f"{name} must be finite; it holds {array[index]} at index {index}")


def _samples_array(data, name: str, ndims: Sequence[int]) -> np.ndarray:
    """``data`` as a real array of samples (rows): ndim in ``ndims``, at least one sample."""
    return _check_rows(_real_array(data, name), name, ndims)


def _check_rows(array: np.ndarray, name: str, ndims: Sequence[int]) -> np.ndarray:
    """``array`` if it is one of samples (rows): ndim in ``ndims``, at least one sample."""
    if array.ndim not in ndims:
        shapes = " or ".join({1: "(n_samples,)", 2: "(n_samples, n_columns)"}[d] for d in ndims)
        raise ValueError(f"{name} must have shape {shapes}; got an array of shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); at least one sample is needed")
    return array


def as_samples(data, name: str, ndims: Sequence[int]) -> np.ndarray:
    """``data`` as a finite real array of samples (rows): ndim in ``ndims``, at least one
    sample. The dtype is not changed (targets are checked before conversion)."""
    array = _samples_array(data, name, ndims)
    check_finite(array, name)
    return array


def as_labels(data, name: str) -> np.ndarray:
    """``data`` as a 1-D or 2-D array of class labels, at least one sample: finite real
    numbers (bool as 0/1) or strings (dtype ``<U``). A missing label (None, NaN, pd.NA,
    an empty string) is a ValueError naming its index; labels of another type (bytes,
    dates, numbers mixed with strings) a TypeError."""
    array = as_array(data, name)
    if array.dtype.kind == "U" and isinstance(data, (list, tuple)):
        array = np.asarray(data, dtype=object)     # NumPy would turn numbers into text
    if array.dtype.kind == "O":
        array = _object_labels(array, name)
    if array.dtype.kind in "biuf":
        return as_samples(array, name, (1, 2))
    if array.dtype.kind != "U":
        raise TypeError(f"{name} must hold class labels, numbers or strings; got dtype "
                        f"{array.dtype}")
    _check_rows(array, name, (1, 2))
    empty = np.char.str_len(np.char.strip(array)) == 0
    if empty.any():
        index = first_index(empty)
        raise ValueError(f"{name} holds an empty label {str(array[index])!r} at index {index}; "
                         "class labels must not be empty (a missing value?)")
    return array


def _object_labels(array: np.ndarray, name: str) -> np.ndarray:
    """An object array of labels (lists of str, pandas text) as strings or numbers."""
    missing = np.array([_missing_value(value) for value in array.flat],
                       bool).reshape(array.shape)
    if missing.any():
        index = first_index(missing)
        raise ValueError(f"{name} holds a missing label ({array[index]}) at index {index}; "
                         "fill or drop it first")
    if all(isinstance(value, str) for value in array.flat):
        return array.astype(str)
    if all(isinstance(value, numbers.Real) for value in array.flat):
        return np.array(array.tolist())
    kinds = sorted({type(value).__name__ for value in array.flat})
    raise TypeError(f"{name} must hold class labels of one kind, all numbers or all "
                    f"strings; got {kinds}")


def as_features(X, name: str, n_features: int, dtype: np.dtype, *,
                finite_checked_later: bool = False, accept_sparse: bool = False):
    """X as a finite C-contiguous (n_samples, n_features) array of ``dtype``, converted
    once and checked once (after the conversion, which also catches overflow; see
    to_dtype for ``finite_checked_later``). With ``accept_sparse`` a scipy.sparse X
    comes back as checked :class:`fastmlp._sparse.CsrRows`; without, it is a TypeError."""
    if is_sparse_input(X):
        if not accept_sparse:
            raise TypeError(f"{name} is a scipy.sparse matrix (shape {X.shape}), which this "
                            f"model does not take; pass {name}.toarray(), or use a "
                            f"Sequential or a scikit-learn estimator")
        return as_csr_rows(X, name, n_features, dtype)
    array = _samples_array(X, name, (2,))
    if array.shape[1] != n_features:
        raise ValueError(f"{name} has {array.shape[1]} features per sample (shape "
                         f"{array.shape}); the model expects input_dim={n_features}")
    return to_dtype(array, name, dtype, finite_checked_later=finite_checked_later)


def as_shaped(data, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """``data`` as a finite C-contiguous array of exactly ``shape`` and ``dtype``."""
    array = _real_array(data, name)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {array.shape}")
    return to_dtype(array, name, dtype)


def check_lengths(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if len(x) != len(y):
        raise ValueError(f"{x_name} and {y_name} must have the same number of samples; "
                         f"got {len(x)} and {len(y)}")


def check_sample_weight(sample_weight, n: int, dtype: np.dtype,
                        name: str = "sample_weight") -> np.ndarray:
    """sample_weight (the argument ``name``) as a finite, non-negative (n,) array of
    ``dtype`` with a positive sum."""
    weights = as_samples(sample_weight, name, (1,))
    if len(weights) != n:
        raise ValueError(f"{name} must have one weight per sample, shape ({n},); got "
                         f"shape {weights.shape}")
    negative = weights < 0
    if negative.any():
        index = first_index(negative)
        raise ValueError(f"{name} must be >= 0; got {weights[index]} at index {index}")
    weights = to_dtype(weights, name, dtype)
    if not weights.sum(dtype=np.float64) > 0:
        raise ValueError(f"{name} must not be all zeros (the weighted mean needs a "
                         "positive total weight)")
    return weights
