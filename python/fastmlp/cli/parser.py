"""The ``fastmlp`` argument parser: one subcommand per command, the options they share,
and each command's function as its ``run`` default."""
from __future__ import annotations

import argparse
from typing import Optional

from .. import __version__
from ..backends import BACKENDS
from ..nn.activations import ACTIVATIONS
from ..nn.losses import LOSSES
from ..optim.optimizers import OPTIMIZERS
from . import demo
from .commands import diagnose_command, evaluate_command, predict_command, train_command
from .options import (MAX_EPOCHS, column_list, dev_size, dropout_rate, epoch_count, hidden_widths,
                      int_at_least, nonnegative_float, positive_float, unit_interval)
from .params import TRAIN_DEFAULTS
from .search import DISTRIBUTIONS, search_command
from .tabular import AUTO_MAX_CLASSES


def _data_options() -> argparse.ArgumentParser:
    """--target and the NPZ keys: shared by every command that reads data."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--target", metavar="COL",
                         help="the target column of a CSV or Parquet file: its name, or "
                              "its 0-based index (negative counts from the end)")
    options.add_argument("--x-key", default="X", metavar="KEY",
                         help="the features' array in an NPZ file (default: X)")
    options.add_argument("--y-key", default="y", metavar="KEY",
                         help="the target's array in an NPZ file (default: y)")
    options.add_argument("--exclude", type=column_list, default=(), metavar="COLUMNS",
                         help="CSV columns that are not features, e.g. a text ID: names or "
                              "0-based indices separated by commas (a model trained by "
                              "train takes its own feature columns by name)")
    return options


def _progress_options(command: argparse.ArgumentParser, per: str) -> None:
    """--verbose / --quiet (a line per ``per``: epoch, round); by default progress shows
    when stderr is a terminal."""
    chosen = command.add_mutually_exclusive_group()
    chosen.add_argument("--verbose", action="store_true", default=None,
                        help=f"print a line per {per} (by default: only when stderr is a "
                             "terminal, not in pipes or CI)")
    chosen.add_argument("--quiet", dest="verbose", action="store_false",
                        help=f"no per-{per} lines, even on a terminal")


def _model_options() -> argparse.ArgumentParser:
    """MODEL DATA and --backend: shared by the commands that use a saved model."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("model", metavar="MODEL", help="a model file written by train "
                         "(or model.save)")
    options.add_argument("data", metavar="DATA", help="a CSV file with a header row, an NPZ "
                         "file, or (evaluate, predict) Parquet data: a .parquet file or a "
                         "folder of them, read a row group at a time")
    options.add_argument("--backend", choices=BACKENDS, default=None,
                         help="run on this backend (default: the one it was saved with)")
    return options


def _learning_options(command: argparse.ArgumentParser, dev_help: str,
                      dev_default: Optional[float]) -> None:
    """Options that train and search share: the loss, the dev split, the seed."""
    command.add_argument("--loss", choices=("auto",) + LOSSES, default="auto", metavar="NAME",
                         help=f"{', '.join(LOSSES)} or auto (the default): "
                              "softmax_cross_entropy for a target of text or "
                              f"of whole numbers with at most {AUTO_MAX_CLASSES} distinct "
                              "values, else mse")
    command.add_argument("--dev", type=dev_size, default=dev_default,
                         help="the dev set held out: a fraction, or a number of samples "
                              f"(default: {dev_help}; stratified for classification)")
    command.add_argument("--seed", type=int_at_least(0), default=0,
                         help="seed of the split and the model(s) (default: 0)")


