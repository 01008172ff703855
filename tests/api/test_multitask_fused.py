"""MultiTask on the fused training path (train/fused.py multitask_program, csrc/train/):
one program with a loss head per head, the heads' input gradients added into the
trunk's in head order. Oracle: the per-op loop (MultiTask.loss_and_grad), whose
parameters, optimizer state, counters and History it equals bit for bit (r2 within
summation-order rounding, as for Sequential); rollback and resume on the fused path."""
import os

import numpy as np
import pytest

import fastmlp
from fastmlp import L1, L2, BatchNorm, Dense, Dropout, Maxout, MultiTask, Normalization
from fastmlp.optim.optimizers import SGD
from fastmlp.train import loop as training
from fastmlp.train.checkpoint import Position

N, BATCH = 50, 16                 # 4 steps per epoch, the last of 2 rows
LOSSES = {"kind": "softmax_cross_entropy", "tags": "binary_cross_entropy", "size": "mse"}


@pytest.fixture(autouse=True)
def _native(native):
    """Every test here needs the native backend."""


def build(dtype="float32", trunk=True, weights=(1.0, 0.5, 2.5), seed=1):
    """Normalization, Dropout and BatchNorm in the trunk; a classifier, a multilabel and
    a regression head, one with Dropout and BatchNorm, one with its own regularizer."""
    layers = [Normalization(), Dense(8, "relu"), Dropout(0.2), BatchNorm(),
              Maxout(6, pieces=2)] if trunk else []
    heads = {"kind": [Dense(5, "tanh"), Dropout(0.3), BatchNorm(0.8), Dense(3)],
             "tags": [Dense(2, regularizer=L1(0.01, scale="batch"))],
             "size": [Normalization(), Dense(4, "elu", regularizer=L2(0.02)), Dense(2)]}
    return MultiTask(layers, heads, LOSSES, dict(zip(LOSSES, weights)), input_dim=4,
                     dtype=dtype, seed=seed, regularizer=L2(0.001))


def data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 3.0, 0.5, 2.0] + 1.0
    labels = np.array(["a", "b", "c"])[(X @ rng.normal(size=(4, 3))).argmax(axis=1)]
    tags = (X[:, :2] > 1.0).astype(int)
    return X, {"kind": labels, "tags": tags, "size": np.tanh(X[:, :2] - X[:, 2:])}


def per_op_fit(model, X, targets, **kwargs):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "_FUSED", False)
        return model.fit(X, targets, **kwargs)


def assert_same_training(a, b):
    """Parameters, gradients, layer state, optimizer state and counters bit for bit."""
    np.testing.assert_array_equal(a._params, b._params)
    np.testing.assert_array_equal(a._grads, b._grads)
    for ours, theirs in zip(a.layers, b.layers, strict=True):
        for s, t in zip(ours.get_state(), theirs.get_state(), strict=True):
            np.testing.assert_array_equal(s, t)
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for key in sa:
        if isinstance(sa[key], np.ndarray) or isinstance(sb[key], np.ndarray):
            np.testing.assert_array_equal(sa[key], sb[key])
        else:
            assert sa[key] == sb[key], key
    assert a.training_step == b.training_step
    assert a.shuffle_rng.bit_generator.state == b.shuffle_rng.bit_generator.state


