"""Dropout, Maxout, BatchNorm, Normalization, activation objects and the Layer protocol."""
import numpy as np
import pytest

from fastmlp import BatchNorm, Dense, Dropout, Layer, Maxout, Normalization, Sequential
from fastmlp.nn.activations import ELU, LeakyReLU
from fastmlp.nn.layers import Workspace
from helpers import assert_close, make_data


class Scale(Layer):
    """A test-only custom layer: y = x * s with a learnable per-feature scale s."""

    kind = "scale"

    def count_params(self):
        return self.input_dim

    def bind(self, params, grads):
        super().bind(params, grads)
        self.s, self.ds = params, grads

    def initialize(self, rng):
        self.s.fill(1.0)

    def forward(self, backend, x, workspace, training):
        y = workspace.get("y", x.shape, x.dtype)
        np.multiply(x, self.s, out=y)
        if training:
            self._x = x
        return y

    def backward(self, backend, dy, need_dx):
        np.sum(dy * self._x, axis=0, out=self.ds)
        return dy * self.s if need_dx else None

    def parameters(self):
        return [self.s]

    def gradients(self):
        return [self.ds]

    def parameter_names(self):
        return ["s"]


def toolbox_model(backend, dtype="float64", seed=0, loss="softmax_cross_entropy"):
    return Sequential([Normalization(), Dense(16, LeakyReLU(0.2)), BatchNorm(momentum=0.9),
                       Dropout(0.25), Maxout(8, pieces=3), Scale(), Dense(6, ELU(0.5)),
                       Dense(3)], input_dim=4, loss=loss, backend=backend, dtype=dtype,
                      seed=seed)


# ------------------------------------------------------------------------ Dropout
def dropout_model(backend, rate=0.3, dtype="float64", seed=3):
    return Sequential([Dropout(rate), Dense(3)], input_dim=200, backend=backend, dtype=dtype,
                      seed=seed)


def test_dropout_drops_the_rate_and_scales_the_rest():
    rate = 0.3
    m = dropout_model("numpy", rate)
    X = np.ones((500, 200))
    y = m.layers[0].forward(m.backend, X, Workspace(), True)
    mask = m.layers[0]._mask
    dropped = np.mean(mask == 0)
    sigma = np.sqrt(rate * (1 - rate) / mask.size)
    assert abs(dropped - rate) <= 3 * sigma
    assert set(np.unique(mask)) == {0.0, 1 / (1 - rate)}
    np.testing.assert_array_equal(y, X * mask)


def test_dropout_masks_and_training_agree_across_backends(native, per_op):
    X, y = make_data("softmax_cross_entropy", n=40, n_features=200)
    a, b = dropout_model("numpy", dtype="float64"), dropout_model(native, dtype="float64")
    for m in (a, b):
        m.fit(X, y, epochs=1, batch_size=None, shuffle=False, learning_rate=0.1)
    np.testing.assert_array_equal(a.layers[0]._mask, b.layers[0]._mask)
    assert_close(b._params, a._params, "backend_one_step", "float64")
    for m in (a, b):
        m.fit(X, y, epochs=3, batch_size=16, learning_rate=0.1)
    np.testing.assert_array_equal(a.layers[0]._mask, b.layers[0]._mask)
    assert_close(b._params, a._params, "backend_five_epochs", "float64")


def test_dropout_is_the_identity_at_inference():
    m = dropout_model("numpy")
    plain = Sequential([Dense(3)], input_dim=200, backend="numpy", dtype="float64", seed=0)
    plain.set_weights(m.get_weights())
    X = np.random.default_rng(0).normal(size=(7, 200))
    np.testing.assert_array_equal(m.predict_proba(X), plain.predict_proba(X))


def test_the_step_counter_carries_across_fits(backend_name, per_op):
    X, y = make_data("softmax_cross_entropy", n=30, n_features=200)
    a, b = dropout_model(backend_name), dropout_model(backend_name)
    a.fit(X, y, epochs=1, batch_size=8)
    first_mask = a.layers[0]._mask.copy()
    a.fit(X, y, epochs=1, batch_size=8)
    b.fit(X, y, epochs=2, batch_size=8)
    assert a.training_step == b.training_step == 8
    np.testing.assert_array_equal(a._params, b._params)
    assert not np.array_equal(first_mask, a.layers[0]._mask)     # a new mask every step


def test_dropout_rate_is_checked():
    for rate, error in ((1.0, ValueError), (-0.1, ValueError), ("0.5", TypeError)):
        with pytest.raises(error, match=r"rate"):
            Dropout(rate)


