"""PyTorch interchange: ``model.to_torch()`` and ``fastmlp.from_torch(module, ...)``.

Layer for module, weights in the same layout (W (n_out, n_in) is ``nn.Linear.weight``):

==========================  ===============================================================
fastmlp                     torch.nn
==========================  ===============================================================
Dense(units, act)           Linear(n_in, units), then the activation's module (its row's
                            ``torch`` in fastmlp.nn.activations: ReLU, LeakyReLU(slope),
                            ELU(alpha), ...; nothing for linear)
Dropout(rate)               Dropout(p=rate)
BatchNorm(momentum, eps)    BatchNorm1d(eps=eps, momentum=1 - momentum), running stats copied
Maxout(units, pieces)       :class:`Maxout` (this module), weight (units, pieces, n_in)
Normalization()             :class:`Normalization` (this module), buffers mean and std
==========================  ===============================================================

The momentum conversion: ours is ``running = momentum * running + (1 - momentum) * batch``
(fastmlp.layers.BatchNorm), torch's ``running = (1 - m) * running + m * batch``, so
m = 1 - momentum.
(Torch updates running_var with the unbiased batch variance, ours with the biased one: the
two agree at inference, and differ slightly if you keep training in the other framework.)

The torch model outputs logits, as fastmlp's last layer does: apply ``softmax`` or
``sigmoid`` yourself (fastmlp's loss does it inside), or ``exp`` for a poisson model
(its logits are log means). Its dtype is the model's. It works
in class indices and does not hold the model's ``classes_``: logit column j is the class
``model.classes_[j]`` (one sigmoid output: logit > 0 is ``classes_[1]``), so
``argmax(dim=1)`` gives output indices; map them through ``model.classes_`` for the labels
``predict`` returns. A model made by ``from_torch`` has no ``classes_`` until its first
fit (or until you assign them).

A MultiTask becomes a :class:`MultiTaskModule` (this module): ``trunk`` (nn.Sequential)
and ``heads`` (nn.ModuleDict of nn.Sequential), whose forward returns ``{head: logits}``.

Torch is imported only inside these functions: ``import fastmlp`` never imports it. The two
module classes of ours are created on first use and are attributes of this module
(``fastmlp.io.torch.Maxout``), so they can be used to build torch models too.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, List, Optional

import numpy as np

# layers by module (layers.Maxout): this module's Maxout and Normalization are torch modules
from ..nn import activations, layers
from ..nn.losses import SoftmaxCrossEntropy
from .._validation import check_dtype
from .onnx import layer_converters

__all__ = ["read_torch", "to_torch"]   # plus Maxout, Normalization, MultiTaskModule: on first use


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("PyTorch interchange needs torch, which fastmlp does not install "
                          "(it is a large download): pip install torch (see "
                          "https://pytorch.org for a CPU-only build)") from exc
    return torch


def _multitask_module(nn) -> type:
    """The torch module class of a MultiTask (torch's ``nn`` given, imported by the caller)."""

    class MultiTaskModule(nn.Module):
        """fastmlp's MultiTask: ``trunk`` (an nn.Sequential) feeds every module of
        ``heads`` (an nn.ModuleDict of nn.Sequential, in the model's order); forward
        returns ``{head: its logits}``."""

        def __init__(self, trunk, heads):
            super().__init__()
            self.trunk, self.heads = trunk, nn.ModuleDict(heads)

        def forward(self, x):
            features = self.trunk(x)
            return {name: head(features) for name, head in self.heads.items()}

    return MultiTaskModule


@functools.lru_cache(maxsize=None)
def _module_classes() -> Dict[str, type]:
    """Our torch modules for the layers torch lacks, defined once torch is imported."""
    torch = _import_torch()
    nn = torch.nn

    class Maxout(nn.Module):
        """``y[:, u] = max_p (x @ weight[u, p].T + bias[u, p])`` (fastmlp's Maxout layer):
        weight (units, pieces, in_features), bias (units, pieces); initialized as
        fastmlp's: he_normal (sd sqrt(2 / in_features)) weights, zero biases."""

        def __init__(self, in_features: int, units: int, pieces: int = 2, *,
                     dtype=None, device=None):
            super().__init__()
            self.in_features, self.units, self.pieces = in_features, units, pieces
            self.weight = nn.Parameter(torch.empty(units, pieces, in_features, dtype=dtype,
                                                   device=device))
            self.bias = nn.Parameter(torch.zeros(units, pieces, dtype=dtype, device=device))
            with torch.no_grad():
                self.weight.normal_(0.0, (2.0 / in_features) ** 0.5)

        def forward(self, x):
            z = x @ self.weight.reshape(-1, self.in_features).T + self.bias.reshape(-1)
            return z.reshape(len(x), self.units, self.pieces).max(dim=2).values

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, units={self.units}, pieces={self.pieces}"

    class Normalization(nn.Module):
        """``y = (x - mean) * (1 / sqrt(std * std))`` (fastmlp's Normalization layer, the
        same order of operations) with fixed buffers mean (zeros) and std (ones)."""

        def __init__(self, num_features: int, *, dtype=None, device=None):
            super().__init__()
            self.num_features = num_features
            self.register_buffer("mean", torch.zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("std", torch.ones(num_features, dtype=dtype, device=device))

        def forward(self, x):
            return (x - self.mean) * (1 / torch.sqrt(self.std * self.std))

        def extra_repr(self) -> str:
            return f"num_features={self.num_features}"

    classes = {"Maxout": Maxout, "Normalization": Normalization,
               "MultiTaskModule": _multitask_module(nn)}
    for cls in classes.values():   # importable by name, so torch.save can pickle them
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return classes


def __getattr__(name: str):
    """``Maxout``, ``Normalization`` and ``MultiTaskModule`` (torch modules) on first
    access (PEP 562)."""
    if name in ("Maxout", "Normalization", "MultiTaskModule"):
        return _module_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _activation_from_torch(nn) -> Dict[type, activations.ActivationKind]:
    """torch activation module class -> the registry row that reads it."""
    return {getattr(nn, row.torch): row for row in activations.KINDS if row.torch is not None}


# ------------------------------------------------------------------- to_torch
def _torch_dtype(torch, dtype: np.dtype):
    """torch.float32 or torch.float64 for a model's dtype."""
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dtype]


def _loaded(torch, module, **arrays):
    """``module`` with each named parameter or buffer overwritten by a copy of its array
    (same dtype, so the same bits); returns the module."""
    with torch.no_grad():
        for name, array in arrays.items():
            # the model's weights are read-only views: hand torch its own copy
            getattr(module, name).copy_(torch.from_numpy(np.array(array, copy=True)))
    return module


def _dense_to_torch(torch, layer: layers.Dense) -> list:
    """Linear with weight W, bias b; then the activation module unless linear."""
    linear = _loaded(torch, torch.nn.Linear(layer.input_dim, layer.units,
                                            dtype=_torch_dtype(torch, layer.dtype)),
                     weight=layer.W, bias=layer.b)
    if layer.activation == "linear":
        return [linear]
    row = activations.kind(layer.activation)
    return [linear, row.to_torch(getattr(torch.nn, row.torch), layer.param)]


def _maxout_to_torch(torch, layer: layers.Maxout) -> list:
    module = _module_classes()["Maxout"](layer.input_dim, layer.units, layer.pieces,
                                         dtype=_torch_dtype(torch, layer.dtype))
    return [_loaded(torch, module, weight=layer.W, bias=layer.b)]


def _batch_norm_to_torch(torch, layer: layers.BatchNorm) -> list:
    """BatchNorm1d(eps, momentum = 1 - ours) with gamma, beta and the running stats."""
    module = torch.nn.BatchNorm1d(layer.input_dim, eps=layer.eps, momentum=1 - layer.momentum,
                                  dtype=_torch_dtype(torch, layer.dtype))
    return [_loaded(torch, module, weight=layer.gamma, bias=layer.beta,
                    running_mean=layer.running_mean, running_var=layer.running_var)]


def _normalization_to_torch(torch, layer: layers.Normalization) -> list:
    module = _module_classes()["Normalization"](layer.input_dim,
                                                dtype=_torch_dtype(torch, layer.dtype))
    return [_loaded(torch, module, mean=layer.mean, std=layer.std)]


_TO_TORCH: Dict[type, Callable] = {
    layers.Dense: _dense_to_torch,
    layers.Maxout: _maxout_to_torch,
    layers.Dropout: lambda torch, layer: [torch.nn.Dropout(p=layer.rate)],
    layers.BatchNorm: _batch_norm_to_torch,
    layers.Normalization: _normalization_to_torch,
}


def to_torch(model):
    """A ``torch.nn.Sequential`` computing ``model``'s logits with copies of its weights,
    in the model's dtype, in eval mode (call ``.train()`` to train it); for a MultiTask
    (a model with ``trunk`` and ``heads``) a :class:`MultiTaskModule` whose forward
    returns ``{head: logits}``. Table of modules in the module docstring. TypeError if
    ``model`` is not a Sequential or MultiTask; ValueError naming a layer without a torch
    form (custom layers) or a head name torch refuses (one with a ".")."""
    converters = layer_converters(model, _TO_TORCH, "PyTorch")
    torch = _import_torch()
    modules = [convert(torch, layer) for layer, convert in zip(model.layers, converters)]

    def sequential(first: int, stop: int):
        return torch.nn.Sequential(*[m for converted in modules[first:stop] for m in converted])

    heads = getattr(model, "heads", None)
    if heads is None:
        return sequential(0, len(modules)).eval()
    start, head_modules = len(model.trunk), {}
    for name, layers_of_head in heads.items():
        if "." in name or not name:
            raise ValueError(f"head {name!r} cannot name a torch module (no '.' allowed); "
                             "rename the head to export it")
        head_modules[name] = sequential(start, start + len(layers_of_head))
        start += len(layers_of_head)
    return _module_classes()["MultiTaskModule"](sequential(0, len(model.trunk)),
                                                head_modules).eval()


# ----------------------------------------------------------------- from_torch
class _Stack:
    """fastmlp layers and their weights (in get_weights' order) read off torch modules,
    with the running width for the chaining checks."""

    def __init__(self):
        self.layers: List[layers.Layer] = []
        self.weights: List[np.ndarray] = []
        self.input_dim: Optional[int] = None
        self.width: Optional[int] = None

    def add(self, layer: layers.Layer, tensors, n_in: Optional[int],
            n_out: Optional[int]) -> None:
        """Append ``layer`` with ``tensors``; ``n_in``/``n_out`` its widths (None: any,
        unchanged). ValueError when n_in differs from the previous output width."""
        if n_in is not None:
            if self.width is None:
                self.input_dim = n_in
            elif n_in != self.width:
                raise ValueError(f"its input width is {n_in} but the previous layers output "
                                 f"{self.width} features")
            self.width = n_out
        self.layers.append(layer)
        # float64 holds every torch float exactly; set_weights rounds once to the dtype
        self.weights.extend(t.detach().cpu().double().numpy() for t in tensors)


def _linear(torch, stack: _Stack, linear, activation) -> None:
    """Dense(out_features, activation) with weight and bias (zeros when bias=False)."""
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    stack.add(layers.Dense(linear.out_features, activation), [linear.weight, bias],
              linear.in_features, linear.out_features)


def _batch_norm(torch, stack: _Stack, module) -> None:
    """BatchNorm(momentum = 1 - torch's momentum, eps) with gamma, beta (ones, zeros
    without affine) and the running statistics."""
    if not module.track_running_stats or module.momentum is None:
        raise ValueError("fastmlp's BatchNorm needs running statistics with an exponential "
                         "momentum (track_running_stats=True, momentum not None)")
    if not 0 < module.momentum <= 1:
        raise ValueError(f"momentum must satisfy 0 < momentum <= 1 (fastmlp's momentum is "
                         f"1 - torch's, in [0, 1)); got {module.momentum!r}")
    n = module.num_features
    gamma = module.weight if module.affine else torch.ones(n)
    beta = module.bias if module.affine else torch.zeros(n)
    stack.add(layers.BatchNorm(momentum=1 - module.momentum, eps=module.eps),
              [gamma, beta, module.running_mean, module.running_var], n, n)


def _fastmlp_modules(torch, stack: _Stack, module) -> bool:
    """Our Maxout and Normalization modules; False if ``module`` is neither."""
    classes = _module_classes()
    if isinstance(module, classes["Maxout"]):
        stack.add(layers.Maxout(module.units, pieces=module.pieces),
                  [module.weight, module.bias], module.in_features, module.units)
    elif isinstance(module, classes["Normalization"]):
        n = module.num_features
        stack.add(layers.Normalization(), [module.mean, module.std], n, n)
    else:
        return False
    return True


def _activation_of(nn, module):
    """The fastmlp activation of an activation module, or None if it is not one."""
    row = _activation_from_torch(nn).get(type(module))
    if row is None:
        return None
    try:
        return row.read_torch(module)
    except ValueError as exc:
        raise ValueError(f"the {type(module).__name__} after it: {exc}") from exc


def _unsupported(module) -> ValueError:
    hint = ""
    if type(module).__name__ in ("Softmax", "LogSoftmax"):
        hint = ("; fastmlp's loss applies the softmax to the logits, so drop it and pass "
                f"loss={SoftmaxCrossEntropy.name!r}")
    modules = ", ".join(row.torch for row in activations.KINDS if row.torch is not None)
    return ValueError(f"it is not supported: from_torch reads Linear (each optionally "
                      f"followed by one of {modules}), Dropout, "
                      f"BatchNorm1d, Identity and fastmlp.io.torch's Maxout and "
                      f"Normalization{hint}")


def _read_modules(torch, modules: list) -> _Stack:
    """The layers of a list of modules; ValueError naming the position and the module."""
    nn, stack, i = torch.nn, _Stack(), 0
    while i < len(modules):
        module, start = modules[i], i
        try:
            if type(module) is nn.Linear:
                following = modules[i + 1] if i + 1 < len(modules) else None
                activation = _activation_of(nn, following)
                _linear(torch, stack, module, activation)
                if activation is not None:   # the activation module is part of the Dense
                    i += 1
            elif _activation_of(nn, module) is not None:
                raise ValueError("it does not follow a Linear: fastmlp applies activations "
                                 "inside Dense layers only (Linear then activation)")
            elif type(module) is nn.Dropout:
                stack.add(layers.Dropout(module.p), [], None, None)
            elif type(module) is nn.BatchNorm1d:
                _batch_norm(torch, stack, module)
            elif type(module) is nn.Identity:
                pass
            elif not _fastmlp_modules(torch, stack, module):
                raise _unsupported(module)
        except ValueError as exc:
            raise ValueError(f"module [{start}] ({type(module).__name__}): {exc}") from exc
        i += 1
    if stack.input_dim is None:
        raise ValueError("module has no layer with weights (Linear, BatchNorm1d, Maxout, "
                         "Normalization), so its input width is unknown")
    return stack


def _module_dtype(torch, module) -> np.dtype:
    """The one floating dtype of the module's parameters and buffers (float32/float64)."""
    dtypes = {t.dtype for t in (*module.parameters(), *module.buffers())
              if t.is_floating_point()}
    names = sorted(str(d).replace("torch.", "") for d in dtypes)
    if len(names) != 1 or names[0] not in ("float32", "float64"):
        raise ValueError(f"module's parameters must all be float32 or all float64 to infer "
                         f"the dtype; got {names}: pass dtype='float32' or 'float64'")
    return np.dtype(names[0])


def read_torch(module, dtype=None):
    """(layers, input_dim, dtype, weights) of a ``torch.nn.Sequential``: what
    :func:`fastmlp.from_torch` builds a Sequential from (see it for what is read).

    TypeError if ``module`` is not an nn.Sequential; ValueError naming the position and
    type of a module that cannot be converted, or whose widths do not chain."""
    torch = _import_torch()
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential; got {type(module).__name__}")
    stack = _read_modules(torch, list(module.children()))
    dtype = _module_dtype(torch, module) if dtype is None else check_dtype(dtype)
    return stack.layers, stack.input_dim, dtype, stack.weights
