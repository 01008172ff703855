"""fastmlp.sources: the chunks each source kind yields (sizes, contents and order, as
random-access chunks in a given order or an iterator's own), their argument errors,
as_source's dispatch of fit's X and y, and fit over each kind: without shuffle the
weights equal the in-memory fit of the same rows bit for bit; shuffled, it learns.
Then predict, evaluate and fit's validation_data over sources, against the arrays."""
import copy
import gc
import pickle
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Sequential
from fastmlp.io.sources import Chunks, Csv, Dask, Npy, Parquet, Source, _NpyFile, as_source

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

N = 100
FEATURES = [f"f{i}" for i in range(5)]


def data(n=N, seed=0):
    """Features (n, 5) float32, labels 0..2 learnable from them, weights in [0.5, 2]."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    y = ((X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.3)).astype(np.int64)
    w = rng.uniform(0.5, 2.0, size=n)
    return X, y, w


def model(dtype="float32"):
    return Sequential([Dense(8, "relu"), Dense(3)], input_dim=5,
                      loss="softmax_cross_entropy", seed=0, dtype=dtype)


def collect(source, order=None):
    """The chunks' row counts and their X, y and w concatenated (w None when none has)."""
    chunks = list(source.chunks(order))
    assert chunks, "the source yielded no chunks"
    ws = [w for _, _, w in chunks]
    assert all(w is None for w in ws) or all(w is not None for w in ws)
    for X, y, w in chunks:
        assert len(y) == len(X) and (w is None or len(w) == len(X))
    return ([len(X) for X, _, _ in chunks],
            np.concatenate([np.asarray(X) for X, _, _ in chunks]),
            np.concatenate([np.asarray(y) for _, y, _ in chunks]),
            None if ws[0] is None else np.concatenate([np.asarray(w) for w in ws]))


def frame(X, y, w):
    df = pd.DataFrame(X, columns=FEATURES)
    df["target"] = y
    df["w"] = w
    return df


def write_parquet_dir(root, X, y, w=None, extra=None):
    """X, y (and w, extra columns) over three files of 2+ row groups each, the third in a
    subdirectory: rows 0-39 in groups of 16, 40-69 of 12, 70-99 of 16."""
    df = frame(X, y, w) if w is not None else frame(X, y, w=np.zeros(len(X))).drop(columns="w")
    for name, values in (extra or {}).items():
        df[name] = values
    (root / "sub").mkdir(parents=True)
    parts = [("part-0.parquet", 0, 40, 16), ("part-1.parquet", 40, 70, 12),
             ("sub/part-2.parquet", 70, 100, 16)]
    for name, start, end, group in parts:
        table = pa.Table.from_pandas(df.iloc[start:end], preserve_index=False)
        pq.write_table(table, root / name, row_group_size=group)
    return root


PARQUET_SIZES = [16, 16, 8, 12, 12, 6, 16, 14]


class ListChunks:
    """The iterator protocol over a list of chunk tuples; next() after the end without a
    reset() is an error, so a pass that did not reset first fails."""

    def __init__(self, chunks):
        self.items, self.position, self.resets = chunks, None, 0

    def reset(self):
        self.resets += 1
        self.position = 0

    def next(self):
        assert self.position is not None, "next() without reset() first"
        if self.position == len(self.items):
            self.position = None
            return None
        self.position += 1
        return self.items[self.position - 1]


def split(X, y, w=None, sizes=(30, 30, 25, 15)):
    """Chunk tuples of the given sizes, in row order."""
    bounds = np.cumsum((0,) + tuple(sizes))
    return [(X[a:b], y[a:b]) if w is None else (X[a:b], y[a:b], w[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])]


# ------------------------------------------------------------------------ Npy
@pytest.mark.parametrize("kind", ["array", "memmap", "path", "pathlib"])
def test_npy_inputs_chunk_consecutive_rows_in_order(tmp_path, kind):
    X, y, w = data()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    if kind == "array":
        args = X, y
    elif kind == "memmap":
        args = (np.load(tmp_path / "X.npy", mmap_mode="r"),
                np.load(tmp_path / "y.npy", mmap_mode="r"))
    elif kind == "path":
        args = str(tmp_path / "X.npy"), str(tmp_path / "y.npy")
    else:
        args = tmp_path / "X.npy", tmp_path / "y.npy"
    source = Npy(*args, chunk_rows=13)
    if kind in ("path", "pathlib"):              # read by rows when read, not loaded
        assert isinstance(source.X[0], _NpyFile) and isinstance(source.y[0], _NpyFile)
        assert source.X[0].shape == X.shape and source.X[0].dtype == X.dtype
    assert source.chunk_rows == 13 and source.kind == ".npy"
    assert source.chunk_sizes() == [13] * 7 + [9]
    sizes, Xs, ys, ws = collect(source)
    assert sizes == source.chunk_sizes()
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)
    assert ws is None and Xs.dtype == np.float32


def test_npy_chunks_in_a_given_order(tmp_path):
    X, y, w = data()
    source = Npy(X, y, w, chunk_rows=40)
    assert source.chunk_sizes() == [40, 40, 20]
    sizes, Xs, ys, ws = collect(source, [2, 0, 1])
    assert sizes == [20, 40, 40]
    rows = np.r_[80:100, 0:80]
    np.testing.assert_array_equal(Xs, X[rows])
    np.testing.assert_array_equal(ys, y[rows])
    np.testing.assert_array_equal(ws, w[rows])
    sizes, Xs, _, _ = collect(source, np.array([1, 1]))      # any order, numpy ints too
    assert sizes == [40, 40]
    np.testing.assert_array_equal(Xs, np.concatenate([X[40:80], X[40:80]]))


def test_npy_list_of_files_gives_their_rows_in_turn_with_weights(tmp_path):
    X, y, w = data()
    parts = [(0, 30), (30, 30), (30, 100)]                   # the middle file is empty
    paths = {"X": [], "y": [], "w": []}
    for i, (a, b) in enumerate(parts):
        for name, values in (("X", X), ("y", y), ("w", w)):
            path = tmp_path / f"{name}{i}.npy"
            np.save(path, values[a:b])
            paths[name].append(str(path))
    source = Npy(paths["X"], paths["y"], paths["w"], chunk_rows=16)
    assert source.chunk_sizes() == [16, 14, 16, 16, 16, 16, 6]   # chunks never span files
    sizes, Xs, ys, ws = collect(source)
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(ws, w)
    _, Xs, _, ws = collect(Npy(tuple(paths["X"]), tuple(paths["y"]), tuple(paths["w"]),
                               chunk_rows=16), [1, 0])
    np.testing.assert_array_equal(Xs, X[np.r_[16:30, 0:16]])
    np.testing.assert_array_equal(ws, w[np.r_[16:30, 0:16]])


