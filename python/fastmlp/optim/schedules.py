"""Learning-rate schedules, given to an optimizer in place of a number (docs/conventions.md):

>>> from fastmlp.optimizers import Adam
>>> from fastmlp.schedules import ExponentialDecay
>>> opt = Adam(learning_rate=ExponentialDecay(0.01, k=0.1))

A schedule is a pure function of a counter t: ``schedule(t)`` is the rate at t. The
optimizer owns the counter (it starts at 0, lives in the optimizer's state and carries
across fits and resumes) and multiplies the value by its ``scale`` (1.0 unless a
ReduceLROnPlateau callback lowered it). With ``per="epoch"`` (the default) t is the
number of epochs completed before the current one, so epoch 1 trains at t = 0; with
``per="step"`` t is the number of steps taken before the current one. PowerDecay counts
samples instead (see its docstring).

StepDecay, ExponentialDecay and InverseTimeDecay have a period ``every`` (default 1):
``s = t / every``, or ``floor(t / every)`` with ``staircase=True`` (StepDecay always
floors).
"""
from __future__ import annotations

import math
import numbers
from typing import Dict, Type

from .._validation import (check_bool, check_choice, check_int, check_nonnegative_float,
                           check_positive_float)

PER = ("epoch", "step")


def _check_counter(t) -> int:
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"t must be an integer >= 0; got {t!r} of type {type(t).__name__}")
    if t < 0:
        raise ValueError(f"t must be an integer >= 0; got {t}")
    return int(t)


class Schedule:
    """Base class: ``__call__(t) -> float``, ``per``, ``get_config()``.

    ``counts`` is what t counts in units of ``per``: "periods" (epochs or steps) for
    most schedules, "samples" for PowerDecay.
    """

    counts = "periods"
    per: str

    def __call__(self, t: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor's arguments, as plain data (``type(s)(**s.get_config())``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None


class _PeriodicSchedule(Schedule):
    """Shared arguments: initial_learning_rate, every, staircase, per."""

    def __init__(self, initial_learning_rate: float, *, every: int = 1,
                 staircase: bool = False, per: str = "epoch"):
        self.initial_learning_rate = check_positive_float(initial_learning_rate,
                                                          "initial_learning_rate")
        self.every = check_int(every, "every")
        self.staircase = check_bool(staircase, "staircase")
        self.per = check_choice(per, "per", PER)

    def _s(self, t: int) -> float:
        """s = t / every, or floor(t / every) with staircase."""
        t = _check_counter(t)
        return float(t // self.every) if self.staircase else t / self.every

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "every": self.every,
                "staircase": self.staircase, "per": self.per}


class StepDecay(_PeriodicSchedule):
    """``lr0 * factor ** floor(t / every)``: the rate drops by ``factor`` once every
    ``every`` epochs (or steps). ``0 < factor <= 1``. Always a staircase."""

    def __init__(self, initial_learning_rate: float, factor: float, *, every: int = 1,
                 per: str = "epoch"):
        super().__init__(initial_learning_rate, every=every, staircase=True, per=per)
        self.factor = check_positive_float(factor, "factor")
        if self.factor > 1:
            raise ValueError(f"factor must be in (0, 1]; got {factor!r}")

    def __call__(self, t: int) -> float:
        return self.initial_learning_rate * self.factor ** self._s(t)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["staircase"]
        return {**config, "factor": self.factor}


class _RateKSchedule(_PeriodicSchedule):
    """A periodic schedule with a decay rate ``k >= 0`` (exponential, inverse time)."""

    def __init__(self, initial_learning_rate: float, k: float, *, every: int = 1,
                 staircase: bool = False, per: str = "epoch"):
        super().__init__(initial_learning_rate, every=every, staircase=staircase, per=per)
        self.k = check_nonnegative_float(k, "k")

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k}


class ExponentialDecay(_RateKSchedule):
    """``lr0 * exp(-k * s)`` with ``s = t / every`` (``floor(t / every)`` with
    staircase); ``k >= 0``."""

    def __call__(self, t: int) -> float:
        return self.initial_learning_rate * math.exp(-self.k * self._s(t))


class InverseTimeDecay(_RateKSchedule):
    """``lr0 / (1 + k * s)`` with ``s = t / every`` (``floor(t / every)`` with
    staircase); ``k >= 0``."""

    def __call__(self, t: int) -> float:
        return self.initial_learning_rate / (1 + self.k * self._s(t))


class PowerDecay(Schedule):
    """scikit-learn's "invscaling": ``lr0 / (t + 1) ** power_t`` with t counted in
    training samples seen (``power_t >= 0``, default 0.5 as in scikit-learn).

    With ``per="epoch"`` (the default, scikit-learn's behaviour) t is the number of
    samples in the epochs completed before the current one, so the rate changes at epoch
    ends: epoch e over n samples trains at ``lr0 / (n * (e - 1) + 1) ** power_t``. With
    ``per="step"`` t is the number of samples in the steps taken before the current one.
    No ``every`` or ``staircase``: the count of samples already sets the pace.
    """

    counts = "samples"

    def __init__(self, initial_learning_rate: float, power_t: float = 0.5, *,
                 per: str = "epoch"):
        self.initial_learning_rate = check_positive_float(initial_learning_rate,
                                                          "initial_learning_rate")
        self.power_t = check_nonnegative_float(power_t, "power_t")
        self.per = check_choice(per, "per", PER)

    def __call__(self, t: int) -> float:
        return self.initial_learning_rate / (_check_counter(t) + 1) ** self.power_t

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "power_t": self.power_t, "per": self.per}


SCHEDULES: Dict[str, Type[Schedule]] = {
    cls.__name__: cls for cls in (StepDecay, ExponentialDecay, InverseTimeDecay, PowerDecay)}


def to_config(schedule: Schedule) -> dict:
    """``{"class": name, "config": get_config()}``: plain data for a state dict."""
    return {"class": type(schedule).__name__, "config": schedule.get_config()}


def from_config(data) -> Schedule:
    """The schedule described by :func:`to_config`'s output (ValueError if it is not)."""
    if not isinstance(data, dict) or set(data) != {"class", "config"} \
            or not isinstance(data["config"], dict):
        raise ValueError(f"a schedule config must be a dict with keys 'class' and 'config'; "
                         f"got {data!r}")
    cls = SCHEDULES.get(data["class"])
    if cls is None:
        raise ValueError(f"unknown schedule {data['class']!r}; expected one of "
                         f"{sorted(SCHEDULES)}")
    return cls(**data["config"])


__all__ = ["ExponentialDecay", "InverseTimeDecay", "PowerDecay", "Schedule", "StepDecay",
           "from_config", "to_config"]
