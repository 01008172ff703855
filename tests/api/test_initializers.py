"""Initializer statistics on a 10^6-weight layer (fan_in 800, fan_out 1250), and defaults."""
import math

import numpy as np
import pytest

from fastmlp import Dense, Sequential
from fastmlp.nn.initializers import INITIALIZERS
from helpers import assert_close
from tolerances import TOLERANCES

FAN_IN, FAN_OUT = 800, 1250

# name -> (distribution, sd or limit) written from docs/conventions.md, independently of the code
EXPECTED = {
    "lecun_normal": ("normal", math.sqrt(1 / FAN_IN)),
    "lecun_uniform": ("uniform", math.sqrt(3 / FAN_IN)),
    "glorot_normal": ("normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "glorot_uniform": ("uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "he_normal": ("normal", math.sqrt(2 / FAN_IN)),
    "he_uniform": ("uniform", math.sqrt(6 / FAN_IN)),
    "normal": ("normal", 0.01),
}


def weights(init: str, dtype: str) -> np.ndarray:
    m = Sequential([Dense(FAN_OUT, "relu", init=init), Dense(2)], input_dim=FAN_IN,
                   backend="numpy", dtype=dtype, seed=11)
    assert not m.layers[0].b.any()
    return m.layers[0].W


def test_every_initializer_is_covered():
    assert set(EXPECTED) | {"zeros"} == set(INITIALIZERS)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("init", sorted(EXPECTED))
def test_statistics(init, dtype):
    W = weights(init, dtype).astype(np.float64)
    distribution, scale = EXPECTED[init]
    sd = scale if distribution == "normal" else scale / math.sqrt(3)
    assert_close(W.std(), sd, "sampling", dtype)
    assert abs(W.mean()) / sd <= TOLERANCES["sampling"][dtype]
    largest = np.abs(W).max()
    if distribution == "uniform":
        assert largest <= scale and largest >= scale * (1 - 1e-4)
    else:                                                      # not truncated
        assert largest > 4 * sd


def test_zeros():
    assert not weights("zeros", "float32").any()


@pytest.mark.parametrize("activation, default", [
    ("relu", "he_normal"), ("leaky_relu", "he_normal"), ("elu", "he_normal"),
    ("tanh", "glorot_uniform"), ("sigmoid", "glorot_uniform"), (None, "glorot_uniform"),
    ("linear", "glorot_uniform"),
])
def test_defaults_per_activation(activation, default):
    assert Dense(3, activation).init == default
