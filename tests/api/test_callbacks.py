"""Callbacks: EarlyStopping and ReduceLROnPlateau on scripted sequences (expected epochs
and rates worked out by hand in the comments), inside fit, and their saved state."""
import numpy as np
import pytest

from fastmlp import Dense, Sequential
from fastmlp.train.callbacks import Callback, EarlyStopping, ReduceLROnPlateau
from fastmlp.optim.optimizers import SGD
from helpers import make_data


class FakeModel:
    """What callbacks touch: weights, the optimizer, stop_training."""

    def __init__(self):
        self.weights = [np.zeros(2)]
        self.optimizer = SGD(learning_rate=0.1)
        self.stop_training = False

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def run(callback, values, monitor="val_loss"):
    """Feed one value per epoch; the fake model's weights are [epoch, epoch]."""
    model = FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(values, 1):
        model.weights = [np.full(2, float(epoch))]
        callback.on_epoch_end(epoch, {monitor: value})
        if model.stop_training:
            break
    callback.on_train_end()
    return model, epoch


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best():
    # best 0.7 at epoch 3; epoch 4 (0.71) wait 1; epoch 5 (0.7, not below 0.7 - 1e-4)
    # wait 2; epoch 6 (0.69995, not below 0.6999) wait 3 = patience: stop after epoch 6.
    stopper = EarlyStopping(patience=3, min_delta=1e-4, restore_best_weights=True)
    model, last = run(stopper, [1.0, 0.8, 0.7, 0.71, 0.7, 0.69995, 0.5, 0.4])
    assert last == 6 and stopper.stopped_epoch == 6 and stopper.best_epoch == 3
    assert stopper.best == 0.7
    np.testing.assert_array_equal(model.weights[0], [3.0, 3.0])


def test_early_stopping_maximizes_accuracy_and_keeps_weights_without_restore():
    # auto mode is "max" for accuracy: best 0.9 at epoch 2, then two epochs without gain.
    stopper = EarlyStopping("val_accuracy", patience=2)
    model, last = run(stopper, [0.5, 0.9, 0.9, 0.85, 0.95], monitor="val_accuracy")
    assert (last, stopper.best_epoch, stopper.mode) == (4, 2, "max")
    np.testing.assert_array_equal(model.weights[0], [4.0, 4.0])


def test_reduce_lr_on_plateau_follows_hand_worked_rates():
    # patience 2, factor 0.5, cooldown 1, min_lr 0.03, rate 0.1 at first:
    # e1 1.0 best; e2 1.0 wait 1; e3 1.0 wait 2 -> 0.05, cooldown 1;
    # e4 cooldown (0 left, wait 0) 1.0 not counted; e5 wait 1; e6 wait 2 -> 0.025 -> min 0.03;
    # e7 cooldown; e8 0.5 improves; e9, e10 wait 1, 2 -> already at min_lr: stays 0.03.
    reducer = ReduceLROnPlateau(patience=2, factor=0.5, cooldown=1, min_lr=0.03)
    model = FakeModel()
    reducer.set_model(model)
    rates = []
    for epoch, value in enumerate([1.0] * 7 + [0.5, 0.5, 0.5], 1):
        reducer.on_epoch_end(epoch, {"val_loss": value})
        rates.append(model.optimizer.current_learning_rate)
    expected = [0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)


def _model(backend="numpy", seed=0):
    return Sequential([Dense(8, "relu"), Dense(3)], input_dim=4, backend=backend, seed=seed)


