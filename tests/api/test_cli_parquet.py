"""The command line on Parquet data (fastmlp/cli/parquet.py): train streams a folder of
Parquet files (columns chosen as in CSV, --loss auto and the classes from a survey of the
target column, a dev set from --dev-data), evaluate and predict read Parquet a row group
at a time with the model's feature names; train --dev-data with CSV too; the errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import cli

from .test_cli import FEATURES, SPACE, SPECIES, TRAIN_FLOWERS, codes, flowers, read_csv, \
    run, write_flowers

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def write_parquet(path, X, target, name="species", extra=None, groups=64):
    """X's columns (FEATURES), the target column and ``extra`` columns, in row groups."""
    columns = {f: X[:, i] for i, f in enumerate(FEATURES)}
    table = pa.table({**columns, **(extra or {}), name: target})
    pq.write_table(table, path, row_group_size=groups)
    return path


def flowers_folder(root, n=300, seed=0, parts=3):
    """flowers(n, seed) over ``parts`` files in a folder, with a text ID column."""
    X, y = flowers(n, seed)
    root.mkdir()
    size = n // parts
    for p in range(parts):
        rows = slice(p * size, (p + 1) * size if p < parts - 1 else n)
        ids = [f"id{i}" for i in range(n)][rows]
        write_parquet(root / f"part-{p}.parquet", X[rows], y[rows], extra={"id": ids})
    return root


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """(folder, dev file, model path, train's stdout): a model the CLI trained from a
    Parquet folder with a Parquet dev set."""
    folder = tmp_path_factory.mktemp("parquet")
    data = flowers_folder(folder / "flowers")
    X_dev, y_dev = flowers(60, seed=1)
    dev = write_parquet(folder / "dev.parquet", X_dev, y_dev, groups=25)
    model = folder / "flowers.fmlp"
    out = _main(["train", data, *TRAIN_FLOWERS, "--exclude", "id", "--dev-data", dev,
                 "--output", model])
    return data, dev, model, out


def _main(argv):
    import contextlib
    import io
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert cli.main([str(a) for a in argv]) == 0
    return text.getvalue()


def test_train_streams_a_parquet_folder_and_saves_its_columns(streamed):
    data, dev, model_path, out = streamed
    model = fastmlp.load(model_path)
    X, y = flowers(300)
    X_dev, y_dev = flowers(60, seed=1)
    assert out.startswith(f"{data}: 300 rows, 4 features, target 'species' (3 classes: "
                          f"setosa, versicolor, virginica); train/dev 300/60 (dev set {dev})")
    meta = model.metadata["fastmlp.cli"]
    assert meta["target"] == "species" and meta["features"] == FEATURES
    assert meta["labels"] == SPECIES.tolist() and meta["split"]["dev"] == 0
    train_scores = model.evaluate(X, codes(y))
    dev_scores = model.evaluate(X_dev, codes(y_dev))
    assert f"train  loss {train_scores['loss']:.4f}  accuracy " \
           f"{train_scores['accuracy']:.4f}  (300 samples)" in out
    assert f"dev    loss {dev_scores['loss']:.4f}  accuracy " \
           f"{dev_scores['accuracy']:.4f}  (60 samples)" in out
    assert model.history.history["val_accuracy"][-1] == dev_scores["accuracy"]
    assert dev_scores["accuracy"] > 0.8


def test_evaluate_and_predict_read_parquet_by_the_models_column_names(streamed, tmp_path,
                                                                     capsys):
    _, _, model_path, _ = streamed
    model = fastmlp.load(model_path)
    X, y = flowers(80, seed=2)
    # the columns in another order, the target elsewhere, an extra column: matched by name
    table = pa.table({"note": ["x"] * 80, "species": y,
                      **{f: X[:, i] for i, f in reversed(list(enumerate(FEATURES)))}})
    pq.write_table(table, tmp_path / "new.parquet", row_group_size=30)
    status, out, _ = run(["evaluate", model_path, tmp_path / "new.parquet", "--json"], capsys)
    scores = json.loads(out)
    expected = model.evaluate(X, codes(y))
    assert status == 0 and scores["samples"] == 80
    assert scores["loss"] == pytest.approx(expected["loss"], rel=1e-12)
    assert scores["accuracy"] == expected["accuracy"]
    status, out, _ = run(["predict", model_path, tmp_path / "new.parquet", "--output",
                          tmp_path / "p.csv"], capsys)
    header, rows = read_csv(tmp_path / "p.csv")
    assert status == 0 and out == f"wrote 80 predictions to {tmp_path / 'p.csv'}\n"
    assert header == ["species"]
    assert [row[0] for row in rows] == SPECIES[model.predict(X)].tolist()
    status, _, _ = run(["predict", model_path, tmp_path / "new.parquet", "--output",
                        tmp_path / "q.csv", "--proba"], capsys)
    header, rows = read_csv(tmp_path / "q.csv")
    assert header == [f"proba_{s}" for s in SPECIES]
    np.testing.assert_array_equal(np.array(rows, np.float32), model.predict_proba(X))


