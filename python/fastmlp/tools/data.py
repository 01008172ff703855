"""Train/dev/test splits (docs/conventions.md).

By default the dev and test sets each get min(20 %, 10,000) samples: small data splits
60/20/20, a million samples 98/1/1, as the course notes advise (the dev and test sets only
need to be big enough to tell models apart and to estimate the final error; the rest is
worth more as training data).

Three layers, each usable on its own:

- :func:`split_sizes` (pure arithmetic: how many samples each part gets),
- :func:`split_indices` (which rows: a seeded shuffle, optionally stratified),
- :func:`train_dev_test_split` (the arrays themselves).
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple, Optional, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._validation import as_array, check_bool, check_int, check_seed, is_pandas

DEFAULT_FRACTION = 0.2     # default dev and test share ...
DEFAULT_CAP = 10_000       # ... but never more than this many samples each


class Split(NamedTuple):
    """``train``, ``dev`` and ``test``, each a pair ``(X, y)``; unpacks as a 3-tuple."""

    train: tuple
    dev: tuple
    test: tuple


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _part_size(size, n: int, name: str) -> int:
    """Samples in the dev or test part of ``n``: None is min(round(0.2 n), 10,000), a float
    in (0, 1) the fraction round(size * n) (halves up), an int in 0..n that count."""
    if size is None:
        return min(_round_half_up(DEFAULT_FRACTION * n), DEFAULT_CAP)
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Real):
        raise TypeError(f"{name} must be None, a fraction in (0, 1) or a count of samples; "
                        f"got {size!r} of type {type(size).__name__}")
    if isinstance(size, numbers.Integral):
        if not 0 <= size <= n:
            raise ValueError(f"{name} as a count of samples must be in 0..{n} (the number "
                             f"of samples); got {size}")
        return int(size)
    if not 0 < size < 1:
        raise ValueError(f"{name} as a fraction must be in (0, 1); got {size!r}")
    return _round_half_up(float(size) * n)


def split_sizes(n: int, dev=None, test=None) -> Tuple[int, int, int]:
    """``(n_train, n_dev, n_test)`` for ``n`` samples; pure arithmetic, no data.

    ``dev`` and ``test``: None gives min(round(0.2 n), 10,000) samples (60/20/20 for small
    data, 98/1/1 at a million); a float in (0, 1) the fraction round(size * n), halves
    rounded up; an int in 0..n that many samples. The train part gets the rest and must
    not be empty (ValueError naming the sizes). bools are rejected (TypeError).
    """
    n = check_int(n, "n", minimum=1)
    n_dev = _part_size(dev, n, "dev")
    n_test = _part_size(test, n, "test")
    n_train = n - n_dev - n_test
    if n_train < 1:
        raise ValueError(f"dev={dev!r} ({n_dev} samples) and test={test!r} ({n_test} "
                         f"samples) leave {n_train} of the {n} samples for training; the "
                         "train part needs at least one")
    return n_train, n_dev, n_test


def _largest_remainder(class_counts: np.ndarray, n: int, size: int,
                       capacity: np.ndarray) -> np.ndarray:
    """Samples of each class in a part of ``size``: the quotas class_count * size / n
    rounded down, then one more to the classes with the largest remainders (ties: the
    lower class index) until the part is full, never more than a class's ``capacity``
    (what it has left), cycling again if the capped classes left room."""
    numerators = class_counts * size
    counts = np.minimum(numerators // n, capacity)
    order = np.argsort(-(numerators % n), kind="stable")
    left = size - int(counts.sum())
    while left > 0:
        for c in order:
            if left > 0 and counts[c] < capacity[c]:
                counts[c] += 1
                left -= 1
    return counts


def stratified_counts(class_counts, sizes) -> np.ndarray:
    """``(n_classes, 3)`` int64: how many samples of each class go to train, dev and test,
    so that each part has exactly its size in ``sizes`` and each class exactly its count.

    Parts are filled in the order train, dev, test. Train and dev each get every class's
    proportional share ``class_count * part_size / n`` by the largest-remainder method
    (within what the class has left); test takes the rest. A class with fewer samples
    than parts cannot be in every part: its samples go to the parts where its remainders
    are largest, train first, so a class with a single sample usually lands in train.
    """
    class_counts = np.asarray(class_counts, dtype=np.int64)
    n = int(class_counts.sum())
    if sum(sizes) != n:
        raise ValueError(f"sizes {tuple(sizes)} must add up to the {n} samples of "
                         "class_counts")
    remaining = class_counts.copy()
    columns = []
    for size in sizes[:-1]:
        column = _largest_remainder(class_counts, n, int(size), remaining)
        remaining = remaining - column
        columns.append(column)
    return np.stack([*columns, remaining], axis=1)


def split_indices(n: int, dev=None, test=None, *, labels=None,
                  seed: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices ``(train, dev, test)`` of a shuffled split of ``n`` samples, sizes as
    :func:`split_sizes`. With ``labels`` (1-D, length n) the split is stratified: each
    part holds each class in proportion (:func:`stratified_counts`). Each part's indices
    are in shuffled order (classes mixed). ``seed`` seeds a numpy Generator (None: fresh
    OS entropy, a different split each call)."""
    sizes = split_sizes(n, dev, test)
    rng = np.random.default_rng(check_seed(seed))
    order = rng.permutation(n)
    if labels is None:
        return tuple(np.split(order, np.cumsum(sizes[:-1])))
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must be 1-D class labels, shape ({n},); got shape "
                         f"{labels.shape}")
    values, classes = np.unique(labels, return_inverse=True)
    classes = classes.astype(np.min_scalar_type(len(values) - 1))  # small ints: radix sort
    by_class = order[np.argsort(classes[order], kind="stable")]   # grouped, shuffled within
    allocation = stratified_counts(np.bincount(classes), sizes)
    part = np.empty(n, dtype=np.int8)
    part[by_class] = np.repeat(np.tile(np.arange(3, dtype=np.int8), len(allocation)),
                               allocation.ravel())
    part_in_order = part[order]
    return tuple(order[part_in_order == p] for p in range(3))


