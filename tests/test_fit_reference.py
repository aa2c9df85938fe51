"""Full fits against closed forms and scikit-learn."""

import numpy as np
import pytest
from sklearn.datasets import make_regression
from sklearn.linear_model import LogisticRegression

from miniml.loss import BinaryCrossEntropyLogLoss, squared_error_loss
from miniml.optim import ScipyOptimizer
from tests.models import LinearModel

TIGHT = ScipyOptimizer("L-BFGS-B", options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-10})
NEWTON = ScipyOptimizer("trust-exact", options={"gtol": 1e-9})


def relative_error(actual, expected):
    """||actual - expected|| / ||expected||, the usual relative error of a vector."""
    actual, expected = np.ravel(actual), np.ravel(expected)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def _regression(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=(d, 1)) + 0.5 + 0.1 * rng.normal(size=(n, 1))
    return X, y


@pytest.mark.parametrize("optimizer", [TIGHT, NEWTON], ids=["L-BFGS-B", "trust-exact"])
def test_least_squares_matches_closed_form(optimizer):
    X, y = _regression()
    model = LinearModel(5, 1)
    model.randomize(seed=0)
    res = model.fit(X, y, reg_lambda=0.0, optimizer=optimizer)
    Xb = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(Xb, y, rcond=None)[0]
    fitted = np.r_[np.asarray(model.W.value).ravel(), np.asarray(model.b.value)]
    assert relative_error(fitted, coef) <= 1e-8
    optimum = float(np.sum((Xb @ coef - y) ** 2))
    assert res.loss == pytest.approx(optimum, rel=1e-12)
    assert res.success


@pytest.mark.parametrize("optimizer", [TIGHT, NEWTON], ids=["L-BFGS-B", "trust-exact"])
def test_ridge_matches_closed_form(optimizer):
    X, y = _regression(seed=1)
    lam = 3.0
    model = LinearModel(5, 1, bias=False)
    model.randomize(seed=0)
    model.fit(X, y, reg_lambda=lam, optimizer=optimizer)
    # argmin ||Xw - y||^2 + lam ||w||^2  (the penalty is not halved)
    w = np.linalg.solve(X.T @ X + lam * np.eye(5), X.T @ y)
    assert relative_error(model.W.value, w) <= 1e-8


def test_lecture_regression_reaches_least_squares_optimum():
    X, y = make_regression(
        n_samples=10000, n_features=20, n_informative=4, bias=3, noise=1, random_state=1234
    )
    X = np.c_[np.ones(len(y)), X]
    model = LinearModel(21, 1, bias=False, loss=squared_error_loss)
    model.bind()
    res = model.fit(X, y[:, None], reg_lambda=0.0, optimizer=TIGHT)
    assert res.loss == pytest.approx(10105.859508383426, rel=1e-10)


def test_logistic_regression_matches_sklearn():
    """sklearn minimizes C * sum(logloss) + ||w||^2 / 2 (intercept unpenalized).

    Dividing by C gives MiniML's sum(logloss) + reg_lambda * ||w||^2 with
    reg_lambda = 1 / (2 C).
    """
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    labels = (X @ np.array([1.5, -2.0, 0.5, 0.0]) + 0.3 + rng.normal(size=300) > 0).astype(int)
    C = 0.7
    sk = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, labels)
    model = LinearModel(4, 1, loss=BinaryCrossEntropyLogLoss())
    model.randomize(seed=0)
    res = model.fit(X, labels[:, None].astype(float), reg_lambda=1 / (2 * C), optimizer=TIGHT)
    np.testing.assert_allclose(np.asarray(model.W.value).ravel(), sk.coef_.ravel(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.b.value), sk.intercept_, rtol=1e-6)
    z = X @ sk.coef_.ravel() + sk.intercept_[0]
    sk_objective = np.sum(np.logaddexp(0, z) - labels * z) + np.sum(sk.coef_**2) / (2 * C)
    assert res.loss == pytest.approx(sk_objective, rel=1e-10)
    assert res.loss <= sk_objective * (1 + 1e-12)