def test_parquet_targets_decide_the_loss_as_csv_ones(tmp_path, capsys):
    """--loss auto: numbers with many values train a regression, few whole numbers a
    classifier with those numbers as its labels."""
    X, _ = flowers(200)
    value = X[:, 0] * 2 + X[:, 1]
    write_parquet(tmp_path / "houses.parquet", X, value, name="price")
    status, out, _ = run(["train", tmp_path / "houses.parquet", "--target", "price",
                          "--epochs", "2", "--output", tmp_path / "r.fmlp"], capsys)
    assert status == 0 and "target 'price' (regression); train/dev 200/0 (no dev set)" in out
    assert fastmlp.load(tmp_path / "r.fmlp").loss == "mse"
    grade = (X[:, 0] > 0).astype(np.int64) * 3 + 1        # labels 1 and 4
    write_parquet(tmp_path / "grades.parquet", X, grade, name="grade")
    status, out, _ = run(["train", tmp_path / "grades.parquet", "--target", "grade",
                          "--epochs", "2", "--shuffle-buffer", "64", "--output",
                          tmp_path / "g.fmlp"], capsys)
    assert status == 0 and "target 'grade' (2 classes: 1, 4)" in out
    status, _, _ = run(["predict", tmp_path / "g.fmlp", tmp_path / "grades.parquet",
                        "--output", tmp_path / "g.csv"], capsys)
    assert {row[0] for row in read_csv(tmp_path / "g.csv")[1]} <= {"1", "4"}