def _rows_taker(data, name: str) -> Tuple[int, Callable[[np.ndarray], object]]:
    """(the number of samples (rows) in ``data``, a function of row indices giving those
    rows as the type of ``data``): a pandas DataFrame or Series by position (``.iloc``,
    index labels kept), a list or tuple as one of the same type, anything else as a NumPy
    array (not copied when it is one already)."""
    if is_pandas(data):
        n, take = len(data), lambda rows: data.iloc[rows]
    elif isinstance(data, (list, tuple)):
        n, take = len(data), lambda rows: type(data)(data[i] for i in rows)
    else:
        array = np.asarray(data)
        if array.ndim == 0:
            raise ValueError(f"{name} must be an array of samples (rows); got a scalar "
                             f"{data!r}")
        n, take = len(array), array.__getitem__
    if n == 0:
        raise ValueError(f"{name} is empty (shape {np.shape(data)}); at least one sample is "
                         "needed")
    return n, take


@suggest_keywords
def train_dev_test_split(X, y, *, dev=None, test=None, stratify: bool = False,
                         seed: Optional[int] = None) -> Split:
    """Shuffle (X, y) and split it into train, dev and test parts.

    Returns a :class:`Split` named tuple ``(train, dev, test)`` of ``(X, y)`` pairs, so
    ``(X_train, y_train), (X_dev, y_dev), (X_test, y_test) = train_dev_test_split(X, y)``
    or ``split.dev``. Sizes as :func:`split_sizes`: by default dev and test each get
    min(20 %, 10,000) samples; a float in (0, 1) is a fraction, an int a count.

    X and y are any collections of samples as rows with the same length, and each part
    has the type it was given: a NumPy array stays an array (its dtype kept; each part is
    one copy of its rows and X itself is never copied), a pandas DataFrame or Series stays
    one (rows taken by position, index labels kept), a list stays a list and a tuple a
    tuple; anything else array-like becomes an array. ``stratify=True`` keeps each
    class's proportion of y in every part (y must be 1-D class labels; exact sizes by
    largest remainders, rule in :func:`stratified_counts`). ``seed`` makes the shuffle
    reproducible (None: a different split each call).
    """
    n, take_X = _rows_taker(X, "X")
    n_y, take_y = _rows_taker(y, "y")
    if n != n_y:
        raise ValueError(f"X and y must have the same number of samples; got {n} and {n_y}")
    labels = None
    if check_bool(stratify, "stratify"):
        labels = as_array(y, "y")
        if labels.ndim != 1:
            raise ValueError("stratify=True needs y as 1-D class labels, shape "
                             f"({n},); got shape {labels.shape}")
    indices = split_indices(n, dev, test, labels=labels, seed=seed)
    return Split(*((take_X(rows), take_y(rows)) for rows in indices))
