"""model.save / fastmlp.model.modelfile.load: bitwise round trips, exact resumes, atomic writes,
what cannot be saved. Hostile files are in test_modelfile_hostile.py."""
import json
import math
import os
import pathlib
import zipfile

import numpy as np
import pytest

import fastmlp
import fastmlp.io.archive as container
import fastmlp.model.modelfile as modelfile
from fastmlp import (L1, L1L2, L2, BatchNorm, Dense, Dropout, Maxout, Normalization,
                     Sequential)
from fastmlp.nn.activations import ACTIVATIONS, ELU, LeakyReLU
from fastmlp.optim.optimizers import (SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp)
from fastmlp import load
from fastmlp.model.modelfile import MAX_HEADER_BYTES, ModelFileError, save_checkpoint
from fastmlp.optim.schedules import ExponentialDecay, InverseTimeDecay, PowerDecay, StepDecay
from fastmlp.train.history import History
from helpers import header_of, make_data, with_header
from layer_cases import EXAMPLES, stack

DTYPES = ["float32", "float64"]


def every_layer_model(backend, dtype, seed=0):
    """Every built-in layer, Dense with every activation (names and objects), a per-layer
    regularizer of each kind and a model-level one."""
    return Sequential(
        [Normalization(), Dense(8, "sigmoid"), Dense(8, "tanh", init="lecun_normal"),
         Dense(8, "relu", regularizer=L1(1e-3)), Dense(8, "leaky_relu"), Dense(8, "elu"),
         Dense(8, LeakyReLU(0.2), regularizer=L2(0)),
         Dense(8, ELU(0.5), regularizer=L1L2(l1=1e-3, l2=1e-2, scale="batch")),
         BatchNorm(momentum=0.9, eps=1e-2), Dropout(0.25),
         Maxout(6, pieces=3, regularizer=L2(1e-2, scale="batch")), Dense(3)],
        input_dim=4, backend=backend, dtype=dtype, seed=seed, regularizer=L2(0.05))


def dropout_model(backend, dtype="float64", seed=5):
    """Dense and Dropout only: the fused training path on the native backend."""
    return Sequential([Dense(16, "relu"), Dropout(0.3), Dense(8, "tanh"), Dropout(0.1),
                       Dense(3)], input_dim=4, backend=backend, dtype=dtype, seed=seed)


def toolbox_model(backend, dtype="float64", seed=5):
    """Normalization, BatchNorm, Dropout and Maxout: the per-op training loop."""
    return Sequential([Normalization(), Dense(12, "relu"), BatchNorm(momentum=0.8),
                       Dropout(0.2), Maxout(6, pieces=2), Dense(3)],
                      input_dim=4, backend=backend, dtype=dtype, seed=seed)


def round_trip(model, tmp_path, name="model.fmlp", **load_args):
    path = tmp_path / name
    model.save(path)
    return load(path, **load_args)


def assert_same_optimizer(loaded, original):
    """Same class, configuration, counters and state arrays (bit for bit)."""
    if original is None:
        assert loaded is None
        return
    assert type(loaded) is type(original) and repr(loaded) == repr(original)
    saved, restored = original.state_dict(), loaded.state_dict()
    for key in ("m", "v"):
        a, b = saved.pop(key), restored.pop(key)
        assert (a is None) == (b is None), key
        if a is not None:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), key
    assert restored == saved


def assert_same_model(loaded, original):
    """Identical architecture, weights and state (bitwise), counters, optimizer, history."""
    assert repr(loaded) == repr(original)
    assert str(loaded.describe()) == str(original.describe())
    assert type(loaded.regularizer) is type(original.regularizer)
    assert loaded.regularizer == original.regularizer
    for a, b in zip(loaded.layers, original.layers):
        assert type(a.regularizer) is type(b.regularizer) and a.regularizer == b.regularizer
    weights, expected = loaded.get_weights(), original.get_weights()
    assert len(weights) == len(expected)
    for w, e in zip(weights, expected):
        assert w.dtype == e.dtype and w.shape == e.shape and w.tobytes() == e.tobytes()
    assert (loaded.seed, loaded.training_step, loaded.stop_training) == \
        (original.seed, original.training_step, original.stop_training)
    assert loaded._shuffle_rng.bit_generator.state == original._shuffle_rng.bit_generator.state
    assert_same_optimizer(loaded.optimizer, original.optimizer)
    history = getattr(original, "history", None)
    if history is None:
        assert getattr(loaded, "history", None) is None
    else:
        assert loaded.history.history == history.history
    assert loaded.metadata == original.metadata


