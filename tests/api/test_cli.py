"""The ``fastmlp`` command line, in process (``cli.main([...])``): the demo, argument
parsing, and train / evaluate / predict / search / diagnose on small CSV and NPZ files
with every error case. tests/api/test_cli_end_to_end.py runs it in a subprocess."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import cli
from fastmlp.cli import demo as cli_demo, options, search as cli_search
from fastmlp.tools.data import train_dev_test_split
from fastmlp.tools.search import Choice, IntUniform, LogUniform, Uniform

SPECIES = np.array(["setosa", "versicolor", "virginica"])
FEATURES = ["sepal", "petal", "stem", "leaf"]
TRAIN_FLOWERS = ["--target", "species", "--hidden", "16", "--epochs", "30",
                 "--learning-rate", "0.02"]


def flowers(n: int = 150, seed: int = 0):
    """(X (n, 4), species names): three classes decided by the first two features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES))).round(4)
    return X, SPECIES[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)]


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_flowers(path: Path, n: int = 150, seed: int = 0) -> Path:
    X, y = flowers(n, seed)
    return write_csv(path, FEATURES + ["species"], [[*row, label] for row, label in zip(X, y)])


def read_csv(path: Path):
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    return rows[0], rows[1:]


def codes(labels) -> np.ndarray:
    """Species names as the model's class indices (sorted names: 0, 1, 2)."""
    return np.searchsorted(SPECIES, labels)


def run(argv, capsys):
    """(exit status, stdout, stderr) of cli.main(argv); argparse's exits included."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data, model): a flowers CSV and a model the CLI trained on it (dev 0.2, seed 0)."""
    folder = tmp_path_factory.mktemp("cli")
    data, model = write_flowers(folder / "flowers.csv"), folder / "flowers.fmlp"
    assert cli.main(["train", str(data), *TRAIN_FLOWERS, "--output", str(model)]) == 0
    return data, model


# ------------------------------------------------------------------ demo
def test_demo_runs_and_reports_accuracy_and_speed(capsys):
    assert cli.main(["demo", "--epochs", "2", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "== backend numpy" in out and "epoch 2/2" in out
    accuracies = re.search(r"accuracy  train (\S+)  dev (\S+)  test (\S+)", out)
    assert accuracies is not None
    assert all(0.5 < float(value) <= 1.0 for value in accuracies.groups())   # it learned
    assert re.search(r"training  [\d.]+ s, [\d,]+ samples/s", out)


def test_demo_without_scikit_learn_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert cli.main(["demo", "--backend", "numpy"]) == 1
    assert 'pip install "fastmlp[demo]"' in capsys.readouterr().err


def test_demo_with_an_unavailable_backend_fails_clearly(monkeypatch, capsys):
    def unavailable(name):
        raise ImportError(f"backend={name!r} is unavailable")

    monkeypatch.setattr(cli_demo, "get_backend", unavailable)
    assert cli.main(["demo"]) == 1
    assert "backend='native' is unavailable" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--epochs", "two"],
                                  ["demo", "--seed", "-1"], ["demo", "--backend", "gpu"], []])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage: fastmlp" in capsys.readouterr().err


