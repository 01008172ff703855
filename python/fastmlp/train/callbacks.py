"""Callbacks: code that runs between epochs of :meth:`Sequential.fit`.

The protocol (subclass :class:`Callback` and override what you need):

* ``set_model(model)`` is called once per fit before training; ``self.model`` is the model.
* ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``,
  ``on_train_end(logs)``. ``epoch`` counts from 1 within the fit; ``logs`` at an epoch's
  end holds that epoch's History values ("loss", "data_loss", "penalty", the metric, the
  ``val_`` keys with validation data, "lr").
* Setting ``self.model.stop_training = True`` ends training after the current epoch.
* ``state_dict()`` returns plain data (numbers, arrays) and ``load_state_dict(state)``
  restores it, so a resumed run continues exactly.

Built in: :class:`EarlyStopping` and :class:`ReduceLROnPlateau`.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

from .._keywords import suggest_keywords
from .._validation import check_bool, check_choice, check_int, check_nonnegative_float, \
    check_positive_float


class Callback:
    """Base class: every hook does nothing; no state."""

    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Dict[str, float]) -> None:
        pass

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state; got keys {sorted(state)}")


def check_callbacks(callbacks) -> List[Callback]:
    """None, or a list/tuple of Callback instances."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of fastmlp.callbacks.Callback; got "
                        f"{type(callbacks).__name__}")
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{i}] must be a fastmlp.callbacks.Callback; got "
                            f"{type(callback).__name__}")
    return list(callbacks)


class _Monitor(Callback):
    """Tracks the best value of ``monitor``: an improvement is a value below
    ``best - min_delta`` (mode "min") or above ``best + min_delta`` (mode "max");
    ``wait`` counts the epochs since the last improvement. Mode "auto" is "max" for
    accuracy and r2, "min" otherwise."""

    def __init__(self, monitor: str, min_delta: float, patience: int, mode: str):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str; got {type(monitor).__name__}")
        self.monitor = monitor
        self.min_delta = check_nonnegative_float(min_delta, "min_delta")
        self.patience = check_int(patience, "patience", minimum=0)
        mode = check_choice(mode, "mode", ("auto", "min", "max"))
        maximize = monitor.endswith(("accuracy", "r2"))
        self.mode = ("max" if maximize else "min") if mode == "auto" else mode
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0

    def _value(self, logs: Dict[str, float]) -> float:
        if self.monitor not in logs:
            raise ValueError(f"{type(self).__name__}: monitor={self.monitor!r} is not "
                             f"recorded; available: {sorted(logs)} (val_ keys need "
                             f"validation_data)")
        return logs[self.monitor]

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _update(self, logs: Dict[str, float]) -> bool:
        """Record this epoch's value; True if it improved on the best."""
        value = self._value(logs)
        if self._improved(value):
            self.best, self.wait = value, 0
            return True
        self.wait += 1
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.wait = check_int(state["wait"], "state['wait']", minimum=0)


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs in a row (defaults: val_loss, 10, 1e-4).

    With ``restore_best_weights=True`` the model ends training with the weights of its
    best epoch (kept as a copy whenever the monitored value improves). ``stopped_epoch``
    is the epoch after which training stopped (0 if it did not), ``best_epoch`` the
    epoch of the best value; both count the epochs this callback has seen, across fits.
    """

    @suggest_keywords
    def __init__(self, monitor: str = "val_loss", *, patience: int = 10,
                 min_delta: float = 1e-4, mode: str = "auto",
                 restore_best_weights: bool = False):
        super().__init__(monitor, min_delta, patience, mode)
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        self.best_weights = None
        self.best_epoch = 0
        self.stopped_epoch = 0
        self._epochs_seen = 0

    def on_epoch_end(self, epoch: int, logs: Dict[str, float]) -> None:
        self._epochs_seen += 1
        if self._update(logs):
            self.best_epoch = self._epochs_seen
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
        elif self.wait >= self.patience:
            self.stopped_epoch = self._epochs_seen
            self.model.stop_training = True

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "epochs_seen": self._epochs_seen,
                "best_weights": None if self.best_weights is None
                else [w.copy() for w in self.best_weights]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best_epoch = check_int(state["best_epoch"], "state['best_epoch']", minimum=0)
        self.stopped_epoch = check_int(state["stopped_epoch"], "state['stopped_epoch']",
                                       minimum=0)
        self._epochs_seen = check_int(state["epochs_seen"], "state['epochs_seen']", minimum=0)
        weights = state["best_weights"]
        self.best_weights = None if weights is None else [w.copy() for w in weights]


class ReduceLROnPlateau(_Monitor):
    """Multiply the optimizer's rate by ``factor`` when ``monitor`` has not improved by
    more than ``min_delta`` for ``patience`` epochs; then wait ``cooldown`` epochs before
    counting again. The rate never goes below ``min_lr``.

    It acts on the optimizer's ``scale`` (part of the optimizer's state), so it composes
    with any schedule: the rate is ``schedule(t) * scale``.
    """

    @suggest_keywords
    def __init__(self, monitor: str = "val_loss", *, factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "auto"):
        super().__init__(monitor, min_delta, patience, mode)
        self.factor = check_positive_float(factor, "factor")
        if self.factor >= 1:
            raise ValueError(f"factor must be < 1 to reduce the rate; got {factor!r}")
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.min_lr = check_nonnegative_float(min_lr, "min_lr")
        self.cooldown_left = 0

    def on_epoch_end(self, epoch: int, logs: Dict[str, float]) -> None:
        # The `cooldown` epochs right after a reduction are not counted (Keras counts
        # the last of them, so its cooldown=1 changes nothing).
        value = self._value(logs)
        improved = self._improved(value)
        if improved:
            self.best, self.wait = value, 0
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return
        if improved:
            return
        self.wait += 1
        if self.wait >= self.patience:
            self._reduce()
            self.cooldown_left, self.wait = self.cooldown, 0

    def _reduce(self) -> None:
        optimizer = self.model.optimizer
        rate = optimizer.current_learning_rate
        if rate > self.min_lr:
            optimizer.scale *= max(rate * self.factor, self.min_lr) / rate

    def state_dict(self) -> dict:
        return {**super().state_dict(), "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.cooldown_left = check_int(state["cooldown_left"], "state['cooldown_left']",
                                       minimum=0)
