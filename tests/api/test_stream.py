"""Streamed fits (fastmlp/train/stream.py): an epoch over a source is exactly the in-memory
epoch over the documented order (chunks in a permutation drawn for the epoch, blocks of
shuffle_buffer rows each in the backend's shuffled order of its seed), on every training
path, with the penalty's n, sample weights, divergence, checkpoints and resume, the survey
(rows, classes, balanced class weights, Normalization), the reader thread's errors, and
memory bounded by the buffers (a subprocess on a file ten buffers long)."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp import sources
from fastmlp.backends.numpy import NumPyBackend
from fastmlp.errors import DivergenceError
from fastmlp.nn.layers import Dense, Dropout, Normalization
from fastmlp.model.sequential import Sequential
from fastmlp.nn.regularizers import L2
from helpers import CheckpointsCut, checkpoints_cut_after, interrupted_child, make_data

N, BATCH, CHUNK = 203, 8, 24       # 26 steps an epoch, the last of 3 rows; 9 chunks


def model_for(backend, loss="softmax_cross_entropy", dtype="float32", **kwargs):
    layers = [Dense(8, "relu"), Dropout(0.2), Dense(3)]
    return Sequential(layers, input_dim=4, loss=loss, seed=5, backend=backend, dtype=dtype,
                      **kwargs)


def epoch_rows(rng, sizes, buffer_rows, batch=BATCH):
    """The rows of one streamed epoch in the order it visits them, from a copy of the
    model's shuffle generator, as docs/streaming.md says, one draw at a time: the chunks
    in the shuffled order of the first raw draw; a buffer of B slots filled with the stream's first rows; each step
    draws ``batch`` distinct slots (j = ((u >> 32) * size) >> 32 per raw draw u, until
    ``batch`` distinct came), gives out their rows and refills them in that order with
    the stream's next rows, removing the slots left unfilled."""
    starts = np.concatenate([[0], np.cumsum(sizes)])
    bits = np.random.PCG64(rng.bit_generator.random_raw())
    chunks = NumPyBackend().shuffled_order(len(sizes), int(bits.random_raw()))
    stream = [row for c in chunks for row in range(starts[c], starts[c + 1])]
    return np.array(buffer_order(bits, stream, buffer_rows, batch))


def buffer_order(bits, stream, buffer_rows, batch):
    """The rows of ``stream`` in the order the shuffle buffer gives them out, by the plain
    rule on a list, drawing from the bit generator ``bits``."""
    slots, stream = stream[:buffer_rows], stream[buffer_rows:]
    given = []
    while slots:
        chosen = []
        while len(chosen) < min(batch, len(slots)):
            u = int(bits.random_raw())
            j = ((u >> 32) * len(slots)) >> 32
            if j not in chosen:
                chosen.append(j)
        given += [slots[j] for j in chosen]
        for j in chosen:
            slots[j] = stream.pop(0) if stream else None
        slots = [row for row in slots if row is not None]
    return given


def copy_rng(model):
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = model.shuffle_rng.bit_generator.state
    return rng


def assert_same_model(a, b):
    np.testing.assert_array_equal(a._params, b._params)
    for key in ("m", "v"):
        np.testing.assert_array_equal(getattr(a.optimizer, key), getattr(b.optimizer, key))
    assert a.training_step == b.training_step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
