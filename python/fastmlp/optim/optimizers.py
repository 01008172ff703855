"""Optimizers: SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam, AdamW (docs/conventions.md).

Each keeps its hyperparameters, its counters and its state arrays, and performs a step
with two calls into the model's backend over the model's flat parameter and gradient
buffers: one fixed-order reduction, ``sum_squares(grads)``, whose result serves both
the check that the gradient is finite (DivergenceError before anything changes) and
the optional global-norm clipping; then one fused in-place update,
``optimizer_update(...)``. With g the gradient (after clipping), t the step counted
from 1 and lr the current rate:

=========  ======================================================================
SGD        ``p -= lr * g``
Momentum   ``v = mu*v - lr*g;  p += v``  (0 <= mu <= 1)
Nesterov   ``v_prev = v;  v = mu*v - lr*g;  p += -mu*v_prev + (1+mu)*v``
AdaGrad    ``h += g^2;  p -= lr*g / (sqrt(h) + eps)``
RMSProp    ``h = rho*h + (1-rho)*g^2;  p -= lr*g / (sqrt(h) + eps)``
Adam       ``m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;``
           ``p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)``, or with
           ``eps_placement="before_correction"``: ``lr_t = lr*sqrt(1-b2^t)/(1-b1^t);``
           ``p -= lr_t*m / (sqrt(v) + eps)``
AdamW      ``p -= lr*weight_decay*p``, then the Adam step
=========  ======================================================================

Clipping (``clipnorm=c``): when ``||g|| > c`` the step uses ``g * c/||g||`` (the norm
over all parameters at once); otherwise g unchanged.

The learning rate is a number or a :mod:`fastmlp.schedules` schedule; the rate a step
uses is ``schedule(counter) * scale`` (or ``learning_rate * scale``), ``scale`` being
1.0 unless a callback lowered it. The counters (steps, epochs, samples seen) start at 0,
carry across fits, and are saved by :meth:`Optimizer.state_dict` with the state arrays,
so an optimizer restored with :meth:`Optimizer.load_state_dict` continues bit for bit.

:data:`REGISTRY` is the one table of optimizers: per row the name (model files, the CLI,
:func:`get_optimizer`), the class (its hyperparameters), the backend kernel id and the
state arrays it keeps. tests/kernels/test_registries.py checks the kernel ids and the
state against the C++ core's.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Type

import numpy as np

from . import rates, schedules, state as state_codec
from .._keywords import suggest_keywords
from .._validation import check_nonnegative_float, check_positive_float
from ..errors import DivergenceError
from .rates import LearningRate, check_learning_rate
from .schedules import Schedule


# ------------------------------------------------------------------- argument checks
def _check_range(value, name: str, low: float, high: float, *, low_open: bool,
                 high_open: bool = True) -> float:
    """low < value < high (low <= value with low_open=False, value <= high with
    high_open=False)."""
    expected = (f"a number with {low:g} {'<' if low_open else '<='} {name} "
                f"{'<' if high_open else '<='} {high:g}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}; got {value!r} of type "
                        f"{type(value).__name__}")
    value = float(value)
    if not ((low < value if low_open else low <= value)
            and (value < high if high_open else value <= high)):
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return value


# Adam's eps placements: after the bias correction (the paper's Algorithm 1), or added to
# sqrt(v) before it, the correction folded into the rate (the paper's section 2 form;
# scikit-learn's, TensorFlow's).
EPS_PLACEMENTS = ("after_correction", "before_correction")


def _check_eps_placement(value) -> str:
    if not isinstance(value, str) or value not in EPS_PLACEMENTS:
        raise ValueError(f"eps_placement must be one of {EPS_PLACEMENTS}; got {value!r}")
    return value


def _check_clipnorm(value) -> Optional[float]:
    return None if value is None else check_positive_float(value, "clipnorm")


# ------------------------------------------------------------------------ the base
class Optimizer:
    """Base class. Subclasses set ``hyperparameters`` (their own constructor arguments);
    a registered class's ``name``, ``kernel`` (the backend's kernel id) and
    ``uses_m``/``uses_v`` (the state it keeps) are its row's in :data:`REGISTRY`.

    Attributes: ``learning_rate`` (number or schedule, assignable), ``clipnorm``,
    ``iterations`` (steps taken), ``epochs`` (epochs completed), ``samples`` (samples
    seen), ``scale`` (multiplies the rate, 1.0), and the state arrays ``m`` and ``v``
    (allocated at the first step with the parameters' size and dtype; None until then
    or when unused).
    """

    name = ""
    kernel = ""
    hyperparameters: Tuple[str, ...] = ()
    uses_m = False
    uses_v = False

    def __init__(self, learning_rate: LearningRate, clipnorm: Optional[float]):
        self.learning_rate = learning_rate
        self.clipnorm = _check_clipnorm(clipnorm)
        self.iterations = 0
        self.epochs = 0
        self.samples = 0
        self.epoch_start_samples = 0    # samples seen before the current epoch
        self.scale = 1.0
        self.m: Optional[np.ndarray] = None
        self.v: Optional[np.ndarray] = None
        self.last_learning_rate: Optional[float] = None   # the rate of the latest step

    @property
    def learning_rate(self) -> LearningRate:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: LearningRate) -> None:
        self._learning_rate = check_learning_rate(value)

    # ------------------------------------------------------------------- the rate
    @property
    def current_learning_rate(self) -> float:
        """The rate the next step will use: the number or ``schedule(counter)``, times
        ``scale`` (:func:`fastmlp.optim.rates.current_rate`)."""
        return rates.current_rate(self.learning_rate, self, self.scale)

    def step_rates(self, samples_per_step: Sequence[int]) -> np.ndarray:
        """The rates (float64) of the next ``len(samples_per_step)`` steps, step i taking
        ``samples_per_step[i]`` samples, as :attr:`current_learning_rate` would give them
        step by step within the current epoch (the counters are not changed)."""
        return rates.step_rates(self.learning_rate, self, self.scale, samples_per_step)

    def kernel_arguments(self) -> Dict[str, float]:
        """b1, b2, eps, weight_decay for Backend.optimizer_update (and the fused path)."""
        return {}

    # ------------------------------------------------------------------- stepping
    def step(self, backend, params: np.ndarray, grads: np.ndarray, *, samples: int = 1) -> None:
        """One update of the flat ``params`` from ``grads`` through ``backend``.

        ``samples`` is the number of training samples behind this gradient (the fit loop
        passes the batch size; only PowerDecay reads the count). A non-finite gradient
        raises DivergenceError before the parameters, the state or the counters change.
        """
        lr = self.current_learning_rate
        norm2 = backend.sum_squares(grads)
        if not math.isfinite(norm2):
            raise self.non_finite_gradient(norm2, lr)
        m, v = self.state_for(params)
        grad_scale = 1.0
        if self.clipnorm is not None:
            norm = math.sqrt(norm2)
            if norm > self.clipnorm:
                grad_scale = self.clipnorm / norm
        backend.optimizer_update(self.kernel, params, grads, m, v, lr=lr,
                                 grad_scale=grad_scale, step=self.iterations + 1,
                                 **self.kernel_arguments())
        self.advance(1, samples, lr)

    def non_finite_gradient(self, norm2: float, lr: float) -> DivergenceError:
        """The error of a step whose gradient is not finite (squared norm ``norm2``),
        taken as the next step at rate ``lr``."""
        return DivergenceError(
            f"the gradient is not finite (its squared norm is {norm2}) at optimizer "
            f"step {self.iterations + 1} with learning rate {lr:g}; lower the learning "
            f"rate or clip the gradient (clipnorm=). The parameters and the "
            f"optimizer's state are unchanged.", learning_rate=lr)

    def advance(self, steps: int, samples: int, last_rate: float) -> None:
        """Count ``steps`` updates over ``samples`` samples, the last one at ``last_rate``
        (step does this; the fused training path counts the steps it ran)."""
        if steps > 0:
            self.iterations += steps
            self.samples += samples
            self.last_learning_rate = last_rate

    def end_epoch(self) -> None:
        """Count a completed epoch (per-epoch schedules move on); called by fit."""
        self.epochs += 1
        self.epoch_start_samples = self.samples

    def check_params(self, params: np.ndarray) -> None:
        """ValueError unless the state arrays (if allocated) fit ``params``: an optimizer's
        state belongs to one model (fit checks this before it keeps the optimizer)."""
        for attr in ("m", "v"):
            state = getattr(self, attr)
            if state is not None and (state.shape != params.shape
                                      or state.dtype != params.dtype):
                raise ValueError(
                    f"this {type(self).__name__}'s state {attr} holds {state.size} "
                    f"{state.dtype} values but the parameters are {params.size} "
                    f"{params.dtype} values: an optimizer's state belongs to one model; "
                    f"give this model a new optimizer")

    def state_for(self, params: np.ndarray):
        """m and v for ``params``: checked, and allocated (zeros) at the first use."""
        self.check_params(params)
        if self.uses_m and self.m is None:
            self.m = np.zeros_like(params)
        if self.uses_v and self.v is None:
            self.v = np.zeros_like(params)
        return self.m, self.v

    # ------------------------------------------------------------- configuration
    def get_config(self) -> dict:
        """The constructor's arguments as plain data (a schedule as its config)."""
        rate = self.learning_rate
        return {"learning_rate": schedules.to_config(rate) if isinstance(rate, Schedule)
                else rate,
                **{name: getattr(self, name) for name in self.hyperparameters},
                "clipnorm": self.clipnorm}

    @classmethod
    def from_config(cls, config: dict) -> "Optimizer":
        if not isinstance(config, dict):
            raise ValueError(f"an optimizer config must be a dict; got {config!r}")
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.from_config(config["learning_rate"])
        return cls(**config)

    def __repr__(self) -> str:
        args = {"learning_rate": self.learning_rate,
                **{name: getattr(self, name) for name in self.hyperparameters}}
        if self.clipnorm is not None:
            args["clipnorm"] = self.clipnorm
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in args.items())})"

    # --------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit, as plain data: the name, the
        config (hyperparameters, schedule), the counters, ``scale`` and copies of the
        state arrays (None when unused or not allocated yet)."""
        return state_codec.state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (hyperparameters included). Everything is checked
        first (ValueError/TypeError); on error nothing changes. The arrays are copied."""
        state_codec.load_state_dict(self, state)


