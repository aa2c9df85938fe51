"""The scikit-learn estimators `MiniMLRegressor` and `MiniMLClassifier`.

References are independent: scikit-learn's ``Ridge`` (the default regressor's
objective), ``LogisticRegression`` at ``C = 1 / (2 reg_lambda)`` (the default
classifier's), and scikit-learn's own estimator checks.

scikit-learn's estimator checks
-------------------------------
Every check scikit-learn 1.9 runs on these estimators passes, so the dict of expected
failures handed to ``parametrize_with_checks`` is empty, and ``xfail_strict=True``
makes any entry added to it later fail once the check passes. Checks that do not
apply, and so are not run or end early:

* ``check_array_api_input``: scikit-learn skips it (a pytest skip) unless the
  environment variable ``SCIPY_ARRAY_API=1`` is set;
  `test_array_api_check_passes_with_scipy_array_api_set` runs it with the variable
  set. The estimators do not declare array-API support (MiniML computes with JAX and
  returns numpy arrays), so only the numpy variant applies.
* sample-weight checks (``check_sample_weights_*``,
  ``check_sample_weight_equivalence_*``): ``fit`` has no ``sample_weight``, because
  MiniML's losses have no per-sample weights; ``check_classifiers_one_label_sample_weights``
  only verifies that passing one is refused.
* ``check_class_weight_*``: no ``class_weight`` parameter (same reason).
* multi-label classifier checks: the classifier handles one label per sample.
* ``check_estimators_partial_fit_n_features``: no ``partial_fit``; it returns at once.

Fits run under ``filterwarnings = error``: a `miniml.errors.ConvergenceWarning` on any
check's data set would fail the test (the default L-BFGS-B converges on all of them).
"""

from __future__ import annotations

import importlib
import pickle
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_array_api_input, parametrize_with_checks

from miniml import MiniMLModel, MiniMLParam
from miniml.callbacks import LambdaCallback
from miniml.errors import ConvergenceWarning, MiniMLError
from miniml.loss import (
    BinaryCrossEntropyLogLoss,
    CrossEntropyLogLoss,
    LNormRegularization,
    cross_entropy_loss,
    squared_error_loss,
)
from miniml.nn import Linear
from miniml.optim import ScipyOptimizer
from miniml.sklearn import (
    MiniMLClassifier,
    MiniMLRegressor,
    linear_regression_model,
    logistic_regression_model,
)
from tests.models import TinyMLP

EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "MiniMLRegressor": {},
    "MiniMLClassifier": {},
}
"""Checks expected to fail, with the reason, per estimator (none; see the module doc)."""

# A trust-region method with exact Hessian-vector products reaches the optima of these
# small convex problems to ~1e-9 (relative) without warnings. Line-search methods are
# brittle here: BFGS and Newton-CG can end with "precision loss" and L-BFGS-B
# "ABNORMAL" once the gradient is at round-off level (which start point triggers it
# changes with the random initialization), and filterwarnings = error turns their
# ConvergenceWarning into a failure.
ACCURATE = "trust-krylov"


def _expected_failures(estimator):
    return EXPECTED_FAILED_CHECKS[type(estimator).__name__]


@parametrize_with_checks(
    [MiniMLRegressor(), MiniMLClassifier()],
    expected_failed_checks=_expected_failures,
    xfail_strict=True,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [MiniMLRegressor(), MiniMLClassifier()], ids=repr)
def test_array_api_check_passes_with_scipy_array_api_set(estimator, monkeypatch):
    # scikit-learn skips this check unless SCIPY_ARRAY_API=1, which makes SciPy accept
    # other array libraries when it is imported. Its numpy variant passes numpy arrays
    # only, which SciPy handles the same either way, so setting the variable here (after
    # SciPy's import) runs the check faithfully.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check_array_api_input(
        type(estimator).__name__,
        estimator,
        array_namespace="numpy",
        expect_only_array_outputs=False,
    )


