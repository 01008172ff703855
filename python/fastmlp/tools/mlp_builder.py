"""The search's default ``build`` (public path ``fastmlp.search.MLPBuilder``): an MLP
and its fit arguments from a parameter dict, and how the search reads what any builder
returns (:func:`unpack_built`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._validation import check_choice, check_int
from ..model.sequential import Sequential
from ..nn.losses import LOSSES, SoftmaxCrossEntropy, get_loss
from ..nn.regularizers import L1L2
from ..nn.stacks import mlp_layers
from ..optim.optimizers import OPTIMIZERS

__all__ = ["MLPBuilder", "OPTIMIZER_PARAMS", "unpack_built"]

OPTIMIZER_PARAMS = tuple(sorted({name for cls in OPTIMIZERS.values()
                                 for name in cls.hyperparameters}))


def _text_classes(targets: Sequence[np.ndarray]) -> Optional[Tuple[str, ...]]:
    """The sorted distinct labels when the label arrays (n,) hold text, else None."""
    if all(t.ndim == 1 and t.dtype.kind == "U" for t in targets):
        return tuple(str(label) for label in np.unique(np.concatenate(targets)))
    return None


def _n_classes(targets: Sequence[np.ndarray]) -> Optional[int]:
    """Classes in the label arrays (n,): k for whole numbers in 0..k-1 (a class may be
    missing from the data, as the models allow), the distinct values for text labels,
    None for other numbers (regression targets)."""
    text = _text_classes(targets)
    if text is not None:
        return len(text)
    if all(t.dtype.kind in "biuf" and np.array_equal(t, np.floor(t)) and t.min() >= 0
           for t in targets):
        return int(max(t.max() for t in targets)) + 1
    return None


@dataclass(frozen=True)
class MLPBuilder:
    """The default ``build``: a Dense network from a parameter dict (:meth:`__call__`).

    ``input_dim`` features; ``target_columns`` is 1 for targets of shape (n,), k for
    (n, k); ``n_classes`` is 1 + the largest label when the targets are integer labels
    (n,), the number of distinct labels for text labels (n,) (``text_classes``, given
    to every model as its ``classes_``), else None. :meth:`for_data` fills them in from
    the data.
    """

    input_dim: int
    target_columns: int
    n_classes: Optional[int] = None
    text_classes: Optional[Tuple[str, ...]] = None   # text labels: the models' classes_

    # The parameters it reads and their defaults (``epochs`` defaults to random_search's).
    DEFAULTS = {"hidden": (64,), "activation": "relu", "dropout": 0.0, "l1": 0.0, "l2": 0.0,
                "loss": SoftmaxCrossEntropy.name, "optimizer": "adam",
                "learning_rate": None, "batch_size": 32}
    LAYER_SHAPE = {"n_layers": 1, "units": 64}  # alternative to "hidden": (units,) * n_layers
    PARAMS = (*DEFAULTS, *LAYER_SHAPE, "epochs", *OPTIMIZER_PARAMS)

    @classmethod
    def for_data(cls, X: np.ndarray, *targets: np.ndarray) -> "MLPBuilder":
        """Dimensions from the features X (n, d) and the target arrays (train, dev, ...)."""
        first = targets[0]
        return cls(X.shape[1], 1 if first.ndim == 1 else first.shape[1],
                   _n_classes(targets) if first.ndim == 1 else None, _text_classes(targets))

    @classmethod
    def check_names(cls, names: Sequence[str]) -> None:
        """ValueError for a name this builder does not read, or for "hidden" together with
        "n_layers"/"units"."""
        unknown = [name for name in names if name not in cls.PARAMS]
        if unknown:
            raise ValueError(f"unknown parameter names {unknown} in space; the default builder "
                             f"reads {list(cls.PARAMS)} (pass build= to search others)")
        if "hidden" in names and any(name in names for name in cls.LAYER_SHAPE):
            raise ValueError("space gives both 'hidden' and 'n_layers'/'units'; give the "
                             "layer widths one way")

    @classmethod
    def layer_shape(cls, params: Mapping[str, Any]) -> Dict[str, Any]:
        """``{"hidden": (units,) * n_layers}`` when ``params`` give n_layers or units
        (LAYER_SHAPE fills in the other), else nothing."""
        if "n_layers" not in params and "units" not in params:
            return {}
        shape = {**cls.LAYER_SHAPE, **params}
        return {"hidden": (shape["units"],) * check_int(shape["n_layers"], "n_layers",
                                                         minimum=0)}

    def n_outputs(self, loss: str) -> int:
        """Output units: the number of classes for a one-hot loss (softmax) over labels
        (n,), else the targets' columns."""
        loss = get_loss(check_choice(loss, "loss", LOSSES))
        if loss.one_hot and self.target_columns == 1:
            if self.n_classes is None:
                raise ValueError(f"{loss.name} needs class labels of shape (n,) "
                                 "(whole numbers 0..k-1 or text) or one-hot targets (n, k)")
            return self.n_classes
        return self.target_columns

    def __call__(self, params: Mapping[str, Any], seed: int) -> Tuple[Sequential, dict]:
        """``Sequential([Dense(u, activation), Dropout(dropout)?, ...] + [Dense(outputs)],
        loss=loss, regularizer=L1L2(l1, l2) if either > 0, seed=seed)`` with widths
        ``hidden`` (or ``(units,) * n_layers``), and the fit arguments batch_size, epochs
        (if given) and the optimizer named ``optimizer`` with ``learning_rate`` and any of
        its hyperparameters (beta_1, beta_2, eps, momentum, rho, weight_decay)."""
        p = {**self.DEFAULTS, **params, **self.layer_shape(params)}
        if not isinstance(p["hidden"], (tuple, list)):
            raise TypeError(f"hidden must be a tuple of layer widths, e.g. (128, 64); got "
                            f"{p['hidden']!r}")
        layers = mlp_layers(p["hidden"], self.n_outputs(p["loss"]), activation=p["activation"],
                            dropout=p["dropout"])
        regularizer = L1L2(l1=p["l1"], l2=p["l2"]) if p["l1"] or p["l2"] else None
        model = Sequential(layers, input_dim=self.input_dim, loss=p["loss"], seed=seed,
                           regularizer=regularizer)
        if self.text_classes is not None and get_loss(model.loss).one_hot:
            model.classes_ = list(self.text_classes)    # every class, also one train lacks
        fit_kwargs = {"batch_size": p["batch_size"], "optimizer": _optimizer(p)}
        if "epochs" in params:
            fit_kwargs["epochs"] = params["epochs"]
        return model, fit_kwargs


def _optimizer(params: Mapping[str, Any]):
    """The optimizer named ``params["optimizer"]`` with the learning rate and those of its
    hyperparameters that ``params`` holds (ValueError for one it does not have)."""
    name = check_choice(params["optimizer"], "optimizer", OPTIMIZERS)
    cls = OPTIMIZERS[name]
    given = {key: params[key] for key in OPTIMIZER_PARAMS if key in params}
    foreign = sorted(set(given) - set(cls.hyperparameters))
    if foreign:
        raise ValueError(f"{foreign} do not apply to optimizer {name!r}, whose "
                         f"hyperparameters are {list(cls.hyperparameters)}")
    if params["learning_rate"] is not None:
        given["learning_rate"] = params["learning_rate"]
    return cls(**given)


def unpack_built(result, build) -> Tuple[Sequential, dict]:
    """A builder's result as (model, fit_kwargs)."""
    model, fit_kwargs = result if isinstance(result, tuple) and len(result) == 2 \
        else (result, {})
    if not isinstance(model, Sequential) or not isinstance(fit_kwargs, dict):
        raise TypeError(f"build {build!r} must return a Sequential or a pair (Sequential, "
                        f"dict of fit arguments); got {type(result).__name__}")
    return model, fit_kwargs