# ------------------------------------------------------------------ the optimizers
class SGD(Optimizer):
    """Stochastic gradient descent: ``p -= lr * g``.

    ``SGD(learning_rate=0.01, *, clipnorm=None)``.
    """


    @suggest_keywords
    def __init__(self, learning_rate: LearningRate = 0.01, *, clipnorm: Optional[float] = None):
        super().__init__(learning_rate, clipnorm)


class Momentum(Optimizer):
    """Momentum (CS231n): ``v = mu*v - lr*g; p += v`` with v starting at 0.

    ``Momentum(learning_rate=0.01, momentum=0.9, *, clipnorm=None)``, 0 <= momentum <= 1
    (1: the velocity never decays, as scikit-learn allows). The velocity is the state
    array ``m``.
    """

    hyperparameters = ("momentum",)

    @suggest_keywords
    def __init__(self, learning_rate: LearningRate = 0.01, momentum: float = 0.9, *,
                 clipnorm: Optional[float] = None):
        super().__init__(learning_rate, clipnorm)
        self.momentum = _check_range(momentum, "momentum", 0.0, 1.0, low_open=False,
                                     high_open=False)

    def kernel_arguments(self):
        return {"b1": self.momentum}


class Nesterov(Momentum):
    """Nesterov momentum (CS231n look-ahead, in the rewritten form):
    ``v_prev = v; v = mu*v - lr*g; p += -mu*v_prev + (1+mu)*v``.

    The same as evaluating the gradient at the look-ahead point ``x + mu*v`` of the
    notes' form ``v = mu*v - lr*grad(x + mu*v); x += v``: our p is their ``x + mu*v``.
    ``Nesterov(learning_rate=0.01, momentum=0.9, *, clipnorm=None)``.
    """



