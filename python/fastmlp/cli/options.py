"""The command line's errors and option types (argparse ``type=`` functions: a bad value
is a usage error that names the option and the value)."""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, Optional, Tuple

from ..train.loop import MAX_EPOCHS


class DataError(Exception):
    """A file or its contents is wrong: reported on one line, exit status 1."""


class UsageError(Exception):
    """Options that do not go together (found after parsing): exit status 2."""




def int_at_least(minimum: int, maximum: Optional[int] = None):
    """A parser of integers >= ``minimum`` (and <= ``maximum`` when given)."""
    expected = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum:,}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be an integer {expected}; got {text!r}")
        return value
    return parse


epoch_count = int_at_least(1, MAX_EPOCHS)


def float_where(accept: Callable[[float], bool], expected: str):
    """A parser of finite numbers that ``accept`` takes (``expected`` says which)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}")
        return value
    return parse


positive_float = float_where(lambda v: v > 0, "a number > 0")
nonnegative_float = float_where(lambda v: v >= 0, "a number >= 0")
unit_interval = float_where(lambda v: 0 <= v <= 1, "a number in [0, 1]")
dropout_rate = float_where(lambda v: 0 <= v < 1, "a number in [0, 1)")


def dev_size(text: str):
    """--dev: a fraction in (0, 1) or a whole number of samples (0: no dev set)."""
    if text.isdigit():
        return int(text)
    return float_where(lambda v: 0 < v < 1,
                       "a fraction in (0, 1) or a count of samples")(text)


def hidden_widths(text: str) -> Tuple[int, ...]:
    """--hidden: layer widths separated by commas ("128,64"); "" for no hidden layer."""
    if not text.strip():
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"must be layer widths >= 1 separated by commas, e.g. 128,64; got {text!r}")
    return widths


def column_list(text: str) -> Tuple[str, ...]:
    """--exclude: column names or 0-based indices separated by commas."""
    columns = tuple(part.strip() for part in text.split(","))
    if not all(columns):
        raise argparse.ArgumentTypeError(
            f"must be column names or indices separated by commas, e.g. id,name; got {text!r}")
    return columns


def shows_progress(args) -> bool:
    """--verbose, --quiet, or by default whether stderr is a terminal (not a pipe, a
    file or a CI log)."""
    if args.verbose is not None:
        return args.verbose
    return sys.stderr.isatty()
