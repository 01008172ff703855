"""One SGD step of a 2-2-1 network worked out by hand (NumPy backend, float64).

Network: x (2 inputs) -> Dense(2, sigmoid) -> Dense(1, linear), loss MSE, lr 0.1.

    x  = [1, 2],  y = 1
    W1 = [[0.5, -0.25], [1.0, -0.5]],  b1 = [0, 0]
    W2 = [[1.0, 2.0]],                 b2 = [0.5]

Forward:
    z1 = W1 x + b1 = [0.5 - 0.5, 1.0 - 1.0] = [0, 0]
    a1 = sigmoid(z1) = [0.5, 0.5]
    z2 = W2 a1 + b2 = 0.5 + 1.0 + 0.5 = 2
    loss = (z2 - y)^2 = 1

Backward (m = 1, k = 1):
    dz2 = 2 (z2 - y) = 2
    dW2 = dz2 a1 = [1, 1],             db2 = 2
    da1 = dz2 W2 = [2, 4]
    dz1 = da1 * sigmoid'(0) = da1 * 0.25 = [0.5, 1]
    dW1 = dz1^T x = [[0.5, 1], [1, 2]], db1 = [0.5, 1]

Update p -= 0.1 g:
    W1 = [[0.45, -0.35], [0.9, -0.7]],  b1 = [-0.05, -0.1]
    W2 = [[0.9, 1.9]],                  b2 = [0.3]

With the sample given twice the mean gradient, and so the step, is the same.
"""
import numpy as np
import pytest

import fastmlp
from helpers import assert_close

START = [np.array([[0.5, -0.25], [1.0, -0.5]]), np.array([0.0, 0.0]),
         np.array([[1.0, 2.0]]), np.array([0.5])]
AFTER = [np.array([[0.45, -0.35], [0.9, -0.7]]), np.array([-0.05, -0.1]),
         np.array([[0.9, 1.9]]), np.array([0.3])]
GRADS = [[[0.5, 1.0], [1.0, 2.0]], [0.5, 1.0], [[1.0, 1.0]], [2.0]]


@pytest.mark.parametrize("copies", [1, 2])
def test_one_sgd_step_by_hand(copies):
    model = fastmlp.Sequential([fastmlp.Dense(2, "sigmoid"), fastmlp.Dense(1)], input_dim=2,
                               loss="mse", backend="numpy", dtype="float64", seed=0)
    model.set_weights(START)
    X = [[1.0, 2.0]] * copies
    y = [1.0] * copies
    assert model.predict(X)[0] == 2.0
    history = model.fit(X, y, epochs=1, batch_size=None, learning_rate=0.1, shuffle=False)
    assert history.history["loss"] == [1.0]
    expected_grads = np.concatenate([np.ravel(g) for g in GRADS])
    np.testing.assert_array_equal(model._grads, expected_grads)
    for got, expected in zip(model.get_weights(), AFTER):
        assert_close(got, expected, "hand_worked", "float64")
