"""The distributions a search space's parameters are drawn from (public path
``fastmlp.search``): :class:`Uniform`, :class:`LogUniform`, :class:`IntUniform` and
:class:`Choice`, each of which can also narrow itself around the best trials' values
(:func:`fastmlp.search.random_search`'s coarse-to-fine rounds)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

import numpy as np

from .._validation import check_finite_float, check_positive_float

__all__ = ["Choice", "Distribution", "IntUniform", "LogUniform", "Uniform"]


class Distribution:
    """Values a parameter may take. ``sample(rng)`` draws one value from a
    ``numpy.random.Generator``; ``narrow(values, widen)`` returns a distribution of the same
    kind, inside this one, around ``values`` (the values of the best trials)."""

    def sample(self, rng: np.random.Generator):
        raise NotImplementedError

    def narrow(self, values: Sequence, widen: float) -> "Distribution":
        raise NotImplementedError


def _spread(values: Sequence, low: float, high: float, widen: float,
            to_scale: Callable[[float], float]) -> Tuple[float, float]:
    """``[min, max]`` of ``values`` in the sampling scale, widened on both sides by
    ``widen * (to_scale(high) - to_scale(low))``."""
    scaled = [to_scale(v) for v in values]
    margin = widen * (to_scale(high) - to_scale(low))
    return min(scaled) - margin, max(scaled) + margin


@dataclass(frozen=True)
class Uniform(Distribution):
    """Real numbers uniform on ``[low, high)``, ``low < high`` (finite)."""

    low: float
    high: float

    def __post_init__(self):
        name = type(self).__name__
        low, high = self._check(self.low, f"{name} low"), self._check(self.high, f"{name} high")
        if not low < high:
            raise ValueError(f"{name} needs low < high; got low={low!r}, high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @staticmethod
    def _check(value, name: str) -> float:
        return check_finite_float(value, name)

    @staticmethod
    def _to_scale(value: float) -> float:
        """The scale in which samples are uniform (identity here, log for LogUniform)."""
        return value

    @staticmethod
    def _from_scale(value: float) -> float:
        return value

    def _clip(self, value: float) -> float:
        return min(max(value, self.low), self.high)

    def sample(self, rng: np.random.Generator) -> float:
        """``from_scale(u)`` with u uniform between the scaled bounds (clipped to
        ``[low, high]`` against rounding in the scale's inverse)."""
        u = rng.uniform(self._to_scale(self.low), self._to_scale(self.high))
        return self._clip(float(self._from_scale(u)))

    def narrow(self, values: Sequence, widen: float):
        """``[min, max]`` of ``values`` widened by ``widen`` times this range's width on
        both sides (in the sampling scale), clipped to this range."""
        low, high = _spread(values, self.low, self.high, widen, self._to_scale)
        return type(self)(self._clip(self._from_scale(low)), self._clip(self._from_scale(high)))


@dataclass(frozen=True)
class LogUniform(Uniform):
    """Positive numbers whose logarithm is uniform on ``[log low, log high)``, ``0 < low <
    high``: each decade is equally likely (learning rates, regularization strengths)."""

    @staticmethod
    def _check(value, name: str) -> float:
        return check_positive_float(value, name)

    @staticmethod
    def _to_scale(value: float) -> float:
        return math.log(value)

    @staticmethod
    def _from_scale(value: float) -> float:
        return math.exp(value)


def _integer(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type "
                        f"{type(value).__name__}")
    return int(value)


@dataclass(frozen=True)
class IntUniform(Distribution):
    """Integers uniform on ``low..high``, both included, ``low <= high``."""

    low: int
    high: int

    def __post_init__(self):
        low, high = _integer(self.low, "IntUniform low"), _integer(self.high, "IntUniform high")
        if not low <= high:
            raise ValueError(f"IntUniform needs low <= high; got low={low!r}, high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high, endpoint=True))

    def narrow(self, values: Sequence, widen: float) -> "IntUniform":
        """``[min, max]`` of ``values`` widened by ``widen * (high - low)`` on both sides,
        rounded outward to integers and clipped to this range."""
        low, high = _spread(values, self.low, self.high, widen, float)
        return IntUniform(max(self.low, math.floor(low)), min(self.high, math.ceil(high)))


class Choice(Distribution):
    """One of ``options`` (a non-empty list or tuple), each equally likely; narrowing keeps
    the options among ``values`` (compared with ``==``), in their original order."""

    def __init__(self, options: Sequence):
        if not isinstance(options, (list, tuple)):
            raise TypeError(f"Choice options must be a list or tuple of values; got "
                            f"{type(options).__name__}")
        if not options:
            raise ValueError("Choice options must not be empty")
        self.options = tuple(options)

    def __eq__(self, other) -> bool:
        return isinstance(other, Choice) and self.options == other.options

    __hash__ = None

    def __repr__(self) -> str:
        return f"Choice({list(self.options)!r})"

    def sample(self, rng: np.random.Generator):
        return self.options[int(rng.integers(len(self.options)))]

    def narrow(self, values: Sequence, widen: float) -> "Choice":
        return Choice([option for option in self.options
                       if any(bool(option == value) for value in values)])