def test_npy_sample_weight_array_and_empty_source():
    X, y, w = data()
    sizes, _, _, ws = collect(Npy(X, y, sample_weight=w, chunk_rows=64))
    assert sizes == [64, 36]
    np.testing.assert_array_equal(ws, w)
    empty = Npy(np.zeros((0, 5), np.float32), np.zeros(0))
    assert empty.chunk_sizes() == [] and list(empty.chunks()) == []
    with pytest.raises(ValueError, match="the .npy source holds no rows"):
        model().fit(empty, epochs=1, batch_size=16, verbose=0)


def test_npy_default_chunk_rows_is_about_8_mib_of_x():
    assert fastmlp.sources.NPY_CHUNK_BYTES == 8 << 20
    X, y, _ = data()
    assert Npy(X, y).chunk_rows == (8 << 20) // (5 * 4)                    # 419,430
    assert Npy(X.astype(np.float64), y).chunk_rows == (8 << 20) // (5 * 8)
    wide = np.zeros((3, 4, 8), np.float64)                                  # 256 bytes a row
    assert Npy(wide, np.zeros(3)).chunk_rows == (8 << 20) // 256
    huge = np.lib.stride_tricks.as_strided(np.zeros(1), (2, 10 << 20), (0, 0))
    assert Npy(huge, np.zeros(2)).chunk_rows == 1                           # never 0
    assert Npy(X, y).chunk_sizes() == [N]


@pytest.mark.parametrize("chunk_rows", [0, -3, True, 2.0, "8"])
def test_npy_chunk_rows_must_be_a_positive_integer(chunk_rows):
    X, y, _ = data()
    with pytest.raises(ValueError, match=r"chunk_rows must be an integer >= 1; got "):
        Npy(X, y, chunk_rows=chunk_rows)
    assert Npy(X, y, chunk_rows=np.int64(7)).chunk_rows == 7


def test_npy_rows_and_lists_must_match():
    X, y, w = data()
    with pytest.raises(ValueError, match=r"y\[0\] has 99 rows and X\[0\] 100: they must "
                                         r"have the same rows"):
        Npy(X, y[:99])
    with pytest.raises(ValueError, match=r"sample_weight\[1\] has 9 rows and X\[1\] 10"):
        Npy([X, X[:10]], [y, y[:10]], [w, w[:9]])
    with pytest.raises(ValueError, match=r"y has 1 files or arrays and X 2: give one per "
                                         r"file of X"):
        Npy([X, X], [y])
    with pytest.raises(ValueError, match=r"sample_weight has 3 files or arrays and X 2"):
        Npy([X, X], [y, y], [w, w, w])


@pytest.mark.parametrize("content", ["text", "empty", "npz", "missing"])
def test_npy_path_that_is_not_an_npy_file_is_a_value_error_naming_it(tmp_path, content):
    X, y, _ = data()
    bad = tmp_path / "bad.npy"
    if content == "text":
        bad.write_text("not an array\n")
    elif content == "empty":
        bad.write_bytes(b"")
    elif content == "npz":
        with open(bad, "wb") as file:
            np.savez(file, X=X)
    with pytest.raises(ValueError, match=r"X\[0\]: '.*bad\.npy' is not a readable \.npy "
                                         r"file"):
        Npy(str(bad), y)
    np.save(tmp_path / "X.npy", X)
    with pytest.raises(ValueError, match=r"y\[1\]: '.*bad\.npy' is not a readable"):
        Npy([tmp_path / "X.npy", X], [y, bad])


@pytest.mark.parametrize("value, name", [(5, "int"), (None, "NoneType"),
                                         ([[1.0, 2.0]], "list"), ({"a": 1}, "dict")])
def test_npy_non_array_is_a_type_error(value, name):
    X, y, _ = data()
    with pytest.raises(TypeError, match=r"X\[0\] must be a path of an \.npy file or an "
                                        rf"array \(a np\.memmap\); got {name}$"):
        Npy(value, y)
    with pytest.raises(TypeError, match=r"y\[0\] must be a path of an \.npy file"):
        Npy(X, object())
    with pytest.raises(TypeError, match=r"sample_weight\[0\] must be a path"):
        Npy(X, y, 3.0)
    with pytest.raises(TypeError, match=r"sample_weight\[0\] must be .*; got bytes"):
        Npy(X, y, b"w.npy")                  # bytes: not a path, not an array


# ------------------------------------------------------------------------ Parquet
def test_parquet_directory_chunks_are_row_groups_in_sorted_file_order(tmp_path):
    X, y, w = data()
    root = write_parquet_dir(tmp_path / "data", X, y, w)
    source = Parquet(root, "target", sample_weight="w")
    assert source.kind == "Parquet"
    assert source.chunk_sizes() == PARQUET_SIZES
    assert source.features == FEATURES                      # all but target and weight
    sizes, Xs, ys, ws = collect(source)
    assert sizes == PARQUET_SIZES
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(ws, w)
    assert ys.ndim == 1
    sizes, Xs, ys, ws = collect(source, [7, 3, 0])
    rows = np.r_[86:100, 40:52, 0:16]
    assert sizes == [14, 12, 16]
    np.testing.assert_array_equal(Xs, X[rows])
    np.testing.assert_array_equal(ys, y[rows])
    np.testing.assert_array_equal(ws, w[rows])


def test_parquet_directory_files_are_read_in_sorted_path_order(tmp_path):
    X, y, w = data()
    root = tmp_path / "data"
    root.mkdir()
    for i in (3, 0, 5, 1, 4, 2):            # written neither in name order nor reversed
        part = frame(X, y, w).iloc[i * 10:(i + 1) * 10]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                       root / f"p{i}.parquet", row_group_size=10)
    (root / "p9.csv").write_text("not parquet")           # other files are left alone
    source = Parquet(root, "target", sample_weight="w")
    assert source.chunk_sizes() == [10] * 6
    _, Xs, ys, ws = collect(source)
    np.testing.assert_array_equal(Xs, X[:60])
    np.testing.assert_array_equal(ys, y[:60])
    np.testing.assert_array_equal(ws, w[:60])


def test_parquet_default_features_include_an_unnamed_weight_column(tmp_path):
    X, y, w = data()
    root = write_parquet_dir(tmp_path / "data", X, y, w)
    source = Parquet(str(root), "target")
    assert source.features == FEATURES + ["w"]
    _, Xs, ys, ws = collect(source)
    np.testing.assert_array_equal(Xs, np.column_stack([X, w]))
    assert ws is None


