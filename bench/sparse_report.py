"""Sparse input against the dense path and scikit-learn (issue 13, Deliver 3).

The task is bench/sparse_data.py's (100,000 x 20,000 CSR at 0.1 % density, labels from a
sparse linear teacher), float32, one hidden layer of 256 ReLU units, softmax output, Adam
1e-3, ``--epochs`` epochs of ``--batch`` rows, shuffled, on ``--threads`` threads
(threadpoolctl limits scikit-learn's BLAS too); 10 % of the rows are held out for the
accuracy. Timed, side by side in one run:

- ``sparse``: fastmlp ``Sequential.fit`` on the CSR matrix (the first layer multiplies it);
- ``dense batches``: the same model fed batch by batch with ``X[rows].toarray()``, one
  ``fit`` call of one step per batch (the dense GEMM path), the same Adam state throughout;
- ``estimator``: ``fastmlp.sklearn.MLPClassifier(dtype="float32")`` on the CSR matrix;
- ``scikit-learn``: scikit-learn's ``MLPClassifier`` on the same CSR matrix (its float32).

Each prints seconds for the whole fit and the held-out accuracy. ``--quick`` shrinks the task
(a smoke test). Usage: ``python bench/sparse_report.py [--quick] [--batch 200] [--epochs 3]``.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from sparse_data import sparse_task

HIDDEN = 256


def _split(X, y, seed=0):
    order = np.random.default_rng(seed).permutation(X.shape[0])
    cut = X.shape[0] * 9 // 10
    return X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]


def _sequential(features):
    from fastmlp import Dense, Sequential
    return Sequential([Dense(HIDDEN, "relu"), Dense(2)], input_dim=features,
                      loss="softmax_cross_entropy", dtype="float32", seed=0)


def fit_sparse(X, y, epochs, batch):
    model = _sequential(X.shape[1])
    model.fit(X, y, epochs=epochs, batch_size=batch, optimizer="adam", verbose=0)
    return model


def fit_dense_batches(X, y, epochs, batch):
    from fastmlp import Adam
    model, adam = _sequential(X.shape[1]), Adam(1e-3)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(X.shape[0])
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            model.fit(X[rows].toarray(), y[rows], epochs=1, batch_size=batch, optimizer=adam,
                      shuffle=False, verbose=0)
    return model


def _estimator_params(epochs, batch):
    return dict(hidden_layer_sizes=(HIDDEN,), batch_size=batch, max_iter=epochs, tol=0.0,
                n_iter_no_change=epochs + 1, random_state=0)


def fit_estimator(X, y, epochs, batch):
    from fastmlp.sklearn import MLPClassifier
    return MLPClassifier(**_estimator_params(epochs, batch), dtype="float32").fit(X, y)


def fit_sklearn(X, y, epochs, batch):
    from sklearn.neural_network import MLPClassifier
    return MLPClassifier(**_estimator_params(epochs, batch)).fit(X, y)


RUNS = {"sparse": fit_sparse, "dense batches": fit_dense_batches,
        "estimator": fit_estimator, "scikit-learn": fit_sklearn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small task (smoke test)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default=",".join(RUNS), help="which, comma-separated")
    args = parser.parse_args()
    import fastmlp
    from threadpoolctl import threadpool_limits
    rows, features = (4000, 2000) if args.quick else (100_000, 20_000)
    X, y = sparse_task(rows=rows, features=features)
    X_train, y_train, X_test, y_test = _split(X, y)
    print(f"task: {X.shape[0]:,} x {X.shape[1]:,} CSR float32, {X.nnz:,} entries; "
          f"{args.epochs} epochs of batch {args.batch}, Adam, {args.threads} thread(s)")
    seconds = {}
    with threadpool_limits(args.threads), fastmlp.threads(args.threads), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.runs.split(","):
            RUNS[name](X_train[:400], y_train[:400], 1, args.batch)   # imports, first calls
            start = time.perf_counter()
            model = RUNS[name](X_train, y_train, args.epochs, args.batch)
            seconds[name] = time.perf_counter() - start
            accuracy = float(np.mean(model.predict(X_test) == y_test))
            print(f"{name:>14}: {seconds[name]:8.2f} s   held-out accuracy {accuracy:.4f}",
                  flush=True)
    for slow, fast in (("dense batches", "sparse"), ("scikit-learn", "estimator")):
        if slow in seconds and fast in seconds:
            print(f"{fast} is {seconds[slow] / seconds[fast]:.2f}x faster than {slow}")


if __name__ == "__main__":
    main()
