"""Progress for long runs (fit, gradient_check, random_search): ``verbose="auto"`` shows it
when someone watches (a terminal, a Jupyter cell) and stays quiet in pipes, files and CI;
1 forces it, 0 silences it."""
from __future__ import annotations

import sys
import time
from typing import Dict

from .._validation import check_int


def check_verbose(verbose):
    """fit's ``verbose``: "auto" or an integer >= 0."""
    if isinstance(verbose, str) and verbose == "auto":
        return verbose
    if isinstance(verbose, str):
        raise ValueError(f'verbose must be "auto" or an integer >= 0; got {verbose!r}')
    return check_int(verbose, "verbose", minimum=0)


def shows(verbose) -> bool:
    """Whether output is wanted: ``verbose`` > 0, or "auto" and :func:`interactive`."""
    return interactive() if verbose == "auto" else verbose > 0


def interactive() -> bool:
    """Whether someone watches the output: stderr is a terminal, or a Jupyter kernel's
    stream (whose isatty() is False, but whose cell shows what is printed). Pipes, files,
    CI logs and pytest's capture are not."""
    stream = sys.stderr
    return stream is not None and (stream.isatty()
                                   or type(stream).__module__.startswith("ipykernel"))


# verbose="auto" shows a bar inside the epoch only when the epoch is long: the previous one
# took LONG_EPOCH_S or more or, for the first, it does LONG_EPOCH_WORK parameter-rows
# (rows x parameters: forward and backward take about 6 flops each, so about a second on
# one core). A bar splits the epoch into about 100 calls; short epochs do without it.
LONG_EPOCH_S = 1.0
LONG_EPOCH_WORK = 2e9


class EpochProgress:
    """What fit prints. verbose=0: nothing; verbose=1: one line per epoch on stdout (loss,
    metric, validation, samples/s), plus a tqdm bar over the epoch's batches on stderr
    when tqdm is installed and stderr is a terminal; "auto": as 1 when someone watches
    (:func:`interactive`), with the bar only for long epochs, else as 0."""

    def __init__(self, verbose, epochs: int, n_batches: int, work: float = 0.0):
        auto = verbose == "auto"
        self.enabled = shows(verbose)
        self.epochs = epochs
        self.n_batches = n_batches
        self._tqdm = tqdm_on_terminal() if self.enabled else None
        self._bar = None
        self._bar_always = not auto
        self._long = work >= LONG_EPOCH_WORK       # the first epoch's guess
        self._epoch_started = 0.0

    def start_epoch(self, epoch: int) -> None:
        self._epoch_started = time.perf_counter()
        if self._tqdm is not None and (self._bar_always or self._long):
            self._bar = self._tqdm(total=self.n_batches, desc=f"epoch {epoch}/{self.epochs}",
                                   leave=False, file=sys.stderr)

    @property
    def has_bar(self) -> bool:
        return self._bar is not None

    def step(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def end_epoch(self, epoch: int, record: Dict[str, float], samples_per_s: float) -> None:
        self._long = time.perf_counter() - self._epoch_started >= LONG_EPOCH_S
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.enabled:
            values = "  ".join(f"{key} {value:.4f}" for key, value in record.items()
                               if key not in ("data_loss", "penalty", "lr"))
            print(f"epoch {epoch}/{self.epochs}  {values}  {samples_per_s:,.0f} samples/s",
                  flush=True)


def tqdm_on_terminal():
    """tqdm's bar class when it is installed and stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm
