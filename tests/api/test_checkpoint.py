"""Checkpoints and resume (fastmlp/checkpoint.py, fit's checkpoint_* and resume
arguments): a fit interrupted after any checkpoint (at an epoch's end or inside one) and
resumed ends with the uninterrupted fit's weights, optimizer state, callbacks' state,
History and training_step, bit for bit, on the NumPy backend, the native per-op loop and
the native fused path, with Dropout, Adam on a per-step schedule, EarlyStopping,
ReduceLROnPlateau and validation data. A process SIGKILLed at random points and resumed
until it finishes does too (scripts/soak_checkpoints.py; here a few kills). Damaged
checkpoints, leftover temporary files, pruning, and resuming another fit."""
import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp.train import loop as training
from fastmlp.train.callbacks import EarlyStopping, ReduceLROnPlateau
from fastmlp.errors import CheckpointWarning
from fastmlp.nn.layers import Dense, Dropout, Layer, Normalization
from fastmlp.model.modelfile import ModelFileError, save_checkpoint
from fastmlp.model.sequential import Sequential
from fastmlp.optim.optimizers import Adam
from fastmlp.optim.schedules import ExponentialDecay
from helpers import CheckpointsCut, checkpoints_cut_after, make_data, with_header

N, BATCH, EPOCHS = 44, 8, 6          # 6 steps per epoch, the last of 4 rows
SOAK = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "soak_checkpoints.py"


def setup(backend, loss, min_delta=1e-4):
    """A model, its callbacks and optimizer; every call gives identical ones."""
    k = 3
    model = Sequential([Dense(8, "relu"), Dropout(0.25), Dense(k)], input_dim=4, loss=loss,
                       seed=3, backend=backend)
    callbacks = [EarlyStopping(patience=1, min_delta=min_delta, restore_best_weights=True),
                 ReduceLROnPlateau(patience=1, factor=0.5)]
    return model, callbacks, Adam(ExponentialDecay(0.05, 0.05, per="step"))


def data(loss):
    X, y = make_data(loss, n=N + 20)
    return X[:N], y[:N], (X[N:], y[N:])


def run(backend, loss, directory=None, resume=False, interrupt_after=None, min_delta=1e-4,
        **kwargs):
    """fit to the end (or until the ``interrupt_after``-th checkpoint write); returns
    (model, callbacks, optimizer, history or None)."""
    model, callbacks, optimizer = setup(backend, loss, min_delta)
    X, y, validation = data(loss)
    with checkpoints_cut_after(interrupt_after):
        try:
            history = training.fit(model, X, y, epochs=EPOCHS, batch_size=BATCH,
                                   optimizer=optimizer, callbacks=callbacks,
                                   validation_data=validation, checkpoint_dir=directory,
                                   resume=resume, **kwargs)
        except CheckpointsCut:
            history = None
    return model, callbacks, optimizer, history


def assert_same(ours, theirs):
    """Weights, optimizer state, callbacks' state, History, training_step: bit for bit."""
    (model, callbacks, optimizer, history), (model2, callbacks2, optimizer2, history2) = \
        ours, theirs
    np.testing.assert_array_equal(model._params, model2._params)
    state, state2 = optimizer.state_dict(), optimizer2.state_dict()
    for key in ("m", "v"):
        np.testing.assert_array_equal(state.pop(key), state2.pop(key))
    assert state == state2
    for callback, callback2 in zip(callbacks, callbacks2, strict=True):
        saved, saved2 = callback.state_dict(), callback2.state_dict()
        for w, w2 in zip(saved.pop("best_weights", None) or [],
                         saved2.pop("best_weights", None) or [], strict=True):
            np.testing.assert_array_equal(w, w2)
        assert saved == saved2
    assert history.history == history2.history == model.history.history
    assert model.training_step == model2.training_step


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_resuming_after_any_checkpoint_equals_the_uninterrupted_fit(path, loss, tmp_path):
    """Checkpoints every 4 steps and every epoch: 12 writes, 6 of them inside an epoch
    (steps 4, 8, 16, 20, 28, 32 of the 36), the last one the fit's end. Interrupted after
    each write, then resumed."""
    backend, fused_runs = path
    reference = run(backend, loss)
    assert reference[3].epochs == EPOCHS
    for n in range(1, 13):
        directory = tmp_path / f"after-{n}"
        assert run(backend, loss, directory, interrupt_after=n,
                   checkpoint_every_steps=4)[3] is None
        resumed = run(backend, loss, directory, resume=True, checkpoint_every_steps=4)
        assert_same(resumed, reference)
    assert fused_runs is None or len(fused_runs) > 12
    assert sorted(os.listdir(directory)) == ["checkpoint-000005-00000002.fmlp",
                                             "checkpoint-000006-00000000.fmlp"]