# ------------------------------------------------------------------------- Maxout
def test_maxout_forward_and_backward_match_the_literal_formula():
    rng = np.random.default_rng(1)
    m = Sequential([Maxout(4, pieces=3)], input_dim=5, loss="mse", backend="numpy",
                   dtype="float64", seed=2)
    layer = m.layers[0]
    m.set_weights([layer.W, rng.normal(size=(4, 3))])
    X, Y = rng.normal(size=(9, 5)), rng.normal(size=(9, 4))
    z = np.einsum("mi,upi->mup", X, layer.W) + layer.b             # (m, units, pieces)
    a = z.max(axis=2)
    assert_close(m.predict(X), a, "literal", "float64")
    m.loss_and_grad(*m.prepare_data(X, Y))
    da = 2 * (a - Y) / Y.size                                     # mse: mean over elements
    win = z.argmax(axis=2)[..., None] == np.arange(3)              # (m, units, pieces)
    dz = da[..., None] * win
    assert_close(layer.dW, np.einsum("mup,mi->upi", dz, X), "literal", "float64")
    assert_close(layer.db, dz.sum(axis=0), "literal", "float64")


def test_maxout_shapes_and_default_init():
    m = Sequential([Maxout(4, pieces=3), Dense(2)], input_dim=5, loss="mse", backend="numpy",
                   seed=0)
    assert m.layers[0].init == "he_normal"
    assert [w.shape for w in m.get_weights()] == [(4, 3, 5), (4, 3), (2, 4), (2,)]
    assert m.describe().layers[0].params == 4 * 3 * 6


# ---------------------------------------------------------------------- BatchNorm
def test_batchnorm_inference_uses_the_running_averages():
    rng = np.random.default_rng(2)
    X, y = rng.normal(loc=3.0, scale=2.0, size=(20, 4)), rng.integers(0, 3, 20)
    m = Sequential([BatchNorm(momentum=0.9, eps=1e-3), Dense(3)], input_dim=4, backend="numpy",
                   dtype="float64", seed=0)
    m.fit(X, y, epochs=1, batch_size=None, shuffle=False, learning_rate=0.1)
    bn, dense = m.layers
    mean = 0.1 * X.mean(axis=0)                       # 0.9 * 0 + 0.1 * batch mean
    var = 0.9 + 0.1 * X.var(axis=0)                   # 0.9 * 1 + 0.1 * biased batch var
    assert_close(bn.running_mean, mean, "literal", "float64")
    assert_close(bn.running_var, var, "literal", "float64")
    hidden = bn.gamma * (X - mean) / np.sqrt(var + 1e-3) + bn.beta
    assert_close(m.predict_proba(X), m._probabilities(hidden @ dense.W.T + dense.b),
                 "literal", "float64")
    weights = m.get_weights()
    assert [w.shape for w in weights] == [(4,)] * 4 + [(3, 4), (3,)]
    np.testing.assert_array_equal(weights[2], bn.running_mean)


def test_batchnorm_state_round_trips_through_set_weights():
    X, y = make_data("softmax_cross_entropy", n=30)
    a, b = toolbox_model("numpy", seed=1), toolbox_model("numpy", seed=2)
    a.fit(X, y, epochs=2, batch_size=8)
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(b.predict_proba(X), a.predict_proba(X))


# ------------------------------------------------------------------ Normalization
def test_normalization_adapts_on_the_first_fit_and_keeps_its_state():
    rng = np.random.default_rng(3)
    X = rng.normal(loc=[1.0, -2.0, 5.0, 0.0], scale=[1.0, 3.0, 0.5, 1.0], size=(40, 4))
    X[:, 3] = 7.0                                             # zero deviation -> 1
    y = rng.integers(0, 3, 40)
    m = Sequential([Normalization(), Dense(3)], input_dim=4, backend="numpy", dtype="float64",
                   seed=0)
    m.fit(X, y, epochs=1)
    norm = m.layers[0]
    std = X.std(axis=0)
    std[3] = 1.0
    assert_close(norm.mean, X.mean(axis=0), "literal", "float64")
    assert_close(norm.std, std, "literal", "float64")
    mean, deviation = m.get_weights()[:2]
    np.testing.assert_array_equal(mean, norm.mean)
    np.testing.assert_array_equal(deviation, norm.std)
    m.fit(X + 100.0, y, epochs=1)                              # adapted once only
    np.testing.assert_array_equal(norm.mean, mean)
    dense = m.layers[1]
    assert_close(m.predict(X[:5]), ((X[:5] - mean) / std @ dense.W.T + dense.b).argmax(1),
                 "literal", "float64")
    norm.adapt(X * 2)
    assert_close(norm.mean, 2 * X.mean(axis=0), "literal", "float64")


# --------------------------------------------------------------- activation objects
@pytest.mark.parametrize("activation, literal", [
    (LeakyReLU(0.2), lambda z: np.where(z > 0, z, 0.2 * z)),
    (ELU(alpha=0.5), lambda z: np.where(z > 0, z, 0.5 * np.expm1(z)))])
