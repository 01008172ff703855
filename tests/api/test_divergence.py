"""Divergence (fit's contract, fastmlp/training.py): a non-finite loss, gradient or update
stops training with DivergenceError naming the epoch, the step and the rate; the model is
left bit for bit as at the start of the failing step (compared with the checkpoint the
same run wrote just before that step, or with a run stopped there), never with NaN; the
History of the completed epochs comes with the error. On the NumPy backend, the native
per-op loop and the native fused path, with BatchNorm (whose running averages the
failing step's forward changes) and with EarlyStopping(restore_best_weights=True)."""
import os
import pickle
import re

import numpy as np
import pytest

import fastmlp
from fastmlp.train import loop as training
from fastmlp.train.callbacks import EarlyStopping
from fastmlp.train.checkpoint import Position
from fastmlp.nn.layers import BatchNorm, Dense, Layer
from fastmlp.model.sequential import Sequential
from fastmlp.optim.optimizers import SGD
from helpers import assert_same_state, make_data

N, BATCH = 40, 8              # 5 steps per epoch
def build(backend, kind="dense", dtype="float32", outputs=3, seed=0):
    hidden = [Dense(8, "relu")] + ([BatchNorm()] if kind == "batchnorm" else [])
    return Sequential([*hidden, Dense(outputs)], input_dim=4, loss="mse", dtype=dtype,
                      seed=seed, backend=backend)


def callbacks(early_stopping):
    return [EarlyStopping("loss", patience=100, restore_best_weights=True)] \
        if early_stopping else []


def diverge(model, X, y, directory, **kwargs) -> fastmlp.DivergenceError:
    """fit until it diverges, writing a checkpoint after every step into ``directory``."""
    with pytest.raises(fastmlp.DivergenceError) as info:
        training.fit(model, X, y, batch_size=BATCH, checkpoint_dir=directory,
                     checkpoint_every_steps=1, keep_checkpoints=10 ** 6, **kwargs)
    return info.value


