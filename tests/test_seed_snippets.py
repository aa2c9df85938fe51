"""The code snippets of MiniML's documentation (seeds 000 and 001) run as written."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from miniml import MiniMLModel, MiniMLParam
from miniml.loss import LNormRegularization, cross_entropy_loss


class LinearModel(MiniMLModel):
    def __init__(self, n_in: int, n_out: int):
        self._W = MiniMLParam((n_in, n_out), reg_loss=LNormRegularization(2))
        self._b = MiniMLParam((n_out,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self._W(buffer) + self._b(buffer)


class MyClassifier(MiniMLModel):
    def __init__(self, n_in: int, n_classes: int):
        self._W = MiniMLParam((n_in, n_classes), reg_loss=LNormRegularization(2), reg_scale=0.1)
        super().__init__(loss=cross_entropy_loss)

    def _predict_kernel(self, X, buffer):
        return jnp.exp(X @ self._W(buffer)) / jnp.sum(
            jnp.exp(X @ self._W(buffer)), axis=1, keepdims=True
        )


def _data(seed=0, n=80):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.25
    return X, y


def test_fitting_success_snippet(capsys):
    X, y = _data()
    lin_model = LinearModel(3, 1)
    lin_model.randomize()
    res = lin_model.fit(X, y)

    print(f"Fit converged: {res.success}")
    print(f"Final loss: {res.loss}")

    out = capsys.readouterr().out
    assert "Fit converged: True" in out
    assert res.loss == pytest.approx(float(lin_model.total_loss(y, lin_model.predict(X))))


def test_custom_optimizer_snippet():
    from miniml.optim import ScipyOptimizer

    X, y = _data(1)
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    optimizer = ScipyOptimizer(method="BFGS", options={"maxiter": 100})
    res = model.fit(X, y, optimizer=optimizer)
    assert res.success
    assert res.n_iterations <= 100


def test_loss_snippets_classifier_and_loss_order():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 2))
    labels = (X[:, 0] + X[:, 1] > 0).astype(int)
    y = np.eye(2)[labels]
    model = MyClassifier(2, 2)
    model.randomize(seed=0)
    model.fit(X, y, reg_lambda=0.01)
    y_hat = model.predict(X)
    print(f"Final loss = {model.loss(y, y_hat)}")
    expected = -np.sum(y * np.log(np.asarray(y_hat)))
    assert float(model.loss(y, y_hat)) == pytest.approx(expected, rel=1e-12)
    assert np.mean(np.argmax(np.asarray(y_hat), axis=1) == labels) > 0.95


def test_reg_scale_snippet_multiplies_the_penalty():
    M = MiniMLParam((3, 2), reg_loss=LNormRegularization(2), reg_scale=0.1)
    assert M.reg_scale == 0.1
    model = MyClassifier(3, 2)
    model.bind()
    model.set_buffer(jnp.ones(6))
    y = np.eye(2)[[0, 1]]
    y_hat = np.full((2, 2), 0.5)
    total = model.total_loss(y, y_hat, reg_lambda=2.0)
    assert float(total) == pytest.approx(2 * np.log(2) + 2.0 * 0.1 * 6.0, rel=1e-14)


def test_pre_fit_parameters_stay_fixed():
    class Centered(MiniMLModel):
        def __init__(self):
            self.offset = MiniMLParam((1,))
            self.slope = MiniMLParam((1, 1))
            super().__init__()

        def _pre_fit(self, X, y):
            self.fixed_offset = jnp.mean(y, axis=0)
            self.set_params({"offset": self.fixed_offset})
            return {"offset"}

        def _predict_kernel(self, X, buffer):
            return X @ self.slope(buffer) + self.offset(buffer)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 1))
    y = 3.0 * X + 10.0
    model = Centered()
    model.randomize(seed=0)
    model.fit(X, y, reg_lambda=0.0)
    # set by _pre_fit and bit-identical after the fit
    np.testing.assert_array_equal(model.offset.value, model.fixed_offset)
    assert float(model.offset.value[0]) == pytest.approx(np.mean(y), rel=1e-14)
    # slope that minimizes sum (y - mean(y) - s x)^2 with the offset held fixed
    least_squares = np.sum(X * (y - y.mean())) / np.sum(X * X)
    assert float(model.slope.value[0, 0]) == pytest.approx(least_squares, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["L-BFGS-B", "LBFGS", "Adam"])
def test_pre_fit_may_fix_every_parameter(optimizer):
    """A closed form computed in _pre_fit leaves nothing to optimize: the fit succeeds
    with zero iterations (as miniml-jax reports it) and the model keeps the closed form."""
    from miniml.optim import LBFGS, Adam

    class ClosedForm(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((2, 1))
            super().__init__()

        def _pre_fit(self, X, y):
            self.set_params({"w": np.linalg.lstsq(np.asarray(X), np.asarray(y), rcond=None)[0]})
            return {"w"}

        def _predict_kernel(self, X, buffer):
            return X @ self.w(buffer)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = X @ np.array([[1.0], [-2.0]]) + 0.1 * rng.normal(size=(30, 1))
    model = ClosedForm()
    model.randomize(seed=0)
    chosen = {"L-BFGS-B": "L-BFGS-B", "LBFGS": LBFGS(), "Adam": Adam()}[optimizer]
    res = model.fit(X, y, reg_lambda=0.0, optimizer=chosen)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    assert res.success and res.n_iterations == 0 and len(res.history) == 0
    assert "No parameters left to fit after pre-fitting" in res.message
    np.testing.assert_array_equal(np.asarray(model.w.value), w)
    assert res.loss == pytest.approx(float(np.sum((X @ w - y) ** 2)), rel=1e-12)


def test_batch_fitting_recipe(count_compilations):
    from miniml.optim.scipy import ScipyOptimizer

    rng = np.random.default_rng(4)
    true_w = np.array([[2.0], [-1.0], [0.5]])
    training_batches = []
    for _ in range(6):
        X = rng.normal(size=(100, 3))
        training_batches.append((X, X @ true_w + 0.1 * rng.normal(size=(100, 1))))

    def reg_strength(i):
        return 1.0 / (i + 1)

    model = LinearModel(3, 1)
    model.randomize(seed=0)
    optimizer = ScipyOptimizer(method="L-BFGS-B", options={"maxiter": 5})

    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 iterations per batch: not converged on purpose
        for i, (X, y) in enumerate(training_batches):
            reg_lambda = reg_strength(i)  # This could be changing based on iteration
            with count_compilations() as counted:
                res = model.fit(X, y, reg_lambda=reg_lambda, optimizer=optimizer)
            print(f"Batch {i + 1} | Loss = {res.loss}")
            losses.append(res.loss)
            if i > 0:
                assert counted.n == 0
    np.testing.assert_allclose(np.asarray(model._W.value), true_w, atol=0.05)
    assert losses[-1] < losses[0]
