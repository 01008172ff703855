"""The fused trainer runs each input gradient's GEMM with the act_backward of the layer below
in its epilogue (csrc/train/program.hpp fuse_act_backward, ops.hpp gemm_act_backward): one
pass instead of two, the same bits as the per-op loop (gemm, then act_backward) for every
activation, dtype and team. _testing.fused_act_backwards counts the fused GEMMs (a team's
once), so these tests fail if the fusion silently stops happening."""
import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Dropout, Sequential
from fastmlp.nn.activations import ACTIVATIONS
from fastmlp.train import loop as training

ROWS, BATCH = 50, 16                       # 4 steps per epoch, the last of 2 rows
STEPS = 2 * -(-ROWS // BATCH)              # two epochs
HIDDEN = sorted(a for a in ACTIVATIONS if a != "linear")   # each has an act_backward


@pytest.fixture(autouse=True)
def _native(native):
    """Every case here runs the native backend (skipped only if it cannot import)."""


@pytest.fixture()
def testing():
    from fastmlp.backends.native import testing
    return testing


def data(dtype):
    rng = np.random.default_rng(3)
    return rng.normal(size=(ROWS, 6)).astype(dtype), rng.integers(0, 3, ROWS)


def fit(build, X, y, testing, fused=True):
    """(weights, fused GEMMs counted) of a two-epoch Adam fit."""
    model, before = build(), testing.fused_act_backwards()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "_FUSED", fused)
        model.fit(X, y, epochs=2, batch_size=BATCH, optimizer="adam", verbose=0)
    return model.get_weights(), testing.fused_act_backwards() - before


def assert_same_weights(got, want, label):
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b, err_msg=label)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", HIDDEN)
def test_every_activation_is_fused_with_the_per_op_bits(act, dtype, testing):
    X, y = data(dtype)
    build = lambda: Sequential([Dense(9, act), Dense(5, "relu"), Dense(3)], input_dim=6, dtype=dtype, seed=1)
    weights, fused = fit(build, X, y, testing)
    assert fused == 2 * STEPS, f"{act}: {fused} fused GEMMs in {STEPS} steps of two hidden layers"
    per_op, none = fit(build, X, y, testing, fused=False)
    assert none == 0, "the per-op loop ran a fused GEMM"
    assert_same_weights(weights, per_op, f"{act} {dtype}")


@pytest.mark.parametrize("threads", (1, 2, 4))
def test_a_team_fuses_with_the_bits_of_one_thread(threads, testing):
    """Every kernel as wide as the team (the grain override): the fused GEMM runs on the
    team's threads, counted once per call."""
    X, y = data("float64")
    build = lambda: Sequential([Dense(33, "tanh"), Dense(17, "relu"), Dense(3)], input_dim=6, seed=2)
    testing.set_grain_override(1)
    try:
        one, _ = fit(build, X, y, testing)
        with fastmlp.threads(threads):
            weights, fused = fit(build, X, y, testing)
    finally:
        testing.set_grain_override(0)
    assert fused == 2 * STEPS
    assert_same_weights(weights, one, f"{threads} threads")


def test_no_fusion_where_another_op_comes_between(testing):
    """Dropout's backward between the GEMM and the act_backward: nothing to fuse."""
    X, y = data("float32")
    build = lambda: Sequential([Dense(9, "relu"), Dropout(0.25), Dense(3)], input_dim=6, seed=3)
    weights, fused = fit(build, X, y, testing)
    assert fused == 0
    assert_same_weights(weights, fit(build, X, y, testing, fused=False)[0], "dropout")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", HIDDEN)
def test_a_layer_keeps_its_activations_alone_where_its_derivative_allows(act, dtype, testing):
    """relu, sigmoid and tanh (whose derivative comes out the same from a = act(z)) keep a
    alone: their z becomes a (program.hpp keep_outputs_only), with the per-op loop's bits;
    the other activations keep z. Dropout after the layer reads a, not z."""
    X, y = data(dtype)
    build = lambda: Sequential([Dense(9, act), Dropout(0.25), Dense(5, act), Dense(3)], input_dim=6,
                               dtype=dtype, seed=4)
    before = testing.outputs_only_layers()
    weights, _ = fit(build, X, y, testing)
    kept = testing.outputs_only_layers() - before
    assert kept == (2 if act in ("relu", "sigmoid", "tanh") else 0), f"{act}: {kept} layers"
    assert_same_weights(weights, fit(build, X, y, testing, fused=False)[0], f"{act} {dtype}")
