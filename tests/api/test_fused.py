"""The fused training path (fastmlp/fused.py, csrc/train/): for models of the built-in
layers on the native backend, fit runs each epoch in one C++ call. Its parameters, optimizer state and
counters equal the per-op loop's (the reference, still used for every other model) bit
for bit; its History has the same keys and values (r2 within summation-order rounding);
a step range resumed from a checkpoint equals the uninterrupted epoch; divergence stops
before the failing step's update with the per-op path's error."""
import importlib.util
import math
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp.train import loop as training
from fastmlp.nn.activations import ACTIVATIONS, ELU, LeakyReLU
from fastmlp.nn.losses import LOSSES, get_loss
from fastmlp.train.callbacks import EarlyStopping, ReduceLROnPlateau
from fastmlp.train.fused import FusedEpochs
from fastmlp.nn.layers import BatchNorm, Dense, Dropout, Layer, Maxout, Normalization
from fastmlp.model.sequential import Sequential
from fastmlp.optim.optimizers import OPTIMIZERS, SGD, Adam, AdamW, Momentum, Nesterov
from fastmlp.nn.regularizers import L1, L1L2, L2
from fastmlp.optim.schedules import ExponentialDecay, PowerDecay, StepDecay
from helpers import make_data
from layer_cases import EXAMPLES, stack

MIXES = {"relu-tanh": ("relu", "tanh"), "elu-sigmoid": ("elu", "sigmoid"),
         "objects": (LeakyReLU(0.2), ELU(0.5)), "leaky-linear": ("leaky_relu", "linear")}
# every other registry activation, in pairs (the last one with linear)
_OTHERS = [name for name in ACTIVATIONS if name not in ("relu", "tanh", "elu", "sigmoid",
                                                        "leaky_relu", "linear")]
MIXES.update({f"{a}-{b}": (a, b) for a, b in zip(_OTHERS[::2], [*_OTHERS[1::2], "linear"])})
REGULARIZERS = {
    "none": lambda: (None, None),
    "l1": lambda: (L1(0.01), None),
    "l2-batch": lambda: (L2(0.05, scale="batch"), None),
    "l2-weight": lambda: (L2(0.05, scale="weight"), None),   # / the batch's weight sum
    # a model L1L2 with the first layer's own L1 (scale "batch") and the second's L2(0)
    "layers": lambda: (L1L2(0.01, 0.02), (L1(0.03, scale="batch"), L2(0))),
}
N, BATCH = 40, 16          # 3 steps per epoch, the last of 8 rows


@pytest.fixture(autouse=True)
def _native(native):
    """Every test here needs the native backend (skipped only if it cannot import)."""


def model(loss="softmax_cross_entropy", dtype="float32", mix="relu-tanh", regularizer="none",
          seed=0, dropout=0.0, k=3):
    model_reg, layer_regs = REGULARIZERS[regularizer]()
    layer_regs = layer_regs or (None, None)
    first, second = MIXES[mix]
    layers = [Dense(7, first, regularizer=layer_regs[0])]
    if dropout:
        layers.append(Dropout(dropout))
    layers += [Dense(5, second, regularizer=layer_regs[1]), Dense(k)]
    return Sequential(layers, input_dim=4, loss=loss, dtype=dtype, seed=seed,
                      regularizer=model_reg)


def per_op_fit(m, X, y, **kwargs):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "_FUSED", False)
        return m.fit(X, y, **kwargs)


def sample_weight(n=N, seed=4):
    w = np.random.default_rng(seed).uniform(0.0, 3.0, size=n)
    w[::7] = 0.0
    return w


def assert_same_training(a, b):
    """Parameters, gradients, optimizer state and counters identical bit for bit."""
    np.testing.assert_array_equal(a._params, b._params)
    np.testing.assert_array_equal(a._grads, b._grads)
    assert a.training_step == b.training_step
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for key in sa:
        if isinstance(sa[key], np.ndarray) or isinstance(sb[key], np.ndarray):
            np.testing.assert_array_equal(sa[key], sb[key])
        else:
            assert sa[key] == sb[key], key
    assert a.optimizer.last_learning_rate == b.optimizer.last_learning_rate


def assert_same_history(h_ref, h, rtol=1e-12):
    assert list(h.history) == list(h_ref.history)
    for key, values in h_ref.history.items():
        if key.endswith("r2"):          # sums in another order: rounding only
            np.testing.assert_allclose(h.history[key], values, rtol=rtol, atol=1e-14)
        else:
            assert h.history[key] == values, key