@pytest.mark.parametrize("buffer_rows", [8, 45, 1000])
def test_a_streamed_epoch_is_the_in_memory_epoch_over_its_documented_order(
        path, dtype, loss, buffer_rows):
    """Bit for bit, epoch after epoch, with an L2 penalty (its n is the whole set's, not a
    block's) and sample weights; 45 rows of buffer are 40 (a multiple of the batch)."""
    backend, fused_runs = path
    X, y = make_data(loss, n=N)
    w = np.random.default_rng(1).uniform(0.5, 2.0, N)
    source = sources.Npy(X, y, sample_weight=w, chunk_rows=CHUNK)
    streamed = model_for(backend, loss, dtype, regularizer=L2(0.3))
    in_memory = model_for(backend, loss, dtype, regularizer=L2(0.3))
    rounded = buffer_rows // BATCH * BATCH
    for epoch in range(2):
        rows = epoch_rows(copy_rng(streamed), source.chunk_sizes(), rounded)
        assert sorted(rows) == list(range(N))
        got = streamed.fit(source, epochs=1, batch_size=BATCH, optimizer="adam",
                           shuffle_buffer=buffer_rows, verbose=0)
        want = in_memory.fit(X[rows], y[rows], epochs=1, batch_size=BATCH, optimizer="adam",
                             sample_weight=w[rows], shuffle=False, verbose=0)
        assert_same_model(streamed, in_memory)
        assert got.history == want.history
    assert fused_runs is None or len(fused_runs) >= 2 * -(-N // rounded)


def test_a_memmap_streams_and_the_estimators_take_it_as_an_array(native, tmp_path):
    X, y = make_data("softmax_cross_entropy", n=N)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    streamed, wrapped = model_for(native), model_for(native)
    streamed.fit(mapped, y, epochs=2, batch_size=BATCH, shuffle_buffer=40, verbose=0)
    wrapped.fit(sources.Npy(mapped, y), epochs=2, batch_size=BATCH, shuffle_buffer=40,
                verbose=0)
    np.testing.assert_array_equal(streamed._params, wrapped._params)
    from fastmlp.sklearn import MLPClassifier
    kwargs = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0, batch_size=BATCH)
    with pytest.warns(Warning):        # two epochs only: scikit-learn's ConvergenceWarning
        ours = MLPClassifier(**kwargs).fit(mapped, y)
    with pytest.warns(Warning):
        theirs = MLPClassifier(**kwargs).fit(np.asarray(mapped), y)
    np.testing.assert_array_equal(ours.coefs_[0], theirs.coefs_[0])


def test_without_shuffle_a_stream_is_read_in_order(native):
    X, y = make_data("softmax_cross_entropy", n=N)
    streamed, in_memory = model_for(native), model_for(native)
    streamed.fit(sources.Npy(X, y, chunk_rows=CHUNK), epochs=3, batch_size=BATCH,
                 shuffle=False, shuffle_buffer=16, verbose=0)
    in_memory.fit(X, y, epochs=3, batch_size=BATCH, shuffle=False, verbose=0)
    np.testing.assert_array_equal(streamed._params, in_memory._params)


class Passes:
    """The chunk iterator protocol over rows of X and y, 50 a chunk, counting its passes;
    ``rows(passes)`` rows a pass (default: all)."""

    def __init__(self, X, y, rows=None):
        self.X, self.y, self.passes = X, y, 0
        self.rows = rows or (lambda passes: len(X))

    def reset(self):
        self.at, self.passes = 0, self.passes + 1

    def next(self):
        end = self.rows(self.passes)
        if self.at >= end:
            return None
        self.at += 50
        rows = slice(self.at - 50, min(self.at, end))
        return self.X[rows], self.y[rows]


