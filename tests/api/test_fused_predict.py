"""The fused inference path (fastmlp/fused.py predictor, csrc/train/predictor.hpp): for
models of the built-in layers on the native backend, predict, predict_proba and evaluate run the
forward, the output function and the labels in one GIL-released C++ call. Results equal
the per-op native forward bit for bit; a row's result does not depend on the batch it
comes in; concurrent calls from several threads equal serial ones; every other model
falls back to the per-op path."""
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp.train import fused
from fastmlp.train import loop as training
from fastmlp.nn.layers import BatchNorm, Dense, Dropout, Layer, Maxout, Normalization
from fastmlp.model.sequential import Sequential
from fastmlp.backends import native
from layer_cases import EXAMPLES, stack

LOSSES = {"softmax_cross_entropy": 5, "binary_cross_entropy": 3, "mse": 2}


@pytest.fixture(autouse=True)
def _native(native):
    pass


def _model(loss, dtype="float32", features=20, hidden=(48, "relu"), dropout=True):
    """dtype "bfloat16": a float32 model with precision="bfloat16"."""
    layers = [Dense(hidden[0], hidden[1])]
    if dropout:
        layers.append(Dropout(0.3))
    layers += [Dense(24, "tanh"), Dense(LOSSES[loss])]
    return Sequential(layers, input_dim=features, loss=loss, seed=3, **_precision(dtype))


def _precision(dtype) -> dict:
    return dict(dtype="float32", precision="bfloat16") if dtype == "bfloat16" else dict(dtype=dtype)


def _data(n, features=20, seed=0):
    return np.random.default_rng(seed).standard_normal((n, features))


def _targets(loss, n, seed=1):
    rng = np.random.default_rng(seed)
    if loss == "softmax_cross_entropy":
        return rng.integers(0, LOSSES[loss], n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (n, LOSSES[loss]))
    return rng.standard_normal((n, LOSSES[loss]))