# ------------------------------------------------------------------ references
def _classification(n_classes, n_samples=120, seed=0):
    X, y = make_classification(
        n_samples=n_samples,
        n_features=5,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        flip_y=0.1,
        random_state=seed,
    )
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize(
    "labels",
    [np.array([-1, 7]), np.array(["setosa", "virginica", "versicolor"])],
    ids=["binary", "multinomial"],
)
def test_default_classifier_matches_logistic_regression(labels):
    X, codes = _classification(len(labels))
    y = labels[codes]  # arbitrary labels: negative ints, unsorted strings
    C = 0.5
    ref = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    clf = MiniMLClassifier(reg_lambda=1 / (2 * C), optimizer=ACCURATE).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ref.classes_)
    W = np.asarray(clf.model_.params["W"].value).T
    b = np.asarray(clf.model_.params["b"].value)
    np.testing.assert_allclose(W, ref.coef_, rtol=1e-5)
    # Softmax logits are unchanged by a common shift of the (unpenalized) intercepts;
    # both fits start from zero intercepts and keep their sum at zero.
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-5)
    np.testing.assert_allclose(
        clf.decision_function(X), ref.decision_function(X), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(clf.predict(X), ref.predict(X))
    assert clf.score(X, y) == ref.score(X, y)


def test_default_regressor_is_ridge_with_alpha_reg_lambda():
    X, Y = make_regression(n_samples=60, n_features=6, n_targets=2, noise=5.0, random_state=1)
    for y in (Y[:, 0], Y):
        ref = Ridge(alpha=3.0).fit(X, y)
        reg = MiniMLRegressor(reg_lambda=3.0, optimizer=ACCURATE).fit(X, y)
        pred = reg.predict(X)
        assert pred.shape == y.shape
        np.testing.assert_allclose(pred, ref.predict(X), rtol=1e-7)
        W = np.asarray(reg.model_.params["W"].value)
        np.testing.assert_allclose(W.T.reshape(np.shape(ref.coef_)), ref.coef_, rtol=1e-7)
    # A DataFrame's column names are kept and checked, as scikit-learn does.
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    reg = MiniMLRegressor(reg_lambda=3.0, optimizer=ACCURATE).fit(frame, Y[:, 0])
    assert list(reg.feature_names_in_) == list(frame.columns)
    np.testing.assert_allclose(reg.predict(frame), Ridge(alpha=3.0).fit(X, Y[:, 0]).predict(X))
    with pytest.raises(ValueError, match="feature names"):
        reg.predict(frame.rename(columns={"x0": "other"}))


# ------------------------------------------------------------ model selection
def test_grid_search_over_reg_lambda_and_optimizer_agrees_with_ridge():
    # Few noisy samples and many features: too little regularization overfits, too
    # much underfits, so the best reg_lambda lies inside the grid.
    X, y = make_regression(n_samples=45, n_features=25, n_informative=5, noise=20.0, random_state=3)
    cv = KFold(3, shuffle=True, random_state=0)  # equal folds: one compile per shape
    grid = [0.01, 1.0, 100.0]
    ridge = GridSearchCV(Ridge(), {"alpha": grid}, cv=cv).fit(X, y)
    search = GridSearchCV(
        MiniMLRegressor(),
        {"reg_lambda": grid, "optimizer": ["BFGS", ScipyOptimizer("Newton-CG")]},
        cv=cv,
    ).fit(X, y)
    assert search.best_params_["reg_lambda"] == ridge.best_params_["alpha"]
    assert grid[0] < search.best_params_["reg_lambda"] < grid[-1]
    results = search.cv_results_
    for optimizer in search.param_grid["optimizer"]:  # both find Ridge's optimum
        rows = [i for i, p in enumerate(results["params"]) if p["optimizer"] == optimizer]
        assert [results["params"][i]["reg_lambda"] for i in rows] == grid
        np.testing.assert_allclose(
            results["mean_test_score"][rows], ridge.cv_results_["mean_test_score"], rtol=1e-5
        )
    assert isinstance(search.best_estimator_, MiniMLRegressor)
    np.testing.assert_allclose(search.predict(X), ridge.predict(X), rtol=1e-4)


def test_cross_val_score_of_pipeline_with_standard_scaler():
    X, y = _classification(3, seed=4)
    X = X * [1.0, 100.0, 0.01, 5.0, 1.0] + 3.0  # scaling matters for the penalty
    C = 0.2
    ours = cross_val_score(
        make_pipeline(
            StandardScaler(), MiniMLClassifier(reg_lambda=1 / (2 * C), optimizer=ACCURATE)
        ),
        X,
        y,
        cv=3,
    )
    ref = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=1e-10)), X, y, cv=3
    )
    np.testing.assert_array_equal(ours, ref)
    assert ours.mean() > 0.6
    r2 = cross_val_score(
        make_pipeline(StandardScaler(), MiniMLRegressor()), X, X[:, 0] - X[:, 1], cv=3
    )
    assert np.all(r2 > 0.99)