def test_an_iterator_is_read_in_its_own_order_and_reset_every_pass(native):
    X, y = make_data("softmax_cross_entropy", n=N)
    chunks = Passes(X, y)
    streamed, in_memory = model_for(native), model_for(native)
    rows = epoch_rows(copy_rng(streamed), [N], 40)   # one "chunk": the iterator's order
    streamed.fit(chunks, epochs=1, batch_size=BATCH, shuffle_buffer=40, verbose=0)
    in_memory.fit(X[rows], y[rows], epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    np.testing.assert_array_equal(streamed._params, in_memory._params)
    assert chunks.passes == 2          # the survey (rows and classes), then the epoch


def diverging(backend):
    model = Sequential([Dense(8, "relu"), Dense(3)], input_dim=4, loss="mse", seed=0,
                       backend=backend)
    X, y = make_data("mse", n=N)
    y = y.copy()
    y[150] = 1e30                   # step 19, in the third block of 64 rows
    return model, X, y


def test_a_divergence_names_its_step_in_the_epoch_and_keeps_the_weights_before_it(path):
    backend, _ = path
    model, X, y = diverging(backend)
    with pytest.raises(DivergenceError) as streamed:
        model.fit(sources.Npy(X, y, chunk_rows=CHUNK), epochs=1, batch_size=BATCH,
                  shuffle=False, shuffle_buffer=64, verbose=0)
    reference, X, y = diverging(backend)
    with pytest.raises(DivergenceError) as in_memory:
        reference.fit(X, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    assert str(streamed.value) == str(in_memory.value)
    assert streamed.value.step == in_memory.value.step == 19
    np.testing.assert_array_equal(model._params, reference._params)


def checkpointed(backend, directory, resume=False, interrupt_after=None):
    model = model_for(backend)
    X, y = make_data("softmax_cross_entropy", n=N + 20)
    with checkpoints_cut_after(interrupt_after):
        try:
            history = model.fit(sources.Npy(X[:N], y[:N], chunk_rows=CHUNK), epochs=3,
                                batch_size=BATCH, optimizer="adam", shuffle_buffer=40,
                                validation_data=(X[N:], y[N:]), checkpoint_dir=directory,
                                checkpoint_every_steps=7 if directory else None,
                                resume=resume, verbose=0)
        except CheckpointsCut:
            history = None
    return model, history


def test_resuming_inside_any_block_equals_the_uninterrupted_fit(path, tmp_path):
    """Checkpoints every 7 steps: inside blocks 2, 3 and 5 of every epoch (5 steps a
    block), and at the epochs' ends."""
    backend, _ = path
    reference, history = checkpointed(backend, None)
    for n in (1, 2, 3, 5, 8):
        directory = tmp_path / f"after-{n}"
        assert checkpointed(backend, directory, interrupt_after=n)[1] is None
        resumed, resumed_history = checkpointed(backend, directory, resume=True)
        np.testing.assert_array_equal(resumed._params, reference._params)
        assert resumed_history.history == history.history
        assert resumed.training_step == reference.training_step


def test_a_checkpoint_of_another_buffer_size_is_refused(tmp_path):
    X, y = make_data("softmax_cross_entropy", n=N)
    model_for("numpy").fit(sources.Npy(X, y), epochs=1, batch_size=BATCH, shuffle_buffer=40,
                           checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="shuffle_buffer 40 there, 80 here"):
        model_for("numpy").fit(sources.Npy(X, y), epochs=2, batch_size=BATCH,
                               shuffle_buffer=80, checkpoint_dir=tmp_path, resume=True,
                               verbose=0)


def test_the_survey_learns_classes_absent_from_the_first_chunks(native):
    X, y = make_data("softmax_cross_entropy", n=N)
    labels = np.array(["cat", "dog", "eel"])[y]
    order = np.argsort(labels, kind="stable")          # the first chunks hold only "cat"
    streamed, in_memory = model_for(native), model_for(native)
    streamed.fit(sources.Npy(X[order], labels[order], chunk_rows=CHUNK), epochs=1,
                 batch_size=BATCH, shuffle=False, verbose=0)
    in_memory.fit(X[order], labels[order], epochs=1, batch_size=BATCH, shuffle=False,
                  verbose=0)
    assert streamed.classes_.tolist() == in_memory.classes_.tolist() == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(streamed._params, in_memory._params)
    assert streamed.predict(X[:5]).tolist() == in_memory.predict(X[:5]).tolist()


@pytest.mark.parametrize("one_hot", [False, True])
def test_balanced_class_weights_count_the_whole_stream(native, one_hot):
    X, y = make_data("softmax_cross_entropy", n=N)
    y[:20] = 0
    if one_hot:
        y = np.eye(3)[y]
    streamed, in_memory = model_for(native), model_for(native)
    streamed.fit(sources.Npy(X, y, chunk_rows=CHUNK), epochs=1, batch_size=BATCH,
                 shuffle=False, class_weight="balanced", verbose=0)
    in_memory.fit(X, y, epochs=1, batch_size=BATCH, shuffle=False, class_weight="balanced",
                  verbose=0)
    np.testing.assert_allclose(streamed._params, in_memory._params, rtol=1e-6, atol=1e-7)


def test_a_normalization_first_layer_adapts_to_the_whole_stream(native):
    X, y = make_data("softmax_cross_entropy", n=N)
    X = X * [1.0, 10.0, 100.0, 1e4] + [5.0, -3.0, 1e3, 0.0]

    def model():
        return Sequential([Normalization(), Dense(8, "relu"), Dense(3)], input_dim=4,
                          seed=5, backend=native, dtype="float64")

    streamed, in_memory = model(), model()
    streamed.fit(sources.Npy(X, y, chunk_rows=CHUNK), epochs=1, batch_size=BATCH,
                 shuffle=False, verbose=0)
    in_memory.fit(X, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    for ours, theirs in zip(streamed.layers[0].get_state(), in_memory.layers[0].get_state()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_validation_and_callbacks_run_as_for_arrays(native):
    X, y = make_data("softmax_cross_entropy", n=N + 40)
    seen = []

    class Record(fastmlp.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, sorted(logs)))

    history = model_for(native).fit(sources.Npy(X[:N], y[:N]), epochs=2, batch_size=BATCH,
                                    validation_data=(X[N:], y[N:]), callbacks=[Record()],
                                    verbose=0)
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert len(history.history["val_accuracy"]) == 2
    assert "val_loss" in seen[0][1]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(sample_weight=np.ones(N)), ValueError, "takes its sample weights from the source"),
    (dict(batch_size=None), ValueError, "a streamed fit takes a batch_size"),
    (dict(shuffle_buffer=4), ValueError, r"shuffle_buffer \(4 rows\) must hold at least one "
                                          r"batch \(8 rows\)"),
    (dict(shuffle_buffer=0), ValueError, "shuffle_buffer"),
])
def test_stream_arguments_are_checked(kwargs, error, message):
    X, y = make_data("softmax_cross_entropy", n=N)
    arguments = {"epochs": 1, "batch_size": BATCH, "verbose": 0, **kwargs}
    with pytest.raises(error, match=message):
        model_for("numpy").fit(sources.Npy(X, y), **arguments)