# ----------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_layer_round_trips_bitwise_after_training(backend_name, dtype, tmp_path):
    X, y = make_data("softmax_cross_entropy", n=64)
    model = every_layer_model(backend_name, dtype)
    model.history = model.fit(X, y, epochs=2, batch_size=16, optimizer=Adam(0.01))
    batch_norm, normalization = model.layers[8], model.layers[0]
    assert np.abs(batch_norm.running_mean).min() > 0          # non-trivial state saved
    assert not np.array_equal(batch_norm.running_var, np.ones(8))
    assert normalization.adapted and np.abs(normalization.mean).min() > 0

    loaded = round_trip(model, tmp_path)

    assert_same_model(loaded, model)
    assert loaded.backend.name == backend_name and loaded.dtype == np.dtype(dtype)
    for method in (loaded.predict, loaded.predict_proba):
        expected = getattr(model, method.__name__)(X)
        assert method(X).tobytes() == expected.tobytes()
    assert loaded.layers[0].adapted
    views = [view for layer in loaded.layers for view in layer.parameters()]
    assert not loaded._params.flags.writeable and not any(v.flags.writeable for v in views)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_each_layer_case_round_trips_bitwise_after_training(backend_name, example, dtype,
                                                            tmp_path):
    """Each example of the layer table (tests/layer_cases.py) in its stack: architecture,
    weights, state and optimizer bit for bit, and the same predictions."""
    X, y = make_data("softmax_cross_entropy", n=64)
    model = Sequential(stack(EXAMPLES[example]()), input_dim=4, backend=backend_name,
                       dtype=dtype, seed=0)
    model.history = model.fit(X, y, epochs=2, batch_size=16, optimizer=Adam(0.01))
    loaded = round_trip(model, tmp_path)
    assert_same_model(loaded, model)
    for method in (loaded.predict, loaded.predict_proba):
        expected = getattr(model, method.__name__)(X)
        assert method(X).tobytes() == expected.tobytes()


def test_every_registry_activation_round_trips(backend_name, tmp_path):
    """Each activation of fastmlp.nn.activations.ACTIVATIONS by name, after training."""
    X, y = make_data("softmax_cross_entropy", n=64)
    model = Sequential([Dense(6, name) for name in ACTIVATIONS] + [Dense(3)], input_dim=4,
                       backend=backend_name, seed=1)
    model.fit(X, y, epochs=1, batch_size=16)
    loaded = round_trip(model, tmp_path)
    assert [layer.activation for layer in loaded.layers] == [*ACTIVATIONS, "linear"]
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


@pytest.mark.parametrize("optimizer", [
    SGD(0.05), Momentum(0.05), Nesterov(0.05, momentum=0.8), AdaGrad(0.05), RMSProp(0.01),
    Adam(0.01), AdamW(0.01, weight_decay=0.1),
    Adam(0.01, beta_1=0.0, eps_placement="before_correction"),
    AdamW(0.01, eps_placement="before_correction"), Momentum(0.05, momentum=1.0),
    Adam(ExponentialDecay(0.01, k=0.3), clipnorm=0.5),
    SGD(StepDecay(0.1, 0.5, every=2), clipnorm=1.0),
    Momentum(InverseTimeDecay(0.05, k=0.1, staircase=True, per="step")),
    RMSProp(PowerDecay(0.01, power_t=0.25, per="step")),
], ids=lambda o: repr(o))
def test_every_optimizer_round_trips_and_continues_identically(optimizer, tmp_path):
    X, y = make_data("softmax_cross_entropy", n=48)
    model = Sequential([Dense(6, "tanh"), Dense(3)], input_dim=4, backend="numpy",
                       dtype="float64", seed=2, regularizer=L2(0.1))
    model.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer)
    loaded = round_trip(model, tmp_path)
    assert_same_model(loaded, model)
    assert loaded.optimizer is not model.optimizer

    model.fit(X, y, epochs=2, batch_size=16)
    loaded.fit(X, y, epochs=2, batch_size=16)
    assert loaded._params.tobytes() == model._params.tobytes()
    assert_same_optimizer(loaded.optimizer, model.optimizer)