def test_clone_copies_parameters_and_drops_fitted_state():
    X, y = _classification(2)
    optimizer = ScipyOptimizer("BFGS", options={"gtol": 1e-5})
    original = MiniMLClassifier(reg_lambda=0.3, optimizer=optimizer, random_state=5).fit(X, y)
    copy = clone(original)
    assert copy.get_params() == original.get_params() | {"optimizer": copy.optimizer}
    assert copy.optimizer is not original.optimizer  # optimizer objects are deep-copied
    assert copy.optimizer.options == original.optimizer.options
    with pytest.raises(NotFittedError):
        copy.predict(X)
    np.testing.assert_array_equal(copy.fit(X, y).predict_proba(X), original.predict_proba(X))
    copy.set_params(reg_lambda=100.0)
    assert copy.reg_lambda == 100.0 and original.reg_lambda == 0.3


# ---------------------------------------------------------------- determinism
def _mlp(n_features, n_outputs):
    return TinyMLP(n_features, 4, n_outputs)


def test_results_are_deterministic_for_a_fixed_random_state():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = np.sin(2 * X[:, 0]) * X[:, 1]
    first = MiniMLRegressor(_mlp, random_state=7).fit(X, y)
    again = MiniMLRegressor(_mlp, random_state=7).fit(X, y)
    np.testing.assert_array_equal(first.model_.get_buffer(), again.model_.get_buffer())
    # A RandomState draws a new seed for every fit: each fit starts elsewhere.
    drawn = MiniMLRegressor(_mlp, random_state=np.random.RandomState(7))
    starts = [drawn.fit(X, y).history_.column("loss")[0] for _ in range(2)]
    assert len({starts[0], starts[1], first.history_.column("loss")[0]}) == 3


def test_default_models_start_from_zeros_so_random_state_does_not_matter():
    for factory in (linear_regression_model, logistic_regression_model):
        for n in (1, 2, 3):
            assert not np.any(np.asarray(factory(4, n).get_buffer()))
    X, y = _classification(3)
    fits = [MiniMLClassifier(random_state=seed).fit(X, y) for seed in (0, None)]
    np.testing.assert_array_equal(fits[0].model_.get_buffer(), fits[1].model_.get_buffer())


# --------------------------------------------------------- other model kinds
class _SoftmaxProbabilities(MiniMLModel):
    """Outputs probabilities itself, fitted with `cross_entropy_loss`."""

    def __init__(self, n_features, n_classes):
        self.W = MiniMLParam((n_features, n_classes), reg_loss=LNormRegularization(2))
        self.b = MiniMLParam((n_classes,))
        super().__init__(loss=cross_entropy_loss)

    def _predict_kernel(self, X, buffer):
        return jax.nn.softmax(X @ self.W(buffer) + self.b(buffer), axis=1)


