"""The built-in layers: Dense, Dropout, Maxout, BatchNorm and Normalization, each stating
its computation once as a plan (:mod:`fastmlp.nn.plans`), and ``LAYERS``, the registry of
their class names (the model file, :mod:`fastmlp.model.modelfile`, saves only these).

The Layer protocol, the base class to subclass for a layer of your own and the
:class:`Workspace` are in :mod:`fastmlp.nn.layer`; this module names them too
(``fastmlp.layers.Layer``).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Type

import numpy as np

from . import activations, initializers
from .._keywords import suggest_keywords
from .._validation import as_features, check_int, check_nonnegative_float
from .layer import Layer, PlannedLayer, Workspace
from .plans import ROWS, Buffer, Op, Plan
from .regularizers import check_regularizer

__all__ = ["BatchNorm", "Dense", "Dropout", "LAYERS", "Layer", "Maxout", "Normalization",
           "Workspace", "layers_of"]


def _check_rate(rate) -> float:
    rate = check_nonnegative_float(rate, "rate")
    if rate >= 1:
        raise ValueError(f"rate must satisfy 0 <= rate < 1 (the probability of dropping a "
                         f"unit); got {rate!r}")
    return rate


class _Affine(PlannedLayer):
    """What Dense and Maxout share: ``Z = X @ W2.T + b2`` over ``rows`` output columns,
    W2 (rows, n_in) and b2 (rows,) being 2-D/1-D views of the layer's W and b.

    Backward from dZ: ``dW2 = dZ^T X``, ``db2 = sum_i dZ_i`` and, if needed,
    ``dX = dZ W2``. Subclasses set ``self.rows`` in build and shape W, b in ``_w_shape``;
    their plans start from :meth:`_affine_buffers` and end with :meth:`_affine_backward`.
    """

    rows = 0

    def count_params(self) -> int:
        """rows * (input_dim + 1): the weights and the biases."""
        return self.rows * (self.input_dim + 1)

    def bind(self, params: np.ndarray, grads: np.ndarray) -> None:
        """W, b from ``params`` (weights first, row-major, then biases); dW, db likewise."""
        self.dtype = params.dtype
        n_weights = self.rows * self.input_dim
        self.W2 = params[:n_weights].reshape(self.rows, self.input_dim)
        self.dW2 = grads[:n_weights].reshape(self.rows, self.input_dim)
        self.b2, self.db2 = params[n_weights:], grads[n_weights:]
        self.W, self.dW = self.W2.reshape(self._w_shape()), self.dW2.reshape(self._w_shape())
        b_shape = self._w_shape()[:-1]
        self.b, self.db = self.b2.reshape(b_shape), self.db2.reshape(b_shape)

    def _w_shape(self) -> Tuple[int, ...]:
        return (self.rows, self.input_dim)

    def initialize(self, rng: np.random.Generator) -> None:
        initializers.initialize(self.init, self.W2, rng)
        self.b.fill(0)

    def _affine_buffers(self) -> Tuple[Buffer, ...]:
        """x, dy, W2, b2 and their gradients, z (the pre-activations) and dx."""
        rows, n_in = self.rows, self.input_dim
        return (Buffer("x", "input", (ROWS, n_in)),
                Buffer("dy", "grad_output", (ROWS, self.output_dim)),
                Buffer("W", "parameter", (rows, n_in), "W2"),
                Buffer("b", "parameter", (rows,), "b2"),
                Buffer("dW", "gradient", (rows, n_in), "dW2"),
                Buffer("db", "gradient", (rows,), "db2"),
                Buffer("z", "cache", (ROWS, rows)), Buffer("dx", "cache", (ROWS, n_in)))

    @staticmethod
    def _affine_backward(dz: str) -> Tuple[Op, ...]:
        """From dZ (the buffer ``dz``): dW2 = dZ^T X, db2 = sum_i dZ_i, dX = dZ W2."""
        return (Op("gemm_weight_grad", (dz, "x", "dW")), Op("col_sum", (dz, "db")),
                Op("gemm_input_grad", (dz, "W", "dx"), dx_only=True))

    def parameters(self):
        return [self.W, self.b]

    def gradients(self):
        return [self.dW, self.db]

    def parameter_names(self):
        return ["W", "b"]


class Dense(_Affine):
    """Fully-connected layer ``A = act(X @ W.T + b)`` with W (units, n_in), b (units,).

    ``activation`` is a name of :data:`fastmlp.nn.activations.ACTIVATIONS` (linear, the
    default, for None; leaky_relu's slope 0.01, elu's alpha 1.0) or an object from
    :mod:`fastmlp.nn.activations` (``LeakyReLU(0.2)``, ``ELU(0.5)``). ``init`` is an
    initializer name from :mod:`fastmlp.nn.initializers`; None means the activation's
    default (he_normal for the ReLU family, glorot_uniform otherwise). Biases start at
    zero. ``regularizer`` (:mod:`fastmlp.nn.regularizers`) penalizes W and overrides the
    model's. W, b and their gradients dW, db exist once the layer is part of a model.
    """

    kind = "dense"

    @suggest_keywords
    def __init__(self, units: int, activation=None, init: Optional[str] = None, *,
                 regularizer=None):
        super().__init__()
        self.units = check_int(units, "units")
        self._activation_arg = activation
        self.activation, self.param = activations.resolve_with_param(activation)
        self.init = initializers.resolve(init, self.activation)
        self.regularizer = check_regularizer(regularizer)
        self.W = self.b = self.dW = self.db = None

    def __repr__(self) -> str:
        act = self.get_config()["activation"]
        extra = "" if self.regularizer is None else f", regularizer={self.regularizer!r}"
        return f"Dense({self.units}, activation={act!r}, init={self.init!r}{extra})"

    def get_config(self) -> dict:
        """units, activation (its name, or the Activation object it was given), init (the
        resolved name), regularizer."""
        act = self._activation_arg if isinstance(self._activation_arg, activations.Activation) \
            else self.activation
        return {"units": self.units, "activation": act, "init": self.init,
                "regularizer": self.regularizer}

    def build(self, input_dim: int) -> int:
        self.input_dim, self.output_dim, self.rows = input_dim, self.units, self.units
        return self.units

    def plan(self) -> Plan:
        """``Z = X W^T + b`` and ``A = act(Z)`` in one op (A is Z for a linear layer);
        backward ``dZ = dA * act'(Z)``, then the affine backward (dW, db and dX)."""
        rows, act = self.rows, (self.activation, self.param)
        forward_ = (Op("gemm_bias_act", ("x", "W", "b", "z", "z"), act),)
        buffers, backward, result = self._affine_buffers(), (), "z"
        if self.activation != "linear":
            buffers += (Buffer("a", "cache", (ROWS, rows)), Buffer("dz", "cache", (ROWS, rows)))
            forward_ = (Op("gemm_bias_act", ("x", "W", "b", "z", "a"), act),)
            backward, result = (Op("act_backward", ("z", "a", "dy", "dz"), act),), "a"
        backward += self._affine_backward("dz" if backward else "dy")
        return Plan(buffers, forward_, result, forward_, result, backward, (("W", "dW"),))

    def describe(self) -> str:
        if self.param != activations.param(self.activation):
            return f"{self.activation} {self.param:g}"
        return self.activation