def test_parquet_explicit_features_and_a_two_column_target(tmp_path):
    X, y, w = data()
    r = np.column_stack([X[:, 0] * 2, X[:, 1] - 1])
    root = write_parquet_dir(tmp_path / "data", X, y, w, extra={"r1": r[:, 0], "r2": r[:, 1]})
    source = Parquet(root, ["r1", "r2"], features=["f3", "f0"], sample_weight="w")
    sizes, Xs, ys, ws = collect(source)
    assert sizes == PARQUET_SIZES
    np.testing.assert_array_equal(Xs, X[:, [3, 0]])
    assert ys.shape == (N, 2)
    np.testing.assert_array_equal(ys, r)
    np.testing.assert_array_equal(ws, w)
    everything = Parquet(root, ["r1", "r2"])
    assert everything.features == FEATURES + ["target", "w"]
    one = Parquet(root, ["target"], features="f4")          # a list of one: y 1-D
    _, Xs, ys, _ = collect(one)
    assert Xs.shape == (N, 1) and ys.shape == (N,)
    np.testing.assert_array_equal(ys, y)


def test_parquet_pieces_smaller_than_a_row_group(tmp_path):
    X, y, w = data()
    root = write_parquet_dir(tmp_path / "data", X, y, w)
    source = Parquet(root, "target", sample_weight="w", piece_rows=5)
    assert source.chunk_sizes() == PARQUET_SIZES              # chunks stay row groups
    assert [len(X) for X, _, _ in source.read(0)] == [5, 5, 5, 1]
    assert [len(X) for X, _, _ in source.read(5)] == [5, 1]
    sizes, Xs, ys, ws = collect(source)
    assert max(sizes) == 5 and sum(sizes) == N
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(ws, w)
    with pytest.raises(ValueError, match="piece_rows must be an integer >= 1; got 0"):
        Parquet(root, "target", piece_rows=0)


def test_parquet_single_files_lists_and_an_empty_file(tmp_path):
    X, y, w = data()
    root = write_parquet_dir(tmp_path / "data", X, y, w)
    empty = tmp_path / "empty.parquet"
    table = pa.Table.from_pandas(frame(X, y, w).iloc[:0], preserve_index=False)
    pq.write_table(table, empty)
    source = Parquet([root / "sub" / "part-2.parquet", empty, root / "part-0.parquet"],
                     "target", sample_weight="w")
    assert source.chunk_sizes() == [16, 14, 0, 16, 16, 8]      # a row group of no rows
    sizes, Xs, ys, ws = collect(source)
    assert 0 not in sizes and sum(sizes) == 70
    rows = np.r_[70:100, 0:40]
    np.testing.assert_array_equal(Xs, X[rows])
    np.testing.assert_array_equal(ws, w[rows])
    assert list(source.chunks([2])) == []
    single = Parquet(str(root / "part-1.parquet"), "target", sample_weight="w")
    assert single.chunk_sizes() == [12, 12, 6]


def test_parquet_errors(tmp_path):
    X, y, w = data()
    root = write_parquet_dir(tmp_path / "data", X, y, w)
    with pytest.raises(ValueError, match=r"the Parquet files have no column \['nope'\]; "
                                         r"they have \['f0', "):
        Parquet(root, "nope")
    with pytest.raises(ValueError, match=r"have no column \['weight'\]"):
        Parquet(root, "target", sample_weight="weight")
    with pytest.raises(ValueError, match=r"features names columns the Parquet files lack: "
                                         r"\['zz'\]"):
        Parquet(root, "target", features=["f0", "zz"])
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1.0], "target": [0]}), other)
    with pytest.raises(ValueError, match=r"other\.parquet' has the columns \['a', 'target'\]"
                                         r".*the files must share a schema"):
        Parquet([root, other], "target")
    mixed = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "color": ["red", "blue"], "n": [1, 2],
                             "ok": [True, False], "target": ["x", "y"]}), mixed)
    with pytest.raises(ValueError, match=r"mixed\.parquet': the columns \{'color': 'string'\} "
                                         r"do not hold numbers.*features=\[\.\.\.\]"):
        Parquet(mixed, "target")
    with pytest.raises(ValueError, match=r"the columns \{'target': 'string'\}"):
        Parquet(mixed, "n", features=["a"], sample_weight="target")
    chunk = next(Parquet(mixed, "target", features=["a", "n", "ok"]).chunks())
    np.testing.assert_array_equal(chunk[0], [[1.0, 1, 1], [2.0, 2, 0]])   # string targets
    assert chunk[1].tolist() == ["x", "y"]                                 # are labels
    (tmp_path / "nothing" / "deeper").mkdir(parents=True)
    (tmp_path / "nothing" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"nothing' holds no \.parquet files"):
        Parquet(tmp_path / "nothing", "target")
    with pytest.raises(FileNotFoundError, match=r"no such file or directory: .*absent"):
        Parquet(tmp_path / "absent", "target")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        Parquet(3, "target")


# ------------------------------------------------------------------------ Dask
def write_csv(path, X, y, w=None, **options):
    """X (float32 values written as their float64 repr, so they read back exactly), the
    target and the weights as CSV (pandas; ``options`` to to_csv, e.g. compression)."""
    df = frame(X.astype(np.float64), y, np.zeros(len(X)) if w is None else w)
    (df if w is not None else df.drop(columns="w")).to_csv(path, index=False, **options)
    return str(path)


def test_csv_chunks_are_blocks_in_file_order(tmp_path):
    X, y, w = data()
    path = write_csv(tmp_path / "data.csv", X, y, w)
    source = Csv(path, "target", sample_weight="w", block_bytes=1024)
    assert source.chunk_sizes() is None and source.features == FEATURES
    sizes, X_read, y_read, w_read = collect(source)
    assert len(sizes) > 3 and sum(sizes) == N
    assert X_read.dtype == np.float64
    np.testing.assert_array_equal(X_read, X.astype(np.float64))
    np.testing.assert_array_equal(y_read, y)
    np.testing.assert_array_equal(w_read, w)
    np.testing.assert_array_equal(np.concatenate(list(source.targets())), y)
    two = Csv([path, write_csv(tmp_path / "more.csv.gz", X[:10], y[:10], w[:10],
                               compression="gzip")], "target", features=["f3", "f0"])
    sizes, X_two, y_two, w_two = collect(two)
    np.testing.assert_array_equal(X_two, np.r_[X, X[:10]][:, [3, 0]].astype(np.float64))
    np.testing.assert_array_equal(y_two, np.r_[y, y[:10]])
    assert w_two is None
    assert all(y is None for _, y, _ in Csv(path, features=FEATURES).chunks())