def test_activation_objects_carry_their_parameter(activation, literal):
    m = Sequential([Dense(5, activation), Dense(2)], input_dim=3, loss="mse", backend="numpy",
                   dtype="float64", seed=0)
    X = np.random.default_rng(4).normal(size=(8, 3))
    first, second = m.layers
    hidden = literal(X @ first.W.T + first.b)
    assert_close(m.predict(X), hidden @ second.W.T + second.b, "literal", "float64")
    assert repr(activation) in repr(first)


# ----------------------------------------------------------- protocol and summary
def test_a_custom_layer_trains_on_both_backends(backend_name):
    X, y = make_data("softmax_cross_entropy", n=60)
    m = Sequential([Dense(8, "tanh"), Scale(), Dense(3)], input_dim=4, backend=backend_name,
                   dtype="float64", seed=0)
    history = m.fit(X, y, epochs=30, batch_size=16, learning_rate=0.2)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    assert not np.all(m.layers[1].s == 1.0)                     # the scale was trained
    assert [w.shape for w in m.get_weights()] == [(8, 4), (8,), (8,), (3, 8), (3,)]


def test_summary_names_every_layer():
    m = toolbox_model("numpy")
    summary = m.describe()
    names = [row.name for row in summary.layers]
    assert names == ["normalization_0", "dense_1", "batch_norm_2", "dropout_3", "maxout_4",
                     "scale_5", "dense_6", "dense_7"]
    assert [row.params for row in summary.layers] == [0, 80, 32, 0, 8 * 3 * 17, 8, 54, 21]
    assert summary.total_params == m.n_params == sum(row.params for row in summary.layers)
    assert summary.state_values == 8 + 32
    text = str(summary)
    assert "dense_1 (leaky_relu 0.2)" in text and "dropout_3 (rate 0.25)" in text
    assert "non-trainable state: 40" in text


def test_sequential_checks_custom_layers():
    class Forgetful(Layer):
        def __init__(self):
            pass

    with pytest.raises(TypeError, match=r"call super\(\).__init__\(\)"):
        Sequential([Forgetful(), Dense(2)], input_dim=3, backend="numpy")
    with pytest.raises(ValueError, match=r"last layer's activation is 'sigmoid'"):
        Sequential([Dense(2, "sigmoid"), Dropout(0.1)], input_dim=3, backend="numpy",
                   loss="binary_cross_entropy")


# ------------------------------------------------------------ backend agreement
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_toolbox_model_one_step_agrees(native, dtype):
    X, y = make_data("softmax_cross_entropy", n=64)
    a, b = toolbox_model("numpy", dtype), toolbox_model(native, dtype)
    np.testing.assert_array_equal(a._params, b._params)
    for m in (a, b):
        m.fit(X, y, epochs=1, batch_size=None, shuffle=False, learning_rate=0.1)
    assert_close(b._grads, a._grads, "backend_one_step", dtype)
    assert_close(b._params, a._params, "backend_one_step", dtype)
    for sa, sb in zip(a.get_weights(), b.get_weights()):
        assert_close(sb, sa, "backend_one_step", dtype)


def test_toolbox_model_five_epochs_agree(native):
    X, y = make_data("softmax_cross_entropy", n=100)
    a, b = toolbox_model("numpy"), toolbox_model(native)
    histories = [m.fit(X, y, epochs=5, batch_size=16, learning_rate=0.05) for m in (a, b)]
    assert_close(b._params, a._params, "backend_five_epochs", "float64")
    assert_close(histories[1].history["loss"], histories[0].history["loss"],
                 "backend_five_epochs", "float64")
    assert_close(b.predict_proba(X), a.predict_proba(X), "backend_five_epochs", "float64")


def test_toolbox_inference_is_thread_safe_and_leaves_training_state(backend_name):
    X, y = make_data("softmax_cross_entropy", n=40)
    m = toolbox_model(backend_name)
    m.fit(X, y, epochs=1, batch_size=None)
    state = [w.copy() for w in m.get_weights()]
    mask = m.layers[3]._mask.copy()
    first = m.predict_proba(X)
    np.testing.assert_array_equal(m.predict_proba(X), first)   # no dropout, no stat updates
    for before, after in zip(state, m.get_weights()):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(m.layers[3]._mask, mask)


def test_training_forwards_compute_in_the_layers_own_workspace():
    m = Sequential([Dense(3, "tanh"), Dense(2)], input_dim=4, backend="numpy", seed=0)
    X, Y = m.prepare_data(*make_data("softmax_cross_entropy", n=5, n_features=4, k=2))
    workspaces = [layer.training_workspace for layer in m.layers]
    assert all(isinstance(w, Workspace) for w in workspaces) and workspaces[0] is not workspaces[1]
    _, logits = m.loss_and_grad(X, Y)
    assert logits is workspaces[1].get("z", (5, 2), np.float32)   # the last layer's result
    assert m.layers[0].training_workspace is workspaces[0]
