"""Keyword arguments a public function does not take get a "did you mean" answer.

``@suggest_keywords`` wraps a function (or method, or ``__init__``); a call with an
unknown keyword is a TypeError as Python's own, plus the closest names it does take:
``Sequential.fit() got an unexpected keyword argument 'batchsize'; did you mean
'batch_size'?``. The wrapper keeps the signature and docstring (``functools.wraps``), so
``help()``, editors and ``inspect.signature`` (scikit-learn's get_params) see the
function's own. A correct call costs one extra Python call: the names are looked at only
after Python has refused the call, before the function's body runs.
"""
from __future__ import annotations

import difflib
import functools
import inspect
from typing import Callable, List, TypeVar

F = TypeVar("F", bound=Callable)


def suggest_keywords(function: F) -> F:
    """``function`` whose unknown keyword arguments raise TypeError naming the closest
    keywords it takes (or listing them all when none is close)."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return function                   # takes any keyword: nothing is unknown
    names = [p.name for p in parameters
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           inspect.Parameter.KEYWORD_ONLY) and p.name != "self"]

    @functools.wraps(function)
    def checked(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except TypeError:
            unknown = [key for key in kwargs if key not in names]
            if not unknown:               # the function's own TypeError, or a positional one
                raise
            raise TypeError(unexpected_keyword(_called(function, args), unknown[0],
                                               names)) from None

    return checked  # type: ignore[return-value]


def unexpected_keyword(called: str, keyword: str, names: List[str]) -> str:
    """The message for ``keyword``, which ``called`` does not take among ``names``."""
    message = f"{called}() got an unexpected keyword argument {keyword!r}"
    close = difflib.get_close_matches(keyword, names, n=3, cutoff=0.6)
    if close:
        return message + "; did you mean " + " or ".join(repr(name) for name in close) + "?"
    return message + "; it takes " + ", ".join(names)


def _called(function: Callable, args: tuple) -> str:
    """How the call reads: ``Dense`` for a constructor (the class called, a subclass
    included), ``Sequential.fit`` for a method, ``train_dev_test_split`` for a function."""
    if function.__name__ == "__init__" and args:
        return type(args[0]).__name__
    return function.__qualname__
