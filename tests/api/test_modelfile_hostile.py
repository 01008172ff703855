"""fastmlp.model.modelfile.load against malformed, truncated and hostile files: every one is a
ValueError (ModelFileError) saying what is wrong, in bounded time and memory, and no file
is ever unpickled."""
import io
import json
import pickle
import struct
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from fastmlp import Adam, BatchNorm, Dense, Dropout, Normalization, Sequential
from fastmlp import load
from fastmlp.model.modelfile import MAX_HEADER_BYTES, ModelFileError
from helpers import make_data

N_PARAMS = 4 * 6 + 6 + 2 * 6 + 6 * 3 + 3     # Dense(6), BatchNorm(6), Dense(3) on 4 inputs


def _model():
    X, y = make_data("softmax_cross_entropy", n=40)
    model = Sequential([Normalization(), Dense(6, "relu"), BatchNorm(momentum=0.9),
                        Dropout(0.2), Dense(3)], input_dim=4, backend="numpy",
                       dtype="float32", seed=7)
    model.history = model.fit(X, y, epochs=2, batch_size=8, optimizer=Adam(0.01))
    return model, X


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """(path, bytes, model, X) of a valid file: every kind of member is in it."""
    model, X = _model()
    path = tmp_path_factory.mktemp("valid") / "model.fmlp"
    model.save(path)
    assert model.n_params == N_PARAMS
    return path, path.read_bytes(), model, X


def members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def header(path) -> dict:
    return json.loads(members(path)["header.json"])


def write_zip(path, items, compression=zipfile.ZIP_STORED):
    """A ZIP of (name, bytes) pairs, in order (a name may repeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in items:
                archive.writestr(name, data)
    return path


def variant(valid, tmp_path, edit_header=None, replace=(), drop=(), add=()):
    """The valid file with its header edited (a function of the JSON data), members
    replaced {name: bytes}, dropped or added [(name, bytes)]."""
    content = members(valid[0])
    if edit_header is not None:
        data = json.loads(content["header.json"])
        edit_header(data)
        content["header.json"] = json.dumps(data).encode()
    content.update(dict(replace))
    items = [(n, d) for n, d in content.items() if n not in drop] + list(add)
    return write_zip(tmp_path / "variant.fmlp", items)


def npy(array, **kwargs) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, **kwargs)
    return stream.getvalue()


def rejected(path, match):
    """load(path) raises a ValueError (a ModelFileError) whose message matches."""
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert isinstance(info.value, ModelFileError)
    return info.value


def bounded(function, seconds=0.5, megabytes=4):
    """Run function; assert it took under ``seconds`` and its peak Python/NumPy
    allocation stayed under ``megabytes``."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        function()
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.3f} s"
    assert peak < megabytes * 2 ** 20, f"allocated {peak / 2 ** 20:.1f} MiB"


def set_in(path_keys, value):
    def edit(data):
        for key in path_keys[:-1]:
            data = data[key]
        data[path_keys[-1]] = value
    return edit


def delete_in(path_keys):
    def edit(data):
        for key in path_keys[:-1]:
            data = data[key]
        del data[path_keys[-1]]
    return edit


def test_the_oracle_loads_the_valid_file(valid):
    path, _, model, X = valid
    assert load(path).predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


# ----------------------------------------------------------- not a model file at all
class _Payload:
    """Unpickling this would run _Payload.ran.append: it must never happen."""
    ran = []

    def __reduce__(self):
        return _Payload.ran.append, ("unpickled!",)


@pytest.mark.parametrize("content, match", [
    (b"", "bad magic b''"),
    (b"GARBAGE" * 100, "bad magic b'GARB'"),
    (npy(np.zeros(3)), r"bad magic b'\\x93NUM'"),
    (pickle.dumps(_Payload()), "bad magic"),
    (b"PK\x03\x04" + b"\x00" * 100, "not a valid fastmlp model file.*BadZipFile"),
], ids=["empty", "garbage", "npy", "pickle", "zip magic only"])
def test_files_that_are_not_archives(tmp_path, content, match):
    path = tmp_path / "bad.fmlp"
    path.write_bytes(content)
    rejected(path, match)
    assert _Payload.ran == []


def test_an_archive_without_a_header(tmp_path):
    rejected(write_zip(tmp_path / "a.zip", [("params.npy", npy(np.zeros(3)))]),
             "no header.json member")