def test_csv_errors(tmp_path):
    X, y, w = data()
    path = write_csv(tmp_path / "data.csv", X, y, w)
    with pytest.raises(ValueError, match=r"the CSV files have no column \['label'\]"):
        Csv(path, "label")
    with pytest.raises(ValueError, match=r"features names columns the CSV files lack: \['zz'\]"):
        Csv(path, "target", features=["f0", "zz"])
    (tmp_path / "other.csv").write_text("f0,f1,target\n1,2,0\n")
    other = str(tmp_path / "other.csv")
    with pytest.raises(ValueError, match=r"'.*other\.csv' has the columns .*: the files must "
                                         r"share a schema"):
        Csv([path, other], "target")
    with pytest.raises(FileNotFoundError, match=r"no such file: '.*missing\.csv'"):
        Csv(tmp_path / "missing.csv", "target")
    with pytest.raises(ValueError, match="block_bytes must be an integer >= 1"):
        Csv(path, "target", block_bytes=0)
    lines = (tmp_path / "data.csv").read_text().splitlines()
    lines[60] = "abc," + lines[60].split(",", 1)[1]
    (tmp_path / "text.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"'.*text\.csv': In CSV column #0: CSV conversion error "
                                         r"to double: invalid value 'abc' \(column #0 is 'f0'\)"):
        list(Csv(str(tmp_path / "text.csv"), "target", sample_weight="w").chunks())
    lines[60] = "," + lines[60].split(",", 1)[1]        # an empty cell: NaN, refused by fit
    (tmp_path / "hole.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="of the CSV source's chunk 0"):
        model().fit(Csv(str(tmp_path / "hole.csv"), "target", sample_weight="w"), epochs=1,
                    batch_size=16, verbose=0)


def test_dask_array_with_known_chunks():
    X, y, w = data()
    x = da.from_array(X, chunks=(30, 5))
    source = Dask(x, da.from_array(y, chunks=30), sample_weight=da.from_array(w, chunks=30))
    assert source.kind == "Dask" and not source.frame
    assert source.chunk_sizes() == [30, 30, 30, 10]
    sizes, Xs, ys, ws = collect(source)
    assert sizes == [30, 30, 30, 10]
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(ws, w)
    _, Xs, ys, ws = collect(source, [3, 1])
    np.testing.assert_array_equal(Xs, X[np.r_[90:100, 30:60]])
    np.testing.assert_array_equal(ys, y[np.r_[90:100, 30:60]])
    np.testing.assert_array_equal(ws, w[np.r_[90:100, 30:60]])
    plain = Dask(x, y)                                   # y an in-memory array
    _, _, ys, ws = collect(plain)
    np.testing.assert_array_equal(ys, y)
    assert ws is None


def test_dask_array_with_unknown_chunk_sizes():
    X, y, w = data()
    x, yd, wd = (da.from_array(v, chunks=25) if v.ndim == 1 else da.from_array(v, chunks=(25, 5))
                 for v in (X, y, w))
    keep = x[:, 0] > -0.3
    xf, yf, wf = x[keep], yd[keep], wd[keep]
    assert all(np.isnan(c) for c in xf.chunks[0]) and all(np.isnan(c) for c in yf.chunks[0])
    mask = X[:, 0] > -0.3
    expected = [int(mask[a:a + 25].sum()) for a in range(0, N, 25)]
    source = Dask(xf, yf, sample_weight=wf)
    assert source.chunk_sizes() == expected
    sizes, Xs, ys, ws = collect(source)
    assert sizes == expected
    np.testing.assert_array_equal(Xs, X[mask])
    np.testing.assert_array_equal(ys, y[mask])
    np.testing.assert_array_equal(ws, w[mask])
    _, Xs, _, _ = collect(Dask(x[keep], y[mask]), [1])          # y in memory
    np.testing.assert_array_equal(Xs, X[25:50][mask[25:50]])


def test_dask_array_chunked_along_columns_reads_whole_rows():
    X, y, _ = data()
    x = da.from_array(X, chunks=(40, 2))
    assert x.numblocks == (3, 3)
    source = Dask(x, da.from_array(y, chunks=40))
    assert source.chunk_sizes() == [40, 40, 20]
    for (chunk, _, _), (a, b) in zip(source.chunks(), [(0, 40), (40, 80), (80, 100)]):
        assert chunk.shape == (b - a, 5)
        np.testing.assert_array_equal(chunk, X[a:b])


def test_dask_dataframe_partitions():
    X, y, w = data()
    df = frame(X, y, w)
    ddf = dd.from_pandas(df, npartitions=3)
    source = Dask(ddf, "target", sample_weight="w")
    assert source.frame and source.features == FEATURES
    sizes = source.chunk_sizes()
    assert len(sizes) == 3 and sum(sizes) == N and min(sizes) > 0
    got, Xs, ys, ws = collect(source)
    assert got == sizes
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(ws, w)
    _, Xs, ys, _ = collect(source, [2, 0])
    rows = np.r_[sizes[0] + sizes[1]:N, 0:sizes[0]]
    np.testing.assert_array_equal(Xs, X[rows])
    np.testing.assert_array_equal(ys, y[rows])
    unweighted = Dask(ddf, "target")
    assert unweighted.features == FEATURES + ["w"]
    _, Xs, _, ws = collect(unweighted)
    np.testing.assert_array_equal(Xs, np.column_stack([X, w]))
    assert ws is None
    explicit = Dask(ddf, ["target"], features=["f2", "f4"], sample_weight="w")
    _, Xs, ys, _ = collect(explicit)
    np.testing.assert_array_equal(Xs, X[:, [2, 4]])
    assert ys.ndim == 1
    two = Dask(ddf, ["f0", "target"], features=["f1"])
    _, _, ys, _ = collect(two)
    assert ys.shape == (N, 2)
    np.testing.assert_array_equal(ys, np.column_stack([X[:, 0], y]))


def test_dask_errors():
    X, y, w = data()
    ddf = dd.from_pandas(frame(X, y, w), npartitions=3)
    with pytest.raises(ValueError, match=r"a Dask array X must be 2-D \(n_samples, "
                                         r"n_features\); got shape \(100,\)"):
        Dask(da.from_array(y, chunks=30), y)
    with pytest.raises(TypeError, match="a Dask DataFrame's y must name its target column"):
        Dask(ddf, da.from_array(y, chunks=30))
    with pytest.raises(TypeError, match="a Dask DataFrame's y must name its target column"):
        Dask(ddf, ["target", 3])
    with pytest.raises(ValueError, match=r"the DataFrame has no column \['label'\]"):
        Dask(ddf, "label")
    with pytest.raises(ValueError, match=r"the DataFrame has no column \['zz'\]"):
        Dask(ddf, "target", features=["f0", "zz"])
    with pytest.raises(ValueError, match=r"the DataFrame has no column \['weight'\]"):
        Dask(ddf, "target", sample_weight="weight")
    with pytest.raises(TypeError, match="a Dask DataFrame's sample_weight must name its "
                                        "column"):
        Dask(ddf, "target", sample_weight=w)
    named = frame(X, y, w).assign(color=np.where(y > 0, "red", "blue"))
    named["kind"] = named["color"].astype("category")
    with pytest.raises(ValueError, match=r"the Dask DataFrame: the columns \{'color': "
                                         r"'(object|string|str)', 'kind': 'category'\} do "
                                         r"not hold numbers"):
        Dask(dd.from_pandas(named, npartitions=3), "target")
    chosen = Dask(dd.from_pandas(named, npartitions=3), "color", features=["f0", "f1"])
    assert next(chosen.chunks())[0].shape == (34, 2)        # string targets are labels
    # without y, a source for predict: its chunks' targets are None
    assert all(y is None for _, y, _ in Dask(da.from_array(X, chunks=30)).chunks())


# ------------------------------------------------------------------------ Chunks
def test_chunks_iterator_resets_before_every_pass_in_its_own_order():
    X, y, w = data()
    iterator = ListChunks(split(X, y, w))
    source = Chunks(iterator)
    assert source.kind == "iterator" and source.chunk_sizes() is None
    for passes in (1, 2):
        sizes, Xs, ys, ws = collect(source, order=[3, 2, 1, 0])     # order is ignored
        assert iterator.resets == passes
        assert sizes == [30, 30, 25, 15]
        np.testing.assert_array_equal(Xs, X)
        np.testing.assert_array_equal(ys, y)
        np.testing.assert_array_equal(ws, w)
    partial = source.chunks()
    next(partial)
    first, _, _ = next(source.chunks())              # a new pass starts from the first
    assert iterator.resets == 4
    np.testing.assert_array_equal(first, X[:30])


def test_chunks_of_two_give_no_weights_and_a_fit_resets_each_pass():
    X, y, _ = data()
    given = split(X, y)
    iterator = ListChunks(given)
    chunks = list(Chunks(iterator).chunks())
    assert [len(c) for c in chunks] == [3] * 4 and all(c[2] is None for c in chunks)
    assert all(c[0] is a[0] and c[1] is a[1] for c, a in zip(chunks, given))
    iterator.resets = 0
    model().fit(iterator, epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert iterator.resets >= 2                       # next() asserts a reset before a pass


@pytest.mark.parametrize("bad, name", [([1, 2], "list"), ((1,), "tuple"),
                                       ((1, 2, 3, 4), "tuple"), ({"X": 1}, "dict"),
                                       (0, "int")])
def test_chunks_bad_next_is_a_type_error(bad, name):
    X, y, _ = data()
    source = Chunks(ListChunks([(X[:5], y[:5]), bad]))
    chunks = source.chunks()
    assert len(next(chunks)[0]) == 5
    with pytest.raises(TypeError, match=r"ListChunks\.next\(\) must return \(X, y\), "
                                        rf"\(X, y, w\) or None; got {name}"):
        next(chunks)


class _OnlyNext:
    def next(self):
        return None


class _ResetNotCallable:
    reset = 3

    def next(self):
        return None


@pytest.mark.parametrize("thing, name", [(object(), "object"), (_OnlyNext(), "_OnlyNext"),
                                         (_ResetNotCallable(), "_ResetNotCallable"),
                                         (iter([1, 2]), "list_iterator")])
def test_chunks_object_without_reset_and_next_is_a_type_error(thing, name):
    with pytest.raises(TypeError, match=rf"a chunk iterator needs reset\(\) and next\(\) "
                                        rf"methods; {name} lacks them"):
        Chunks(thing)


# ------------------------------------------------------------------------ as_source
def test_as_source_dispatch(tmp_path):
    X, y, w = data()
    assert fastmlp.sources.as_source is as_source and fastmlp.sources.Npy is Npy
    npy = Npy(X, y)
    assert as_source(npy, None) is npy
    assert all(isinstance(s, Source) for s in (npy, Chunks(ListChunks([]))))
    iterator = ListChunks(split(X, y))
    chunks = as_source(iterator, None)
    assert type(chunks) is Chunks and chunks.iterator is iterator
    x = da.from_array(X, chunks=30)
    dask_array = as_source(x, da.from_array(y, chunks=30))
    assert type(dask_array) is Dask and not dask_array.frame
    assert dask_array.chunk_sizes() == [30, 30, 30, 10]
    ddf = dd.from_pandas(frame(X, y, w), npartitions=3)
    dask_frame = as_source(ddf, "target")
    assert type(dask_frame) is Dask and dask_frame.frame
    assert dask_frame.features == FEATURES + ["w"]
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    for X_path, y_value in ((str(tmp_path / "X.npy"), str(tmp_path / "y.npy")),
                            (tmp_path / "X.npy", y)):
        source = as_source(X_path, y_value)
        assert type(source) is Npy and isinstance(source.X[0], _NpyFile)
        assert source.chunk_rows == (8 << 20) // 20             # the default
        np.testing.assert_array_equal(collect(source)[2], y)
    root = write_parquet_dir(tmp_path / "data", X, y)
    for path in (root, str(root), root / "part-1.parquet"):
        source = as_source(path, "target")
        assert type(source) is Parquet and source.features == FEATURES
    assert as_source(root, "target").chunk_sizes() == PARQUET_SIZES
    for name in ("data.csv", "data.csv.gz", "DATA.CSV"):
        source = as_source(write_csv(tmp_path / name, X, y), "target")
        assert type(source) is Csv and source.features == FEATURES
    for arrays in ((X, y), (X.tolist(), y.tolist()), (frame(X, y, w), y), (X, None)):
        assert as_source(*arrays) is None


def test_as_source_errors(tmp_path):
    X, y, _ = data()
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "data.txt").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"X is the path '.*data\.txt': fastmlp reads \.npy, "
                                         r"CSV \(\.csv, \.csv\.gz, \.csv\.bz2\) and Parquet"):
        as_source(str(tmp_path / "data.txt"), "b")
    with pytest.raises(TypeError, match="X is a CSV path: give y as the target column's"):
        as_source(str(tmp_path / "data.csv"), None)
    with pytest.raises(ValueError, match=r"X is the path '.*missing_dir'"):
        as_source(tmp_path / "missing_dir", "target")
    with pytest.raises(TypeError, match="a Npy source holds its targets: pass y=None"):
        as_source(Npy(X, y), y)
    with pytest.raises(TypeError, match="a chunk iterator's chunks hold the targets"):
        as_source(ListChunks(split(X, y)), y)
    root = write_parquet_dir(tmp_path / "data", X, y)
    for bad_y in (None, ["target"], y):
        with pytest.raises(TypeError, match="X is a Parquet path: give y as the target "
                                            "column's name"):
            as_source(root, bad_y)
    with pytest.raises(TypeError, match="a Dask DataFrame's y must name"):
        as_source(dd.from_pandas(frame(X, y, y), npartitions=2), y)
    for collection in (dd.from_pandas(frame(X, y, y), npartitions=2),
                       da.from_array(X, chunks=30)):
        with pytest.raises(TypeError, match="X is a Dask collection: give y"):
            as_source(collection, None)
    npy = tmp_path / "x.npy"
    np.save(npy, X)
    with pytest.raises(TypeError, match=r"X is an \.npy path: give y too"):
        as_source(npy, None)
    with pytest.raises(TypeError, match=r"X is a np\.memmap: give y too"):
        as_source(np.load(npy, mmap_mode="r"), None)
    with pytest.raises(ValueError, match=r"X\[0\]: '.*nothing\.npy' is not a readable"):
        as_source(str(tmp_path / "nothing.npy"), y)


