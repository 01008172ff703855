"""History: what a fit recorded, one value per epoch and key."""
from __future__ import annotations

from typing import Dict, List

from .._keywords import suggest_keywords


class History:
    """What fit recorded: ``history`` maps each key to a list with one value per epoch.

    Keys: "loss" (data loss + penalty), "data_loss", "penalty", the metric ("accuracy"
    or "r2"), "val_loss" and "val_<metric>" with validation data, and "lr" (the rate at
    the epoch's last step).
    """

    def __init__(self, keys: List[str]):
        self.history: Dict[str, List[float]] = {key: [] for key in keys}

    def append(self, values: Dict[str, float]) -> None:
        for key, series in self.history.items():
            series.append(float(values[key]))

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])

    @suggest_keywords
    def plot(self, path=None, *, metrics: bool = True, lr: bool = True):
        """Learning curves as a matplotlib Figure, saved to ``path`` when given (atomically;
        PNG unless its suffix names another format): the loss, the metric when
        ``metrics``, the learning rate when ``lr``; train and dev curves per panel. See
        :func:`fastmlp.plotting.plot_history`."""
        from ..io.plotting import plot_history
        return plot_history(self, path, metrics=metrics, lr=lr)

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self.history.items() if v)
        return f"History(epochs={self.epochs}{', ' if last else ''}{last})"