def test_shuffle_buffer_with_arrays_is_refused():
    X, y = make_data("softmax_cross_entropy", n=N)
    with pytest.raises(ValueError, match="shuffle_buffer applies to streamed data"):
        model_for("numpy").fit(X, y, epochs=1, shuffle_buffer=64, verbose=0)


def test_arrays_without_targets_are_refused():
    X, _ = make_data("softmax_cross_entropy", n=N)
    with pytest.raises(TypeError, match="fit needs the targets y with arrays X"):
        model_for("numpy").fit(X, epochs=1, verbose=0)


def test_a_chunk_of_other_columns_is_named():
    X, y = make_data("softmax_cross_entropy", n=N)

    class Chunks:
        def reset(self):
            self.calls = 0

        def next(self):
            self.calls += 1
            return (X[:10], y[:10]) if self.calls == 1 else \
                (X[:10, :3], y[:10]) if self.calls == 2 else None

    with pytest.raises(ValueError, match=r"X has 3 features"):
        model_for("numpy").fit(Chunks(), epochs=1, batch_size=BATCH, verbose=0)


def test_a_source_that_changes_between_passes_is_an_error_and_the_reader_stops(native):
    X, y = make_data("softmax_cross_entropy", n=N + 10)
    growing = Passes(X, y, rows=lambda passes: N + 10 * (passes > 1))
    model = model_for(native)
    with pytest.raises(ValueError, match="gave more rows this epoch than the 203 fit counted: "
                                         "a source must give the same rows every pass"):
        model.fit(growing, epochs=1, batch_size=BATCH, verbose=0)
    assert not [t for t in threading.enumerate() if t.name == "fastmlp-stream"]


def test_an_error_reading_a_later_block_reaches_fit_and_the_reader_stops(native):
    X, y = make_data("softmax_cross_entropy", n=N)
    bad = X.copy()
    bad[180, 2] = np.nan
    model = model_for(native)
    model.fit(X[:8], y[:8], epochs=1, batch_size=BATCH, verbose=0)   # classes: no survey
    with pytest.raises(ValueError, match=r"X must be finite; it holds nan at index \(12, 2\) "
                                         r"of the \.npy source's chunk 7"):
        model.fit(sources.Npy(bad, y, chunk_rows=CHUNK), epochs=1, batch_size=BATCH,
                  shuffle=False, shuffle_buffer=64, verbose=0)
    assert model.training_step == 1 + 16          # the first two blocks trained
    assert not [t for t in threading.enumerate() if t.name == "fastmlp-stream"]


