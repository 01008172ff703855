"""An absurd epoch count is refused before any work, naming epochs, the maximum and the fix."""
import re

import numpy as np
import pytest

from fastmlp import Dense, MultiTask, Sequential
from fastmlp.train.loop import MAX_EPOCHS

X = np.array([[0.0, 1.0], [1.0, 0.0]])
Y = np.array([0, 1])


def _model():
    return Sequential([Dense(3, "relu"), Dense(2)], input_dim=2, backend="numpy", seed=0)


@pytest.mark.parametrize("epochs", [MAX_EPOCHS + 1, 10 ** 20])
def test_fit_refuses_absurd_epochs(epochs):
    model = _model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=re.escape(f"epochs must be at most {MAX_EPOCHS:,}")) \
            as error:
        model.fit(X, Y, epochs=epochs)
    assert f"got {epochs:,}" in str(error.value) and "EarlyStopping" in str(error.value)
    assert model.history is None and model.training_step == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_multitask_refuses_absurd_epochs():
    model = MultiTask([Dense(3, "relu")], {"a": [Dense(2)]}, losses={"a": "softmax_cross_entropy"},
                      input_dim=2, backend="numpy", seed=0)
    with pytest.raises(ValueError, match="epochs must be at most"):
        model.fit(X, {"a": Y}, epochs=MAX_EPOCHS + 1)

