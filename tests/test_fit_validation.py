"""Bad inputs to fit and predict fail early with messages that say what to do."""

import jax.numpy as jnp
import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam
from miniml.loss import CrossEntropyLogLoss
from miniml.optim import Adam, ScipyOptimizer
from tests.models import LinearModel, Lookup

rng = np.random.default_rng(0)
X = rng.normal(size=(20, 3))
Y = rng.normal(size=(20, 1))


def fitted():
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    return model


@pytest.mark.parametrize(
    "X_bad, y_bad, match",
    [
        (X, Y[:10], "X has 20 samples but y has 10"),
        (X[:, :2], Y, "forward pass failed"),
        (np.where(X > 1.5, np.nan, X), Y, "NaN or infinite"),
        (X, np.full_like(Y, np.inf), "NaN or infinite"),
        (X[:0], Y[:0], "empty"),
        (np.array([["a", "b", "c"]] * 20), Y, "expected numbers"),
        ([[1.0, 2.0, 3.0], [1.0, 2.0]], Y[:2], "Ragged"),
        (X, Y.ravel(), r"y.reshape\(-1, 1\)"),
        (None, Y, "X is None"),
        (np.float64(3.0), Y, "scalar"),
    ],
    ids=[
        "sample-count",
        "feature-count",
        "nan-X",
        "inf-y",
        "empty",
        "strings",
        "ragged",
        "y-shape",
        "none",
        "scalar",
    ],
)
def test_fit_rejects_bad_data(X_bad, y_bad, match):
    with pytest.raises(MiniMLError, match=match) as info:
        fitted().fit(X_bad, y_bad)
    assert "LinearModel.fit" in str(info.value)


@pytest.mark.parametrize("reg_lambda", [-1.0, float("nan"), "strong", "1", True])
def test_fit_rejects_bad_reg_lambda(reg_lambda):
    with pytest.raises(MiniMLError, match="reg_lambda"):
        fitted().fit(X, Y, reg_lambda=reg_lambda)


def test_fit_rejects_non_optimizers():
    with pytest.raises(MiniMLError, match="optimizer must be"):
        fitted().fit(X, Y, optimizer=42)
    with pytest.raises(MiniMLError, match="unknown method 'LBFGS'"):
        fitted().fit(X, Y, optimizer="LBFGS")


def test_scipy_method_names_are_accepted_as_optimizers():
    model = fitted()
    res = model.fit(X, Y, optimizer="bfgs")
    assert res.success and res.optimizer == "bfgs"


def test_stochastic_options_are_refused_by_scipy_methods():
    with pytest.raises(MiniMLError, match="stochastic optimizers"):
        fitted().fit(X, Y, optimizer=ScipyOptimizer(), epochs=3)


