"""Gradient checking: the model's backpropagated gradient against centered finite
differences of its training cost, in float64.

The cost is the one fit minimizes at a step: the (weighted) mean data loss over (X, y) in
training mode plus the weight penalty, with n = len(X). BatchNorm uses the batch's
statistics, and Dropout one fixed mask (the model's current training step for every
evaluation). The check runs on a float64 copy of the model on the NumPy backend; the
model itself is not changed.

The threshold scales with the problem. A centered difference ``(J+ - J-) / (2 eps)``
carries the rounding errors e+, e- of the two cost evaluations divided by 2 eps; they
grow with the cost's magnitude, the layers' widths (longer dot products) and the number
of rows, so a fixed threshold flags wide correct models. The same evaluations measure
them: with J0 = J(p), the second difference ``J+ - 2 J0 + J-`` is ``eps**2 J''`` (below
the rounding for eps = 1e-7 and a smooth cost) plus ``e+ - 2 e0 + e-``. Rounding errors
of standard deviation s give the derivative an error of s / (sqrt(2) eps) and the second
difference one of sqrt(6) s, so ``||second differences|| / (2 sqrt(3) eps)`` estimates
the norm of the finite differences' rounding error. Divided by ``||numeric|| +
||analytic||`` it is the relative difference rounding alone explains (``rounding``);
"ok" allows ROUNDING_SAFETY times it, at least 1e-7 and at most 1e-3 (a cost too noisy
to tell is never "ok" beyond that), and "bug" starts 10 times above that, at least 1e-3.
(At a ReLU kink inside [p - eps, p + eps] the second difference
also grows, as the first difference's error does: such a coordinate is noise, not a
bug.) A wrong backward pass changes none of the cost evaluations, so it stays a "bug".
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._validation import check_int, check_positive_float, check_sample_weight, check_seed
from ..backends.numpy import NumPyBackend
from ..model.sequential import Sequential
from ..nn.metrics import weight_total
from ..train.progress import check_verbose, shows, tqdm_on_terminal

OK = 1e-7        # at or below: the gradient is right, whatever the rounding estimate
SUSPECT = 1e-3   # above (and above 10x the ok limit): almost certainly a bug
ROUNDING_SAFETY = 10.0   # "ok" allows this many times the estimated rounding error
LONG_CHECK_S = 10.0      # with progress on, a longer check prints its estimated time first


def relative_difference(numeric: np.ndarray, analytic: np.ndarray) -> float:
    """``||numeric - analytic|| / (||numeric|| + ||analytic||)``; 0 when both are 0."""
    scale = np.linalg.norm(numeric) + np.linalg.norm(analytic)
    return 0.0 if scale == 0 else float(np.linalg.norm(numeric - analytic) / scale)


def rounding_difference(second: np.ndarray, eps: float, numeric: np.ndarray,
                        analytic: np.ndarray) -> float:
    """The relative difference the rounding of the cost explains (module docstring), from
    the second differences ``J+ - 2 J0 + J-`` of the same coordinates."""
    scale = np.linalg.norm(numeric) + np.linalg.norm(analytic)
    error = np.linalg.norm(second) / (2 * math.sqrt(3) * eps)
    return 0.0 if scale == 0 else float(error / scale)


def limits(rounding: float) -> Tuple[float, float]:
    """The (ok, bug) limits of the relative difference given the rounding estimate."""
    ok = min(max(OK, ROUNDING_SAFETY * rounding), SUSPECT)
    return ok, max(SUSPECT, 10 * ok)


def verdict(difference: float, ok: float = OK, bug: float = SUSPECT) -> str:
    """"ok" <= ok < "suspect" <= bug < "bug" (NaN is a bug); by default 1e-7 and 1e-3."""
    if difference <= ok:
        return "ok"
    return "suspect" if difference <= bug else "bug"


@dataclass(frozen=True)
class GradientCheckReport:
    """``overall``: the relative difference over the checked coordinates; ``per_param``:
    the same per parameter array, keyed "<layer>_<index>.<name>" (e.g. "dense_0.W"; an
    array none of whose coordinates was drawn is left out); ``verdict``: "ok", "suspect"
    or "bug" from ``overall`` against ``ok_limit`` and ``bug_limit`` (from the rounding
    estimate ``rounding``, module docstring); ``per_param_verdict`` likewise per array;
    ``eps`` the step used; ``checked`` of ``n_params`` coordinates were checked."""

    overall: float
    per_param: Dict[str, float]
    verdict: str
    eps: float
    rounding: float = 0.0
    ok_limit: float = OK
    bug_limit: float = SUSPECT
    per_param_verdict: Dict[str, str] = field(default_factory=dict)
    checked: int = 0
    n_params: int = 0

    def __str__(self) -> str:
        width = max([len(name) for name in self.per_param] + [9])
        subset = (f", {self.checked:,} of {self.n_params:,} coordinates"
                  if self.checked < self.n_params else "")
        lines = [f"gradient check (centered differences, eps {self.eps:g}, float64{subset}): "
                 f"{self.verdict} (overall relative difference {self.overall:.3g}; ok up to "
                 f"{self.ok_limit:.3g}, bug above {self.bug_limit:.3g}; rounding explains "
                 f"{self.rounding:.3g})"]
        lines += [f"  {name:<{width}}  {value:.3g}  {self.per_param_verdict.get(name, '')}"
                  for name, value in self.per_param.items()]
        return "\n".join(lines)


@suggest_keywords
def gradient_check(model, X, y, *, eps: float = 1e-7, sample_weight=None,
                   max_params: Optional[int] = None, seed: int = 0,
                   verbose="auto") -> GradientCheckReport:
    """Compare ``model``'s gradient of its training cost on (X, y) with centered
    differences ``(J(p + eps e_i) - J(p - eps e_i)) / (2 eps)`` for every parameter, or
    for ``max_params`` of them drawn at random (from ``seed``) when the model has more.
    Each coordinate costs 2 cost evaluations (a forward pass over X each): keep X small,
    and use ``max_params`` for wide models. Returns a :class:`GradientCheckReport`
    whose limits scale with the cost's rounding error (module docstring).

    ``verbose``: "auto" (on when stderr is a terminal or a Jupyter kernel's), 1 or 0.
    When on, a check estimated (from the time of one cost evaluation) to take over
    LONG_CHECK_S seconds prints its estimate first, and a tqdm bar (when installed, on a
    terminal) or a line every few seconds shows the progress, on stderr."""
    if not isinstance(model, Sequential):
        raise TypeError(f"gradient_check checks a fastmlp.Sequential; got "
                        f"{type(model).__name__} (a MultiTask's heads share its trunk: check "
                        f"each head's path as a Sequential)")
    eps = check_positive_float(eps, "eps")
    max_params = None if max_params is None else check_int(max_params, "max_params")
    seed = check_seed(seed)
    show = shows(check_verbose(verbose))
    clone = model.copy_as(np.float64, NumPyBackend())
    X, Y = clone.prepare_data(X, y)
    weights = None if sample_weight is None else check_sample_weight(
        sample_weight, len(X), clone.dtype)
    n = len(X)
    weight = None if weights is None else weight_total(weights)
    states = [[s.copy() for s in layer.get_state()] for layer in clone.layers]

    def restore_state():          # BatchNorm's training forward moves its running averages
        for layer, state in zip(clone.layers, states):
            if state:
                layer.set_state(state)

    def cost() -> float:          # loss_and_grad without its backward pass
        data = clone.training_loss(X, Y, weights)
        data /= n if weights is None else float(weights.sum())
        restore_state()
        return data + clone.penalty(n, n, add_gradient=False, batch_weight=weight)

    clone.loss_and_grad(X, Y, weights)
    clone.penalty(n, n, batch_weight=weight)
    restore_state()
    analytic = clone.flat_grads.copy()
    params = clone.flat_params
    coordinates = np.arange(params.size)
    if max_params is not None and max_params < params.size:
        rng = np.random.default_rng(seed)
        coordinates = np.sort(rng.choice(params.size, max_params, replace=False))
    with clone.writing_params():     # the check moves the copy's parameters
        numeric, second = _differences(params, coordinates, cost, eps, show)
    return _report(clone, coordinates, numeric, analytic, second, eps)


def _differences(params: np.ndarray, coordinates: np.ndarray, cost: Callable[[], float],
                 eps: float, show: bool) -> Tuple[np.ndarray, np.ndarray]:
    """The centered first differences ``(J+ - J-) / (2 eps)`` and the second differences
    ``J+ - 2 J0 + J-`` of ``cost`` at ``coordinates`` of ``params`` (moved and put back in
    place); NaN elsewhere."""
    numeric = np.full(params.size, np.nan)
    second = np.full(params.size, np.nan)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        started = time.perf_counter()
        center = cost()
        progress = _Progress(show, len(coordinates), time.perf_counter() - started)
        for i in coordinates:
            saved = params[i]
            params[i] = saved + eps
            upper = cost()
            params[i] = saved - eps
            lower = cost()
            params[i] = saved
            numeric[i] = (upper - lower) / (2 * eps)
            second[i] = upper - 2 * center + lower
            progress.step()
        progress.close()
    return numeric, second


def _report(clone, coordinates: np.ndarray, numeric: np.ndarray, analytic: np.ndarray,
            second: np.ndarray, eps: float) -> GradientCheckReport:
    """The report over the checked ``coordinates``, overall and per parameter array."""
    params = clone.flat_params
    checked = np.zeros(params.size, bool)
    checked[coordinates] = True
    per_param: Dict[str, float] = {}
    per_param_verdict: Dict[str, str] = {}
    base = params.ctypes.data
    for i, layer in enumerate(clone.layers):
        for name, view in zip(layer.parameter_names(), layer.parameters()):
            start = (view.ctypes.data - base) // params.itemsize   # views are contiguous
            part = np.arange(start, start + view.size)
            part = part[checked[part]]
            if not part.size:
                continue
            key = f"{layer.kind}_{i}.{name}"
            per_param[key] = _finite(relative_difference(numeric[part], analytic[part]))
            rounding = rounding_difference(second[part], eps, numeric[part], analytic[part])
            per_param_verdict[key] = verdict(per_param[key], *limits(rounding))
    overall = _finite(relative_difference(numeric[coordinates], analytic[coordinates]))
    rounding = rounding_difference(second[coordinates], eps, numeric[coordinates],
                                   analytic[coordinates])
    ok_limit, bug_limit = limits(rounding)
    return GradientCheckReport(overall, per_param, verdict(overall, ok_limit, bug_limit), eps,
                               rounding, ok_limit, bug_limit, per_param_verdict,
                               len(coordinates), params.size)


def _finite(difference: float) -> float:
    """NaN (a non-finite cost or gradient) as inf: always a bug."""
    return difference if np.isfinite(difference) else float("inf")


class _Progress:
    """The check's progress on stderr when ``show``: its estimated time first when over
    LONG_CHECK_S, then a tqdm bar (installed, on a terminal) or a line every
    PROGRESS_EVERY_S seconds."""

    PROGRESS_EVERY_S = 5.0

    def __init__(self, show: bool, coordinates: int, seconds_per_cost: float):
        self.show, self.total, self.done = show, coordinates, 0
        self._bar, self._last = None, time.perf_counter()
        if not show:
            return
        estimate = 2 * coordinates * seconds_per_cost
        if estimate > LONG_CHECK_S:
            print(f"gradient check: {coordinates:,} coordinates x 2 cost evaluations, about "
                  f"{_duration(estimate)} (max_params= checks a random subset)",
                  file=sys.stderr, flush=True)
        tqdm = tqdm_on_terminal()
        if tqdm is not None:
            self._bar = tqdm(total=coordinates, desc="gradient check", leave=False,
                             file=sys.stderr, mininterval=0.5)

    def step(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        elif self.show and time.perf_counter() - self._last >= self.PROGRESS_EVERY_S:
            self._last = time.perf_counter()
            print(f"gradient check: {self.done:,}/{self.total:,} coordinates", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