# ------------------------------------------------------------------------ fit over them
def _npy_paths(tmp_path, X, y, w):
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return (str(tmp_path / "X.npy"), str(tmp_path / "y.npy")), {}, None


def _npy_list_weighted(tmp_path, X, y, w):
    parts = []
    for i, (a, b) in enumerate([(0, 37), (37, 37), (37, 100)]):
        np.save(tmp_path / f"X{i}.npy", X[a:b])
        parts.append(np.load(tmp_path / f"X{i}.npy", mmap_mode="r"))
    source = Npy(parts, [y[:37], y[37:37], y[37:]], [w[:37], w[37:37], w[37:]], chunk_rows=13)
    return (source,), {"shuffle_buffer": 32}, w


def _parquet_dir(tmp_path, X, y, w):
    return (write_parquet_dir(tmp_path / "data", X, y), "target"), {}, None


def _parquet_weighted(tmp_path, X, y, w):
    root = write_parquet_dir(tmp_path / "data", X, y, w)
    return (Parquet(root, "target", sample_weight="w", piece_rows=7),), \
        {"shuffle_buffer": 48}, w


def _csv(tmp_path, X, y, w):
    return (write_csv(tmp_path / "data.csv", X, y), "target"), {}, None


def _csv_weighted(tmp_path, X, y, w):
    return (Csv(write_csv(tmp_path / "data.csv", X, y, w), "target", sample_weight="w",
                block_bytes=700),), {"shuffle_buffer": 32}, w