# ---------------------------------------------------------------------- the JSON
@pytest.mark.parametrize("text, match", [
    (b"{not json", "header.json is not valid JSON"),
    (b"\xff\xfe{}", "header.json is not valid JSON"),
    (b'{"format": NaN}', "holds NaN; JSON numbers must be finite"),
    (b'{"format": -Infinity}', "holds -Infinity"),
    (b'{"format": 1e999}', "1e999, beyond float64's range"),
    (b'{"format": 1, "format": 2}', r"repeats the keys \['format'\]"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    (b"[]", "header must be a JSON object; got an array"),
    (b'{"format": 1' + b"0" * 5000 + b"}", "not valid JSON"),
], ids=["syntax", "utf8", "nan", "infinity", "overflow", "duplicate", "deep", "array",
        "long int"])
def test_bad_json(valid, tmp_path, text, match):
    rejected(variant(valid, tmp_path, replace={"header.json": text}), match)


def test_many_duplicate_keys_are_refused_in_linear_time(valid, tmp_path):
    """20,000 repeats of one key: a quadratic duplicate search would take minutes."""
    text = b"{" + b'"a": 1, ' * 20000 + b'"b": 1}'
    path = variant(valid, tmp_path, replace={"header.json": text})
    bounded(lambda: rejected(path, r"repeats the keys \['a'\]"), seconds=1, megabytes=16)


def test_header_size_cap(valid, tmp_path):
    text = b'{"padding": "' + b"x" * MAX_HEADER_BYTES + b'"}'
    path = variant(valid, tmp_path, replace={"header.json": text})
    bounded(lambda: rejected(path, f"header.json declares {len(text)} bytes; the limit"))


@pytest.mark.parametrize("edit, match", [
    (set_in(["format"], "keras"), "format is 'keras'; expected 'fastmlp-model'"),
    (set_in(["format_version"], 2), "format_version 2 is not supported.*newer fastmlp"),
    (set_in(["format_version"], 0), "format_version must be an integer >= 1"),
    (set_in(["format_version"], "1"), "format_version must be an integer"),
    (set_in(["format_version"], True), "format_version must be an integer"),
    (set_in(["fastmlp_version"], 1.0), "fastmlp_version must be a string"),
    (set_in(["extra"], 1), r"header must have the keys .* unknown \['extra'\]"),
    (delete_in(["training"]), r"missing \['training'\]"),
    (set_in(["model"], []), "model must be a JSON object; got an array"),
    (delete_in(["model", "seed"]), r"model must have the keys .*missing \['seed'\]"),
    (set_in(["model", "input_dim"], 0), "model.input_dim must be an integer >= 1"),
    (set_in(["model", "input_dim"], 4.0), "model.input_dim must be an integer"),
    (set_in(["model", "loss"], "hinge"), "model.loss is 'hinge'; expected one of"),
    (set_in(["model", "dtype"], "float16"), "model.dtype is 'float16'"),
    (set_in(["model", "backend"], "cuda"), "model.backend is 'cuda'"),
    (set_in(["model", "seed"], -1), "model.seed must be an integer >= 0"),
    (set_in(["model", "seed"], True), "model.seed must be an integer >= 0"),
    (set_in(["model", "regularizer"], {"class": "L3", "config": {}}),
     r"model.regularizer.class is 'L3'; expected one of \['L1', 'L1L2', 'L2', "),
    (set_in(["model", "regularizer"], {"class": "L2", "config": {"lam": -1.0,
                                                                   "scale": "samples"}}),
     "model.regularizer.config: l2 must be a finite number >= 0"),
    (set_in(["model", "regularizer"], {"class": "L2", "config": {"lam": 1.0}}),
     r"model.regularizer.config must have the keys \['lam', 'scale'\]; missing \['scale'\]"),
    (set_in(["model", "layers"], []), "model.layers must be a non-empty array"),
    (set_in(["model", "layers", 1], 7), r"model.layers\[1\] must be a JSON object"),
    (set_in(["model", "layers", 1, "type"], "Conv2D"),
     r"model.layers\[1\].type is 'Conv2D'; expected one of \['BatchNorm', 'Dense', "),
    (set_in(["model", "layers", 1, "type"], "Layer"), r"model.layers\[1\].type is 'Layer'"),
    (set_in(["model", "layers", 1, "extra"], 1), r"model.layers\[1\] must have the keys"),
    (delete_in(["model", "layers", 0, "adapted"]),
     r"model.layers\[0\] must have the keys .*missing \['adapted'\]"),
    (set_in(["model", "layers", 0, "adapted"], 1), r"model.layers\[0\].adapted must be true"),
    (set_in(["model", "layers", 1, "config", "units"], -6),
     r"model.layers\[1\].config: units must be an integer >= 1"),
    (set_in(["model", "layers", 1, "config", "units"], "6"),
     r"model.layers\[1\].config: units must be an integer"),
    (set_in(["model", "layers", 1, "config", "activation"], "swish"),
     "unknown activation 'swish'"),
    (set_in(["model", "layers", 1, "config", "activation"],
            {"class": "LeakyReLU", "config": {"slope": "0.2"}}), "slope must be a finite"),
    (set_in(["model", "layers", 1, "config", "activation"],
            {"class": "Swish", "config": {}}), "activation.class is 'Swish'"),
    (set_in(["model", "layers", 1, "config", "bias"], True),
     r"layers\[1\].config must have the keys .*unknown \['bias'\]"),
    (delete_in(["model", "layers", 1, "config", "init"]), r"missing \['init'\]"),
    (set_in(["model", "layers", 3, "config", "rate"], 1.0), "rate must satisfy 0 <= rate < 1"),
    (set_in(["model", "layers", 2, "config", "momentum"], None), "momentum must be a finite"),
    (set_in(["model", "layers", 4, "config", "activation"], "sigmoid"),
     r"^cannot load .*model: the last layer's activation is 'sigmoid'"),
    (set_in(["model", "layers", 4, "type"], "Dropout"), "must have the keys"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_header_values(valid, tmp_path, edit, match):
    rejected(variant(valid, tmp_path, edit_header=edit), match)


@pytest.mark.parametrize("edit, match", [
    (set_in(["training", "training_step"], -1), "training.training_step must be an integer"),
    (set_in(["training", "stop_training"], 0), "training.stop_training must be true or"),
    (set_in(["training", "shuffle_rng", "bit_generator"], "MT19937"),
     "training.shuffle_rng.bit_generator is 'MT19937'; expected 'PCG64'"),
    (set_in(["training", "shuffle_rng", "state", "state"], 1.5),
     "training.shuffle_rng.state.state must be an integer"),
    (set_in(["training", "shuffle_rng", "state", "inc"], 2 ** 200), "training.shuffle_rng"),
    (delete_in(["training", "shuffle_rng", "uinteger"]), r"missing \['uinteger'\]"),
    (set_in(["training", "optimizer", "optimizer"], "lbfgs"),
     "training.optimizer.optimizer is 'lbfgs'"),
    (delete_in(["training", "optimizer", "config", "beta_1"]),
     r"training.optimizer.config must have the keys .*missing \['beta_1'\]"),
    (set_in(["training", "optimizer", "config", "beta_1"], 1.5), "beta_1 must be a number"),
    (set_in(["training", "optimizer", "config", "learning_rate"],
            {"class": "CosineDecay", "config": {}}), "learning_rate.class is 'CosineDecay'"),
    (set_in(["training", "optimizer", "config", "learning_rate"],
            {"class": "StepDecay", "config": {"initial_learning_rate": 0.1}}),
     r"learning_rate.config must have the keys .*missing \['factor', 'every', 'per'\]"),
    (set_in(["training", "optimizer", "iterations"], True), "iterations"),
    (set_in(["training", "optimizer", "iterations"], -2), "iterations"),
    (set_in(["training", "optimizer", "scale"], 0.0), "scale"),
    (set_in(["training", "optimizer", "epoch_start_samples"], 10 ** 9),
     "epoch_start_samples'] must be <="),
    (set_in(["training", "optimizer", "m"], "yes"), "training.optimizer.m must be true or"),
    (set_in(["training", "optimizer", "extra"], 1), r"unknown \['extra'\]"),
    (set_in(["training", "history", "keys"], ["lr", "lr"]), "distinct strings including"),
    (set_in(["training", "history", "keys"], ["lr", "accuracy"]), "including 'loss'"),
    (set_in(["training", "history", "keys"], "loss"), "distinct strings"),
    (set_in(["training", "history", "epochs"], 3),
     r"'history.npy' holds a <f8 array of shape \(2, 5\); the architecture needs <f8 \(3, 5\)"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_training_state(valid, tmp_path, edit, match):
    rejected(variant(valid, tmp_path, edit_header=edit), match)


def test_an_optimizer_with_arrays_it_does_not_keep(valid, tmp_path):
    def to_sgd(data):
        data["training"]["optimizer"].update(optimizer="sgd", config={
            "learning_rate": 0.01, "clipnorm": None})
    rejected(variant(valid, tmp_path, edit_header=to_sgd), r"state\['m'\] must be None")


# ------------------------------------------------------------------- the members
@pytest.mark.parametrize("change, match", [
    ({"drop": ["layer2.running_var.npy"]},
     r"missing \['layer2.running_var.npy'\], unexpected \[\]"),
    ({"drop": ["optimizer.m.npy"]}, r"missing \['optimizer.m.npy'\]"),
    ({"drop": ["history.npy"]}, r"missing \['history.npy'\]"),
    ({"add": [("evil.npy", npy(np.zeros(2)))]}, r"missing \[\], unexpected \['evil.npy'\]"),
    ({"add": [("../../etc/passwd", b"x")]}, r"unexpected \['../../etc/passwd'\]"),
    ({"add": [("params.npy", npy(np.zeros(N_PARAMS, np.float32)))]},
     "member 'params.npy' appears twice"),
], ids=["missing state", "missing m", "missing history", "extra", "path", "duplicate"])
def test_missing_extra_and_repeated_members(valid, tmp_path, change, match):
    rejected(variant(valid, tmp_path, **change), match)


@pytest.mark.parametrize("array, match", [
    (np.zeros(N_PARAMS + 1, np.float32), r"holds a <f4 array of shape \(64,\); the "
                                         r"architecture needs <f4 \(63,\)"),
    (np.zeros(2000, np.float32), r"'params.npy' declares 8128 bytes; a <f4 array of shape "
                                 r"\(63,\) takes 252 bytes plus a header of at most 4096"),
    (np.zeros(N_PARAMS, np.float64), r"holds a <f8 array of shape \(63,\)"),
    (np.zeros(N_PARAMS, np.int32), r"holds a <i4 array of shape \(63,\);.* needs <f4 \(63,\)"),
    (np.zeros(N_PARAMS, ">f4"), r"holds a >f4 array"),
    (np.zeros((3, N_PARAMS // 3), np.float32), r"of shape \(3, 21\)"),
    (np.full(N_PARAMS, np.nan, np.float32), "'params.npy' holds NaN or infinite values"),
    (np.full(N_PARAMS, -np.inf, np.float32), "'params.npy' holds NaN or infinite values"),
], ids=["longer", "much longer", "float64", "int32", "big-endian", "2-D", "nan", "inf"])
def test_wrong_parameter_arrays(valid, tmp_path, array, match):
    rejected(variant(valid, tmp_path, replace={"params.npy": npy(array)}), match)


@pytest.mark.parametrize("name, array, match", [
    ("layer2.running_var.npy", -np.ones(6, np.float32), "running_var must be >= 0"),
    ("layer2.running_mean.npy", np.full(6, np.nan, np.float32), "holds NaN"),
    ("layer0.std.npy", np.zeros(4, np.float32), "std must be > 0"),
    ("optimizer.v.npy", -np.ones(N_PARAMS, np.float32), "'optimizer.v.npy' holds negative"),
    ("optimizer.m.npy", np.full(N_PARAMS, np.inf, np.float32), "'optimizer.m.npy' holds NaN"),
    ("history.npy", np.zeros((2, 5), np.float32), "holds a <f4 array"),
    ("history.npy", np.asfortranarray(np.zeros((2, 5))), r"\(Fortran order\)"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_invalid_state_arrays(valid, tmp_path, name, array, match):
    rejected(variant(valid, tmp_path, replace={name: npy(array)}), match)


@pytest.mark.parametrize("content, match", [
    (b"\x93NUMPY\x03\x00" + b"\x00" * 300, r"not a valid .npy array: .npy version \(3, 0\)"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}  " + b"\x00" * 300, "not a valid .npy array"),
    (b"NOTNUMPY" + b"\x00" * 300, "not a valid .npy array"),
], ids=["version", "header", "magic"])
def test_bad_npy_headers(valid, tmp_path, content, match):
    rejected(variant(valid, tmp_path, replace={"params.npy": content}), match)


def test_an_embedded_pickle_is_never_unpickled(valid, tmp_path):
    """An object-array .npy header followed by a pickle, sized like the real parameters so
    that only the .npy header check can catch it: refused by its dtype, never unpickled."""
    header = npy(np.empty(N_PARAMS, object), allow_pickle=True)
    header = header[:header.index(b"\n") + 1]
    data = header + pickle.dumps(_Payload())
    real = members(valid[0])["params.npy"]
    assert len(data) <= len(real)
    data += b"\x00" * (len(real) - len(data))
    path = variant(valid, tmp_path, replace={"params.npy": data})
    rejected(path, r"'params.npy' holds a \|O array of shape \(63,\)")
    with pytest.raises(ValueError, match="Object arrays cannot be loaded"):
        np.load(io.BytesIO(data))          # the oracle: NumPy's own refusal
    assert _Payload.ran == []


# ------------------------------------------------ sizes: bounded time and memory
def _central_entry(data: bytes, name: str) -> int:
    """Offset of ``name``'s central-directory record in a ZIP's bytes."""
    offset = data.index(b"PK\x01\x02")
    while True:
        length = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46:offset + 46 + length] == name.encode():
            return offset
        offset = data.index(b"PK\x01\x02", offset + 4)


def patched(valid, tmp_path, name, field_offset, fmt, value):
    """The valid file with a field of ``name``'s central-directory record overwritten."""
    data = bytearray(valid[1])
    struct.pack_into(fmt, data, _central_entry(bytes(data), name) + field_offset, *value)
    path = tmp_path / "patched.fmlp"
    path.write_bytes(bytes(data))
    return path


def test_a_huge_declared_member_size_is_refused_without_reading(valid, tmp_path):
    path = patched(valid, tmp_path, "params.npy", 20, "<II", (0xFFFFFFF0, 0xFFFFFFF0))
    bounded(lambda: rejected(path, "'params.npy' declares 4294967280 bytes at offset .*"
                                   "beyond the end of the"))


def test_a_gigantic_architecture_is_refused_without_allocating(valid, tmp_path):
    """Layers whose parameters would take petabytes: refused by comparing with the
    member's declared size, before anything is built."""
    edit = set_in(["model", "layers", 1, "config", "units"], 10 ** 15)
    path = variant(valid, tmp_path, edit_header=edit)
    bounded(lambda: rejected(path, r"'params.npy' declares \d+ bytes; a <f4 array of shape "
                                   r"\(\d{16,},\) takes"))


def test_a_gigantic_npy_shape_is_refused_from_its_header(valid, tmp_path):
    """A params.npy of the right size whose header declares 2**40 values."""
    real = members(valid[0])["params.npy"]
    shape = f"({N_PARAMS},), }}".encode()
    huge = b"(1099511627776,), }"
    fake = real.replace(shape + b" " * (len(huge) - len(shape)), huge, 1)
    assert len(fake) == len(real) and huge in fake
    path = variant(valid, tmp_path, replace={"params.npy": fake})
    bounded(lambda: rejected(path, r"holds a <f4 array of shape \(1099511627776,\)"))


def test_a_zip_bomb_member_is_refused_before_inflating(valid, tmp_path):
    items = list(members(valid[0]).items())
    items.append(("bomb.npy", bytes(32 * 2 ** 20)))           # 32 MiB of zeros
    path = write_zip(tmp_path / "bomb.fmlp", items, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2 ** 20
    bounded(lambda: rejected(path, "is compressed .*the format stores members uncompressed"))


def test_encrypted_members_are_refused(valid, tmp_path):
    rejected(patched(valid, tmp_path, "params.npy", 8, "<H", (0x1,)), "is encrypted")


# ------------------------------------------------------ damage anywhere in the file
def test_every_truncation_is_a_value_error(valid, tmp_path):
    data = valid[1]
    cut = tmp_path / "cut.fmlp"
    offsets = sorted(set(range(0, len(data), 7)) | set(range(len(data) - 200, len(data))))
    for offset in offsets:
        cut.write_bytes(data[:offset])
        with pytest.raises(ValueError):
            load(cut)


def test_a_flipped_byte_is_refused_or_harmless(valid, tmp_path):
    """Every third byte flipped in turn: load refuses with a ValueError, or (a flip in a field
    the format does not use, such as a timestamp) gives the very same model."""
    _, data, model, X = valid
    expected = model.predict_proba(X).tobytes()
    path = tmp_path / "flipped.fmlp"
    outcomes = {"refused": 0, "same": 0}
    for offset in range(0, len(data), 3):
        damaged = bytearray(data)
        damaged[offset] ^= 0x5A
        path.write_bytes(bytes(damaged))
        try:
            loaded = load(path)
        except ValueError:
            outcomes["refused"] += 1
            continue
        assert loaded.predict_proba(X).tobytes() == expected, offset
        outcomes["same"] += 1
    assert outcomes["refused"] > outcomes["same"] > 0


def test_a_corrupted_array_fails_its_crc(valid, tmp_path):
    data = bytearray(valid[1])
    start = data.index(b"\x93NUMPY", data.index(b"params.npy"))
    data[start + 200] ^= 0x01                         # inside the parameter values
    path = tmp_path / "crc.fmlp"
    path.write_bytes(bytes(data))
    rejected(path, "Bad CRC-32 for file 'params.npy'")