def test_a_fit_stopped_by_early_stopping_resumes_to_the_same_end(tmp_path):
    """min_delta=0.2 stops before EPOCHS; a resume after the last checkpoint only runs
    on_train_end (restore_best_weights), as the uninterrupted fit did."""
    reference = run("numpy", "mse", min_delta=0.2)
    stopped = reference[3].epochs
    assert stopped < EPOCHS and reference[1][0].stopped_epoch == stopped
    for n in (stopped - 1, stopped):
        directory = tmp_path / f"after-{n}"
        run("numpy", "mse", directory, interrupt_after=n, min_delta=0.2)
        assert_same(run("numpy", "mse", directory, resume=True, min_delta=0.2), reference)


def test_resume_without_a_checkpoint_starts_the_fit(tmp_path):
    assert_same(run("numpy", "mse", tmp_path, resume=True), run("numpy", "mse"))


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    reference = run("numpy", "mse")
    run("numpy", "mse", tmp_path, interrupt_after=4,
        checkpoint_every_steps=5)
    newest = sorted(tmp_path.iterdir())[-1]
    newest.write_bytes(newest.read_bytes()[:500])           # truncated
    with pytest.warns(CheckpointWarning, match=rf"{newest.name}.*cannot be read"):
        resumed = run("numpy", "mse", tmp_path, resume=True, checkpoint_every_steps=5)
    assert_same(resumed, reference)
    assert (tmp_path / f"{newest.name}.corrupt").exists()


def test_only_damaged_checkpoints_are_an_error(tmp_path):
    run("numpy", "mse", tmp_path, interrupt_after=2)
    for file in tmp_path.iterdir():
        file.write_bytes(b"PK\x03\x04 not a model")
    with pytest.warns(CheckpointWarning), pytest.raises(ModelFileError,
                                                        match="all 2 are damaged"):
        run("numpy", "mse", tmp_path, resume=True)


def test_leftover_temporary_files_are_ignored_and_removed(tmp_path):
    """What a process killed while writing leaves: a hidden temporary file."""
    reference = run("numpy", "mse")
    run("numpy", "mse", tmp_path, interrupt_after=2)
    leftover = tmp_path / ".checkpoint-000009-00000000.fmlp.0123abcd.tmp"
    leftover.write_bytes(b"PK\x03\x04 half a checkpoint")
    assert_same(run("numpy", "mse", tmp_path, resume=True), reference)
    assert not leftover.exists()


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    run("numpy", "mse", tmp_path, checkpoint_every=2, keep_checkpoints=1)
    assert os.listdir(tmp_path) == ["checkpoint-000006-00000000.fmlp"]


def test_checkpoints_by_step_are_named_by_position(tmp_path):
    """Every 5 steps (6 per epoch): steps 5, 10, 15 of the fit are epoch 1 step 5,
    epoch 2 step 4, epoch 3 step 3; epochs only when a step ends one (none here)."""
    run("numpy", "mse", tmp_path, interrupt_after=3,
        checkpoint_every=None, checkpoint_every_steps=5, keep_checkpoints=10)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-000000-00000005.fmlp",
                                            "checkpoint-000001-00000004.fmlp",
                                            "checkpoint-000002-00000003.fmlp"]


