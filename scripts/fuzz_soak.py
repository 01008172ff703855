"""Soak run of the bad-input fuzzing: the strategies of tests/fuzz/test_bad_inputs.py
(every public entry point, damaged model files, command lines) with a much larger budget
than CI's, and random (not derandomized) exploration.

    python scripts/fuzz_soak.py --examples 100000 [--seed N] [--only fit,cli]

The budget is shared between the entry points in proportion to their CI budgets. Prints
per entry point the inputs tried and the time taken, then the totals; exits 1 on the
first failing input (hypothesis prints it, shrunk), 0 otherwise. Warnings are errors, as
in the test suite.
"""
from __future__ import annotations

import argparse
import pathlib
import random
import sys
import tempfile
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
for folder in ("tests", "tests/kernels", "tests/fuzz"):
    sys.path.insert(0, str(ROOT / folder))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

import test_bad_inputs as fuzz  # noqa: E402


def entries(folder: pathlib.Path) -> dict:
    """name: (strategy, check, CI budget): the CASES, damaged files and command lines."""
    table = {name: (strategy, fuzz.run_case, budget) for name, (strategy, budget) in fuzz.CASES.items()}
    table["load"] = (fuzz.mutated_files(), lambda data: fuzz.check_damaged_file(data, folder), 250)
    table["cli"] = (fuzz.cli_argv(fuzz.cli_files(folder)), fuzz.check_cli, 400)
    return table


def soak(strategy, check, examples: int, run_seed: int) -> None:
    test = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck))(given(strategy)(check))
    seed(run_seed)(test)()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="total inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed)")
    parser.add_argument("--only", default=None, help="comma-separated entry points")
    args = parser.parse_args(argv)
    run_seed = random.randrange(2**32) if args.seed is None else args.seed
    warnings.simplefilter("error")
    with tempfile.TemporaryDirectory() as name:
        table = entries(pathlib.Path(name))
        if args.only:
            table = {k: v for k, v in table.items() if k in args.only.split(",")}
        scale = args.examples / sum(budget for _, _, budget in table.values())
        print(f"seed {run_seed}; {args.examples} inputs over {len(table)} entry points", flush=True)
        start = time.perf_counter()
        for entry, (strategy, check, budget) in table.items():
            before, t0 = sum(fuzz.FUZZ_EXAMPLES.values()), time.perf_counter()
            soak(strategy, check, max(1, round(budget * scale)), run_seed)
            tried = sum(fuzz.FUZZ_EXAMPLES.values()) - before
            print(f"{entry:24s} {tried:8d} inputs {time.perf_counter() - t0:8.1f} s", flush=True)
    total = sum(fuzz.FUZZ_EXAMPLES.values())
    print(f"total {total} inputs in {time.perf_counter() - start:.1f} s, no failure")
    print("by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(fuzz.FUZZ_EXAMPLES.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
