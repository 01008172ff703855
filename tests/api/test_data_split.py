"""train_dev_test_split, split_sizes, split_indices and stratified_counts (docs/conventions.md)."""
import tracemalloc

import numpy as np
import pytest

from fastmlp.tools.data import (Split, split_indices, split_sizes, stratified_counts,
                          train_dev_test_split)


# --- sizes: pure arithmetic, from 100 to 2,000,000 samples ------------------------------

@pytest.mark.parametrize("n, expected", [
    (1, (1, 0, 0)),                 # 0.2 rounds to 0: everything trains
    (3, (1, 1, 1)),                 # 0.6 rounds up to 1
    (7, (5, 1, 1)),                 # 1.4 rounds down
    (100, (60, 20, 20)),
    (1_000, (600, 200, 200)),
    (50_000, (30_000, 10_000, 10_000)),   # 20 % is exactly the cap
    (50_003, (30_003, 10_000, 10_000)),   # the cap wins from here on
    (1_000_000, (980_000, 10_000, 10_000)),
    (2_000_000, (1_980_000, 10_000, 10_000)),
])
def test_default_sizes_are_min_of_20_percent_and_10000(n, expected):
    assert split_sizes(n) == expected


@pytest.mark.parametrize("n, percent", [(100, (60, 20, 20)), (25_000, (60, 20, 20)),
                                        (1_000_000, (98, 1, 1))])
def test_default_proportions_follow_the_notes(n, percent):
    assert tuple(100 * part / n for part in split_sizes(n)) == percent


@pytest.mark.parametrize("dev, test, expected", [
    (0.1, 0.25, (650, 100, 250)),          # fractions of 1000
    (5, 0, (995, 5, 0)),                   # counts; 0 means no such part
    (0.5, 499, (1, 500, 499)),             # mixed; the train part may be a single sample
    (np.int64(10), np.float64(0.3), (690, 10, 300)),   # NumPy scalars work
    (0.0125, 0.0375, (949, 13, 38)),       # 12.5 and 37.5 round half up
])
def test_fractions_and_counts(dev, test, expected):
    assert split_sizes(1000, dev, test) == expected


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(dev=-1), ValueError, r"dev as a count of samples must be in 0\.\.100 .*got -1"),
    (dict(test=101), ValueError, r"test as a count of samples must be in 0\.\.100 .*got 101"),
    (dict(dev=0.0), ValueError, r"dev as a fraction must be in \(0, 1\); got 0\.0"),
    (dict(test=1.0), ValueError, r"test as a fraction must be in \(0, 1\)"),
    (dict(dev=-0.2), ValueError, r"dev as a fraction must be in \(0, 1\)"),
    (dict(dev=float("nan")), ValueError, r"dev as a fraction must be in \(0, 1\); got nan"),
    (dict(dev=True), TypeError, r"dev must be None, a fraction in \(0, 1\) or a count of "
                                r"samples; got True of type bool"),
    (dict(test="20%"), TypeError, r"test must be None, a fraction .* got '20%' of type str"),
    (dict(dev=0.5, test=0.5), ValueError,
     r"dev=0\.5 \(50 samples\) and test=0\.5 \(50 samples\) leave 0 of the 100 samples for "
     r"training; the train part needs at least one"),
    (dict(dev=60, test=0.5), ValueError, r"leave -10 of the 100 samples"),
])
def test_invalid_sizes(kwargs, error, message):
    with pytest.raises(error, match=message):
        split_sizes(100, **kwargs)


def test_invalid_sample_count():
    with pytest.raises(ValueError, match=r"n must be an integer >= 1; got 0"):
        split_sizes(0)


# --- the split itself --------------------------------------------------------------------

def rows_and_labels(n=50, classes=3):
    X = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    return X, (np.arange(n) % classes).astype(np.int64)


