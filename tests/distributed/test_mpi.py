"""Data-parallel training on MPI (fastmlp.distributed, docs/distributed.md), run for real:
each test launches ``mpiexec -n P`` (2, 3 or 4 processes; more than this machine's cores
is fine for correctness) on tests/distributed/mpi_worker.py and reads rank 0's report.
mpi4py and MPICH come with the test extra."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is in the test extra (pip install '.[test]')")

from fastmlp.distributed import shard_bounds  # noqa: E402

WORKER = pathlib.Path(__file__).with_name("mpi_worker.py")
# float64 runs of 30 steps: each step's gradient differs from one process's by at most
# 2 gamma_B sum|terms| (about 7e-15 relative at B = 32, test_one_step_gradient_bound);
# the tolerance leaves 5 orders of magnitude for what the steps make of it
RUN_RTOL = 1e-9


def mpiexec() -> str:
    beside = pathlib.Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    assert found, "mpiexec not found: MPICH comes with the test extra (pip install '.[test]')"
    return found


def launch(ranks: int, case: str, out: pathlib.Path, *args: str, timeout: float = 240):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    done = subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, str(WORKER), case,
                           str(out), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    done.seconds = time.monotonic() - started
    return done


def run(ranks: int, case: str, out: pathlib.Path, *args: str) -> dict:
    done = launch(ranks, case, out, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    name = case if not args else f"{case}-{args[0]}"
    return json.loads((out / f"{name}.json").read_text())


@pytest.mark.parametrize("ranks", [2, 4])
def test_fit_equals_one_process_on_the_same_global_batches(tmp_path, ranks):
    """Every model kind (BatchNorm's statistics reduced across ranks, Dropout's masks by
    global row, the L2 penalty added once, sample weights' sums global; a last batch of
    one row, so that most shards are empty): the ranks end
    identical, and equal to one process's fit within RUN_RTOL; the accuracy (counts)
    is the same."""
    result = run(ranks, "fit", tmp_path)
    assert len(result) == 9
    for name, r in result.items():
        assert r["same_on_every_rank"], name
        assert r["params"] <= RUN_RTOL and r["state"] <= RUN_RTOL and r["loss"] <= RUN_RTOL, \
            (name, r)
        assert r["accuracy"], name
        assert r["training_step"][0] == r["training_step"][1] == r["steps"], name


@pytest.mark.parametrize("precision", [None, "bfloat16"])
def test_one_step_gradient_bound(tmp_path, precision):
    """float32, 257 rows over 3 ranks: the summed gradient differs from one process's
    by at most 2 gamma_B sum|terms| per element (docs/distributed.md), and does differ
    somewhere (the sums run in another order). A precision="bfloat16" model too: its
    shards round the same operands, so the same bound holds on the rounded terms."""
    result = run(3, "gradient", tmp_path, *([precision] if precision else []))
    assert result["same_on_every_rank"]
    assert result["worst"] <= 1.0, result
    assert result["differ"] > 0, "the test must see the rounding it bounds"


def test_checkpoints_by_rank_0_resume_on_another_rank_count(tmp_path):
    """2 ranks write checkpoints (rank 0 only) until Ctrl-C stops them in epoch 3; the
    newest is damaged; 3 ranks resume from the one before (rank 0 alone renames the
    damaged one) and end as one process's 4 epochs."""
    from fastmlp.checkpoint import list_checkpoints
    first = run(2, "checkpoint", tmp_path, "start")
    assert first["writes"][0] > 0 and first["writes"][1:] == [0]
    assert first["same_on_every_rank"] and len(first["history"]) == 2
    files = list_checkpoints(tmp_path / "checkpoints")
    assert len(files) == 2
    newest = pathlib.Path(files[-1][1])
    newest.write_bytes(newest.read_bytes()[:100])
    resumed = run(3, "checkpoint", tmp_path, "resume")
    assert (tmp_path / "checkpoints" / (newest.name + ".corrupt")).exists()
    assert resumed["writes"][0] > 0 and resumed["writes"][1:] == [0, 0]
    assert resumed["same_on_every_rank"]
    assert resumed["params"] <= RUN_RTOL, resumed
    np.testing.assert_allclose(resumed["history"], resumed["ref_history"], rtol=RUN_RTOL)