def _dask_array(tmp_path, X, y, w):
    return (da.from_array(X, chunks=(30, 2)), da.from_array(y, chunks=30)), {}, None


def _dask_array_weighted(tmp_path, X, y, w):
    source = Dask(da.from_array(X, chunks=(45, 5)), y, sample_weight=da.from_array(w, chunks=20))
    return (source,), {"shuffle_buffer": 32}, w


def _dask_frame(tmp_path, X, y, w):
    return (dd.from_pandas(frame(X, y, w).drop(columns="w"), npartitions=3), "target"), {}, None


def _dask_frame_weighted(tmp_path, X, y, w):
    return (Dask(dd.from_pandas(frame(X, y, w), npartitions=3), "target",
                 sample_weight="w"),), {}, w


def _chunks(tmp_path, X, y, w):
    return (ListChunks(split(X, y)),), {}, None


def _chunks_weighted(tmp_path, X, y, w):
    return (ListChunks(split(X, y, w, sizes=(7, 50, 0, 43))),), {"shuffle_buffer": 16}, w


KINDS = {"npy-paths": _npy_paths, "npy-list-weighted": _npy_list_weighted,
         "parquet-dir": _parquet_dir, "parquet-weighted": _parquet_weighted,
         "csv": _csv, "csv-weighted": _csv_weighted,
         "dask-array": _dask_array, "dask-array-weighted": _dask_array_weighted,
         "dask-frame": _dask_frame, "dask-frame-weighted": _dask_frame_weighted,
         "chunks": _chunks, "chunks-weighted": _chunks_weighted}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_unshuffled_streamed_fit_equals_the_in_memory_fit(tmp_path, kind, dtype):
    X, y, w = data()
    args, options, weights = KINDS[kind](tmp_path, X, y, w)
    reference = model(dtype)
    initial = reference.get_weights()
    expected = reference.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0,
                             sample_weight=weights, learning_rate=0.1)
    streamed = model(dtype)
    history = streamed.fit(*args, epochs=2, batch_size=16, shuffle=False, verbose=0,
                           learning_rate=0.1, **options)
    assert not np.array_equal(reference.get_weights()[0], initial[0])    # it trained
    for got, want in zip(streamed.get_weights(), reference.get_weights()):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, want)
    assert history.history["loss"] == expected.history["loss"]
    np.testing.assert_array_equal(streamed.classes_, reference.classes_)


def test_unshuffled_streamed_fit_follows_the_file_order():
    """The equality above depends on the order: other rows order, other weights."""
    X, y, _ = data()
    reference = model()
    reference.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    rows = np.r_[50:100, 0:50]
    reordered = model()
    reordered.fit(Npy(X, y, chunk_rows=50), epochs=2, batch_size=16, shuffle=False,
                  verbose=0)
    np.testing.assert_array_equal(reordered.get_weights()[0], reference.get_weights()[0])
    swapped = model()
    swapped.fit(Npy(X[rows], y[rows], chunk_rows=50), epochs=2, batch_size=16,
                shuffle=False, verbose=0)
    assert not np.array_equal(swapped.get_weights()[0], reference.get_weights()[0])


@pytest.mark.parametrize("kind", ["npy-list-weighted", "parquet-weighted", "dask-array",
                                  "dask-frame-weighted", "chunks", "csv-weighted"])
def test_shuffled_streamed_fit_learns(tmp_path, kind):
    X, y, w = data()
    args, options, _ = KINDS[kind](tmp_path, X, y, w)
    options.setdefault("shuffle_buffer", 32)
    m = model()
    history = m.fit(*args, epochs=8, batch_size=16, shuffle=True, verbose=0,
                    learning_rate=0.2, **options)
    losses = history.history["loss"]
    assert len(losses) == 8 and np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]
    assert (m.predict(X) == y).mean() > 0.6


def test_targets_alone_are_every_chunks_targets_in_turn(tmp_path):
    """Source.targets (what a survey of the labels reads): the targets of the chunks in
    turn, read alone by .npy and Parquet sources (X is never read: an X that cannot be
    read would fail), from whole chunks by the others."""
    X, y, w = data()
    two = np.stack([y, y * 2], axis=1)
    np.save(tmp_path / "y.npy", y)
    npy = Npy(np.empty((0, 5), np.float32), np.empty(0), chunk_rows=7)   # an empty X
    npy.y = [np.load(tmp_path / "y.npy", mmap_mode="r")]
    np.testing.assert_array_equal(np.concatenate(list(npy.targets())), y)
    root = write_parquet_dir(tmp_path / "p", X, y, extra={"y2": y * 2})
    parquet = Parquet(root, "target", features=FEATURES, piece_rows=5)
    np.testing.assert_array_equal(np.concatenate(list(parquet.targets())), y)
    both = Parquet(root, ["target", "y2"], features=FEATURES)
    np.testing.assert_array_equal(np.concatenate(list(both.targets())), two)
    chunks = ListChunks([(X[:60], y[:60]), (X[60:], y[60:])])
    np.testing.assert_array_equal(np.concatenate(list(Chunks(chunks).targets())), y)
    dask = Dask(da.from_array(X, chunks=(30, 5)), y)
    np.testing.assert_array_equal(np.concatenate(list(dask.targets())), y)