class Dropout(PlannedLayer):
    """Inverted dropout (docs/conventions.md): in training each unit is dropped with probability
    ``rate`` and the kept ones are scaled by ``1 / (1 - rate)``; identity at inference.

    The mask is a pure function of (model seed mod 2**64, the layer's index in the
    model, the model's training-step counter, the element's flat index in the batch's
    (m, n) output): ``backend.dropout_forward``, the same bits on both backends. The step
    counter advances once per training step and carries across fits, so two fits of one
    epoch equal one fit of two. Backward: ``dx = dy * mask``.
    """

    kind = "dropout"

    @suggest_keywords
    def __init__(self, rate: float):
        super().__init__()
        self.rate = _check_rate(rate)

    def __repr__(self) -> str:
        return f"Dropout({self.rate!r})"

    def get_config(self) -> dict:
        return {"rate": self.rate}

    def plan(self) -> Plan:
        shape = (ROWS, self.input_dim)
        buffers = (Buffer("x", "input", shape), Buffer("dy", "grad_output", shape),
                   Buffer("y", "cache", shape), Buffer("mask", "cache", shape),
                   Buffer("dx", "cache", shape))
        forward_ = (Op("dropout_forward", ("x", "y", "mask"), (self.rate,)),)
        backward = (Op("mul", ("dy", "mask", "dx"), dx_only=True),)
        return Plan(buffers, forward_, "y", (), "x", backward)

    @property
    def _mask(self) -> Optional[np.ndarray]:
        """The last training forward's mask."""
        return self.training_buffer("mask")

    def describe(self) -> str:
        return f"rate {self.rate:g}"