@pytest.mark.parametrize("placement", ["after_correction", "before_correction"])
def test_adam_eps_placement_is_saved_unless_it_is_the_default(placement, tmp_path):
    """Files written before Adam had eps_placement hold no such key and load with
    "after_correction", the placement they were trained with; the default is left out
    on saving (the file is the one fastmlp wrote before), any other placement kept."""
    X, y = make_data("softmax_cross_entropy", n=32)
    model = Sequential([Dense(3)], input_dim=4, backend="numpy", dtype="float64", seed=2)
    model.fit(X, y, epochs=1, batch_size=16, optimizer=Adam(0.01, eps_placement=placement))
    model.save(tmp_path / "model.fmlp")
    config = header_of(tmp_path / "model.fmlp")["training"]["optimizer"]["config"]
    assert config.get("eps_placement") == (None if placement == "after_correction"
                                           else placement)
    loaded = load(tmp_path / "model.fmlp")
    assert loaded.optimizer.eps_placement == placement
    assert_same_model(loaded, model)


@pytest.mark.parametrize("make_model", [dropout_model, toolbox_model])
def test_resumed_fit_equals_an_uninterrupted_one(backend_name, make_model, tmp_path):
    """fit 2 epochs, save, load, fit 2 more == fit 4 epochs: the optimizer's state and
    schedule counter, the shuffle generator and Dropout's step counter all resume."""
    X, y = make_data("softmax_cross_entropy", n=90)
    optimizer = lambda: Adam(ExponentialDecay(0.02, k=0.2))  # noqa: E731
    whole = make_model(backend_name)
    whole.fit(X, y, epochs=4, batch_size=16, optimizer=optimizer())

    first = make_model(backend_name)
    first.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer())
    resumed = round_trip(first, tmp_path)
    del first
    resumed.fit(X, y, epochs=2, batch_size=16)

    assert resumed.training_step == whole.training_step
    assert resumed._params.tobytes() == whole._params.tobytes()
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        assert a.tobytes() == b.tobytes()
    assert_same_optimizer(resumed.optimizer, whole.optimizer)
    assert resumed.predict_proba(X).tobytes() == whole.predict_proba(X).tobytes()


def test_resume_is_not_a_fresh_start(tmp_path):
    """The resume test's oracle can fail: a model rebuilt from the weights alone (fresh
    optimizer, shuffle stream and step counter) does not continue like the saved one."""
    X, y = make_data("softmax_cross_entropy", n=90)
    saved = dropout_model("numpy")
    saved.fit(X, y, epochs=2, batch_size=16, optimizer=Adam(0.02))
    rebuilt = dropout_model("numpy")
    rebuilt.set_weights(saved.get_weights())
    loaded = round_trip(saved, tmp_path)
    for model in (saved, rebuilt, loaded):
        model.fit(X, y, epochs=1, batch_size=16, optimizer=None if model is not rebuilt
                  else Adam(0.02))
    assert loaded._params.tobytes() == saved._params.tobytes()
    assert rebuilt._params.tobytes() != saved._params.tobytes()


def test_untrained_and_unadapted_models_round_trip(tmp_path):
    X, y = make_data("mse", n=40, k=2)
    model = Sequential([Normalization(), Dense(5, "relu"), Dense(2)], input_dim=4,
                       loss="mse", backend="numpy", seed=123456789012345678901234567890)
    loaded = round_trip(model, tmp_path)
    assert_same_model(loaded, model)
    assert loaded.optimizer is None and not loaded.layers[0].adapted
    model.fit(X, y, epochs=1)
    loaded.fit(X, y, epochs=1)             # adapts Normalization on its first fit too
    assert loaded.layers[0].adapted
    assert loaded._params.tobytes() == model._params.tobytes()


