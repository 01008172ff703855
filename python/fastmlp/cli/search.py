"""``fastmlp search``: random hyperparameter search (:func:`fastmlp.search.random_search`)
over a space read from a JSON or TOML file."""
from __future__ import annotations

import json

from ..tools.search import Choice, IntUniform, LogUniform, Uniform, random_search
from .commands import check_output, describe_target, write_text
from .options import DataError, UsageError, shows_progress
from .tabular import encode_target, read_training_data, split, standardize

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


def _load_toml(path: str) -> dict:
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise DataError(f"reading the TOML file {path} needs Python >= 3.11 or the tomli "
                            "package (pip install tomli); or write the space as JSON") from None
    with open(path, "rb") as file:
        try:
            return tomllib.load(file)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid TOML: {exc}") from None


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as file:
        try:
            return json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from None


def _distribution(spec):
    """One space entry: {"uniform"|"log_uniform"|"int_uniform": [low, high]},
    {"choice": [option, ...]}, or a constant (a list constant becomes a tuple)."""
    kinds = {"uniform": Uniform, "log_uniform": LogUniform, "int_uniform": IntUniform}
    if isinstance(spec, list):
        return tuple(spec)
    if not isinstance(spec, dict):
        return spec
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ValueError(f"expected one key of {list(DISTRIBUTIONS)} (or a constant); got "
                         f"{spec!r}")
    (kind, arguments), = spec.items()
    if kind == "choice":
        return Choice(arguments)
    if not isinstance(arguments, list) or len(arguments) != 2:
        raise ValueError(f"{kind} takes [low, high]; got {arguments!r}")
    return kinds[kind](*arguments)


def read_space(path: str) -> dict:
    """The search space file (.json, or .toml) as {name: distribution or constant}."""
    if not path.lower().endswith((".json", ".toml")):
        raise DataError(f"the space file {path} must end in .json or .toml")
    entries = _load_toml(path) if path.lower().endswith(".toml") else _load_json(path)
    if not isinstance(entries, dict) or not entries:
        raise DataError(f"{path} must map parameter names to distributions, e.g. "
                        '{"learning_rate": {"log_uniform": [1e-4, 1e-1]}}')
    if "loss" in entries:
        raise DataError(f"{path} sets 'loss'; give the loss with --loss instead (the target's "
                        "encoding depends on it)")
    space = {}
    for name, spec in entries.items():
        try:
            space[name] = _distribution(spec)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}, parameter {name!r}: {exc}") from None
    return space


def _executor(args):
    """(executor, n_jobs) for random_search: a Dask scheduler, this process (--jobs 1),
    or a pool of --jobs processes (default: one per CPU, at most one per trial)."""
    if args.scheduler is not None:
        if args.jobs is not None:
            raise UsageError("--jobs sizes the local process pool; the --scheduler's cluster "
                             "decides how many trials run at once")
        return args.scheduler, None
    if args.jobs == 1:
        return "serial", None
    return None, args.jobs


def search_command(args) -> int:
    """Random search in coarse-to-fine rounds; prints the trials and the best parameters."""
    space = read_space(args.space)
    if args.output:
        check_output(args.output)
    data, loss, labels = read_training_data(args)
    if args.dev == 0:
        raise UsageError("search scores every trial on a dev set: --dev must be > 0")
    train, dev = split(data.X, encode_target(data, labels), args.dev, args.seed,
                       labels is not None)
    X_train, X_dev = standardize(train[0], dev[0])
    executor, n_jobs = _executor(args)
    print(f"{data.path}: {describe_target(data.target_name, labels)}, {loss}; train/dev "
          f"{len(X_train)}/{len(X_dev)} (features standardized with the train part's mean "
          "and std)", flush=True)
    result = random_search({**space, "loss": loss}, (X_train, train[1]), (X_dev, dev[1]),
                           trials=args.trials, rounds=args.rounds, epochs=args.epochs,
                           seed=args.seed, executor=executor, n_jobs=n_jobs,
                           verbose=int(shows_progress(args)))
    print(result)
    if args.output:
        write_text(args.output, json.dumps(result.best_params, indent=1) + "\n")
        print(f"wrote the best parameters to {args.output}")
    return 0

