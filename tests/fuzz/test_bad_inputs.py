"""Hypothesis-generated bad inputs to every public entry point: model and layer
constructors, fit / predict / predict_proba / evaluate / score / set_weights, optimizers
and schedules, fastmlp.load (random and mutated files), the scikit-learn estimators,
train_dev_test_split, diagnose, the search distributions, MultiTask and the command line.

Each generated input is a :class:`BadCall`: a call that must fail, the exceptions its
contract allows (ValueError or TypeError; ModelFileError is a ValueError; OSError for a
path that cannot be opened; scikit-learn's InvalidParameterError is both) and the
argument its message must name. A crash would end the run, a hang fails on pytest's
timeout, any other exception fails the test. The command line (fastmlp.cli.main, run in
process) must return 1 or exit with 2, with a message on stderr, for every argument list.

``CASES`` maps each entry point to its strategy; the tests below run each with a fixed,
deterministic budget (derandomize=True, no example database), and scripts/fuzz_soak.py
runs the same strategies with a much larger one.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import math
import re
import subprocess
import sys
from typing import Callable, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp import (BatchNorm, Choice, Dense, Dropout, IntUniform, LogUniform, MultiTask,
                     Normalization, Sequential, Uniform, cli, optimizers, schedules)
from fastmlp.model.modelfile import ModelFileError
from fastmlp.nn.layers import LAYERS as BUILT_IN
from helpers import either, int_at_least, is_int, is_none, one_of_names, real_in
from layer_cases import CASES as LAYER_CASES

FUZZ_EXAMPLES: "collections.Counter[str]" = collections.Counter()   # inputs run, by entry point
N_FEATURES = 4
LOSS_OUTPUTS = {"softmax_cross_entropy": 3, "binary_cross_entropy": 2, "mse": 2}


@dataclasses.dataclass
class BadCall:
    """``call()`` must raise one of ``allowed`` with ``names`` (a regex) in the message."""
    entry: str
    call: Callable[[], object]
    names: str
    value: object = None                             # the bad input, shown when a case fails
    allowed: Tuple[type, ...] = (ValueError, TypeError)

    def check(self) -> None:
        try:
            result = self.call()        # a warning is an error here too (filterwarnings)
        except self.allowed as exc:
            message = str(exc)
            assert re.search(self.names, message), (
                f"{self.entry}: {type(exc).__name__} does not name /{self.names}/: {message}")
            return
        raise AssertionError(f"{self.entry}: accepted the bad input (returned {type(result).__name__})")


def run_case(bad: BadCall) -> None:
    bad.check()
    FUZZ_EXAMPLES[bad.entry] += 1


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


def arg(name: str) -> str:
    """The regex of an argument's name as a word (``X`` not inside ``MAX``)."""
    return rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z])"


# =========================================================================================
# Junk values, and values that are invalid for one parameter
# =========================================================================================

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(),
    st.text(max_size=6), st.binary(max_size=6), st.complex_numbers(),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([np.nan, np.inf, -np.inf, np.float32(-1.0), np.int64(-3), np.bool_(True), object(),
                     np.zeros(2), "", "relu ", "NaN", b"\x00", (), {}]),
)


def invalid(valid: Callable[[object], bool], extra=()):
    """Junk (and ``extra`` values) for which ``valid`` is false."""
    base = JUNK if not extra else st.one_of(JUNK, st.sampled_from(list(extra)))
    return base.filter(lambda v: not _safe(valid, v))


def _safe(pred, v) -> bool:
    try:
        return bool(pred(v))
    except Exception:
        return False


