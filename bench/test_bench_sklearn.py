"""fastmlp.sklearn.MLPClassifier against scikit-learn's MLPClassifier: fit time.

Both with scikit-learn's default network and solver (hidden_layer_sizes=(100,), relu,
adam 1e-3, alpha 1e-4, batch_size="auto" = 200), the same random_state (so the same
initial weights), standardized float64 input, on one thread (threadpoolctl limits every
BLAS/OpenMP pool; fastmlp.threads(1) for ours). tol=0 and n_iter_no_change > max_iter,
so both train exactly max_iter epochs. fastmlp computes in float32 (dtype="float32"; its
default would follow the float64 input), scikit-learn in float64; the timing includes
input validation and ours converting X to float32. Datasets: digits (1,797 x 64, 10 classes) and breast cancer (569 x 30, binary),
both shipped with scikit-learn.

Each benchmark then checks that both trained the same number of epochs and that the
training loss fell (full mode: training accuracy above 0.95). The ratio of the two
medians is fastmlp's speed-up; pytest-benchmark prints both in the "fit <dataset>" group.
Under --benchmark-disable each fit runs once with max_iter=2.
"""
import warnings

import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import benchlib as bl

DATASETS = {"digits": load_digits, "breast_cancer": load_breast_cancer}
EPOCHS = 50           # full mode; the smoke run trains 2
SMOKE_EPOCHS = 2


def _estimator(impl: str, epochs: int):
    params = dict(max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, random_state=0)
    if impl == "native":
        from fastmlp.sklearn import MLPClassifier
        return MLPClassifier(**params, dtype="float32", n_threads=1)
    from sklearn.neural_network import MLPClassifier
    return MLPClassifier(**params)


def _fit(estimator, X, y):
    """fit, with the ConvergenceWarning of a fixed epoch count silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@pytest.mark.parametrize("impl", ["native", "sklearn"])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_fit_default_network(benchmark, smoke, impl, dataset):
    X, y = DATASETS[dataset](return_X_y=True)
    X = StandardScaler().fit_transform(X)
    epochs = SMOKE_EPOCHS if smoke else EPOCHS
    benchmark.group = f"fit {dataset}, default network, {epochs} epochs, 1 thread"
    with bl.threads(impl, 1):
        fitted = benchmark.pedantic(lambda: _fit(_estimator(impl, epochs), X, y),
                                    rounds=3, warmup_rounds=1, iterations=1)
    median = bl.median_seconds(benchmark)
    if median:
        benchmark.extra_info["epochs_per_s"] = epochs / median
    assert fitted.n_iter_ == epochs == len(fitted.loss_curve_)
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    if not smoke:
        assert fitted.score(X, y) > 0.95