def assert_same_history(expected: dict, history: dict):
    """The same keys and values (r2: sums in another order, rounding only)."""
    assert list(history) == list(expected)
    for key, values in expected.items():
        if key.endswith("r2"):
            np.testing.assert_allclose(history[key], values, rtol=1e-12, atol=1e-14)
        else:
            assert history[key] == values, key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trunk", [True, False], ids=["trunk", "no-trunk"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fused_equals_per_op_bitwise(dtype, trunk, optimizer, fused_runs):
    X, targets = data()
    val = data(20, seed=3)
    fit = dict(epochs=3, batch_size=BATCH, optimizer=optimizer, learning_rate=0.05,
               verbose=0, validation_data=val)
    ref, fused = build(dtype, trunk), build(dtype, trunk)
    h_ref = per_op_fit(ref, X, targets, **fit)
    assert not fused_runs
    h = fused.fit(X, targets, **fit)
    assert fused_runs
    assert_same_training(ref, fused)
    assert_same_history(h_ref.history, h.history)
    assert {"val_kind_accuracy", "tags_accuracy", "size_r2", "val_loss"} <= set(h.history)
    for name, predicted in ref.predict(val[0]).items():
        np.testing.assert_array_equal(fused.predict(val[0])[name], predicted)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_classifier_heads_count_their_own_accuracy(dtype, fused_runs):
    """Two softmax heads, 3 classes (the loss kernel's labels from the rows in lanes) and
    20 (from argmax_rows): each head's accuracy from its own labels, as the per-op loop's."""
    X, _ = data()
    rng = np.random.default_rng(5)
    targets = {name: (X @ rng.normal(size=(4, k))).argmax(axis=1) for name, k in (("few", 3), ("many", 20))}
    targets["many"][:20] = np.arange(20)       # every class seen
    losses = dict.fromkeys(targets, "softmax_cross_entropy")
    fit = dict(epochs=4, batch_size=BATCH, optimizer="adam", learning_rate=0.05, verbose=0)
    ref, fused = (MultiTask([Dense(8, "relu")], {"few": [Dense(3)], "many": [Dense(6, "tanh"), Dense(20)]},
                            losses, input_dim=4, dtype=dtype, seed=2) for _ in range(2))
    h_ref = per_op_fit(ref, X, targets, **fit)
    h = fused.fit(X, targets, **fit)
    assert fused_runs
    assert_same_history(h_ref.history, h.history)
    assert len(set(h.history["few_accuracy"] + h.history["many_accuracy"])) > 4


@pytest.mark.parametrize("weights", [(0.0, 1.0, 1.0), (0.3, 0.0, 7.0)])
def test_head_weights_including_zero(weights, fused_runs):
    X, targets = data()
    fit = dict(epochs=2, batch_size=BATCH, optimizer="adam", verbose=0)
    ref, fused = build(weights=weights), build(weights=weights)
    h_ref = per_op_fit(ref, X, targets, **fit)
    h = fused.fit(X, targets, **fit)
    assert fused_runs
    assert_same_training(ref, fused)
    assert_same_history(h_ref.history, h.history)


def test_the_program_has_a_loss_head_per_head_and_adds_their_gradients_in_order():
    program = build().fused_program()
    assert [(h["name"], h["loss"], h["weight"]) for h in program["heads"]] == \
        [("kind", "softmax_cross_entropy", 1.0), ("tags", "binary_cross_entropy", 0.5),
         ("size", "mse", 2.5)]
    codes = program["backward"]["codes"]
    adds = [i for i, code in enumerate(codes) if code == "add_to"]
    assert len(adds) == 2
    first_dx = program["backward"]["args"][adds[0], 1]
    assert program["backward"]["args"][adds[1], 1] == first_dx   # both into the first's dx
    assert build(trunk=False).fused_program()["backward"]["codes"].count("add_to") == 0


def test_a_layer_only_the_per_op_path_runs_keeps_the_model_there(fused_runs):
    class Custom(Dense):
        """A subclass that does not restate its plan: per-op only."""
    model = MultiTask([Dense(6, "relu")], {"a": [Custom(3)], "b": [Dense(2)]},
                      {"a": "softmax_cross_entropy", "b": "mse"}, input_dim=4, seed=0)
    assert model.fused_program() is None
    X, targets = data()
    model.fit(X, {"a": targets["kind"], "b": targets["size"]}, epochs=1, verbose=0)
    assert not fused_runs


