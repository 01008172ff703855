"""The command line at a newcomer's edges: --version and every command's description, a
model too large for memory refused before it is built, missing labels named by line and
column, absurd epoch counts, progress on a terminal only, --exclude for text columns,
train --params reading what search --output wrote, and CSV files read a block of rows at a
time, refused up front when their features will not fit in memory."""
import json
import os
import pty
import subprocess
import sys
import threading
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import _memory, cli
from fastmlp._memory import available_memory
from fastmlp.cli import commands, memory, options, params, parser, tabular

from .test_cli import FEATURES, SPACE, flowers, run, write_csv, write_flowers
from .test_cli_end_to_end import PACKAGE_ROOT, fastmlp_cli


def _lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ --version, descriptions
def test_version_prints_the_version_and_exits_0(capsys):
    status, out, err = run(["--version"], capsys)
    assert status == 0 and out == f"fastmlp {fastmlp.__version__}\n" and err == ""


def test_version_in_a_fresh_process(tmp_path):
    result = fastmlp_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == f"fastmlp {fastmlp.__version__}\n"


def _subcommands():
    commands = next(action for action in parser.build_parser()._actions
                    if action.dest == "command")
    return commands.choices


def test_the_commands_are_the_expected_ones():
    assert sorted(_subcommands()) == ["demo", "diagnose", "evaluate", "predict", "search",
                                      "train"]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_has_a_description_in_its_help(command, capsys):
    description = _subcommands()[command].description
    assert description and len(description) > 40
    status, out, _ = run([command, "--help"], capsys)
    first_words = " ".join(description.split()[:4])
    assert status == 0 and first_words in " ".join(out.split())


# ------------------------------------------------------------------ memory
def test_the_estimate_counts_the_models_parameters():
    model = fastmlp.Sequential([fastmlp.Dense(7, "relu"), fastmlp.Dense(5, "relu"),
                                fastmlp.Dense(3)], input_dim=4, seed=0)
    assert memory.count_dense_params((4, 7, 5, 3)) == model.n_params
    need = memory.training_memory((4, 7, 5, 3), batch_size=10, itemsize=4, optimizer="adam")
    assert need.n_params == model.n_params
    assert need.model_bytes == 4 * model.n_params * 4       # weights, gradients, m, v
    assert need.batch_bytes == 10 * (4 + 3 * (7 + 5 + 3)) * 4
    sgd = memory.training_memory((4, 7, 5, 3), batch_size=10, itemsize=8, optimizer="sgd")
    assert sgd.model_bytes == 2 * model.n_params * 8
    momentum = memory.training_memory((4, 7, 3), batch_size=1, itemsize=4,
                                      optimizer="momentum")
    assert momentum.model_bytes == 3 * memory.count_dense_params((4, 7, 3)) * 4


def test_available_memory_is_known_here():
    available = available_memory()
    assert available is not None and 10**7 < available < 10**15


def test_unaffordable_says_what_is_needed_and_what_there_is():
    need = memory.TrainingMemory(n_params=10**9, model_bytes=16 * 10**9,
                                 batch_bytes=2 * 10**9)
    assert memory.unaffordable(need, 20 * 10**9) is None
    assert memory.unaffordable(need, None) is None
    assert memory.unaffordable(need, 8 * 10**9) == (
        "the model's 1,000,000,000 parameters need 16 GB (parameters, gradients and "
        "optimizer state) and a training batch 2 GB, 18 GB in all, but this machine "
        "has 8 GB of memory available")


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(tmp_path, capsys,
                                                                     monkeypatch):
    data = write_flowers(tmp_path / "flowers.csv", n=30)
    monkeypatch.setattr(commands, "available_memory", lambda: 10**9)
    status, out, err = run(["train", data, "--target", "species", "--output",
                            tmp_path / "x.fmlp", "--hidden", "100000000"], capsys)
    assert status == 2 and out == ""         # refused before the model's line is printed
    assert "usage: fastmlp train" in err
    assert ("fastmlp train: error: the model's 800,000,003 parameters need 12.8 GB "
            "(parameters, gradients and optimizer state) and a training batch 38.4 GB, "
            "51.2 GB in all, but this machine has 1 GB of memory available; choose a "
            "smaller --hidden (or --batch-size)") in err
    assert not (tmp_path / "x.fmlp").exists()


