"""fastmlp.gradient_check: passes every built-in layer, activation, loss and regularizer
("ok") and flags a layer with a wrong derivative ("bug")."""
import dataclasses

import numpy as np
import pytest

import fastmlp
from fastmlp import (L1, L1L2, L2, BatchNorm, Dense, Dropout, Layer, Maxout, Normalization,
                     Sequential, gradient_check)
from fastmlp.nn.activations import ACTIVATIONS, ELU, LeakyReLU
from fastmlp.nn.losses import LOSSES
from helpers import make_data
from layer_cases import EXAMPLES, stack


class WrongCube(Layer):
    """y = x**3 with the derivative 2 x**2 instead of 3 x**2 (test-only bug)."""

    def forward(self, backend, x, workspace, training):
        if training:
            self._x = x
        return x ** 3

    def backward(self, backend, dy, need_dx):
        return dy * 2 * self._x ** 2 if need_dx else None


def check(layers, loss="softmax_cross_entropy", backend="numpy", seed=0, **kwargs):
    model = Sequential(layers, input_dim=4, loss=loss, backend=backend, seed=seed, **kwargs)
    rng = np.random.default_rng(seed)
    # nonzero biases, so gradients flow through every activation's curved part
    model.set_weights([w + rng.normal(scale=0.3, size=w.shape) if i % 2 else w
                       for i, w in enumerate(model.get_weights())])
    X, y = make_data(loss, n=7, k=3, seed=seed + 1)
    return gradient_check(model, X, y)


def test_a_wrong_derivative_is_a_bug():
    report = check([Dense(5, "tanh"), WrongCube(), Dense(3)])
    assert report.verdict == "bug" and report.overall > 1e-3
    assert report.per_param["dense_0.W"] > 1e-3                 # below the bad layer
    assert report.per_param["dense_2.W"] <= 1e-7                # above it: right


@pytest.mark.parametrize("activation", ACTIVATIONS + (LeakyReLU(0.3), ELU(0.7)))
@pytest.mark.parametrize("loss", LOSSES)
def test_every_activation_and_loss_passes(loss, activation):
    report = check([Dense(6, activation), Dense(5, "tanh"), Dense(3)], loss=loss)
    assert report.verdict == "ok", str(report)


@pytest.mark.parametrize("regularizer", [L1(0.5), L2(2.0), L1L2(l1=0.3, l2=1.0),
                                         L2(0.5, scale="batch")], ids=repr)
def test_regularized_models_pass(regularizer):
    report = check([Dense(6, "tanh"), Dense(3, regularizer=L2(1.0))], regularizer=regularizer)
    assert report.verdict == "ok", str(report)


def _all_layers():
    return [Normalization(), Dense(6, "elu"), BatchNorm(momentum=0.5), Dropout(0.2),
            Maxout(4, pieces=2), Dense(3)]


@pytest.mark.parametrize("layers", [*EXAMPLES, "all"])
def test_every_built_in_layer_passes(layers):
    """Each example of the layer table (tests/layer_cases.py) in its stack, and all."""
    report = check(_all_layers() if layers == "all" else stack(EXAMPLES[layers]()))
    assert report.verdict == "ok", str(report)


def test_dropout_check_uses_one_mask_and_the_model_is_untouched():
    X, y = make_data("softmax_cross_entropy", n=7, k=3)
    model = Sequential([Dense(6, "tanh"), Dropout(0.5), BatchNorm(), Dense(3)], input_dim=4,
                       backend="numpy", seed=0)
    model.fit(X, y, epochs=2, batch_size=3)
    before = model.get_weights()
    step = model.training_step
    report = gradient_check(model, X, y)
    assert report.verdict == "ok", str(report)
    assert model.training_step == step and model._params.dtype == np.float32
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_report_is_frozen_and_readable():
    report = check([Dense(4, "tanh"), Dense(3)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.verdict = "bug"
    assert list(report.per_param) == ["dense_0.W", "dense_0.b", "dense_1.W", "dense_1.b"]
    text = str(report)
    assert text.startswith("gradient check") and "dense_1.b" in text and ": ok" in text
    assert fastmlp.tools.gradcheck.verdict(1e-7) == "ok"
    assert fastmlp.tools.gradcheck.verdict(1e-3) == "suspect"
    assert fastmlp.tools.gradcheck.verdict(1.1e-3) == "bug"
    assert fastmlp.tools.gradcheck.verdict(float("nan")) == "bug"


@pytest.mark.parametrize("model", [object(), "model"])
def test_gradient_check_names_what_it_checks(model):
    with pytest.raises(TypeError, match="gradient_check checks a fastmlp.Sequential; got"):
        gradient_check(model, np.zeros((2, 3)), np.zeros(2, int))


def test_gradient_check_refuses_a_multitask_with_the_way_to_check_it():
    from fastmlp import MultiTask
    model = MultiTask([Dense(3, "relu")], {"a": [Dense(2)], "b": [Dense(1)]},
                      losses={"a": "softmax_cross_entropy", "b": "mse"}, input_dim=4,
                      backend="numpy", seed=0)
    with pytest.raises(TypeError, match="MultiTask's heads share its trunk"):
        gradient_check(model, np.zeros((2, 4)), {"a": [0, 1], "b": [0.0, 1.0]})