def test_model_without_loss_cannot_be_fitted():
    class NoLoss(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((3, 1))
            super().__init__(loss=None)

        def _predict_kernel(self, X, buffer):
            return X @ self.w(buffer)

    model = NoLoss()
    model.bind()
    with pytest.raises(MiniMLError, match="has no loss"):
        model.fit(X, Y)
    with pytest.raises(MiniMLError, match="loss=None"):
        model.loss(Y, Y)


def test_model_without_parameters_cannot_be_fitted():
    class Empty(MiniMLModel):
        def __init__(self):
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X[:, :1]

    with pytest.raises(MiniMLError, match="no parameters"):
        Empty().fit(X, Y)


def test_fit_on_an_unbound_model_starts_from_zeros():
    model = LinearModel(3, 1)
    model.fit(X, Y, reg_lambda=0.0)
    expected = np.linalg.lstsq(np.c_[X, np.ones(20)], Y, rcond=None)[0]
    np.testing.assert_allclose(np.asarray(model.W.value), expected[:3], rtol=1e-6)


def test_pre_fit_must_name_real_parameters():
    class Bad(LinearModel):
        def _pre_fit(self, X, y):
            return {"bias"}

    model = Bad(3, 1)
    model.bind()
    with pytest.raises(MiniMLError, match=r"unknown parameter names \['bias'\]"):
        model.fit(X, Y)


def test_labels_out_of_range_are_rejected():
    model = LinearModel(3, 2, loss=CrossEntropyLogLoss(expect_labels=True))
    model.randomize(seed=0)
    labels = np.array([0, 1, 2] * 6 + [0, 1])
    with pytest.raises(MiniMLError, match=r"\[0, 2\)"):
        model.fit(X, labels)


def test_predict_checks_trailing_shape_after_fit():
    model = fitted()
    model.fit(X, Y)
    with pytest.raises(MiniMLError, match=r"fitted on X like float64\[n, 3\] .* float64\[4, 5\]"):
        model.predict(np.ones((4, 5)))
    assert model.predict(np.ones((4, 3))).shape == (4, 1)


def test_tuple_and_dict_inputs_share_the_sample_axis():
    class TwoInputs(MiniMLModel):
        def __init__(self):
            self.a = MiniMLParam((1,))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return (X["u"] + X["v"]) * self.a(buffer)

    model = TwoInputs()
    model.bind()
    u, v = rng.normal(size=(20, 1)), rng.normal(size=(20, 1))
    model.fit({"u": u, "v": v}, 2 * (u + v), reg_lambda=0.0)
    assert float(model.a.value[0]) == pytest.approx(2.0, rel=1e-8)
    with pytest.raises(MiniMLError, match="share their first"):
        model.fit({"u": u, "v": v[:5]}, u)


def test_integer_inputs_are_kept_integer():
    model = Lookup()
    model.bind()
    ids = np.array([0, 1, 2, 3, 1, 2])
    model.fit(ids, np.array([1.0, 2.0, 3.0, 4.0, 2.0, 3.0]), reg_lambda=0.0)
    np.testing.assert_allclose(np.asarray(model.table.value), [1, 2, 3, 4], rtol=1e-5)


def test_fit_warns_when_a_zero_start_cannot_train():
    from tests.models import TinyMLP

    model = TinyMLP(3, 4, 1)
    with pytest.warns(UserWarning, match=r"\['W1', 'b1', 'W2'\] have an exactly zero gradient"):
        model.fit(X, Y, optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 5}))
    assert not np.any(np.asarray(model.W1.value))  # it indeed never moved


def test_zero_start_that_can_train_does_not_warn():
    model = LinearModel(3, 1)
    model.fit(X, Y)  # filterwarnings=error: any warning would fail this test
    randomized = LinearModel(3, 1)
    randomized.randomize(seed=0)
    randomized.set_buffer(np.zeros(4))
    randomized.fit(X, Y)


def test_one_dimensional_x_for_a_matrix_model_is_reported():
    with pytest.raises(MiniMLError, match=r"forward pass failed for X like float64\[20\]"):
        fitted().fit(X[:, 0], Y)


def test_object_arrays_are_rejected():
    objects = np.empty((20, 3), dtype=object)
    objects[:] = 1.0
    with pytest.raises(MiniMLError, match="dtype object"):
        fitted().fit(objects, Y)


def test_integer_targets_of_a_regression_loss_fit_like_floats():
    y_int = np.round(Y * 10).astype(np.int64)
    a, b = fitted(), fitted()
    res_int = a.fit(X, y_int)
    res_float = b.fit(X, y_int.astype(np.float64))
    assert res_int.loss == res_float.loss
    np.testing.assert_array_equal(np.asarray(a.get_buffer()), np.asarray(b.get_buffer()))


BAD_FIT_OPTIONS = {
    "batch-size-0": ({"batch_size": 0}, "batch_size must be a positive int, got 0; pass e.g."),
    "batch-size-float": ({"batch_size": 2.5}, "batch_size must be a positive int, got 2.5"),
    "batch-size-too-large": (
        {"batch_size": 21},
        "batch_size=21 is larger than the 20 samples; use batch_size <= 20",
    ),
    "epochs-0": ({"epochs": 0}, "epochs must be a positive int (passes over the data), got 0"),
    "epochs-bool": ({"epochs": True}, "epochs must be a positive int"),
    "chunk-size": ({"chunk_size": -3}, "chunk_size must be a positive int, got -3"),
    "chunk-size-with-only-stochastic-stages": (
        {"chunk_size": 5, "optimizer": Adam(lr=0.1), "epochs": 2, "batch_size": 4},
        "chunk_size applies to full-batch optimizers (SciPy, LBFGS), and every stage here is "
        "stochastic, got chunk_size=5",
    ),
    "validation-freq": ({"validation_freq": 0}, "validation_freq must be an int >= 1, got 0"),
    "validation-freq-bool": ({"validation_freq": True}, "validation_freq must be an int >= 1"),
    "validation-freq-numpy-bool": (
        {"validation_freq": np.True_},
        "validation_freq must be an int >= 1, got np.True_",
    ),
    "validation-freq-float": ({"validation_freq": 2.0}, "validation_freq must be an int >= 1"),
    "seed": ({"seed": "x"}, "seed must be an int in [0, 2**63), got 'x'"),
    "seed-negative": ({"seed": -1}, "seed must be an int in [0, 2**63), got -1"),
    "seed-too-large": ({"seed": 2**63}, "seed must be an int in [0, 2**63)"),
    "callbacks": ({"callbacks": [print]}, "callbacks must be Callback objects"),
    "stage-hook": ({"stage_hook": 3}, "stage_hook must be callable, got 3"),
    "empty-optimizer-list": ({"optimizer": []}, "optimizer is an empty list"),
}