def assert_named(error, model, n_batches=N // BATCH):
    e, s, rate = error.epoch, error.step, error.learning_rate
    assert re.match(rf"training diverged at epoch {e}, step {s} of {n_batches}: ", str(error))
    assert f"learning rate {rate:g}" in str(error) and "lower the learning rate" in str(error)
    for array in [*model.get_weights(), model.optimizer.m, model.optimizer.v]:
        assert array is None or np.isfinite(array).all()


def before_failing_step(directory, error):
    """The model the diverging run checkpointed just before its failing step."""
    return fastmlp.load(os.path.join(directory, Position(error.epoch - 1, error.step - 1).filename))


def completed_history(make, X, y, epochs, **kwargs):
    """The History of a fresh run of ``epochs`` complete epochs."""
    return training.fit(make(), X, y, epochs=epochs, batch_size=BATCH, **kwargs)


@pytest.mark.parametrize("early_stopping", [False, True], ids=["plain", "early-stopping"])
@pytest.mark.parametrize("kind,rate", [("dense", 1.0), ("batchnorm", 0.8)])
def test_a_huge_learning_rate_stops_before_the_failing_step(path, kind, rate, early_stopping,
                                                            tmp_path):
    backend, fused_runs = path
    X, y = make_data("mse", n=N)
    model = build(backend, kind)
    error = diverge(model, X, y, tmp_path, epochs=20, optimizer=SGD(rate),
                    callbacks=callbacks(early_stopping))
    assert (error.epoch, error.step) > (1, 1) and error.learning_rate == rate
    assert fused_runs is None or fused_runs
    assert_named(error, model)
    assert_same_state(model, before_failing_step(tmp_path, error))
    expected = completed_history(lambda: build(backend, kind), X, y, error.epoch - 1,
                                 optimizer=SGD(rate), callbacks=callbacks(early_stopping))
    assert error.history.history == expected.history == model.history.history
    assert error.history.epochs == error.epoch - 1


@pytest.mark.parametrize("kind", ["dense", "batchnorm"])
def test_inputs_of_1e30_stop_before_their_step(path, kind, tmp_path):
    """float32: the third batch's inputs of 1e30 overflow the forward or the gradient
    (BatchNorm: its running variance), at epoch 1, step 3."""
    backend, fused_runs = path
    X, y = make_data("mse", n=N)
    X[2 * BATCH:3 * BATCH] *= 1e30
    model = build(backend, kind)
    with pytest.warns(fastmlp.DataScaleWarning, match="far from unit scale"):
        error = diverge(model, X, y, tmp_path, epochs=3, shuffle=False, optimizer="adam")
    assert (error.epoch, error.step) == (1, 3)
    assert fused_runs is None or fused_runs
    assert_named(error, model)
    assert_same_state(model, before_failing_step(tmp_path, error))
    assert model.history.epochs == 0


def test_an_update_that_overflows_with_a_finite_gradient_is_undone(path, tmp_path):
    """Steps 1 to 4 have a zero gradient; the last step's is finite (about 2e6) but SGD
    at rate 1e33 moves the weights to about 2e39, beyond float32. No later step sees
    them: the check after the steps finds it, undoes it and reports that step, on every
    path with the same message."""
    backend, fused_runs = path
    model = build(backend, outputs=1)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    X, y = np.zeros((N, 4)), np.zeros(N)
    X[-BATCH:], y[-BATCH:] = 1.0, 1e6
    error = diverge(model, X, y, tmp_path, epochs=1, shuffle=False, optimizer=SGD(1e33))
    assert fused_runs is None or fused_runs
    assert str(error) == ("training diverged at epoch 1, step 5 of 5: the step with "
                          "learning rate 1e+33 left the parameters non-finite (an overflow "
                          "in the update or in a layer's state); lower the learning rate "
                          "(e.g. 1e+32) or scale the inputs down. The weights are those "
                          "before this step.")
    assert_named(error, model)
    assert_same_state(model, before_failing_step(tmp_path, error))
    assert model.optimizer.iterations == 4


def test_huge_inputs_that_only_overflow_batchnorm_state_are_undone(path, tmp_path):
    """BatchNorm normalizes inputs of 1e30 to finite outputs, so the loss and gradient
    stay finite, but its running variance overflows float32: that step is undone."""
    backend, fused_runs = path
    X, y = make_data("mse", n=N)
    X[2 * BATCH:3 * BATCH] *= 1e30
    model = Sequential([BatchNorm(), Dense(3)], input_dim=4, loss="mse", seed=0,
                       backend=backend)
    error = diverge(model, X, y, tmp_path, epochs=1, shuffle=False)
    assert (error.epoch, error.step) == (1, 3)
    assert "left the state of layers[0] non-finite" in str(error)
    assert_named(error, model)
    assert_same_state(model, before_failing_step(tmp_path, error))


class NaNAt(Layer):
    """A test-only custom layer: the identity, except that at training step ``bad`` its
    output is NaN (or, with ``stop``, it raises Stop there: a run stopped just before)."""

    def __init__(self, bad, stop=False):
        super().__init__()
        self.bad, self.stop = bad, stop

    def forward(self, backend, x, workspace, training=False):
        if training and self.step == self.bad:
            if self.stop:
                raise Stop
            return np.full_like(x, np.nan)
        return x

    def backward(self, backend, dy, need_dx):
        return dy if need_dx else None


class Stop(Exception):
    pass


@pytest.mark.parametrize("early_stopping", [False, True], ids=["plain", "early-stopping"])
@pytest.mark.parametrize("kind", ["dense", "batchnorm"])
def test_a_nan_made_inside_the_network_stops_before_its_step(backend_name, kind,
                                                             early_stopping):
    """Training step 7 (0-based) is epoch 2, step 3; the custom layer keeps the model on
    the per-op loop on both backends. BatchNorm's running averages take the NaN before the
    loss does (the reference stops before BatchNorm's forward)."""
    def make(stop=False):
        norm = [BatchNorm()] if kind == "batchnorm" else []   # after NaNAt: NaN reaches it
        return Sequential([Dense(8, "relu"), NaNAt(7, stop), *norm, Dense(3)], input_dim=4,
                          loss="mse", seed=0, backend=backend_name)

    X, y = make_data("mse", n=N)
    kwargs = dict(optimizer="adam")
    model, reference = make(), make(stop=True)
    with pytest.raises(fastmlp.DivergenceError) as info:
        training.fit(model, X, y, epochs=3, batch_size=BATCH, callbacks=callbacks(early_stopping),
                     **kwargs)
    with pytest.raises(Stop):
        training.fit(reference, X, y, epochs=3, batch_size=BATCH,
                     callbacks=callbacks(early_stopping), **kwargs)
    error = info.value
    assert (error.epoch, error.step) == (2, 3) and "the mean loss became nan" in str(error)
    assert_named(error, model)
    assert_same_state(model, reference)
    expected = completed_history(make, X, y, 1, callbacks=callbacks(early_stopping), **kwargs)
    assert error.history.history == expected.history


def test_the_error_pickles_with_its_attributes(tmp_path):
    X, y = make_data("mse", n=N)
    error = diverge(build("numpy"), X, y, tmp_path, epochs=20, optimizer=SGD(1.0))
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, fastmlp.DivergenceError) and str(copy) == str(error)
    assert (copy.epoch, copy.step, copy.learning_rate) == (error.epoch, error.step, 1.0)
    assert copy.history.history == error.history.history
