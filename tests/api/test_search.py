"""fastmlp.tools.search: distributions, coarse-to-fine random search (serial executor), the
default builder, the results table, retraining the best configuration, bad inputs.
The local process pool and Dask executors are in test_search_dask.py."""
import math
import os
import sys

import numpy as np
import pytest

from fastmlp import Dense, Sequential
from fastmlp.optim.optimizers import SGD, Adam
from fastmlp.tools.search import (Choice, IntUniform, LogUniform, MLPBuilder, SearchResult,
                            Uniform, random_search)


def synthetic(n=600, d=10, classes=3, seed=0):
    """Three classes split by linear scores: (train, dev), 400 and 200 rows. A 10-16-3 ReLU
    net trained with SGD for 10 epochs learns it for learning rates of about 0.1 to 3,
    stays near chance below 1e-3 and diverges above about 20."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ rng.normal(size=(d, classes))).argmax(axis=1)
    return (X[:400], y[:400]), (X[400:], y[400:])


TRAIN, DEV = synthetic()
SGD_SPACE = {"learning_rate": LogUniform(1e-5, 100.0), "optimizer": "sgd", "hidden": (16,)}


def search(space=SGD_SPACE, **kwargs):
    options = {"trials": 12, "rounds": 2, "epochs": 10, "executor": "serial", **kwargs}
    return random_search(space, TRAIN, DEV, **options)


def outcomes(result):
    """What must not depend on the executor: parameters, seeds and scores, in run order."""
    return [(t.round, t.index, t.params, t.seed, t.dev_error, t.dev_loss, t.failure)
            for t in result.trials]


# --------------------------------------------------------------------- distributions
def test_samples_stay_in_range_and_reach_every_value():
    rng = np.random.default_rng(0)
    for dist, scale in ((Uniform(-2.0, 3.0), float), (LogUniform(1e-4, 1e2), math.log10)):
        values = [dist.sample(rng) for _ in range(2000)]
        assert dist.low <= min(values) and max(values) <= dist.high
        # 2000 draws come within 1% of the range (in the sampling scale) of both ends.
        near = 0.01 * (scale(dist.high) - scale(dist.low))
        assert scale(min(values)) < scale(dist.low) + near
        assert scale(max(values)) > scale(dist.high) - near
    ints = [IntUniform(2, 4).sample(rng) for _ in range(300)]
    assert sorted(set(ints)) == [2, 3, 4] and all(type(v) is int for v in ints)
    options = [(64,), (128, 64), "x"]
    assert {Choice(options).sample(rng) for _ in range(100)} == {(64,), (128, 64), "x"}


def _chi2_by_decade(values, low_exp, high_exp):
    """Pearson's chi-squared statistic of the values' counts per decade against equal
    counts (what log-uniform sampling gives)."""
    counts = np.histogram(np.log10(values), bins=high_exp - low_exp,
                          range=(low_exp, high_exp))[0]
    expected = len(values) / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def test_log_uniform_gives_every_decade_the_same_share():
    # 8 decades, 7 degrees of freedom: the 0.1% critical value of chi^2(7) is 24.32.
    rng = np.random.default_rng(1)
    log_values = [LogUniform(1e-6, 1e2).sample(rng) for _ in range(8000)]
    assert _chi2_by_decade(log_values, -6, 2) < 24.32
    # The same test rejects plain uniform sampling on the same range: it has power.
    plain = [Uniform(1e-6, 1e2).sample(rng) for _ in range(8000)]
    assert _chi2_by_decade(plain, -6, 2) > 1000


@pytest.mark.parametrize("make, error, message", [
    (lambda: Uniform(1.0, 1.0), ValueError, "low < high; got low=1.0, high=1.0"),
    (lambda: Uniform(2.0, 1.0), ValueError, "low < high"),
    (lambda: Uniform(float("nan"), 1.0), ValueError, "Uniform low must be a finite number"),
    (lambda: Uniform(0.0, float("inf")), ValueError, "Uniform high"),
    (lambda: Uniform("0", 1.0), TypeError, "Uniform low"),
    (lambda: LogUniform(0.0, 1.0), ValueError, "LogUniform low must be a positive"),
    (lambda: LogUniform(1e-3, -1.0), ValueError, "LogUniform high must be a positive"),
    (lambda: LogUniform(1.0, 1e-3), ValueError, "LogUniform needs low < high"),
    (lambda: IntUniform(3, 2), ValueError, "IntUniform needs low <= high; got low=3, high=2"),
    (lambda: IntUniform(1.5, 3), TypeError, "IntUniform low must be an integer"),
    (lambda: IntUniform(1, True), TypeError, "IntUniform high"),
    (lambda: Choice([]), ValueError, "Choice options must not be empty"),
    (lambda: Choice("relu"), TypeError, "Choice options must be a list or tuple"),
])
def test_bad_bounds_name_the_argument(make, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(")):
        make()


def test_narrowing_spans_the_values_widened_and_clipped():
    assert Uniform(0.0, 10.0).narrow([2.0, 3.0], 0.1) == Uniform(1.0, 4.0)
    assert Uniform(0.0, 10.0).narrow([0.0], 0.1) == Uniform(0.0, 1.0)        # clipped
    narrowed = LogUniform(1e-4, 1.0).narrow([1e-3, 1e-2], 0.1)               # 4 decades
    assert type(narrowed) is LogUniform
    assert narrowed.low == pytest.approx(1e-3 * 10 ** -0.4, rel=1e-12)
    assert narrowed.high == pytest.approx(1e-2 * 10 ** 0.4, rel=1e-12)
    assert LogUniform(1e-4, 1.0).narrow([1e-4, 1.0], 0.1) == LogUniform(1e-4, 1.0)
    assert IntUniform(0, 10).narrow([4], 0.1) == IntUniform(3, 5)
    assert IntUniform(1, 3).narrow([1, 1], 0.1) == IntUniform(1, 2)          # ceil(1.2) = 2
    assert Choice(["a", (1, 2), "c"]).narrow([(1, 2), "a", "a"], 0.1) == Choice(["a", (1, 2)])


# --------------------------------------------------------------------- the search
def test_search_finds_the_good_learning_rates_and_narrows_around_them():
    result = search()
    spaces = [space["learning_rate"] for space in result.spaces]
    rate = {t: t.params["learning_rate"] for t in result.trials}
    best = result.best
    assert 0.05 <= rate[best] <= 5 and best.dev_error < 0.15
    # The problem separates rates: tiny ones stay near chance, huge ones diverge.
    assert all(t.dev_error > 0.5 for t in result.trials if rate[t] < 1e-3)
    assert any(not t.ok for t in result.trials)
    assert all(rate[t] > 10 for t in result.trials if not t.ok)
    # Round 1 samples a range inside round 0's that holds the best trial, and does better.
    assert spaces[0].low <= spaces[1].low < spaces[1].high <= spaces[0].high
    assert spaces[1].high / spaces[1].low < 1e-3 * spaces[0].high / spaces[0].low
    assert spaces[1].low <= rate[best] <= spaces[1].high
    assert all(spaces[1].low <= rate[t] <= spaces[1].high for t in result.trials if t.round)
    errors = [[t.dev_error for t in result.trials if t.round == r] for r in (0, 1)]
    assert np.median(errors[1]) < np.median(errors[0])
    assert [t.params["optimizer"] for t in result.trials] == ["sgd"] * 24     # constants


def test_every_round_narrows_inside_the_last():
    space = {"learning_rate": LogUniform(1e-3, 3.0), "units": IntUniform(2, 40),
             "n_layers": IntUniform(1, 2), "activation": Choice(["relu", "tanh", "sigmoid"]),
             "batch_size": 64, "optimizer": "sgd"}
    result = search(space, trials=6, rounds=3, epochs=3, keep=0.5)
    for before, after in zip(result.spaces, result.spaces[1:]):
        for name in ("learning_rate", "units", "n_layers"):
            assert before[name].low <= after[name].low <= after[name].high \
                <= before[name].high
        assert set(after["activation"].options) <= set(before["activation"].options)
    final, best = result.spaces[-1], result.best.params
    assert all(final[name].low <= best[name] <= final[name].high
               for name in ("learning_rate", "units", "n_layers"))
    assert best["activation"] in final["activation"].options


def test_same_seed_same_results_and_another_seed_differs():
    small = {"trials": 4, "rounds": 2, "epochs": 2}
    assert outcomes(search(seed=7, **small)) == outcomes(search(seed=7, **small))
    assert outcomes(search(seed=8, **small)) != outcomes(search(seed=7, **small))


def test_trial_records_and_seeds():
    result = search(trials=3, rounds=2, epochs=2)
    assert [(t.round, t.index) for t in result.trials] == [(r, i) for r in (0, 1)
                                                          for i in range(3)]
    assert len({t.seed for t in result.trials}) == 6
    assert all(t.pid == os.getpid() and t.seconds > 0 and t.host for t in result.trials)
    with pytest.raises(AttributeError):
        result.trials[0].dev_error = 0.0                 # frozen records


def test_dev_loss_objective_ranks_by_loss():
    result = search(objective="dev_loss", trials=6, rounds=1, epochs=3)
    ranked = result.ranked()
    losses = [t.dev_loss for t in ranked if t.ok]
    assert losses == sorted(losses) and result.best is ranked[0]
    assert result.best.dev_loss == min(t.dev_loss for t in result.trials)


def test_best_model_retrains_the_best_trial_in_one_call():
    result = search(trials=6, rounds=2, epochs=5)
    model = result.best_model(*TRAIN)                  # same data, epochs and seed
    scores = model.evaluate(*DEV)
    assert 1.0 - scores["accuracy"] == result.best.dev_error
    assert scores["loss"] == result.best.dev_loss
    assert isinstance(model.optimizer, SGD)
    assert model.optimizer.learning_rate == result.best_params["learning_rate"]
    longer = result.best_model(*TRAIN, epochs=7, seed=1, shuffle=False)
    batches = math.ceil(len(TRAIN[0]) / 32)
    assert longer.training_step == 7 * batches and longer.seed == 1


def test_default_builder_reads_every_documented_parameter():
    builder = MLPBuilder.for_data(*TRAIN, DEV[1])
    assert builder == MLPBuilder(input_dim=10, target_columns=1, n_classes=3)
    model, fit_kwargs = builder({"hidden": (8, 4), "activation": "tanh", "dropout": 0.25,
                                 "l2": 0.5, "optimizer": "adam", "learning_rate": 0.02,
                                 "beta_1": 0.8, "beta_2": 0.99, "batch_size": 16,
                                 "epochs": 3}, seed=5)
    kinds = [(type(layer).__name__, getattr(layer, "units", None)) for layer in model.layers]
    assert kinds == [("Dense", 8), ("Dropout", None), ("Dense", 4), ("Dropout", None),
                     ("Dense", 3)]
    assert model.layers[0].activation == "tanh" and model.layers[1].rate == 0.25
    assert (model.regularizer.l1, model.regularizer.l2, model.seed) == (0.0, 0.5, 5)
    optimizer = fit_kwargs.pop("optimizer")
    assert isinstance(optimizer, Adam)
    assert (optimizer.learning_rate, optimizer.beta_1, optimizer.beta_2) == (0.02, 0.8, 0.99)
    assert fit_kwargs == {"batch_size": 16, "epochs": 3}
    model, fit_kwargs = builder({"n_layers": 3, "units": 5}, seed=0)
    assert [layer.units for layer in model.layers] == [5, 5, 5, 3]
    assert model.regularizer is None and "epochs" not in fit_kwargs
    assert model.layers[0].activation == "relu" and fit_kwargs["batch_size"] == 32
    with pytest.raises(TypeError, match=r"hidden must be a tuple of layer widths, .* got 64"):
        builder({"hidden": 64}, seed=0)


def test_default_builder_sizes_outputs_from_the_targets():
    X, y = TRAIN
    one_hot = np.eye(3)[y]
    assert MLPBuilder.for_data(X, one_hot).n_outputs("softmax_cross_entropy") == 3
    regression = MLPBuilder.for_data(X, X[:, 0])
    assert regression.n_outputs("mse") == 1 and regression.n_classes is None
    with pytest.raises(ValueError, match=r"softmax_cross_entropy needs class labels of shape \(n,\)"):
        regression.n_outputs("softmax_cross_entropy")


def test_regression_search_scores_one_minus_r2():
    X, y = TRAIN
    target = X[:, :2].sum(axis=1)
    dev_target = DEV[0][:, :2].sum(axis=1)
    result = random_search({"learning_rate": LogUniform(1e-3, 1e-1), "loss": "mse"},
                           (X, target), (DEV[0], dev_target), trials=2, epochs=3,
                           executor="serial")
    model = result.best_model(X, target, epochs=3)
    r2 = model.evaluate(DEV[0], dev_target)["r2"]
    assert result.best.dev_error == 1.0 - r2 and model.n_outputs == 1


def build_small(params, seed):
    """A custom builder: a module-level function, so a process pool can pickle it."""
    model = Sequential([Dense(params["width"], "relu"), Dense(3)], input_dim=10, seed=seed)
    return model, {"learning_rate": params["lr"], "optimizer": "sgd", "epochs": 2}


def test_custom_builder_and_its_fit_arguments():
    result = search({"width": Choice([4, 8]), "lr": LogUniform(0.1, 1.0)},
                    build=build_small, trials=3, rounds=1, epochs=9)
    assert result.build is build_small
    model = result.best_model(*TRAIN)                  # its fit kwargs say 2 epochs
    assert model.training_step == 2 * math.ceil(len(TRAIN[0]) / 32)
    assert model.layers[0].units == result.best_params["width"]


def test_when_every_trial_diverges_there_is_no_best():
    result = search({"learning_rate": LogUniform(1e3, 1e4), "optimizer": "sgd"},
                    trials=2, rounds=2, epochs=2)
    assert not any(t.ok for t in result.trials)
    assert all(t.dev_error == math.inf and "diverged" in t.failure for t in result.trials)
    assert result.spaces[1] == result.spaces[0]        # nothing to narrow toward
    with pytest.raises(ValueError, match="no trial succeeded"):
        result.best
    assert "best: none (every trial diverged)" in str(result)


def test_table_lists_trials_best_first():
    result = search(trials=4, rounds=2, epochs=2)
    lines = result.to_table().splitlines()
    assert lines[0].split() == ["round", "trial", "dev_error", "dev_loss", "status", "seconds",
                                "pid", "host", "learning_rate", "optimizer", "hidden"]
    assert set(lines[1]) == {"-"} and len(lines) == 2 + 8
    best = result.best
    assert lines[2].split()[:3] == [str(best.round), str(best.index), f"{best.dev_error:.4g}"]
    assert len(result.to_table(top=3).splitlines()) == 5
    text = str(result)
    assert text.startswith("random search: 8 trials in 2 rounds, objective dev_error")
    assert f"best: dev_error {best.dev_error:.4g} with {best.params}" in text
    assert repr(result) == "SearchResult(8 trials, 2 rounds, objective='dev_error', seed=0)"
    assert isinstance(result, SearchResult)


# --------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, error, message", [
    ({"space": {"learnin_rate": LogUniform(1e-3, 1.0)}}, ValueError,
     r"unknown parameter names \['learnin_rate'\]"),
    ({"space": {}}, ValueError, "space is empty"),
    ({"space": [("learning_rate", 0.1)]}, TypeError, "space must be a dict"),
    ({"space": {"hidden": [(8,), (16,)]}}, TypeError, r"space\['hidden'\] is a list; write Choice"),
    ({"space": {1: 0.1}}, TypeError, "space keys must be parameter names"),
    ({"space": {"hidden": (8,), "units": IntUniform(2, 9)}}, ValueError,
     "both 'hidden' and 'n_layers'/'units'"),
    ({"trials": 0}, ValueError, "trials must be an integer >= 1; got 0"),
    ({"rounds": 0}, ValueError, "rounds must be an integer >= 1; got 0"),
    ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
    ({"keep": 0.0}, ValueError, "keep must be a positive finite number"),
    ({"keep": 1.5}, ValueError, r"keep must be in \(0, 1\]; got 1.5"),
    ({"widen": -0.1}, ValueError, "widen must be a positive"),
    ({"objective": "accuracy"}, ValueError, "unknown objective 'accuracy'"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
    ({"executor": 42}, TypeError, "executor must be None .* got int"),
    ({"executor": "threads"}, ValueError, "executor must be None, 'serial' or a Dask"),
    ({"n_jobs": 2}, ValueError, "n_jobs=2 sizes the local process pool"),
    ({"executor": None, "n_jobs": 0}, ValueError, "n_jobs must be an integer >= 1"),
    ({"build": "mlp"}, TypeError, "build must be None .* or a callable"),
    ({"train": (TRAIN[0],)}, TypeError, r"train must be a pair \(X, y\)"),
    ({"dev": (DEV[0][:, :5], DEV[1])}, ValueError, r"dev must have train's features .* \(200, 5\)"),
    ({"train": (TRAIN[0], TRAIN[1][:10])}, ValueError, "train.0. and train.1. must have the same"),
    ({"train": (TRAIN[0][0], TRAIN[1])}, ValueError, r"train\[0\] must have shape"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    options = {"space": SGD_SPACE, "train": TRAIN, "dev": DEV, "trials": 2, "epochs": 1,
               "executor": "serial", **kwargs}
    with pytest.raises(error, match=message):
        random_search(options.pop("space"), options.pop("train"), options.pop("dev"),
                      **options)


def test_bad_values_inside_a_trial_stop_the_search():
    with pytest.raises(ValueError, match=r"\['beta_1'\] do not apply to optimizer 'sgd'"):
        search({"optimizer": "sgd", "beta_1": Uniform(0.8, 0.9)}, trials=1, rounds=1)
    with pytest.raises(ValueError, match="rate must satisfy 0 <= rate < 1"):
        search({"dropout": Uniform(1.0, 2.0)}, trials=1, rounds=1)
    with pytest.raises(TypeError, match="must return a Sequential or a pair"):
        search({"x": 1}, build=lambda params, seed: "model", trials=1, rounds=1)


def test_text_labels_search_like_their_indices_and_give_models_every_class():
    names = np.array(["ant", "bee", "cat"])
    text_train, text_dev = (TRAIN[0], names[TRAIN[1]]), (DEV[0], names[DEV[1]])
    builder = MLPBuilder.for_data(text_train[0], text_train[1], text_dev[1])
    assert (builder.n_classes, builder.text_classes) == (3, ("ant", "bee", "cat"))
    options = {"trials": 3, "rounds": 1, "epochs": 3, "executor": "serial"}
    by_text = random_search(SGD_SPACE, text_train, text_dev, **options)
    by_index = random_search(SGD_SPACE, TRAIN, DEV, **options)
    assert [t.dev_error for t in by_text.trials] == [t.dev_error for t in by_index.trials]
    model, _ = builder({}, seed=0)          # a class the training labels lack stays known
    model.fit(TRAIN[0][:10], names[np.zeros(10, int)], epochs=1)
    assert list(model.classes_) == ["ant", "bee", "cat"]


def test_progress_is_a_line_per_round_on_a_terminal_and_quiet_elsewhere(capsys, monkeypatch):
    search(trials=2, rounds=2, epochs=1)                       # "auto", pytest's capture
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    result = search(trials=2, rounds=2, epochs=1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["round 1/2", "round 2/2"]
    best = result.ranked()[0]
    assert lines[-1].endswith(f"best so far dev_error {best.dev_error:.4g} with "
                              f"{dict(best.params)}")
    search(trials=2, rounds=1, epochs=1, verbose=0)
    assert capsys.readouterr().err == ""
