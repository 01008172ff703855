"""Metrics from running totals over batches (docs/conventions.md): one pass, no second one.

Accuracy counts samples whose prediction is right (for multilabel binary
cross-entropy: all k labels right, as scikit-learn's accuracy_score). R^2 per output j
is 1 - SSE_j / SST_j with SST_j = sum (y - mean y)^2 from running sums of y and y^2,
finished at the end and averaged uniformly over outputs; an output whose target is
constant scores 1.0 when predicted exactly, else 0.0 (scikit-learn's convention).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np


class Accuracy:
    """Running fraction of samples predicted right by ``count_correct(logits, targets)``."""

    name = "accuracy"

    def __init__(self, count_correct: Callable[[np.ndarray, np.ndarray], int]):
        self._count_correct = count_correct
        self._correct = 0
        self._n = 0

    def add(self, logits: np.ndarray, targets: np.ndarray) -> None:
        self._correct += self._count_correct(logits, targets)
        self._n += len(logits)

    def value(self) -> float:
        return self._correct / self._n

    def state(self) -> dict:
        """The running sums (a checkpoint keeps them to finish a resumed epoch)."""
        return {"count": self._n, "correct": self._correct}

    def load(self, state: dict) -> None:
        self._n, self._correct = state["count"], state["correct"]


class R2:
    """Running R^2 (coefficient of determination), averaged uniformly over outputs.

    Sums are kept in float64 of y - c, with c the first batch's mean, so SST
    = sum (y-c)^2 - (sum (y-c))^2 / n does not cancel catastrophically and is exactly 0
    for a constant target.
    """

    name = "r2"

    def __init__(self, predictions: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        """``predictions(logits)``: the values scored (None: the logits themselves)."""
        self._predictions = predictions
        self._n = 0
        self._shift: Optional[np.ndarray] = None
        self._sse = self._sum = self._sum_sq = 0.0

    def add(self, logits: np.ndarray, targets: np.ndarray) -> None:
        predictions = logits if self._predictions is None else self._predictions(logits)
        y = targets.astype(np.float64)
        if self._shift is None:
            self._shift = y.mean(axis=0)
        centered = y - self._shift
        error = predictions - y
        self._n += len(y)
        self._sse = self._sse + (error * error).sum(axis=0)
        self._sum = self._sum + centered.sum(axis=0)
        self._sum_sq = self._sum_sq + (centered * centered).sum(axis=0)

    def value(self) -> float:
        return r2_from_sums(self._n, self._sse, self._sum, self._sum_sq)

    def state(self) -> dict:
        """The running sums (a checkpoint keeps them to finish a resumed epoch)."""
        return {"count": self._n, "shift": self._shift, "sse": self._sse, "sum": self._sum,
                "sum_sq": self._sum_sq}

    def load(self, state: dict) -> None:
        self._n = state["count"]
        self._shift, self._sse, self._sum, self._sum_sq = (
            None if state[key] is None else np.array(state[key], np.float64)
            for key in ("shift", "sse", "sum", "sum_sq"))


def r2_from_sums(n: int, sse, total, total_sq) -> float:
    """R^2 averaged uniformly over outputs from running sums over n samples, per output:
    ``sse`` = sum (y_hat - y)^2, ``total`` = sum (y - c), ``total_sq`` = sum (y - c)^2 for
    any shift c (float64 arrays)."""
    sst = np.maximum(total_sq - total * total / n, 0.0)
    constant = sst == 0
    ratio = sse / np.where(constant, 1.0, sst)
    scores = np.where(constant, np.where(sse == 0, 1.0, 0.0), 1.0 - ratio)
    return float(scores.mean())


def weight_total(weights: np.ndarray) -> float:
    """The sum of a batch's row weights in double, rows added in ascending order (the
    order the fused training path uses too, so both give the same loss scale 1/sum)."""
    return float(np.add.accumulate(weights, dtype=np.float64)[-1]) if len(weights) else 0.0


class PassTotals:
    """Mean data loss and the metric of one pass over data, from running batch totals.

    ``add`` takes each batch's logits, dense targets and summed row losses; ``result``
    gives ``{"data_loss": sum of losses / n, <metric>: ...}``, i.e. batch-weighted means.
    With sample weights, ``add`` gets the weighted sum ``sum_i w_i loss_i`` and the
    batch's ``sum_i w_i``, and data_loss is the weighted mean ``sum w_i loss_i / sum w_i``;
    the metric stays unweighted (every sample counts once).
    """

    def __init__(self, metric):
        self._metric = metric
        self._loss_sum = 0.0
        self._weight = 0.0

    def add(self, logits: np.ndarray, targets: np.ndarray, loss_sum: float,
            weight_sum: Optional[float] = None) -> None:
        self._loss_sum += loss_sum
        self._weight += len(logits) if weight_sum is None else weight_sum
        self._metric.add(logits, targets)

    def result(self) -> dict:
        loss = self._loss_sum / self._weight if self._weight > 0 else 0.0
        return {"data_loss": loss, self._metric.name: self._metric.value()}

    def state(self) -> dict:
        """The running totals and the metric's sums, as plain values."""
        return {"loss_sum": self._loss_sum, "weight_sum": self._weight,
                **self._metric.state()}

    def load(self, state: dict) -> None:
        self._loss_sum, self._weight = state["loss_sum"], state["weight_sum"]
        self._metric.load(state)


def evaluation(totals) -> dict:
    """evaluate's dict from a pass's totals (:class:`PassTotals`, or a MultiTask's
    HeadTotals): the data loss as "loss", then the metrics."""
    record = totals.result()
    return {"loss": record.pop("data_loss"), **record}