def test_python_dash_m_fastmlp():
    package_root = str(Path(fastmlp.__file__).parent.parent)
    path = os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    result = subprocess.run([sys.executable, "-m", "fastmlp", "demo", "--help"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--backend" in result.stdout


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize("command, options", [
    ("train", ["--hidden", "--dropout", "--optimizer", "--learning-rate", "--dev", "--loss",
               "--output"]),
    ("evaluate", ["MODEL", "DATA", "--target", "--json"]),
    ("predict", ["--output", "--proba", "--target"]),
    ("search", ["--space", "--trials", "--rounds", "--jobs", "--scheduler", "--output"]),
    ("diagnose", ["--dev-data", "--baseline-error", "--threshold"])])
def test_every_command_has_help(command, options, capsys):
    status, out, _ = run([command, "--help"], capsys)
    assert status == 0 and out.startswith(f"usage: fastmlp {command}")
    assert all(option in out for option in options)


def test_option_values_are_parsed():
    assert options.hidden_widths("128,64") == (128, 64) and options.hidden_widths("") == ()
    assert options.dev_size("0.25") == 0.25 and options.dev_size("30") == 30
    assert options.dev_size("0") == 0


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "-1"], "argument --epochs: must be an integer from 1 to 1,000,000; "
                         "got '-1'"),
    (["--epochs", "2.5"], "argument --epochs: must be an integer from 1 to 1,000,000"),
    (["--epochs", "100000000000000000000"], "argument --epochs: must be an integer from 1 "
                                            "to 1,000,000; got '100000000000000000000'"),
    (["--epochs", "1000001"], "argument --epochs: must be an integer from 1 to 1,000,000"),
    (["--learning-rate", "0"], "argument --learning-rate: must be a number > 0; got '0'"),
    (["--learning-rate", "-0.001"], "argument --learning-rate: must be a number > 0"),
    (["--learning-rate", "nan"], "argument --learning-rate: must be a number > 0"),
    (["--hidden", "128,x"], "argument --hidden: must be layer widths >= 1 separated by "
                            "commas, e.g. 128,64; got '128,x'"),
    (["--hidden", "64,0"], "argument --hidden: must be layer widths >= 1"),
    (["--hidden", "64,,32"], "argument --hidden: must be layer widths >= 1"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    (["--dropout", "1"], "argument --dropout: must be a number in [0, 1); got '1'"),
    (["--dev", "1.5"], "argument --dev: must be a fraction in (0, 1) or a count"),
    (["--dev", "-0.1"], "argument --dev: must be a fraction in (0, 1) or a count"),
    (["--optimizer", "adamx"], "argument --optimizer: invalid choice: 'adamx'"),
    (["--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
    (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'")])
def test_bad_train_options_are_usage_errors(argv, message, capsys, tmp_path):
    status, _, err = run(["train", "d.csv", "--target", "y", "--output",
                          tmp_path / "m.fmlp", *argv], capsys)
    assert status == 2
    assert "usage: fastmlp train" in err and f"fastmlp train: error: {message}" in err


def test_usage_errors_found_after_parsing(trained, tmp_path, capsys):
    data, model = trained
    space = tmp_path / "space.json"
    space.write_text('{"learning_rate": 0.01}')
    cases = [
        (["train", data, "--output", tmp_path / "m.fmlp"], "--target is required for the "
                                                           "CSV file"),
        (["search", data, "--target", "species", "--space", space, "--jobs", "2",
          "--scheduler", "tcp://127.0.0.1:1"], "--jobs sizes the local process pool"),
        (["search", data, "--target", "species", "--space", space, "--dev", "0"],
         "search scores every trial on a dev set"),
        (["diagnose", model, data, "--dev-data", data, "--dev", "0.3"],
         "give either --dev-data or --dev/--seed, not both"),
        (["diagnose", model, data, "--dev", "0"], "diagnose needs a dev set"),
        (["diagnose", model, data, "--baseline-error", "1.5"],
         "argument --baseline-error: must be a number in [0, 1]")]
    for argv, message in cases:
        status, _, err = run(argv, capsys)
        assert status == 2 and message in err, (argv, err)
        assert f"usage: fastmlp {argv[0]}" in err


# ------------------------------------------------------------------ train
def test_train_saves_the_model_with_its_metadata(trained, capsys):
    data, model_path = trained
    model = fastmlp.load(model_path)
    assert model.metadata == {"fastmlp.cli": {
        "target": "species", "features": FEATURES, "labels": list(SPECIES),
        "split": {"dev": 0.2, "seed": 0}}}
    assert sorted(p.name for p in model_path.parent.iterdir()) == ["flowers.csv",
                                                                  "flowers.fmlp"]
    assert model.loss == "softmax_cross_entropy" and model.n_outputs == 3
    assert [layer.kind for layer in model.layers] == ["normalization", "dense", "dense"]
    assert model.history.epochs == 30                       # the history is in the file
    X, y = flowers()
    (X_train, y_train), (X_dev, y_dev), _ = train_dev_test_split(
        X, codes(y), dev=0.2, test=0, stratify=True, seed=0)
    assert model.score(X_dev, y_dev) > 0.8                  # it learned


def test_train_prints_progress_and_final_scores(tmp_path, capsys):
    data = write_flowers(tmp_path / "f.csv", n=60)
    status, out, _ = run(["train", data, "--target", "species", "--epochs", "3", "--verbose",
                          "--backend", "numpy", "--dtype", "float64", "--optimizer", "sgd",
                          "--dropout", "0.25", "--output", tmp_path / "m.fmlp"], capsys)
    assert status == 0
    assert "60 rows, 4 features, target 'species' (3 classes: setosa, versicolor, " \
           "virginica); train/dev 48/12" in out
    assert "model: 4-128-64-3 relu + dropout 0.25, softmax_cross_entropy, sgd, 3 epochs" in out
    assert len(re.findall(r"^epoch \d/3 ", out, re.M)) == 3
    model = fastmlp.load(tmp_path / "m.fmlp")
    assert model.backend.name == "numpy" and model.dtype == np.float64
    assert [(layer.kind, getattr(layer, "rate", None)) for layer in model.layers] == [
        ("normalization", None), ("dense", None), ("dropout", 0.25), ("dense", None),
        ("dropout", 0.25), ("dense", None)]
    X, y = flowers(60)
    (X_train, y_train), (X_dev, y_dev), _ = train_dev_test_split(
        X, codes(y), dev=0.2, test=0, stratify=True, seed=0)
    for name, X_part, y_part in (("train", X_train, y_train), ("dev", X_dev, y_dev)):
        scores = model.evaluate(X_part, y_part)
        assert (f"{name:<6} loss {scores['loss']:.4f}  accuracy {scores['accuracy']:.4f}  "
                f"({len(X_part)} samples)") in out


def test_train_without_dev_and_without_normalization(tmp_path, capsys):
    data = write_flowers(tmp_path / "f.csv", n=40)
    status, out, _ = run(["train", data, "--target", "-1", "--dev", "0", "--hidden", "",
                          "--no-normalize", "--epochs", "1", "--output", tmp_path / "m"],
                         capsys)
    assert status == 0 and "train/dev 40/0" in out and "\ndev " not in out
    assert [layer.kind for layer in fastmlp.load(tmp_path / "m").layers] == ["dense"]


# ------------------------------------------------------------------ evaluate, predict
def test_evaluate_prints_the_models_scores(trained, capsys):
    data, model_path = trained
    model = fastmlp.load(model_path)
    X, y = flowers()
    expected = model.evaluate(X, codes(y))
    status, out, _ = run(["evaluate", model_path, data, "--json"], capsys)
    assert status == 0 and json.loads(out) == {**expected, "samples": 150}
    status, out, _ = run(["evaluate", model_path, data, "--backend", "numpy"], capsys)
    assert status == 0 and out.startswith(f"loss {expected['loss']:.4f}  accuracy "
                                          f"{expected['accuracy']:.4f}  (150 samples)")


def test_predict_writes_labels_and_probabilities(trained, tmp_path, capsys):
    data, model_path = trained
    model = fastmlp.load(model_path)
    X, _ = flowers()
    status, out, _ = run(["predict", model_path, data, "--output", tmp_path / "p.csv"], capsys)
    assert status == 0 and out == f"wrote 150 predictions to {tmp_path / 'p.csv'}\n"
    header, rows = read_csv(tmp_path / "p.csv")
    assert header == ["species"] and len(rows) == 150
    assert [row[0] for row in rows] == list(SPECIES[model.predict(X)])
    assert run(["predict", model_path, data, "--proba", "--output", tmp_path / "q.csv"],
               capsys)[0] == 0
    header, rows = read_csv(tmp_path / "q.csv")
    assert header == ["proba_setosa", "proba_versicolor", "proba_virginica"]
    np.testing.assert_array_equal(np.array(rows, np.float32), model.predict_proba(X))


def test_predict_matches_columns_by_name_without_the_target(trained, tmp_path, capsys):
    data, model_path = trained
    X, _ = flowers()
    order = [2, 0, 3, 1]                       # shuffled columns, no species column
    shuffled = write_csv(tmp_path / "new.csv", [FEATURES[i] for i in order], X[:, order])
    status, out, _ = run(["predict", model_path, shuffled, "--output", "-"], capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "species" and lines[1:] == list(SPECIES[fastmlp.load(model_path)
                                                              .predict(X)])


def test_regression_round_trip(tmp_path, capsys):
    X, _ = flowers(80)
    price = X @ [1.5, -2.0, 0.5, 0.0] + 0.25
    data = write_csv(tmp_path / "r.csv", ["price"] + FEATURES,
                     [[p, *row] for p, row in zip(price.round(3), X)])
    model_path = tmp_path / "r.fmlp"
    status, out, _ = run(["train", data, "--target", "price", "--epochs", "40",
                          "--learning-rate", "0.01", "--output", model_path], capsys)
    assert status == 0 and "target 'price' (regression)" in out and ", mse," in out
    model = fastmlp.load(model_path)
    assert model.loss == "mse" and model.metadata["fastmlp.cli"]["labels"] is None
    assert run(["predict", model_path, data, "--output", tmp_path / "p.csv"], capsys)[0] == 0
    header, rows = read_csv(tmp_path / "p.csv")
    assert header == ["price"]
    predicted = np.array([row[0] for row in rows], np.float32)
    np.testing.assert_array_equal(predicted, model.predict(X))
    assert model.score(X, price) > 0.9
    status, _, err = run(["predict", model_path, data, "--proba", "--output", "-"], capsys)
    assert status == 2 and "--proba needs a classification model" in err


def test_npz_data_with_integer_labels(tmp_path, capsys):
    X, y = flowers(90)
    labels = np.array([3, 5, 7])[codes(y)]          # not 0..k-1: mapped, then written back
    np.savez(tmp_path / "d.npz", features=X, kind=labels)
    keys = ["--x-key", "features", "--y-key", "kind"]
    model_path = tmp_path / "m.fmlp"
    assert run(["train", tmp_path / "d.npz", *keys, "--epochs", "2", "--output", model_path],
               capsys)[0] == 0
    meta = fastmlp.load(model_path).metadata["fastmlp.cli"]
    assert meta["labels"] == [3, 5, 7] and meta["features"] is None and meta["target"] == "kind"
    assert all(type(label) is int for label in meta["labels"])
    status, out, _ = run(["predict", model_path, tmp_path / "d.npz", *keys, "--output", "-"],
                         capsys)
    expected = np.array([3, 5, 7])[fastmlp.load(model_path).predict(X)]
    assert status == 0 and out.split() == ["kind", *map(str, expected)]


def test_binary_cross_entropy_probabilities(tmp_path, capsys):
    X, y = flowers(60)
    answer = np.where(X[:, 0] > 0, "yes", "no")
    data = write_csv(tmp_path / "b.csv", FEATURES + ["answer"],
                     [[*row, a] for row, a in zip(X, answer)])
    model_path = tmp_path / "b.fmlp"
    assert run(["train", data, "--target", "answer", "--loss", "binary_cross_entropy",
                "--epochs", "2", "--output", model_path], capsys)[0] == 0
    model = fastmlp.load(model_path)
    assert model.loss == "binary_cross_entropy" and model.n_outputs == 1
    assert run(["predict", model_path, data, "--proba", "--output", tmp_path / "p.csv"],
               capsys)[0] == 0
    header, rows = read_csv(tmp_path / "p.csv")
    p = model.predict_proba(X)
    assert header == ["proba_no", "proba_yes"]
    np.testing.assert_array_equal(np.array(rows, np.float32), np.column_stack([1 - p, p]))


@pytest.mark.parametrize("metadata", [None, {"owner": "me", "fastmlp": [1]}],
                         ids=["none", "other keys"])
def test_a_model_saved_from_python_works_without_the_cli_metadata(metadata, tmp_path,
                                                                  capsys):
    """As the README says: every column but --target is a feature, in file order, the
    target holds the class numbers, predictions are class numbers, and diagnose splits
    with --dev 0.2 --seed 0."""
    X, y = flowers(50)
    model = fastmlp.Sequential([fastmlp.Dense(3)], input_dim=4, seed=1)
    model.save(tmp_path / "m.fmlp", metadata=metadata)
    data = write_csv(tmp_path / "d.csv", FEATURES + ["label"],
                     [[*row, c] for row, c in zip(X, codes(y))])
    status, out, _ = run(["evaluate", tmp_path / "m.fmlp", data, "--target", "label",
                          "--json"], capsys)
    assert status == 0 and json.loads(out)["loss"] == model.evaluate(X, codes(y))["loss"]
    status, out, _ = run(["predict", tmp_path / "m.fmlp", data, "--target", "label",
                          "--output", "-"], capsys)
    assert status == 0 and out.split() == ["prediction", *map(str, model.predict(X))]
    status, out, _ = run(["diagnose", tmp_path / "m.fmlp", data, "--target", "label"],
                         capsys)
    assert status == 0 and "train/dev: 40/10 samples (--dev 0.2 --seed 0)" in out
    status, _, err = run(["evaluate", tmp_path / "m.fmlp", data], capsys)
    assert status == 2 and "--target is required for the CSV file" in err


# ------------------------------------------------------------------ diagnose
def test_diagnose_splits_as_train_did(trained, capsys):
    data, model_path = trained
    model = fastmlp.load(model_path)
    X, y = flowers()
    (X_train, y_train), (X_dev, y_dev), _ = train_dev_test_split(
        X, codes(y), dev=0.2, test=0, stratify=True, seed=0)
    status, out, _ = run(["diagnose", model_path, data, "--baseline-error", "0.01"], capsys)
    assert status == 0 and "train/dev: 120/30 samples (--dev 0.2 --seed 0)" in out
    train_error, dev_error = 1 - model.score(X_train, y_train), 1 - model.score(X_dev, y_dev)
    assert f"train error     {train_error:>8.2%}" in out
    assert f"dev error       {dev_error:>8.2%}" in out
    assert f"baseline error  {0.01:>8.2%}" in out


def test_diagnose_with_a_separate_dev_file(trained, tmp_path, capsys):
    data, model_path = trained
    model = fastmlp.load(model_path)
    dev = write_flowers(tmp_path / "dev.csv", n=40, seed=1)
    status, out, _ = run(["diagnose", model_path, data, "--dev-data", dev,
                          "--threshold", "0.5"], capsys)
    X, y = flowers()
    X_dev, y_dev = flowers(40, seed=1)
    assert status == 0 and f"train/dev: 150/40 samples (dev set {dev})" in out
    assert f"train error     {1 - model.score(X, codes(y)):>8.2%}" in out
    assert f"dev error       {1 - model.score(X_dev, codes(y_dev)):>8.2%}" in out
    assert "diagnosis: neither (a gap is high above 50.00%)" in out


# ------------------------------------------------------------------ search
SPACE = {"learning_rate": {"log_uniform": [1e-3, 1e-1]},
         "hidden": {"choice": [[8], [16, 8]]},
         "batch_size": {"int_uniform": [16, 64]},
         "dropout": {"uniform": [0, 0.3]},
         "optimizer": "adam"}
SPACE_TOML = """optimizer = "adam"
[learning_rate]
log_uniform = [1e-3, 1e-1]
[hidden]
choice = [[8], [16, 8]]
[batch_size]
int_uniform = [16, 64]
[dropout]
uniform = [0, 0.3]
"""


def test_space_files_json_and_toml(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SPACE))
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    expected = {"learning_rate": LogUniform(1e-3, 1e-1), "hidden": Choice([[8], [16, 8]]),
                "batch_size": IntUniform(16, 64), "dropout": Uniform(0.0, 0.3),
                "optimizer": "adam"}
    assert cli_search.read_space(str(tmp_path / "s.json")) == expected
    assert cli_search.read_space(str(tmp_path / "s.toml")) == expected
    (tmp_path / "c.json").write_text('{"hidden": [32, 16]}')      # a list constant
    assert cli_search.read_space(str(tmp_path / "c.json")) == {"hidden": (32, 16)}


def test_search_prints_the_trials_and_writes_the_best(trained, tmp_path, capsys):
    data, _ = trained
    (tmp_path / "s.json").write_text(json.dumps(SPACE))
    status, out, _ = run(["search", data, "--target", "species", "--space",
                          tmp_path / "s.json", "--trials", "3", "--rounds", "2", "--epochs",
                          "2", "--jobs", "1", "--output", tmp_path / "best.json"], capsys)
    assert status == 0
    assert "random search: 6 trials in 2 rounds, objective dev_error" in out
    best = json.loads((tmp_path / "best.json").read_text())
    assert set(best) == set(SPACE) | {"loss"} and best["loss"] == "softmax_cross_entropy"
    assert 1e-3 <= best["learning_rate"] <= 1e-1 and best["hidden"] in ([8], [16, 8])
    assert 16 <= best["batch_size"] <= 64 and 0 <= best["dropout"] <= 0.3
    table = out[out.index("round  trial"):].splitlines()[2:]
    assert table[6] == f"wrote the best parameters to {tmp_path / 'best.json'}"
    errors = [float(row.split()[2]) for row in table[:6]]
    assert errors == sorted(errors)                          # best first
    assert f"best: dev_error {table[0].split()[2]} with" in out


def test_reading_toml_without_tomllib_says_what_to_install(tmp_path, monkeypatch, capsys):
    (tmp_path / "s.toml").write_text(SPACE_TOML)
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    status, _, err = run(["search", "d.csv", "--target", "y", "--space", tmp_path / "s.toml"],
                         capsys)
    assert status == 1
    assert "needs Python >= 3.11 or the tomli package (pip install tomli)" in err


# ------------------------------------------------------------------ data errors
def _error_files(folder: Path, trained) -> dict:
    """Broken inputs, by name."""
    data, model = trained
    X, y = flowers(10)
    files = {"data": data, "model": model}
    files["ragged"] = folder / "ragged.csv"
    files["ragged"].write_text("a,b,y\n1,2,x\n3,4\n")
    files["text"] = write_csv(folder / "text.csv", FEATURES + ["species"],
                              [[1, 2, 3, 4, "setosa"], [1, "n/a", 3, 4, "setosa"]])
    files["nan"] = write_csv(folder / "nan.csv", FEATURES + ["species"],
                             [[1, 2, 3, 4, "setosa"], [1, 2, "nan", 4, "setosa"]])
    files["empty"] = folder / "empty.csv"
    files["empty"].write_text("")
    files["header_only"] = folder / "header.csv"
    files["header_only"].write_text("a,b,y\n")
    files["narrow"] = write_csv(folder / "narrow.csv", FEATURES[:3] + ["species"],
                                [[*row[:3], label] for row, label in zip(X, y)])
    files["unseen"] = write_csv(folder / "unseen.csv", FEATURES + ["species"],
                                [[*row, "rose"] for row in X])
    files["garbage"] = folder / "garbage.fmlp"
    files["garbage"].write_bytes(b"not a model")
    np.savez(folder / "wide.npz", X=np.ones((4, 5)), y=np.zeros(4))
    files["wide"] = folder / "wide.npz"
    files["one_class"] = write_csv(folder / "one.csv", ["a", "y"], [[1, "x"], [2, "x"]])
    return files


DATA_ERRORS = [
    (["train", "{missing}", "--target", "species"], "{missing}: No such file or directory"),
    (["train", "{data}", "--target", "colour"],
     "{data} has no column 'colour'; its columns are ['sepal', 'petal', 'stem', 'leaf', "
     "'species']"),
    (["train", "{data}", "--target", "7"], "has no column '7'"),
    (["train", "{text}", "--target", "species"],
     "{text}, line 3, column 'petal': 'n/a' is not a finite number (feature columns must "
     "be numeric)"),
    (["train", "{nan}", "--target", "species"], "{nan}, line 3, column 'stem': 'nan' is not "
                                                "a finite number"),
    (["train", "{ragged}", "--target", "y"], "{ragged}, line 3: 2 fields, but the header "
                                             "has 3"),
    (["train", "{empty}", "--target", "y"], "{empty} has no data rows"),
    (["train", "{header_only}", "--target", "y"], "{header_only} has no data rows"),
    (["train", "{one_class}", "--target", "y"], "has a single class ['x']; classification "
                                                "needs at least two"),
    (["train", "{data}", "--target", "species", "--loss", "mse"],
     "{data}, line 2 (data row 1): target 'species' is 'versicolor', not a finite number"),
    (["train", "{data}", "--target", "species", "--loss", "binary_cross_entropy"],
     "binary_cross_entropy needs exactly two classes; target 'species' has 3"),
    (["train", "{data}", "--target", "species", "--dev", "500"],
     "dev as a count of samples must be in 0..150"),
    (["train", "{wide}", "--y-key", "labels"], "{wide} has no array 'labels'; its arrays "
                                               "are ['X', 'y']"),
    (["evaluate", "{missing}", "{data}"], "{missing}: No such file or directory"),
    (["evaluate", "{garbage}", "{data}"], "cannot load '{garbage}': bad magic"),
    (["evaluate", "{model}", "{wide}"], "{wide} has 5 feature columns, but the model takes "
                                        "4 features"),
    (["evaluate", "{model}", "{narrow}"], "{narrow} lacks the model's feature columns "
                                          "['leaf']; its columns are ['sepal', 'petal', "
                                          "'stem', 'species']"),
    (["evaluate", "{model}", "{unseen}"], "{unseen}, line 2 (data row 1): target 'species' "
                                          "is 'rose', a "
                                          "class the model was not trained on; it knows "
                                          "['setosa', 'versicolor', 'virginica']"),
    (["predict", "{model}", "{text}", "--output", "-"], "column 'petal': 'n/a' is not a "
                                                        "finite number"),
    (["diagnose", "{model}", "{data}", "--dev-data", "{missing}"],
     "{missing}: No such file or directory")]


@pytest.mark.parametrize("argv, message", DATA_ERRORS)
def test_data_errors_exit_1_with_a_message(argv, message, trained, tmp_path, capsys):
    files = {**_error_files(tmp_path, trained), "missing": tmp_path / "missing.csv"}
    argv = [part.format(**files) for part in argv]
    if argv[0] == "train" and "--output" not in argv:
        argv += ["--output", str(tmp_path / "out.fmlp")]
    status, _, err = run(argv, capsys)
    assert status == 1
    assert err.startswith(f"fastmlp {argv[0]}: error: ") and err.count("\n") == 1
    assert message.format(**files) in err and not (tmp_path / "out.fmlp").exists()


def test_output_folder_must_exist_before_training(trained, tmp_path, capsys):
    data, _ = trained
    status, out, err = run(["train", data, "--target", "species", "--output",
                            tmp_path / "no" / "m.fmlp"], capsys)
    assert status == 1 and out == ""
    assert f"cannot write {tmp_path / 'no' / 'm.fmlp'}: the folder" in err


def test_the_metadata_stays_with_a_model_trained_further_in_python(trained, tmp_path,
                                                                     capsys):
    """What a sidecar file could not do: the model, loaded, trained on and saved again
    elsewhere, still knows its target, its feature columns by name and its labels."""
    data, model_path = trained
    model = fastmlp.load(model_path)
    X, y = flowers()
    model.fit(X, codes(y), epochs=1)
    model.save(tmp_path / "further.fmlp")
    order = [3, 1, 0, 2]
    shuffled = write_csv(tmp_path / "new.csv", [FEATURES[i] for i in order] + ["species"],
                         [[*row[order], label] for row, label in zip(X, y)])
    status, out, _ = run(["predict", tmp_path / "further.fmlp", shuffled, "--output", "-"],
                         capsys)
    assert status == 0 and out.split() == ["species", *SPECIES[model.predict(X)]]
    status, out, _ = run(["evaluate", tmp_path / "further.fmlp", shuffled, "--json"], capsys)
    assert status == 0 and json.loads(out) == {**model.evaluate(X, codes(y)), "samples": 150}


@pytest.mark.parametrize("entry, message", [
    ({"target": 3}, "the model's metadata entry 'fastmlp.cli' is not what fastmlp train "
                    "writes"),
    ({"target": "species", "features": FEATURES, "labels": ["a", True], "split": {
        "dev": 0.2, "seed": 0}}, "the model's metadata entry 'fastmlp.cli' is not"),
    ({"target": "species", "features": FEATURES, "labels": ["a", "b"], "split": {
        "dev": 0.2, "seed": 0}}, "the model's metadata lists 2 class labels, which does "
                                 "not fit the model (softmax_cross_entropy, 3 outputs)")],
    ids=["no split", "bool label", "too few labels"])
def test_malformed_cli_metadata_is_a_data_error(entry, message, trained, tmp_path, capsys):
    data, model_path = trained
    copy = tmp_path / "m.fmlp"
    fastmlp.load(model_path).save(copy, metadata={"fastmlp.cli": entry})
    status, _, err = run(["evaluate", copy, data], capsys)
    assert status == 1 and f"fastmlp evaluate: error: {copy}: {message}" in err


@pytest.mark.parametrize("content, message", [
    ('{"learning_rate": {"log_normal": [1, 2]}}', "parameter 'learning_rate': expected one "
                                                  "key of ['uniform', 'log_uniform', "
                                                  "'int_uniform', 'choice']"),
    ('{"learning_rate": {"log_uniform": [0, 1]}}', "parameter 'learning_rate': LogUniform "
                                                   "low must be a positive finite number"),
    ('{"dropout": {"uniform": [0.5]}}', "parameter 'dropout': uniform takes [low, high]"),
    ('{"hidden": {"choice": []}}', "parameter 'hidden': Choice options must not be empty"),
    ('{"loss": "mse"}', "sets 'loss'; give the loss with --loss instead"),
    ('[1, 2]', "must map parameter names to distributions"),
    ('{"learning_rate": ', "is not valid JSON"),
    ('{"learnin_rate": 0.1}', "unknown parameter names ['learnin_rate'] in space")])
def test_bad_space_files(content, message, trained, tmp_path, capsys):
    data, _ = trained
    (tmp_path / "s.json").write_text(content)
    status, _, err = run(["search", data, "--target", "species", "--space",
                          tmp_path / "s.json", "--jobs", "1"], capsys)
    assert status == 1 and message in err and "Traceback" not in err


def test_train_with_bfloat16_products(tmp_path, capsys):
    data = write_flowers(tmp_path / "f.csv", n=60)
    status, _, err = run(["train", data, "--target", "species", "--epochs", "3", "--quiet",
                          "--dtype", "float64", "--precision", "bfloat16",
                          "--output", tmp_path / "m.fmlp"], capsys)
    assert status == 0, err
    model = fastmlp.load(tmp_path / "m.fmlp")
    assert model.precision == "bfloat16" and model.dtype == np.float32
    status, _, err = run(["train", data, "--target", "species", "--precision", "float16",
                          "--output", tmp_path / "n.fmlp"], capsys)
    assert status == 2 and "argument --precision: invalid choice: 'float16'" in err
