"""A MultiTask trained from a source (fastmlp/train/stream.py with targets {head: y}):
without shuffle every source kind trains exactly as the same arrays on every training
path; the shuffle buffer, checkpoints and resume, the survey (each head's classes from
every chunk, the trunk's Normalization), validation and evaluate from sources, and what
is refused."""
import numpy as np
import pytest

from fastmlp import sources
from fastmlp.nn.layers import Dense, Dropout, Normalization
from fastmlp.model.multitask import MultiTask
from helpers import CheckpointsCut, checkpoints_cut_after

N, BATCH, CHUNK = 203, 8, 24       # 26 steps an epoch, the last of 3 rows; 9 chunks
rng = np.random.default_rng(0)
X = rng.normal(size=(N, 4))
KIND = np.array(["cat", "dog", "eel"])[np.argmax(X[:, :3] + rng.normal(size=(N, 3)), axis=1)]
PRICE = X @ [1.0, -2.0, 0.5, 0.25] + 0.1 * rng.normal(size=N)
TARGETS = {"kind": KIND, "price": PRICE}


def model_for(backend, trunk=None, dtype="float32"):
    trunk = [Dense(8, "relu"), Dropout(0.2)] if trunk is None else trunk
    return MultiTask(trunk, {"kind": [Dense(3)], "price": [Dense(4, "relu"), Dense(1)]},
                     {"kind": "softmax_cross_entropy", "price": "mse"},
                     loss_weights={"kind": 1.0, "price": 0.5}, input_dim=4, seed=3,
                     backend=backend, dtype=dtype)


def assert_same(a, b):
    for ours, theirs in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert a.training_step == b.training_step
    assert {h: c.tolist() for h, c in a.classes_.items() if c is not None} == \
        {h: c.tolist() for h, c in b.classes_.items() if c is not None}


def fitted(model, *data, epochs=2, **kwargs):
    return model.fit(*data, epochs=epochs, batch_size=BATCH, optimizer="adam", verbose=0,
                     **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_stream_without_shuffle_trains_as_its_arrays(path, dtype):
    backend, fused_runs = path
    streamed, in_memory = model_for(backend, dtype=dtype), model_for(backend, dtype=dtype)
    got = fitted(streamed, sources.Npy(X, TARGETS, chunk_rows=CHUNK), shuffle=False)
    want = fitted(in_memory, X, TARGETS, shuffle=False)
    assert_same(streamed, in_memory)
    assert got.history == want.history
    assert fused_runs is None or len(fused_runs) >= 2


def _parquet(tmp_path, rows=slice(None)):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({**{f"f{i}": X[rows, i] for i in range(4)}, "kind": KIND[rows],
                      "price": PRICE[rows]})
    pq.write_table(table, tmp_path / "data.parquet", row_group_size=30)
    return tmp_path / "data.parquet"


def test_every_source_kind_trains_as_the_arrays(native, tmp_path):
    for i, (name, values) in enumerate([("X", X), ("kind", KIND), ("price", PRICE)]):
        np.save(tmp_path / f"{name}.npy", values[:100])
        np.save(tmp_path / f"{name}2.npy", values[100:])
    parquet = _parquet(tmp_path)
    (tmp_path / "data.csv").write_text(          # float64 repr: read back exactly
        "f0,f1,f2,f3,kind,price\n" + "".join(
            f"{','.join(repr(v) for v in row)},{k},{p!r}\n"
            for row, k, p in zip(X.tolist(), KIND, PRICE.tolist())))
    dd = pytest.importorskip("dask.dataframe")
    da = pytest.importorskip("dask.array")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)]).assign(kind=KIND, price=PRICE)

    class Iterator:
        def reset(self):
            self.at = 0

        def next(self):
            if self.at >= N:
                return None
            rows = slice(self.at, self.at + 50)
            self.at += 50
            return X[rows], {"kind": KIND[rows], "price": PRICE[rows]}

    columns = {"kind": "kind", "price": "price"}
    files = [str(tmp_path / "X.npy"), str(tmp_path / "X2.npy")]
    cases = {
        "npy paths": (sources.Npy(files, {h: [str(tmp_path / f"{h}.npy"),
                                              str(tmp_path / f"{h}2.npy")] for h in TARGETS},
                                  chunk_rows=40),),
        "path and heads' paths": (str(tmp_path / "X.npy"),
                                  {h: str(tmp_path / f"{h}.npy") for h in TARGETS}),
        "parquet": (str(parquet), columns),
        "csv": (sources.Csv(tmp_path / "data.csv", columns, block_bytes=2000),),
        "dask frame": (dd.from_pandas(frame, npartitions=4), columns),
        "dask arrays": (da.from_array(X, chunks=(50, 4)),
                        {h: da.from_array(y, chunks=50) for h, y in TARGETS.items()}),
        "iterator": (Iterator(),),
    }
    for case, data in cases.items():
        rows = 100 if case == "path and heads' paths" else N
        targets = {h: y[:rows] for h, y in TARGETS.items()}
        streamed, in_memory = model_for(native, dtype="float64"), \
            model_for(native, dtype="float64")
        got = fitted(streamed, *data, shuffle=False)
        want = fitted(in_memory, X[:rows], targets, shuffle=False)
        assert_same(streamed, in_memory)
        assert got.history == want.history, case