def test_history_round_trips_with_non_finite_values(tmp_path):
    model = Sequential([Dense(2)], input_dim=3, loss="mse", backend="numpy", seed=0)
    model.history = History(["loss", "r2", "lr"])
    model.history.append({"loss": 1.5, "r2": float("nan"), "lr": 0.01})
    model.history.append({"loss": 0.5, "r2": -float("inf"), "lr": 0.02})
    loaded = round_trip(model, tmp_path)
    assert list(loaded.history.history) == ["loss", "r2", "lr"]
    assert loaded.history.history["loss"] == [1.5, 0.5]
    assert loaded.history.history["lr"] == [0.01, 0.02]
    assert np.isnan(loaded.history.history["r2"][0])
    assert loaded.history.history["r2"][1] == -float("inf")


def test_stop_training_and_the_kept_optimizer_rate_round_trip(tmp_path):
    X, y = make_data("softmax_cross_entropy", n=32)
    model = dropout_model("numpy")
    model.fit(X, y, epochs=1, optimizer="momentum", learning_rate=0.03)
    model.optimizer.scale = 0.25        # as ReduceLROnPlateau leaves it
    model.stop_training = True
    loaded = round_trip(model, tmp_path)
    assert loaded.stop_training is True
    assert loaded.optimizer.scale == 0.25
    assert loaded.optimizer.current_learning_rate == model.optimizer.current_learning_rate


def test_load_on_another_backend(native, tmp_path):
    X, y = make_data("softmax_cross_entropy", n=32)
    model = dropout_model(native, dtype="float32")
    model.fit(X, y, epochs=1, optimizer="adam")
    loaded = round_trip(model, tmp_path, backend="numpy")
    assert loaded.backend.name == "numpy"
    assert [w.tobytes() for w in loaded.get_weights()] == \
        [w.tobytes() for w in model.get_weights()]
    with pytest.raises(ValueError, match="backend must be one of"):
        load(tmp_path / "model.fmlp", backend="cuda")


def test_the_file_is_a_deterministic_npz_without_pickle(tmp_path):
    X, y = make_data("softmax_cross_entropy", n=32)
    model = toolbox_model("numpy")
    model.fit(X, y, epochs=1, optimizer="rmsprop")
    model.save(tmp_path / "a.fmlp")
    model.save(str(tmp_path / "b.fmlp"))
    data = (tmp_path / "a.fmlp").read_bytes()
    assert data == (tmp_path / "b.fmlp").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.fmlp") as archive:
        assert archive.namelist()[0] == "header.json"
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    expected = {"header.json", "params", "layer0.mean", "layer0.std", "layer2.running_mean",
                "layer2.running_var", "optimizer.v"}
    if getattr(model, "history", None) is not None:      # fit keeps it on the model
        expected.add("history")
    with np.load(tmp_path / "a.fmlp", allow_pickle=False) as npz:
        assert set(npz.files) == expected
        assert npz["params"].tobytes() == model._params.tobytes()
        assert npz["layer2.running_var"].tobytes() == model.layers[2].running_var.tobytes()


# ----------------------------------------------------------------- atomic writes
@pytest.fixture
def saved(tmp_path):
    """(directory, path, bytes) of a model already saved at path."""
    X, y = make_data("softmax_cross_entropy", n=32)
    model = toolbox_model("numpy")
    model.fit(X, y, epochs=1, optimizer="adam")
    path = tmp_path / "model.fmlp"
    model.save(path)
    return tmp_path, path, path.read_bytes()


def _fail_after(calls):
    """A stand-in that does the real call ``calls`` times, then raises OSError."""
    def fake(real, *args, **kwargs):
        if fake.count >= calls:
            raise OSError(28, "No space left on device (injected)")
        fake.count += 1
        return real(*args, **kwargs)
    fake.count = 0
    return fake