def _per_op(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(training, "_FUSED", False)
        return fn()


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == b[key] or (np.isnan(a[key]) and np.isnan(b[key])), key
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def test_fused_path_is_taken():
    model = _model("softmax_cross_entropy")
    assert model._predictor() is not None
    assert isinstance(model._predictor(), native.FusedPredictor)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("batch_size", [None, 1, 7, 64])
def test_equals_per_op(monkeypatch, loss, dtype, batch_size):
    model = _model(loss, dtype, hidden=(300, "elu"))  # 300 x 20 x 300: above GEMM's grain
    X, y = _data(301), _targets(loss, 301)
    model.fit(X, y, epochs=1, batch_size=32)
    calls = [lambda: model.predict(X, batch_size=batch_size),
             lambda: model.evaluate(X, y, batch_size=batch_size),
             lambda: model.evaluate(X, y, batch_size=batch_size, sample_weight=np.arange(301) + 1.0)]
    if loss != "mse":
        calls.append(lambda: model.predict_proba(X, batch_size=batch_size))
    for call in calls:
        _assert_same(call(), _per_op(monkeypatch, call))


@pytest.mark.parametrize("loss", list(LOSSES))
def test_single_output_and_nan(monkeypatch, loss):
    k = 2 if loss == "softmax_cross_entropy" else 1
    model = Sequential([Dense(6, "relu"), Dense(k)], input_dim=3, loss=loss, seed=0)
    X = _data(9, 3)
    for call in ([lambda: model.predict(X)] +
                 ([lambda: model.predict_proba(X)] if loss != "mse" else [])):
        _assert_same(call(), _per_op(monkeypatch, call))
    # NaN weights (predict checks X, not the weights): argmax/threshold as NumPy's
    with model.writing_params():      # set_weights refuses non-finite weights
        model.layers[-1].W[0, 0] = np.nan
        model.layers[-1].b[-1] = np.inf
    for call in ([lambda: model.predict(X)] +
                 ([lambda: model.predict_proba(X)] if loss != "mse" else [])):
        _assert_same(call(), _per_op(monkeypatch, call))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_argmax_ties_infinities_and_nan_as_numpy(monkeypatch, dtype):
    """predict's argmax (the fused predictor's, and the trainer's accuracy) is NumPy's: the
    first maximum, the first NaN before anything. Logits W x with W the identity but two
    infinite entries: a row with x_0 = 0 (x_1 = 0) gets NaN in logit 2 (logit 4), else
    +-inf; integer x ties often."""
    model = Sequential([Dense(5)], input_dim=5, loss="softmax_cross_entropy", seed=0,
                       dtype=dtype)
    with model.writing_params():      # set_weights refuses non-finite weights
        model.layers[0].W[...] = np.eye(5)
        model.layers[0].W[2, 0] = model.layers[0].W[4, 1] = np.inf
        model.layers[0].b[...] = 0
    X = np.random.default_rng(4).integers(-1, 3, size=(400, 5)).astype(dtype)
    with np.errstate(invalid="ignore"):
        logits = X.astype(np.float64) @ model.layers[0].W.T.astype(np.float64)
    assert np.isnan(logits).any(axis=1).sum() > 100     # the cases are there
    np.testing.assert_array_equal(model.predict(X), np.argmax(logits, axis=1))
    _assert_same(model.predict(X), _per_op(monkeypatch, lambda: model.predict(X)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_independent_of_batch(dtype):
    model = _model("softmax_cross_entropy", dtype, features=300, hidden=(257, "relu"))
    X = _data(1024, 300, seed=5)
    full = model.predict_proba(X)
    rows = [0, 1, 6, 7, 32, 500, 1023]
    for r in rows:
        np.testing.assert_array_equal(model.predict_proba(X[r:r + 1]), full[r:r + 1])
    for size in (7, 33):
        for start in range(0, 1024, size * 9):
            np.testing.assert_array_equal(model.predict_proba(X[start:start + size]),
                                          full[start:start + size])
        np.testing.assert_array_equal(model.predict_proba(X, batch_size=size), full)
    np.testing.assert_array_equal(model.predict(X), full.argmax(axis=1))


def test_threads_predict_at_once():
    model = _model("softmax_cross_entropy", features=100, hidden=(200, "relu"))
    inputs = [_data(n, 100, seed=s) for s, n in enumerate((1, 7, 300, 1024))]
    serial = [(model.predict(X), model.predict_proba(X, batch_size=33)) for X in inputs]
    results = {}
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        out = []
        for _ in range(20):
            out.append((model.predict(inputs[i]), model.predict_proba(inputs[i], batch_size=33)))
        results[i] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for labels, proba in results[i]:
            np.testing.assert_array_equal(labels, serial[i][0])
            np.testing.assert_array_equal(proba, serial[i][1])


class Scale(Layer):
    kind = "scale"

    def build(self, input_dim):
        self.input_dim = self.output_dim = input_dim
        return input_dim

    def forward(self, backend, x, workspace, training=False):
        return x * 2


class MyDense(Dense):
    pass


class MyBatchNorm(BatchNorm):
    pass


def _normalizing_model(loss, dtype):
    layers = [Normalization(), Maxout(40, pieces=3), BatchNorm(momentum=0.5), Dropout(0.2),
              Dense(33, "elu"), BatchNorm(eps=1e-5), Dense(LOSSES[loss])]
    return Sequential(layers, input_dim=20, loss=loss, seed=4, **_precision(dtype))


def _layer_model(layers, loss, dtype):
    """Each example of the layer table (tests/layer_cases.py) in its stack, or the mix
    of every layer ("normalizing")."""
    if layers == "normalizing":
        return _normalizing_model(loss, dtype)
    return Sequential(stack(EXAMPLES[layers](), LOSSES[loss]), input_dim=20, loss=loss,
                      dtype=dtype, seed=4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("batch_size", [None, 1, 7])
@pytest.mark.parametrize("layers", ["normalizing", *EXAMPLES])
def test_every_built_in_layer_equals_per_op(monkeypatch, layers, loss, dtype, batch_size):
    """Every layer case, and the mix of them, run fused at inference (BatchNorm with its
    running statistics), with the per-op forward's bits."""
    model = _layer_model(layers, loss, dtype)
    X, y = _data(301), _targets(loss, 301)
    model.fit(X, y, epochs=2, batch_size=32)        # adapts, moves the running statistics
    assert isinstance(model._predictor(), native.FusedPredictor)
    calls = [lambda: model.predict(X, batch_size=batch_size),
             lambda: model.evaluate(X, y, batch_size=batch_size)]
    if loss != "mse":
        calls.append(lambda: model.predict_proba(X, batch_size=batch_size))
    for call in calls:
        _assert_same(call(), _per_op(monkeypatch, call))
    full = model.predict(X)
    for r in (0, 1, 7, 300):
        np.testing.assert_array_equal(model.predict(X[r:r + 1]), full[r:r + 1])


def test_state_changes_reach_the_predictor(monkeypatch):
    """The normalizers' statistics are read at every call: set_weights (BatchNorm) and
    adapt (Normalization) after the predictor was built change the predictions."""
    model = _normalizing_model("softmax_cross_entropy", "float32")
    X = _data(50)
    before = model.predict_proba(X)
    weights = model.get_weights()
    weights[6] = weights[6] + 0.5                   # the first BatchNorm's running mean
    model.set_weights(weights)
    moved = model.predict_proba(X)
    assert not np.array_equal(before, moved)
    _assert_same(moved, _per_op(monkeypatch, lambda: model.predict_proba(X)))
    model.layers[0].adapt(_data(80, seed=9) * 3 + 1)
    adapted = model.predict_proba(X)
    assert not np.array_equal(moved, adapted)
    _assert_same(adapted, _per_op(monkeypatch, lambda: model.predict_proba(X)))


@pytest.mark.parametrize("extra", [lambda: MyBatchNorm(), lambda: Scale(), lambda: MyDense(4)])
def test_fallback(monkeypatch, extra):
    model = Sequential([Dense(4, "relu"), extra(), Dense(3)], input_dim=5, seed=0)
    assert model._predictor() is None
    X = _data(10, 5)
    _assert_same(model.predict_proba(X), _per_op(monkeypatch, lambda: model.predict_proba(X)))
    numpy_model = Sequential([Dense(4), Dense(3)], input_dim=5, backend="numpy", seed=0)
    assert numpy_model._predictor() is None


def test_weights_changed_and_pickle(monkeypatch):
    import pickle
    model = _model("softmax_cross_entropy")
    X = _data(20)
    before = model.predict_proba(X)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    after = model.predict_proba(X)
    assert not np.array_equal(before, after)
    _assert_same(after, _per_op(monkeypatch, lambda: model.predict_proba(X)))
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict_proba(X), after)
    assert fused.predictor(clone) is not model._predictor()
    model.layers[0].activation = "tanh"          # a changed activation rebuilds the predictor
    _assert_same(model.predict_proba(X), _per_op(monkeypatch, lambda: model.predict_proba(X)))


def test_a_predictor_is_rebuilt_for_another_isa(monkeypatch):
    """The predictor packs the weights for the ISA selected when it is built: after
    fastmlp.set_isa it is rebuilt, so predict gives that ISA's per-op bits."""
    model = _model("softmax_cross_entropy", hidden=(300, "relu"))
    X = _data(50)
    usable = fastmlp.backend_info()["usable_isas"]
    logits = {}
    try:
        model.predict_proba(X)                      # a predictor for the default ISA
        for name in usable:
            fastmlp.set_isa(name)
            logits[name] = model.predict_proba(X)
            _assert_same(logits[name], _per_op(monkeypatch, lambda: model.predict_proba(X)))
    finally:
        fastmlp.set_isa("auto")
    if "generic" in usable and len(usable) > 1:     # no FMA on generic: other bits
        assert not np.array_equal(logits["generic"], logits[usable[-1]])


@pytest.mark.parametrize("value,text", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_the_fused_path_refuses_non_finite_X_as_the_per_op_path_does(monkeypatch, value, text):
    """One finiteness check (_validation's) before either path: the same ValueError, at
    the first bad element."""
    model = _model("softmax_cross_entropy")
    X = _data(9).astype(np.float32)
    X[2, 3] = value
    X[5, 1] = value
    message = rf"X must be finite; it holds {text} at index \(2, 3\)"
    for call in (model.predict, model.predict_proba, lambda X: model.evaluate(X, np.zeros(9, int))):
        with pytest.raises(ValueError, match=message):
            call(X)
        with pytest.raises(ValueError, match=message):
            _per_op(monkeypatch, lambda: call(X))
    big = _data(3)                                   # float64, converted: the Python check
    big[1, 0] = 1e39
    with pytest.raises(ValueError, match=r"X holds 1e\+39 at index \(1, 0\), beyond the range"):
        model.predict(big)


THREADS = (1, 2, 3, 4, 8, 16)        # oversubscribed past the machine's cores: bits only


def _team_size():
    from fastmlp import _core
    return _core._testing.last_team_size()


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("layers", ["dense", "normalizing"])
def test_passes_and_threads_give_the_same_bits(layers, dtype):
    """predictor.hpp "Passes and threads": passes of any length, run one after the other
    or dealt out to a team, give each row the bits it has alone, at every thread count
    and batch size; a team runs when every thread gets kMinRowsPerThread (64) rows. With
    precision="bfloat16" too: a pass's bfloat16 products run serially on its thread, each
    in its own workspace slot."""
    if layers == "dense":
        model = _model("softmax_cross_entropy", dtype, features=20, hidden=(300, "relu"))
    else:
        model = _normalizing_model("softmax_cross_entropy", dtype)
        model.fit(_data(301), _targets("softmax_cross_entropy", 301), epochs=1, batch_size=32)
    X = _data(3001, seed=6)
    with fastmlp.threads(1):
        alone = np.concatenate([model.predict_proba(X[i:i + 1]) for i in range(0, 3001, 250)])
        full = model.predict_proba(X)
    np.testing.assert_array_equal(full[::250], alone)
    for threads in THREADS:
        with fastmlp.threads(threads):
            for n in (1, 7, 17, 33, 127, 128, 129, 257, 1000, 3001):
                for batch_size in (None, 7, 100):
                    np.testing.assert_array_equal(model.predict_proba(X[:n], batch_size=batch_size),
                                                  full[:n], err_msg=f"{threads} threads, {n} rows")
            model.predict(X)
            assert _team_size() == threads, f"{threads} threads asked, {_team_size()} ran"
            np.testing.assert_array_equal(model.predict(X), full.argmax(axis=1))


def test_a_team_stops_at_a_non_finite_pass_with_the_first_bad_element_named():
    model = _model("softmax_cross_entropy", features=20, hidden=(300, "relu"))
    X = _data(4000, seed=7).astype(np.float32)
    X[3990, 4] = np.nan
    X[1500, 2] = np.inf
    for threads in (2, 4):
        with fastmlp.threads(threads):
            with pytest.raises(ValueError, match=r"X must be finite; it holds inf at index \(1500, 2\)"):
                model.predict_proba(X)
    X[1500, 2] = 0
    with fastmlp.threads(4):
        with pytest.raises(ValueError, match=r"X must be finite; it holds nan at index \(3990, 4\)"):
            model.predict(X)
        X[3990, 4] = 0
        np.testing.assert_array_equal(model.predict(X), model.predict_proba(X).argmax(axis=1))
