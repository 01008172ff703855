"""A text-like sparse classification task (issue 13's sparse benchmark): X is CSR,
``rows`` x ``features``, about ``density`` of its entries stored; the columns a row uses
follow a Zipf-like law (a few words are common, most are rare), values are log(1 + count)
scaled per row to unit norm (tf-idf-like, non-negative); the label is the sign of a sparse
linear teacher (``teacher_density`` of the features carry a weight), so a linear model, and
a hidden layer, can learn it. Deterministic in ``seed``.
"""
from typing import Tuple

import numpy as np


def sparse_task(rows: int = 100_000, features: int = 20_000, density: float = 0.001,
                teacher_density: float = 0.05, seed: int = 0,
                dtype=np.float32) -> Tuple["object", np.ndarray]:
    """(X, y): X a scipy.sparse.csr_matrix of ``dtype``, y int labels in {0, 1}."""
    from scipy import sparse
    rng = np.random.default_rng(seed)
    per_row = max(1, int(round(density * features)))
    popularity = 1.0 / np.arange(1, features + 1) ** 0.8
    popularity /= popularity.sum()
    vocabulary = rng.permutation(features)          # which column each rank is
    columns = vocabulary[rng.choice(features, size=(rows, per_row), p=popularity)]
    counts = rng.geometric(0.6, size=(rows, per_row)).astype(np.float64)
    X = sparse.csr_matrix((np.log1p(counts).ravel(), columns.ravel(),
                           np.arange(0, rows * per_row + 1, per_row)), shape=(rows, features))
    X.sum_duplicates()                              # a word counted once per row
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sparse.diags(1.0 / norms) @ X
    teacher = np.where(rng.random(features) < teacher_density, rng.standard_normal(features), 0.0)
    score = X @ teacher
    y = (score > np.median(score)).astype(np.int64)
    return X.astype(dtype).tocsr(), y