class Maxout(_Affine):
    """Maxout (Goodfellow et al. 2013; docs/conventions.md): ``units`` outputs, each the max
    over ``pieces`` linear pieces ``z[:, u, p] = X @ W[u, p].T + b[u, p]``.

    W is (units, pieces, n_in) and b (units, pieces), in that order in the flat buffer;
    the forward does one gemm with W viewed as (units * pieces, n_in), adds the bias,
    then takes the max over the pieces (ties go to the lowest piece index). The gradient
    flows only through each unit's winning piece. ``init`` defaults to he_normal
    (fan_in = n_in; fan_out = units * pieces for the glorot ones); ``regularizer``
    penalizes W.
    """

    kind = "maxout"

    @suggest_keywords
    def __init__(self, units: int, pieces: int = 2, init: Optional[str] = None, *,
                 regularizer=None):
        super().__init__()
        self.units = check_int(units, "units")
        self.pieces = check_int(pieces, "pieces")
        self.init = "he_normal" if init is None else initializers.resolve(init, "linear")
        self.regularizer = check_regularizer(regularizer)
        self.W = self.b = self.dW = self.db = None

    def __repr__(self) -> str:
        extra = "" if self.regularizer is None else f", regularizer={self.regularizer!r}"
        return f"Maxout({self.units}, pieces={self.pieces}, init={self.init!r}{extra})"

    def get_config(self) -> dict:
        return {"units": self.units, "pieces": self.pieces, "init": self.init,
                "regularizer": self.regularizer}

    def build(self, input_dim):
        self.input_dim, self.output_dim = input_dim, self.units
        self.rows = self.units * self.pieces
        return self.units

    def _w_shape(self):
        return (self.units, self.pieces, self.input_dim)

    def plan(self) -> Plan:
        """One linear gemm over units * pieces rows, the max over the pieces; backward
        through each unit's winning piece, then the affine backward."""
        units = (ROWS, self.units)
        buffers = self._affine_buffers() + (
            Buffer("a", "cache", units), Buffer("argmax", "cache", units, dtype="int32"),
            Buffer("dz", "cache", (ROWS, self.rows)))
        forward_ = (Op("gemm_bias_act", ("x", "W", "b", "z", "z"), ("linear", 0.0)),
                    Op("maxout_forward", ("z", "a", "argmax")))
        backward = ((Op("maxout_backward", ("dy", "argmax", "dz")),)
                    + self._affine_backward("dz"))
        return Plan(buffers, forward_, "a", forward_, "a", backward, (("W", "dW"),))

    def describe(self) -> str:
        return f"{self.pieces} pieces"


