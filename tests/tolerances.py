"""The test suite's one tolerance table: TOLERANCES[kind][dtype] is the largest relative
error a test of that kind accepts (helpers.relative_error: ||actual - expected|| /
||expected||, or the gradient-check difference ||a - b|| / (||a|| + ||b||)). Every entry
is below 1, so an all-zeros result never passes (tests/reference/test_helpers.py)."""

TOLERANCES = {
    # NumPy oracle vs centered finite differences, eps 1e-7, float64 (DESIGN.md §4: below
    # 1e-7 is good).
    "finite_difference": {"float64": 1e-7},
    # Hand-worked numbers written as decimal literals: a few roundings of each.
    "hand_worked": {"float64": 1e-15},
    # Literal function values (math module, exact derivations) against the oracle.
    "literal": {"float32": 1e-6, "float64": 1e-14},
    # The same computation along two code paths of one backend (e.g. a fit vs a replay of
    # its batches, chunked vs whole inference): only BLAS blocking may differ.
    "same_math": {"float32": 1e-6, "float64": 1e-13},
    # Sample statistics of 10^6 initializer draws vs their formula (sd relative error;
    # |mean| / sd). The standard errors are about 7e-4 and 1e-3: this is 5 of them.
    "sampling": {"float32": 5e-3, "float64": 5e-3},
    # native vs NumPy backend: all parameters (and gradients) after one SGD step from
    # identical state, and after five epochs of training.
    "backend_one_step": {"float32": 1e-6, "float64": 1e-12},
    "backend_five_epochs": {"float64": 1e-9},
}