def test_a_checkpoint_loads_as_a_model_file(tmp_path):
    model = run("numpy", "mse", tmp_path)[0]
    loaded = fastmlp.load(tmp_path / "checkpoint-000006-00000000.fmlp")
    assert loaded.history.history == model.history.history
    assert loaded.training_step == model.training_step


# ------------------------------------------------------------------ refusals
def test_existing_checkpoints_without_resume_are_refused(tmp_path):
    run("numpy", "mse", tmp_path)
    with pytest.raises(FileExistsError, match="already holds checkpoints: pass resume=True"):
        run("numpy", "mse", tmp_path)


@pytest.mark.parametrize("change,message", [
    (dict(batch_size=4), r"another fit: batch_size 8 there, 4 here"),
    (dict(validation_data=None), r"another fit: history_keys"),
    (dict(callbacks=[]), r"callbacks \['EarlyStopping', 'ReduceLROnPlateau'\]; this fit has \[\]"),
    (dict(optimizer="sgd"), r"state is of a 'adam' optimizer; this one is 'sgd'"),
    (dict(epochs=2), r"after epoch 3; this fit has epochs=2"),
])
def test_resuming_another_fit_is_refused(tmp_path, change, message):
    run("numpy", "mse", tmp_path, interrupt_after=3)
    model, callbacks, optimizer = setup("numpy", "mse")
    X, y, validation = data("mse")
    kwargs = dict(epochs=EPOCHS, batch_size=BATCH, optimizer=optimizer, callbacks=callbacks,
                  validation_data=validation, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=message):
        training.fit(model, X, y, **{**kwargs, **change})


def test_resuming_into_another_model_is_refused(tmp_path):
    run("numpy", "mse", tmp_path, interrupt_after=1)
    X, y, validation = data("mse")
    other = Sequential([Dense(8, "relu"), Dropout(0.25), Dense(3)], input_dim=4, loss="mse",
                       seed=4, backend="numpy")
    with pytest.raises(ValueError, match=r"another model: its \['seed'\] differ"):
        training.fit(other, X, y, epochs=EPOCHS, checkpoint_dir=tmp_path, resume=True)


def test_a_model_built_again_resumes_with_its_adapted_normalization(tmp_path):
    """Normalization adapts on the first fit, so the model built again for a resume is not
    adapted yet: it resumes all the same, with the checkpoint's statistics."""
    X, y, _ = data("mse")

    def fit(**kwargs):
        model = Sequential([Normalization(), Dense(3)], input_dim=4, loss="mse", seed=3,
                           backend="numpy")
        training.fit(model, X * 10 + 5, y, epochs=2, batch_size=BATCH,
                     checkpoint_dir=tmp_path, **kwargs)
        return model

    finished = fit()
    resumed = fit(resume=True)
    assert resumed.layers[0].adapted
    for ours, theirs in zip(resumed.get_weights(), finished.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


class Twice(Layer):
    def forward(self, backend, x, workspace, training=False):
        return x * 2

    def backward(self, backend, dy, need_dx):
        return dy * 2 if need_dx else None


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(resume=True), ValueError, "need a checkpoint_dir"),
    (dict(checkpoint_every_steps=3), ValueError, "need a checkpoint_dir"),
    (dict(checkpoint_dir="{}", keep_checkpoints=0), ValueError, "keep_checkpoints"),
    (dict(checkpoint_dir="{}", checkpoint_every=0), ValueError, "checkpoint_every"),
    (dict(checkpoint_dir="{}", checkpoint_every_steps=1.5), TypeError, "checkpoint_every_steps"),
    (dict(checkpoint_dir="{}", resume="yes"), TypeError, "resume"),
    (dict(checkpoint_dir=3), TypeError, "path must be a str"),
])
def test_arguments_are_checked(tmp_path, kwargs, error, message):
    if kwargs.get("checkpoint_dir") == "{}":
        kwargs["checkpoint_dir"] = str(tmp_path)
    X, y = make_data("mse", n=8)
    with pytest.raises(error, match=message):
        training.fit(Sequential([Dense(3)], input_dim=4, loss="mse", seed=0), X, y, epochs=1,
                     **kwargs)