class _VectorLogit(MiniMLModel):
    """A binary model whose logit has shape (n,), fitted with BCE."""

    def __init__(self, n_features, n_classes):
        self.w = MiniMLParam((n_features,), reg_loss=LNormRegularization(2))
        self.c = MiniMLParam(())
        super().__init__(loss=BinaryCrossEntropyLogLoss())

    def _predict_kernel(self, X, buffer):
        return X @ self.w(buffer) + self.c(buffer)


def _zero_ref_logits(n_features, n_classes):
    return Linear(n_features, n_classes - 1, loss=CrossEntropyLogLoss(zero_ref=True))


FACTORIES = {
    "zero_ref_logits": (3, _zero_ref_logits),
    "probabilities": (3, _SoftmaxProbabilities),
    "vector_logit": (2, _VectorLogit),
}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_other_output_kinds_give_the_maximum_likelihood_probabilities(name):
    # Without a penalty every parameterization reaches the same maximum-likelihood
    # probabilities (unique for non-separable data), which LogisticRegression(C=inf)
    # computes too.
    n_classes, factory = FACTORIES[name]
    X, y = _classification(n_classes, n_samples=60, seed=2)
    ref = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12).fit(X, y)
    clf = MiniMLClassifier(factory, reg_lambda=0.0, optimizer=ACCURATE).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-4)
    np.testing.assert_allclose(clf.predict_log_proba(X), ref.predict_log_proba(X), rtol=1e-4)
    np.testing.assert_array_equal(clf.predict(X), ref.predict(X))
    # Pickling stores a fresh copy of the fitted model (compiled code cannot be pickled).
    restored = pickle.loads(pickle.dumps(clf))
    assert restored.model_ is not clf.model_
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


# ------------------------------------------------------------ fit behaviour
def test_fit_options_reach_the_fit_and_history_is_kept():
    X, y = _classification(2)
    seen = []
    est = MiniMLClassifier(
        fit_options={"callbacks": [LambdaCallback(on_iteration_end=lambda s, r: seen.append(r))]}
    ).fit(X, y)
    assert est.result_.success
    assert len(seen) == len(est.history_) == est.n_iter_ > 0
    assert est.history_.column("loss")[-1] == pytest.approx(est.result_.loss)


def test_non_convergence_warns_and_leaves_a_fitted_estimator():
    X, y = _classification(3)
    est = MiniMLClassifier(optimizer=ScipyOptimizer("L-BFGS-B", options={"maxiter": 1}))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est.fit(X, y)
    assert est.result_.success is False
    assert est.predict_proba(X).shape == (len(X), 3)


def test_default_models_of_one_structure_share_compiled_code(count_compilations):
    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    first = MiniMLRegressor(random_state=0).fit(X, y)
    before = first.predict(X)
    with count_compilations() as counted:
        second = MiniMLRegressor(reg_lambda=50.0, random_state=1).fit(X[::-1], 2 * y[::-1])
        second_pred = second.predict(X)
    assert counted.n == 0
    assert second.model_ is not first.model_
    np.testing.assert_array_equal(first.predict(X), before)  # unaffected by the second fit
    np.testing.assert_allclose(second_pred, Ridge(alpha=50.0).fit(X, 2 * y).predict(X), rtol=1e-4)


# ------------------------------------------------------------------- errors
def _fit_error(estimator, X=None, y=None, match=""):
    if X is None:
        X, y = _classification(2, n_samples=20)
    with pytest.raises(MiniMLError, match=match) as info:
        estimator.fit(X, y)
    return str(info.value)


def test_a_built_model_instead_of_a_factory_is_refused_with_the_fix():
    message = _fit_error(MiniMLClassifier(Linear(5, 2)), match="factory")
    assert "MiniMLClassifier.fit" in message and "lambda n_features, n_classes" in message


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"fit_options": {"seed": 3}}, "random_state"),
        ({"fit_options": {"reg_lambda": 3}}, "set_params\\(reg_lambda"),
        ({"fit_options": {"epoch": 3}}, "unknown key 'epoch'.*'epochs'"),
        ({"fit_options": [("epochs", 3)]}, "must be a dict"),
        ({"reg_lambda": -1.0}, "reg_lambda must be finite and >= 0, got -1.0"),
        ({"reg_lambda": "big"}, "reg_lambda must be a real number"),
        ({"random_state": "seed"}, "random_state must be an int"),
        ({"model": 3}, "model must be None or a callable"),
        ({"model": lambda n, k: "not a model"}, "returned str, expected a MiniMLModel"),
        ({"optimizer": "no-such-method"}, "unknown method 'no-such-method'"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, match):
    message = _fit_error(MiniMLRegressor(**params), match=match)
    assert message.startswith(("MiniMLRegressor.fit", "ScipyOptimizer"))


