"""The command line in a fresh process (``python -m fastmlp ...``, this interpreter): a
whole session (train, evaluate, predict, search, diagnose) on a temporary CSV, and the
error cases' exit statuses and messages without a traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp

from .test_cli import SPACE, SPECIES, TRAIN_FLOWERS, codes, flowers, read_csv, write_flowers

PACKAGE_ROOT = str(Path(fastmlp.__file__).parent.parent)


def fastmlp_cli(*argv, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m fastmlp ARGV`` in ``cwd``, importing this fastmlp."""
    path = os.pathsep.join([PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, argv)], cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=path), capture_output=True,
                          text=True, timeout=120)


def succeeds(*argv, cwd: Path) -> str:
    result = fastmlp_cli(*argv, cwd=cwd)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout


def test_a_session(tmp_path):
    write_flowers(tmp_path / "flowers.csv")
    out = succeeds("train", "flowers.csv", *TRAIN_FLOWERS, "--output", "flowers.fmlp",
                   "--verbose", cwd=tmp_path)
    assert "epoch 30/30" in out and out.endswith("\nsaved flowers.fmlp\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowers.csv", "flowers.fmlp"]
    model = fastmlp.load(tmp_path / "flowers.fmlp")
    assert model.metadata["fastmlp.cli"]["labels"] == list(SPECIES)
    X, y = flowers()

    scores = json.loads(succeeds("evaluate", "flowers.fmlp", "flowers.csv", "--json",
                                 cwd=tmp_path))
    assert scores == {**model.evaluate(X, codes(y)), "samples": len(X)}

    succeeds("predict", "flowers.fmlp", "flowers.csv", "--output", "preds.csv", cwd=tmp_path)
    header, rows = read_csv(tmp_path / "preds.csv")
    assert header == ["species"] and len(rows) == len(X)
    assert [row[0] for row in rows] == list(SPECIES[model.predict(X)])

    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    out = succeeds("search", "flowers.csv", "--target", "species", "--space", "space.json",
                   "--trials", "2", "--rounds", "2", "--epochs", "1", "--jobs", "1",
                   "--output", "best.json", cwd=tmp_path)
    assert "random search: 4 trials in 2 rounds" in out
    assert json.loads((tmp_path / "best.json").read_text())["optimizer"] == "adam"

    out = succeeds("diagnose", "flowers.fmlp", "flowers.csv", cwd=tmp_path)
    assert out.startswith("train/dev: 120/30 samples (--dev 0.2 --seed 0)\ndiagnosis: ")
    assert "avoidable bias" in out and "variance" in out


@pytest.mark.parametrize("argv, status, message", [
    (["train", "absent.csv", "--target", "species", "--output", "m.fmlp"], 1,
     "fastmlp train: error: absent.csv: No such file or directory"),
    (["train", "flowers.csv", "--target", "species", "--epochs", "-3", "--output", "m.fmlp"],
     2, "fastmlp train: error: argument --epochs: must be an integer from 1 to 1,000,000; "
     "got '-3'"),
    (["train", "flowers.csv", "--target", "kind", "--output", "m.fmlp"], 1,
     "fastmlp train: error: flowers.csv has no column 'kind'; its columns are ['sepal', "
     "'petal', 'stem', 'leaf', 'species']"),
    (["evaluate", "flowers.csv", "flowers.csv", "--target", "species"], 1,
     "fastmlp evaluate: error: cannot load 'flowers.csv': bad magic"),
    (["predict", "model.fmlp", "wide.npz", "--output", "p.csv"], 1,
     "fastmlp predict: error: wide.npz has 5 feature columns, but the model takes 4")])
def test_errors_in_a_fresh_process(argv, status, message, tmp_path):
    write_flowers(tmp_path / "flowers.csv", n=20)
    fastmlp.Sequential([fastmlp.Dense(3)], input_dim=4, seed=0).save(tmp_path / "model.fmlp")
    np.savez(tmp_path / "wide.npz", X=np.zeros((3, 5)))
    result = fastmlp_cli(*argv, cwd=tmp_path)
    assert result.returncode == status and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.fmlp").exists() and not (tmp_path / "p.csv").exists()
