"""Checkpoints of a running fit, and the in-memory restore point of a divergence.

A checkpoint is a model file (:mod:`fastmlp.model.modelfile`) with a ``"checkpoint"`` entry: the
weights, layer state, optimizer (configuration, schedule counters, ``scale``, m and v),
``training_step`` (Dropout's counter), the shuffle generator and the fit's History so far
are the model file's; the entry adds where the fit is and what it needs to finish exactly:

==================  ===================================================================
``position``        ``[epochs_done, step]``: complete epochs of this fit, and the steps
                    of the next epoch already taken (0 at an epoch boundary)
``fit``             ``n_samples``, ``batch_size`` (rows per step), ``shuffle`` and
                    ``history_keys``: a resume must train on data of that shape, so
``epoch_shuffle``   mid-epoch: the shuffle generator's state before the epoch's
                    permutation (the order is drawn again from it); else null
``totals``          mid-epoch: the epoch's running totals (``loss_sum``, ``weight_sum``,
                    ``penalty_sum``, ``count``, and ``correct`` or r2's ``shift``, ``sse``,
                    ``sum``, ``sum_sq``; a multi-task model: ``penalty_sum`` and
                    ``heads``, each head's totals but the penalty), so its History values
                    come out as uninterrupted
``callbacks``       ``[{"class": name, "state": callback.state_dict()}, ...]``
``finished``        true once the fit has ended (last epoch, or a callback stopped it)
==================  ===================================================================

Files are named ``checkpoint-<epochs_done:06>-<step:08>.fmlp``, so their names sort in
training order; the newest valid one is the one to resume from (there is no separate
"latest" pointer to keep consistent). Each is written atomically (temporary file in the
directory, fsync, ``os.replace``, fsync of the directory: :func:`fastmlp._files.
write_atomically`); a process killed while writing leaves at most a hidden
``.checkpoint-*.tmp`` file, which is ignored and removed by the next checkpointing fit.
Only the newest ``keep`` checkpoints are kept, older ones are deleted after each write.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .._files import check_path
from .._validation import check_bool, check_int
from ..errors import CheckpointWarning, ModelFileError, user_stacklevel

# Files are written and read through the model's checkpoint protocol (check_saveable,
# write_checkpoint, read_checkpoint, architecture: fastmlp.train.protocol), so this
# module needs no model class and no codec.

_NAME = re.compile(r"^checkpoint-(\d{6,})-(\d{8,})\.fmlp$")
_TEMPORARY = re.compile(r"^\.checkpoint-\d{6,}-\d{8,}\.fmlp\.[0-9a-f]+\.tmp$")
_DATA_KEYS = ("position", "fit", "epoch_shuffle", "totals", "callbacks", "finished")
_PASS_TOTALS = (("loss_sum", "weight_sum", "count", "correct"),
                ("loss_sum", "weight_sum", "count", "shift", "sse", "sum", "sum_sq"))


@dataclass(frozen=True, order=True)
class Position:
    """Where a fit is: ``epochs_done`` complete epochs, then ``step`` steps of the next."""
    epochs_done: int
    step: int

    @property
    def filename(self) -> str:
        return f"checkpoint-{self.epochs_done:06d}-{self.step:08d}.fmlp"


@dataclass
class Checkpoint:
    """What a checkpoint records besides the model file (the module docstring's table)."""
    position: Position
    fit: dict
    epoch_shuffle: Optional[dict] = None
    totals: Optional[dict] = None
    callbacks: Optional[List[dict]] = None
    finished: bool = False

    def to_data(self) -> dict:
        return {"position": [self.position.epochs_done, self.position.step], "fit": self.fit,
                "epoch_shuffle": self.epoch_shuffle, "totals": self.totals,
                "callbacks": self.callbacks, "finished": self.finished}

    @classmethod
    def from_data(cls, data) -> "Checkpoint":
        """ModelFileError unless ``data`` has this class's structure."""
        if not isinstance(data, dict) or sorted(data) != sorted(_DATA_KEYS):
            raise ModelFileError(f"the checkpoint entry's data must have the keys "
                                 f"{list(_DATA_KEYS)}")
        position = data["position"]
        if not (isinstance(position, list) and len(position) == 2
                and all(type(v) is int and v >= 0 for v in position)):
            raise ModelFileError(f"checkpoint position must be [epochs_done, step], two "
                                 f"integers >= 0; got {position!r:.60}")
        callbacks = data["callbacks"]
        if not isinstance(callbacks, list) or not all(
                isinstance(c, dict) and sorted(c) == ["class", "state"] for c in callbacks):
            raise ModelFileError("checkpoint callbacks must be a list of {class, state}")
        if not isinstance(data["fit"], dict) or not isinstance(data["finished"], bool):
            raise ModelFileError("checkpoint fit must be an object and finished a boolean")
        for key in ("epoch_shuffle", "totals"):
            if (data[key] is None) != (position[1] == 0) or \
                    not isinstance(data[key], (dict, type(None))):
                raise ModelFileError(f"checkpoint {key} must be an object inside an epoch "
                                     f"and null at an epoch boundary")
        totals = data["totals"]
        if totals is not None:
            _check_totals(totals)
        return cls(Position(*position), data["fit"], data["epoch_shuffle"], totals,
                   callbacks, data["finished"])


def _check_totals(totals: dict) -> None:
    """ModelFileError unless ``totals`` are "penalty_sum" with a pass's totals (one of
    _PASS_TOTALS) or with "heads": {head: a pass's totals} (a multi-head model's)."""
    rest = {k: v for k, v in totals.items() if k != "penalty_sum"}
    heads = rest.get("heads")
    passes = list(heads.values()) if list(rest) == ["heads"] and isinstance(heads, dict) \
        and heads else [rest]
    if "penalty_sum" not in totals or not all(
            isinstance(p, dict) and sorted(p) in [sorted(keys) for keys in _PASS_TOTALS]
            for p in passes):
        raise ModelFileError(f"checkpoint totals must have penalty_sum and the keys of "
                             f"one of {_PASS_TOTALS} (per head in \"heads\" for a "
                             f"multi-task model); got {sorted(totals)}")


def callback_states(callbacks) -> List[dict]:
    return [{"class": type(c).__name__, "state": c.state_dict()} for c in callbacks]


class Snapshot:
    """Everything a training step changes, copied in memory: the parameters, each layer's
    state (BatchNorm's running averages), the optimizer's m, v and counters, and the
    model's step counter. fit takes one before each epoch's steps and restores it to roll
    a divergence back to the start of the failing step. The parameters, m and v are kept
    by :meth:`_save_arrays` (copies here; the fused path's trainer keeps its own)."""

    _COUNTERS = ("iterations", "epochs", "samples", "epoch_start_samples", "scale",
                 "last_learning_rate")

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.states = [[s.copy() for s in layer.get_state()] for layer in model.layers]
        self.layer_steps = [layer.step for layer in model.layers]
        self.step = model.training_step
        self.counters = {k: getattr(optimizer, k) for k in self._COUNTERS}
        self.allocated = {name: getattr(optimizer, name) is not None for name in ("m", "v")}
        self._save_arrays()

    def _save_arrays(self) -> None:
        """The parameters and the optimizer's m and v (those allocated), copied."""
        self.params = self.model.flat_params.copy()
        self.arrays = {name: getattr(self.optimizer, name).copy()
                       for name, allocated in self.allocated.items() if allocated}

    def _restore_arrays(self) -> None:
        np.copyto(self.model.flat_params, self.params)
        for name, saved in self.arrays.items():
            np.copyto(getattr(self.optimizer, name), saved)

    def restore(self) -> None:
        """Put everything back, in place (the fused trainer stays bound to the buffers);
        m and v not allocated then are dropped again."""
        model, optimizer = self.model, self.optimizer
        with model.writing_params():
            self._restore_arrays()
            for layer, state, step in zip(model.layers, self.states, self.layer_steps):
                for array, saved in zip(layer.get_state(), state):
                    np.copyto(array, saved)
                layer.step = step
        model.training_step = self.step
        for name, value in self.counters.items():
            setattr(optimizer, name, value)
        for name, allocated in self.allocated.items():
            if not allocated:
                setattr(optimizer, name, None)


def non_finite(model, optimizer) -> str:
    """What holds NaN or infinities among the parameters, the optimizer's m and v and the
    layers' state ("" when nothing does). Runs after every step range, so the names are
    only made for what is not finite."""
    bad = [name for name, array in (("the parameters", model.flat_params),
                                    ("the optimizer's m", optimizer.m),
                                    ("the optimizer's v", optimizer.v))
           if array is not None and not _finite(model, array)]
    for i, layer in enumerate(model.layers):
        if not all(_finite(model, state) for state in layer.get_state()):
            bad.append(f"the state of layers[{i}]")
    return " and ".join(dict.fromkeys(bad))


_BACKEND_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _finite(model, array: np.ndarray) -> bool:
    """Whether ``array`` is finite: float32 and float64 through the model's backend (one
    pass, no temporary array), anything else (a custom layer's state) through NumPy."""
    if not (isinstance(array, np.ndarray) and array.ndim == 1 and array.flags.c_contiguous):
        # (flat_params, m and v already are flat: no view to make)
        array = np.ascontiguousarray(array).reshape(-1)
    if array.dtype in _BACKEND_DTYPES:
        return model.backend.all_finite(array)
    return bool(np.isfinite(array).all())


def list_checkpoints(directory) -> List[Tuple[Position, str]]:
    """(position, path) of the checkpoint files in ``directory``, oldest first
    (temporary and ``.corrupt`` files are not checkpoints)."""
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((Position(int(match[1]), int(match[2])),
                          os.path.join(directory, name)))
    return sorted(found)


class Checkpoints:
    """A fit's checkpoint directory and when to write to it.

    ``every`` (epochs, or None) and ``every_steps`` (training steps of the fit, or None)
    say when: after every ``every``-th epoch, after every ``every_steps``-th step (written
    after the epoch's end when that step ends an epoch), and always when the fit ends.
    ``keep`` is how many of the newest files are kept (>= 1). ``writes`` False: the
    directory is only read (a distributed fit's ranks but rank 0, which alone writes,
    removes and renames its files).
    """

    def __init__(self, directory: str, every: Optional[int], every_steps: Optional[int],
                 keep: int, writes: bool = True):
        self.directory, self.keep, self.writes = directory, keep, writes
        self.every, self.every_steps = every, every_steps
        os.makedirs(directory, exist_ok=True)
        if writes:
            self._remove_temporaries()

    @classmethod
    def create(cls, directory, every, every_steps, keep, resume,
               writes: bool = True) -> Optional["Checkpoints"]:
        """The fit's checkpoints from its arguments (checked), or None without a directory."""
        every = None if every is None else check_int(every, "checkpoint_every")
        every_steps = None if every_steps is None else check_int(every_steps,
                                                                 "checkpoint_every_steps")
        keep = check_int(keep, "keep_checkpoints")
        resume = check_bool(resume, "resume")
        if directory is None:
            if resume or every_steps is not None:
                raise ValueError("resume=True and checkpoint_every_steps need a "
                                 "checkpoint_dir")
            return None
        checkpoints = cls(check_path(directory), every, every_steps, keep, writes)
        if not resume and checkpoints.files():
            raise FileExistsError(f"checkpoint_dir {checkpoints.directory!r} already holds "
                                  f"checkpoints: pass resume=True to continue that fit, or "
                                  f"use another directory")
        return checkpoints

    @staticmethod
    def check_model(model) -> None:
        """TypeError now for a model part a checkpoint (a model file) cannot hold."""
        model.check_saveable()

    # ------------------------------------------------------------------- when
    def due_in_epoch(self, steps_done: int) -> bool:
        """Whether to write after the fit's ``steps_done``-th step (inside an epoch)."""
        return self.every_steps is not None and steps_done % self.every_steps == 0

    def due_after_epoch(self, epoch: int, steps_done: int, finished: bool) -> bool:
        return finished or (self.every is not None and epoch % self.every == 0) \
            or self.due_in_epoch(steps_done)

    # ------------------------------------------------------------------ files
    def files(self) -> List[Tuple[Position, str]]:
        return list_checkpoints(self.directory)

    def write(self, model, history, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` atomically, then delete all but the newest ``keep``
        (nothing when this process only reads the directory)."""
        if not self.writes:
            return
        path = os.path.join(self.directory, checkpoint.position.filename)
        model.write_checkpoint(path, history, checkpoint.to_data())
        for _, old in self.files()[:-self.keep]:
            os.unlink(old)

    def _remove_temporaries(self) -> None:
        """Remove what a write killed before its rename left behind."""
        for name in os.listdir(self.directory):
            if _TEMPORARY.match(name):
                os.unlink(os.path.join(self.directory, name))

    def latest(self, model_class) -> Optional[Tuple[object, Checkpoint]]:
        """(model, checkpoint) of the newest valid file, None when there is none. A file
        that cannot be read is renamed ``<name>.corrupt`` (kept for inspection, no longer
        considered; by the writing process only) with a CheckpointWarning, and the next
        older one is tried; if every file is damaged, ModelFileError. The model is a
        ``model_class``."""
        files = self.files()
        for position, path in reversed(files):
            try:
                model, data = model_class.read_checkpoint(path)
                checkpoint = Checkpoint.from_data(data)
                if checkpoint.position != position:
                    raise ModelFileError(f"it records position {checkpoint.position}")
                return model, checkpoint
            except (ModelFileError, OSError) as exc:
                if self.writes:
                    os.replace(path, path + ".corrupt")
                renamed = f"renamed to {os.path.basename(path)}.corrupt" if self.writes \
                    else "skipped"
                warnings.warn(f"checkpoint {path!r} cannot be read ({exc}); {renamed}, "
                              f"resuming from the previous one", CheckpointWarning,
                              stacklevel=user_stacklevel())
        if files:
            raise ModelFileError(f"no valid checkpoint in {self.directory!r}: all "
                                 f"{len(files)} are damaged")
        return None


# ---------------------------------------------------------------------- resuming
def check_compatible(model, loaded, checkpoint: Checkpoint, fit: dict, callbacks,
                     epochs: int) -> None:
    """ValueError unless ``checkpoint`` (with its model ``loaded``) belongs to this fit:
    the same architecture and seed, data of the same size, batch and shuffle, the same
    callback classes, and no more epochs done than ``epochs``."""
    ours, theirs = _built_alike(model), _built_alike(loaded)
    different = sorted(k for k in ours if ours[k] != theirs[k])
    if different:
        raise ValueError(f"the checkpoint is of another model: its {different} differ from "
                         f"this model's")
    different = sorted(k for k in fit if checkpoint.fit.get(k) != fit[k])
    if different or sorted(checkpoint.fit) != sorted(fit):
        raise ValueError("the checkpoint is of another fit: "
                         + ", ".join(f"{k} {checkpoint.fit.get(k)!r} there, {fit[k]!r} here"
                                     for k in different))
    classes = [type(c).__name__ for c in callbacks]
    saved = [c["class"] for c in checkpoint.callbacks]
    if classes != saved:
        raise ValueError(f"the checkpoint was written with the callbacks {saved}; this fit "
                         f"has {classes}")
    if checkpoint.position.epochs_done > epochs:
        raise ValueError(f"the checkpoint is after epoch {checkpoint.position.epochs_done}; "
                         f"this fit has epochs={epochs}")


def _built_alike(model) -> dict:
    """What two models built by the same code share: the architecture without the backend
    and without a Normalization's adaptation, which is state (restored from the checkpoint:
    the model built again for a resumed fit is not adapted yet)."""
    built = model.architecture()
    del built["backend"]
    built["layers"] = [{k: v for k, v in entry.items() if k != "adapted"}
                       for entry in built["layers"]]
    return built


def restore(model, optimizer, loaded) -> None:
    """Give ``model`` and ``optimizer`` the state of ``loaded``, a checkpoint's model:
    weights and layer state, counters, shuffle generator, optimizer state."""
    model.set_weights(loaded.get_weights())
    for layer, saved in zip(model.layers, loaded.layers):
        if hasattr(saved, "adapted"):
            layer.adapted = saved.adapted
    model.training_step = loaded.training_step
    model.stop_training = loaded.stop_training
    model.shuffle_rng.bit_generator.state = loaded.shuffle_rng.bit_generator.state
    optimizer.load_state_dict(loaded.optimizer.state_dict())


def load_callback_states(callbacks, checkpoint: Checkpoint) -> None:
    for callback, saved in zip(callbacks, checkpoint.callbacks):
        callback.load_state_dict(saved["state"])