def test_the_survey_learns_each_heads_classes_from_every_chunk(native):
    order = np.argsort(KIND, kind="stable")         # the first chunks hold only "cat"
    targets = {h: y[order] for h, y in TARGETS.items()}
    streamed, in_memory = model_for(native), model_for(native)
    fitted(streamed, sources.Npy(X[order], targets, chunk_rows=CHUNK), shuffle=False)
    fitted(in_memory, X[order], targets, shuffle=False)
    assert streamed.classes_["kind"].tolist() == ["cat", "dog", "eel"]
    assert streamed.classes_["price"] is None
    assert_same(streamed, in_memory)


def test_a_normalization_first_in_the_trunk_adapts_to_the_whole_stream(native):
    scaled = X * [1.0, 10.0, 100.0, 1e4] + [5.0, -3.0, 1e3, 0.0]
    streamed = model_for(native, [Normalization(), Dense(8, "relu")], "float64")
    in_memory = model_for(native, [Normalization(), Dense(8, "relu")], "float64")
    fitted(streamed, sources.Npy(scaled, TARGETS, chunk_rows=CHUNK), shuffle=False, epochs=1)
    fitted(in_memory, scaled, TARGETS, shuffle=False, epochs=1)
    for ours, theirs in zip(streamed.layers[0].get_state(), in_memory.layers[0].get_state()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_a_shuffled_stream_visits_every_row_once_an_epoch_and_learns(native):
    model = model_for(native)
    history = fitted(model, sources.Npy(X, TARGETS, chunk_rows=CHUNK), epochs=8,
                     shuffle_buffer=48)
    loss = history.history["loss"]
    assert loss[-1] < 0.7 * loss[0]
    assert model.training_step == 8 * -(-N // BATCH)


def _checkpointed(backend, directory, interrupt_after=None, resume=False):
    model = model_for(backend)
    source = sources.Npy(X, TARGETS, chunk_rows=CHUNK)
    with checkpoints_cut_after(interrupt_after):
        try:
            history = fitted(model, source, epochs=2, shuffle_buffer=40,
                             checkpoint_dir=directory,
                             checkpoint_every_steps=7 if directory else None, resume=resume)
        except CheckpointsCut:
            history = None
    return model, history


def test_resuming_a_streamed_multitask_equals_the_uninterrupted_fit(path, tmp_path):
    backend, _ = path
    reference, history = _checkpointed(backend, None)
    for n in (1, 4):
        directory = tmp_path / f"after-{n}"
        assert _checkpointed(backend, directory, interrupt_after=n)[1] is None
        resumed, resumed_history = _checkpointed(backend, directory, resume=True)
        assert_same(resumed, reference)
        assert resumed_history.history == history.history


def test_validation_and_evaluate_read_sources(native, tmp_path):
    parquet = _parquet(tmp_path, slice(150, None))
    columns = {"kind": "kind", "price": "price"}
    val = {h: y[150:] for h, y in TARGETS.items()}
    streamed, in_memory = model_for(native, dtype="float64"), model_for(native, dtype="float64")
    got = fitted(streamed, X[:150], {h: y[:150] for h, y in TARGETS.items()}, shuffle=False,
                 validation_data=(str(parquet), columns))
    want = fitted(in_memory, X[:150], {h: y[:150] for h, y in TARGETS.items()}, shuffle=False,
                  validation_data=(X[150:], val))
    assert_same(streamed, in_memory)
    for key, values in want.history.items():
        np.testing.assert_allclose(got.history[key], values, rtol=1e-12)
    from_disk = streamed.evaluate(sources.Parquet(parquet, columns))
    arrays = streamed.evaluate(X[150:], val)
    assert from_disk.keys() == arrays.keys()
    for key, value in arrays.items():
        assert from_disk[key] == pytest.approx(value, rel=1e-12)


def test_what_a_streamed_multitask_cannot_take_is_named(native):
    model = model_for(native)
    with pytest.raises(ValueError, match=r"the \.npy source gives sample weights; a MultiTask "
                                         r"trains without them"):
        fitted(model, sources.Npy(X, TARGETS, sample_weight=np.ones(N)))
    with pytest.raises(ValueError, match=r"targets must have one entry per head .*missing "
                                         r"\['price'\].* of the \.npy source's chunk 0"):
        fitted(model, sources.Npy(X, {"kind": KIND}))
    with pytest.raises(ValueError, match=r"a MultiTask takes none of the \.npy source's chunk 0"):
        model.evaluate(sources.Npy(X, TARGETS, sample_weight=np.ones(N)))
    with pytest.raises(ValueError, match=r"y\['price'\]\[0\] has 10 rows and X\[0\] 203"):
        sources.Npy(X, {"kind": KIND, "price": PRICE[:10]})
    with pytest.raises(TypeError, match="evaluate needs targets"):
        model.evaluate(X)


def test_a_multitask_predicts_from_a_source_as_from_its_array(path, tmp_path):
    backend, _ = path
    model = model_for(backend)
    fitted(model, X, TARGETS)
    np.save(tmp_path / "X.npy", X)
    whole, proba = model.predict(X), model.predict_proba(X)
    for source in (str(tmp_path / "X.npy"), sources.Npy(X, chunk_rows=7)):
        for name, got in model.predict(source).items():
            if backend == "native":    # a row's result does not depend on its neighbours
                np.testing.assert_array_equal(got, whole[name])
            elif name == "price":
                np.testing.assert_allclose(got, whole[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(model.predict_proba(source)["kind"].argmax(axis=1),
                                      proba["kind"].argmax(axis=1))
    with pytest.raises(ValueError, match=r"X has 3 features.*of the \.npy source's chunk 0"):
        model.predict(sources.Npy(X[:, :3]))