# --------------------------------------------------------------------------------------
# Bitwise equality with the per-op path
# --------------------------------------------------------------------------------------
# Models of the built-in layers: (name, layers given the regularizer pair); each example
# of the layer table (tests/layer_cases.py) in its stack, then mixes of them.
LAYER_SETS = {
    **{name: (lambda r, make=make: stack(make(), 3, r)) for name, make in EXAMPLES.items()},
    "maxout": lambda r: [Maxout(6, pieces=3, regularizer=r[0]), Dense(5, "tanh"), Dense(3)],
    "batchnorm": lambda r: [Dense(7, "relu", regularizer=r[0]), BatchNorm(momentum=0.9),
                            Dense(5, "elu"), BatchNorm(eps=1e-5), Dense(3)],
    "normalization": lambda r: [Normalization(), Dense(7, "relu"), Dropout(0.25),
                                Maxout(4, pieces=2, regularizer=r[1]), Dense(3)],
    "everything": lambda r: [Normalization(), Maxout(8, pieces=2), BatchNorm(), Dropout(0.3),
                             Dense(6, "sigmoid", regularizer=r[1]), BatchNorm(0.5), Dense(3)],
    # not first, so its backward (scale_columns) runs
    "inner_normalization": lambda r: [Dense(6, "tanh", regularizer=r[0]), Normalization(),
                                      Dense(3)],
}