class AdaGrad(Optimizer):
    """AdaGrad: ``h += g^2; p -= lr*g / (sqrt(h) + eps)``, h starting at 0.

    ``AdaGrad(learning_rate=0.01, eps=1e-8, *, clipnorm=None)``. h is the state ``v``.
    """

    hyperparameters = ("eps",)

    @suggest_keywords
    def __init__(self, learning_rate: LearningRate = 0.01, eps: float = 1e-8, *,
                 clipnorm: Optional[float] = None):
        super().__init__(learning_rate, clipnorm)
        self.eps = check_positive_float(eps, "eps")

    def kernel_arguments(self):
        return {"eps": self.eps}


class RMSProp(Optimizer):
    """RMSProp: ``h = rho*h + (1-rho)*g^2; p -= lr*g / (sqrt(h) + eps)``, h from 0.

    ``RMSProp(learning_rate=0.001, rho=0.9, eps=1e-8, *, clipnorm=None)``, 0 < rho < 1.
    h is the state ``v``.
    """

    hyperparameters = ("rho", "eps")

    @suggest_keywords
    def __init__(self, learning_rate: LearningRate = 0.001, rho: float = 0.9,
                 eps: float = 1e-8, *, clipnorm: Optional[float] = None):
        super().__init__(learning_rate, clipnorm)
        self.rho = _check_range(rho, "rho", 0.0, 1.0, low_open=True)
        self.eps = check_positive_float(eps, "eps")

    def kernel_arguments(self):
        return {"b2": self.rho, "eps": self.eps}


