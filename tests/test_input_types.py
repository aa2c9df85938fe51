"""Masked arrays and pandas nullable dtypes: used as their data, or refused with a fix.

Nothing is silently ignored: a mask or a missing value (``pd.NA``) is never replaced
by whatever value happens to lie under it.
"""

import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam
from tests.models import LinearModel, Lookup

rng = np.random.default_rng(11)
X = rng.normal(size=(20, 3))
Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(20, 1))


def _least_squares(X, Y):
    """The unregularized linear fit, by numpy: (W, b)."""
    coef = np.linalg.lstsq(np.c_[X, np.ones(len(X))], Y, rcond=None)[0]
    return coef[:-1], coef[-1]


def _fit_linear(X_in, Y_in):
    model = LinearModel(3, 1)
    model.fit(X_in, Y_in, reg_lambda=0.0)
    return model


def _assert_least_squares(model, X_ref, Y_ref):
    W, b = _least_squares(X_ref, Y_ref)
    np.testing.assert_allclose(np.asarray(model.W.value), W, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(model.b.value), b, rtol=1e-5, atol=1e-8)


def _assert_predicts_with_its_parameters(model, X_in, X_ref):
    W, b = np.asarray(model.W.value), np.asarray(model.b.value)
    np.testing.assert_allclose(np.asarray(model.predict(X_in)), X_ref @ W + b, rtol=1e-12)


class _TwoInputs(MiniMLModel):
    """``(X["u"] + X["v"]) * a`` for dict inputs, ``(X[0] + X[1]) * a`` for tuples."""

    def __init__(self):
        self.a = MiniMLParam((1,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        u, v = (X["u"], X["v"]) if isinstance(X, dict) else X
        return (u + v) * self.a(buffer)


# --- numpy masked arrays ---------------------------------------------------------


def _masked(data, masked_at):
    """A masked array whose masked entries hide a huge value, so using them shows."""
    mask = np.zeros(data.shape, bool)
    for index in masked_at:
        mask[index] = True
    return np.ma.masked_array(np.where(mask, 1e6, data), mask=mask)


@pytest.mark.parametrize("mask", [np.ma.nomask, False], ids=["nomask", "all-false"])
def test_masked_arrays_without_masked_entries_are_their_data(mask):
    X_masked = np.ma.masked_array(X, mask=mask)
    Y_masked = np.ma.masked_array(Y, mask=mask)
    model = _fit_linear(X_masked, Y_masked)
    _assert_least_squares(model, X, Y)
    _assert_predicts_with_its_parameters(model, X_masked, X)


def test_masked_entries_in_x_are_refused_by_fit():
    X_bad = _masked(X, [(0, 1), (4, 0), (4, 2)])
    with pytest.raises(MiniMLError) as info:
        _fit_linear(X_bad, Y)
    message = str(info.value)
    assert message.startswith("LinearModel.fit: X is a masked array with 3 masked entries")
    assert "in 2 of 20 samples" in message
    assert "X.filled(value)" in message and "drop" in message


def test_masked_entries_in_y_are_refused_by_fit():
    with pytest.raises(MiniMLError, match=r"^LinearModel\.fit: y is a masked array with 1 masked"):
        _fit_linear(X, _masked(Y, [(7, 0)]))


def test_masked_entries_are_refused_by_predict_and_validation_data():
    model = _fit_linear(X, Y)
    with pytest.raises(MiniMLError, match=r"^LinearModel\.predict: X is a masked array with 2"):
        model.predict(_masked(X, [(0, 0), (1, 1)]))
    with pytest.raises(MiniMLError, match=r"^LinearModel\.fit: X_val is a masked array with 1"):
        model.fit(X, Y, validation_data=(_masked(X, [(3, 2)]), Y))


def test_lists_of_masked_rows_keep_their_masks():
    # np.asarray of a list of masked arrays drops the masks and would fit on the hidden
    # 1e6; the list is refused like the masked array it stacks to, or fits as its data.
    rows = list(_masked(X, [(3, 1), (9, 0)]))
    with pytest.raises(MiniMLError, match=r"^LinearModel\.fit: X is a masked array with 2 masked"):
        _fit_linear(rows, Y)
    with pytest.raises(MiniMLError, match=r"^LinearModel\.fit: y is a masked array with 1 masked"):
        _fit_linear(X, [float(v) for v in Y[:-1, 0]] + [np.ma.masked])
    model = _fit_linear([np.ma.masked_array(row) for row in X], Y)
    _assert_least_squares(model, X, Y)


def test_masked_entries_in_structured_inputs_name_the_leaf():
    model = _TwoInputs()
    model.bind()
    u, v = rng.normal(size=(20, 1)), rng.normal(size=(20, 1))
    v_bad = _masked(v, [(2, 0), (5, 0)])
    with pytest.raises(MiniMLError, match=r"X\['v'\] is a masked array with 2 masked entries"):
        model.fit({"u": u, "v": v_bad}, u + v)
    with pytest.raises(MiniMLError, match=r"X\[1\] is a masked array with 2 masked entries"):
        model.fit((u, v_bad), u + v)
    # Without masked entries, both structures fit as their data: y = 2 (u + v).
    model.fit((np.ma.masked_array(u), np.ma.masked_array(v, mask=False)), 2 * (u + v))
    assert float(model.a.value[0]) == pytest.approx(2.0, rel=1e-8)


# --- pandas nullable extension dtypes -----------------------------------------------


def test_nullable_frames_without_missing_values_fit_like_numpy():
    pd = pytest.importorskip("pandas")
    X_int = np.round(X * 3)  # integer-valued, for the Int64 column
    X_ref = np.c_[X[:, 0], X_int[:, 1], X[:, 2] > 0].astype(np.float64)
    frame = pd.DataFrame(
        {
            "a": pd.array(X_ref[:, 0], dtype="Float64"),
            "b": pd.array(X_int[:, 1].astype(int), dtype="Int64"),
            "c": pd.array(X[:, 2] > 0, dtype="boolean"),
        }
    )
    target = pd.DataFrame({"y": pd.array(Y[:, 0], dtype="Float64")})
    model = _fit_linear(frame, target)
    _assert_least_squares(model, X_ref, Y)
    # The same data as float64 numpy arrays gives exactly the same fit.
    on_numpy = _fit_linear(X_ref, Y)
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), on_numpy.get_buffer())
    _assert_predicts_with_its_parameters(model, frame, X_ref)


