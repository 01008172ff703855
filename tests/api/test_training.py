"""fit: history, batching modes, continuation, seeds, learning, divergence, verbosity."""
import importlib.util
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Sequential
from fastmlp.nn.losses import LOSSES, get_loss
from helpers import assert_close, make_data

METRIC = {name: get_loss(name).metric_name for name in LOSSES}


def model(loss="softmax_cross_entropy", dtype="float64", seed=0, backend="numpy"):
    return Sequential([Dense(8, "tanh"), Dense(6, "relu"), Dense(3)], input_dim=4, loss=loss,
                      backend=backend, dtype=dtype, seed=seed)


@pytest.mark.parametrize("loss", LOSSES)
def test_history_keys_and_lengths(loss):
    X, y = make_data(loss, n=30)
    metric = METRIC[loss]
    history = model(loss).fit(X, y, epochs=3, learning_rate=0.05)
    assert isinstance(history, fastmlp.History) and history.epochs == 3
    assert list(history.history) == ["loss", "data_loss", "penalty", metric, "lr"]
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["penalty"] == [0.0] * 3
    assert history.history["loss"] == history.history["data_loss"]
    assert history.history["lr"] == [0.05] * 3
    with_val = model(loss).fit(X, y, epochs=2, validation_data=(X[:10], y[:10]))
    assert list(with_val.history) == ["loss", "data_loss", "penalty", metric, "val_loss",
                                      f"val_{metric}", "lr"]
    assert with_val.history["lr"] == [0.01, 0.01]                    # SGD's default


def test_validation_values_are_evaluate_after_each_epoch():
    X, y = make_data("softmax_cross_entropy", n=30)
    m = model()
    history = m.fit(X, y, epochs=2, validation_data=(X[:10], y[:10]))
    final = m.evaluate(X[:10], y[:10])
    assert history.history["val_loss"][-1] == final["loss"]
    assert history.history["val_accuracy"][-1] == final["accuracy"]


@pytest.mark.parametrize("loss", LOSSES)
def test_full_batch_history_is_the_state_before_the_step(loss):
    """With one step per epoch the running totals are the pre-step evaluation."""
    X, y = make_data(loss, n=30)
    m = model(loss)
    before = m.evaluate(X, y)
    history = m.fit(X, y, epochs=1, batch_size=None, shuffle=False)
    assert_close(history.history["loss"][0], before["loss"], "same_math", "float64")
    if METRIC[loss] == "r2":
        assert_close(history.history["r2"][0], before["r2"], "same_math", "float64")
    else:
        assert history.history["accuracy"][0] == before["accuracy"]