@pytest.mark.parametrize("target, calls", [
    ("write_npy", 1),     # mid-archive: after params.npy, inside the second array
    ("write_npy", 0),
    ("fsync", 0),         # the file's fsync
    ("replace", 0),
])
def test_a_failed_save_leaves_the_old_file_and_no_temporary(saved, monkeypatch, target,
                                                            calls):
    directory, path, before = saved
    fake = _fail_after(calls)
    if target == "write_npy":
        real = container._write_npy

        def partial_write(member, array):
            member.write(b"\x93NUMPY partial")      # some bytes reach the file first
            fake(real, member, array)
        monkeypatch.setattr(container, "_write_npy", partial_write)
    else:
        real = getattr(os, target)
        monkeypatch.setattr(os, target, lambda *a, **k: fake(real, *a, **k))
    model = every_layer_model("numpy", "float64")
    with pytest.raises(OSError, match="injected"):
        model.save(path)
    monkeypatch.undo()
    assert sorted(p.name for p in directory.iterdir()) == ["model.fmlp"]
    assert path.read_bytes() == before
    load(path)


def test_a_failed_save_to_a_new_path_creates_nothing(tmp_path, monkeypatch):
    def broken(member, array):
        raise OSError("injected")
    monkeypatch.setattr(container, "_write_npy", broken)
    with pytest.raises(OSError, match="injected"):
        dropout_model("numpy").save(tmp_path / "new.fmlp")
    assert list(tmp_path.iterdir()) == []


def test_save_fsyncs_the_file_and_its_directory_and_replaces(saved, monkeypatch):
    directory, path, before = saved
    synced = []
    real = os.fsync

    def record(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}") if os.path.exists("/proc")
                      else fd)
        real(fd)
    monkeypatch.setattr(os, "fsync", record)
    model = every_layer_model("numpy", "float32")
    model.save(path)
    assert len(synced) == 2
    if os.path.exists("/proc"):
        assert synced[0].startswith(str(directory.resolve()) + "/.model.fmlp.")
        assert synced[1] == str(directory.resolve())
    assert path.read_bytes() != before
    assert repr(load(path)) == repr(model)
    assert sorted(p.name for p in directory.iterdir()) == ["model.fmlp"]


def test_paths(tmp_path):
    model = dropout_model("numpy")
    for bad in (3, None, b"model.fmlp", ["model.fmlp"]):
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            model.save(bad)
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            load(bad)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.fmlp")
    with pytest.raises(FileNotFoundError):
        model.save(tmp_path / "no_such_directory" / "model.fmlp")
    with pytest.raises(IsADirectoryError):
        load(tmp_path)
    with pytest.raises(IsADirectoryError):
        model.save(tmp_path)
    assert list(tmp_path.iterdir()) == []
    model.save(pathlib.PurePath(tmp_path / "pure.fmlp"))
    assert repr(load(str(tmp_path / "pure.fmlp"))) == repr(model)


# ---------------------------------------------------- what the format cannot hold
class _CustomLayer(Dropout):
    pass


class _CustomAdam(Adam):
    pass


class _CustomSchedule(ExponentialDecay):
    pass


class _CustomL2(L2):
    pass


class _CustomLeaky(LeakyReLU):
    pass


@pytest.mark.parametrize("build, match", [
    (lambda: Sequential([Dense(4), _CustomLayer(0.1), Dense(2)], input_dim=3),
     r"layers\[1\], a _CustomLayer: the model file holds only the built-in layers"),
    (lambda: Sequential([Dense(4, _CustomLeaky(0.2)), Dense(2)], input_dim=3),
     r"layers\[0\].activation: cannot save the activation .* _CustomLeaky"),
    (lambda: Sequential([Dense(4, regularizer=_CustomL2(1.0)), Dense(2)], input_dim=3),
     r"layers\[0\].regularizer: cannot save the regularizer .* _CustomL2"),
    (lambda: Sequential([Dense(2)], input_dim=3, regularizer=_CustomL2(1.0)),
     r"model.regularizer: cannot save the regularizer .* _CustomL2"),
], ids=["layer", "activation", "layer regularizer", "model regularizer"])
def test_custom_parts_are_refused_by_name(build, match, tmp_path):
    model = build()
    with pytest.raises(TypeError, match=match):
        model.save(tmp_path / "model.fmlp")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("optimizer, match", [
    (_CustomAdam(), "cannot save the optimizer .* _CustomAdam"),
    (Adam(_CustomSchedule(0.1, k=0.1)), "cannot save the schedule .* _CustomSchedule"),
])
def test_custom_optimizers_and_schedules_are_refused(optimizer, match, tmp_path):
    X, y = make_data("softmax_cross_entropy", n=16)
    model = dropout_model("numpy")
    model.fit(X, y, epochs=1, optimizer=optimizer)
    with pytest.raises(TypeError, match=match):
        model.save(tmp_path / "model.fmlp")
    assert list(tmp_path.iterdir()) == []


