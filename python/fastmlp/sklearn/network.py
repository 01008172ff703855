"""scikit-learn's MLP parameters as fastmlp's: the network (layers, scikit-learn's initial
weights), the optimizer and its schedule, the L2 penalty and the batch size. Each function
reads the estimator's public parameters (``params``: the estimator itself).

What scikit-learn minimizes, and how it maps onto fastmlp (docs/conventions.md):

* Per mini-batch of m rows (weights w_i, sw = sum w_i; sw = m without weights) scikit-learn
  steps along the gradient of ``L_sk + alpha / (2 sw) * sum(W**2)``, where L_sk is the
  weighted mean over rows of: the log-loss summed over outputs (classification) or half
  the squared error summed over outputs (regression; its *reported* squared loss is the
  mean over outputs, ``((y - y_pred)**2).mean() / 2``).
* fastmlp's losses average over outputs instead, so with k outputs its gradient is
  ``g`` times scikit-learn's: g = 1 for softmax cross-entropy, 1/k for binary
  cross-entropy (binary: k = 1; multilabel), 2/k for MSE. The estimators compensate
  exactly: the penalty is ``L2(g * alpha * m / sw, scale="batch")`` (m / sw taken as
  n / sum(w) over the training set: exact without weights or with full batches), the
  rate of the solvers that are not invariant to the gradient's scale ("sgd", "momentum",
  "nesterov") is ``learning_rate_init / g``, and the epsilon of the adaptive ones is
  ``epsilon * g``. The weights then follow scikit-learn's updates; "adam" (and "adamw")
  add epsilon where scikit-learn's Adam does, before the bias correction
  (``eps_placement="before_correction"``).
* ``loss_``/``loss_curve_`` are scikit-learn's: the batch-size-weighted mean over the
  epoch of each step's loss plus penalty, i.e. ``data_loss * d + penalty / g`` from
  fit's history, with d = 1 (softmax), k (binary cross-entropy), 1/2 (MSE).
"""
from __future__ import annotations

import numbers
import threading
import warnings
from typing import List, Optional

import numpy as np
from sklearn.utils import check_random_state

from ..model.sequential import Sequential
from ..nn.activations import ACTIVATIONS
from ..nn.regularizers import L2
from ..nn.stacks import mlp_layers
from ..optim.optimizers import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, Optimizer, RMSProp
from ..optim.schedules import PowerDecay

# scikit-learn's activation names -> ours (fastmlp.activations.ACTIVATIONS)
SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
# What the estimators' ``activation`` takes: scikit-learn's four names, then each of
# fastmlp's other activations by its own name (its default parameter), one name per
# activation ("linear" and "sigmoid" go by scikit-learn's "identity" and "logistic").
ESTIMATOR_ACTIVATIONS = {**SKLEARN_ACTIVATIONS,
                         **{name: name for name in ACTIVATIONS
                            if name not in SKLEARN_ACTIVATIONS.values()}}
# Solvers whose step scales with the gradient (the rate absorbs fastmlp's loss scale and
# learning_rate="invscaling"/"adaptive" apply, as scikit-learn's "sgd").
SGD_FAMILY = ("sgd", "momentum", "nesterov")
SOLVERS = (*SGD_FAMILY, "adam", "adagrad", "rmsprop", "adamw", "lbfgs")
AUTO_BATCH = 200             # batch_size="auto" is min(200, n_samples)


# One RandomState per thread, reseeded by each fit with an integer random_state: NumPy's
# RandomState(seed) costs about 120 us (its MT19937 is seeded twice), reseeding 2 us to
# the same state. A fit draws from it only before training (initial weights, hold-out,
# the network's seed) and keeps no reference, so the next fit's reseeding is all the
# invalidation it needs.
_RESEEDED = threading.local()


def fit_random_state(random_state) -> np.random.RandomState:
    """scikit-learn's ``check_random_state(random_state)`` for one fit's draws: an integer
    gives the thread's RandomState reseeded with it (the same stream as a new
    RandomState(random_state))."""
    if not isinstance(random_state, numbers.Integral):
        return check_random_state(random_state)
    rs = getattr(_RESEEDED, "random_state", None)
    if rs is None:
        rs = _RESEEDED.random_state = np.random.RandomState(random_state)
    else:
        rs.seed(random_state)
    return rs


