"""Comparison helpers shared by the test suites; tolerances come from tolerances.py."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import time
import zipfile

from typing import Callable

import numpy as np

from tolerances import TOLERANCES


def _as_float64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| (Frobenius norms of the flattened arrays).

    Refuses (AssertionError) a zero reference, mismatched shapes and non-finite values:
    none of them has a meaningful relative error.
    """
    actual, expected = _as_float64(actual), _as_float64(expected)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    assert np.isfinite(actual).all() and np.isfinite(expected).all(), "non-finite values"
    scale = np.linalg.norm(expected)
    assert scale > 0, "the expected array is all zeros: a relative error is meaningless"
    return float(np.linalg.norm(actual - expected) / scale)


def assert_close(actual, expected, kind: str, dtype: str) -> None:
    """Relative error of ``actual`` against ``expected`` within TOLERANCES[kind][dtype]."""
    tolerance = TOLERANCES[kind][str(np.dtype(dtype))]
    error = relative_error(actual, expected)
    assert error <= tolerance, f"relative error {error:.3g} > {tolerance:g} ({kind}, {dtype})"


def gradient_difference(numeric, analytic) -> float:
    """docs/conventions.md's check: ||g_num - g|| / (||g_num|| + ||g||); both zero is refused."""
    numeric, analytic = _as_float64(numeric), _as_float64(analytic)
    scale = np.linalg.norm(numeric) + np.linalg.norm(analytic)
    assert scale > 0, "both gradients are all zeros: nothing was checked"
    return float(np.linalg.norm(numeric - analytic) / scale)


def assert_gradient_close(numeric, analytic) -> None:
    tolerance = TOLERANCES["finite_difference"]["float64"]
    difference = gradient_difference(numeric, analytic)
    assert difference <= tolerance, f"gradient difference {difference:.3g} > {tolerance:g}"


def numeric_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Centered differences (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for every entry of
    ``x``, which is perturbed in place and restored; f reads x."""
    grad = np.empty(x.shape)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat_x, x), "x must be contiguous so it can be perturbed in place"
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + eps
        upper = f()
        flat_x[i] = saved - eps
        lower = f()
        flat_x[i] = saved
        flat_grad[i] = (upper - lower) / (2 * eps)
    return grad


def emulate_amx_where_the_cpu_lacks_it() -> bool:
    """Where the build has the amx level and the CPU runs avx512_bf16 but has no AMX, run
    the amx level's products on emulated tiles (csrc/kernels/gemm_amx.hpp: TDPBF16PS as
    the SDM writes it, with its faults checked), so that every such machine tests the amx
    engine; where the CPU has AMX the instructions run. Returns whether amx is usable."""
    from fastmlp import _core
    info = _core.backend_info()
    if "amx" in info["compiled_isas"] and "amx" not in info["supported_isas"] \
            and "avx512_bf16" in info["usable_isas"]:
        _core._testing.emulate_amx(True)
    return "amx" in _core.backend_info()["usable_isas"]


def make_data(loss: str, n: int = 60, n_features: int = 4, k: int = 3, seed: int = 0):
    """A small learnable problem for ``loss``: (X, y) with y's natural shape."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    scores = X @ rng.normal(size=(n_features, k))
    if loss == "softmax_cross_entropy":
        return X, scores.argmax(axis=1)
    if loss == "binary_cross_entropy":
        return X, (scores > 0).astype(int)
    if loss == "poisson":                   # counts with log mean scores / 4
        return X, rng.poisson(np.exp(scores / 4)).astype(float)
    return X, scores


def header_of(path) -> dict:
    """The JSON header of the model (or checkpoint) file at ``path``."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("header.json"))


def with_header(source, target, edit):
    """Write to ``target`` a copy of the model (or checkpoint) file ``source`` with
    ``edit(header)`` applied to its JSON header (``target`` may be ``source``); returns
    ``target``."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["header.json"])
    edit(header)
    members["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return target


def assert_same_state(model, reference):
    """Weights and layer state, optimizer state and counters, step counter: bit for bit."""
    for ours, theirs in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    ours, theirs = model.optimizer.state_dict(), reference.optimizer.state_dict()
    for key in ("m", "v"):
        np.testing.assert_array_equal(ours.pop(key), theirs.pop(key))
    assert ours == theirs
    assert model.training_step == reference.training_step


# ------------------------------------------------------------------------------------
# What an argument accepts: the contracts the bad-input fuzzing (tests/fuzz) and the
# layer table (tests/layer_cases.py) state; a value for which one is false is bad input.
# ------------------------------------------------------------------------------------
def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def int_at_least(minimum: int, high: int = 10**6):
    """Valid: an int in [minimum, high] (larger ones are left out: they allocate)."""
    return lambda v: is_int(v) and minimum <= v


def real_in(low: float, high: float, low_open: bool = False, high_open: bool = False):
    def valid(v):
        if not is_real(v) or not math.isfinite(float(v)):
            return False
        v = float(v)
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    return valid


def one_of_names(*names):
    return lambda v: isinstance(v, str) and v in names


def either(*preds):
    return lambda v: any(p(v) for p in preds)


is_none = lambda v: v is None                                      # noqa: E731


class CheckpointsCut(Exception):
    """Raised right after a chosen checkpoint write (:func:`checkpoints_cut_after`)."""


@contextlib.contextmanager
def checkpoints_cut_after(n):
    """Within it, the fit's ``n``-th checkpoint write (None: none) raises CheckpointsCut
    right after writing: the fit is cut off there, as by a crash."""
    import pytest
    from fastmlp.train import checkpoint
    write, writes = checkpoint.Checkpoints.write, []

    def cutting(self, *args):
        write(self, *args)
        writes.append(1)
        if len(writes) == n:
            raise CheckpointsCut

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint.Checkpoints, "write", cutting)
        yield


def interrupted_child(args, delay: float, env=None):
    """A child process ``args`` that prints "started" when its training begins, sent
    SIGINT ``delay`` seconds later: (the JSON of its last line, when the signal was sent).
    The child must exit 0."""
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert child.stdout.readline().strip() == "started", child.stderr.read()
        time.sleep(delay)
        sent = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=100)
    finally:
        child.kill()
    assert child.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), sent