MEMORY_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    import fastmlp

    def rss_anon():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024

    path, rows, buffer_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model = fastmlp.Sequential([fastmlp.Dense(16, "relu"), fastmlp.Dense(10)],
                               input_dim=1000, seed=0)
    model.fit(np.zeros((64, 1000), np.float32), np.arange(64) % 10, epochs=1, verbose=0)
    baseline, peak, done = rss_anon(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    y = np.arange(rows) % 10
    model.fit(fastmlp.sources.Npy(path, y), epochs=1, batch_size=256,
              shuffle_buffer=buffer_rows, verbose=0)
    done.set()
    sampler.join()
    print(baseline, peak[0], model.training_step)
""")


def test_memory_is_bounded_by_the_buffers_not_the_file(tmp_path):
    """A 400 MB float32 file through a shuffle buffer of 20 MB: the fit's anonymous memory
    grows by the buffer's arrays (three buffers' worth), the chunks being read and
    converted (8 MiB each), and the labels: far less than the file."""
    rows, columns, buffer_rows = 100_000, 1000, 5_120
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, columns))
    for start in range(0, rows, 10_000):
        X[start:start + 10_000] = np.random.default_rng(start).normal(size=(10_000, columns))
    X.flush()
    del X
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if "ASAN_OPTIONS" in env:    # the CI's sanitize stage: AddressSanitizer holds freed
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=0"      # blocks back (up to 256 MB)
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), str(rows),
                          str(buffer_rows)], capture_output=True, text=True, check=True,
                         timeout=300, env=env)
    baseline, peak, steps = map(int, out.stdout.split())
    block = buffer_rows * (columns + 10 + 1) * 4
    assert steps == 2 + -(-rows // 256)           # the warm-up fit's 2, the stream's
    grown = peak - baseline
    assert 0 < grown < 3 * block + rows * 8 + (48 << 20), (grown, block)
    assert grown < rows * columns * 4 / 3, grown


# The child streams 200,000 rows through 64-1024-1 in blocks of 8,192 rows (seconds an
# epoch), gets SIGINT, then trains a fresh model on the same rows as arrays for exactly the
# steps the interrupted one took (unshuffled, so the first rows) and reports whether the
# weights are the same bits and whether the reader thread is gone.
INTERRUPTED_STREAM = """
import json, threading, time
import numpy as np
from fastmlp import Dense, Sequential, sources
from fastmlp.train.callbacks import Callback

X = np.random.default_rng(0).standard_normal((200_000, 64)).astype(np.float32)
y = X[:, :3].sum(axis=1)


def model():
    return Sequential([Dense(1024, "relu"), Dense(1)], input_dim=64, loss="mse", seed=5)


class Started(Callback):
    def on_train_begin(self):
        print("started", flush=True)


interrupted = model()
try:
    interrupted.fit(sources.Npy(X, y), epochs=50, batch_size=32, optimizer="adam",
                    shuffle=False, shuffle_buffer=8192, callbacks=[Started()], verbose=0)
    caught = None
except KeyboardInterrupt:
    caught = time.monotonic()
steps = interrupted.training_step
fresh = model()
fresh.fit(X[:steps * 32], y[:steps * 32], epochs=1, batch_size=32, optimizer="adam",
          shuffle=False, verbose=0)
print(json.dumps({"caught": caught, "steps": steps,
                  "same": bool(np.array_equal(interrupted._params, fresh._params)),
                  "threads": [t.name for t in threading.enumerate()]}), flush=True)
"""


@pytest.mark.timeout(120)
def test_ctrl_c_stops_a_streamed_fit_at_a_step_boundary_and_the_reader(native):
    report, sent = interrupted_child([sys.executable, "-c", INTERRUPTED_STREAM], 0.5)
    assert report["caught"] is not None and report["caught"] - sent < 0.5
    assert 0 < report["steps"] < 6250
    assert report["same"] and report["threads"] == ["MainThread"]


@pytest.mark.parametrize("n, capacity, batch", [(5000, 4096, 7), (3001, 640, 64), (50, 48, 48)])
def test_the_shuffle_buffer_gives_out_the_documented_order_past_its_compactions(
        n, capacity, batch):
    """The buffer marks removed slots and compacts them in bulk (stream.py); the rows it
    gives out are those of the plain rule (docs/streaming.md), one draw at a time on a
    list: drawn slots give out their rows and are refilled in order with the stream's
    next rows, and those left unfilled are removed, the others keeping their order."""
    from fastmlp.train.stream import _Draws, _RowFeed, _ShuffleBuffer
    stream_rows = np.arange(n, dtype=np.float64).reshape(-1, 1)
    pieces = iter([(stream_rows[i:i + 333], stream_rows[i:i + 333], None)
                   for i in range(0, n, 333)])
    feed = _RowFeed(pieces, 0)
    rows = feed.arrays(3 * capacity)
    buffer = _ShuffleBuffer(capacity, batch, feed, _Draws(np.random.PCG64(7)), rows)
    given = []
    while buffer.size:
        buffer.take_incoming()
        given.extend(rows.X[buffer.give_out(), 0].astype(int).tolist())
    expected = buffer_order(np.random.PCG64(7), list(range(n)), capacity, batch)
    assert given == expected and sorted(given) == list(range(n))
