"""Both backends: thread-safe inference, and native against the NumPy oracle (those tests
skip only while fastmlp.backends.native cannot be imported)."""
import threading

import numpy as np
import pytest

from fastmlp import Dense, MultiTask, Sequential
from fastmlp.nn.activations import ACTIVATIONS
from fastmlp.nn.losses import LOSSES, get_loss
from helpers import assert_close, make_data

MIXES = [("relu", "relu", "relu"), ("tanh", "elu", "sigmoid"), ("leaky_relu", "linear", "tanh")]
# every other registry activation, three a mix (the last one filled up with tanh)
_OTHERS = [name for name in ACTIVATIONS if not any(name in mix for mix in MIXES)]
MIXES += [tuple((_OTHERS[i:i + 3] + ["tanh"] * 2)[:3]) for i in range(0, len(_OTHERS), 3)]


def model(backend, loss="softmax_cross_entropy", dtype="float64", mix=MIXES[0], input_dim=4,
          seed=0):
    layers = [Dense(units, act) for units, act in zip((16, 12, 8), mix)] + [Dense(3)]
    return Sequential(layers, input_dim=input_dim, loss=loss, backend=backend, dtype=dtype,
                      seed=seed)


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_from_four_threads_equals_serial(backend_name, method):
    m = model(backend_name, dtype="float32", input_dim=32)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(3000, 32)) for _ in range(4)]
    call = getattr(m, method)
    serial = [call(X, batch_size=256) for X in inputs]
    results = [None] * 4
    start = threading.Barrier(4)

    def worker(i):
        start.wait()
        results[i] = [call(inputs[i], batch_size=256) for _ in range(3)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(4):
        for result in results[i]:
            np.testing.assert_array_equal(result, serial[i])


def test_per_op_inference_reuses_its_scratch_and_never_returns_it():
    """Repeated predicts take their workspaces (arrays, compiled plans) from the model's
    pool; what a call returned stays as it was after later calls."""
    m = model("numpy", loss="mse")
    rng = np.random.default_rng(3)
    first_x, later_x = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    first = m.predict(first_x)
    kept = first.copy()
    scratch = m._inference_pool._free[0]
    arrays = [dict(workspace._arrays) for workspace in scratch]
    m.predict(later_x)
    np.testing.assert_array_equal(first, kept)
    assert m._inference_pool._free == [scratch]
    for workspace, before in zip(scratch, arrays):
        assert all(workspace._arrays[name] is array for name, array in before.items())
    heads = MultiTask([Dense(6, "tanh")], {"a": [Dense(2)], "b": [Dense(1)]},
                      {"a": "mse", "b": "mse"}, input_dim=4, backend="numpy", seed=0)
    first = heads.predict(first_x)
    kept = {name: value.copy() for name, value in first.items()}
    heads.predict(later_x)
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])
    assert len(heads._inference_pool._free) == 1


def test_inference_does_not_touch_the_training_caches(backend_name):
    X, y = make_data("softmax_cross_entropy", n=20)
    m = model(backend_name)
    m.fit(X, y, epochs=1, batch_size=None, shuffle=False)
    cached = [layer._cache.get("z", (20, layer.units), m.dtype).copy() for layer in m.layers]
    m.predict(X[:7])
    for layer, before in zip(m.layers, cached):
        np.testing.assert_array_equal(layer._cache.get("z", (20, layer.units), m.dtype), before)


def pair(native, **kwargs):
    """A NumPy and a native model from one seed: identical initial parameters."""
    a, b = model("numpy", **kwargs), model(native, **kwargs)
    np.testing.assert_array_equal(a._params, b._params)
    return a, b


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mix", MIXES, ids="-".join)
@pytest.mark.parametrize("loss", LOSSES)
def test_one_sgd_step_agrees(native, loss, mix, dtype):
    X, y = make_data(loss, n=64)
    oracle, core = pair(native, loss=loss, mix=mix, dtype=dtype)
    for m in (oracle, core):
        m.fit(X, y, epochs=1, batch_size=None, shuffle=False, learning_rate=0.1)
    assert_close(core._grads, oracle._grads, "backend_one_step", dtype)
    assert_close(core._params, oracle._params, "backend_one_step", dtype)


@pytest.mark.parametrize("mix", MIXES, ids="-".join)
@pytest.mark.parametrize("loss", LOSSES)
def test_five_epochs_agree(native, loss, mix):
    X, y = make_data(loss, n=100)
    oracle, core = pair(native, loss=loss, mix=mix, dtype="float64")
    histories = [m.fit(X, y, epochs=5, batch_size=16, learning_rate=0.05) for m in (oracle, core)]
    assert_close(core._params, oracle._params, "backend_five_epochs", "float64")
    assert_close(histories[1].history["loss"], histories[0].history["loss"],
                 "backend_five_epochs", "float64")
    method = "predict_proba" if get_loss(loss).classifier else "predict"
    assert_close(getattr(core, method)(X), getattr(oracle, method)(X),
                 "backend_five_epochs", "float64")
