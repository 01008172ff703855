"""Sparse input rows (docs/sparse.md): a scipy.sparse X trains and predicts on Sequential
without ever being made dense; only the first layer's products read it.

- The native fused path and the native per-op path give the same weights bit for bit, and
  the NumPy backend (scipy's products, bit for bit the native kernels' for sorted rows)
  agrees with them as the backends agree on dense input.
- A sparse X gives the dense X's fit to rounding (the dense GEMM sums in another order).
- CSR and CSC, int32 and int64 indices, unsorted indices, any row order: the same model.
- A matrix far too large to make dense (10^6 x 10^6) trains and predicts.
- Bad input: a clear ValueError/TypeError naming X and the shapes.
"""
from __future__ import annotations

import numpy as np
import pytest

scipy_sparse = pytest.importorskip("scipy.sparse")

import fastmlp  # noqa: E402
from fastmlp import Dense, Dropout, Maxout, MultiTask, Sequential  # noqa: E402
from fastmlp._sparse import CsrRows  # noqa: E402


def task(rows=300, cols=200, density=0.03, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = scipy_sparse.random(rows, cols, density=density, format="csr", dtype=dtype,
                            random_state=seed)
    y = (X @ rng.standard_normal(cols) > 0).astype(int)
    return X, y


def model(backend="native", dtype="float64", first=None, loss="softmax_cross_entropy",
          outputs=2, input_dim=200):
    layers = [first or Dense(16, "relu"), Dense(outputs)]
    return Sequential(layers, input_dim=input_dim, loss=loss, backend=backend, dtype=dtype,
                      seed=3)


def fit(m, X, y, **kw):
    return m.fit(X, y, epochs=kw.pop("epochs", 3), batch_size=kw.pop("batch_size", 32),
                 verbose=0, optimizer=kw.pop("optimizer", "adam"), **kw)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("first", [lambda: Dense(16, "tanh"), lambda: Maxout(8, 2)],
                         ids=["dense", "maxout"])
def test_fused_and_per_op_paths_agree_bit_for_bit(native, dtype, first, fused_runs,
                                                  monkeypatch):
    X, y = task()
    fused = model(dtype=dtype, first=first())
    fit(fused, X, y, sample_weight=np.linspace(0.5, 1.5, X.shape[0]))
    assert fused_runs, "the fused trainer did not run"
    import fastmlp.train.loop
    monkeypatch.setattr(fastmlp.train.loop, "_FUSED", False)
    per_op = model(dtype=dtype, first=first())
    fit(per_op, X, y, sample_weight=np.linspace(0.5, 1.5, X.shape[0]))
    np.testing.assert_array_equal(fused.flat_params, per_op.flat_params)
    np.testing.assert_array_equal(fused.predict_proba(X), per_op.predict_proba(X))


def test_numpy_backend_agrees_with_native(native):
    X, y = task()
    a, b = model("numpy"), model(native)
    fit(a, X, y)
    fit(b, X, y)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_sparse_fits_as_the_dense_matrix_to_rounding(backend):
    X, y = task()
    a, b = model(backend), model(backend)
    history = fit(a, X, y, validation_data=(X, y))
    fit(b, X.toarray(), y, validation_data=(X.toarray(), y))
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(a.predict(X), b.predict(X.toarray()))
    assert a.evaluate(X, y)["loss"] == pytest.approx(b.evaluate(X.toarray(), y)["loss"], rel=1e-9)
    assert a.score(X, y) == b.score(X.toarray(), y)
    assert history.history["val_loss"][-1] == pytest.approx(a.evaluate(X, y)["loss"], rel=1e-12)


def test_formats_index_types_and_row_order_give_the_same_model():
    X, y = task()
    reference = model()
    fit(reference, X, y)
    unsorted = X.copy()
    for i in range(unsorted.shape[0]):          # reverse each row's entries
        start, stop = unsorted.indptr[i], unsorted.indptr[i + 1]
        unsorted.indices[start:stop] = unsorted.indices[start:stop][::-1].copy()
        unsorted.data[start:stop] = unsorted.data[start:stop][::-1].copy()
    unsorted.has_sorted_indices = False
    wide = X.copy()
    wide.indptr, wide.indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    for variant in (X.tocsc(), X.tocoo(), unsorted, wide, scipy_sparse.csr_array(X)):
        m = model()
        fit(m, variant, y)
        np.testing.assert_array_equal(m.flat_params, reference.flat_params)
        np.testing.assert_array_equal(m.predict_proba(variant), reference.predict_proba(X))
    assert unsorted.has_sorted_indices is False, "the caller's matrix was sorted in place"


def test_a_matrix_too_large_to_make_dense_trains_and_predicts():
    """10^6 x 10^6 (4 TB dense in float32): any densifying step would fail."""
    n = 1_000_000
    rng = np.random.default_rng(5)
    rows = np.arange(2000)
    X = scipy_sparse.csr_matrix((rng.random(2000).astype(np.float32),
                                 (rows, rng.integers(0, n, 2000))), shape=(2000, n))
    y = rng.integers(0, 2, 2000)
    m = Sequential([Dense(2, "relu"), Dense(2)], input_dim=n, seed=0)
    fit(m, X, y, epochs=1, batch_size=256)
    assert m.predict(X).shape == (2000,)


def test_lbfgs_whole_batch_gradient_takes_sparse_rows(native):
    from fastmlp.train.gradient import WholeBatch
    X, y = task()
    m = model(native)
    Xr, Y = m.prepare_data(X, y)
    assert type(Xr) is CsrRows
    dense = model(native)
    Xd, Yd = dense.prepare_data(X.toarray(), y)
    a, b = WholeBatch(m, Xr, Y), WholeBatch(dense, Xd, Yd)
    assert a.fused and b.fused
    got, want = a(m.flat_params.copy()), b(dense.flat_params.copy())
    assert got.loss_sum == pytest.approx(want.loss_sum, rel=1e-12)
    np.testing.assert_allclose(m.flat_grads, dense.flat_grads, rtol=1e-9, atol=1e-14)


# ------------------------------------------------------------------------ bad input
def test_a_first_layer_that_does_not_multiply_is_refused():
    X, y = task()
    m = Sequential([Dropout(0.1), Dense(4), Dense(2)], input_dim=200)
    with pytest.raises(ValueError, match=r"sparse X needs a first layer that multiplies"):
        fit(m, X, y)
    with pytest.raises(ValueError, match=r"sparse X needs a first layer"):
        m.predict(X)


def test_wrong_width_names_the_shapes():
    X, y = task(cols=150)
    with pytest.raises(ValueError, match=r"X has 150 features per sample \(sparse shape "
                                         r"\(300, 150\)\); the model expects input_dim=200"):
        fit(model(), X, y)


def test_non_finite_values_are_refused():
    X, y = task()
    X.data[3] = np.nan
    with pytest.raises(ValueError, match=r"X holds non-finite values"):
        fit(model(), X, y)


def test_broken_structure_is_refused():
    X, y = task()
    X.indices[5] = 10_000
    with pytest.raises(ValueError, match=r"column indices outside \[0, 200\)"):
        fit(model(), X, y)


def test_multitask_refuses_sparse_with_the_fix():
    X, y = task()
    mt = MultiTask([Dense(8, "relu")], {"a": [Dense(2)]}, {"a": "softmax_cross_entropy"},
                   input_dim=200)
    with pytest.raises(TypeError, match=r"scipy.sparse matrix .* pass X.toarray\(\)"):
        mt.predict(X)


def test_the_trainer_checks_the_column_indices_of_the_rows_a_run_reads(native):
    """The core's own check (Python checked the matrix already; the binding checks indptr,
    O(rows), and each run the column indices of the rows its steps gather, before its
    first step): a bad index in a row the run reads is a ValueError and no step is taken;
    a run that does not read that row trains."""
    X, y = task(rows=64)
    m = model()
    m.fit(X.toarray(), y, epochs=1, batch_size=32, verbose=0)    # builds it, classes
    rows = m.as_input(X)
    indices = rows.indices.copy()
    bad_row = 40                                  # in step 1 of the natural order
    indices[rows.indptr[bad_row]] = 200
    broken = CsrRows(rows.indptr, indices, rows.data, rows.shape)
    Y = np.eye(2)[y].astype(np.float64)
    with m.writing_params():
        trainer = m.backend.fused_trainer(params=m._params, grads=m._grads, m=None, v=None,
                                          program=m.fused_program(), loss=m.loss,
                                          optimizer="sgd", batch_size=32)
    order, lrs = np.arange(64), np.full(2, 0.1)
    before = m._params.copy()
    with pytest.raises(ValueError, match=r"column index 200 at entry \d+, expected 0 <= index < 200"):
        trainer.run(broken, Y, None, order, 0, 2, lrs, 1, 0, trainer.new_totals())
    np.testing.assert_array_equal(m._params, before)
    assert trainer.run(broken, Y, None, order, 0, 1, lrs[:1], 1, 0, trainer.new_totals()).steps == 1