def test_save_needs_a_model(tmp_path):
    with pytest.raises(TypeError, match="model must be a fastmlp.Sequential"):
        modelfile.save_model([Dense(2)], tmp_path / "model.fmlp")
    model = dropout_model("numpy")
    model.history = {"loss": [1.0]}
    with pytest.raises(TypeError, match="model.history must be a fastmlp History"):
        model.save(tmp_path / "model.fmlp")


# ----------------------------------------------------------------- metadata
METADATA = {"fastmlp.cli": {"target": "species", "labels": ["a", "b", 3, 2.5]},
            "note": "naïve ☃", "count": 7, "big": 2 ** 70, "ratio": -1.25e-300,
            "flags": [True, False, None], "nested": {"empty": {}, "list": [[], [{}]]},
            "float64": np.float64(0.5)}           # a float subclass: stored as 0.5


def nested(depth: int) -> dict:
    """{"a": {"a": ... {}}}: ``depth`` levels below the outer dict."""
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_metadata_round_trips_exactly(tmp_path):
    model = dropout_model("numpy")
    assert model.metadata is None
    model.metadata = METADATA
    loaded = round_trip(model, tmp_path)
    assert_same_model(loaded, model)
    assert json.dumps(loaded.metadata) == json.dumps(METADATA)    # types and key order too
    assert type(loaded.metadata["big"]) is int and type(loaded.metadata["ratio"]) is float
    assert header_of(tmp_path / "model.fmlp")["metadata"] == METADATA


def test_save_metadata_argument_overrides_the_models_without_changing_it(tmp_path):
    model = dropout_model("numpy")
    model.metadata = {"kept": 1}
    model.save(tmp_path / "given.fmlp", metadata={"given": [1, 2]})
    assert load(tmp_path / "given.fmlp").metadata == {"given": [1, 2]}
    assert model.metadata == {"kept": 1}
    modelfile.save_model(model, tmp_path / "default.fmlp")
    assert load(tmp_path / "default.fmlp").metadata == {"kept": 1}
    model.save(tmp_path / "empty.fmlp", metadata={})
    assert load(tmp_path / "empty.fmlp").metadata == {}


def test_a_model_without_metadata_is_written_as_before(tmp_path):
    """No "metadata" key at all: exactly the keys of the format before it existed, so
    such a file is what older fastmlp releases read, and loading it gives None."""
    model = dropout_model("numpy")
    model.save(tmp_path / "plain.fmlp")
    header = header_of(tmp_path / "plain.fmlp")
    assert list(header) == ["format", "format_version", "fastmlp_version", "model",
                            "training"]
    assert header["format_version"] == 1 and load(tmp_path / "plain.fmlp").metadata is None
    model.save(tmp_path / "tagged.fmlp", metadata={"x": 1})
    stripped = with_header(tmp_path / "tagged.fmlp", tmp_path / "stripped.fmlp",
                           lambda h: h.pop("metadata"))
    assert load(stripped).metadata is None
    assert_same_model(load(stripped), model)


