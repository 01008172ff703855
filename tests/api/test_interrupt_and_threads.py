"""Ctrl-C during fit stops at a step boundary within a step or two; a fit holds its model,
so a second fit, partial_fit or set_weights from another thread is a RuntimeError; a
predict during a fit in another thread sees the weights between two steps."""
import copy
import pickle
import signal
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

from fastmlp import Dense, Sequential

from fastmlp.train import loop as training
from helpers import interrupted_child
from fastmlp.train.callbacks import Callback

# ------------------------------------------------------------------------- Ctrl-C

# The child trains 200,000 rows of 64 features through 64-1024-1 (mse, Adam, batch 32:
# 6,250 steps, seconds an epoch on every path), gets SIGINT from the parent, then trains a
# fresh model of the same seed for exactly the steps the interrupted one took (the full
# epochs, then the interrupted epoch's first batches in its shuffled order) and reports
# whether the weights are the same bits.
INTERRUPTED_FIT = """
import json, sys, time
import numpy as np
from fastmlp import Dense, MultiTask, Sequential
from fastmlp.train import loop as training
from fastmlp.train.callbacks import Callback

backend, path = sys.argv[1], sys.argv[2]
training._FUSED = path != "per-op"
rng = np.random.default_rng(0)
X = rng.standard_normal((200_000, 64)).astype(np.float32)
y = X[:, :3].sum(axis=1)
BATCH = 32
n_batches = -(-len(X) // BATCH)


def model():
    if path == "multitask":
        return MultiTask([Dense(1024, "relu")], {"y": [Dense(1)]}, {"y": "mse"}, input_dim=64,
                         backend=backend, seed=5)
    return Sequential([Dense(1024, "relu"), Dense(1)], input_dim=64, loss="mse",
                      backend=backend, seed=5)


def targets(values):
    return {"y": values} if path == "multitask" else values


class Started(Callback):
    def on_train_begin(self):
        print("started", flush=True)


interrupted = model()
try:
    interrupted.fit(X, targets(y), epochs=50, batch_size=BATCH, optimizer="adam",
                    learning_rate=1e-3, callbacks=[Started()])
    caught, message = None, None
except KeyboardInterrupt as error:
    caught, message = time.monotonic(), str(error)
steps = interrupted.training_step
epochs, rest = divmod(steps, n_batches)

fresh = model()
if epochs:
    fresh.fit(X, targets(y), epochs=epochs, batch_size=BATCH, optimizer="adam", learning_rate=1e-3)
if rest:
    order = fresh.backend.shuffled_order(len(X), fresh._shuffle_rng.bit_generator.random_raw())
    rows = order[:rest * BATCH]
    fresh.fit(X[rows], targets(y[rows]), epochs=1, batch_size=BATCH, shuffle=False,
              **({} if epochs else {"optimizer": "adam", "learning_rate": 1e-3}))
print(json.dumps({
    "caught": caught, "message": message, "steps": steps,
    "iterations": interrupted.optimizer.iterations,
    "history_epochs": interrupted.history.epochs, "epochs_done": epochs,
    "finite": bool(np.isfinite(interrupted._params).all()),
    "same": bool(np.array_equal(interrupted._params, fresh._params)),
    "handler_restored": __import__("signal").getsignal(2) is
                        __import__("signal").default_int_handler}), flush=True)
"""


def interrupted_fit(backend: str, path: str, env=None):
    """INTERRUPTED_FIT in a child process sent SIGINT 0.3 s after it started training:
    (its JSON report, when the signal was sent)."""
    return interrupted_child([sys.executable, "-c", textwrap.dedent(INTERRUPTED_FIT), backend,
                              path], 0.3, env)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend,path", [("native", "fused"), ("native", "per-op"),
                                          ("numpy", "per-op"), ("native", "multitask")])
def test_ctrl_c_stops_fit_within_a_step_at_a_step_boundary(backend, path, request):
    if backend == "native":
        request.getfixturevalue("native")
    report, sent = interrupted_fit(backend, path)
    assert report["caught"] is not None, "fit was not interrupted"
    assert report["caught"] - sent < 0.5, f"Ctrl-C took {report['caught'] - sent:.2f} s"
    assert "fit interrupted (Ctrl-C) at epoch" in report["message"]
    assert f"training_step {report['steps']}" in report["message"]
    assert report["steps"] > 0 and report["iterations"] == report["steps"]
    assert report["history_epochs"] == report["epochs_done"]
    assert report["finite"] and report["handler_restored"]
    assert report["same"], "the weights differ from a run of exactly training_step steps"


