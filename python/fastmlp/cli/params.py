"""``train``'s hyperparameters: those given on the command line, else those of the
``--params`` file (the JSON object that ``search --output`` writes: the names of
:class:`fastmlp.search.MLPBuilder`), else :data:`TRAIN_DEFAULTS`."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from ..nn.activations import ACTIVATIONS
from ..nn.losses import LOSSES
from ..optim.optimizers import OPTIMIZERS
from ..tools.mlp_builder import OPTIMIZER_PARAMS, MLPBuilder
from .options import (DataError, dropout_rate, epoch_count, int_at_least, nonnegative_float,
                      positive_float)

TRAIN_DEFAULTS: Dict[str, Any] = {
    "hidden": (128, 64), "activation": "relu", "dropout": 0.0, "l1": 0.0, "l2": 0.0,
    "optimizer": "adam", "learning_rate": None, "epochs": 20, "batch_size": 32,
    "loss": "auto"}


def _one_of(names):
    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"must be one of {list(names)}; got {text!r}")
        return text
    return parse


def _widths(value) -> tuple:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                              and v >= 1 for v in value):
        raise argparse.ArgumentTypeError(f"must be a list of layer widths >= 1, e.g. "
                                         f"[128, 64]; got {value!r}")
    return tuple(value)


# How each file entry is checked: the command line's parser of the same option, given the
# value as text (so a JSON true or 5.0 is refused where an integer is expected).
_AS_TEXT = {"activation": _one_of(ACTIVATIONS), "dropout": dropout_rate,
            "l1": nonnegative_float, "l2": nonnegative_float,
            "optimizer": _one_of(tuple(OPTIMIZERS)),
            "learning_rate": positive_float, "epochs": epoch_count,
            "batch_size": int_at_least(1), "loss": _one_of(("auto",) + LOSSES),
            "n_layers": int_at_least(0), "units": int_at_least(1)}


def _checked(name: str, value):
    if name == "hidden":
        return _widths(value)
    if name in OPTIMIZER_PARAMS or (name == "learning_rate" and value is None):
        return value                       # the optimizer's constructor checks these
    if isinstance(value, (dict, list)):
        raise argparse.ArgumentTypeError(f"must be a single value; got {value!r}")
    return _AS_TEXT[name](str(value))


def read_params(path: str) -> Dict[str, Any]:
    """The file's hyperparameters, checked, by train's option names ("hidden" from
    n_layers and units if it gives those; the optimizer's own under "optimizer_options")."""
    try:
        with open(path, encoding="utf-8") as file:
            entries = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(entries, dict):
        raise DataError(f"{path} must hold a JSON object of hyperparameters, as search "
                        f"--output writes; got {type(entries).__name__}")
    try:
        MLPBuilder.check_names(list(entries))
    except ValueError as exc:
        raise DataError(f"{path}: {str(exc).replace(' in space', '')}") from None
    params = {}
    for name, value in entries.items():
        try:
            params[name] = _checked(name, value)
        except argparse.ArgumentTypeError as exc:
            raise DataError(f"{path}, parameter {name!r}: {exc}") from None
    params.update(MLPBuilder.layer_shape(params))
    for name in MLPBuilder.LAYER_SHAPE:
        params.pop(name, None)
    params["optimizer_options"] = {name: params.pop(name) for name in OPTIMIZER_PARAMS
                                   if name in params}
    return params


def resolve_hyperparameters(args) -> None:
    """Fill in the hyperparameters the command line left as None from ``--params``, then
    from :data:`TRAIN_DEFAULTS`; ``args.optimizer_options`` gets the file's optimizer
    hyperparameters (beta_1, momentum, ...)."""
    given = read_params(args.params) if args.params else {}
    for name, default in TRAIN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, given.get(name, default))
    args.optimizer_options = given.get("optimizer_options", {})
    foreign = sorted(set(args.optimizer_options)
                     - set(OPTIMIZERS[args.optimizer].hyperparameters))
    if foreign:
        raise DataError(f"{args.params} sets {foreign}, which optimizer {args.optimizer!r} "
                        "does not take (--optimizer overrides the file's optimizer, not its "
                        "hyperparameters)")


def build_optimizer(args):
    """The optimizer named by --optimizer with --learning-rate (None: its default) and
    the --params file's hyperparameters for it."""
    options = dict(args.optimizer_options)
    if args.learning_rate is not None:
        options["learning_rate"] = args.learning_rate
    try:
        return OPTIMIZERS[args.optimizer](**options)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{args.params}: {exc}") from None