@pytest.mark.parametrize("case, ranks, says, within", [
    # rank 1 is killed: the launcher ends every rank at once and says why
    ("die", 3, ("BAD TERMINATION", "signal 9"), 30),
    # rank 1 sleeps for 600 s: rank 0's exchange times out after 3 s with
    # DistributedError, and the job is aborted (no wait for the sleeper)
    ("hang", 2, ("DistributedError", "did not complete within 3 s"), 60),
])
def test_a_lost_rank_ends_the_job_saying_why(tmp_path, case, ranks, says, within):
    done = launch(ranks, case, tmp_path, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert all(words in output for words in says), output
    assert done.seconds < within


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    stopped = run(2, "interrupt", tmp_path)["stopped"]
    assert stopped[0] == stopped[1] and "interrupted (Ctrl-C)" in stopped[0], stopped


def test_ranks_that_differ_are_refused_on_every_rank(tmp_path):
    messages = run(2, "mismatch", tmp_path)["messages"]
    for message in messages:
        assert "rank(s) [1] differ from rank 0 in the model's weights and state" in message


def test_one_rank_equals_fit_bit_for_bit(tmp_path):
    """mpiexec -n 1: the shard is the whole batch, the same kernels in the same order
    (float32, Dropout and BatchNorm included) as fit's per-op path."""
    assert run(1, "one_rank", tmp_path)["equal"]


def test_arguments_are_checked(tmp_path):
    messages = run(1, "arguments", tmp_path)["messages"]
    assert "distributed must be None or fastmlp.distributed.MPI()" in messages[0]
    assert "a distributed fit takes arrays" in messages[1]
    assert "timeout" in messages[2]


@pytest.mark.parametrize("ranks", [2, 4])
def test_fused_shards_equal_the_per_op_path_bit_for_bit(tmp_path, ranks):
    result = run(ranks, "fused", tmp_path)
    assert result["fused_calls"] > 0, "the fused path was never taken"
    assert all(result["equal"].values()), result


@pytest.mark.parametrize("ranks", [2, 3])
def test_multitask_equals_one_process(tmp_path, ranks):
    """Both heads' loss sums and logits exchanged: the History (every head's loss and
    r2, the classification head's accuracy counts exactly) and the weights agree."""
    result = run(ranks, "multitask", tmp_path)
    assert result["same_on_every_rank"] and result["accuracy"]
    assert result["params"] <= RUN_RTOL, result
    assert set(result["history"]) >= {"loss", "class_loss", "value_loss", "value_r2"}
    assert max(result["history"].values()) <= RUN_RTOL, result


# ------------------------------------------------ in this process (MPI never initialized:
# a test process that forks must not carry an initialized MPI into its children)
def test_shards_cover_the_batch_in_rank_order():
    for rows in (1, 2, 7, 32, 33):
        for size in (1, 2, 3, 4):
            bounds = [shard_bounds(rows, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1
    assert "mpi4py.MPI" not in sys.modules


def test_command_line_train_distributed(tmp_path):
    """fastmlp train --distributed on 2 ranks: one set of lines and one model file (rank
    0's), equal to the one-process command's model within RUN_RTOL (float64)."""
    iris = pathlib.Path(__file__).resolve().parents[2] / "examples" / "iris.csv"
    command = [sys.executable, "-m", "fastmlp", "train", str(iris), "--target", "species",
               "--epochs", "5", "--batch-size", "16", "--dtype", "float64", "--dropout", "0.1"]
    done = subprocess.run([mpiexec(), "-n", "2", *command, "--output",
                           str(tmp_path / "dp.fmlp"), "--distributed"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("saved ") == 1 and done.stdout.count("model: ") == 1, done.stdout
    single = subprocess.run([*command, "--output", str(tmp_path / "one.fmlp")],
                            capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr
    import fastmlp
    dp, one = fastmlp.load(tmp_path / "dp.fmlp"), fastmlp.load(tmp_path / "one.fmlp")
    difference = np.abs(dp.flat_params - one.flat_params).max()
    assert difference <= RUN_RTOL * np.abs(one.flat_params).max()
    assert dp.metadata == one.metadata
    refused = subprocess.run([*command, "--output", str(tmp_path / "x.fmlp"), "--distributed",
                              "--dev-data", str(tmp_path / "dev.parquet")],
                             capture_output=True, text=True, timeout=240)
    assert refused.returncode != 0 and "--distributed trains on a CSV or NPZ" in refused.stderr
