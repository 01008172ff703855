"""What the fit loop reads of a model: :class:`TrainableModel`.

:func:`fastmlp.train.loop.fit` (with steps.py, rollback.py, checkpoint.py, fused.py,
arguments.py, guards.py, preflight.py and the callbacks) knows no model class: it trains
any object with these members. :class:`fastmlp.Sequential` and :class:`fastmlp.MultiTask`
implement them (the shared ones in ``fastmlp.model.flat.FlatParameters``).
"""
from __future__ import annotations

from typing import Any, ContextManager, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..optim.optimizers import Optimizer
from .history import History

__all__ = ["TrainableModel"]


class TrainableModel(Protocol):
    """The fit loop's view of a model.

    Targets (``Y``) are whatever :meth:`prepare_data` returns (Sequential: an (n, k)
    array; MultiTask: ``{head: (n, k) array}``); the loop only hands them back to the
    model. "outputs" are whatever :meth:`loss_and_grad` returns besides the loss sum, and
    go to the running totals of :meth:`new_totals`.
    """

    # --------------------------------------------------------------- structure
    layers: Sequence[Any]      # every layer, in the flat buffer's order (state, step, adapt)
    backend: Any               # the Backend the steps call (its fused_trainer, sigint_watch)
    dtype: np.dtype
    input_dim: int
    loss: str                  # the loss name: read only for a fused program without heads

    @property
    def n_params(self) -> int: ...

    # ----------------------------------------------------------- training state
    stop_training: bool        # a callback sets it to end fit after the epoch
    history: Optional[History]    # fit keeps its History here however it ends
    optimizer: Optional[Optimizer]  # read by fit_optimizer; fit assigns the one it uses
    training_step: int         # the step counter (Dropout); advanced, restored on rollback

    @property
    def shuffle_rng(self) -> np.random.Generator:
        """fit's shuffle generator; its bit_generator.state is saved and restored."""

    @property
    def flat_params(self) -> np.ndarray:
        """Every parameter in one flat buffer (the optimizer steps it; snapshots copy it)."""

    @property
    def flat_grads(self) -> np.ndarray:
        """The gradient buffer :meth:`loss_and_grad` and :meth:`penalty` fill."""

    @property
    def weights_lock(self) -> Any:
        """The lock a step holds (``.writing``) while it changes the weights."""

    def writing_params(self) -> ContextManager[None]:
        """The block inside which the parameter views are writeable."""

    def weights_written(self) -> None:
        """Count a write made through another binding (the fused trainer's)."""

    def exclusive(self, what: str, *, from_fit: bool) -> ContextManager[None]:
        """Hold the model's fit lock (RuntimeError when another thread holds it)."""

    # ------------------------------------------------------------------ data
    def prepare_data(self, X, y, x_name: str = "X", y_name: str = "y") -> Tuple[np.ndarray, Any]:
        """(X, Y) checked and converted once to the model's dtype (learns classes)."""

    def history_keys(self, validation: bool) -> List[str]:
        """fit's History keys: must include "loss", "data_loss", "penalty" and "lr"."""

    def adapt(self, X: np.ndarray) -> None:
        """Adapt what is not adapted yet (Normalization) to the training inputs."""

    def evaluate_arrays(self, X: np.ndarray, Y) -> Dict[str, float]:
        """Validation values of prepared arrays: {"loss": ..., ...}; fit prefixes "val_"."""

    def evaluate_source(self, source: Any) -> Dict[str, float]:
        """:meth:`evaluate_arrays`' values over a source's chunks (validation from disk)."""

    # ------------------------------------------------------------------ steps
    def gather_batch(self, X: np.ndarray, Y, W: Optional[np.ndarray],
                     rows: np.ndarray) -> Tuple[np.ndarray, Any, Optional[np.ndarray]]:
        """(xb, yb, wb): a step's rows of the prepared arrays."""

    def loss_and_grad(self, X: np.ndarray, Y, weights: Optional[np.ndarray] = None
                      ) -> Tuple[float, Any]:
        """Training-mode forward, the summed (weighted) loss and, if it is finite, the
        gradient of the mean loss in :attr:`flat_grads`: (loss sum, outputs)."""

    def penalty(self, n_samples: int, batch_size: int) -> float:
        """The regularizers' penalty; its gradient added to :attr:`flat_grads`."""

    def new_totals(self) -> Any:
        """Running totals of an epoch: ``add(outputs, yb, loss_sum, weight_sum)``,
        ``result()`` (a dict with "data_loss" and the metric keys), ``state()`` and
        ``load(state)`` (plain data for a checkpoint)."""

    def fused_program(self) -> Optional[dict]:
        """The layers' plans compiled as the backend's fused trainer takes them
        (fastmlp.train.fused.training_program; with several loss heads
        multitask_program), or None: the per-op loop. The fused path's totals are read
        into :meth:`new_totals`' through its ``load``."""

    # ------------------------------------------------------------ checkpoints
    def check_saveable(self) -> None:
        """TypeError for a part a checkpoint (a model file) cannot hold."""

    def write_checkpoint(self, path: str, history: History, data: dict) -> None:
        """Write this model with the running fit's History and checkpoint ``data``."""

    @classmethod
    def read_checkpoint(cls, path, *, backend=None) -> Tuple[Any, Optional[dict]]:
        """(model, data) of a checkpoint file this class wrote."""

    def architecture(self) -> dict:
        """What builds the model again ("backend" and "layers" entries included); a
        resume compares it with the checkpoint's."""

    def get_weights(self) -> List[np.ndarray]: ...

    def set_weights(self, weights: Sequence) -> None: ...