def test_a_huge_hidden_layer_fails_fast_in_a_fresh_process(tmp_path):
    write_flowers(tmp_path / "flowers.csv", n=30)
    started = time.perf_counter()
    result = fastmlp_cli("train", "flowers.csv", "--target", "species", "--output", "x.fmlp",
                         "--hidden", "100000000000", cwd=tmp_path)
    assert time.perf_counter() - started < 5
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "of memory available; choose a smaller --hidden" in result.stderr
    assert not (tmp_path / "x.fmlp").exists()


# ------------------------------------------------------------------ missing labels
def test_an_empty_label_is_an_error_naming_its_line_row_and_column(tmp_path, capsys):
    data = _lines(tmp_path / "pets.csv", "weight,height,kind", "1,2,cat", "3,4,dog",
                  "5,6,", "7,8,cat", "9,1,dog")
    status, _, err = run(["train", data, "--target", "kind", "--output", tmp_path / "m"],
                         capsys)
    assert status == 1 and err == (f"fastmlp train: error: {data}, line 4 (data row 3): the "
                                   "target 'kind' is missing (''); every row needs one: fill "
                                   "it in or drop the row\n")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("cell", ["NA", "nan", " ", "null"])
def test_missing_value_markers_are_missing_labels(cell, tmp_path, capsys):
    data = _lines(tmp_path / "pets.csv", "weight,kind", "1,cat", "3,dog", f"5,{cell}",
                  "7,cat")
    status, _, err = run(["train", data, "--target", "kind", "--output", tmp_path / "m"],
                         capsys)
    assert status == 1 and "line 4 (data row 3): the target 'kind' is missing" in err


def test_a_missing_label_in_evaluate_and_not_in_predict(trained_pets, tmp_path, capsys):
    model = trained_pets
    data = _lines(tmp_path / "new.csv", "weight,height,kind", "1,2,cat", "", "3,4,")
    status, _, err = run(["evaluate", model, data], capsys)
    assert status == 1 and f"{data}, line 4 (data row 2): the target 'kind' is missing" in err
    status, out, _ = run(["predict", model, data, "--output", "-"], capsys)  # not needed
    assert status == 0 and len(out.split()) == 3


@pytest.fixture
def trained_pets(tmp_path, capsys):
    rows = [f"{i % 7},{i % 5},{'cat' if i % 2 else 'dog'}" for i in range(20)]
    data = _lines(tmp_path / "pets.csv", "weight,height,kind", *rows)
    assert run(["train", data, "--target", "kind", "--epochs", "1", "--output",
                tmp_path / "pets.fmlp"], capsys)[0] == 0
    return tmp_path / "pets.fmlp"


def test_nan_in_an_npz_target_is_an_error_naming_its_row(tmp_path, capsys):
    X, _ = flowers(6)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 2, np.nan, 1, 0]))
    status, _, err = run(["train", tmp_path / "d.npz", "--output", tmp_path / "m"], capsys)
    assert status == 1 and (f"{tmp_path / 'd.npz'}, row 3 (counted from 0): the target 'y' "
                            "is missing (nan)") in err


# ------------------------------------------------------------------ epochs
@pytest.mark.parametrize("argv", [
    ["train", "d.csv", "--target", "y", "--output", "m", "--epochs", "100000000000000000000"],
    ["search", "d.csv", "--target", "y", "--space", "s.json", "--epochs", "1000001"],
    ["demo", "--epochs", "100000000000000000000"]])
def test_absurd_epoch_counts_are_refused(argv, capsys):
    status, _, err = run(argv, capsys)
    assert status == 2
    assert (f"argument --epochs: must be an integer from 1 to {options.MAX_EPOCHS:,}"
            in err)


# ------------------------------------------------------------------ progress
class _Terminal:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("verbose, tty, expected", [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False)])
def test_progress_shows_on_a_terminal_unless_told(verbose, tty, expected, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal(tty))
    assert options.shows_progress(Namespace(verbose=verbose)) is expected


def _train_with_stderr_on_a_terminal(folder: Path, *extra: str) -> str:
    """stdout of ``python -m fastmlp train`` with stderr on a pseudo-terminal."""
    write_flowers(folder / "flowers.csv", n=40)
    controller, terminal = pty.openpty()
    drained = threading.Thread(target=_drain, args=(controller,), daemon=True)
    drained.start()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PACKAGE_ROOT,
                                                       os.environ.get("PYTHONPATH", "")]))
    try:
        result = subprocess.run([sys.executable, "-m", "fastmlp", "train", "flowers.csv",
                                 "--target", "species", "--epochs", "3", "--hidden", "8",
                                 "--output", "m.fmlp", *extra], cwd=folder, env=env,
                                stdout=subprocess.PIPE, stderr=terminal, text=True,
                                timeout=120)
    finally:
        os.close(terminal)
        drained.join(timeout=10)
        os.close(controller)
    assert result.returncode == 0
    return result.stdout


