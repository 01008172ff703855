"""scikit-learn's end-of-epoch bookkeeping and stopping rule, as a fit callback
(:class:`ScikitLearnRule`), and the early-stopping hold-out (:func:`validation_split`).
With validation data (the hold-out, or X_val given to fit) each epoch also records the
validation set's data loss in ``validation_loss_curve_``.

The rule: after each epoch the count of epochs without improvement grows when the training
loss is not below ``best_loss_ - tol`` (or, with ``early_stopping``, the validation score
not above ``best_validation_score_ + tol``) and resets otherwise; when it exceeds
``n_iter_no_change`` training stops, except with ``learning_rate="adaptive"`` (SGD
family), which divides the rate by 5 and resets the count until the rate is <= 1e-6.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Union

import numpy as np
from sklearn.model_selection import train_test_split

from ..train.callbacks import Callback
from .heldout import StreamedValidation, Validation
from .network import SGD_FAMILY

ADAPTIVE_MIN_RATE = 1e-6     # scikit-learn's "adaptive" stops once the rate is <= this
ADAPTIVE_DIVISOR = 5.0


@dataclass
class Improvement:
    """The rule's state that lasts across warm-start fits and partial_fit calls: the count
    of epochs without improvement and, with early stopping, the best weights so far."""

    count: int = 0
    best_weights: Optional[List[np.ndarray]] = None


@dataclass(frozen=True)
class LossScale:
    """fastmlp's loss against scikit-learn's (the ``network`` module docstring): ``grad``
    is g (fastmlp's gradient / scikit-learn's), ``data`` is d (scikit-learn's reported
    data loss / fastmlp's)."""

    grad: float
    data: float

    def sklearn_loss(self, logs) -> float:
        """scikit-learn's loss (data loss plus penalty) from a fit epoch's logs, a
        np.float64 as scikit-learn's (whatever the network's dtype)."""
        return np.float64(logs["data_loss"] * self.data + logs["penalty"] / self.grad)


class ScikitLearnRule(Callback):
    """scikit-learn's end-of-epoch work on ``estimator``'s fitted attributes: n_iter_, t_,
    loss_ and loss_curve_, the validation score with early stopping (``validation.score``,
    keeping a copy of the best weights in ``improvement``), the
    no-improvement count and the stopping / "adaptive" rate rule; with ``validation``
    (early stopping or not) the validation loss in validation_loss_curve_. ``converged``
    tells whether the rule stopped training."""

    def __init__(self, estimator, n_train: int, scale: LossScale, improvement: Improvement,
                 validation: Union[Validation, StreamedValidation, None] = None):
        self.estimator = estimator
        self.n_train = n_train
        self.scale = scale
        self.improvement = improvement
        self.validation = validation
        self.converged = False

    def on_epoch_end(self, epoch: int, logs) -> None:
        validation = self.validation
        self._end_epoch(self.scale.sklearn_loss(logs),
                        lambda: validation.loss(self.model, self.scale.data),
                        lambda: validation.score(self.estimator))

    def run_out_diverged(self, max_iter: int) -> None:
        """scikit-learn's epochs from a diverged one (early stopping only) to ``max_iter``:
        its weights are NaN from there, so each epoch records a NaN loss and a NaN
        validation score, which compares false and resets the count: it never stops."""
        while self.estimator.n_iter_ < max_iter and not self.converged:
            self._end_epoch(np.float64(np.nan), lambda: np.float64(np.nan), lambda: np.nan)

    def _end_epoch(self, loss: np.float64, validation_loss: Callable[[], np.float64],
                   validation_score: Callable[[], float]) -> None:
        est = self.estimator
        est.loss_ = loss
        est.loss_curve_.append(est.loss_)
        est.n_iter_ += 1
        est.t_ += self.n_train
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if self.validation is not None:
            est.validation_loss_curve_.append(validation_loss())
        if not est.early_stopping:
            self._count_loss_improvement()
        else:
            self._count_score_improvement(validation_score())
        if self.improvement.count > est.n_iter_no_change:
            if self._lower_rate():
                self.improvement.count = 0
            else:
                self.converged = True
                self.model.stop_training = True

    def _count_loss_improvement(self) -> None:
        """scikit-learn's rule on the training loss."""
        est = self.estimator
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            self.improvement.count += 1
        else:
            self.improvement.count = 0
        est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])

    def _count_score_improvement(self, score: float) -> None:
        """scikit-learn's rule on the validation score; keeps the best weights."""
        est = self.estimator
        est.validation_scores_.append(score)
        if est.verbose:
            print(f"Validation score: {score:f}")
        if score < est.best_validation_score_ + est.tol:
            self.improvement.count += 1
        else:
            self.improvement.count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            self.improvement.best_weights = self.model.get_weights()

    def _lower_rate(self) -> bool:
        """"adaptive" (SGD family): divide the rate by 5 unless it is already <= 1e-6;
        True if it did."""
        est = self.estimator
        optimizer = self.model.optimizer
        if est.learning_rate != "adaptive" or est.solver not in SGD_FAMILY or \
                est.learning_rate_init * optimizer.scale <= ADAPTIVE_MIN_RATE:
            return False
        optimizer.scale /= ADAPTIVE_DIVISOR
        if est.verbose:
            print(f"Setting learning rate to {est.learning_rate_init * optimizer.scale:f}")
        return True


def validation_split(X, Y, labels, sample_weight, rs, fraction: float, strata=None):
    """((X, Y, w) to train on, the held-out :class:`Validation`): a ``fraction`` hold-out
    drawn from ``rs`` by train_test_split, stratified by ``strata`` unless None."""
    arrays = [X, Y, labels] + ([] if sample_weight is None else [sample_weight])
    parts = train_test_split(*arrays, random_state=rs, test_size=fraction, stratify=strata)
    X_train, X_val, Y_train, Y_val, _, labels_val = parts[:6]
    w_train, w_val = parts[6:] if sample_weight is not None else (None, None)
    if X_val.shape[0] < 2:
        raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                         f"(got {fraction}) or the size of your dataset "
                         f"({X.shape[0]} samples).")
    return (X_train, Y_train, w_train), Validation(X_val, Y_val, labels_val, w_val)