def test_a_copied_or_pickled_source_opens_its_files_again(tmp_path):
    """A copy (deepcopy, or pickle as for another process) of a file source reads what the
    original reads, and outlives it: an .npy file's descriptor is not shared (before,
    the copy read through the original's descriptor, closed with it: EBADF)."""
    X, y, w = data()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    root = write_parquet_dir(tmp_path / "p", X, y, w)
    frame(X, y, w).to_csv(tmp_path / "d.csv", index=False)
    made = [lambda: Npy(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), chunk_rows=30),
            lambda: Parquet(root, "target", sample_weight="w", piece_rows=7),
            lambda: Csv(tmp_path / "d.csv", "target", sample_weight="w", block_bytes=900)]
    for make in made:
        for copy_of in (copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))):
            original = make()
            want = collect(original)
            copied = copy_of(original)
            del original
            gc.collect()
            for got, expected in zip(collect(copied), want, strict=True):
                np.testing.assert_array_equal(got, expected)
    assert isinstance(copy.deepcopy(made[0]()).X[0], _NpyFile)


def test_an_npy_file_is_read_by_rows_and_a_truncated_one_is_named(tmp_path):
    """Paths of C-ordered .npy files are read with pread by row ranges (any range, the
    header's dtype and shape); a Fortran-ordered file stays a memmap; a file cut short
    after its header is a ValueError naming it when the missing rows are read."""
    X = np.arange(60, dtype=np.float64).reshape(20, 3)
    np.save(tmp_path / "X.npy", X)
    rows = Npy(tmp_path / "X.npy", np.zeros(20)).X[0]
    for part in (slice(0, 20), slice(5, 9), slice(19, 20), slice(7, 7), slice(15, 99)):
        np.testing.assert_array_equal(rows[part], X[part])
    np.save(tmp_path / "F.npy", np.asfortranarray(X))
    assert isinstance(Npy(tmp_path / "F.npy", np.zeros(20)).X[0], np.memmap)
    data = (tmp_path / "X.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-8 * 3])
    with pytest.raises(ValueError, match="cut.npy"):
        Npy(tmp_path / "cut.npy", np.zeros(20))


# ------------------------------------------------------------ predict, evaluate, validation
def trained(dtype="float32", backend="native", loss="softmax_cross_entropy"):
    """A model fit a few epochs on data() (outputs far from uniform)."""
    X, y, _ = data()
    outputs = 3 if loss == "softmax_cross_entropy" else 1
    m = Sequential([Dense(8, "relu"), Dense(outputs)], input_dim=5, loss=loss, seed=0,
                   dtype=dtype, backend=backend)
    m.fit(X, y if outputs == 3 else X[:, 0] - X[:, 1], epochs=3, batch_size=16, verbose=0)
    return m


def features_parquet(path, X):
    """A Parquet file of X's columns alone, in row groups of 32 rows."""
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(X, columns=FEATURES)), path,
                   row_group_size=32)
    return str(path)


def features_csv(path, X):
    """A CSV file of X's columns alone (their float64 repr: read back exactly)."""
    pd.DataFrame(X.astype(np.float64), columns=FEATURES).to_csv(path, index=False)
    return str(path)


def feature_sources(tmp_path, X, y):
    """Every kind of source of X's rows in order (a few also holding targets, which
    predict leaves unread), by name."""
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    root = write_parquet_dir(tmp_path / "pq", X, y)
    ddf = dd.from_pandas(frame(X, y, y), npartitions=3)
    return {
        "npy path": str(tmp_path / "X.npy"),
        "memmap": np.load(tmp_path / "X.npy", mmap_mode="r"),
        "Npy X only": Npy(tmp_path / "X.npy", chunk_rows=17),
        "Npy X, y": Npy([X[:33], X[33:]], [y[:33], y[33:]], chunk_rows=7),
        "Parquet path": features_parquet(tmp_path / "features.parquet", X),
        "Parquet target": Parquet(root, "target", piece_rows=5),
        "Parquet features": Parquet(root, features=FEATURES),
        "CSV path": features_csv(tmp_path / "X.csv", X),
        "CSV features": Csv(write_csv(tmp_path / "features.csv", X, y), features=FEATURES,
                            block_bytes=500),
        "Dask array": da.from_array(X, chunks=23),
        "Dask frame": ddf[FEATURES],
        "Dask features": Dask(ddf, features=FEATURES),
        "iterator": ListChunks([(X[a:a + 30], None) for a in range(0, len(X), 30)]),
    }


@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_from_every_source_equals_the_arrays_bit_for_bit(tmp_path, backend, dtype):
    """The native backend predicts a row independently of the rows around it, so a
    source's predict and predict_proba are the array's, bit for bit; NumPy's BLAS may
    sum a lone row's products (a chunk's last) in another order than a block's: within
    a few ulps of the dtype."""
    X, y, _ = data()
    m = trained(dtype, backend)
    expected, proba = m.predict(X), m.predict_proba(X)
    ulps = 0 if backend == "native" else 8 * np.finfo(dtype).eps
    for name, source in feature_sources(tmp_path, X, y).items():
        np.testing.assert_array_equal(m.predict(source), expected, err_msg=name)
        np.testing.assert_allclose(m.predict_proba(source, batch_size=9), proba, rtol=ulps,
                                   atol=0, err_msg=name)


def test_predict_from_a_source_for_a_regressor(tmp_path):
    X, y, _ = data()
    m = trained(loss="mse")
    np.testing.assert_array_equal(m.predict(Npy(X, chunk_rows=11)), m.predict(X))
    assert m.predict(Npy(X, chunk_rows=11)).shape == (N,)


def evaluation_sources(tmp_path, X, y, w):
    """Sources of (X, y, w) rows of every kind that holds targets and weights."""
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "w.npy", w)
    root = write_parquet_dir(tmp_path / "pq", X, y, w)
    return {
        "Npy": Npy(tmp_path / "X.npy", tmp_path / "y.npy", tmp_path / "w.npy", chunk_rows=13),
        "Parquet": Parquet(root, "target", sample_weight="w"),
        "CSV": Csv(write_csv(tmp_path / "data.csv", X, y, w), "target", sample_weight="w",
                   block_bytes=600),
        "Dask frame": Dask(dd.from_pandas(frame(X, y, w), npartitions=4), "target",
                           sample_weight="w"),
        "Dask arrays": Dask(da.from_array(X, chunks=40), da.from_array(y, chunks=40),
                            sample_weight=da.from_array(w, chunks=40)),
        "iterator": ListChunks(split(X, y, w)),
    }


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_evaluate_and_score_from_sources_equal_the_arrays(tmp_path, loss):
    """Losses are summed chunk by chunk, so they agree with one array's to rounding;
    accuracy (counts) exactly."""
    X, labels, w = data()
    m = trained(loss=loss)
    y = labels if loss == "softmax_cross_entropy" else (X[:, 0] - X[:, 1]).astype(np.float64)
    weighted, plain = m.evaluate(X, y, sample_weight=w), m.evaluate(X, y)
    metric = "accuracy" if loss == "softmax_cross_entropy" else "r2"
    for name, source in evaluation_sources(tmp_path, X, y, w).items():
        got = m.evaluate(source, batch_size=7)
        assert got["loss"] == pytest.approx(weighted["loss"], rel=1e-12), name
        assert got[metric] == pytest.approx(plain[metric], rel=1e-12), name
        assert m.score(source) == pytest.approx(plain[metric], rel=1e-12), name
    assert m.evaluate(str(tmp_path / "X.npy"), str(tmp_path / "y.npy")) == \
        pytest.approx(plain, rel=1e-12)
    root = write_parquet_dir(tmp_path / "unweighted", X, y)
    assert m.evaluate(root, "target") == pytest.approx(plain, rel=1e-12)
    if loss == "softmax_cross_entropy":
        assert m.evaluate(Npy(X, y))["accuracy"] == plain["accuracy"]