def test_divergence_rolls_back_on_the_fused_path(tmp_path, fused_runs):
    """The model after the DivergenceError equals the checkpoint written before the
    failing step, and the per-op path's error and model."""
    X, targets = data()
    fit = dict(epochs=30, batch_size=BATCH, optimizer=SGD(3.0), verbose=0)
    ref = build()
    with pytest.raises(fastmlp.DivergenceError) as expected:
        per_op_fit(ref, X, targets, **fit)
    model = build()
    with pytest.raises(fastmlp.DivergenceError) as info:
        model.fit(X, targets, checkpoint_dir=tmp_path, checkpoint_every_steps=1,
                  keep_checkpoints=10 ** 6, **fit)
    assert fused_runs
    assert str(info.value) == str(expected.value)
    error = info.value
    before = fastmlp.load(tmp_path / Position(error.epoch - 1, error.step - 1).filename)
    for ours, theirs in zip(model.get_weights(), before.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert_same_training(ref, model)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_inside_an_epoch_equals_the_uninterrupted_fit(dtype, tmp_path, fused_runs):
    X, targets = data()
    fit = dict(epochs=3, batch_size=BATCH, optimizer="adam", learning_rate=0.01, verbose=0,
               validation_data=data(20, seed=3))
    whole = build(dtype)
    expected = whole.fit(X, targets, **fit).history
    build(dtype).fit(X, targets, checkpoint_dir=tmp_path, checkpoint_every_steps=3,
                     keep_checkpoints=100, **fit)
    os.unlink(tmp_path / Position(2, 0).filename)
    os.unlink(tmp_path / Position(3, 0).filename)     # the newest left: inside epoch 2
    resumed = build(dtype)
    history = resumed.fit(X, targets, checkpoint_dir=tmp_path, checkpoint_every_steps=3,
                          keep_checkpoints=100, resume=True, **fit).history
    assert fused_runs
    assert_same_training(resumed, whole)
    assert_same_history(expected, history)


def test_a_per_op_checkpoint_resumes_on_the_fused_path(tmp_path, fused_runs):
    """The running totals a per-op fit checkpoints inside an epoch are the fused path's
    too: resuming them fused gives the per-op fit's model and History."""
    X, targets = data()
    fit = dict(epochs=2, batch_size=BATCH, optimizer="adam", verbose=0)
    ref = build()
    expected = per_op_fit(ref, X, targets, **fit).history
    per_op_fit(build(), X, targets, checkpoint_dir=tmp_path, checkpoint_every_steps=2,
               keep_checkpoints=100, **fit)
    os.unlink(tmp_path / Position(2, 0).filename)
    resumed = build()
    history = resumed.fit(X, targets, checkpoint_dir=tmp_path, checkpoint_every_steps=2,
                          keep_checkpoints=100, resume=True, **fit).history
    assert fused_runs
    assert_same_training(ref, resumed)
    assert_same_history(expected, history)


def test_trainer_creation_checks_the_loss_heads():
    m = build()
    with m.writing_params():         # the trainer binds the parameters for writing
        program = m.fused_program()
        base = dict(params=m._params, grads=m._grads, m=None, v=None, program=program,
                    loss=None, optimizer="sgd", batch_size=BATCH)
        create = m.backend.fused_trainer
        assert create(**base).new_totals().heads[2].outputs == 2

        def with_head(i, **changes):
            heads = [dict(h) for h in program["heads"]]
            heads[i].update(changes)
            return {**base, "program": {**program, "heads": heads}}
        with pytest.raises(ValueError, match="loss must be None"):
            create(**{**base, "loss": "mse"})
        with pytest.raises(ValueError, match=r"heads\[1\] needs a finite loss weight >= 0"):
            create(**with_head(1, weight=-1.0))
        with pytest.raises(ValueError, match=r"heads\[2\] shares its loss gradient"):
            create(**with_head(2, loss_grad=program["heads"][1]["loss_grad"]))
        with pytest.raises(ValueError, match=r"heads\[0\] needs a loss_grad buffer"):
            create(**with_head(0, loss_grad=program["heads"][0]["output"]))
        with pytest.raises(ValueError, match=r"heads\[0\] has a loss gradient not as wide"):
            create(**with_head(0, loss_grad=program["heads"][2]["loss_grad"]))
        with pytest.raises(ValueError, match="needs a loss head"):
            create(**{**base, "program": {**program, "heads": []}})
