"""The rate an optimizer's step uses: a number or a :mod:`fastmlp.schedules` schedule, read
at the optimizer's counters and multiplied by its ``scale`` (docs/conventions.md).

``counters`` below is anything with the optimizer's counters: ``iterations`` (steps
taken), ``epochs`` (epochs completed), ``samples`` (samples seen) and
``epoch_start_samples`` (samples seen before the current epoch)."""
from __future__ import annotations

import numbers
from typing import Sequence, Union

import numpy as np

from .._validation import check_positive_float
from .schedules import Schedule

LearningRate = Union[float, Schedule]


def check_learning_rate(value) -> LearningRate:
    """A positive finite number or a :class:`~fastmlp.schedules.Schedule`."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"learning_rate must be a positive finite number or a schedule "
                        f"from fastmlp.schedules; got {value!r} of type "
                        f"{type(value).__name__}")
    return check_positive_float(value, "learning_rate")


def schedule_counter(schedule: Schedule, counters) -> int:
    """The counter ``schedule`` reads: samples or steps, at the epoch's start for a
    per-epoch schedule (epochs completed when it counts steps)."""
    if schedule.counts == "samples":
        return counters.epoch_start_samples if schedule.per == "epoch" else counters.samples
    return counters.epochs if schedule.per == "epoch" else counters.iterations


def current_rate(learning_rate: LearningRate, counters, scale: float) -> float:
    """The number, or ``schedule(counter)``, times ``scale``."""
    rate = learning_rate
    if isinstance(rate, Schedule):
        rate = rate(schedule_counter(rate, counters))
    return rate * scale


def step_rates(learning_rate: LearningRate, counters, scale: float,
               samples_per_step: Sequence[int]) -> np.ndarray:
    """The rates (float64) of the next ``len(samples_per_step)`` steps, step i taking
    ``samples_per_step[i]`` samples, as :func:`current_rate` would give them step by step
    within the current epoch (``counters`` are not changed)."""
    out = np.empty(len(samples_per_step), np.float64)
    if not isinstance(learning_rate, Schedule) or learning_rate.per == "epoch":
        out.fill(current_rate(learning_rate, counters, scale))
        return out
    by_samples = learning_rate.counts == "samples"
    counter = counters.samples if by_samples else counters.iterations
    for i, samples in enumerate(samples_per_step):
        out[i] = learning_rate(counter) * scale
        counter += int(samples) if by_samples else 1
    return out