def initial_weights(rs: np.random.RandomState, layer_units: List[int], activation: str
                    ) -> List[np.ndarray]:
    """scikit-learn's initialization, drawn from ``rs`` in its order: per layer W then b,
    both uniform in ``+-sqrt(factor / (fan_in + fan_out))`` with factor 2 for logistic
    and 6 otherwise (Glorot & Bengio; fastmlp's other activations too). The same random_state therefore gives the same
    initial weights as scikit-learn; returned as fastmlp's [W1 (n_out, n_in), b1, ...]."""
    factor = 2.0 if activation == "logistic" else 6.0
    weights = []
    for fan_in, fan_out in zip(layer_units, layer_units[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        weights.append(rs.uniform(-bound, bound, (fan_in, fan_out)).T)
        weights.append(rs.uniform(-bound, bound, fan_out))
    return weights


def build_network(params, layer_units: List[int], loss: str, seed: int, dtype) -> Sequential:
    """:func:`~fastmlp.nn.stacks.mlp_layers` of the hidden widths: Dense(h, activation)
    [+ Dropout(dropout)] per hidden layer, then a linear output layer (logits: the loss
    owns the softmax/sigmoid), as a Sequential of the estimator's backend in ``dtype``."""
    layers = mlp_layers(layer_units[1:-1], layer_units[-1],
                        activation=ESTIMATOR_ACTIVATIONS[params.activation], dropout=params.dropout)
    return Sequential(layers, input_dim=layer_units[0], loss=loss, backend=params.backend,
                      dtype=dtype, seed=seed, precision=params.precision)


def network_description(params, layer_units: List[int], dtype) -> dict:
    """What warm_start and partial_fit need unchanged to continue a fitted network (of
    ``dtype``)."""
    return {"layer units": layer_units, "activation": params.activation,
            "dropout": params.dropout, "backend": params.backend,
            "dtype": np.dtype(dtype).name, "precision": params.precision}


def check_same_network(fitted: dict, now: dict) -> None:
    """warm_start / partial_fit continue the fitted network: its shape and kind (the
    :func:`network_description` then and now) must not have changed since."""
    for key, value in fitted.items():
        if now[key] != value:
            raise ValueError(f"warm_start and partial_fit continue the fitted network, "
                             f"but its {key} changed from {value!r} to {now[key]!r}; "
                             f"fit with warm_start=False to start anew")


def batch_size(params, n_samples: int) -> int:
    """batch_size="auto" is min(200, n); a larger one is clipped to n (with scikit-learn's
    warning)."""
    if params.batch_size == "auto":
        return min(AUTO_BATCH, n_samples)
    if params.batch_size > n_samples:
        warnings.warn(f"Got `batch_size` ({params.batch_size}) larger than the sample size "
                      f"({n_samples}). It is going to be clipped")
    return min(params.batch_size, n_samples)


def make_optimizer(params, grad_factor: float) -> Optimizer:
    """The fastmlp optimizer for ``solver`` with scikit-learn's meaning of the rate
    and its schedule (see the module docstring for the scale factor g)."""
    g = grad_factor
    if params.solver in SGD_FAMILY:
        lr0 = params.learning_rate_init / g
        rate = PowerDecay(lr0, params.power_t) if params.learning_rate == "invscaling" else lr0
        if params.solver == "momentum" or (params.solver == "sgd" and params.momentum > 0
                                           and not params.nesterovs_momentum):
            return Momentum(rate, params.momentum)
        if params.solver == "nesterov" or (params.solver == "sgd" and params.momentum > 0):
            return Nesterov(rate, params.momentum)
        return SGD(rate)
    lr0, eps = params.learning_rate_init, params.epsilon * g
    if params.solver in ("adam", "adamw"):
        cls = Adam if params.solver == "adam" else AdamW
        return cls(lr0, params.beta_1, params.beta_2, eps, eps_placement="before_correction")
    return AdaGrad(lr0, eps) if params.solver == "adagrad" else RMSProp(lr0, eps=eps)


def l2_penalty(alpha: float, grad_factor: float) -> Optional[L2]:
    """scikit-learn's ``alpha`` as fastmlp's per-batch L2: ``g * alpha`` divided by each
    batch's weight sum (its size without sample weights), as scikit-learn divides its
    penalty and gradient; None for alpha 0."""
    penalty = grad_factor * alpha
    return L2(penalty, scale="weight") if penalty > 0 else None
