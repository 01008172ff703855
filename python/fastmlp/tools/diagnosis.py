"""Bias/variance diagnosis (docs/conventions.md), after the course notes' recipe.

avoidable bias = train error - baseline error (human-level or Bayes error, default 0);
variance       = dev error - train error.

A gap counts as high when it is strictly above ``threshold`` (default 0.05). The notes'
examples with baseline 0: train 1 % / dev 11 % is high variance, 15 % / 16 % high bias,
15 % / 30 % both, 0.5 % / 1 % neither. The report names the remedies for what it finds.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .._keywords import suggest_keywords

HIGH_BIAS = "high bias"
HIGH_VARIANCE = "high variance"
HIGH_BIAS_AND_VARIANCE = "high bias and high variance"
NEITHER = "neither"
VERDICTS = (HIGH_BIAS, HIGH_VARIANCE, HIGH_BIAS_AND_VARIANCE, NEITHER)

BIAS_REMEDIES = (
    "a bigger network: more hidden units or more layers",
    "train longer (more epochs), or with a better optimizer (e.g. optimizer='adam')",
    "search for a better architecture or hyperparameters",
)
VARIANCE_REMEDIES = (
    "more training data",
    "regularization: L2 (regularizer=fastmlp.L2(...)) or dropout (fastmlp.Dropout(rate))",
    "search for a better architecture or hyperparameters",
)


def _check_rate(value, name: str, maximum: float) -> float:
    """A finite real number (not a bool) in [0, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, {maximum:g}]; got {value!r} of "
                        f"type {type(value).__name__}")
    if not 0 <= value <= maximum:      # NaN fails too
        raise ValueError(f"{name} must be in [0, {maximum:g}]; got {value!r}")
    return float(value)


def _verdict(high_bias: bool, high_variance: bool) -> str:
    if high_bias and high_variance:
        return HIGH_BIAS_AND_VARIANCE
    if high_bias:
        return HIGH_BIAS
    return HIGH_VARIANCE if high_variance else NEITHER


def _remedies(high_bias: bool, high_variance: bool) -> Tuple[str, ...]:
    """The bias remedies, then the variance ones, each named once."""
    chosen = (BIAS_REMEDIES if high_bias else ()) + (VARIANCE_REMEDIES if high_variance else ())
    return tuple(dict.fromkeys(chosen))


@dataclass(frozen=True)
class DiagnosisReport:
    """The errors, the two gaps, the verdict and what to try next.

    ``verdict`` is one of "high bias", "high variance", "high bias and high variance",
    "neither"; a gap is high when strictly above ``threshold``. A negative gap (train
    error below the baseline, or dev error below train error) is reported as it is and
    never counts as high. ``remedies``: for high bias, a bigger network, training longer
    or with a better optimizer, an architecture search; for high variance, more data,
    regularization (L2, dropout), an architecture search; empty for "neither".
    """

    train_error: float
    dev_error: float
    baseline_error: float
    avoidable_bias: float
    variance: float
    threshold: float
    verdict: str
    remedies: Tuple[str, ...]

    @property
    def high_bias(self) -> bool:
        return self.verdict in (HIGH_BIAS, HIGH_BIAS_AND_VARIANCE)

    @property
    def high_variance(self) -> bool:
        return self.verdict in (HIGH_VARIANCE, HIGH_BIAS_AND_VARIANCE)

    @classmethod
    def from_errors(cls, train_error: float, dev_error: float, baseline_error: float = 0.0,
                    threshold: float = 0.05, *, max_error: float = 1.0) -> "DiagnosisReport":
        """The report for these error rates (train and dev in [0, max_error], baseline
        and threshold in [0, 1])."""
        train_error = _check_rate(train_error, "train_error", max_error)
        dev_error = _check_rate(dev_error, "dev_error", max_error)
        baseline_error = _check_rate(baseline_error, "baseline_error", 1.0)
        threshold = _check_rate(threshold, "threshold", 1.0)
        avoidable_bias = train_error - baseline_error
        variance = dev_error - train_error
        high_bias, high_variance = avoidable_bias > threshold, variance > threshold
        return cls(train_error, dev_error, baseline_error, avoidable_bias, variance,
                   threshold, _verdict(high_bias, high_variance),
                   _remedies(high_bias, high_variance))

    def __str__(self) -> str:
        def line(label: str, value: float, note: str = "") -> str:
            return f"  {label:<16}{value:>8.2%}{note}"

        def gap_note(gap: float, high: bool, negative: str) -> str:
            return "  high" if high else f"  ({negative})" if gap < 0 else ""

        lines = [f"diagnosis: {self.verdict} (a gap is high above {self.threshold:.2%})",
                 line("baseline error", self.baseline_error),
                 line("train error", self.train_error),
                 line("dev error", self.dev_error),
                 line("avoidable bias", self.avoidable_bias,
                      gap_note(self.avoidable_bias, self.high_bias,
                               "train error below the baseline")),
                 line("variance", self.variance,
                      gap_note(self.variance, self.high_variance,
                               "dev error below the train error"))]
        if self.remedies:
            lines += ["try:", *(f"  - {remedy}" for remedy in self.remedies)]
        else:
            lines.append("nothing to fix at this threshold")
        return "\n".join(lines)


def diagnose_errors(train_error: float, dev_error: float, baseline_error: float = 0.0,
                    threshold: float = 0.05) -> DiagnosisReport:
    """The :class:`DiagnosisReport` for error rates given directly, each in [0, 1]
    (e.g. 0.15 for 15 %): avoidable bias = train - baseline, variance = dev - train,
    each high when strictly above ``threshold`` (in [0, 1])."""
    return DiagnosisReport.from_errors(train_error, dev_error, baseline_error, threshold)


def _error(model, data, name: str) -> float:
    """1 - model.score(X, y): 1 - accuracy for classification, 1 - R^2 for regression."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (X, y); got {type(data).__name__}")
    return 1.0 - float(model.score(*data))


@suggest_keywords
def diagnose(model, train, dev, *, baseline_error: float = 0.0,
             threshold: float = 0.05) -> DiagnosisReport:
    """Evaluate ``model`` on ``train`` and ``dev`` (each a pair ``(X, y)``) and diagnose
    bias and variance (:class:`DiagnosisReport`).

    Error is ``1 - model.score(X, y)``: 1 - accuracy for classification, 1 - R^2 for
    regression (any model with a scikit-learn style ``score`` works; an unfitted fastmlp
    model is simply evaluated). 1 - R^2 exceeds 1 for a model worse than predicting the
    mean; it is reported as it is. ``baseline_error`` is the human-level or Bayes error
    (0 by default) and ``threshold`` the gap above which bias or variance counts as high.
    """
    train_error = _error(model, train, "train")
    dev_error = _error(model, dev, "dev")
    return DiagnosisReport.from_errors(train_error, dev_error, baseline_error, threshold,
                                       max_error=math.inf)
