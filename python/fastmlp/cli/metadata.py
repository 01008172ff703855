"""What ``fastmlp train`` keeps in the model file besides the model: the entry
:data:`KEY` of ``model.metadata`` (:mod:`fastmlp.model.modelfile`), and how evaluate, predict
and diagnose read a model back with it.

The entry (plain JSON)::

    {"target": "species", "features": ["sepal", ...] or null, "labels": [...] or null,
     "split": {"dev": 0.2, "seed": 0}}

A model without it (saved from Python, or whose metadata holds other keys only) works
too: then every column but ``--target`` is a feature, in file order, and the target holds
the class numbers 0..k-1. The metadata travels with the model: loading it in Python and
saving it again keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..model.loading import load
from ..model.sequential import Sequential
from ..nn.losses import get_loss
from .options import DataError
from .parquet import ParquetData, read_parquet
from .tabular import Data, read_data

KEY = "fastmlp.cli"


@dataclass(frozen=True)
class Meta:
    """What train records with the model: the target column, the feature columns (CSV)
    in the model's input order, the class labels in the order of the model's outputs
    (None for mse) and the dev split that train held out."""

    target: Optional[str]
    features: Optional[List[str]]
    labels: Optional[list]
    dev: float              # --dev as given: a fraction, or a count of samples
    seed: int

    def to_metadata(self) -> dict:
        """The model's ``metadata``: ``{KEY: entry}``."""
        return {KEY: {"target": self.target, "features": self.features,
                      "labels": self.labels, "split": {"dev": self.dev, "seed": self.seed}}}

    @classmethod
    def from_model(cls, model: Sequential, path: str) -> Optional["Meta"]:
        """The entry train left in ``model.metadata`` (loaded from ``path``); None when
        there is none, DataError when it is malformed."""
        entry = (model.metadata or {}).get(KEY)
        if entry is None:
            return None
        if not _is_entry(entry):
            raise DataError(f"{path}: the model's metadata entry {KEY!r} is not what "
                            "fastmlp train writes (target, features, labels, split); remove "
                            "it from model.metadata and save the model again to use it "
                            "without")
        split = entry["split"]
        return cls(entry["target"], entry["features"], entry["labels"], split["dev"],
                   split["seed"])


def _is_list_of(value, types) -> bool:
    return isinstance(value, list) and all(isinstance(v, types) and not isinstance(v, bool)
                                           for v in value)


def _is_entry(entry) -> bool:
    """Whether ``entry`` has the structure of :meth:`Meta.to_metadata`'s entry."""
    split = entry.get("split") if isinstance(entry, dict) else None
    return (isinstance(split, dict)
            and isinstance(entry.get("target"), (str, type(None)))
            and (entry.get("features") is None or _is_list_of(entry["features"], str))
            and (entry.get("labels") is None
                 or _is_list_of(entry["labels"], (str, int, float)))
            and isinstance(split.get("dev"), (int, float))
            and isinstance(split.get("seed"), int))


def labels_of(meta: Optional[Meta]) -> Optional[list]:
    return meta.labels if meta else None


def _check_labels(model: Sequential, labels: Optional[list], path: str) -> None:
    """The labels must match the model's outputs: k for softmax, 2 for one sigmoid."""
    if labels is None:
        return
    expected = get_loss(model.loss).label_classes(model.n_outputs)
    if expected != len(labels):
        raise DataError(f"{path}: the model's metadata lists {len(labels)} class labels, "
                        f"which does not fit the model ({model.loss}, {model.n_outputs} "
                        "outputs)")


def load_model(args) -> Tuple[Sequential, Optional[Meta]]:
    """``args.model`` with what train recorded (if anything), on ``args.backend``
    (None: as saved)."""
    model = load(args.model, backend=args.backend)
    meta = Meta.from_model(model, args.model)
    _check_labels(model, labels_of(meta), args.model)
    return model, meta


def model_data(args, model: Sequential, meta: Optional[Meta], *,
               target_required: bool = True, path: Optional[str] = None) -> Data:
    """Data for a saved model: the target given by --target or recorded at training, the
    feature columns recorded at training (else all the others), as many as it takes."""
    data = read_data(args, _target(args, meta), target_required,
                     meta.features if meta else None, path)
    _check_width(data.path, data.X.shape[1], data.features, model)
    return data


def model_parquet(args, model: Sequential, meta: Optional[Meta], *,
                  target_required: bool = True, path: Optional[str] = None) -> ParquetData:
    """:func:`model_data` of Parquet data, as a source of its rows."""
    data = read_parquet(args, _target(args, meta), target_required,
                        meta.features if meta else None, path)
    _check_width(data.path, len(data.features), data.features, model)
    return data


def _target(args, meta: Optional[Meta]) -> Optional[str]:
    """The target column: --target, else the one recorded at training."""
    return args.target if args.target is not None else meta.target if meta else None


def _check_width(path: str, n_features: int, features: Optional[List[str]],
                 model: Sequential) -> None:
    """DataError unless the data has as many feature columns as the model takes."""
    if n_features != model.input_dim:
        columns = f" {features}" if features is not None else ""
        raise DataError(f"{path} has {n_features} feature columns{columns}, but the "
                        f"model takes {model.input_dim} features"
                        + ("; is --target the right column?" if features else ""))