@pytest.mark.parametrize("case", list(BAD_FIT_OPTIONS))
def test_bad_fit_options_are_rejected(case):
    options, fragment = BAD_FIT_OPTIONS[case]
    model = fitted()
    before = np.asarray(model.get_buffer()).copy()
    with pytest.raises(MiniMLError) as info:
        model.fit(X, Y, **options)
    assert str(info.value).startswith("LinearModel.fit: ")
    assert fragment in str(info.value)
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), before)


@pytest.mark.parametrize(
    "freq", [np.int64(2), np.int32(2), np.uint8(2)], ids=["int64", "int32", "uint8"]
)
def test_validation_freq_accepts_numpy_integers(freq):
    # as epochs, batch_size and chunk_size do: a numpy integer is an int.
    model = fitted()
    res = model.fit(X, Y, validation_data=(X, Y), validation_freq=freq)
    val_loss = res.history.column("val_loss")
    assert len(val_loss) >= 2
    assert [v is not None for v in val_loss] == [i % 2 == 0 for i in range(1, len(val_loss) + 1)]


def test_unknown_fit_options_are_rejected():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['learning_rate'\]"):
        fitted().fit(X, Y, learning_rate=0.1)


def test_checks_remembered_between_fits_still_catch_new_bad_inputs():
    # Repeated fits skip re-checking a jax array already found finite and re-tracing a
    # forward pass of known shapes; a new array or a new shape is still checked.
    import jax.numpy as jnp

    rng = np.random.default_rng(3)
    X = jnp.asarray(rng.normal(size=(40, 3)))
    Y = jnp.asarray(rng.normal(size=(40, 2)))
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    for _ in range(2):
        model.fit(X, Y, reg_lambda=0.1)
    with pytest.raises(MiniMLError, match="NaN or infinite"):
        model.fit(X.at[0, 0].set(jnp.nan), Y, reg_lambda=0.1)
    with pytest.raises(MiniMLError, match="NaN or infinite"):
        model.fit(X, Y.at[3, 1].set(jnp.inf), reg_lambda=0.1)
    with pytest.raises(MiniMLError, match="forward pass failed"):
        model.fit(X[:, :2], Y, reg_lambda=0.1)


class _LinearWithLoss(MiniMLModel):
    def __init__(self, loss):
        self.W = MiniMLParam((3, 1))
        super().__init__(loss=loss)

    def _predict_kernel(self, X, buffer):
        return X @ self.W(buffer)


def test_a_loss_that_returns_an_array_is_reported_before_fitting():
    # Unreduced squared errors used to fail deep in the objective with a reshape error.
    model = _LinearWithLoss(lambda y_true, y_pred: (y_pred - y_true) ** 2)
    model.randomize(seed=0)
    with pytest.raises(MiniMLError) as info:
        model.fit(X[:, :3], Y)
    message = str(info.value)
    assert message.startswith("_LinearWithLoss.fit: the loss <lambda> returned an array of ")
    assert "shape (20, 1)" in message and "must return a scalar" in message


def test_a_loss_with_one_element_still_fits():
    # (1,)-shaped sums reshape to a scalar, as they always did.
    model = _LinearWithLoss(lambda y_true, y_pred: jnp.sum((y_pred - y_true) ** 2, axis=0))
    model.randomize(seed=0)
    model.fit(X[:, :3], Y)
    expected, *_ = np.linalg.lstsq(X[:, :3], Y, rcond=None)
    np.testing.assert_allclose(np.asarray(model.W.value), expected, rtol=1e-6)