def test_classifier_refuses_a_loss_it_cannot_turn_into_probabilities():
    _fit_error(
        MiniMLClassifier(lambda n, k: Linear(n, k, loss=squared_error_loss)),
        match="CrossEntropyLogLoss",
    )


def test_classifier_refuses_outputs_of_the_wrong_width():
    _fit_error(
        MiniMLClassifier(lambda n, k: Linear(n, k + 1, loss=CrossEntropyLogLoss())),
        match=r"must output shape \(20, 2\) for 2 classes.*\(20, 3\)",
    )


def test_regressor_refuses_outputs_that_do_not_match_y():
    X, y = make_regression(n_samples=20, n_features=3, random_state=0)
    _fit_error(
        MiniMLRegressor(lambda n, k: Linear(n, 2)),
        X,
        y,
        match=r"predicts shape \(20, 2\).*y has shape \(20,\)",
    )


def test_classifier_needs_two_classes():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="only one class"):
        MiniMLClassifier().fit(X, ["a"] * 4)


@pytest.mark.parametrize("estimator", [MiniMLRegressor, MiniMLClassifier])
@pytest.mark.parametrize("masked", ["X", "y", "predict"])
def test_masked_entries_are_refused_not_dropped(estimator, masked):
    # scikit-learn's validate_data would use the values under the mask.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = (X[:, 0] > 0).astype(float)
    hide = np.zeros(20, bool)
    hide[[2, 5]] = True
    X_masked = np.ma.masked_array(X, mask=np.repeat(hide[:, None], 3, axis=1))
    y_masked = np.ma.masked_array(y, mask=hide)
    fitted = estimator().fit(X, y)
    method, label = ("fit", masked) if masked != "predict" else ("predict", "X")
    message = rf"{estimator.__name__}\.{method}: {label} is a masked array with \d+ masked"
    with pytest.raises(MiniMLError, match=message):
        if masked == "X":
            estimator().fit(X_masked, y)
        elif masked == "y":
            estimator().fit(X, y_masked)
        else:
            fitted.predict(X_masked)
    if masked == "X":  # rows given as masked arrays: np.asarray would drop their masks
        with pytest.raises(MiniMLError, match=message):
            estimator().fit(list(X_masked), y)
    no_mask = np.ma.masked_array(X, mask=False)
    np.testing.assert_array_equal(fitted.predict(no_mask), fitted.predict(X))


def _forget_miniml_sklearn(monkeypatch):
    """Drop miniml.sklearn from sys.modules (restored after the test) to import it anew."""
    for name in [m for m in sys.modules if m.split(".")[:2] == ["miniml", "sklearn"]]:
        monkeypatch.delitem(sys.modules, name)


def test_import_without_scikit_learn_says_how_to_install(monkeypatch):
    _forget_miniml_sklearn(monkeypatch)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` fail
    with pytest.raises(ImportError, match=r"needs scikit-learn.*pip install scikit-learn"):
        importlib.import_module("miniml.sklearn")


def test_import_with_an_old_scikit_learn_says_to_upgrade(monkeypatch):
    import sklearn

    _forget_miniml_sklearn(monkeypatch)
    monkeypatch.setattr(sklearn, "__version__", "1.5.2")
    with pytest.raises(ImportError, match=r"needs scikit-learn >= 1.6.*1\.5\.2 is installed"):
        importlib.import_module("miniml.sklearn")