def _add_train(commands, data_options) -> None:
    train = commands.add_parser(
        "train", parents=[data_options], help="train a model on a CSV, NPZ or Parquet file",
        description="Train a network (Normalization, then Dense layers) on DATA, report "
                    "train and dev loss and metric, save the model. --params FILE takes "
                    "the hyperparameters that `fastmlp search --output FILE` wrote; the "
                    "options given on the command line override the file's values.",
        epilog="example: fastmlp train examples/iris.csv --target species --hidden 64,32 "
               "--epochs 50 --output iris.fmlp")
    train.add_argument("data", metavar="DATA", help="a CSV file with a header row, an NPZ "
                       "file with arrays X and y, or Parquet data: a .parquet file or a "
                       "folder of them, streamed a row group at a time (larger than memory)")
    train.add_argument("--output", required=True, metavar="MODEL",
                       help="where to save the model (atomically), with the names of "
                            "the target, the feature columns and the classes in it")
    train.add_argument("--params", metavar="JSON",
                       help="hyperparameters written by search --output (hidden or "
                            "n_layers/units, activation, dropout, l1, l2, optimizer and its "
                            "hyperparameters, learning_rate, batch_size, epochs, loss); "
                            "options given here override them")
    # The hyperparameters --params may set default to None here: TRAIN_DEFAULTS fills in
    # what neither the command line nor the file gives.
    train.add_argument("--hidden", type=hidden_widths, metavar="W1,W2,...",
                       help="hidden layer widths (default: "
                            f"{','.join(map(str, TRAIN_DEFAULTS['hidden']))}; '' for none)")
    train.add_argument("--activation", choices=ACTIVATIONS, metavar="NAME",
                       help=f"hidden layers' activation: {', '.join(ACTIVATIONS)} "
                            f"(default: {TRAIN_DEFAULTS['activation']})")
    train.add_argument("--dropout", type=dropout_rate, metavar="RATE",
                       help="a Dropout layer of this rate after each hidden layer "
                            f"(default: {TRAIN_DEFAULTS['dropout']:g}, none)")
    train.add_argument("--l1", type=nonnegative_float, metavar="RATE",
                       help=f"L1 penalty on the weights (default: {TRAIN_DEFAULTS['l1']:g})")
    train.add_argument("--l2", type=nonnegative_float, metavar="RATE",
                       help=f"L2 penalty on the weights (default: {TRAIN_DEFAULTS['l2']:g})")
    train.add_argument("--optimizer", choices=tuple(OPTIMIZERS), metavar="NAME",
                       help=f"{', '.join(OPTIMIZERS)} (default: {TRAIN_DEFAULTS['optimizer']})")
    train.add_argument("--learning-rate", type=positive_float, metavar="LR",
                       help="(default: the optimizer's, 1e-3 for adam)")
    train.add_argument("--epochs", type=epoch_count,
                       help=f"(default: {TRAIN_DEFAULTS['epochs']}; at most {MAX_EPOCHS:,})")
    train.add_argument("--batch-size", type=int_at_least(1),
                       help=f"(default: {TRAIN_DEFAULTS['batch_size']})")
    train.add_argument("--backend", choices=BACKENDS, default="native",
                       help="(default: native)")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="(default: float32)")
    train.add_argument("--precision", choices=("bfloat16",),
                       help="bfloat16: the products round their operands to bfloat16 and sum "
                            "in float32; the weights stay float32 (default: none, the products "
                            "in --dtype)")
    train.add_argument("--no-normalize", dest="normalize", action="store_false",
                       help="no Normalization layer (by default the first layer "
                            "standardizes each feature with the training data's mean and std)")
    train.add_argument("--shuffle-buffer", type=int_at_least(1), metavar="ROWS",
                       help="Parquet data: the rows each batch is drawn from (default: "
                            "128 MiB of rows); larger mixes a file sorted by label better")
    train.add_argument("--dev-data", metavar="DEV",
                       help="a dev set in its own file (CSV, NPZ or Parquet) instead of a "
                            "--dev split")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel training on the MPI ranks that mpirun or srun "
                            "started, each on its shard of every batch (pip install "
                            "'fastmlp[mpi]'; a CSV or NPZ file); rank 0 alone prints and "
                            "saves the model")
    _progress_options(train, "epoch")
    _learning_options(train, "0.2 of a CSV or NPZ file; none of Parquet data, which is "
                             "streamed, not split: give --dev-data", None)
    train.set_defaults(run=train_command, loss=None)


def _add_evaluate_predict(commands, data_options, model_options) -> None:
    evaluate = commands.add_parser(
        "evaluate", parents=[model_options, data_options], help="print a model's loss and "
        "metric on data", description="Print the model's mean loss and its metric (accuracy "
        "or r2) on DATA. --target defaults to the column the model was trained on.",
        epilog="example: fastmlp evaluate iris.fmlp iris-test.csv --json")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=evaluate_command)
    predict = commands.add_parser(
        "predict", parents=[model_options, data_options], help="write predictions as CSV",
        description="Write the model's predictions for DATA as a CSV file with a header "
                    "(or a Parquet file, for an --output ending in .parquet): the labels "
                    "(or values), or with --proba one probability column per class. A "
                    "target column in DATA is ignored.",
        epilog="example: fastmlp predict iris.fmlp new.csv --output preds.csv --proba")
    predict.add_argument("--output", required=True, metavar="FILE",
                         help="the predictions' CSV file, or Parquet file if it ends in "
                              ".parquet (written atomically; '-': CSV to stdout)")
    predict.add_argument("--proba", action="store_true",
                         help="class probabilities instead of labels")
    predict.set_defaults(run=predict_command)