@pytest.mark.parametrize("metadata, error, match", [
    ([1, 2], TypeError, "metadata must be a dict .*; got list"),
    ("text", TypeError, "metadata must be a dict .*; got str"),
    ({"a": (1, 2)}, TypeError, r"metadata\['a'\] is \(1, 2\) of type tuple; .*a list for "
                               r"a tuple"),
    ({"a": [np.float32(1)]}, TypeError, r"metadata\['a'\]\[0\] is .* of type float32"),
    ({"a": {"b": np.int64(3)}}, TypeError, r"metadata\['a'\]\['b'\] .* of type int64"),
    ({"a": {1: "x"}}, TypeError, r"metadata\['a'\] has the key 1 of type int; keys must be "
                                 r"str"),
    ({"a": {"b": object()}}, TypeError, "of type object"),
    ({"a": [1.0, math.nan]}, ValueError, r"metadata\['a'\]\[1\] is nan; numbers must be "
                                         r"finite"),
    ({"a": -math.inf}, ValueError, "is -inf; numbers must be finite"),
    (nested(33), ValueError, "is nested deeper than 32 levels"),
    ({"a": "x" * MAX_HEADER_BYTES}, ValueError, "header.json would take .* bytes; load "
                                                "accepts at most"),
], ids=["list", "str", "tuple", "numpy float32", "numpy int64", "int key", "object", "nan",
        "-inf", "too deep", "too big"])
def test_bad_metadata_is_refused_before_writing(metadata, error, match, tmp_path):
    model = dropout_model("numpy")
    model.save(tmp_path / "model.fmlp")
    before = (tmp_path / "model.fmlp").read_bytes()
    with pytest.raises(error, match=match):
        model.save(tmp_path / "model.fmlp", metadata=metadata)
    model.metadata = metadata
    with pytest.raises(error, match=match):
        model.save(tmp_path / "model.fmlp")
    assert [p.name for p in tmp_path.iterdir()] == ["model.fmlp"]
    assert (tmp_path / "model.fmlp").read_bytes() == before


def test_metadata_at_the_depth_limit_and_a_cycle(tmp_path):
    model = dropout_model("numpy")
    model.save(tmp_path / "deep.fmlp", metadata=nested(32))
    assert load(tmp_path / "deep.fmlp").metadata == nested(32)
    cycle: dict = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        model.save(tmp_path / "cycle.fmlp", metadata=cycle)


@pytest.mark.parametrize("value, match", [
    ([1, 2], "header: metadata must be a dict .*; got list"),
    (None, "header: metadata must be a dict .*; got NoneType"),
    ("text", "header: metadata must be a dict .*; got str"),
    (nested(33), "header: metadata.* is nested deeper than 32 levels"),
], ids=["array", "null", "string", "too deep"])
def test_bad_metadata_in_a_file_is_refused(value, match, tmp_path):
    dropout_model("numpy").save(tmp_path / "model.fmlp", metadata={"x": 1})
    bad = with_header(tmp_path / "model.fmlp", tmp_path / "bad.fmlp",
                      lambda h: h.update(metadata=value))
    with pytest.raises(ModelFileError, match=match):
        load(bad)


def test_checkpoints_keep_the_models_metadata_and_their_data(tmp_path):
    model = dropout_model("numpy")
    history = History(["loss"])
    save_checkpoint(model, tmp_path / "plain.fmlp", history, {"v": np.arange(3.0)})
    assert "metadata" not in header_of(tmp_path / "plain.fmlp")
    loaded, data = fastmlp.Sequential.read_checkpoint(tmp_path / "plain.fmlp")
    assert loaded.metadata is None and data["v"].tolist() == [0.0, 1.0, 2.0]
    model.metadata = {"run": "a", "labels": [0, 1, 2]}
    save_checkpoint(model, tmp_path / "tagged.fmlp", history,
                    {"v": np.arange(3.0), "nan": math.nan})
    loaded, data = fastmlp.Sequential.read_checkpoint(tmp_path / "tagged.fmlp")
    assert loaded.metadata == model.metadata
    assert data["v"].tolist() == [0.0, 1.0, 2.0] and math.isnan(data["nan"])
    assert load(tmp_path / "tagged.fmlp").metadata == model.metadata


def test_a_fit_with_checkpoints_refuses_bad_metadata_before_training(tmp_path):
    X, y = make_data("softmax_cross_entropy", n=16)
    model = dropout_model("numpy")
    model.metadata = {"when": np.datetime64("2024-01-01")}
    with pytest.raises(TypeError, match=r"metadata\['when'\] .* of type datetime64"):
        model.fit(X, y, epochs=1, checkpoint_dir=tmp_path / "checkpoints")
    assert model.training_step == 0