def test_early_stopping_inside_fit_restores_the_first_epochs_weights(backend_name):
    X, y = make_data("softmax_cross_entropy")
    # A min_delta no loss can beat: only epoch 1 improves (on inf); epochs 2 and 3 wait.
    stopper = EarlyStopping("loss", patience=2, min_delta=1e9, restore_best_weights=True)
    model = _model(backend_name)
    history = model.fit(X, y, epochs=10, batch_size=16, callbacks=[stopper])
    assert len(history.history["loss"]) == 3 and stopper.stopped_epoch == 3
    once = _model(backend_name)
    once.fit(X, y, epochs=1, batch_size=16)
    for a, b in zip(model.get_weights(), once.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_reduce_lr_on_plateau_inside_fit_lowers_the_recorded_rate(backend_name):
    X, y = make_data("softmax_cross_entropy")
    reducer = ReduceLROnPlateau("loss", patience=2, factor=0.5, min_delta=1e9)
    history = _model(backend_name).fit(X, y, epochs=5, batch_size=16, learning_rate=0.1,
                                       callbacks=[reducer])
    # e1 improves; e2, e3 wait -> reduce after e3; e4 wait 1; e5 wait 2 -> reduce.
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.1, 0.1, 0.05, 0.05])


def test_callback_hooks_run_in_order():
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None):
            calls.append("begin")

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(f"start {epoch}")

        def on_epoch_end(self, epoch, logs):
            calls.append(f"end {epoch} {sorted(logs)}")

        def on_train_end(self, logs=None):
            calls.append("finish")

    X, y = make_data("softmax_cross_entropy")
    _model().fit(X, y, epochs=2, callbacks=[Recorder()])
    keys = "['accuracy', 'data_loss', 'loss', 'lr', 'penalty']"
    assert calls == ["begin", "start 1", f"end 1 {keys}", "start 2", f"end 2 {keys}", "finish"]


@pytest.mark.parametrize("make", [
    lambda: EarlyStopping(patience=2, restore_best_weights=True),
    lambda: ReduceLROnPlateau(patience=2, factor=0.5, cooldown=1)])
def test_state_dict_resumes_exactly(make):
    values = [1.0, 0.9, 0.95, 0.97, 0.96, 0.99, 0.98]
    whole = make()
    whole_model, _ = run(whole, values)
    first, rest = make(), make()
    model = FakeModel()
    first.set_model(model)
    for epoch, value in enumerate(values[:3], 1):
        model.weights = [np.full(2, float(epoch))]
        first.on_epoch_end(epoch, {"val_loss": value})
    rest.load_state_dict(first.state_dict())
    rest.set_model(model)
    for epoch, value in enumerate(values[3:], 4):
        model.weights = [np.full(2, float(epoch))]
        rest.on_epoch_end(epoch, {"val_loss": value})
        if model.stop_training:
            break
    rest.on_train_end()
    assert rest.state_dict().keys() == whole.state_dict().keys()
    for key, value in whole.state_dict().items():
        if key != "best_weights":
            assert rest.state_dict()[key] == value, key
    assert model.optimizer.current_learning_rate == whole_model.optimizer.current_learning_rate
    np.testing.assert_array_equal(model.weights[0], whole_model.weights[0])


@pytest.mark.parametrize("callbacks, error, match", [
    (EarlyStopping(), TypeError, "callbacks must be a list"),
    ([object()], TypeError, r"callbacks\[0\] must be a fastmlp.callbacks.Callback"),
    ([EarlyStopping("val_loss")], ValueError, "monitor='val_loss' is not recorded"),
])
def test_bad_callbacks_are_refused(callbacks, error, match):
    X, y = make_data("softmax_cross_entropy")
    with pytest.raises(error, match=match):
        _model().fit(X, y, epochs=1, callbacks=callbacks)


@pytest.mark.parametrize("make, match", [
    (lambda: EarlyStopping(patience=-1), "patience"),
    (lambda: EarlyStopping(min_delta=-1.0), "min_delta"),
    (lambda: EarlyStopping(mode="up"), "mode"),
    (lambda: ReduceLROnPlateau(factor=1.5), "factor must be < 1"),
    (lambda: ReduceLROnPlateau(min_lr=-1.0), "min_lr"),
])
def test_bad_callback_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