def test_predict_writes_parquet_with_typed_columns_a_row_group_per_chunk(streamed, tmp_path,
                                                                         capsys):
    _, _, model_path, _ = streamed
    model = fastmlp.load(model_path)
    X, y = flowers(80, seed=2)
    write_parquet(tmp_path / "new.parquet", X, y, groups=30)
    status, out, _ = run(["predict", model_path, tmp_path / "new.parquet", "--output",
                          tmp_path / "p.parquet"], capsys)
    written = pq.ParquetFile(tmp_path / "p.parquet")
    assert status == 0 and out == f"wrote 80 predictions to {tmp_path / 'p.parquet'}\n"
    assert written.metadata.num_row_groups == 3                 # 30 + 30 + 20 rows
    table = written.read()
    assert table.schema.names == ["species"] and pa.types.is_string(table.schema[0].type)
    assert table.column("species").to_pylist() == SPECIES[model.predict(X)].tolist()
    write_flowers(tmp_path / "new.csv", n=80, seed=2)          # CSV in, Parquet out
    status, _, _ = run(["predict", model_path, tmp_path / "new.csv", "--output",
                        tmp_path / "q.parquet", "--proba"], capsys)
    table = pq.read_table(tmp_path / "q.parquet")
    assert status == 0 and table.schema.names == [f"proba_{s}" for s in SPECIES]
    assert all(pa.types.is_float32(field.type) for field in table.schema)
    np.testing.assert_array_equal(np.column_stack([c.to_numpy() for c in table.columns]),
                                  model.predict_proba(X))    # exact: no text round trip
    grade = (X[:, 0] > 0).astype(np.int64) * 3 + 1           # integer labels stay integers
    write_parquet(tmp_path / "grades.parquet", X, grade, name="grade")
    assert run(["train", tmp_path / "grades.parquet", "--target", "grade", "--epochs", "1",
                "--output", tmp_path / "g.fmlp"], capsys)[0] == 0
    assert run(["predict", tmp_path / "g.fmlp", tmp_path / "grades.parquet", "--output",
                tmp_path / "g.parquet"], capsys)[0] == 0
    table = pq.read_table(tmp_path / "g.parquet")
    assert pa.types.is_integer(table.schema[0].type)
    assert set(table.column("grade").to_pylist()) <= {1, 4}
    write_parquet(tmp_path / "empty.parquet", X[:0], y[:0])
    status, _, err = run(["predict", model_path, tmp_path / "empty.parquet", "--output",
                          tmp_path / "e.parquet"], capsys)
    assert status == 1 and "has no rows to predict" in err
    assert not (tmp_path / "e.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary


def test_diagnose_reads_parquet_a_row_group_at_a_time(streamed, capsys):
    data, dev, model_path, _ = streamed
    model = fastmlp.load(model_path)
    X, y = flowers(300)
    X_dev, y_dev = flowers(60, seed=1)
    status, out, _ = run(["diagnose", model_path, data, "--dev-data", dev], capsys)
    expected = fastmlp.diagnose(model, (X, codes(y)), (X_dev, codes(y_dev)))
    assert status == 0
    assert out == f"train/dev: 300/60 samples (dev set {dev})\n{expected}\n"


def test_train_takes_a_csv_dev_file_instead_of_a_split(tmp_path, capsys):
    data = write_flowers(tmp_path / "flowers.csv")
    dev = write_flowers(tmp_path / "dev.csv", n=40, seed=1)
    status, out, _ = run(["train", data, *TRAIN_FLOWERS, "--dev-data", dev, "--output",
                          tmp_path / "m.fmlp"], capsys)
    model = fastmlp.load(tmp_path / "m.fmlp")
    X_dev, y_dev = flowers(40, seed=1)
    assert status == 0 and f"train/dev 150/40 (dev set {dev})" in out
    assert "dev    loss" in out and "(40 samples)" in out
    assert model.history.history["val_accuracy"][-1] == \
        model.evaluate(X_dev, codes(y_dev))["accuracy"]


def test_parquet_errors_name_the_row_the_column_and_the_fix(streamed, tmp_path, capsys):
    data, dev, model_path, _ = streamed
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    X, y = flowers(50)
    target = pa.array([*y[:37], None, *y[38:]])
    write_parquet(tmp_path / "holes.parquet", X, target, groups=16)
    usage = [
        (["train", data, "--target", "species", "--output", tmp_path / "m.fmlp"],
         "column 'id' holds string, not numbers; feature columns must be numeric; leave "
         "it out with --exclude id", 1),
        (["train", tmp_path / "holes.parquet", "--target", "species", "--output",
          tmp_path / "m.fmlp"], "row 37 (counted from 0): the target 'species' is missing "
                                "('None')", 1),
        (["train", data, "--exclude", "id", "--output", tmp_path / "m.fmlp"],
         "--target is required for the Parquet data", 2),
        (["train", data, "--target", "species", "--exclude", "id", "--dev", "0.2",
          "--output", tmp_path / "m.fmlp"], "--dev splits data held in memory; Parquet "
                                            "data is streamed", 2),
        (["train", data, "--target", "species", "--exclude", "id", "--dev", "0.2",
          "--dev-data", dev, "--output", tmp_path / "m.fmlp"], "give either --dev", 2),
        (["train", data, "--target", "label", "--output", tmp_path / "m.fmlp"],
         "has no column 'label'", 1),
        (["train", data, "--target", "species", "--exclude", "id", "--shuffle-buffer",
          "16", "--output", tmp_path / "m.fmlp"], "shuffle_buffer (16 rows) must hold at "
                                                  "least one batch (32 rows)", 1),
        (["train", tmp_path / "x.csv", "--target", "y", "--shuffle-buffer", "64",
          "--output", tmp_path / "m.fmlp"], "--shuffle-buffer sizes a stream's shuffle", 2),
        (["diagnose", model_path, data], "diagnose reads Parquet data (" + str(data)
         + ") a row group at a time and does not split it: give the dev set with "
           "--dev-data DEV", 2),
        (["search", data, "--target", "species", "--space", tmp_path / "space.json"],
         "search reads a CSV or NPZ file into memory; Parquet data", 2),
        (["evaluate", model_path, tmp_path / "holes.parquet"], "row 37 (counted from 0): "
                                                               "the target 'species' is "
                                                               "missing", 1)]
    for argv, message, code in usage:
        status, _, err = run(argv, capsys)
        assert status == code and message in err, (argv, err)
    odd = np.where(np.arange(50) == 44, "tulip", y)
    write_parquet(tmp_path / "odd.parquet", X, odd, groups=16)
    status, _, err = run(["evaluate", model_path, tmp_path / "odd.parquet"], capsys)
    assert status == 1 and "row 44 (counted from 0): target 'species' is 'tulip', a class " \
                           "the model was not trained on" in err


def test_predict_writes_a_parquet_files_rows_a_chunk_at_a_time(streamed, tmp_path, capsys):
    """Predictions go out chunk by chunk; a bad row in a later chunk names the chunk and
    leaves the file that was there untouched (written atomically)."""
    _, _, model_path, _ = streamed
    model = fastmlp.load(model_path)
    X, y = flowers(100, seed=3)
    write_parquet(tmp_path / "new.parquet", X, y, groups=16)
    status, out, _ = run(["predict", model_path, tmp_path / "new.parquet", "--output", "-"],
                         capsys)
    assert status == 0
    assert out.splitlines() == ["species", *SPECIES[model.predict(X)].tolist()]
    X[70, 2] = np.nan                                   # row group 4 (rows 64-79)
    write_parquet(tmp_path / "bad.parquet", X, y, groups=16)
    (tmp_path / "p.csv").write_text("kept\n")
    status, _, err = run(["predict", model_path, tmp_path / "bad.parquet", "--output",
                          tmp_path / "p.csv"], capsys)
    assert status == 1 and "of the Parquet source's chunk 4" in err
    assert (tmp_path / "p.csv").read_text() == "kept\n"
    write_parquet(tmp_path / "empty.parquet", X[:0], y[:0])
    status, _, err = run(["predict", model_path, tmp_path / "empty.parquet", "--output",
                          tmp_path / "p.csv"], capsys)
    assert status == 1 and "empty.parquet has no rows to predict" in err


def test_predict_to_a_reader_that_stops_early_is_no_error(streamed):
    """`fastmlp predict ... --output - | head`: the broken pipe after head exits ends the
    command quietly with status 0, as for other Unix tools (a chunk at a time, the
    predictions of a Parquet folder outlast head's three lines)."""
    data, _, model_path, _ = streamed
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f'"{sys.executable}" -m fastmlp predict '
         f'"{model_path}" "{data}" --output - | head -3'],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "species" and done.stderr == ""
