"""fastmlp.sklearn.MLPClassifier against scikit-learn's MLPClassifier: fit time, float64
and float32 side by side.

    python bench/test_bench_sklearn.py            # full: 50 adam epochs / 50 lbfgs iterations, 7 rounds
    python bench/test_bench_sklearn.py --quick    # 10 epochs / iterations, 3 rounds
    python -m pytest bench/test_bench_sklearn.py --benchmark-disable   # smoke: 2, 1 round

Both with scikit-learn's default network (hidden_layer_sizes=(100,), relu, alpha 1e-4,
batch_size="auto" = 200), solver "adam" (1e-3) or "lbfgs", the same random_state (so the
same initial weights), standardized float64 input, on one thread (threadpoolctl limits
every BLAS/OpenMP pool, fastmlp.threads(1) and n_threads=1 for ours). tol=0 and
n_iter_no_change > max_iter, so adam trains exactly max_iter epochs and lbfgs stops at
max_iter iterations unless scipy's own criteria stop it first (the table gives each
n_iter_). Three fits compete: scikit-learn (float64, the input's dtype), fastmlp with its
default dtype (float64 too: scikit-learn's rule) and fastmlp with dtype="float32" (the
fast path; the time includes converting X). Each timed fit includes input validation.

A round fits each of the three once, back to back, the order rotating between rounds (the
machine may be shared: alternating spreads the noise over all three); the table gives the
median over rounds of each fit's time and scikit-learn's median over ours (> 1: ours is
faster). Datasets: digits (1,797 x 64, 10 classes) and breast cancer (569 x 30, binary),
both shipped with scikit-learn. The pytest run checks each fit: adam trained exactly the
epochs asked, the training loss fell, and (full mode) training accuracy above 0.95.
"""
from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from statistics import median
from typing import Dict, Iterator

import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import benchlib as bl

DATASETS = {"digits": load_digits, "breast_cancer": load_breast_cancer}
SOLVERS = ("adam", "lbfgs")
IMPLS = ("sklearn", "float64", "float32")    # scikit-learn; ours with dtype None; "float32"
MODES = {"full": dict(iterations=50, rounds=7), "quick": dict(iterations=10, rounds=3),
         "smoke": dict(iterations=2, rounds=1)}


def load(dataset: str):
    X, y = DATASETS[dataset](return_X_y=True)
    return StandardScaler().fit_transform(X), y


def estimator(impl: str, solver: str, iterations: int):
    params = dict(solver=solver, max_iter=iterations, tol=0.0,
                  n_iter_no_change=iterations + 1, random_state=0)
    if impl == "sklearn":
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(**params)
    from fastmlp.sklearn import MLPClassifier
    return MLPClassifier(**params, dtype=None if impl == "float64" else impl, n_threads=1)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """scikit-learn's BLAS and OpenMP pools and ours limited to one thread (both loaded
    first: threadpoolctl limits only the pools already loaded)."""
    import sklearn.neural_network  # noqa: F401  (scipy's OpenBLAS, scikit-learn's OpenMP)
    with bl.threads("native", 1):
        yield


def timed_fit(impl: str, solver: str, iterations: int, X, y):
    """(seconds, fitted estimator); the ConvergenceWarning of a fixed count silenced."""
    fit = estimator(impl, solver, iterations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        fit.fit(X, y)
        return time.perf_counter() - start, fit


def compare(dataset: str, solver: str, iterations: int, rounds: int) -> Dict[str, dict]:
    """Per implementation: the median seconds, every round's seconds and the last fit."""
    X, y = load(dataset)
    seconds: Dict[str, list] = {impl: [] for impl in IMPLS}
    fitted = {}
    with one_thread():
        for r in range(rounds):
            for impl in IMPLS[r % len(IMPLS):] + IMPLS[:r % len(IMPLS)]:
                took, fitted[impl] = timed_fit(impl, solver, iterations, X, y)
                seconds[impl].append(took)
    return {impl: dict(median=median(seconds[impl]), seconds=seconds[impl],
                       fitted=fitted[impl]) for impl in IMPLS}


def table_rows(dataset: str, solver: str, iterations: int, result: Dict[str, dict]) -> str:
    sk = result["sklearn"]["median"]
    cells = [dataset, solver, str(iterations)]
    cells += [f"{result[impl]['median'] * 1e3:.1f} ms" for impl in IMPLS]
    cells += [f"{sk / result[impl]['median']:.2f}×" for impl in IMPLS[1:]]
    cells.append(" / ".join(str(result[impl]["fitted"].n_iter_) for impl in IMPLS))
    return "| " + " | ".join(cells) + " |"


TABLE_HEAD = ("| data | solver | max_iter | scikit-learn (float64) | fastmlp float64 (default) "
              "| fastmlp float32 | float64 speed-up | float32 speed-up | n_iter_ (sk / 64 / 32) |\n"
              "|---|---|---|---|---|---|---|---|---|")


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_fit_against_scikit_learn(smoke, dataset, solver):
    mode = MODES["smoke" if smoke else "full"]
    result = compare(dataset, solver, mode["iterations"], mode["rounds"])
    print("\n" + table_rows(dataset, solver, mode["iterations"], result))
    X, y = load(dataset)
    for impl in IMPLS:
        fitted = result[impl]["fitted"]
        assert 1 <= fitted.n_iter_ <= mode["iterations"]
        if solver == "adam":
            assert fitted.n_iter_ == mode["iterations"] == len(fitted.loss_curve_)
            assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
        if not smoke:
            assert fitted.score(X, y) > 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 iterations, 3 rounds")
    args = parser.parse_args()
    mode = MODES["quick" if args.quick else "full"]
    print(f"{mode['rounds']} rounds, median seconds per fit, 1 thread")
    print(TABLE_HEAD)
    for solver in SOLVERS:
        for dataset in sorted(DATASETS):
            result = compare(dataset, solver, mode["iterations"], mode["rounds"])
            print(table_rows(dataset, solver, mode["iterations"], result), flush=True)


if __name__ == "__main__":
    main()
