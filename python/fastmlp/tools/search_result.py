"""What a search found: :class:`SearchResult` (public path ``fastmlp.search.SearchResult``)
and the trials' ranking (:func:`ranked_trials`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._keywords import suggest_keywords
from .._validation import check_int, check_seed
from ..model.sequential import Sequential
from .mlp_builder import unpack_built
from .trials import Trial

__all__ = ["SearchResult", "ranked_trials"]


def _ranking_key(objective: str) -> Callable[[Trial], tuple]:
    """Lower objective first (NaN counts as inf), ties broken by (round, index)."""
    def key(trial: Trial) -> tuple:
        value = getattr(trial, objective)
        return (value if not math.isnan(value) else math.inf, trial.round, trial.index)
    return key


def ranked_trials(trials: Sequence[Trial], objective: str) -> List[Trial]:
    """Successful trials best first, then the failed ones in run order."""
    ok = sorted((t for t in trials if t.ok), key=_ranking_key(objective))
    return ok + [t for t in trials if not t.ok]


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SearchResult:
    """What :func:`random_search` found.

    ``trials``: every :class:`Trial` in run order; ``spaces``: the space each round
    sampled from (``spaces[0]`` is the one given); ``objective``, ``seed``, ``epochs``
    and ``build`` as used. ``best`` is the best successful trial, ``best_params`` its
    parameters; :meth:`best_model` trains a model with them in one call;
    :meth:`to_table` / ``str()`` print the trials best first.
    """

    trials: Tuple[Trial, ...]
    spaces: Tuple[Dict[str, Any], ...]
    objective: str
    seed: int
    epochs: int
    build: Callable = field(repr=False)

    def ranked(self) -> List[Trial]:
        """Successful trials best first (ties: earlier first), then the failed ones."""
        return ranked_trials(self.trials, self.objective)

    @property
    def best(self) -> Trial:
        best = self.ranked()[0]
        if not best.ok:
            raise ValueError(f"no trial succeeded: all {len(self.trials)} diverged (first: "
                             f"{best.failure}); lower the learning rates in the space")
        return best

    @property
    def best_params(self) -> Dict[str, Any]:
        return dict(self.best.params)

    @suggest_keywords
    def best_model(self, X, y, *, epochs: Optional[int] = None, seed: Optional[int] = None,
                   **fit_kwargs) -> Sequential:
        """A model built with the best parameters (and by default the best trial's seed),
        trained on (X, y) for ``epochs`` (default: the search's) and returned. Further
        keyword arguments go to ``fit`` (validation_data, callbacks, verbose, ...).
        With the training data, the search's epochs and the default seed this is the
        best trial's model, bit for bit."""
        best = self.best
        model, built_kwargs = unpack_built(self.build(best.params, best.seed if seed is None
                                                else check_seed(seed)), self.build)
        kwargs = {"epochs": self.epochs, **built_kwargs, **fit_kwargs}
        if epochs is not None:
            kwargs["epochs"] = check_int(epochs, "epochs")
        model.fit(X, y, **kwargs)
        return model

    def to_table(self, top: Optional[int] = None) -> str:
        """The trials best first (the ``top`` best, if given) as a text table: round,
        trial, dev_error, dev_loss, status, seconds, pid, host, then one column per
        parameter."""
        names = list(dict.fromkeys(name for space in self.spaces for name in space))
        header = ["round", "trial", "dev_error", "dev_loss", "status", "seconds", "pid",
                  "host", *names]
        shown = self.ranked()[:top] if top is not None else self.ranked()
        rows = [[t.round, t.index, t.dev_error, t.dev_loss, "ok" if t.ok else "diverged",
                 t.seconds, t.pid, t.host, *(t.params.get(name, "") for name in names)]
                for t in shown]
        cells = [header] + [[_cell(v) for v in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])

    def __str__(self) -> str:
        rounds = len(self.spaces)
        summary = (f"random search: {len(self.trials)} trials in {rounds} "
                   f"round{'s' * (rounds != 1)}, objective {self.objective} (lower is "
                   f"better), seed {self.seed}")
        ok = [t for t in self.trials if t.ok]
        best = (f"best: {self.objective} {getattr(self.best, self.objective):.4g} with "
                f"{self.best_params}" if ok else "best: none (every trial diverged)")
        return "\n".join([summary, best, self.to_table()])

    def __repr__(self) -> str:
        return (f"SearchResult({len(self.trials)} trials, {len(self.spaces)} rounds, "
                f"objective={self.objective!r}, seed={self.seed})")

