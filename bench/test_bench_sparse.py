"""Sparse input's fit against the dense path fed batch by batch and scikit-learn's MLP on
the same CSR matrix (bench/sparse_report.py times the full task side by side and prints the
table; this is its pytest-benchmark form). Full mode: 20,000 x 20,000 at 0.1 % density, 1
epoch; under --benchmark-disable a 2,000 x 2,000 smoke task. Each checks that the fit
learned the task (held-out accuracy above 0.8 in full mode)."""
import numpy as np
import pytest

import benchlib as bl
import sparse_report as sr


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")   # 1 epoch
@pytest.mark.parametrize("run", ["sparse", "dense batches", "estimator", "scikit-learn"])
def test_fit_sparse_task(benchmark, smoke, run):
    rows, features = (2000, 2000) if smoke else (20_000, 20_000)
    X_train, y_train, X_test, y_test = sr._split(*sr.sparse_task(rows=rows, features=features))
    benchmark.group = f"fit sparse {rows:,} x {features:,}, 1 epoch of batch 200, 1 thread"
    with bl.threads("sklearn" if run == "scikit-learn" else "native", 1):
        model = benchmark.pedantic(lambda: sr.RUNS[run](X_train, y_train, 1, 200),
                                   rounds=1 if smoke else 3, iterations=1)
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    assert accuracy > (0.5 if smoke else 0.8), accuracy
