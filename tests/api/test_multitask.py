"""MultiTask: a shared trunk and several heads on one flat buffer. Oracles: centered finite
differences of the weighted cost, an equivalent Sequential (one head), the NumPy backend
(native agreement), and learning a synthetic two-task problem."""
import pickle

import numpy as np
import pytest

from fastmlp import L2, Dense, Dropout, Sequential
from fastmlp.train.callbacks import EarlyStopping
from fastmlp.errors import DivergenceError
from fastmlp.model.multitask import MultiTask
from helpers import assert_close, assert_gradient_close, numeric_gradient

LOSSES = {"cls": "softmax_cross_entropy", "reg": "mse"}


def two_heads(backend="numpy", dtype="float64", trunk=(6, 5), loss_weights=None, seed=0,
              input_dim=4, **kwargs):
    """A tanh/elu trunk of the given widths, a 3-class head and a 2-output regression head."""
    acts = ("tanh", "elu", "tanh")
    return MultiTask([Dense(units, act) for units, act in zip(trunk, acts)],
                     {"cls": [Dense(4, "sigmoid"), Dense(3)], "reg": [Dense(2)]}, LOSSES,
                     loss_weights, input_dim=input_dim, backend=backend, dtype=dtype,
                     seed=seed, **kwargs)


def two_task_data(n, seed=0, n_features=4):
    """X, and targets of a 3-class label and two real values, all functions of X."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    A = rng.normal(size=(n_features, 3))
    B = rng.normal(size=(n_features, 2))
    return X, {"cls": (X @ A).argmax(axis=1), "reg": np.tanh(X @ B) + 0.5 * X[:, :1]}


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("trunk", [(6, 5), ()], ids=["trunk", "no-trunk"])
def test_gradient_of_weighted_cost_matches_finite_differences(trunk):
    """d/dp [0.7 L_cls + 2.5 L_reg + L2 penalty] over the whole flat parameter vector."""
    model = two_heads(trunk=trunk, loss_weights={"cls": 0.7, "reg": 2.5},
                      regularizer=L2(0.3), seed=5)
    rng = np.random.default_rng(4)        # non-zero biases: every activation's curved part
    model.set_weights([w + rng.normal(scale=0.3, size=w.shape) for w in model.get_weights()])
    X, targets = model.prepare_data(*two_task_data(7, seed=6))
    n = len(X)

    def cost():
        return model.evaluate_arrays(X, targets)["loss"] + model.penalty(n, n, add_gradient=False)

    model.loss_and_grad(X, targets)
    model.penalty(n, n)
    with model.writing_params():          # perturbed in place
        numeric = numeric_gradient(cost, model._params)
    assert_gradient_close(numeric, model._grads)


def test_a_zero_weight_head_sends_no_gradient():
    model = two_heads(loss_weights={"cls": 1.0, "reg": 0.0})
    model.loss_and_grad(*model.prepare_data(*two_task_data(9)))
    reg = model.heads["reg"][0]
    assert not reg.dW.any() and not reg.db.any()
    assert model.heads["cls"][0].dW.any() and model.trunk[0].dW.any()


# ------------------------------------------------- one head == Sequential
def test_one_head_trains_exactly_as_sequential(backend_name, per_op):
    """Same layers, seed and data: the same weights, history and predictions, bit for bit
    (Dropout's masks included: layer indices and the step counter agree)."""
    def layers():
        return [Dense(8, "relu"), Dropout(0.2)], [Dense(5, "tanh"), Dense(3)]
    trunk, head = layers()
    multi = MultiTask(trunk, {"y": head}, {"y": "softmax_cross_entropy"}, input_dim=4,
                      backend=backend_name, seed=3, regularizer=L2(0.1))
    single = Sequential(sum(layers(), []), input_dim=4, backend=backend_name, seed=3,
                        regularizer=L2(0.1))
    np.testing.assert_array_equal(multi._params, single._params)
    X, targets = two_task_data(50, seed=1)
    y = targets["cls"]
    fit = dict(epochs=3, batch_size=16, optimizer="adam", learning_rate=0.01)
    h_multi = multi.fit(X, {"y": y}, validation_data=(X[:20], {"y": y[:20]}), **fit).history
    h_single = single.fit(X, y, validation_data=(X[:20], y[:20]), **fit).history
    np.testing.assert_array_equal(multi._params, single._params)
    for key, single_key in [("loss", "loss"), ("penalty", "penalty"), ("y_loss", "data_loss"),
                            ("y_accuracy", "accuracy"), ("val_y_loss", "val_loss"),
                            ("val_loss", "val_loss"), ("val_y_accuracy", "val_accuracy"),
                            ("lr", "lr")]:
        assert h_multi[key] == h_single[single_key], key
    np.testing.assert_array_equal(multi.predict(X)["y"], single.predict(X))
    np.testing.assert_array_equal(multi.predict_proba(X, batch_size=7)["y"],
                                  single.predict_proba(X))
    assert multi.evaluate(X, {"y": y})["y_accuracy"] == single.evaluate(X, y)["accuracy"]
    assert multi.training_step == single.training_step == 12


# ------------------------------------------------------ native vs NumPy
THREE_LOSSES = {"cls": "softmax_cross_entropy", "reg": "mse", "tags": "binary_cross_entropy"}


def three_heads(backend, dtype):
    return MultiTask([Dense(16, "relu"), Dense(12, "tanh")],
                     {"cls": [Dense(8, "elu"), Dense(3)], "reg": [Dense(2)],
                      "tags": [Dense(2)]}, THREE_LOSSES, {"cls": 1.0, "reg": 0.5, "tags": 2.0},
                     input_dim=4, backend=backend, dtype=dtype, seed=11)


def three_task_data(n):
    X, targets = two_task_data(n, seed=2)
    return X, {**targets, "tags": (X[:, 1:3] > 0).astype(int)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_agrees_with_numpy_after_one_step(native, dtype):
    X, targets = three_task_data(64)
    oracle, core = three_heads("numpy", dtype), three_heads(native, dtype)
    np.testing.assert_array_equal(core._params, oracle._params)
    for model in (oracle, core):
        model.fit(X, targets, epochs=1, batch_size=None, shuffle=False, learning_rate=0.1)
    assert_close(core._grads, oracle._grads, "backend_one_step", dtype)
    assert_close(core._params, oracle._params, "backend_one_step", dtype)


def test_native_agrees_with_numpy_after_five_epochs(native):
    X, targets = three_task_data(100)
    oracle, core = three_heads("numpy", "float64"), three_heads(native, "float64")
    histories = [m.fit(X, targets, epochs=5, batch_size=16, learning_rate=0.05).history
                 for m in (oracle, core)]
    assert_close(core._params, oracle._params, "backend_five_epochs", "float64")
    for key in ("loss", "cls_loss", "reg_loss", "tags_loss"):
        assert_close(histories[1][key], histories[0][key], "backend_five_epochs", "float64")
    for get in (lambda m: m.predict_proba(X), lambda m: {"reg": m.predict(X)["reg"]}):
        for name, value in get(oracle).items():
            assert_close(get(core)[name], value, "backend_five_epochs", "float64")


# ------------------------------------------------------------- learning
def test_learns_both_tasks(backend_name):
    """Held-out accuracy far above chance (1/3) and R^2 far above 0 (the mean)."""
    X, targets = two_task_data(1200, seed=7, n_features=6)
    train, test = slice(0, 900), slice(900, None)
    model = MultiTask([Dense(32, "relu"), Dense(32, "relu")],
                      {"cls": [Dense(3)], "reg": [Dense(16, "tanh"), Dense(2)]}, LOSSES,
                      {"cls": 1.0, "reg": 2.0}, input_dim=6, backend=backend_name, seed=0)
    history = model.fit(X[train], {k: v[train] for k, v in targets.items()}, epochs=25,
                        batch_size=32, optimizer="adam", learning_rate=0.01).history
    scores = model.evaluate(X[test], {k: v[test] for k, v in targets.items()})
    assert scores["cls_accuracy"] > 0.85 and scores["reg_r2"] > 0.85, scores
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    predicted = model.predict(X[test])
    assert np.mean(predicted["cls"] == targets["cls"][test]) == scores["cls_accuracy"]
    assert predicted["reg"].shape == (300, 2)


# ------------------------------------------------------ state and weights
def test_parameters_are_read_only_and_writes_are_counted():
    model = two_heads()
    with pytest.raises(ValueError, match="read-only"):
        model.trunk[0].W[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        model.heads["reg"][0].b[0] = 1.0
    version = model.weights_version
    X, targets = two_task_data(20)
    model.fit(X, targets, epochs=2, batch_size=8)
    assert model.weights_version == version + 2
    model.set_weights(model.get_weights())
    assert model.weights_version == version + 3
    assert model.training_step == 6


def test_weights_round_trip_in_trunk_then_heads_order():
    model, other = two_heads(seed=1), two_heads(seed=2)
    weights = model.get_weights()
    shapes = [(6, 4), (6,), (5, 6), (5,), (4, 5), (4,), (3, 4), (3,), (2, 5), (2,)]
    assert [w.shape for w in weights] == shapes
    assert sum(w.size for w in weights) == model.n_params == model._params.size
    other.set_weights(weights)
    np.testing.assert_array_equal(other._params, model._params)
    with pytest.raises(ValueError, match="10 arrays"):
        other.set_weights(weights[:-1])
    with pytest.raises(ValueError, match=r"weights\[8\] must have shape \(2, 5\)"):
        other.set_weights(weights[:8] + [np.zeros((5, 2)), weights[9]])


def test_pickle_keeps_layers_as_views_of_one_buffer():
    model = two_heads()
    X, targets = two_task_data(30)
    model.fit(X, targets, epochs=1, optimizer="adam")
    clone = pickle.loads(pickle.dumps(model))
    for layer in clone.layers:
        assert np.shares_memory(layer.W, clone._params)
    assert clone.heads["cls"][0] is clone.layers[2]
    for name, value in model.predict(X).items():
        np.testing.assert_array_equal(clone.predict(X)[name], value)
    clone.fit(X, targets, epochs=1)           # keeps training: the optimizer came along
    assert clone.optimizer.iterations == 2 * model.optimizer.iterations


def test_summary_and_repr_name_every_part():
    model = two_heads(loss_weights={"cls": 1.0, "reg": 0.25})
    text = str(model.describe())
    for part in ("trunk.dense_0 (tanh)", "cls.dense_3 (linear)", "reg.dense_4", "(None, 2)",
                 f"total params: {model.n_params}", "reg: mse x 0.25", "backend: numpy"):
        assert part in text, part
    assert repr(model).startswith("MultiTask(trunk=[Dense(6")
    assert "loss_weights={'cls': 1.0, 'reg': 0.25}" in repr(model)


# ------------------------------------------------------- fit behaviour
@pytest.mark.parametrize("trunk", [(), (5,)], ids=["no-trunk", "trunk"])
def test_empty_trunk_gives_independent_heads(trunk):
    """reg's targets are its own predictions (zero gradient): training moves reg's
    predictions only through a shared trunk."""
    model = two_heads(trunk=trunk)
    assert model.trunk_dim == (trunk[-1] if trunk else 4)
    X, targets = two_task_data(40)
    before = model.predict(X)["reg"]
    model.fit(X, {"cls": targets["cls"], "reg": before}, epochs=1, batch_size=None,
              learning_rate=0.5)
    assert not model.heads["reg"][0].dW.any()
    assert np.array_equal(model.predict(X)["reg"], before) == (not trunk)


def test_callbacks_see_per_head_keys():
    model = two_heads()
    X, targets = two_task_data(40)
    stop = EarlyStopping("val_reg_r2", patience=0, min_delta=1e9, restore_best_weights=True)
    history = model.fit(X, targets, epochs=5, validation_data=(X, targets), callbacks=[stop])
    assert history.epochs == 2 and stop.stopped_epoch == 2
    np.testing.assert_array_equal(model.get_weights()[0], stop.best_weights[0])


def test_divergence_is_reported_before_the_update():
    model = two_heads(dtype="float32")
    X, targets = two_task_data(16)
    with pytest.raises(DivergenceError, match="diverged at epoch"):
        model.fit(X, {**targets, "reg": targets["reg"] * 1e30}, epochs=3, learning_rate=1e10)
    assert np.isfinite(model._params).all()


# ------------------------------------------------------------ validation
@pytest.mark.parametrize("argument, value, pattern", [
    ("losses", {"cls": "softmax_cross_entropy"},
     r"losses must have one entry per head \['cls', 'reg'\]; missing \['reg'\], extra \[\]"),
    ("losses", {**LOSSES, "aux": "mse"}, r"missing \[\], extra \['aux'\]"),
    ("loss_weights", {"cls": 1.0}, r"loss_weights must have one entry per head .*"
                                   r"missing \['reg'\]"),
    ("loss_weights", {"cls": 1.0, "reg": -0.5}, r"loss_weights\['reg'\] must be a finite "
                                                r"number >= 0; got -0.5"),
    ("losses", {"cls": "hinge", "reg": "mse"}, r"unknown losses\['cls'\] 'hinge'"),
])
def test_head_dicts_are_checked(argument, value, pattern):
    arguments = {"losses": LOSSES, "loss_weights": None, argument: value}
    with pytest.raises(ValueError, match=pattern):
        MultiTask([Dense(4)], {"cls": [Dense(3)], "reg": [Dense(1)]}, arguments["losses"],
                  arguments["loss_weights"], input_dim=2, backend="numpy")


def test_targets_are_checked():
    model = two_heads()
    X, targets = two_task_data(10)
    with pytest.raises(ValueError, match=r"targets must have one entry per head .*missing "
                                         r"\['reg'\], extra \['regg'\]"):
        model.fit(X, {"cls": targets["cls"], "regg": targets["reg"]}, epochs=1)
    with pytest.raises(ValueError, match=r"X and targets\['reg'\] must have the same number "
                                         r"of samples; got 10 and 9"):
        model.fit(X, {**targets, "reg": targets["reg"][:9]}, epochs=1)
    with pytest.raises(ValueError, match=r"targets\['cls'\] holds 1 class \[3\] but the model "
                                         r"has 3"):
        model.evaluate(X, {**targets, "cls": np.full(10, 3)})
    model.fit(X, targets, epochs=1)
    with pytest.raises(ValueError, match=r"targets\['cls'\] holds labels the model was not "
                                         r"trained on: \[3\] \(the first at index 0\); its "
                                         r"classes_ are \[0, 1, 2\]"):
        model.evaluate(X, {**targets, "cls": np.full(10, 3)})
    with pytest.raises(ValueError, match=r"validation_data\[1\] must have one entry per head"):
        model.fit(X, targets, epochs=1, validation_data=(X, {"cls": targets["cls"]}))
    with pytest.raises(TypeError, match="targets must be a dict"):
        model.fit(X, targets["cls"], epochs=1)


def test_layer_reuse_is_rejected():
    shared = Dense(3)
    with pytest.raises(ValueError, match=r"heads\['b'\]\[0\] is also part of another head"):
        MultiTask([], {"a": [shared], "b": [shared]}, {"a": "mse", "b": "mse"}, input_dim=2)
    trunk_layer = Dense(4)
    with pytest.raises(ValueError, match=r"trunk \+ heads\['a'\]: layers\[1\] already belongs"):
        MultiTask([trunk_layer], {"a": [trunk_layer]}, {"a": "mse"}, input_dim=2)
    used = two_heads().heads["reg"][0]
    with pytest.raises(ValueError, match=r"heads\['a'\]: layers\[0\] already belongs"):
        MultiTask([], {"a": [used]}, {"a": "mse"}, input_dim=2)


@pytest.mark.parametrize("heads, losses, error, pattern", [
    ({}, {}, ValueError, "heads must hold at least one head"),
    ([Dense(2)], {"a": "mse"}, TypeError, "heads must be a dict"),
    ({"a": []}, {"a": "mse"}, ValueError, r"heads\['a'\] must hold at least one layer"),
    ({"data": [Dense(1)]}, {"data": "mse"}, ValueError, "the key 'data_loss'"),
    ({"val": [Dense(1)]}, {"val": "mse"}, ValueError, "the key 'val_loss'"),
    ({"trunk": [Dense(1)]}, {"trunk": "mse"}, ValueError, "not 'trunk'"),
    ({"a": [Dense(1)]}, {"a": "softmax_cross_entropy"}, ValueError,
     r"heads\['a'\] uses softmax_cross_entropy and needs an output layer of at least 2"),
    ({"a": [Dense(1, "sigmoid")]}, {"a": "binary_cross_entropy"}, ValueError,
     r"heads\['a'\]: the last layer's activation is 'sigmoid'"),
])
def test_heads_are_checked(heads, losses, error, pattern):
    with pytest.raises(error, match=pattern):
        MultiTask([], heads, losses, input_dim=2, backend="numpy")


def test_trunk_must_be_a_list():
    with pytest.raises(TypeError, match="trunk must be a list of layers"):
        MultiTask(Dense(2), {"a": [Dense(1)]}, {"a": "mse"}, input_dim=2)


def test_predict_proba_needs_a_classification_head():
    model = MultiTask([], {"a": [Dense(1)], "b": [Dense(2)]}, {"a": "mse", "b": "mse"},
                      input_dim=3, backend="numpy", seed=0)
    with pytest.raises(ValueError, match="needs a classification head"):
        model.predict_proba(np.zeros((2, 3)))
    assert set(two_heads().predict_proba(np.zeros((2, 4)))) == {"cls"}