def test_nullable_integer_series_stay_integer():
    pd = pytest.importorskip("pandas")

    model = Lookup()
    model.bind()
    ids = pd.Series([0, 1, 2, 3, 1, 2], dtype="Int64")
    target = pd.Series([1.0, 2.0, 3.0, 4.0, 2.0, 3.0], dtype="Float64")
    model.fit(ids, target, reg_lambda=0.0)
    # Each table entry is the mean of its targets.
    np.testing.assert_allclose(np.asarray(model.table.value), [1, 2, 3, 4], rtol=1e-5)


def test_missing_values_in_nullable_frames_are_counted():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "a": pd.array([None, 1.0, None, *X[3:, 0]], dtype="Float64"),
            "b": pd.array(np.arange(20), dtype="Int64"),
            "c": pd.array([True, pd.NA, *(X[2:, 2] > 0)], dtype="boolean"),
        }
    )
    with pytest.raises(MiniMLError) as info:
        _fit_linear(frame, Y)
    message = str(info.value)
    assert message.startswith("LinearModel.fit: X ")
    assert "3 missing value(s) (pd.NA) in 2 of 3 column(s) ['a', 'c']" in message
    assert "dropna()" in message and "fillna(" in message


@pytest.mark.parametrize("dtype", ["Float64", "Int64", "boolean"])
def test_missing_values_in_nullable_series_are_counted(dtype):
    pd = pytest.importorskip("pandas")
    values = {"Float64": [1.5, None, 2.5, None], "Int64": [1, None, 2, None]}
    series = pd.Series(values.get(dtype, [True, None, False, None]), dtype=dtype)
    model = _TwoInputs()
    model.bind()
    u = np.ones(4)
    with pytest.raises(MiniMLError, match=r"^_TwoInputs\.fit: y has 2 missing value\(s\) \(pd"):
        model.fit((u, u), series)
    with pytest.raises(MiniMLError, match=r"X\['v'\] has 2 missing value\(s\) \(pd.NA\)"):
        model.fit({"u": u, "v": series}, u)


def test_missing_values_are_refused_by_predict():
    pd = pytest.importorskip("pandas")
    model = _fit_linear(X, Y)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).astype("Float64")
    frame.iloc[4, 1] = pd.NA
    with pytest.raises(MiniMLError, match=r"^LinearModel\.predict: X has 1 missing value"):
        model.predict(frame)


@pytest.mark.parametrize(
    ("name", "y_true", "y_pred"),
    [
        ("mean_squared_error", [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.0]),
        ("mean_absolute_error", [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.0]),
        ("r2_score", [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.0]),
        ("accuracy", [0.0, 1.0, 1.0, 0.0], [0.2, 0.9, 0.4, 0.1]),
        ("log_loss", [0.0, 1.0, 1.0, 0.0], [0.2, 0.9, 0.4, 0.1]),
    ],
)
def test_metrics_refuse_masked_entries_and_score_unmasked_arrays(name, y_true, y_pred):
    """Called directly, a metric would score the values under a mask (jnp.asarray drops
    it): masked entries are refused, a masked array with none scores as its data."""
    from miniml import metrics

    metric = getattr(metrics, name)
    plain = float(metric(np.array(y_true)[:, None], np.array(y_pred)[:, None]))
    unmasked = np.ma.masked_array(np.array(y_true)[:, None], mask=False)
    assert float(metric(unmasked, np.array(y_pred)[:, None])) == plain
    masked = np.ma.masked_array(np.array(y_true)[:, None], mask=[[False], [True], [False], [False]])
    with pytest.raises(MiniMLError, match=rf"^{name}: y_true is a masked array with 1 masked "
                       r"entry \(in 1 of 4 samples\)"):  # fmt: skip
        metric(masked, np.array(y_pred)[:, None])
    with pytest.raises(MiniMLError, match=rf"^{name}: y_pred is a masked array"):
        metric(np.array(y_true)[:, None], np.ma.masked_invalid([[np.nan], [1.0], [1.0], [0.0]]))
