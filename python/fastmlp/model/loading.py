"""Models built from outside the process: a model file (Sequential or MultiTask) or a
PyTorch module (Sequential)."""
from __future__ import annotations

from typing import Optional

from ..io.torch import read_torch
from ..nn.losses import SoftmaxCrossEntropy
from . import modelfile
from .flat import FlatParameters
from .multitask import MultiTask
from .sequential import Sequential

__all__ = ["from_torch", "load"]


def load(path, *, backend=None) -> FlatParameters:
    """The model saved at ``path`` (str or os.PathLike), ready to predict or to continue
    training exactly where it stopped: a Sequential, or a MultiTask for a file that
    ``MultiTask.save`` wrote. ``backend`` (a name or Backend) replaces the
    saved backend; None keeps it. ModelFileError (a ValueError) says what is wrong with
    a malformed file; FileNotFoundError / IsADirectoryError as ``open``."""
    return modelfile.read_checkpoint(path, (Sequential, MultiTask), backend=backend)[0]


def from_torch(module, *, loss: str = SoftmaxCrossEntropy.name, backend="native",
               dtype=None, seed: Optional[int] = None) -> Sequential:
    """A fastmlp Sequential with the layers and weights of a ``torch.nn.Sequential``.

    Reads Linear (with the activation module after it, if any: the modules named in
    :data:`fastmlp.nn.activations.KINDS`), Dropout, BatchNorm1d, Identity (skipped) and our Maxout and
    Normalization modules; the module table is in :mod:`fastmlp.io.torch`. The last module
    must output logits (no final Softmax): ``loss`` applies the softmax or sigmoid.
    ``dtype=None`` takes the module's own (float32 or float64); another dtype rounds the
    weights. ``loss``, ``backend`` and ``seed`` go to :class:`fastmlp.Sequential`; seed
    drives Dropout's masks and shuffling (the weights are the module's).

    TypeError if ``module`` is not an nn.Sequential; ValueError naming the position and
    type of a module that cannot be converted, or whose widths do not chain."""
    layers, input_dim, dtype, weights = read_torch(module, dtype)
    model = Sequential(layers, input_dim=input_dim, loss=loss, backend=backend, dtype=dtype,
                       seed=seed)
    model.set_weights(weights)
    return model
