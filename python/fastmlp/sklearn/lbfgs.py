"""scikit-learn's ``solver="lbfgs"``: the whole-batch objective minimized by
``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``, as scikit-learn's
``_fit_lbfgs`` calls it (options ``maxfun=max_fun``, ``maxiter=max_iter``,
``gtol=tol``; iprint from verbose on SciPy releases that take it).

The objective is scikit-learn's: its data loss plus ``alpha / (2 sw) * sum(W**2)``
(weights only; sw the sample weights' sum, n without them), and its gradient. The model
computes fastmlp's, over all rows in one evaluation (:class:`fastmlp.train.gradient.
WholeBatch`: one GIL-released C++ call on the native backend), with the estimators'
penalty ``L2(g * alpha * n / sw, scale="batch")``; the mapping of the network module
turns it into scikit-learn's: loss ``data_loss * d + penalty / g``, gradient ``/ g``.
SciPy works on float64 vectors of the model's flat parameters in their order (each
layer's W (n_out, n_in) then b); the model keeps its dtype and converts at the boundary.

As scikit-learn: ``n_iter_`` is the result's iteration count (at most max_iter), ``loss_``
its final objective, ``t_`` stays as it was (0 after a fresh fit) and there is no
``loss_curve_``; early_stopping is ignored and a run that stops short warns with
scikit-learn's ConvergenceWarning ("lbfgs failed to converge ...").
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from ..train.gradient import WholeBatch
from .network import l2_penalty
from .stopping import LossScale
from .weights import non_finite_weights


def check_lbfgs_params(params) -> None:
    """What fastmlp's lbfgs needs of the estimator's parameters: a deterministic
    objective (no dropout)."""
    if params.dropout > 0:
        raise ValueError(f"solver='lbfgs' minimizes a deterministic objective: dropout must "
                         f"be 0, got {params.dropout}; use a stochastic solver for dropout")


def fit_lbfgs(estimator, X: np.ndarray, Y: np.ndarray,
              sample_weight: Optional[np.ndarray]) -> None:
    """One fit of ``estimator.model_`` (prepared X, Y) by L-BFGS-B from its current
    weights; sets n_iter_ and loss_ (the caller refreshes coefs_ and intercepts_)."""
    import scipy.optimize
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    from sklearn.utils.optimize import _check_optimize_result

    model = estimator.model_
    objective = sklearn_objective(estimator, X, Y, sample_weight)
    iprint = 1 if estimator.verbose is True or estimator.verbose >= 1 else -1
    with estimator._threads():
        result = scipy.optimize.minimize(
            objective, model.flat_params.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": estimator.max_fun, "maxiter": estimator.max_iter,
                     "gtol": estimator.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
    estimator.n_iter_ = _check_optimize_result("lbfgs", result, estimator.max_iter)
    estimator.loss_ = float(result.fun)
    with model.writing_params(), model.weights_lock.writing:
        model.flat_params[...] = result.x
    if not np.isfinite(result.x).all():
        raise non_finite_weights()


def sklearn_objective(estimator, X: np.ndarray, Y: np.ndarray,
                      sample_weight: Optional[np.ndarray]) -> "ScikitLearnObjective":
    """scikit-learn's objective of ``estimator.model_`` on prepared X, Y (the model's
    penalty set to the estimators' L2 for these rows)."""
    model, g = estimator.model_, estimator._grad_factor
    model.regularizer = l2_penalty(estimator.alpha, g)
    weights = None if sample_weight is None else sample_weight.astype(model.dtype)
    return ScikitLearnObjective(WholeBatch(model, X, Y, weights),
                                LossScale(g, estimator._loss_factor))


class ScikitLearnObjective:
    """scikit-learn's loss and float64 gradient at a float64 parameter vector, from the
    model's whole-batch objective (``scale``: the network module's factors g and d)."""

    def __init__(self, whole_batch: WholeBatch, scale: LossScale):
        self.whole_batch, self.scale = whole_batch, scale

    def __call__(self, params: np.ndarray) -> Tuple[float, np.ndarray]:
        value = self.whole_batch(params)
        grads = self.whole_batch.model.flat_grads
        if not math.isfinite(value.loss_sum):      # no gradient was computed
            return value.loss_sum, np.full(grads.shape, np.nan)
        data_loss = value.loss_sum / value.weight if value.weight > 0 else 0.0
        loss = self.scale.sklearn_loss({"data_loss": data_loss, "penalty": value.penalty})
        return loss, grads.astype(np.float64) / self.scale.grad
