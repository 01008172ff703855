"""fastmlp.tools.search's executors: a local process pool, a dask.distributed Client and a
scheduler address give the serial executor's results bit for bit, the trials really run in
the workers' processes with one native thread, and a worker's error reaches the caller.

One LocalCluster (2 worker processes, 1 thread each) serves the whole module: starting
one costs a few seconds."""
import logging
import os

import pytest
from dask.distributed import Client, LocalCluster

import fastmlp
from fastmlp import Dense, Sequential
from fastmlp.tools.search import Choice, Uniform, random_search

from .test_search import DEV, SGD_SPACE, TRAIN, outcomes, search

RUN = {"trials": 6, "rounds": 2, "epochs": 5, "seed": 3}


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def serial():
    return search(**RUN)


def test_local_processes_match_serial_and_ran_in_the_pool(serial):
    pooled = search(executor=None, n_jobs=2, **RUN)
    assert outcomes(pooled) == outcomes(serial)
    pids = {t.pid for t in pooled.trials}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_dask_client_matches_serial_and_ran_on_the_workers(client, serial):
    result = search(executor=client, **RUN)
    assert outcomes(result) == outcomes(serial)
    worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert {t.pid for t in result.trials} <= worker_pids


def test_scheduler_address_matches_serial(client, serial):
    result = search(executor=client.scheduler.address, **RUN)
    assert outcomes(result) == outcomes(serial)
    assert {t.pid for t in result.trials} <= set(client.run(os.getpid).values())


def build_checking_threads(params, seed):
    """Fails unless the trial runs on one native thread; a module-level function, so the
    workers can import it."""
    if fastmlp.get_num_threads() != 1:
        raise RuntimeError(f"a trial ran with {fastmlp.get_num_threads()} threads")
    model = Sequential([Dense(params["width"], "relu"), Dense(3)], input_dim=10, seed=seed)
    return model, {"learning_rate": 0.5, "optimizer": "sgd"}


def test_trials_run_on_one_thread_everywhere(client):
    space = {"width": Choice([4, 8])}
    with fastmlp.threads(2):
        serial = search(space, build=build_checking_threads, trials=2, rounds=1, epochs=1)
    on_dask = search(space, build=build_checking_threads, trials=2, rounds=1, epochs=1,
                     executor=client)
    assert outcomes(on_dask) == outcomes(serial)


def test_an_error_in_a_worker_reaches_the_caller(client):
    with pytest.raises(ValueError, match="rate must satisfy 0 <= rate < 1"):
        random_search({**SGD_SPACE, "dropout": Uniform(1.0, 2.0)}, TRAIN, DEV, trials=2,
                      epochs=1, executor=client)