# poisson's gradient e^z - y grows exponentially with the logits: at 0.02 (and 0.005), sgd on the
# "normalization" set's initial logits (up to 6.7) overflows e^z in the second step.
RATES = {"poisson": 0.002}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weights", ["unweighted", "weighted"])
@pytest.mark.parametrize("regularizer", ["none", "layers"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("layer_set", list(LAYER_SETS))
def test_every_built_in_layer_fuses_bitwise(layer_set, name, loss, regularizer, weights, dtype,
                                            fused_runs):
    """Every layer case, and mixes of them, on the fused path (BatchNorm's running
    averages too): the per-op loop's parameters, state, optimizer state and history, bit
    for bit."""
    X, y = make_data(loss, n=N)
    sw = sample_weight() if weights == "weighted" else None
    model_reg, layer_regs = REGULARIZERS[regularizer]()

    def make():
        return Sequential(LAYER_SETS[layer_set](layer_regs or (None, None)), input_dim=4,
                          loss=loss, dtype=dtype, seed=3, regularizer=model_reg)
    ref, fused = make(), make()
    kwargs = dict(epochs=2, batch_size=BATCH, optimizer=name, learning_rate=RATES.get(loss, 0.02),
                  sample_weight=sw, validation_data=(X[:9], y[:9]))
    h_ref = per_op_fit(ref, X, y, **kwargs)
    h = fused.fit(X, y, **kwargs)
    assert fused_runs, "the fused path did not run"
    assert_same_training(ref, fused)
    for a, b in zip(ref.get_weights(), fused.get_weights()):   # BatchNorm's running stats
        np.testing.assert_array_equal(a, b)
    assert_same_history(h_ref, h)
    for method in ("predict", "predict_proba") if get_loss(loss).classifier else ("predict",):
        np.testing.assert_array_equal(getattr(fused, method)(X), getattr(ref, method)(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weights", ["unweighted", "weighted"])
@pytest.mark.parametrize("regularizer", list(REGULARIZERS))
@pytest.mark.parametrize("mix", list(MIXES))
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fused_equals_per_op_bitwise(name, loss, mix, regularizer, weights, dtype, fused_runs):
    X, y = make_data(loss, n=N)
    sw = sample_weight() if weights == "weighted" else None
    rate = 0.05 if name in ("sgd", "momentum", "nesterov", "adagrad") else 0.01
    ref, fused = (model(loss, dtype, mix, regularizer) for _ in range(2))
    kwargs = dict(epochs=2, batch_size=BATCH, sample_weight=sw)
    h_ref = per_op_fit(ref, X, y, optimizer=OPTIMIZERS[name](rate, clipnorm=0.3), **kwargs)
    assert not fused_runs
    h = fused.fit(X, y, optimizer=OPTIMIZERS[name](rate, clipnorm=0.3), **kwargs)
    assert len(fused_runs) == 2
    assert_same_training(ref, fused)
    assert_same_history(h_ref, h)


# Adam's eps before the bias correction, and the ends of the ranges scikit-learn allows.
SK_OPTIMIZERS = {
    "adam-eps-before": lambda: Adam(0.01, eps_placement="before_correction"),
    "adamw-eps-before-beta1-0": lambda: AdamW(0.01, beta_1=0.0, beta_2=0.0,
                                              eps_placement="before_correction"),
    "momentum-1": lambda: Momentum(0.01, momentum=1.0),
    "nesterov-1": lambda: Nesterov(0.01, momentum=1.0),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SK_OPTIMIZERS))
def test_eps_placement_and_range_ends_train_fused_bitwise(name, dtype, fused_runs):
    X, y = make_data("softmax_cross_entropy", n=N)
    ref, fused = model(dtype=dtype), model(dtype=dtype)
    h_ref = per_op_fit(ref, X, y, epochs=2, batch_size=BATCH, optimizer=SK_OPTIMIZERS[name]())
    h = fused.fit(X, y, epochs=2, batch_size=BATCH, optimizer=SK_OPTIMIZERS[name]())
    assert fused_runs
    assert_same_training(ref, fused)
    assert_same_history(h_ref, h)


def test_the_eps_placement_changes_the_fused_trajectory(fused_runs):
    """So the test above fails if the fused path ignored the option (eps 0.1 makes the
    two placements differ by far more than rounding)."""
    X, y = make_data("softmax_cross_entropy", n=N)
    before, after = model(dtype="float64"), model(dtype="float64")
    before.fit(X, y, epochs=1, optimizer=Adam(0.01, eps=0.1, eps_placement="before_correction"))
    after.fit(X, y, epochs=1, optimizer=Adam(0.01, eps=0.1))
    assert fused_runs
    assert np.abs(before._params - after._params).max() > 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
def test_dropout_models_train_fused_bitwise(loss, dtype, fused_runs):
    X, y = make_data(loss, n=N)
    ref, fused = (model(loss, dtype, "elu-sigmoid", "l1", dropout=0.4) for _ in range(2))
    h_ref = per_op_fit(ref, X, y, epochs=2, batch_size=BATCH, optimizer="adam")
    h = fused.fit(X, y, epochs=2, batch_size=BATCH, optimizer="adam")
    assert fused_runs
    assert_same_training(ref, fused)
    assert_same_history(h_ref, h)
    again = fused.fit(X, y, epochs=1, batch_size=BATCH)          # the step counter carries
    assert fused.training_step == 9
    per_op_fit(ref, X, y, epochs=1, batch_size=BATCH)
    assert_same_training(ref, fused)
    assert again.epochs == 1


@pytest.mark.parametrize("schedule", [
    ExponentialDecay(0.05, k=0.3, per="step"),
    StepDecay(0.05, factor=0.5, every=2, per="step"),
    ExponentialDecay(0.05, k=0.5),                         # per epoch
    PowerDecay(0.05, per="step"),                          # counts samples
    PowerDecay(0.05)])
def test_schedules_and_plateau_scale_give_the_per_op_rates(schedule, fused_runs):
    X, y = make_data("mse", n=N)
    ref, fused = model("mse", "float64"), model("mse", "float64")
    kwargs = dict(epochs=4, batch_size=BATCH, validation_data=(X[:10], y[:10]))
    cb = dict(monitor="loss", patience=0, factor=0.5, min_delta=10.0)   # reduce every epoch
    h_ref = per_op_fit(ref, X, y, optimizer=Adam(schedule), callbacks=[ReduceLROnPlateau(**cb)],
                       **kwargs)
    h = fused.fit(X, y, optimizer=Adam(schedule), callbacks=[ReduceLROnPlateau(**cb)], **kwargs)
    assert fused_runs
    assert_same_training(ref, fused)
    assert_same_history(h_ref, h)
    assert len(set(h.history["lr"])) == 4


def test_full_batch_single_output_and_batch_larger_than_the_data(fused_runs):
    for loss in LOSSES:
        k = 2 if loss == "softmax_cross_entropy" else 1
        X, y = make_data(loss, n=N, k=k)
        for batch in (None, 1, 100):
            ref, fused = model(loss, k=k), model(loss, k=k)
            h_ref = per_op_fit(ref, X, y, epochs=2, batch_size=batch, optimizer="rmsprop")
            h = fused.fit(X, y, epochs=2, batch_size=batch, optimizer="rmsprop")
            assert_same_training(ref, fused)
            assert_same_history(h_ref, h)
    assert fused_runs


def test_zero_weight_batches_and_class_weights(fused_runs):
    X, y = make_data("softmax_cross_entropy", n=N)
    w = np.ones(N)
    w[:BATCH] = 0.0                                   # the first batch (no shuffle) weighs 0
    for kwargs in (dict(sample_weight=w, shuffle=False), dict(class_weight="balanced"),
                   dict(class_weight={0: 2.0, 2: 0.5}, sample_weight=sample_weight())):
        ref, fused = model(), model()
        h_ref = per_op_fit(ref, X, y, epochs=2, batch_size=BATCH, optimizer="nesterov", **kwargs)
        h = fused.fit(X, y, epochs=2, batch_size=BATCH, optimizer="nesterov", **kwargs)
        assert_same_training(ref, fused)
        assert_same_history(h_ref, h)
    assert fused_runs


def test_history_and_callbacks_agree_with_validation(fused_runs):
    X, y = make_data("binary_cross_entropy", n=N)
    histories, models = [], []
    for fit in (per_op_fit, lambda m, *a, **k: m.fit(*a, **k)):
        m = model("binary_cross_entropy", "float64", "elu-sigmoid", "l2-batch")
        stop = EarlyStopping("val_loss", patience=1, min_delta=1.0, restore_best_weights=True)
        histories.append(fit(m, X, y, epochs=6, batch_size=8, optimizer="momentum",
                             validation_data=(X[:12], y[:12]), callbacks=[stop]))
        models.append(m)
        assert stop.stopped_epoch == 2
    assert_same_training(*models)
    assert_same_history(*histories)
    assert list(histories[1].history) == ["loss", "data_loss", "penalty", "accuracy",
                                          "val_loss", "val_accuracy", "lr"]
    assert fused_runs


@pytest.mark.parametrize("k", [1, 3])
def test_r2_within_summation_rounding(k):
    """Targets far from 0 (1e5 + N(0, ~2)): without the first batch's shift the sums of y
    and y^2 would cancel and lose ~1e-7 of R^2."""
    X, y = make_data("mse", n=500, k=k)
    y = y + 1e5
    ref, fused = model("mse", "float64", k=k), model("mse", "float64", k=k)
    h_ref = per_op_fit(ref, X, y, epochs=3, batch_size=64, optimizer="adam")
    h = fused.fit(X, y, epochs=3, batch_size=64, optimizer="adam")
    assert_same_training(ref, fused)
    assert h.history["data_loss"] == h_ref.history["data_loss"]
    np.testing.assert_allclose(h.history["r2"], h_ref.history["r2"], rtol=1e-13)


# --------------------------------------------------------------------------------------
# A step range: a checkpoint inside an epoch
# --------------------------------------------------------------------------------------
def _arrays(m, X, y):
    X, Y = m.prepare_data(X, y)
    return X, Y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("split", [1, 4, 6])
def test_resuming_inside_an_epoch_equals_the_uninterrupted_epoch(split, dtype):
    """Steps [0, k) on one model, then its weights and optimizer state into a new model
    and optimizer that run [k, n) with the same order: the weights equal one run of the
    whole epoch (Adam's t, a per-step schedule and Dropout's counter carry)."""
    X, y = make_data("softmax_cross_entropy", n=100)
    order = np.random.default_rng(5).permutation(100)
    batch, steps = 14, 8

    def adam():
        return Adam(ExponentialDecay(0.02, k=0.1, per="step"), clipnorm=1.0)

    def fresh(seed=0):
        return model(dtype=dtype, mix="objects", regularizer="layers", dropout=0.2, seed=seed)

    whole, opt = fresh(), adam()
    Xw, Yw = _arrays(whole, X, y)
    totals = FusedEpochs(whole, opt, batch, whole.backend.fused_trainer).run_steps(
        Xw, Yw, None, order, 0, steps, epoch=1)
    assert totals.steps == steps

    first, opt1 = fresh(), adam()
    part = FusedEpochs(first, opt1, batch, first.backend.fused_trainer).run_steps(
        Xw, Yw, None, order, 0, split, epoch=1)
    checkpoint = first.get_weights(), opt1.state_dict(), first.training_step

    second, opt2 = fresh(), Adam()
    second.set_weights([np.zeros_like(w) for w in checkpoint[0]])
    second.set_weights(checkpoint[0])
    opt2.load_state_dict(checkpoint[1])
    second._step = checkpoint[2]
    FusedEpochs(second, opt2, batch, second.backend.fused_trainer).run_steps(
        Xw, Yw, None, order, split, steps, epoch=1, totals=part)
    np.testing.assert_array_equal(second._params, whole._params)
    np.testing.assert_array_equal(opt2.m, opt.m)
    np.testing.assert_array_equal(opt2.v, opt.v)
    assert (opt2.iterations, opt2.samples, second.training_step) == (steps, 100, steps)
    assert part.steps == steps
    assert (part.loss_sum, part.weight_sum, part.correct, part.count) == \
        (totals.loss_sum, totals.weight_sum, totals.correct, totals.count)


# --------------------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------------------
def _diverge(fit, m, X, y, **kwargs):
    with pytest.raises(fastmlp.DivergenceError) as info:
        fit(m, X, y, **kwargs)
    return str(info.value)


def test_a_non_finite_loss_stops_before_the_step_like_the_per_op_path(fused_runs):
    X, y = make_data("mse", n=40)
    ref, fused = model("mse", "float64", "relu-tanh"), model("mse", "float64", "relu-tanh")
    y = y * 1e150
    kwargs = dict(epochs=50, batch_size=10)
    msg_ref = _diverge(per_op_fit, ref, X, y, learning_rate=1e6, **kwargs)
    msg = _diverge(lambda m, *a, **k: m.fit(*a, **k), fused, X, y, learning_rate=1e6, **kwargs)
    assert fused_runs
    assert msg == msg_ref
    assert "the mean loss became" in msg and "with learning rate 1e+06" in msg
    assert_same_training(ref, fused)
    assert np.isfinite(fused._params).all()


def test_a_non_finite_gradient_at_a_later_step_names_it_and_changes_nothing(fused_runs):
    """float32: 1e30 inputs in the third batch give a finite loss but an infinite
    gradient (as test_optimizers' single-step case, here at epoch 1, step 3 of 4; the
    first two steps barely move w = 1e-20)."""
    m_ref, m = (Sequential([Dense(1)], input_dim=1, loss="mse", dtype="float32", seed=0)
                for _ in range(2))
    X = np.full((16, 1), 1e-3)
    X[8:12] = 1e30
    for net in (m_ref, m):
        net.set_weights([np.array([[1e-20]]), np.array([0.0])])
    kwargs = dict(epochs=1, batch_size=4, shuffle=False, optimizer="momentum")
    with pytest.warns(fastmlp.DataScaleWarning):             # the 1e30 inputs, twice
        msg_ref = _diverge(per_op_fit, m_ref, X, np.zeros(16), **kwargs)
        msg = _diverge(lambda net, *a, **k: net.fit(*a, **k), m, X, np.zeros(16), **kwargs)
    assert fused_runs
    assert msg == msg_ref
    assert msg.startswith("training diverged at epoch 1, step 3 of 4: the gradient is not "
                          "finite") and "at optimizer step 3 with learning rate 0.01" in msg
    assert_same_training(m_ref, m)
    assert m.optimizer.iterations == 2 and m.training_step == 2


def test_divergence_at_the_first_step_leaves_no_optimizer_state(fused_runs):
    m = Sequential([Dense(1)], input_dim=1, loss="mse", dtype="float32", seed=0)
    m.set_weights([np.array([[1e-20]]), np.array([0.0])])
    before = m._params.copy()
    with pytest.raises(fastmlp.DivergenceError, match=r"epoch 1, step 1 of 1: the gradient"), \
            pytest.warns(fastmlp.DataScaleWarning):
        m.fit(np.full((4, 1), 1e30), np.zeros(4), epochs=1, batch_size=None, optimizer="adam")
    assert fused_runs
    np.testing.assert_array_equal(m._params, before)
    assert m.optimizer.iterations == 0 and m.optimizer.m is None and m.optimizer.v is None


# --------------------------------------------------------------------------------------
# Which models take the fused path
# --------------------------------------------------------------------------------------
class Scale(Layer):
    """A custom layer: y = x * 2."""

    def forward(self, backend, x, workspace, training=False):
        return x * 2

    def backward(self, backend, dy, need_dx):
        return dy * 2 if need_dx else None


class MyL2(L2):
    pass


class MySGD(SGD):
    pass


class MyMaxout(Maxout):
    pass


@pytest.mark.parametrize("make", [
    lambda: Sequential([MyMaxout(5, pieces=2), Dense(3)], input_dim=4, seed=0),
    lambda: Sequential([Dense(5, "relu"), Scale(), Dense(3)], input_dim=4, seed=0),
    lambda: Sequential([Dense(5, "relu", regularizer=MyL2(0.1)), Dense(3)], input_dim=4, seed=0),
    lambda: Sequential([Dense(5, "relu"), Dense(3)], input_dim=4, seed=0, backend="numpy"),
], ids=["subclassed-layer", "custom-layer", "custom-regularizer", "numpy"])
def test_other_models_fall_back_to_the_per_op_loop(make, fused_runs):
    X, y = make_data("softmax_cross_entropy", n=N)
    m = make()
    assert FusedEpochs.create(m, SGD(), BATCH) is None
    history = m.fit(X, y, epochs=2, batch_size=BATCH, optimizer="adam")
    assert not fused_runs
    assert history.epochs == 2 and m.training_step == 6


def test_a_custom_optimizer_falls_back(fused_runs):
    X, y = make_data("softmax_cross_entropy", n=N)
    model().fit(X, y, epochs=1, batch_size=BATCH, optimizer=MySGD())
    assert not fused_runs
    model().fit(X, y, epochs=1, batch_size=BATCH, optimizer=SGD())
    assert fused_runs == [(0, 3)]


def test_a_regularizer_only_the_per_op_path_runs_switches_epochs_to_it(fused_runs):
    """A callback gives a layer a subclassed regularizer after epoch 1: epoch 2 runs on
    the per-op loop, and the whole fit still equals the per-op reference."""
    from fastmlp.train.callbacks import Callback

    class Swap(Callback):
        def on_epoch_end(self, epoch, logs):
            self.model.layers[0].regularizer = MyL2(0.1)

    X, y = make_data("softmax_cross_entropy", n=N)
    ref, fused = model(), model()
    h_ref = per_op_fit(ref, X, y, epochs=3, batch_size=BATCH, optimizer="adam", callbacks=[Swap()])
    h = fused.fit(X, y, epochs=3, batch_size=BATCH, optimizer="adam", callbacks=[Swap()])
    assert fused_runs == [(0, 3)]
    assert_same_training(ref, fused)
    assert_same_history(h_ref, h)


def test_a_progress_bar_splits_the_epoch_into_step_ranges(monkeypatch, capsys, fused_runs):
    import sys
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    X, y = make_data("softmax_cross_entropy", n=400)
    ref, fused = model(), model()
    per_op_fit(ref, X, y, epochs=1, batch_size=2, optimizer="adam")
    fused.fit(X, y, epochs=1, batch_size=2, optimizer="adam", verbose=1)
    has_tqdm = importlib.util.find_spec("tqdm") is not None
    assert fused_runs == ([(s, s + 2) for s in range(0, 200, 2)] if has_tqdm else [(0, 200)])
    assert_same_training(ref, fused)
    capsys.readouterr()


def test_two_models_train_concurrently_with_the_gil_released():
    X, y = make_data("softmax_cross_entropy", n=2000, n_features=4)
    serial = [model(seed=s) for s in (1, 2)]
    for m in serial:
        m.fit(X, y, epochs=2, batch_size=32, optimizer="adam")
    parallel = [model(seed=s) for s in (1, 2)]
    threads = [threading.Thread(target=m.fit, args=(X, y),
                                kwargs=dict(epochs=2, batch_size=32, optimizer="adam"))
               for m in parallel]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a._params, b._params)


# --------------------------------------------------------------------------------------
# The binding's checks
# --------------------------------------------------------------------------------------
def _trainer(m):
    with m.writing_params():
        return m.backend.fused_trainer(params=m._params, grads=m._grads, m=None, v=None,
                                       program=m.fused_program(), loss=m.loss,
                                       optimizer="sgd", batch_size=BATCH)


def test_trainer_run_checks_its_arguments():
    m = model()
    X, Y = _arrays(m, *make_data("softmax_cross_entropy", n=N))
    trainer = _trainer(m)
    order, lrs = np.arange(N), np.full(3, 0.1)
    run = trainer.run
    with pytest.raises(TypeError, match="X has dtype float64, expected float32"):
        run(X.astype(np.float64), Y, None, order, 0, 3, lrs, 1, 0, trainer.new_totals())
    with pytest.raises(TypeError, match="order has dtype int32, expected int64"):
        run(X, Y, None, order.astype(np.int32), 0, 3, lrs, 1, 0, trainer.new_totals())
    bad = order.copy()
    bad[5] = N
    with pytest.raises(ValueError, match=r"order holds 40 at index 5, expected 0 <= order < 40"):
        run(X, Y, None, bad, 0, 3, lrs, 1, 0, trainer.new_totals())
    with pytest.raises(ValueError, match=r"the step range \[2, 4\) must lie within the "
                                         r"epoch's 3 steps"):
        run(X, Y, None, order, 2, 4, np.full(2, 0.1), 1, 0, trainer.new_totals())
    with pytest.raises(ValueError, match=r"lrs has shape \(2,\), expected one rate per step"):
        run(X, Y, None, order, 0, 3, lrs[:2], 1, 0, trainer.new_totals())
    with pytest.raises(ValueError, match=r"shape mismatch: X is \(40, 4\), Y is \(40, 2\)"):
        run(X, Y[:, :2].copy(), None, order, 0, 3, lrs, 1, 0, trainer.new_totals())
    with pytest.raises(ValueError, match="t0 must be >= 1"):
        run(X, Y, None, order, 0, 3, lrs, 0, 0, trainer.new_totals())
    with pytest.raises(ValueError, match="params overlaps W"):
        run(X, Y, m._params[:N], order, 0, 3, lrs, 1, 0, trainer.new_totals())
    before = m._params.copy()
    totals = run(X, Y, None, order, 0, 0, lrs[:0], 1, 0, trainer.new_totals())
    assert totals.steps == 0 and totals.diverged is None and totals.diverged_step == -1
    np.testing.assert_array_equal(m._params, before)


def test_a_run_visits_the_rows_its_order_names_with_the_penalty_of_n_samples():
    """order may name fewer rows than X has (a streamed block's, fastmlp/train/stream.py):
    the steps and their sizes follow order's length; n_samples is the penalty's n. The
    same as the run over X[order] in turn with that n."""
    def trained(X, Y, order, n_samples=100):
        m = model(regularizer="l1")                      # lambda / n: n is n_samples
        totals = _trainer(m).run(X, Y, None, order, 0, 3, np.full(3, 0.1), 1, 0,
                                 _trainer(m).new_totals(), n_samples=n_samples)
        return m, totals

    m = model()
    X, Y = _arrays(m, *make_data("softmax_cross_entropy", n=N))
    order = np.random.default_rng(0).permutation(N)[:37]        # 3 steps, the last of 5
    ours, ours_totals = trained(X, Y, order)
    theirs, their_totals = trained(X[order], Y[order], np.arange(37))
    np.testing.assert_array_equal(ours._params, theirs._params)
    assert ours_totals.steps == their_totals.steps == 3
    assert ours_totals.penalty_sum == their_totals.penalty_sum > 0
    assert trained(X, Y, order, 0)[1].penalty_sum > ours_totals.penalty_sum   # n = 37
    trainer = _trainer(m)
    with pytest.raises(ValueError, match=r"order has shape \(0,\), expected \(visits,\)"):
        trainer.run(X, Y, None, order[:0], 0, 0, np.full(0, 0.1), 1, 0, trainer.new_totals())
    with pytest.raises(ValueError, match="n_samples must be 0 .* or at least order's 37 rows"):
        trainer.run(X, Y, None, order, 0, 3, np.full(3, 0.1), 1, 0, trainer.new_totals(),
                    n_samples=36)


def test_a_run_saves_the_state_first_when_asked_and_restore_saved_puts_it_back():
    """save_first keeps the parameters and Adam's m and v as the run found them;
    restore_saved puts exactly those back (fit's roll-back, train/rollback.py); without a
    saving run it refuses. state_finite reports the parameters and state after a run."""
    m = model()
    X, Y = _arrays(m, *make_data("softmax_cross_entropy", n=N))
    mom, vel = np.zeros_like(m._params), np.zeros_like(m._params)
    with m.writing_params():
        trainer = m.backend.fused_trainer(params=m._params, grads=m._grads, m=mom, v=vel,
                                          program=m.fused_program(), loss=m.loss,
                                          optimizer="adam", batch_size=BATCH, b1=0.9,
                                          b2=0.999, eps=1e-7)
    order, lrs = np.arange(N), np.full(3, 0.01)
    with pytest.raises(ValueError, match="no run saved the state"):
        trainer.restore_saved()
    totals = trainer.run(X, Y, None, order, 0, 3, lrs, 1, 0, trainer.new_totals())
    assert totals.state_finite
    start = [a.copy() for a in (m._params, mom, vel)]
    totals = trainer.run(X, Y, None, order, 0, 3, lrs, 4, 3, trainer.new_totals(),
                         save_first=True)
    assert totals.steps == 3 and totals.state_finite
    assert not np.array_equal(m._params, start[0]) and not np.array_equal(mom, start[1])
    trainer.run(X, Y, None, order, 0, 3, lrs, 7, 6, trainer.new_totals())   # saves nothing
    trainer.restore_saved()
    for now, then in zip((m._params, mom, vel), start):
        np.testing.assert_array_equal(now, then)
    mom[3] = np.inf                       # a state the next run leaves non-finite
    assert not trainer.run(X, Y, None, order, 0, 1, lrs[:1], 4, 3,
                           trainer.new_totals()).state_finite


def test_a_trainer_refuses_a_second_run_while_one_is_in_progress():
    """The C++ trainer's own guard (its workspaces are per trainer): a run waiting for the
    weights lock holds the trainer, so another thread's run is a ValueError, and the
    trainer runs again once the first run is done."""
    m = model()
    X, Y = _arrays(m, *make_data("softmax_cross_entropy", n=N))
    lock = m.backend.weights_lock()
    with m.writing_params():
        trainer = m.backend.fused_trainer(params=m._params, grads=m._grads, m=None, v=None,
                                          program=m.fused_program(), loss=m.loss,
                                          optimizer="sgd", batch_size=BATCH, lock=lock)
    order, lrs = np.arange(N), np.full(3, 0.1)
    done = []
    first = threading.Thread(target=lambda: done.append(
        trainer.run(X, Y, None, order, 0, 3, lrs, 1, 0, trainer.new_totals()).steps))
    with lock.writing:                       # the first run waits inside, holding the trainer
        first.start()
        refused = None
        for _ in range(10_000):              # until the first run has entered (at most ~10 s)
            try:                             # an empty step range takes no lock
                trainer.run(X, Y, None, order, 0, 0, lrs[:0], 1, 0, trainer.new_totals())
            except ValueError as exc:
                refused = exc
                break
            threading.Event().wait(0.001)
    first.join()
    assert refused is not None and "already running in another thread" in str(refused)
    assert done == [3]
    assert trainer.run(X, Y, None, order, 0, 3, lrs, 4, 3, trainer.new_totals()).steps == 3


def _edited(program, phase=None, **changes):
    """A copy of the program with a phase's record arrays (or the buffers) changed."""
    program = {**program, **({} if phase else changes)}
    if phase:
        program[phase] = {**program[phase], **changes}
    return program


def test_trainer_creation_checks_the_buffers_and_the_program():
    m = model()
    with m.writing_params():         # the trainer binds the parameters for writing
        program = m.fused_program()
        create = m.backend.fused_trainer
        base = dict(params=m._params, grads=m._grads, m=None, v=None, program=program,
                    loss=m.loss, optimizer="sgd", batch_size=BATCH)
        with pytest.raises(TypeError, match="m must be a numpy array for this optimizer"):
            create(**{**base, "optimizer": "adam"})
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            create(**{**base, "batch_size": 0})
        readonly = m._params.copy()
        readonly.flags.writeable = False
        with pytest.raises(ValueError, match="params is read-only"):
            create(**{**base, "params": readonly})
        forward = program["forward"]
        w = int(forward["args"][0, 1])                 # the first gemm's W
        arrays = list(program["arrays"])
        arrays[w] = model()._params[:arrays[w].size]
        with pytest.raises(ValueError, match=rf"buffers\[{w}\] is not a view into the flat "
                                             r"buffer"):
            create(**{**base, "program": _edited(program, arrays=arrays)})
        shapes = program["shapes"].copy()
        shapes[int(forward["args"][0, 3])][0] += 1       # z one column too wide
        with pytest.raises(ValueError, match=r"forward\[0\] \(gemm_bias_act\) has arguments "
                                             r"of widths"):
            create(**{**base, "program": _edited(program, shapes=shapes)})
        with pytest.raises(ValueError, match="unknown activation 'swish'"):
            create(**{**base, "program": _edited(
                program, "forward", activations=["swish"] + forward["activations"][1:])})
        with pytest.raises(ValueError, match="unknown op code 'conv'"):
            create(**{**base, "program": _edited(
                program, "forward", codes=["conv"] + forward["codes"][1:])})
        args = forward["args"].copy()
        args[0, 3] = w                                  # z into the weights
        with pytest.raises(ValueError, match=r"forward\[0\] \(gemm_bias_act\) writes a "
                                             r"buffer it may only read"):
            create(**{**base, "program": _edited(program, "forward", args=args)})
        args = forward["args"].copy()
        args[0, 5] = 0                                  # one buffer too many
        with pytest.raises(ValueError, match=r"needs 5 buffers"):
            create(**{**base, "program": _edited(program, "forward", args=args)})
        assert create(**base).steps_per_epoch(N) == math.ceil(N / BATCH)
