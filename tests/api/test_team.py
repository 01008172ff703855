"""The fused trainer's team (csrc/parallel.hpp, Teams): a run's first step forks per kernel,
the rest run in one parallel region whose threads share the kernels' work. The region count
does not grow with the steps; the bits are those of one thread at 1, 2, 3, 4, 8 and 16
threads (oversubscribed here, which correctness does not mind) for every kind of layer and
sparse input, with every kernel given the team (the grain override); a divergence and Ctrl-C
end the run on every thread together."""
import os

import numpy as np
import pytest

import fastmlp
from fastmlp import BatchNorm, Dense, Dropout, Maxout, Sequential
from fastmlp.optim.optimizers import SGD

from .test_interrupt_and_threads import interrupted_fit

THREADS = (1, 2, 3, 4, 8, 16)


@pytest.fixture(autouse=True)
def _native(native):
    """Every case here runs the native backend (skipped only if it cannot import)."""


@pytest.fixture()
def testing():
    from fastmlp.backends.native import testing
    return testing


@pytest.fixture()
def every_kernel_parallel(testing):
    """Every kernel as wide as the team, so small models take every team path."""
    testing.set_grain_override(1)
    yield
    testing.set_grain_override(0)


def _regions_of_one_epoch(testing, rows, threads):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(rows, 784)).astype(np.float32), rng.integers(0, 10, rows)
    model = Sequential([Dense(256, "relu"), Dense(10)], input_dim=784, seed=1)
    before = testing.parallel_regions()
    with fastmlp.threads(threads):
        model.fit(X, y, epochs=1, batch_size=128, optimizer="adam", verbose=0)
    return testing.parallel_regions() - before


def test_a_run_opens_one_region_for_all_steps_after_the_first(testing):
    eight, thirty_two = (_regions_of_one_epoch(testing, rows, 2) for rows in (1024, 4096))
    assert eight == thirty_two, f"8 steps: {eight} regions, 32 steps: {thirty_two}"
    assert 1 < eight < 30, eight          # the first step's kernels, then one region
    assert _regions_of_one_epoch(testing, 1024, 1) == 0


LAYERS = {
    "dense": lambda: [Dense(32, "relu"), Dense(16, "tanh"), Dense(3)],
    "batchnorm": lambda: [Dense(32), BatchNorm(), Dense(3)],
    "dropout": lambda: [Dense(32, "relu"), Dropout(0.3), Dense(3)],
    "maxout": lambda: [Maxout(12, pieces=3), Dense(3)],
    "penalty": lambda: [Dense(32, "relu", regularizer=fastmlp.L2(1e-3)), Dense(3)],
}


def _fit_at_every_count(build, X, y, **fit):
    results = {}
    for threads in THREADS:
        model = build()
        with fastmlp.threads(threads):
            model.fit(X, y, verbose=0, **fit)
        results[threads] = model.get_weights()
    for threads, weights in results.items():
        for a, b in zip(results[1], weights):
            np.testing.assert_array_equal(a, b, err_msg=f"{threads} threads")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_every_layer_gives_the_same_bits_on_every_team(kind, every_kernel_parallel, testing):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(300, 20)), rng.integers(0, 3, 300)
    build = lambda: Sequential(LAYERS[kind](), input_dim=20, seed=4)
    _fit_at_every_count(build, X, y, epochs=2, batch_size=64, optimizer="adam")
    with fastmlp.threads(3):
        build().fit(X, y, epochs=1, batch_size=64, verbose=0)
        assert testing.last_team_size() == 3


@pytest.mark.timeout(300)
def test_sparse_input_gives_the_same_bits_on_every_team(every_kernel_parallel):
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.random(300, 200, density=0.05, format="csr", random_state=0, dtype=np.float32)
    y = np.random.default_rng(0).integers(0, 2, 300)
    build = lambda: Sequential([Dense(16, "relu"), Dense(2)], input_dim=200, seed=0)
    _fit_at_every_count(build, X, y, epochs=2, batch_size=64, optimizer="adam")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("threads", (2, 3, 8))
def test_a_divergence_inside_the_team_stops_every_thread_at_its_step(threads, every_kernel_parallel):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(640, 20)), rng.integers(0, 3, 640)
    outcomes = {}
    for count in (1, threads):
        model = Sequential([Dense(32, "relu"), Dense(3)], input_dim=20, seed=5)
        with fastmlp.threads(count), pytest.raises(fastmlp.DivergenceError) as caught:
            model.fit(X, y, epochs=20, batch_size=64, optimizer=SGD(1e6), verbose=0)
        outcomes[count] = (str(caught.value), model.training_step, model.get_weights())
    (message, steps, weights), (message_t, steps_t, weights_t) = outcomes[1], outcomes[threads]
    assert steps > 1, "the divergence came at the first step, outside the team"
    assert (message_t, steps_t) == (message, steps)
    for a, b in zip(weights, weights_t):
        np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(120)
def test_ctrl_c_stops_a_team_at_a_step_boundary():
    report, sent = interrupted_fit("native", "fused", dict(os.environ, OMP_NUM_THREADS="4"))
    assert report["caught"] is not None and report["caught"] - sent < 0.5
    assert report["steps"] > 0 and report["iterations"] == report["steps"]
    assert report["finite"] and report["same"], "the weights differ from a run of exactly training_step steps"


@pytest.mark.timeout(300)
def test_the_k_split_inside_the_team_gives_the_same_bits(every_kernel_parallel, testing):
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(1200, 20)), rng.normal(size=(1200, 10))
    build = lambda: Sequential([Dense(10)], input_dim=20, loss="mse", seed=7)
    _fit_at_every_count(build, X, y, epochs=1, batch_size=400, optimizer="adam")
    with fastmlp.threads(4):
        build().fit(X, y, epochs=1, batch_size=400, verbose=0)
        assert testing.last_gemm_k_groups() > 1, "dW (10 x 20, K = 400) was not split over K"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("level", ["auto", "amx"])
def test_a_bfloat16_model_gives_the_same_bits_on_every_team(level, every_kernel_parallel):
    """precision="bfloat16": the team's threads share its products (the bfloat16 driver
    work-shares in a team as the float32 one does), with the bits of one thread; on the
    amx level too (emulated tiles where the CPU has no AMX)."""
    from helpers import emulate_amx_where_the_cpu_lacks_it
    if level == "amx" and not emulate_amx_where_the_cpu_lacks_it():
        pytest.skip(f"ISA level 'amx' not usable here (usable: {fastmlp.backend_info()['usable_isas']})")
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(300, 40)).astype(np.float32), rng.integers(0, 3, 300)
    build = lambda: Sequential([Dense(48, "relu"), Dropout(0.3), Dense(3)], input_dim=40, seed=4,
                               precision="bfloat16")
    previous = fastmlp.backend_info()["isa"]
    fastmlp.set_isa(level)
    try:
        _fit_at_every_count(build, X, y, epochs=2, batch_size=64, optimizer="adam")
    finally:
        fastmlp.set_isa(previous)