def _is_float_dtype(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        return np.dtype(v).name in ("float32", "float64")
    except Exception:
        return False


# =========================================================================================
# Constructors: Sequential, layers, optimizers, schedules, distributions, MultiTask
# =========================================================================================

def _model_kwargs():
    return dict(layers=[Dense(3, "relu"), Dense(2)], input_dim=N_FEATURES, loss="mse", backend="native",
                dtype="float32", seed=0, regularizer=None)


SEQUENTIAL_PARAMS = {
    "input_dim": invalid(int_at_least(1)),
    "loss": invalid(one_of_names(*LOSS_OUTPUTS)),
    "backend": invalid(one_of_names("native", "numpy")),
    "dtype": invalid(_is_float_dtype, extra=["float16", "int32", np.int8, "f8 ", "complex64", ",", "f4,("]),
    "seed": invalid(either(is_none, int_at_least(0)), extra=[-1, -2**70]),
    "regularizer": invalid(is_none, extra=["l2", 0.1]),
    "layers": invalid(lambda v: False, extra=[[], [Dense(2), "dense"], [None], (Dense(2), 3)]),
}


@st.composite
def sequential_calls(draw):
    name = draw(st.sampled_from(sorted(SEQUENTIAL_PARAMS)))
    kwargs = _model_kwargs()
    kwargs[name] = draw(SEQUENTIAL_PARAMS[name])
    layers = kwargs.pop("layers")
    return BadCall("Sequential", lambda: Sequential(layers, **kwargs), arg(name), (name, kwargs.get(name, layers)))


# layer: (valid keyword arguments, {argument: strategy of invalid values}), from the
# layer table (tests/layer_cases.py); a layer without arguments has nothing to refuse
LAYERS = {
    BUILT_IN[name]: ({key: argument.valid for key, argument in case.arguments.items()},
                     {key: invalid(argument.accepts, extra=argument.bad)
                      for key, argument in case.arguments.items()})
    for name, case in LAYER_CASES.items() if case.arguments
}


@st.composite
def layer_calls(draw):
    layer = draw(st.sampled_from(sorted(LAYERS, key=lambda c: c.__name__)))
    valid, bad = LAYERS[layer]
    name = draw(st.sampled_from(sorted(bad)))
    kwargs = dict(valid, **{name: draw(bad[name])})
    return BadCall(layer.__name__, lambda: layer(**kwargs), arg(name), kwargs)


_RATE = either(real_in(0, math.inf, low_open=True))
OPTIMIZERS = {
    optimizers.SGD: {"learning_rate": _RATE, "clipnorm": either(is_none, real_in(0, math.inf, low_open=True))},
    optimizers.Momentum: {"learning_rate": _RATE, "momentum": real_in(0, 1)},
    optimizers.Nesterov: {"learning_rate": _RATE, "momentum": real_in(0, 1)},
    optimizers.AdaGrad: {"learning_rate": _RATE, "eps": real_in(0, math.inf, low_open=True)},
    optimizers.RMSProp: {"learning_rate": _RATE, "rho": real_in(0, 1, low_open=True, high_open=True),
                         "eps": real_in(0, math.inf, low_open=True)},
    optimizers.Adam: {"learning_rate": _RATE, "beta_1": real_in(0, 1, high_open=True),
                      "beta_2": real_in(0, 1, high_open=True),
                      "eps": real_in(0, math.inf, low_open=True)},
    optimizers.AdamW: {"learning_rate": _RATE, "weight_decay": real_in(0, math.inf),
                       "beta_2": real_in(0, 1, high_open=True)},
}
SCHEDULES = {
    # schedule: (valid keyword arguments, {argument: validity})
    schedules.StepDecay: ({"initial_learning_rate": 0.1, "factor": 0.5, "every": 1, "per": "epoch"},
                          {"initial_learning_rate": _RATE, "factor": real_in(0, math.inf, low_open=True),
                           "every": int_at_least(1), "per": one_of_names("epoch", "step")}),
    schedules.ExponentialDecay: ({"initial_learning_rate": 0.1, "k": 0.1, "every": 1, "staircase": False},
                                 {"initial_learning_rate": _RATE, "k": real_in(0, math.inf),
                                  "every": int_at_least(1),
                                  "staircase": lambda v: isinstance(v, (bool, np.bool_))}),
    schedules.InverseTimeDecay: ({"initial_learning_rate": 0.1, "k": 0.1},
                                 {"initial_learning_rate": _RATE, "k": real_in(0, math.inf)}),
    schedules.PowerDecay: ({"initial_learning_rate": 0.1, "power_t": 0.5},
                           {"initial_learning_rate": _RATE, "power_t": real_in(0, math.inf)}),
}


@st.composite
def optimizer_calls(draw):
    kind = draw(st.sampled_from(sorted(OPTIMIZERS, key=lambda c: c.__name__)))
    name = draw(st.sampled_from(sorted(OPTIMIZERS[kind])))
    valid = OPTIMIZERS[kind][name]
    if name == "learning_rate":                    # a schedule is a valid rate too
        valid = either(valid, lambda v: isinstance(v, schedules.Schedule))
    value = draw(invalid(valid, extra=[0.0, -1.0, 1.0, math.nan]))
    return BadCall(kind.__name__, lambda: kind(**{name: value}), arg(name), (name, value))


@st.composite
def schedule_calls(draw):
    kind = draw(st.sampled_from(sorted(SCHEDULES, key=lambda c: c.__name__)))
    base, checks = SCHEDULES[kind]
    name = draw(st.sampled_from(sorted(checks)))
    kwargs = dict(base, **{name: draw(invalid(checks[name], extra=[0, -1.0]))})
    return BadCall(kind.__name__, lambda: kind(**kwargs), arg(name), kwargs)


@st.composite
def distribution_calls(draw):
    kind = draw(st.sampled_from(["Uniform", "LogUniform", "IntUniform", "Choice"]))
    if kind == "Choice":
        options = draw(st.one_of(st.just([]), st.just(()), JUNK.filter(lambda v: not isinstance(v, (list, tuple)))))
        return BadCall(kind, lambda: Choice(options), arg("options"), options)
    make = {"Uniform": Uniform, "LogUniform": LogUniform, "IntUniform": IntUniform}[kind]
    valid_bound = {"Uniform": real_in(-math.inf, math.inf), "LogUniform": real_in(0, math.inf, low_open=True),
                   "IntUniform": lambda v: is_int(v)}[kind]
    low, high = draw(st.sampled_from([(1, 10), (2, 3)]))
    which = draw(st.sampled_from(["low", "high", "order"]))
    if which == "order":                           # valid bounds in the wrong order
        return BadCall(kind, lambda: make(high, low), rf"{arg('low')}.*{arg('high')}", (high, low))
    bad = draw(invalid(valid_bound, extra=[math.nan, -1.0, 0]))
    bounds = (bad, high) if which == "low" else (low, bad)
    return BadCall(kind, lambda: make(*bounds), arg(which), bounds)


@st.composite
def multitask_calls(draw):
    kwargs = dict(trunk=[Dense(3, "relu")], heads={"a": [Dense(2)], "b": [Dense(1)]},
                  losses={"a": "softmax_cross_entropy", "b": "mse"}, loss_weights=None, input_dim=N_FEATURES)
    name = draw(st.sampled_from(["heads", "losses", "loss_weights", "input_dim", "trunk"]))
    bad = {
        "heads": st.one_of(st.just({}), st.just({"a": []}), st.just({"a": "dense"}), st.just({3: [Dense(2)]}),
                           JUNK.filter(lambda v: not isinstance(v, dict))),
        "losses": st.one_of(st.just({"a": "mse"}), st.just({"a": "hinge", "b": "mse"}),
                            st.just({"a": "mse", "b": "mse", "c": "mse"}), st.builds(lambda v: {"a": v, "b": "mse"}, JUNK)),
        "loss_weights": st.one_of(st.builds(lambda v: {"a": v, "b": 1.0},
                                            invalid(real_in(0, math.inf), extra=[-1.0])),
                                  st.just({"a": 1.0}), st.just({"a": 1.0, "b": 1.0, "z": 1.0})),
        "input_dim": invalid(int_at_least(1)),
        "trunk": st.one_of(st.just(["dense"]), st.just([None]), st.just("dense"), st.just(3)),
    }[name]
    kwargs[name] = draw(bad)
    # heads and losses must name the same heads: a mismatch may be reported on either
    names = rf"{arg('heads')}|{arg('losses')}" if name in ("heads", "losses") else arg(name)
    return BadCall("MultiTask", lambda: MultiTask(**kwargs), names, (name, kwargs[name]))


# =========================================================================================
# Arrays: bad X, bad y, bad sample weights
# =========================================================================================

def _rows(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


@st.composite
def bad_features(draw, n: int, d: int):
    """Something that is not a finite (n, d) real matrix (n >= 1): the kind of mistake,
    then its details. Returns (value, a regex the message must match)."""
    seed = draw(st.integers(0, 2**32 - 1))
    good = _rows(n, d, seed)
    kind = draw(st.sampled_from(["ndim", "features", "special", "strings", "object", "empty", "huge",
                                 "ragged", "junk", "complex", "datetime"]))
    if kind == "ndim":
        shape = draw(st.sampled_from([(), (n,), (n * d,), (1, n, d), (n, d, 1), (n, 1, d, 1)]))
        return np.resize(good, shape), arg("X")
    if kind == "features":
        other = draw(st.integers(0, 3 * d).filter(lambda k: k != d))
        return _rows(n, other, seed), arg("X")
    if kind == "special":
        bad = good.copy()
        bad[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return (bad.tolist() if draw(st.booleans()) else bad), arg("X")
    if kind == "strings":
        return good.astype(str) if draw(st.booleans()) else [["a"] * d] * n, arg("X")
    if kind == "object":
        bad = good.astype(object)
        bad[draw(st.integers(0, n - 1)), 0] = draw(st.sampled_from([None, "1.0", [1], {}]))
        return bad, arg("X")
    if kind == "empty":
        return np.empty(draw(st.sampled_from([(0, d), (0,), (0, 0)]))), arg("X")
    if kind == "huge":
        bad = good.copy()
        bad.flat[draw(st.integers(0, bad.size - 1))] = draw(st.floats(3.5e38, 1e308)) * draw(st.sampled_from([1, -1]))
        return bad, arg("X")      # beyond float32 (the models under test are float32)
    if kind == "ragged":
        rows = good.tolist()
        rows[draw(st.integers(0, n - 1))] = rows[0][:draw(st.integers(0, d - 1))]
        return rows, arg("X")
    if kind == "complex":
        return good + 1j, arg("X")
    if kind == "datetime":
        return np.zeros((n, d), "datetime64[s]"), arg("X")
    return draw(JUNK.filter(lambda v: not isinstance(v, (list, np.ndarray)) or np.ndim(v) != 2)), arg("X")


def _good_targets(loss: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = LOSS_OUTPUTS[loss]
    if loss == "softmax_cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (n, k))
    return rng.standard_normal((n, k))


@st.composite
def bad_targets(draw, loss: str, n: int):
    """Targets that do not fit ``loss`` with LOSS_OUTPUTS[loss] outputs for n samples."""
    seed = draw(st.integers(0, 2**32 - 1))
    good = _good_targets(loss, n, seed).astype(float)
    k = LOSS_OUTPUTS[loss]
    kinds = ["length", "special", "strings", "ndim", "columns", "junk"]
    if loss != "mse":
        kinds += ["label", "label"]
    kind = draw(st.sampled_from(kinds))
    if kind == "length":
        m = draw(st.integers(0, 3 * n).filter(lambda m: m != n))
        return _good_targets(loss, m, seed), arg("y")
    if kind == "special":
        bad = good.copy()
        bad.flat[draw(st.integers(0, bad.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return bad, arg("y")
    if kind == "strings":
        return good.astype(int).astype(str), arg("y")
    if kind == "ndim":
        return good.reshape((n, -1, 1)), arg("y")
    if kind == "columns":
        return np.zeros((n, draw(st.integers(k + 1, k + 4)))), arg("y")
    if kind == "label":
        bad = good.copy()
        if loss == "softmax_cross_entropy":
            value = draw(st.one_of(st.integers(k, 10**9), st.integers(-10**9, -1),
                                   st.floats(0, k, exclude_min=True, exclude_max=True).filter(lambda v: v != int(v))))
        else:
            value = draw(st.floats(-1e6, 1e6).filter(lambda v: v not in (0.0, 1.0)))
        bad.flat[draw(st.integers(0, bad.size - 1))] = value
        return bad, arg("y")
    return draw(JUNK.filter(lambda v: np.ndim(v) == 0 or isinstance(v, dict))), arg("y")


@st.composite
def bad_weights(draw, n: int):
    kind = draw(st.sampled_from(["negative", "special", "length", "zeros", "huge", "ndim", "junk"]))
    w = np.ones(n)
    if kind == "negative":
        w[draw(st.integers(0, n - 1))] = -draw(st.floats(1e-300, 1e300))
    elif kind == "special":
        w[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "length":
        w = np.ones(draw(st.integers(0, 3 * n).filter(lambda m: m != n)))
    elif kind == "zeros":
        w = np.zeros(n)
    elif kind == "huge":
        w[draw(st.integers(0, n - 1))] = draw(st.floats(3.5e38, 1e308))
    elif kind == "ndim":
        w = w.reshape(n, 1)
    else:
        w = draw(JUNK.filter(lambda v: v is not None))
    return w, arg("sample_weight")


# =========================================================================================
# Sequential's methods
# =========================================================================================

MODELS = {loss: Sequential([Dense(5, "relu"), Dense(k)], input_dim=N_FEATURES, loss=loss, seed=1)
          for loss, k in LOSS_OUTPUTS.items()}
N = 12


def _data(loss: str, seed: int):
    return _rows(N, N_FEATURES, seed), _good_targets(loss, N, seed)


FIT_OPTIONS = {
    # option: strategy of invalid values (names as in the message)
    "epochs": invalid(int_at_least(1)),
    "batch_size": invalid(either(is_none, int_at_least(1))),
    "learning_rate": invalid(either(is_none, _RATE), extra=[0.0, -1.0]),
    "optimizer": invalid(lambda v: False, extra=["lion", "Adam", 3]).filter(
        lambda v: not (isinstance(v, str) and v in optimizers.OPTIMIZERS) and v is not None),
    "shuffle": invalid(lambda v: isinstance(v, (bool, np.bool_))),
    "verbose": invalid(lambda v: v == "auto" if isinstance(v, str) else
                       is_int(v) and v >= 0 or isinstance(v, (bool, np.bool_))),
    "class_weight": st.one_of(st.just("balancedx"), st.just({7: 1.0}), st.just({0: -1.0}), st.just({0: math.nan}),
                              st.just({"a": 1.0}), st.builds(lambda v: {0: v}, invalid(real_in(0, math.inf))),
                              JUNK.filter(lambda v: v is not None and not isinstance(v, dict))),
    "validation_data": st.one_of(st.just(()), st.builds(lambda v: (v,), JUNK), st.just((np.zeros((3, 2)), np.zeros(3))),
                                 JUNK.filter(lambda v: v is not None)),
    "callbacks": st.one_of(st.builds(lambda v: [v], JUNK), JUNK.filter(
        lambda v: v is not None and not (isinstance(v, (list, tuple)) and len(v) == 0))),
}


@st.composite
def fit_calls(draw):
    loss = draw(st.sampled_from(sorted(MODELS)))
    model = MODELS[loss]
    X, y = _data(loss, draw(st.integers(0, 1000)))
    kwargs = {"epochs": 1}
    part = draw(st.sampled_from(["X", "y", "sample_weight", "option"]))
    if part == "X":
        X, names = draw(bad_features(N, N_FEATURES))
    elif part == "y":
        y, names = draw(bad_targets(loss, N))
    elif part == "sample_weight":
        kwargs["sample_weight"], names = draw(bad_weights(N))
    else:
        option = draw(st.sampled_from(sorted(FIT_OPTIONS)))
        if option == "class_weight" and loss == "mse":
            option = "epochs"
        kwargs[option] = draw(FIT_OPTIONS[option])
        names = arg(option)
    return BadCall("Sequential.fit", lambda: model.fit(X, y, **kwargs), names, (part, X, y, kwargs))


@st.composite
def inference_calls(draw):
    loss = draw(st.sampled_from(sorted(MODELS)))
    model = MODELS[loss]
    X, y = _data(loss, draw(st.integers(0, 1000)))
    method = draw(st.sampled_from(["predict", "predict_proba", "evaluate", "score"]
                                  if loss != "mse" else ["predict", "evaluate", "score"]))
    kwargs = {}
    parts = ["X", "batch_size"] + (["y"] if method in ("evaluate", "score") else []) + \
        (["sample_weight"] if method == "evaluate" else [])
    part = draw(st.sampled_from(parts))
    if part == "X":
        X, names = draw(bad_features(N, N_FEATURES))
    elif part == "y":
        y, names = draw(bad_targets(loss, N))
    elif part == "sample_weight":
        kwargs["sample_weight"], names = draw(bad_weights(N))
    else:
        kwargs["batch_size"] = draw(FIT_OPTIONS["batch_size"])
        names = arg("batch_size")
    fn = getattr(model, method)
    call = (lambda: fn(X, y, **kwargs)) if method in ("evaluate", "score") else (lambda: fn(X, **kwargs))
    return BadCall(f"Sequential.{method}", call, names, (part, X, y, kwargs))


@st.composite
def set_weights_calls(draw):
    model = MODELS[draw(st.sampled_from(sorted(MODELS)))]
    weights = [w.astype(np.float64) for w in model.get_weights()]
    kind = draw(st.sampled_from(["count", "shape", "special", "junk_item", "junk", "huge", "strings"]))
    i = draw(st.integers(0, len(weights) - 1))
    if kind == "count":
        weights = weights[:draw(st.integers(0, len(weights) - 1))] if draw(st.booleans()) else weights + [weights[0]]
    elif kind == "shape":
        weights[i] = np.resize(weights[i], draw(st.sampled_from([(7,), (1, 1), (2, 3, 1), ()])))
    elif kind == "special":
        weights[i].flat[draw(st.integers(0, weights[i].size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    elif kind == "huge":
        weights[i].flat[0] = 1e39
    elif kind == "strings":
        weights[i] = weights[i].astype(str)
    elif kind == "junk_item":            # anything but an array-like of the right shape
        weights[i] = draw(JUNK.filter(lambda v, shape=weights[i].shape: np.shape(v) != shape))
    else:
        weights = draw(JUNK.filter(lambda v: not isinstance(v, (list, tuple))))
    return BadCall("Sequential.set_weights", lambda: model.set_weights(weights), arg("weights"), weights)


def _beyond_float32(X) -> bool:
    """Finite values too large for float32: test_normalization_adapt_beyond_float32."""
    try:
        values = np.asarray(X)
    except (TypeError, ValueError):
        return False
    if values.dtype.kind not in "fiu":
        return False
    return bool((np.abs(values[np.isfinite(values)]) > np.finfo(np.float32).max).any())


@st.composite
def normalization_calls(draw):
    X, names = draw(bad_features(N, N_FEATURES).filter(lambda case: not _beyond_float32(case[0])))
    layer = Sequential([Normalization(), Dense(2)], input_dim=N_FEATURES, loss="mse", seed=0).layers[0]
    return BadCall("Normalization.adapt", lambda: layer.adapt(X), names, X)


# =========================================================================================
# Functions: train_dev_test_split, diagnose
# =========================================================================================

@st.composite
def split_calls(draw):
    X, y = _rows(20, 3, 0), np.arange(20) % 2
    kwargs = {}
    part = draw(st.sampled_from(["X", "y", "dev", "test", "stratify", "seed", "sizes"]))
    if part == "X":
        X = draw(st.one_of(st.builds(np.zeros, st.sampled_from([(0, 3), (19, 3), ()])), JUNK.filter(lambda v: np.ndim(v) == 0)))
    elif part == "y":
        y = draw(st.one_of(st.builds(np.zeros, st.sampled_from([(0,), (21,), ()])), JUNK.filter(lambda v: np.ndim(v) == 0)))
    elif part in ("dev", "test"):
        kwargs[part] = draw(invalid(either(is_none, lambda v: is_int(v) and 0 <= v <= 20,
                                           real_in(0, 1, low_open=True, high_open=True)),
                                    extra=[1.0, 0.0, -1, 21, 1.5, math.nan]))
    elif part == "stratify":
        kwargs["stratify"] = draw(invalid(lambda v: isinstance(v, (bool, np.bool_))))
    elif part == "seed":
        kwargs["seed"] = draw(invalid(either(is_none, int_at_least(0)), extra=[-1]))
    else:                              # each valid alone, too many together
        kwargs["dev"], kwargs["test"] = draw(st.sampled_from([(0.6, 0.5), (15, 10), (0.9, 2)]))
        part = "dev|test"
    names = part if part == "dev|test" else arg(part)
    return BadCall("train_dev_test_split", lambda: fastmlp.train_dev_test_split(X, y, **kwargs), names, (part, X, y, kwargs))


@st.composite
def diagnose_calls(draw):
    model = MODELS["softmax_cross_entropy"]
    pair = _data("softmax_cross_entropy", 0)
    kwargs = {}
    train = dev = pair
    part = draw(st.sampled_from(["train", "dev", "baseline_error", "threshold"]))
    if part in ("train", "dev"):
        bad = draw(st.one_of(JUNK.filter(lambda v: not (isinstance(v, tuple) and len(v) == 2)),
                             st.just(pair[:1]), st.just((pair[0], pair[1][:3])), st.just((pair[0][:, :2], pair[1]))))
        train, dev = (bad, pair) if part == "train" else (pair, bad)
        names = rf"{arg(part)}|{arg('X')}|{arg('y')}"
    else:
        kwargs[part] = draw(invalid(real_in(0, 1), extra=[-0.1, 1.1, math.nan]))
        names = arg(part)
    return BadCall("diagnose", lambda: fastmlp.diagnose(model, train, dev, **kwargs), names, (part, train, dev, kwargs))


# =========================================================================================
# scikit-learn estimators
# =========================================================================================

def _sklearn():
    return pytest.importorskip("fastmlp.sklearn", reason="scikit-learn is not installed")


ESTIMATOR_PARAMS = {
    "hidden_layer_sizes": st.one_of(st.just((0,)), st.just((5, -1)), st.just("wide"), st.just((2.5,))),
    "activation": invalid(one_of_names("identity", "logistic", "tanh", "relu")),
    "solver": invalid(one_of_names("sgd", "adam", "lbfgs")),
    "alpha": invalid(real_in(0, math.inf), extra=[-1e-4]),
    "batch_size": invalid(either(one_of_names("auto"), int_at_least(1))),
    "learning_rate_init": invalid(real_in(0, math.inf, low_open=True), extra=[0.0]),
    "max_iter": invalid(int_at_least(1)),
    "momentum": invalid(real_in(0, 1), extra=[1.5]),
    "validation_fraction": invalid(real_in(0, 1, high_open=True), extra=[1.0]),
    "beta_1": invalid(real_in(0, 1, high_open=True), extra=[1.0]),
    "epsilon": invalid(real_in(0, math.inf, low_open=True), extra=[0.0]),
    "dropout": invalid(real_in(0, 1, high_open=True), extra=[1.0]),
    "dtype": invalid(one_of_names("float32", "float64")),
    "backend": invalid(one_of_names("native", "numpy")),
    "n_threads": invalid(either(is_none, int_at_least(1)), extra=[0]),
    "shuffle": invalid(lambda v: isinstance(v, (bool, np.bool_))),
}


@st.composite
def estimator_calls(draw):
    sk = _sklearn()
    kind = draw(st.sampled_from(["MLPClassifier", "MLPRegressor"]))
    loss = "softmax_cross_entropy" if kind == "MLPClassifier" else "mse"
    X, y = _data(loss, draw(st.integers(0, 1000)))
    params = {"hidden_layer_sizes": (4,), "max_iter": 2}
    part = draw(st.sampled_from(["param", "X", "y"]))
    if part == "param":
        name = draw(st.sampled_from(sorted(ESTIMATOR_PARAMS)))
        # scikit-learn's Interval(Real) takes a bool as 0/1 (as sklearn's own MLP does)
        params[name] = draw(ESTIMATOR_PARAMS[name].filter(lambda v: not isinstance(v, (bool, np.bool_))))
        names = arg(name)
    elif part == "X":
        X, _ = draw(bad_features(N, N_FEATURES).filter(lambda case: _sklearn_rejects(case[0])))
        names = rf"{arg('X')}|array|sample|feature|float|could not convert|inhomogeneous|Expected|Complex"
    else:
        y = draw(st.sampled_from([np.full(N, np.nan), np.arange(N + 3), np.zeros((N, 2, 2)), np.array([])]))
        names = rf"{arg('y')}|sample|Input|could not convert|dimensional|dim \d"
    estimator = getattr(sk, kind)(**params)
    return BadCall(f"sklearn.{kind}.fit", lambda: estimator.fit(X, y), names, (part, params, X, y))


def _sklearn_rejects(X) -> bool:
    """scikit-learn's own estimators take any width at a first fit and convert strings of
    numbers, object arrays and datetimes to floats; the estimators follow them
    (validate_data): leave out what converts to a finite (N, d) float matrix, and values
    beyond float32 (test_estimator_fit_beyond_float32_warns_nothing)."""
    if _beyond_float32(X):
        return False
    try:
        array = np.asarray(X)
        if array.dtype.kind == "c":
            return True
        with np.errstate(all="ignore"):
            converted = array.astype(np.float64)
    except (TypeError, ValueError):
        return True
    return not (converted.ndim == 2 and converted.shape[0] == N and converted.shape[1] >= 1
                and np.isfinite(converted).all())


# =========================================================================================
# Model files
# =========================================================================================

_MODEL_FILE: dict = {}


def model_file_bytes() -> bytes:
    """The bytes of a valid model file (trained briefly: optimizer state, history)."""
    if "bytes" not in _MODEL_FILE:
        import tempfile, pathlib
        model = Sequential([Normalization(), Dense(5, "relu"), BatchNorm(), Dropout(0.2), Dense(3)],
                           input_dim=N_FEATURES, seed=3)
        model.fit(*_data("softmax_cross_entropy", 0), epochs=2, batch_size=4)
        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / "model.fmlp"
            model.save(path)
            _MODEL_FILE["bytes"] = path.read_bytes()
    return _MODEL_FILE["bytes"]


@st.composite
def mutated_files(draw):
    """Random bytes, or the valid file truncated, with bytes replaced, inserted or
    deleted at drawn offsets."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(model_file_bytes())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


def check_damaged_file(data: bytes, folder) -> None:
    """fastmlp.load of ``data`` written to a file in ``folder``: ModelFileError with a
    message, or a model that predicts (the damage hit nothing that is checked)."""
    path = folder / "model.fmlp"
    path.write_bytes(data)
    try:
        model = fastmlp.load(path)
    except ModelFileError as exc:
        assert str(exc), "empty message"
        FUZZ_EXAMPLES["load (ModelFileError)"] += 1
        return
    model.predict(np.zeros((2, model.input_dim)))
    FUZZ_EXAMPLES["load (still a valid model)"] += 1


# =========================================================================================
# The command line
# =========================================================================================

COMMANDS = ("train", "evaluate", "predict", "search", "diagnose")
OPTIONS = ("--target", "--x-key", "--y-key", "--backend", "--loss", "--dev", "--seed", "--output", "--hidden",
           "--activation", "--dropout", "--optimizer", "--learning-rate", "--epochs", "--batch-size", "--dtype",
           "--no-normalize", "--verbose", "--json", "--proba", "--space", "--trials", "--rounds", "--jobs",
           "--dev-data", "--baseline-error", "--threshold", "--bogus", "-x")
TOKENS = st.one_of(st.sampled_from(["0", "-1", "1.5", "nan", "inf", "1e400", "abc", "", "3,2", "0,5", "a,b",
                                    "relu", "sgd", "float16", "numpy", "auto", "mse", "-", "--", "=", "X"]),
                   st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                           max_size=8).filter(lambda t: t not in ("-h", "--help")))


def cli_files(folder) -> dict:
    """Data and model files that are each wrong in their own way."""
    import pathlib
    folder = pathlib.Path(folder)
    files = {"missing": folder / "missing.csv", "folder": folder}
    contents = {"empty.csv": b"", "header.csv": b"a,b,c\n", "text.csv": b"a,b\nx,y\nz,w\n",
                "nan.csv": b"a,b,c\n1,nan,0\n2,3,1\n", "ragged.csv": b"a,b,c\n1,2\n3,4,5,6\n",
                "binary.npz": b"garbage, not a zip", "model.fmlp": b"not a model",
                "bytes.csv": bytes(range(256))}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
        files[name] = folder / name
    return files


POSITIONALS = {"train": ("data",), "search": ("data",), "evaluate": ("model", "data"),
               "predict": ("model", "data"), "diagnose": ("model", "data")}
REQUIRED = {"train": ("--output",), "predict": ("--output",), "search": ("--space",)}


@st.composite
def cli_argv(draw, files: dict):
    """Mostly well-formed command lines (a command, its positional files, its required
    options, then option-value pairs) with bad files or values; sometimes a jumble of
    tokens."""
    paths = st.sampled_from(sorted(str(p) for p in files.values()))
    if draw(st.integers(0, 4)) == 0:
        argv = draw(st.lists(st.one_of(st.sampled_from(COMMANDS), paths, st.sampled_from(OPTIONS), TOKENS),
                             max_size=8))
    else:
        command = draw(st.sampled_from(COMMANDS))
        argv = [command] + [draw(paths) for _ in POSITIONALS[command]]
        for option in REQUIRED.get(command, ()):
            argv += [option, draw(st.one_of(paths, TOKENS))]
        for _ in range(draw(st.integers(0, 3))):
            argv += [draw(st.sampled_from(OPTIONS)), draw(st.one_of(TOKENS, paths))]
    for i, token in enumerate(argv[:-1]):      # never write over a file the case relies on
        if token == "--output":
            argv[i + 1] = str(files["folder"] / "out.txt")
    return argv


def check_cli(argv) -> None:
    """Status 1 or 2 and a message on stderr."""
    status, stderr = run_cli(argv)
    assert status in (1, 2), (argv, status, stderr)
    assert stderr.strip(), (argv, status)
    FUZZ_EXAMPLES[f"cli (status {status})"] += 1


def run_cli(argv) -> Tuple[int, str]:
    """(exit status, stderr) of ``fastmlp.cli.main(argv)`` in process; argparse's own
    exit (SystemExit) counts as its status."""
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            status = cli.main(list(argv))
        except SystemExit as exc:
            status = exc.code
    return status, stderr.getvalue()


# =========================================================================================
# The registry, and the tests (budgets for a default CI run of about a minute)
# =========================================================================================

CASES = {
    # entry point: (strategy of BadCall, examples in CI)
    "Sequential": (sequential_calls(), 300),
    "layers": (layer_calls(), 400),
    "optimizers": (optimizer_calls(), 400),
    "schedules": (schedule_calls(), 300),
    "distributions": (distribution_calls(), 300),
    "MultiTask": (multitask_calls(), 150),
    "fit": (fit_calls(), 500),
    "predict/evaluate/score": (inference_calls(), 500),
    "set_weights": (set_weights_calls(), 200),
    "Normalization.adapt": (normalization_calls(), 150),
    "train_dev_test_split": (split_calls(), 300),
    "diagnose": (diagnose_calls(), 200),
    "sklearn": (estimator_calls(), 150),
}


def _case_test(strategy, examples: int):
    @fuzz_settings(examples)
    @given(bad=strategy)
    def run(bad):
        run_case(bad)
    return run


@pytest.mark.parametrize("entry", sorted(CASES))
def test_bad_input_is_a_clear_error(entry):
    """Every generated bad input ends in ValueError/TypeError naming the argument."""
    strategy, examples = CASES[entry]
    _case_test(strategy, examples)()


@pytest.fixture(scope="module")
def load_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("load")


@fuzz_settings(250)
@given(data=mutated_files())
def test_load_of_a_damaged_file_is_a_model_file_error_or_a_working_model(data, load_folder):
    """A damaged model file: ModelFileError (a ValueError) saying what is wrong, or, when
    the damage is where nothing is checked (a weight's value), a model that predicts."""
    check_damaged_file(data, load_folder)


@fuzz_settings(40)
@given(path=st.sampled_from(["missing.fmlp", ".", "sub"]), kind=st.sampled_from(["str", "path"]))
def test_load_of_a_missing_file_or_a_folder_is_an_os_error(path, kind, tmp_path_factory):
    folder = tmp_path_factory.mktemp("paths")
    (folder / "sub").mkdir(exist_ok=True)
    target = folder / path
    with pytest.raises((FileNotFoundError, IsADirectoryError, PermissionError)):
        fastmlp.load(str(target) if kind == "str" else target)
    FUZZ_EXAMPLES["load"] += 1


@fuzz_settings(80)
@given(value=JUNK.filter(lambda v: not isinstance(v, (str, bytes))))
def test_load_of_a_non_path_is_a_type_error(value):
    with pytest.raises(TypeError, match=arg("path")):
        fastmlp.load(value)
    FUZZ_EXAMPLES["load"] += 1


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory):
    return cli_files(tmp_path_factory.mktemp("cli"))


def test_cli_arguments_give_status_1_or_2_with_a_message(cli_inputs):
    """fastmlp.cli.main with generated argument lists (commands, options, junk tokens,
    missing, empty, malformed data and model files): status 1 (a data or file error) or
    2 (a usage error), a message on stderr, never an exception."""
    fuzz_settings(400)(given(argv=cli_argv(cli_inputs))(check_cli))()


# =========================================================================================
# Bugs the fuzzing found, now fixed: each stays as a regression test
# =========================================================================================

@pytest.mark.parametrize("batch_size", [2**63, 2**64, 10**30])
def test_predict_accepts_a_batch_size_beyond_int64(batch_size):
    model = MODELS["softmax_cross_entropy"]
    X, _ = _data("softmax_cross_entropy", 0)
    np.testing.assert_array_equal(model.predict(X, batch_size=batch_size), model.predict(X))


def test_normalization_adapt_beyond_float32():
    layer = Sequential([Normalization(), Dense(2)], input_dim=N_FEATURES, loss="mse", seed=0).layers[0]
    X = _rows(N, N_FEATURES, 0)
    X[0, 0] = 1.2e39
    with pytest.raises(ValueError, match=arg("X")):
        layer.adapt(X)


@pytest.mark.parametrize("kwargs", [{"input_dim": 10**12, "units": 2}, {"input_dim": 3, "units": 2**63},
                                    {"input_dim": 10**20, "units": 2}])
def test_model_too_large_names_its_size(kwargs):
    with pytest.raises(ValueError, match="input_dim|units|parameters"):
        Sequential([Dense(kwargs["units"])], input_dim=kwargs["input_dim"], loss="mse")


def test_estimator_fit_beyond_float32_warns_nothing():
    sk = _sklearn()
    X, y = _data("softmax_cross_entropy", 0)
    X[0, 0] = 3.5e38
    with pytest.raises(ValueError, match=arg("X")):
        sk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, dtype="float32").fit(X, y)


def test_cli_npz_that_is_a_broken_zip_is_a_data_error(tmp_path):
    """Run in a subprocess: numpy leaves the file open on this path, and its
    ResourceWarning would surface in a later test of this process."""
    data = tmp_path / "broken.npz"
    data.write_bytes(b"PK\x03\x04garbage")
    done = subprocess.run([sys.executable, "-m", "fastmlp", "train", str(data), "--output",
                           str(tmp_path / "m.fmlp")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "broken.npz" in done.stderr