def test_fit_validates_on_a_source_as_on_arrays(tmp_path):
    """validation_data as a source (or a pair that makes one) gives the arrays' val_
    values, re-read every epoch; training is untouched by it."""
    X, y, _ = data()
    X_val, y_val, _ = data(60, seed=1)
    np.save(tmp_path / "Xv.npy", X_val)
    np.save(tmp_path / "yv.npy", y_val)
    root = write_parquet_dir(tmp_path / "pq", *data(seed=1)[:2])
    fit = dict(epochs=3, batch_size=16, verbose=0)
    reference = model()
    expected = reference.fit(X, y, validation_data=(X_val, y_val), **fit).history
    for validation in (Npy(X_val, y_val, chunk_rows=8),
                       (str(tmp_path / "Xv.npy"), str(tmp_path / "yv.npy")),
                       ListChunks(split(X_val, y_val, sizes=(20, 40)))):
        m = model()
        history = m.fit(X, y, validation_data=validation, **fit).history
        np.testing.assert_array_equal(m.flat_params, reference.flat_params)
        for key in ("val_loss", "val_accuracy"):
            np.testing.assert_allclose(history[key], expected[key], rtol=1e-12)
    # a streamed fit validated on a Parquet directory: its 100 rows, every epoch
    m = model()
    history = m.fit(Npy(X, y), validation_data=(root, "target"), **fit).history
    assert len(history["val_loss"]) == 3
    assert history["val_accuracy"][-1] == m.evaluate(*data(seed=1)[:2])["accuracy"]


def test_source_inference_errors(tmp_path):
    X, y, w = data()
    m = trained()
    with pytest.raises(ValueError, match=r"the \.npy source holds no targets \(y None\): "
                                         r"fit and evaluate need them"):
        m.evaluate(Npy(X))
    with pytest.raises(ValueError, match="the iterator source holds no targets"):
        m.fit(ListChunks([(X, None)]), epochs=1, batch_size=10, verbose=0)
    with pytest.raises(ValueError, match=r"the \.npy source holds no targets"):
        m.fit(Npy(X), epochs=1, batch_size=10, verbose=0)
    with pytest.raises(ValueError, match="a source holds its sample weights"):
        m.evaluate(Npy(X, y), sample_weight=w)
    with pytest.raises(TypeError, match="evaluate needs y"):
        m.evaluate(X)
    with pytest.raises(ValueError, match="the iterator source holds no rows"):
        m.predict(ListChunks([]))
    with pytest.raises(ValueError, match=r"the \.npy source holds no rows"):
        m.evaluate(Npy(X[:0], y[:0]))
    root = write_parquet_dir(tmp_path / "pq", X, y)
    with pytest.raises(ValueError, match=r"X has 6 features per sample \(shape \(16, 6\)\); "
                                         r"the model expects input_dim=5 of the Parquet "
                                         r"source's chunk 0"):
        m.predict(root)          # the target column is a feature unless Parquet(root, "target")
    with pytest.raises(ValueError, match=r"X has 4 features.* of the iterator source's chunk 1"):
        m.predict(ListChunks([(X, None), (X[:, :4], None)]))
    with pytest.raises(ValueError, match=r"of the \.npy source's chunk 3"):
        m.evaluate(Npy(X, np.where(np.arange(N) == 80, 7, y), chunk_rows=25))
    (tmp_path / "v.txt").write_text("a\n1\n")
    with pytest.raises(ValueError, match=r"validation_data: X is the path '.*v\.txt'"):
        m.fit(X, y, validation_data=(str(tmp_path / "v.txt"), y), epochs=1, verbose=0)
    with pytest.raises(TypeError, match="validation_data: X is a CSV path: give y as the "
                                        "target column's name"):
        m.fit(X, y, validation_data=(str(tmp_path / "v.csv"), y), epochs=1, verbose=0)
    with pytest.raises(TypeError, match="validation_data must be a pair"):
        m.fit(X, y, validation_data=X, epochs=1, verbose=0)


def test_a_multitask_validates_on_a_memmap_as_on_its_array(tmp_path):
    """A memmap of validation rows is streamed, and gives the array's values."""
    X, y, _ = data()
    np.save(tmp_path / "X.npy", X)
    multi = fastmlp.MultiTask([Dense(4, "relu")], {"a": [Dense(3)]},
                              {"a": "softmax_cross_entropy"}, input_dim=5, seed=0)
    history = multi.fit(X, {"a": y}, epochs=1, verbose=0,
                        validation_data=(np.load(tmp_path / "X.npy", mmap_mode="r"), {"a": y}))
    assert history.history["val_loss"] == [multi.evaluate(X, {"a": y})["loss"]]


def test_parquet_and_csv_sources_without_pyarrow_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    with pytest.raises(ImportError, match=r"Parquet sources need pyarrow: pip install "
                                          r"'fastmlp\[parquet\]'"):
        Parquet(tmp_path, "target")
    with pytest.raises(ImportError, match=r"CSV sources need pyarrow: pip install "
                                          r"'fastmlp\[parquet\]'"):
        Csv(tmp_path / "data.csv", "target")


def test_a_memmaps_labels_may_be_a_list(tmp_path):
    """With one memmap or .npy path as X, a list y holds its rows' labels (Npy's lists
    are of files only when X is a list of files)."""
    X, y, _ = data()
    np.save(tmp_path / "X.npy", X)
    names = np.array(["ant", "bee", "cat"])[y].tolist()
    reference = model()
    reference.fit(X, names, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for X_disk in (np.load(tmp_path / "X.npy", mmap_mode="r"), tmp_path / "X.npy"):
        m = model()
        m.fit(X_disk, names, epochs=1, batch_size=16, shuffle=False, verbose=0)
        np.testing.assert_array_equal(m.flat_params, reference.flat_params)
        assert m.evaluate(X_disk, names) == pytest.approx(reference.evaluate(X, names))