def replay(loss, X, y, batch_size):
    """The same training as fit(batch_size=..., shuffle=False), one fit call per batch:
    returns the model and the batch-weighted mean of the pre-step batch losses."""
    m = model(loss)
    n = len(X)
    step = n if batch_size is None else batch_size
    weighted = 0.0
    for start in range(0, n, step):
        xb, yb = X[start:start + step], y[start:start + step]
        weighted += m.evaluate(xb, yb)["loss"] * len(xb)
        m.fit(xb, yb, epochs=1, batch_size=None, shuffle=False, learning_rate=0.1)
    return m, weighted / n


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch_size", [None, 1, 4, 10, 25])
def test_batch_stochastic_and_mini_batch_modes(batch_size, loss):
    X, y = make_data(loss, n=10)
    m = model(loss)
    history = m.fit(X, y, epochs=1, batch_size=batch_size, shuffle=False, learning_rate=0.1)
    expected, expected_loss = replay(loss, X, y, batch_size)
    assert_close(m._params, expected._params, "same_math", "float64")
    assert_close(history.history["loss"][0], expected_loss, "same_math", "float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_fits_continue_like_one(dtype):
    X, y = make_data("softmax_cross_entropy", n=50)
    once, twice = model(dtype=dtype, seed=3), model(dtype=dtype, seed=3)
    h = once.fit(X, y, epochs=2, batch_size=8, learning_rate=0.1)
    first = twice.fit(X, y, epochs=1, batch_size=8, learning_rate=0.1)
    second = twice.fit(X, y, epochs=1, batch_size=8)                # keeps the rate 0.1
    np.testing.assert_array_equal(twice._params, once._params)
    assert first.history["loss"] + second.history["loss"] == h.history["loss"]


def test_same_seed_same_training_different_seed_different():
    X, y = make_data("binary_cross_entropy", n=40)
    runs = [model("binary_cross_entropy", seed=s) for s in (7, 7, 8)]
    for m in runs:
        m.fit(X, y, epochs=3, batch_size=5)
    np.testing.assert_array_equal(runs[0]._params, runs[1]._params)
    assert not np.array_equal(runs[0]._params, runs[2]._params)


def test_shuffling_changes_the_trajectory():
    X, y = make_data("softmax_cross_entropy", n=40)
    a, b = model(), model()
    a.fit(X, y, epochs=1, batch_size=5, shuffle=True)
    b.fit(X, y, epochs=1, batch_size=5, shuffle=False)
    assert not np.array_equal(a._params, b._params)


# poisson's counts carry noise no model removes: its own test below
@pytest.mark.parametrize("loss", [name for name in LOSSES if name != "poisson"])
def test_training_learns_a_separable_problem(loss):
    X, y = make_data(loss, n=120, seed=1)
    m = model(loss, dtype="float32", seed=2)
    start = m.evaluate(X, y)
    history = m.fit(X, y, epochs=80, batch_size=16, learning_rate=0.1)
    end = m.evaluate(X, y)
    assert end["loss"] < 0.2 * start["loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert end[METRIC[loss]] >= 0.9


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_poisson_learns_the_means(backend):
    """Counts drawn with log mean linear in X: the fitted means e^z track the true ones,
    and the loss ends near the loss of the true means (the noise floor)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 4))
    true_means = np.exp(X @ np.array([0.5, -0.4, 0.3, 0.0]) + 1)
    y = rng.poisson(true_means).astype(float)
    m = Sequential([Dense(8, "tanh"), Dense(1)], input_dim=4, loss="poisson",
                   backend=backend, dtype="float64", seed=2)
    m.fit(X, y, epochs=20, batch_size=32, learning_rate=0.01, optimizer="adam")
    predicted = m.predict(X)
    assert predicted.shape == (2000,) and (predicted > 0).all()
    assert 1 - np.sum((predicted - true_means) ** 2) / np.sum((true_means - true_means.mean()) ** 2) > 0.9
    floor = m.backend.loss("poisson", np.log(true_means)[:, None], y[:, None], None, 1.0) / 2000
    assert m.evaluate(X, y)["loss"] < 1.1 * floor


def test_divergence_stops_before_the_bad_update():
    X, y = make_data("mse", n=40)
    m = model("mse")
    with pytest.raises(fastmlp.DivergenceError,
                       match=r"training diverged at epoch \d+, step \d+ of 4: the mean loss "
                             r"became (inf|nan) with learning rate 1e\+06; lower the learning "
                             r"rate \(e.g. 100000\)"):
        m.fit(X, y * 1e3, epochs=50, batch_size=10, learning_rate=1e6)
    assert np.isfinite(m._params).all()
    assert issubclass(fastmlp.DivergenceError, FloatingPointError)
    assert issubclass(fastmlp.DivergenceError, ValueError)


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = make_data("softmax_cross_entropy", n=20)
    model().fit(X, y, epochs=2, validation_data=(X, y), verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2  loss ") and "val_accuracy" in lines[1]
    assert lines[1].endswith("samples/s")


def test_silent_by_default(capsys):
    X, y = make_data("softmax_cross_entropy", n=20)
    model().fit(X, y, epochs=1)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    X, y = make_data("softmax_cross_entropy", n=20)
    model().fit(X, y, epochs=1, verbose=1)
    assert capsys.readouterr().err == ""                   # stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    model().fit(X, y, epochs=1, verbose=1)
    has_tqdm = importlib.util.find_spec("tqdm") is not None
    assert ("epoch 1/1" in capsys.readouterr().err) == has_tqdm
