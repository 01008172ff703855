"""The test suite's one tolerance table: TOLERANCES[kind][dtype] is the largest relative
error a test of that kind accepts (helpers.relative_error: ||actual - expected|| /
||expected||, or the gradient-check difference ||a - b|| / (||a|| + ||b||)). Every entry
is below 1, so an all-zeros result never passes (tests/reference/test_helpers.py)."""

TOLERANCES = {
    # NumPy oracle vs centered finite differences, eps 1e-7, float64 (docs/conventions.md: below
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
    # Two algebraically equal forms of one iteration run side by side for 50 steps
    # (Nesterov's rewritten update vs the notes' look-ahead form): roundings differ at
    # every step and accumulate, damped by the contraction of the iteration.
    "equivalent_forms": {"float64": 1e-12},
    # Layer kernels (tests/kernels/test_layers_kernels.py) against long double, measured
    # maxima in the comments. Batch normalization's outputs and gradients, each array:
    # rows summed in ascending order in the dtype (up to 257 rows), columns offset by up
    # to 17 standard deviations, so the mean's rounding (~eps * offset / sd) dominates.
    "batchnorm": {"float32": 1e-5, "float64": 2e-14},                # 3.1e-6 / 4.7e-15
    # Weighted losses vs the long-double loss row by row (value and gradient).
    "weighted_loss": {"float32": 1e-6, "float64": 2e-15},            # 1.9e-7 / 4.0e-16
    # One sum of row losses in double in two orders (a row of weight 2 vs the row given
    # twice): at most ~rows * 2^-53 relative (71 rows).
    "reordered_double_sum": {"float32": 1e-14, "float64": 1e-14},    # 0 / 1.2e-16
    # l1 sum|w| + l2/2 sum w^2: Sum16 in the dtype within blocks of 16384, blocks in
    # double. Each of the 16 lanes adds up to 1024 positive terms in order, so the bound
    # is (1024 + 4) * 2^-24 = 6.1e-5 relative (float32); measured 8.7e-8 on random
    # weights and 5.5e-6 where one weight dominates a block (found by the fuzz tests).
    # float64: the same count times 2^-53, 1.1e-13; measured 2.2e-16.
    "regularize_penalty": {"float32": 6.1e-5, "float64": 1.2e-13},   # 5.5e-6 / 2.2e-16
}
