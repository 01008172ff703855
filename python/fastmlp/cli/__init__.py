"""The ``fastmlp`` command line: train, evaluate, predict, search and diagnose models on
CSV or NPZ data (train, evaluate and predict also on Parquet data, streamed), and
``fastmlp demo``, which trains a ReLU network on scikit-learn's bundled handwritten
digits (no download) with each backend and reports accuracy and speed.

Exit status: 0 on success, 2 for a command line that is wrong (argparse's usage errors,
bad option values, a network too large for the memory available), 1 for anything wrong
with a file or its data (missing, malformed, unknown column, non-numeric cell, a missing
label, a model that does not fit the data). Errors are one line on stderr, never a
traceback. ``train`` prints a line per epoch when stderr is a terminal (``--verbose``,
``--quiet`` to choose).

``train`` writes the model file (:mod:`fastmlp.model.modelfile`) with, in its metadata
(:mod:`fastmlp.cli.metadata`), the target column's name, the feature columns' names, the
class labels in the order of the model's outputs and the dev split. The other commands
read it when it is there, so predictions come back as the original labels and columns
are matched by name.

Modules: :mod:`~fastmlp.cli.options` (errors, option types), :mod:`~fastmlp.cli.tabular`
(reading data, --exclude, targets, labels, the split), :mod:`~fastmlp.cli.parquet`
(Parquet data as sources), :mod:`~fastmlp.cli.metadata`,
:mod:`~fastmlp.cli.params` (train's hyperparameters and --params),
:mod:`~fastmlp.cli.memory` (whether a network fits in memory),
:mod:`~fastmlp.cli.commands` (train, evaluate, predict, diagnose),
:mod:`~fastmlp.cli.search`, :mod:`~fastmlp.cli.demo`, :mod:`~fastmlp.cli.parser`.
"""
from __future__ import annotations

import sys
from typing import List, Optional

from .options import DataError, UsageError
from .parser import build_parser

__all__ = ["main"]


def _message(exc: BaseException) -> str:
    """One line for the user: "PATH: reason" for a file error, else the message."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``fastmlp`` console script; returns the exit status (0 done,
    1 a data or file error, 2 a usage error; argparse exits with 2 itself)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        args.parser.error(str(exc))
    except KeyboardInterrupt:
        print(f"fastmlp {args.command}: interrupted", file=sys.stderr)
        return 130
    except (DataError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"fastmlp {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 1
