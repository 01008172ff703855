"""MultiTask through the common fit loop (rollback, checkpoints and resume, callbacks),
its model file (save, fastmlp.load, checkpoints), the model files written before
MultiTask had one, and its ONNX and PyTorch exports. Oracles: an uninterrupted fit
(resume), the checkpoint a diverging run wrote just before its failing step (rollback),
the saved model itself (load), a Sequential model file written by the fastmlp before the
"kind" key (tests/api/data), and the model's own predict_proba/predict (exports)."""
import json
import os
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import L2, BatchNorm, Dense, Dropout, MultiTask, Normalization
from fastmlp.errors import ModelFileError
from fastmlp.optim.optimizers import SGD
from fastmlp.train.callbacks import EarlyStopping, ReduceLROnPlateau
from fastmlp.train.checkpoint import Position
from helpers import assert_same_state, relative_error

DATA = os.path.join(os.path.dirname(__file__), "data")
N, BATCH = 60, 16                 # 4 steps per epoch


def build(backend="numpy", dtype="float64", seed=1):
    """Normalization, Dropout and BatchNorm in the trunk (state, masks), a classifier head
    with string classes, a regression head with its own regularizer."""
    return MultiTask([Normalization(), Dense(8, "relu"), Dropout(0.1), BatchNorm()],
                     {"kind": [Dense(3)], "size": [Dense(4, "tanh", regularizer=L2(0.01)),
                                                   Dense(2)]},
                     {"kind": "softmax_cross_entropy", "size": "mse"},
                     {"kind": 1.0, "size": 0.25}, input_dim=4, backend=backend, dtype=dtype,
                     seed=seed, regularizer=L2(0.001))


def data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    labels = np.array(["a", "b", "c"])[(X @ rng.normal(size=(4, 3))).argmax(axis=1)]
    return X, {"kind": labels, "size": np.tanh(X[:, :2] + X[:, 2:])}


def assert_same_model(model, other):
    """assert_same_state, and the shuffle generator's state too."""
    assert_same_state(model, other)
    assert model.shuffle_rng.bit_generator.state == other.shuffle_rng.bit_generator.state


# ------------------------------------------------------------ the common fit loop
@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_resume_equals_the_uninterrupted_fit(backend, tmp_path):
    """A fit cut after a mid-epoch checkpoint (the later files lost) and resumed gives the
    uninterrupted fit's weights, optimizer, counters and History bit for bit."""
    X, targets = data()
    fit = dict(epochs=3, batch_size=BATCH, optimizer="adam", learning_rate=0.01, verbose=0,
               validation_data=(X[:20], {k: v[:20] for k, v in targets.items()}))
    whole = build(backend)
    expected = whole.fit(X, targets, **fit).history
    build(backend).fit(X, targets, checkpoint_dir=tmp_path, checkpoint_every_steps=3,
                       keep_checkpoints=100, **fit)
    os.unlink(tmp_path / Position(2, 0).filename)
    os.unlink(tmp_path / Position(3, 0).filename)     # the newest left: inside epoch 2
    assert Position(1, 2).filename in os.listdir(tmp_path)
    resumed = build(backend)
    history = resumed.fit(X, targets, checkpoint_dir=tmp_path, checkpoint_every_steps=3,
                          keep_checkpoints=100, resume=True, **fit).history
    assert history == expected and resumed.history.history == expected
    assert_same_model(resumed, whole)