class BatchNorm(PlannedLayer):
    """Batch normalization (Ioffe & Szegedy 2015) of each feature.

    Training: ``y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta`` with the batch's
    mean and biased variance (``backend.batchnorm_forward_train``), and the running
    averages ``running = momentum * running + (1 - momentum) * batch`` (Keras'
    convention: momentum near 1 means slow). Inference uses the running averages
    (``backend.batchnorm_forward_infer``). gamma (ones) and beta (zeros) are trainable
    parameters in the flat buffer; running_mean (zeros) and running_var (ones) are state.
    The batch variance for the running average is recovered from the kernel's
    ``inv_std`` as ``1 / inv_std**2 - eps`` in double (exact up to the rounding of
    var + eps, the quantity inference uses).
    """

    kind = "batch_norm"
    state_names = ("running_mean", "running_var")

    @suggest_keywords
    def __init__(self, momentum: float = 0.99, eps: float = 1e-3):
        super().__init__()
        self.momentum = check_nonnegative_float(momentum, "momentum")
        if self.momentum >= 1:
            raise ValueError(f"momentum must satisfy 0 <= momentum < 1; got {momentum!r}")
        self.eps = check_nonnegative_float(eps, "eps")
        if self.eps == 0:
            raise ValueError("eps must be > 0 (it keeps 1/sqrt(var + eps) finite)")
        self.gamma = self.beta = self.dgamma = self.dbeta = None
        self.running_mean = self.running_var = None

    def __repr__(self) -> str:
        return f"BatchNorm(momentum={self.momentum!r}, eps={self.eps!r})"

    def get_config(self) -> dict:
        return {"momentum": self.momentum, "eps": self.eps}

    def count_params(self):
        return 2 * self.input_dim

    def bind(self, params, grads):
        self.dtype = params.dtype
        n = self.input_dim
        self.gamma, self.beta = params[:n], params[n:]
        self.dgamma, self.dbeta = grads[:n], grads[n:]
        self.running_mean = np.zeros(n, self.dtype)
        self.running_var = np.ones(n, self.dtype)

    def initialize(self, rng):
        self.gamma.fill(1)
        self.beta.fill(0)
        self.running_mean.fill(0)
        self.running_var.fill(1)

    def plan(self) -> Plan:
        """Training: the batch statistics' forward, then the running averages; inference:
        the running statistics' forward; backward: dx, dgamma and dbeta in one op."""
        n = self.input_dim
        rows = (ROWS, n)
        buffers = (Buffer("x", "input", rows), Buffer("dy", "grad_output", rows),
                   Buffer("gamma", "parameter", (n,), "gamma"),
                   Buffer("beta", "parameter", (n,), "beta"),
                   Buffer("dgamma", "gradient", (n,), "dgamma"),
                   Buffer("dbeta", "gradient", (n,), "dbeta"),
                   Buffer("running_mean", "state", (n,), "running_mean"),
                   Buffer("running_var", "state", (n,), "running_var"),
                   Buffer("y", "cache", rows), Buffer("xhat", "cache", rows),
                   Buffer("mean", "cache", (n,)), Buffer("inv_std", "cache", (n,)),
                   Buffer("dx", "cache", rows))
        forward_ = (Op("batchnorm_forward_train",
                       ("x", "gamma", "beta", "y", "xhat", "mean", "inv_std"), (self.eps,)),
                    Op("batchnorm_running_update",
                       ("mean", "inv_std", "running_mean", "running_var"),
                       (self.momentum, self.eps)))
        inference = (Op("batchnorm_forward_infer",
                        ("x", "gamma", "beta", "running_mean", "running_var", "y"),
                        (self.eps,)),)
        backward = (Op("batchnorm_backward",
                       ("dy", "xhat", "gamma", "inv_std", "dx", "dgamma", "dbeta")),)
        return Plan(buffers, forward_, "y", inference, "y", backward)

    def parameters(self):
        return [self.gamma, self.beta]

    def gradients(self):
        return [self.dgamma, self.dbeta]

    def parameter_names(self):
        return ["gamma", "beta"]

    def get_state(self):
        return [self.running_mean, self.running_var]

    def set_state(self, state):
        mean, var = self._check_state(state)
        if (var < 0).any():
            raise ValueError("running_var must be >= 0")
        self.running_mean[...], self.running_var[...] = mean, var

    def describe(self) -> str:
        return f"momentum {self.momentum:g}"


