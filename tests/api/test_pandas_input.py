"""pandas DataFrames and Series in fit, predict, evaluate and score: numeric columns
(bool, nullable integer and boolean, float) convert to the model's dtype; a missing value
is a ValueError naming its column and row; a text, category or date column a TypeError
naming the columns and the fix."""
import re
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import Sequential
from fastmlp.nn.layers import Dense

pd = pytest.importorskip("pandas")

N = 40


def model(loss="softmax_cross_entropy", units=2, backend="numpy", dtype="float32"):
    return Sequential([Dense(4, "relu"), Dense(units)], input_dim=4, loss=loss,
                      backend=backend, dtype=dtype, seed=0)


def numeric_frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "flag": rng.random(N) > 0.5,                                   # bool
        "count": pd.array(rng.integers(0, 9, N), dtype="Int64"),       # nullable integer
        "ok": pd.array(rng.random(N) > 0.3, dtype="boolean"),          # nullable boolean
        "size": rng.normal(size=N).astype(np.float32),                 # float
    }, index=np.arange(100, 100 + N))


def as_numbers(frame):
    return np.column_stack([frame[c].to_numpy(dtype=np.float64) for c in frame.columns])


@pytest.mark.parametrize("backend", ["numpy", "native"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numeric_columns_give_what_the_array_gives(backend, dtype):
    frame = numeric_frame()
    X = as_numbers(frame)
    y = pd.Series(np.arange(N) % 2, index=frame.index, dtype="Int64")
    by_frame, by_array = model(backend=backend, dtype=dtype), model(backend=backend, dtype=dtype)
    history = by_frame.fit(frame, y, epochs=3, batch_size=8)
    assert history.history == by_array.fit(X, np.arange(N) % 2, epochs=3,
                                           batch_size=8).history
    assert np.array_equal(by_frame.get_weights()[0], by_array.get_weights()[0])
    assert np.array_equal(by_frame.predict(frame), by_array.predict(X))
    assert np.array_equal(by_frame.predict_proba(frame), by_array.predict_proba(X))
    assert by_frame.evaluate(frame, y) == by_array.evaluate(X, np.arange(N) % 2)
    assert by_frame.score(frame, y) == by_array.score(X, np.arange(N) % 2)


@pytest.mark.parametrize("column, values, shown", [
    ("count", pd.array([1, None] + [2] * (N - 2), dtype="Int64"), "<NA>"),
    ("ok", pd.array([True, None] + [False] * (N - 2), dtype="boolean"), "<NA>"),
    ("size", [1.0, np.nan] + [2.0] * (N - 2), "nan"),
])
@pytest.mark.parametrize("method", ["fit", "predict", "evaluate"])
def test_a_missing_value_names_its_column_and_row(method, column, values, shown):
    frame = numeric_frame()
    frame[column] = values
    call = getattr(model(), method)
    y = np.zeros(N, int)
    with pytest.raises(ValueError, match=rf"X must be finite; column '{column}' holds {shown} "
                                         rf"at row 1 \(index 101\); fill or drop the missing "
                                         rf"values first \(X.fillna\(...\) or X.dropna\(\)\)"):
        call(frame) if method == "predict" else call(frame, y, **(
            {"epochs": 1} if method == "fit" else {}))


def test_an_infinity_names_its_column_and_row_without_the_missing_value_hint():
    frame = numeric_frame().reset_index(drop=True)
    frame.loc[3, "size"] = np.inf
    with pytest.raises(ValueError, match=r"X must be finite; column 'size' holds inf at row "
                                         r"3$"):
        model().predict(frame)


def test_a_value_beyond_float32_names_the_range():
    frame = numeric_frame()
    frame["size"] = frame["size"].astype(np.float64)
    frame.iloc[2, 3] = 1e39
    with pytest.raises(ValueError, match=r"X holds 1e\+39 at index \(2, 3\), beyond the range "
                                         r"of float32"):
        model().predict(frame)


@pytest.mark.parametrize("make, listed", [
    (lambda f: f.assign(color=["red", "blue"] * (N // 2)), r"{'color': '(str|object)'}"),
    (lambda f: f.assign(color=pd.Categorical(["red", "blue"] * (N // 2))),
     r"{'color': 'category'}"),
    (lambda f: f.assign(when=pd.Timestamp("2024-01-01")), r"{'when': 'datetime64\[\w+\]'}"),
    (lambda f: f.assign(a=["x"] * N, b=np.array([None] * N, dtype=object)),
     r"{'a': '(str|object)', 'b': 'object'}"),
])
@pytest.mark.parametrize("method", ["fit", "predict"])
def test_text_category_and_date_columns_are_named_with_the_fix(method, make, listed):
    frame = make(numeric_frame())
    names = [c for c in frame.columns if c not in numeric_frame().columns]
    with pytest.raises(TypeError) as error:
        model().fit(frame, np.zeros(N, int), epochs=1) if method == "fit" else \
            model().predict(frame)
    message = str(error.value)
    assert re.match(rf"X must hold numbers; its columns {listed} do not: ", message), message
    assert f"drop them (X.drop(columns={names!r}))" in message
    assert f"or encode them as numbers, e.g. pandas.get_dummies(X, columns={names!r}) or " \
           f"scikit-learn's OrdinalEncoder" in message


@pytest.mark.parametrize("series, expected", [
    (pd.Series([0, 1] * (N // 2), dtype="Int64"), np.arange(2)),
    (pd.Series([True, False] * (N // 2), dtype="boolean"), np.arange(2)),
    (pd.Series(["cat", "dog"] * (N // 2)), np.array(["cat", "dog"])),
    (pd.Series(pd.Categorical(["dog", "cat"] * (N // 2))), np.array(["cat", "dog"])),
    (pd.Series([3.0, 5.0] * (N // 2)), np.array([3.0, 5.0])),
])
def test_a_series_of_labels(series, expected):
    m = model()
    m.fit(numeric_frame(), series, epochs=1)
    assert np.array_equal(m.classes_, expected) and m.classes_.dtype.kind == expected.dtype.kind
    assert set(m.predict(numeric_frame())) <= set(expected)
    assert 0 <= m.score(numeric_frame(), series) <= 1


@pytest.mark.parametrize("series, shown", [
    (pd.Series([0, None] + [1] * (N - 2), dtype="Int64"), "<NA>"),
    (pd.Series(["a", None] + ["b"] * (N - 2), dtype="string"), "<NA>"),
    (pd.Series(["a", None] + ["b"] * (N - 2), dtype=object), "None"),
])
def test_a_missing_label_in_a_series_names_its_row(series, shown):
    series.index = np.arange(100, 100 + N)
    with pytest.raises(ValueError, match=rf"y holds a missing (label|value) \({shown}\) at "
                                         rf"(row 1 \(index 101\)|index 1); fill or drop it"):
        model().fit(numeric_frame(), series, epochs=1)


def test_a_float_series_with_nan_is_refused_as_an_array_is():
    y = pd.Series([0.0, np.nan] + [1.0] * (N - 2))
    with pytest.raises(ValueError, match=r"y must be finite; it holds nan at index 1"):
        model().fit(numeric_frame(), y, epochs=1)
    with pytest.raises(ValueError, match=r"y must be finite; it holds nan at index 1"):
        model("mse", 1).fit(numeric_frame(), y, epochs=1)


def test_mse_targets_from_a_series_and_a_frame():
    frame = numeric_frame()
    y = pd.Series(np.linspace(0, 1, N), dtype="Float64")
    single, reference = model("mse", 1), model("mse", 1)
    assert single.fit(frame, y, epochs=2).history == reference.fit(
        as_numbers(frame), np.linspace(0, 1, N), epochs=2).history
    two = pd.DataFrame({"u": np.arange(N), "v": pd.array(np.arange(N) % 3, dtype="Int64")})
    model("mse", 2).fit(frame, two, epochs=1)
    with pytest.raises(TypeError, match=r"y must hold real numbers; got dtype object"):
        model("mse", 1).fit(frame, pd.Series(["a"] * N), epochs=1)


def test_pandas_is_not_imported_by_fastmlp():
    code = ("import sys, numpy as np, fastmlp; from fastmlp.nn.layers import Dense; "
            "m = fastmlp.Sequential([Dense(2)], input_dim=3, seed=0); "
            "m.fit(np.zeros((4, 3)), ['a', 'b', 'a', 'b'], epochs=1); "
            "fastmlp.train_dev_test_split(np.zeros((5, 3)), np.zeros(5)); "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
