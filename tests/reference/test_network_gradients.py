"""A whole 4-layer network's parameter gradients (NumPy backend) against centered finite
differences of its mean loss, for every loss and mixed activations."""
import numpy as np
import pytest

import fastmlp
from fastmlp.nn.losses import LOSSES, get_loss
from helpers import assert_gradient_close, make_data, numeric_gradient

MIXES = [("tanh", "elu", "sigmoid"), ("leaky_relu", "relu", "tanh")]


@pytest.mark.parametrize("mix", MIXES, ids="-".join)
@pytest.mark.parametrize("loss", LOSSES)
def test_parameter_gradients_match_finite_differences(loss, mix):
    rng = np.random.default_rng(4)
    layers = [fastmlp.Dense(units, act) for units, act in zip((6, 5, 4), mix)]
    model = fastmlp.Sequential(layers + [fastmlp.Dense(3)], input_dim=4, loss=loss,
                               backend="numpy", dtype="float64", seed=5)
    # non-zero biases, so their gradients flow through every activation's curved part
    model.set_weights([w + rng.normal(scale=0.3, size=w.shape) for w in model.get_weights()])
    X, Y = model.prepare_data(*make_data(loss, n=7, k=3, seed=6))
    model.loss_and_grad(X, Y)
    with model.writing_params():          # perturbed in place
        numeric = numeric_gradient(lambda: model.evaluate_arrays(X, Y)["loss"], model._params)
    assert_gradient_close(numeric, model._grads)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mix", MIXES, ids="-".join)
@pytest.mark.parametrize("loss", LOSSES)
def test_ordinary_training_raises_no_floating_point_flags(loss, mix, dtype):
    """Every NumPy path of a training step and of inference under np.seterr(all="raise")."""
    layers = [fastmlp.Dense(units, act) for units, act in zip((6, 5, 4), mix)]
    model = fastmlp.Sequential(layers + [fastmlp.Dense(3)], input_dim=4, loss=loss,
                               backend="numpy", dtype=dtype, seed=8)
    X, y = make_data(loss, n=20, k=3, seed=9)
    with np.errstate(all="raise"):
        loss_sum, _ = model.loss_and_grad(*model.prepare_data(X, y))
        with model.writing_params():
            fastmlp.Adam().step(model.backend, model._params, model._grads)
        model.evaluate(X, y)
        (model.predict_proba if get_loss(loss).classifier else model.predict)(X)
    assert np.isfinite(loss_sum)