class Normalization(PlannedLayer):
    """Standardize each input feature: ``y = (x - mean) / std`` with the training data's
    per-feature mean and (population) standard deviation, kept as state.

    ``layer.adapt(X)`` computes them (in float64, stored in the model's dtype; a zero
    deviation becomes 1, so a constant feature maps to 0); ``fit`` adapts a layer that was
    never adapted on its first call, from the training data as it reaches the layer.
    Not trainable. Forward uses ``backend.batchnorm_forward_infer`` with gamma = 1,
    beta = 0, var = std**2 and eps = 0.
    """

    kind = "normalization"
    state_names = ("mean", "std")

    def __init__(self):
        super().__init__()
        self.mean = self.std = None
        self.adapted = False

    def __repr__(self) -> str:
        return "Normalization()"

    def get_config(self) -> dict:
        return {}

    def bind(self, params, grads):
        self.dtype = params.dtype
        n = self.input_dim
        self.mean, self.std = np.zeros(n, self.dtype), np.ones(n, self.dtype)
        self._var, self._inv = np.ones(n, self.dtype), np.ones(n, self.dtype)
        self._ones, self._zeros = np.ones(n, self.dtype), np.zeros(n, self.dtype)

    def adapt(self, X) -> "Normalization":
        """Set mean and std from X (n_samples, input_dim); returns the layer."""
        if self.dtype is None:
            raise RuntimeError("adapt needs the layer to be part of a model first "
                               "(its input_dim and dtype come from the model)")
        # in the model's dtype first: a value beyond its range is an error, as in fit
        X = as_features(X, "X", self.input_dim, self.dtype).astype(np.float64)
        return self.set_moments(X.mean(axis=0), X.std(axis=0))

    def set_moments(self, mean: np.ndarray, std: np.ndarray) -> "Normalization":
        """Adapted to data of this mean and (population) standard deviation per column; a
        constant column (std 0) is only centred."""
        self.set_state([mean, np.where(std == 0, 1.0, std)])
        return self

    def plan(self) -> Plan:
        """``batchnorm_forward_infer`` with gamma 1, beta 0, var = std^2 and eps 0 (in
        training too); backward ``dx = dy * (1 / std)`` per column."""
        n = self.input_dim
        rows = (ROWS, n)
        buffers = (Buffer("x", "input", rows), Buffer("dy", "grad_output", rows),
                   Buffer("mean", "constant", (n,), "mean"),
                   Buffer("var", "constant", (n,), "_var"),
                   Buffer("inv", "constant", (n,), "_inv"),
                   Buffer("ones", "constant", (n,), "_ones"),
                   Buffer("zeros", "constant", (n,), "_zeros"),
                   Buffer("y", "cache", rows), Buffer("dx", "cache", rows))
        forward_ = (Op("batchnorm_forward_infer", ("x", "ones", "zeros", "mean", "var", "y"),
                       (0.0,)),)
        backward = (Op("scale_columns", ("dy", "inv", "dx"), dx_only=True),)
        return Plan(buffers, forward_, "y", forward_, "y", backward)

    def get_state(self):
        return [self.mean, self.std]

    def set_state(self, state):
        mean, std = self._check_state(state)
        if (std <= 0).any():
            raise ValueError("std must be > 0")
        self.mean[...], self.std[...] = mean, std
        self._var[...] = std * std
        self._inv[...] = 1 / np.sqrt(self._var)   # the forward's own factor
        self.adapted = True


#: the built-in layers by class name (what the model file saves and loads)
LAYERS: Dict[str, Type[Layer]] = {cls.__name__: cls
                                  for cls in (Dense, Dropout, Maxout, BatchNorm,
                                              Normalization)}


def layers_of(model) -> Tuple[Layer, ...]:
    """``model.layers``: what the exports and the model file read of a model. TypeError
    unless ``model`` is one (a :class:`fastmlp.Sequential`)."""
    layers = getattr(model, "layers", None)
    if not isinstance(layers, tuple) or not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError(f"model must be a fastmlp.Sequential; got {type(model).__name__}")
    return layers