def test_resume_refuses_another_architecture(tmp_path):
    X, targets = data()
    build().fit(X, targets, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    other = MultiTask([Dense(8, "relu")], {"kind": [Dense(3)], "size": [Dense(2)]},
                      {"kind": "softmax_cross_entropy", "size": "mse"}, input_dim=4,
                      backend="numpy", dtype="float64", seed=1)
    with pytest.raises(ValueError, match="the checkpoint is of another model"):
        other.fit(X, targets, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0)


def test_divergence_rolls_back_to_the_start_of_the_failing_step(tmp_path):
    """The model after the DivergenceError equals the checkpoint written just before the
    failing step (BatchNorm's running averages included); the error carries the History."""
    X, targets = data()
    model = build(dtype="float32")
    with pytest.raises(fastmlp.DivergenceError) as info:
        model.fit(X, targets, epochs=30, batch_size=BATCH, optimizer=SGD(3.0), verbose=0,
                  checkpoint_dir=tmp_path, checkpoint_every_steps=1, keep_checkpoints=10 ** 6)
    error = info.value
    assert error.epoch >= 1 and error.history is model.history
    assert model.history.epochs == error.epoch - 1
    before = fastmlp.load(tmp_path / Position(error.epoch - 1, error.step - 1).filename)
    assert isinstance(before, MultiTask)
    assert_same_model(model, before)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_callbacks_on_head_keys_and_the_learning_rate():
    """ReduceLROnPlateau on a head's validation key lowers the rate the History records;
    EarlyStopping ends the fit."""
    X, targets = data()
    model = build()
    plateau = ReduceLROnPlateau("val_size_loss", factor=0.5, patience=0, min_delta=1e9)
    stop = EarlyStopping("val_kind_accuracy", patience=2, min_delta=1e9, mode="max")
    history = model.fit(X, targets, epochs=10, learning_rate=0.1, verbose=0,
                        validation_data=(X, targets), callbacks=[plateau, stop]).history
    assert len(history["lr"]) == 3 and stop.stopped_epoch == 3
    # epoch 1 sets the reference; every later epoch misses it by less than 1e9: halved
    # after epochs 2 and 3
    assert history["lr"] == [0.1, 0.1, 0.05] and model.optimizer.current_learning_rate == 0.025


def test_sample_weights_are_refused_by_name():
    X, targets = data()
    with pytest.raises(TypeError, match=r"MultiTask.fit\(\) got an unexpected keyword "
                                        r"argument 'sample_weight'"):
        build().fit(X, targets, epochs=1, sample_weight=np.ones(N))


# --------------------------------------------------------------------- model file
@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_save_and_load_round_trip(backend, tmp_path):
    """Every part comes back; predictions are equal bit for bit; saving the loaded model
    gives the same bytes; training on continues as the original's."""
    X, targets = data()
    model = build(backend, dtype="float32")
    model.fit(X, targets, epochs=2, optimizer="adam", verbose=0)
    model.metadata = {"owner": "tests"}
    model.save(tmp_path / "m.fmlp")
    loaded = fastmlp.load(tmp_path / "m.fmlp")
    assert type(loaded) is MultiTask and repr(loaded) == repr(model)
    assert loaded.head_names == ("kind", "size") and loaded.losses == model.losses
    assert loaded.loss_weights == model.loss_weights and loaded.metadata == model.metadata
    assert loaded.classes_["kind"].tolist() == ["a", "b", "c"]
    assert loaded.classes_["size"] is None
    assert loaded.history.history == model.history.history
    assert_same_model(loaded, model)
    for name, proba in model.predict_proba(X).items():
        np.testing.assert_array_equal(loaded.predict_proba(X)[name], proba)
    np.testing.assert_array_equal(loaded.predict(X)["kind"], model.predict(X)["kind"])
    loaded.save(tmp_path / "again.fmlp")
    assert (tmp_path / "again.fmlp").read_bytes() == (tmp_path / "m.fmlp").read_bytes()
    for each in (model, loaded):
        each.fit(X, targets, epochs=1, verbose=0)
    assert_same_model(loaded, model)


def test_an_empty_trunk_round_trips(tmp_path):
    model = MultiTask([], {"a": [Dense(2)], "b": [Dense(3, "relu"), Dense(1)]},
                      {"a": "binary_cross_entropy", "b": "mse"}, input_dim=3, seed=0)
    model.save(tmp_path / "m.fmlp")
    loaded = fastmlp.load(tmp_path / "m.fmlp")
    assert loaded.trunk == () and [len(h) for h in loaded.heads.values()] == [1, 2]
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(loaded.predict(X)["b"], model.predict(X)["b"])


def test_the_header_records_the_kind_and_the_heads(tmp_path):
    model = build()
    model.fit(*data(), epochs=1, verbose=0)
    model.save(tmp_path / "m.fmlp")
    with zipfile.ZipFile(tmp_path / "m.fmlp") as archive:
        spec = json.loads(archive.read("header.json"))["model"]
    assert spec["kind"] == "multitask" and "loss" not in spec and len(spec["layers"]) == 7
    assert spec["heads"] == [
        {"name": "kind", "loss": "softmax_cross_entropy", "weight": 1.0, "layers": 1,
         "classes": ["a", "b", "c"]},
        {"name": "size", "loss": "mse", "weight": 0.25, "layers": 2}]


def test_the_wrong_class_is_refused(tmp_path):
    build().save(tmp_path / "m.fmlp")
    with pytest.raises(ModelFileError, match="holds a multitask model, not a Sequential"):
        fastmlp.Sequential.read_checkpoint(tmp_path / "m.fmlp")
    fastmlp.Sequential([Dense(2)], input_dim=2).save(tmp_path / "s.fmlp")
    with pytest.raises(ModelFileError, match="holds a sequential model, not a MultiTask"):
        MultiTask.read_checkpoint(tmp_path / "s.fmlp")


@pytest.mark.parametrize("change, pattern", [
    (lambda s: s["heads"][0].update(layers=9), r"model.heads hold more layers"),
    (lambda s: s["heads"][1].update(name="kind"), r"distinct names"),
    (lambda s: s["heads"][0].update(weight=-1), r"weight must be a number >= 0"),
    (lambda s: s.update(kind="graph"), r"model.kind is 'graph'"),
    (lambda s: s.update(loss="mse"), r"unknown \['loss'\]"),
])
def test_a_damaged_header_is_a_model_file_error(change, pattern, tmp_path):
    build().save(tmp_path / "m.fmlp")
    with zipfile.ZipFile(tmp_path / "m.fmlp") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["header.json"])
    change(header["model"])
    members["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(tmp_path / "bad.fmlp", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ModelFileError, match=pattern):
        fastmlp.load(tmp_path / "bad.fmlp")


def test_a_sequential_file_from_before_the_kind_loads_and_saves_unchanged(tmp_path):
    """Written by fastmlp before MultiTask files (tests/api/data): it loads as the
    Sequential it was, and saving it again writes the same members, bytes for bytes (the
    header but for the writer's version)."""
    path = os.path.join(DATA, "sequential-before-kind.fmlp")
    model = fastmlp.load(path)
    assert type(model) is fastmlp.Sequential and model.classes_.tolist() == ["no", "yes"]
    assert model.history.epochs == 2 and model.optimizer.iterations == 6
    model.save(tmp_path / "again.fmlp", metadata=model.metadata)
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(tmp_path / "again.fmlp") as new:
        assert old.namelist() == new.namelist()
        for name in old.namelist():
            ours, theirs = old.read(name), new.read(name)
            if name == "header.json":
                ours, theirs = json.loads(ours), json.loads(theirs)
                assert "kind" not in theirs["model"]
                ours.pop("fastmlp_version"), theirs.pop("fastmlp_version")
            assert ours == theirs, name


# ------------------------------------------------------------------------- export
#: the exports vs the model's own inference, relative error (as tests/api/test_onnx.py and
#: test_torch_interop.py: other GEMM blocking and transcendental functions)
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def exportable(dtype):
    """Every built-in layer type; a softmax head, a one-output sigmoid head (flattened to
    (N,)) and a two-output mse head; trained so that the state is not the defaults."""
    model = MultiTask([Normalization(), Dense(8, "relu"), Dropout(0.2), BatchNorm()],
                      {"kind": [fastmlp.Maxout(5, pieces=3), Dense(3)], "flag": [Dense(1)],
                       "size": [Dense(4, "elu"), Dense(2)]},
                      {"kind": "softmax_cross_entropy", "flag": "binary_cross_entropy",
                       "size": "mse"}, input_dim=4, dtype=dtype, seed=2)
    X, targets = data()
    model.fit(3 * X + 1, {**targets, "flag": X[:, 0] > 0}, epochs=2, verbose=0)
    return model, (3 * data(30, seed=5)[0] + 1).astype(dtype)


def expected_outputs(model, X):
    """predict_proba for the classification heads, predict for the mse ones, in order."""
    proba, values = model.predict_proba(X), model.predict(X)
    return {name: proba[name] if name in proba else values[name] for name in model.head_names}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_has_one_output_per_head(dtype, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model, X = exportable(dtype)
    model.to_onnx(tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == ["kind", "flag", "size"]
    wanted = expected_outputs(model, X)
    for name, actual in zip(model.head_names, session.run(None, {"X": X})):
        assert actual.dtype == model.dtype and actual.shape == wanted[name].shape, name
        assert relative_error(actual, wanted[name]) <= TOLERANCE[dtype], name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_module_returns_each_heads_logits(dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is in no extra: pip install torch")
    model, X = exportable(dtype)
    module = model.to_torch()
    assert isinstance(module.heads, torch.nn.ModuleDict) and not module.training
    assert list(module.heads) == ["kind", "flag", "size"]
    assert len(module.trunk) == 5              # Normalization, Linear, ReLU, Dropout, BatchNorm
    with torch.no_grad():
        logits = {name: value.numpy() for name, value in module(torch.from_numpy(X)).items()}
    outputs = {"kind": torch.softmax(torch.from_numpy(logits["kind"]), dim=1).numpy(),
               "flag": torch.sigmoid(torch.from_numpy(logits["flag"][:, 0])).numpy(),
               "size": logits["size"]}
    for name, wanted in expected_outputs(model, X).items():
        assert outputs[name].dtype == model.dtype and outputs[name].shape == wanted.shape
        assert relative_error(outputs[name], wanted) <= TOLERANCE[dtype], name


def test_a_head_torch_cannot_name_is_refused():
    pytest.importorskip("torch", reason="PyTorch is in no extra: pip install torch")
    model = MultiTask([], {"a.b": [Dense(2)]}, {"a.b": "mse"}, input_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"head 'a.b' cannot name a torch module"):
        model.to_torch()