class Adam(Optimizer):
    """Adam with the paper's bias correction, t counted from 1:
    ``m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)``.

    ``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, eps=1e-8, *,
    eps_placement="after_correction", clipnorm=None)``, 0 <= beta < 1.
    ``eps_placement="before_correction"`` adds eps to ``sqrt(v)`` before the bias
    correction, which moves into the rate: ``lr_t = lr * sqrt(1-b2^t) / (1-b1^t)``
    (in double), ``p -= (lr_t*m) / (sqrt(v) + eps)``, scikit-learn's arithmetic (the
    paper's section 2 form). The two differ only through eps (most while v is small).
    """

    hyperparameters = ("beta_1", "beta_2", "eps", "eps_placement")

    @suggest_keywords
    def __init__(self, learning_rate: LearningRate = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, eps: float = 1e-8, *,
                 eps_placement: str = "after_correction", clipnorm: Optional[float] = None):
        super().__init__(learning_rate, clipnorm)
        self.beta_1 = _check_range(beta_1, "beta_1", 0.0, 1.0, low_open=False)
        self.beta_2 = _check_range(beta_2, "beta_2", 0.0, 1.0, low_open=False)
        self.eps = check_positive_float(eps, "eps")
        self.eps_placement = _check_eps_placement(eps_placement)

    def kernel_arguments(self):
        return {"b1": self.beta_1, "b2": self.beta_2, "eps": self.eps,
                "eps_before_correction": self.eps_placement == "before_correction"}


class AdamW(Adam):
    """AdamW: decoupled weight decay ``p -= lr*weight_decay*p``, then the Adam step
    (Loshchilov & Hutter; the decay uses the current rate, schedule and scale included).

    ``AdamW(learning_rate=0.001, beta_1=0.9, beta_2=0.999, eps=1e-8,
    weight_decay=0.01, *, eps_placement="after_correction", clipnorm=None)``,
    weight_decay >= 0; ``eps_placement`` as :class:`Adam`'s.
    """

    hyperparameters = ("beta_1", "beta_2", "eps", "weight_decay", "eps_placement")

    @suggest_keywords
    def __init__(self, learning_rate: LearningRate = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01, *,
                 eps_placement: str = "after_correction", clipnorm: Optional[float] = None):
        super().__init__(learning_rate, beta_1, beta_2, eps, eps_placement=eps_placement,
                         clipnorm=clipnorm)
        self.weight_decay = check_nonnegative_float(weight_decay, "weight_decay")

    def kernel_arguments(self):
        return {**super().kernel_arguments(), "weight_decay": self.weight_decay}


# ---------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class OptimizerKind:
    """One row of :data:`REGISTRY`: the optimizer's name, its class, the backend kernel
    it steps with and the state arrays it keeps ("m": velocity or first moment, "v":
    second moment or squared-gradient sum)."""

    name: str
    cls: Type[Optimizer]
    kernel: str
    state: Tuple[str, ...]

    @property
    def uses_m(self) -> bool:
        return "m" in self.state

    @property
    def uses_v(self) -> bool:
        return "v" in self.state


REGISTRY: Tuple[OptimizerKind, ...] = (
    #             name        class     kernel      state
    OptimizerKind("sgd",      SGD,      "sgd",      ()),
    OptimizerKind("momentum", Momentum, "momentum", ("m",)),
    OptimizerKind("nesterov", Nesterov, "nesterov", ("m",)),
    OptimizerKind("adagrad",  AdaGrad,  "adagrad",  ("v",)),
    OptimizerKind("rmsprop",  RMSProp,  "rmsprop",  ("v",)),
    OptimizerKind("adam",     Adam,     "adam",     ("m", "v")),
    OptimizerKind("adamw",    AdamW,    "adamw",    ("m", "v")),
)
for _row in REGISTRY:    # each class answers with its row's name, kernel and state
    _row.cls.name, _row.cls.kernel = _row.name, _row.kernel
    _row.cls.uses_m, _row.cls.uses_v = _row.uses_m, _row.uses_v
del _row

OPTIMIZERS: Dict[str, Type[Optimizer]] = {row.name: row.cls for row in REGISTRY}


def get_optimizer(optimizer, learning_rate: Optional[LearningRate] = None) -> Optimizer:
    """An Optimizer from a name ("sgd", "momentum", "nesterov", "adagrad", "rmsprop",
    "adam", "adamw"; learning_rate=None means its default) or an instance (returned as
    is; giving learning_rate too is a ValueError: set it on the instance)."""
    if isinstance(optimizer, Optimizer):
        if learning_rate is not None:
            raise ValueError(f"learning_rate={learning_rate!r} was given together with an "
                             f"optimizer instance ({optimizer!r}); set the rate on the "
                             f"instance, or pass the optimizer by name")
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name, one of {list(OPTIMIZERS)}, or a "
                        f"fastmlp.optimizers.Optimizer; got {optimizer!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {list(OPTIMIZERS)}")
    cls = OPTIMIZERS[optimizer]
    return cls() if learning_rate is None else cls(learning_rate)


__all__ = ["AdaGrad", "Adam", "AdamW", "Momentum", "Nesterov", "Optimizer", "RMSProp", "SGD",
           "get_optimizer"]