def _add_search(commands, data_options) -> None:
    search = commands.add_parser(
        "search", parents=[data_options], help="random hyperparameter search",
        description="Random search in coarse-to-fine rounds (fastmlp.search.random_search) "
                    "over the space in SPACE: each trial trains on the train part and is "
                    "scored on the dev part (features standardized).",
        epilog='space file example (JSON): {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, '
               '"hidden": {"choice": [[64], [128, 64]]}, "batch_size": {"int_uniform": '
               '[16, 128]}, "dropout": {"uniform": [0, 0.5]}, "optimizer": "adam"}')
    search.add_argument("data", metavar="DATA", help="a CSV file with a header row, or an NPZ "
                        "file")
    search.add_argument("--space", required=True, metavar="SPACE",
                        help="a .json or .toml file mapping parameter names to "
                             f"{{{'|'.join(DISTRIBUTIONS)}: ...}} or constants")
    search.add_argument("--trials", type=int_at_least(1), default=20,
                        help="trials per round (default: 20)")
    search.add_argument("--rounds", type=int_at_least(1), default=2,
                        help="coarse-to-fine rounds (default: 2)")
    search.add_argument("--epochs", type=epoch_count, default=5,
                        help="epochs per trial (default: 5)")
    search.add_argument("--jobs", type=int_at_least(1), default=None, metavar="N",
                        help="local processes (default: one per CPU; 1: in this process)")
    search.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the trials on a Dask cluster, e.g. tcp://host:8786")
    search.add_argument("--output", metavar="JSON", help="write the best parameters here")
    _learning_options(search, "0.2", 0.2)
    _progress_options(search, "round")
    search.set_defaults(run=search_command)


def _add_diagnose(commands, data_options, model_options) -> None:
    diagnose = commands.add_parser(
        "diagnose", parents=[model_options, data_options], help="bias/variance diagnosis",
        description="Compare the model's error on the train and dev parts with the baseline "
                    "error: avoidable bias, variance, and what to try. By default DATA is "
                    "split as train split it (--dev and --seed recorded in MODEL); "
                    "with --dev-data, DATA is the training set and DEV the dev set.",
        epilog="example: fastmlp diagnose iris.fmlp iris.csv --baseline-error 0.02")
    diagnose.add_argument("--dev", type=dev_size, default=None,
                          help="the dev part of DATA (default: as train used, else 0.2)")
    diagnose.add_argument("--seed", type=int_at_least(0), default=None,
                          help="seed of the split (default: as train used, else 0)")
    diagnose.add_argument("--dev-data", metavar="DEV", help="a separate dev set file")
    diagnose.add_argument("--baseline-error", type=unit_interval, default=0.0,
                          metavar="ERROR", help="human-level or Bayes error (default: 0)")
    diagnose.add_argument("--threshold", type=unit_interval, default=0.05,
                          help="a gap above this is high (default: 0.05)")
    diagnose.set_defaults(run=diagnose_command)


def _add_demo(commands) -> None:
    demo_parser = commands.add_parser(
        "demo", help="train on the digits with each backend and report accuracy and speed",
        description="Train a ReLU network on scikit-learn's bundled handwritten digits "
                    "(8x8 images, 10 classes; no download) with each backend, printing a "
                    "line per epoch, then the train, dev and test accuracy and the speed.",
        epilog="example: fastmlp demo --backend native --epochs 5")
    demo_parser.add_argument("--backend", choices=("native", "numpy", "both"), default="both",
                             help="backend(s) to train with (default: both)")
    demo_parser.add_argument("--epochs", type=epoch_count, default=demo.DEMO_EPOCHS,
                             help=f"training epochs (default: {demo.DEMO_EPOCHS})")
    demo_parser.add_argument("--seed", type=int_at_least(0), default=demo.DEMO_SEED,
                             help="seed of the split and the model (default: "
                                  f"{demo.DEMO_SEED})")
    demo_parser.set_defaults(run=lambda args: demo.run(args.backend, args.epochs, args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastmlp", description="Train, evaluate, predict, search and diagnose fastmlp "
        "models on CSV or NPZ data; `fastmlp COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_options, model_options = _data_options(), _model_options()
    _add_train(commands, data_options)
    _add_evaluate_predict(commands, data_options, model_options)
    _add_search(commands, data_options)
    _add_diagnose(commands, data_options, model_options)
    _add_demo(commands)
    for command in commands.choices.values():
        command.set_defaults(parser=command)
    return parser