def _drain(fd: int) -> None:
    """Read the pseudo-terminal until it closes, so the writer never blocks."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except OSError:
            return


def test_train_shows_progress_when_stderr_is_a_terminal(tmp_path):
    out = _train_with_stderr_on_a_terminal(tmp_path)
    assert [line.split()[1] for line in out.splitlines()
            if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]


def test_quiet_silences_the_progress_on_a_terminal(tmp_path):
    assert "epoch " not in _train_with_stderr_on_a_terminal(tmp_path, "--quiet")


def test_train_is_quiet_in_a_pipe(tmp_path):
    write_flowers(tmp_path / "flowers.csv", n=40)
    result = fastmlp_cli("train", "flowers.csv", "--target", "species", "--epochs", "3",
                         "--output", "m.fmlp", cwd=tmp_path)
    assert result.returncode == 0 and "epoch " not in result.stdout
    assert result.stderr == ""


def test_verbose_and_quiet_do_not_go_together(capsys):
    status, _, err = run(["train", "d.csv", "--target", "y", "--output", "m", "--verbose",
                          "--quiet"], capsys)
    assert status == 2 and "argument --quiet: not allowed with argument --verbose" in err


# ------------------------------------------------------------------ --exclude
def _houses(path: Path, n: int = 60) -> Path:
    """A regression CSV with a text ID column first."""
    X, _ = flowers(n)
    price = X @ [1.5, -2.0, 0.5, 0.0] + 0.25
    return write_csv(path, ["id", *FEATURES, "price"],
                     [[f"h{i:03d}", *row, p] for i, (row, p) in enumerate(zip(X,
                                                                              price.round(3)))])


def test_a_text_column_is_an_error_that_suggests_exclude(tmp_path, capsys):
    data = _houses(tmp_path / "houses.csv")
    status, _, err = run(["train", data, "--target", "price", "--output", tmp_path / "m"],
                         capsys)
    assert status == 1 and err == (
        f"fastmlp train: error: {data}: column 'id' holds text ('h000' on line 2), not "
        "numbers; feature columns must be numeric; leave it out with --exclude id\n")


@pytest.mark.parametrize("exclude", ["id", "0", "id,leaf"])
def test_exclude_drops_columns(exclude, tmp_path, capsys):
    data = _houses(tmp_path / "houses.csv")
    model_path = tmp_path / "houses.fmlp"
    status, out, _ = run(["train", data, "--target", "price", "--exclude", exclude,
                          "--epochs", "2", "--output", model_path], capsys)
    kept = [name for name in FEATURES if name not in exclude.split(",")]
    assert status == 0 and f"{len(kept)} features, target 'price' (regression)" in out
    model = fastmlp.load(model_path)
    assert model.metadata["fastmlp.cli"]["features"] == kept
    status, out, _ = run(["predict", model_path, data, "--output", "-"], capsys)
    X, _ = flowers(60)
    expected = model.predict(X[:, [FEATURES.index(name) for name in kept]])
    assert status == 0 and out.split() == ["price", *map(str, expected)]


@pytest.mark.parametrize("argv, status, message", [
    (["--exclude", "price"], 2, "--exclude names the target column 'price'"),
    (["--exclude", "colour"], 1, "has no column 'colour'; its columns are ['id', "),
    (["--exclude", "id,"], 2, "argument --exclude: must be column names or indices "
                              "separated by commas"),
    (["--exclude", "id,sepal,petal,stem,leaf"], 1, "has no feature column besides the "
                                                   "target and the excluded columns")])
def test_exclude_errors(argv, status, message, tmp_path, capsys):
    data = _houses(tmp_path / "houses.csv", n=10)
    result = run(["train", data, "--target", "price", "--output", tmp_path / "m", *argv],
                 capsys)
    assert result[0] == status and message in result[2]


def test_exclude_is_for_csv_files(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.arange(4.0))
    status, _, err = run(["train", tmp_path / "d.npz", "--exclude", "0", "--output",
                          tmp_path / "m"], capsys)
    assert status == 2 and "--exclude picks CSV columns" in err


def test_exclude_may_not_drop_a_feature_of_the_model(tmp_path, capsys):
    data = _houses(tmp_path / "houses.csv", n=20)
    model_path = tmp_path / "m.fmlp"
    assert run(["train", data, "--target", "price", "--exclude", "id", "--epochs", "1",
                "--output", model_path], capsys)[0] == 0
    status, _, err = run(["evaluate", model_path, data, "--exclude", "stem"], capsys)
    assert status == 2 and "--exclude names ['stem'], feature columns of the model" in err


# ------------------------------------------------------------------ --params
def test_search_then_train_with_the_best_parameters(tmp_path, capsys):
    data = write_flowers(tmp_path / "flowers.csv", n=90)
    (tmp_path / "space.json").write_text(json.dumps({**SPACE, "l2": {"choice": [0.001]}}))
    best_path = tmp_path / "best.json"
    assert run(["search", data, "--target", "species", "--space", tmp_path / "space.json",
                "--trials", "2", "--rounds", "1", "--epochs", "1", "--jobs", "1",
                "--output", best_path], capsys)[0] == 0
    best = json.loads(best_path.read_text())
    status, out, _ = run(["train", data, "--target", "species", "--params", best_path,
                          "--epochs", "2", "--output", tmp_path / "m.fmlp"], capsys)
    assert status == 0
    widths = "-".join(map(str, (4, *best["hidden"], 3)))
    assert (f"model: {widths} relu + dropout {best['dropout']:g} + l2 0.001, "
            "softmax_cross_entropy, "
            f"adam, 2 epochs, batch {best['batch_size']}") in out
    model = fastmlp.load(tmp_path / "m.fmlp")
    dense = [layer for layer in model.layers if layer.kind == "dense"]
    assert tuple(layer.units for layer in dense[:-1]) == tuple(best["hidden"])
    assert all(layer.rate == best["dropout"] for layer in model.layers
               if layer.kind == "dropout")
    assert model.regularizer == fastmlp.L1L2(l1=0.0, l2=0.001)
    assert model.optimizer.learning_rate == best["learning_rate"]
    assert model.history.epochs == 2                    # --epochs overrides


def test_command_line_options_override_the_params_file(tmp_path, capsys):
    data = write_flowers(tmp_path / "flowers.csv", n=40)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"n_layers": 2, "units": 6, "optimizer": "adam",
                                "beta_1": 0.8, "learning_rate": 0.01, "epochs": 3,
                                "batch_size": 8, "activation": "tanh",
                                "loss": "softmax_cross_entropy"}))
    status, out, _ = run(["train", data, "--target", "species", "--params", best,
                          "--activation", "relu", "--output", tmp_path / "m.fmlp"], capsys)
    assert status == 0
    assert "model: 4-6-6-3 relu, softmax_cross_entropy, adam, 3 epochs, batch 8" in out
    model = fastmlp.load(tmp_path / "m.fmlp")
    assert model.optimizer.beta_1 == 0.8 and model.optimizer.learning_rate == 0.01


@pytest.mark.parametrize("content, status, message", [
    ('{"hiden": [8]}', 1, "unknown parameter names ['hiden']"),
    ('{"hidden": 8}', 1, "parameter 'hidden': must be a list of layer widths >= 1"),
    ('{"epochs": 100000000000000000000}', 1, "parameter 'epochs': must be an integer from "
                                             "1 to 1,000,000"),
    ('{"dropout": true}', 1, "parameter 'dropout': must be a number in [0, 1)"),
    ('{"activation": "swish"}', 1, "parameter 'activation': must be one of"),
    ('{"optimizer": "adam", "momentum": 0.9}', 1,
     "sets ['momentum'], which optimizer 'adam' does not take"),
    ('{"beta_1": 2}', 1, "beta_1"),
    ('[1]', 1, "must hold a JSON object of hyperparameters, as search --output writes; "
               "got list"),
    ('{"epochs": ', 1, "is not valid JSON")])
def test_bad_params_files(content, status, message, tmp_path, capsys):
    data = write_flowers(tmp_path / "flowers.csv", n=20)
    (tmp_path / "p.json").write_text(content)
    result = run(["train", data, "--target", "species", "--params", tmp_path / "p.json",
                  "--output", tmp_path / "m"], capsys)
    assert result[0] == status and message in result[2], result[2]
    assert "Traceback" not in result[2] and not (tmp_path / "m").exists()


def test_a_missing_params_file(tmp_path, capsys):
    data = write_flowers(tmp_path / "flowers.csv", n=20)
    status, _, err = run(["train", data, "--target", "species", "--params",
                          tmp_path / "none.json", "--output", tmp_path / "m"], capsys)
    assert status == 1 and "none.json: No such file or directory" in err


def test_train_defaults_are_those_of_the_help(capsys):
    _, out, _ = run(["train", "--help"], capsys)
    text = " ".join(out.split())
    assert "(default: 128,64; '' for none)" in text and "(default: 20; at most 1,000,000)" \
        in text
    assert params.TRAIN_DEFAULTS["hidden"] == (128, 64)
    assert "options given here override them" in text


@pytest.mark.parametrize("flag,expected", [("--verbose", ["1/2:", "2/2:"]), ("--quiet", [])])
def test_search_reports_each_round_when_asked(flag, expected, tmp_path, capsys):
    data = write_flowers(tmp_path / "flowers.csv", n=40)
    (tmp_path / "s.json").write_text(json.dumps(SPACE))
    status, _, err = run(["search", data, "--target", "species", "--space",
                          tmp_path / "s.json", "--trials", "2", "--rounds", "2", "--epochs",
                          "1", "--jobs", "1", flag], capsys)
    assert status == 0
    rounds = [line.split()[1] for line in err.splitlines() if line.startswith("round ")]
    assert rounds == expected
    assert all("; best so far dev_error " in line for line in err.splitlines()
               if line.startswith("round "))


# ------------------------------------------------------------------ CSV read in blocks
def _read(path, target="species", exclude=()):
    args = Namespace(data=str(path), command="train", exclude=list(exclude), x_key="X",
                     y_key="y")
    return tabular.read_data(args, target)


def test_a_csv_file_reads_the_same_in_blocks_of_any_size(tmp_path, monkeypatch):
    data = write_flowers(tmp_path / "flowers.csv", n=40)
    with open(data, "a") as file:         # blank lines are skipped, lines still counted
        file.write("\n\n5.0,3.4,1.5,0.2,setosa\n")
    whole = _read(data)
    assert whole.lines[-1] == 44 and len(whole.lines) == 41
    for rows in (1, 7, 40, 41):
        monkeypatch.setattr(tabular, "CSV_BLOCK_ROWS", rows)
        blocks = _read(data)
        np.testing.assert_array_equal(blocks.X, whole.X)
        np.testing.assert_array_equal(blocks.target, whole.target)
        np.testing.assert_array_equal(blocks.lines, whole.lines)
        assert blocks.features == whole.features == FEATURES


def test_a_bad_cell_in_a_later_block_is_named_by_its_line(tmp_path, monkeypatch):
    data = write_flowers(tmp_path / "flowers.csv", n=30)
    lines = data.read_text().splitlines()
    lines[25] = lines[25].replace(lines[25].split(",")[1], "oops", 1)
    data.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(tabular, "CSV_BLOCK_ROWS", 8)
    with pytest.raises(options.DataError, match=rf"line 26, column '{FEATURES[1]}': 'oops' is "
                                                r"not a finite number"):
        _read(data)


def test_a_csv_too_large_for_memory_is_refused_after_its_first_block(tmp_path, monkeypatch):
    """The features, projected from the first block, must fit IN_MEMORY_COPIES times."""
    data = write_flowers(tmp_path / "flowers.csv", n=100)
    monkeypatch.setattr(tabular, "CSV_BLOCK_ROWS", 10)
    monkeypatch.setattr(_memory, "UNCHECKED_BYTES", 0)
    need = tabular.IN_MEMORY_COPIES * 100 * 4 * 8           # every row's 4 float64 features
    monkeypatch.setattr(_memory, "available_memory", lambda: need // 2)
    blocks = []
    monkeypatch.setattr(tabular, "_csv_blocks", _counting(tabular._csv_blocks, blocks))
    with pytest.raises(options.DataError, match=r"flowers\.csv \(.*\) read into memory as "
                                                r"numbers needs .* of memory, .* available; "
                                                r"store it as Parquet"):
        _read(data)
    assert len(blocks) == 1                                 # refused before reading on
    monkeypatch.setattr(_memory, "available_memory", lambda: need * 2)
    assert len(_read(data).X) == 100


def _counting(blocks_of, seen: list):
    def counted(*args):
        for block in blocks_of(*args):
            seen.append(block)
            yield block
    return counted
