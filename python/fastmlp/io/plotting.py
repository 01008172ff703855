"""Learning curves of a :class:`fastmlp.History` with matplotlib (``pip install
'fastmlp[plot]'``), imported only when a plot is drawn.

The figure is a ``matplotlib.figure.Figure`` made directly, not through pyplot: no GUI
backend is chosen, no window opens and nothing joins pyplot's global figure list, so
plotting from a script, a server or a test leaves matplotlib's global state alone.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import List, NamedTuple, Optional, Sequence, Tuple

from .._files import check_path, write_atomically
from .._keywords import suggest_keywords
from .._validation import check_bool

MATPLOTLIB_HINT = ("plotting needs matplotlib: pip install 'fastmlp[plot]' "
                   "(or pip install matplotlib)")
METRICS = ("accuracy", "r2")


class Panel(NamedTuple):
    """One subplot: its y label, the training and dev keys of the history (None: no such
    curve) and whether the y axis is logarithmic."""

    title: str
    train_key: str
    dev_key: Optional[str]
    log_scale: bool = False


LOSS_PANEL = Panel("loss", "loss", "val_loss")
LR_PANEL = Panel("learning rate", "lr", None, log_scale=True)


def _matplotlib():
    """matplotlib's Figure and MaxNLocator, or ImportError with the install hint."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise ImportError(MATPLOTLIB_HINT) from exc
    return Figure, MaxNLocator


def _series(history) -> Mapping:
    """The per-epoch lists of a History (or a dict like History.history), checked."""
    series = getattr(history, "history", history)
    if not isinstance(series, Mapping):
        raise TypeError("history must be a fastmlp History or a dict of per-epoch lists; "
                        f"got {type(history).__name__}")
    if not any(len(values) for values in series.values()):
        raise ValueError("the history is empty (no epoch recorded): nothing to plot")
    return series


def _curves(panel: Panel, series: Mapping) -> List[Tuple[str, Sequence[float]]]:
    """(label, values) of the panel's curves that the history has."""
    keys = zip((panel.train_key, panel.dev_key), ("train", "dev"))
    return [(label, series[key]) for key, label in keys if key in series and len(series[key])]


def _panels(series: Mapping, metrics: bool, lr: bool) -> List[Panel]:
    """The panels with data: loss, then the metric (if ``metrics``), then the learning
    rate (if ``lr``); a key that is missing (no validation data, say) is skipped."""
    wanted = [LOSS_PANEL]
    if metrics:
        wanted += [Panel(name, name, f"val_{name}") for name in METRICS]
    if lr:
        wanted.append(LR_PANEL)
    panels = [panel for panel in wanted if _curves(panel, series)]
    if not panels:
        raise ValueError(f"the history has none of the keys to plot ({sorted(series)}); "
                         "expected 'loss', 'val_loss', 'accuracy', 'r2' or 'lr'")
    return panels


def _draw(axes, panel: Panel, series: Mapping) -> None:
    curves = _curves(panel, series)
    for label, values in curves:
        axes.plot(range(1, len(values) + 1), values, label=label,
                  marker="o" if len(values) == 1 else None)
    if panel.log_scale and all(min(values) > 0 for _, values in curves):
        axes.set_yscale("log")                 # a log axis cannot show a rate of 0
    if panel.dev_key is not None:
        axes.legend()
    axes.set_ylabel(panel.title)
    axes.grid(True, alpha=0.3)


@suggest_keywords
def plot_history(history, path=None, *, metrics: bool = True, lr: bool = True):
    """Draw ``history``'s learning curves and return the matplotlib ``Figure``.

    One panel per quantity, sharing the epoch axis (1, 2, ...): the loss ("loss" as
    train, "val_loss" as dev), the metric ("accuracy" or "r2" with its "val_" twin) when
    ``metrics``, and the learning rate "lr" on a log scale (linear if a rate is 0) when
    ``lr``. Keys the history lacks are left out. ``history`` is a :class:`History` or a
    dict of per-epoch lists. With ``path`` the figure is also saved there, atomically
    (a temporary file renamed into place), as PNG unless the suffix names another format
    matplotlib knows (".svg", ".pdf", ...). ValueError for an empty history; ImportError
    with an install hint when matplotlib is missing.
    """
    series = _series(history)
    panels = _panels(series, check_bool(metrics, "metrics"), check_bool(lr, "lr"))
    Figure, MaxNLocator = _matplotlib()
    figure = Figure(figsize=(6.4, 2.4 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        _draw(ax, panel, series)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if path is not None:
        save_figure(figure, path)
    return figure


def save_figure(figure, path) -> None:
    """Render ``figure`` in the format of ``path``'s suffix (PNG without one) and write
    it atomically: readers see the old file or the whole new one."""
    path = check_path(path)
    suffix = os.path.splitext(path)[1][1:].lower()
    write_atomically(path, lambda file: figure.savefig(file, format=suffix or "png"))