def test_a_model_the_file_cannot_hold_cannot_checkpoint(tmp_path):
    X, y = make_data("mse", n=8)
    model = Sequential([Dense(3), Twice()], input_dim=4, loss="mse", seed=0)
    with pytest.raises(TypeError, match=r"cannot save layers\[1\], a Twice"):
        training.fit(model, X, y, epochs=1, checkpoint_dir=tmp_path)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ the file's entry
def test_checkpoint_data_round_trips_arrays_and_non_finite_floats(tmp_path):
    model = Sequential([Dense(3)], input_dim=4, loss="mse", seed=0, backend="numpy")
    data = {"a": [np.arange(3, dtype=np.int64), {"b": np.ones((2, 2), np.float32)}],
            "inf": float("inf"), "nan": np.float64("nan"), "n": np.int64(7), "t": (1, None)}
    save_checkpoint(model, tmp_path / "c.fmlp", fastmlp.History(["loss"]), data)
    _, back = fastmlp.Sequential.read_checkpoint(tmp_path / "c.fmlp")
    np.testing.assert_array_equal(back["a"][0], data["a"][0])
    assert back["a"][1]["b"].dtype == np.float32 and back["a"][1]["b"].flags.writeable
    assert back["inf"] == float("inf") and np.isnan(back["nan"])
    assert back["n"] == 7 and back["t"] == [1, None]
    with pytest.raises(TypeError, match=r"checkpoint.data.x: cannot save a complex128 array"):
        save_checkpoint(model, tmp_path / "d.fmlp", None, {"x": np.zeros(2, complex)})
    with pytest.raises(TypeError, match="keys must be str not starting with '__'"):
        save_checkpoint(model, tmp_path / "d.fmlp", None, {"__array__": 1})


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["data"].update(x={"__array__": "checkpoint.9.npy"}), "not declared"),
    (lambda c: c["data"].update(x={"__array__": "checkpoint.0.npy"}), "used twice"),
    (lambda c: c["data"].update(w=0) or c["data"].pop("v"), "does not use them"),
    (lambda c: c["data"].update(x={"__float__": "1e999"}), "expected one of"),
    (lambda c: c["data"].update(__x=1), r"reserved keys \['__x'\]"),
    (lambda c: c["arrays"].update({"other.npy": {"dtype": "<f8", "shape": [1]}}),
     "must be named 'checkpoint.0.npy'"),
    (lambda c: c["arrays"]["checkpoint.0.npy"].update(dtype="|O"), "expected one of"),
])
def test_a_malformed_checkpoint_entry_is_refused(tmp_path, edit, message):
    model = Sequential([Dense(3)], input_dim=4, loss="mse", seed=0, backend="numpy")
    save_checkpoint(model, tmp_path / "c.fmlp", None, {"v": np.zeros(2)})
    with_header(tmp_path / "c.fmlp", tmp_path / "bad.fmlp", lambda h: edit(h["checkpoint"]))
    with pytest.raises(ModelFileError, match=message):
        fastmlp.Sequential.read_checkpoint(tmp_path / "bad.fmlp")


# ------------------------------------------------------------------ SIGKILL
def test_a_process_killed_at_random_points_resumes_to_the_same_result(native, tmp_path,
                                                                     monkeypatch):
    """scripts/soak_checkpoints.py with 8 kills: a training subprocess checkpointing
    every 5 steps is SIGKILLed after seeded random delays and resumed until it finishes;
    after each kill the newest checkpoint loads, and the final weights, optimizer state
    and History equal the uninterrupted run's bit for bit."""
    spec = importlib.util.spec_from_file_location("soak_checkpoints", SOAK)
    soak = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, soak)      # dataclasses look it up
    spec.loader.exec_module(soak)
    report = soak.soak(kills=8, seed=0, directory=tmp_path)
    assert report.kills >= 8 and report.runs >= 1
    assert report.mismatches == 0 and report.damaged == 0, str(report)