def test_fit_outside_the_main_thread_installs_no_handler():
    """Python delivers SIGINT to the main thread only: a fit elsewhere leaves the handler
    alone (and runs on)."""
    seen = []

    class Look(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(signal.getsignal(signal.SIGINT))

    model, X, y = _model("numpy")
    worker = threading.Thread(target=model.fit, args=(X, y),
                              kwargs={"epochs": 1, "callbacks": [Look()]})
    worker.start()
    worker.join()
    assert seen == [signal.default_int_handler]


# ------------------------------------------------------------------- other threads

PATHS = [("native", "fused"), ("native", "per-op"), ("numpy", "per-op")]


@pytest.fixture(params=PATHS, ids=["-".join(p) for p in PATHS])
def backend(request, monkeypatch):
    name, path = request.param
    if name == "native":
        request.getfixturevalue("native")
    monkeypatch.setattr(training, "_FUSED", path == "fused")
    return name


def _model(backend, width=64, rows=256):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((rows, 16)).astype(np.float32)
    y = X[:, :2].sum(axis=1)
    model = Sequential([Dense(width, "relu"), Dense(1)], input_dim=16, loss="mse",
                       backend=backend, seed=2)
    return model, X, y


class _Pause(Callback):
    """Holds the fit at the end of its first epoch until the main thread has tried."""

    def __init__(self):
        super().__init__()
        self.inside, self.tried = threading.Event(), threading.Event()

    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            self.inside.set()
            assert self.tried.wait(30)


def _fit_paused(model, X, y, attempt):
    """``attempt()`` while ``model`` fits in another thread; returns what it raised."""
    pause, errors = _Pause(), []

    def run():
        try:
            model.fit(X, y, epochs=3, batch_size=32, callbacks=[pause])
        except BaseException as error:      # reported to the main thread
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert pause.inside.wait(30)
        with pytest.raises(RuntimeError) as raised:
            attempt()
    finally:
        pause.tried.set()
        worker.join()
    assert not errors, errors
    return raised.value


def test_a_second_fit_from_another_thread_is_an_error_and_the_first_is_unchanged(backend):
    model, X, y = _model(backend)
    error = _fit_paused(model, X, y, lambda: model.fit(X, y, epochs=1))
    assert str(error).startswith("fit: fit is running on this model in another thread; wait "
                                 "for it to finish (or use a copy: copy.deepcopy(model))")
    alone, _, _ = _model(backend)
    alone.fit(X, y, epochs=3, batch_size=32)
    np.testing.assert_array_equal(model._params, alone._params)
    assert model.history.epochs == 3 and model.training_step == alone.training_step


def test_set_weights_during_a_fit_in_another_thread_is_an_error(backend):
    model, X, y = _model(backend)
    weights = model.get_weights()
    error = _fit_paused(model, X, y, lambda: model.set_weights(weights))
    assert str(error).startswith("set_weights: fit is running on this model in another thread")
    model.set_weights(weights)           # free again once the fit has returned


def test_a_second_fit_of_a_multitask_model_from_another_thread_is_an_error():
    from fastmlp import MultiTask
    _, X, y = _model("numpy")
    multi = MultiTask([Dense(8, "relu")], {"y": [Dense(1)]}, {"y": "mse"}, input_dim=16,
                      backend="numpy", seed=2)
    error = _fit_paused(multi, X, {"y": y}, lambda: multi.fit(X, {"y": y}, epochs=1))
    assert str(error).startswith("fit: fit is running on this model in another thread")


def test_a_callback_may_set_weights_but_not_fit_again():
    model, X, y = _model("numpy")
    nested = []

    class Inside(Callback):
        def on_epoch_end(self, epoch, logs):
            self.model.set_weights(self.model.get_weights())
            try:
                self.model.fit(X, y, epochs=1)
            except RuntimeError as error:
                nested.append(str(error))

    model.fit(X, y, epochs=1, callbacks=[Inside()])
    assert nested == ["fit: fit is running on this model in this thread (a callback?); "
                      "call it after fit returns"]


def test_partial_fit_during_fit_in_another_thread_is_an_error():
    pytest.importorskip("sklearn")
    from fastmlp.sklearn.estimators import MLPRegressor
    from fastmlp.sklearn.guard import _TRAINING
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 8))
    y = X.sum(axis=1)
    est = MLPRegressor(hidden_layer_sizes=(32,), max_iter=50, backend="numpy", random_state=0)

    def fit():
        with warnings.catch_warnings():          # ConvergenceWarning, in this thread
            warnings.simplefilter("ignore")
            est.fit(X, y)

    worker = threading.Thread(target=fit)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while id(est) not in _TRAINING and time.monotonic() < deadline:
            time.sleep(0.001)
        with pytest.raises(RuntimeError, match="partial_fit: fit is running on this "
                                               "estimator in another thread"):
            est.partial_fit(X, y)
    finally:
        worker.join()
    est.partial_fit(X, y)                        # free again


def test_a_model_that_has_fit_copies_and_pickles(backend):
    model, X, y = _model(backend)
    model.fit(X, y, epochs=1)
    model.predict(X)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(other.predict(X), model.predict(X))
        other.fit(X, y, epochs=1)        # a lock of its own


def test_predict_during_fit_sees_whole_steps(backend):
    """Every prediction made while the model trains in another thread equals the model's
    prediction at some step boundary (recorded by a reference trained one step per fit),
    and the concurrent predicts leave the fit's result unchanged."""
    model, X, y = _model(backend, width=512, rows=2048)
    test_rows = X[:8]
    epochs, batch = 10, 32
    reference, _, _ = _model(backend, width=512, rows=2048)
    boundaries = {reference.predict(test_rows).tobytes()}
    for _ in range(epochs):
        for start in range(0, len(X), batch):
            reference.fit(X[start:start + batch], y[start:start + batch], epochs=1,
                          batch_size=batch, shuffle=False)
            boundaries.add(reference.predict(test_rows).tobytes())

    seen = []
    worker = threading.Thread(target=model.fit, args=(X, y),
                              kwargs={"epochs": epochs, "batch_size": batch,
                                      "shuffle": False})
    worker.start()
    while worker.is_alive():
        model.__dict__.pop("_fused_predictor", None)    # a new snapshot, mid-run, each time
        seen.append(model.predict(test_rows).tobytes())
    worker.join()
    assert len(seen) > 1
    assert all(prediction in boundaries for prediction in seen), \
        f"{sum(p not in boundaries for p in seen)} of {len(seen)} predictions mix two steps"
    np.testing.assert_array_equal(model._params, reference._params)