def test_parts_partition_the_samples_and_keep_pairs_together():
    X, y = rows_and_labels(50)
    split = train_dev_test_split(X, y, seed=3)
    assert isinstance(split, Split) and split.dev is split[1]
    (X_train, y_train), (X_dev, y_dev), (X_test, y_test) = split
    assert (len(X_train), len(X_dev), len(X_test)) == (30, 10, 10)
    rows = np.concatenate([X_train, X_dev, X_test])
    np.testing.assert_array_equal(np.sort(rows[:, 0]), X[:, 0])       # each sample once
    for X_part, y_part in split:
        np.testing.assert_array_equal(y_part, (X_part[:, 0] // 2) % 3)   # rows stay paired
        assert X_part.dtype == np.float32 and y_part.dtype == np.int64
    assert not np.array_equal(X_train, X[:30])                          # shuffled


def test_seed_reproduces_and_different_seeds_differ():
    X, y = rows_and_labels(50)
    first, again = (train_dev_test_split(X, y, seed=7) for _ in range(2))
    other = train_dev_test_split(X, y, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(first.train[0], other.train[0])
    unseeded = train_dev_test_split(X, y)                    # fresh entropy: still a split
    assert [len(part[0]) for part in unseeded] == [30, 10, 10]


def test_lists_and_multi_dimensional_inputs():
    split = train_dev_test_split([[i] for i in range(10)], list(range(10)), dev=2, test=0.3,
                                 seed=0)
    assert [np.shape(part[0]) for part in split] == [(5, 1), (2, 1), (3, 1)]
    for X_part, y_part in split:               # lists stay lists, pairs stay together
        assert type(X_part) is list and type(y_part) is list
        assert X_part == [[label] for label in y_part]
    rows = train_dev_test_split(tuple(range(10)), np.arange(10), seed=0).train
    assert type(rows[0]) is tuple and isinstance(rows[1], np.ndarray)
    assert list(rows[0]) == rows[1].tolist()
    images = np.zeros((10, 4, 4))
    one_hot = np.eye(2)[np.arange(10) % 2]
    assert train_dev_test_split(images, one_hot, seed=0).test[0].shape == (2, 4, 4)


def test_sizes_reach_the_split():
    X, y = rows_and_labels(20)
    with pytest.raises(ValueError, match=r"leave 0 of the 20 samples"):
        train_dev_test_split(X, y, dev=10, test=10)


@pytest.mark.parametrize("X, y, kwargs, error, message", [
    (np.zeros((5, 2)), np.zeros(4), {}, ValueError,
     r"X and y must have the same number of samples; got 5 and 4"),
    (np.zeros((0, 2)), np.zeros(0), {}, ValueError, r"X is empty \(shape \(0, 2\)\)"),
    (np.float64(1.0), np.zeros(1), {}, ValueError, r"X must be an array of samples .* scalar"),
    (np.zeros((4, 2)), np.zeros((4, 2)), dict(stratify=True), ValueError,
     r"stratify=True needs y as 1-D class labels, shape \(4,\); got shape \(4, 2\)"),
    (np.zeros((4, 2)), np.zeros(4), dict(stratify=1), TypeError,
     r"stratify must be True or False; got 1"),
    (np.zeros((4, 2)), np.zeros(4), dict(seed=-1), ValueError, r"seed must be an integer >= 0"),
])
def test_invalid_inputs(X, y, kwargs, error, message):
    with pytest.raises(error, match=message):
        train_dev_test_split(X, y, **kwargs)


def test_split_indices_checks_labels():
    with pytest.raises(ValueError, match=r"labels must be 1-D class labels, shape \(6,\); "
                                         r"got shape \(5,\)"):
        split_indices(6, labels=np.zeros(5))


# --- stratification ----------------------------------------------------------------------

def test_stratified_parts_keep_class_proportions_exactly():
    y = np.repeat(np.array(["cat", "dog", "eel"]), [500, 300, 200])
    X = np.arange(1000)[:, None]
    split = train_dev_test_split(X, y, stratify=True, seed=0)
    for (X_part, y_part), share in zip(split, (0.6, 0.2, 0.2)):
        labels, counts = np.unique(y_part, return_counts=True)
        assert labels.tolist() == ["cat", "dog", "eel"]
        assert counts.tolist() == [500 * share, 300 * share, 200 * share]
        np.testing.assert_array_equal(y[X_part[:, 0]], y_part)
    assert len(set(split.train[1][:20])) > 1            # classes are mixed, not in blocks


def test_largest_remainder_keeps_sizes_exact_and_quotas_rounded():
    """Random class counts: every part has its exact size, every class all its samples,
    and train and dev each hold floor or ceil of every class's quota."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        class_counts = rng.integers(1, 400, size=rng.integers(2, 8))
        n = int(class_counts.sum())
        sizes = split_sizes(n, float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.05, 0.4)))
        allocation = stratified_counts(class_counts, sizes)
        assert allocation.sum(axis=0).tolist() == list(sizes)
        assert allocation.sum(axis=1).tolist() == class_counts.tolist()
        for part in (0, 1):
            quota = class_counts * sizes[part] / n
            assert np.all(allocation[:, part] >= np.floor(quota - 1e-9))
            assert np.all(allocation[:, part] <= np.ceil(quota + 1e-9))


def test_hand_worked_allocation_with_a_rare_class():
    """100 samples 60/20/20, classes of 97, 2 and 1. Train quotas 58.2, 1.2, 0.6: floors
    58 + 1 + 0, the one left goes to the largest remainder (0.6, the singleton). Dev quotas
    19.4, 0.4, 0.2: floors 19, the tie at 0.4 goes to the lower class. Test: the rest."""
    np.testing.assert_array_equal(stratified_counts([97, 2, 1], (60, 20, 20)),
                                  [[58, 20, 19], [1, 0, 1], [1, 0, 0]])


def test_classes_too_small_for_every_part_still_split():
    y = np.array([0] * 12 + [1, 2, 2])
    split = train_dev_test_split(np.arange(15)[:, None], y, stratify=True, seed=1)
    assert [len(part[1]) for part in split] == [9, 3, 3]
    assert 1 in split.train[1]                           # the singleton trains
    assert sorted(np.concatenate([part[0][:, 0] for part in split])) == list(range(15))


def test_stratified_counts_checks_the_total():
    with pytest.raises(ValueError, match=r"sizes \(5, 1, 1\) must add up to the 8 samples"):
        stratified_counts([4, 4], (5, 1, 1))


# --- two million samples -----------------------------------------------------------------

N_LARGE = 2_000_000


def test_two_million_samples_copy_each_row_once():
    """X's rows are copied once, into their parts, next to one index permutation."""
    X = np.arange(N_LARGE, dtype=np.int32)[:, None]
    y = np.arange(N_LARGE, dtype=np.int32)
    tracemalloc.start()
    try:
        split = train_dev_test_split(X, y, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    permutation = N_LARGE * np.dtype(np.intp).itemsize
    assert peak <= X.nbytes + y.nbytes + permutation + 2**20
    assert [len(part[0]) for part in split] == [1_980_000, 10_000, 10_000]
    rows = np.concatenate([part[0][:, 0] for part in split])
    assert np.array_equal(np.sort(rows), y)
    assert all(np.array_equal(part[0][:, 0], part[1]) for part in split)


def test_two_million_broadcast_rows_and_stratified_labels():
    """A read-only broadcast X (no memory of its own) splits; ten classes of 200,000
    split exactly 99/0.5/0.5 each."""
    X = np.broadcast_to(np.arange(N_LARGE, dtype=np.int32)[:, None], (N_LARGE, 2))
    y = np.arange(N_LARGE) % 10
    split = train_dev_test_split(X, y, stratify=True, seed=0)
    for (X_part, y_part), per_class in zip(split, (198_000, 1_000, 1_000)):
        assert np.bincount(y_part, minlength=10).tolist() == [per_class] * 10
        np.testing.assert_array_equal(X_part[:, 1] % 10, y_part)


def test_pandas_parts_stay_pandas_with_their_index():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(10.0), "b": pd.array(np.arange(10), dtype="Int64"),
                          "name": [f"n{i}" for i in range(10)]},
                         index=[f"r{i}" for i in range(10)])
    labels = pd.Series(["x", "y"] * 5, index=frame.index, name="label")
    split = train_dev_test_split(frame, labels, dev=2, test=2, stratify=True, seed=0)
    assert [len(X_part) for X_part, _ in split] == [6, 2, 2]
    for X_part, y_part in split:
        assert isinstance(X_part, pd.DataFrame) and isinstance(y_part, pd.Series)
        assert list(X_part.dtypes) == list(frame.dtypes) and y_part.name == "label"
        assert list(X_part.index) == list(y_part.index)          # rows stay paired
        pd.testing.assert_frame_equal(X_part, frame.loc[X_part.index])
        assert (y_part.value_counts() == len(y_part) // 2).all()  # stratified
    same = train_dev_test_split(frame.to_numpy(), labels.to_numpy(), dev=2, test=2,
                                stratify=True, seed=0)
    for (X_part, _), (array_part, _) in zip(split, same):   # the rows an array split takes
        assert (X_part.to_numpy() == array_part).all()
