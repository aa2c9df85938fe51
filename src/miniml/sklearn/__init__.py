"""scikit-learn estimators around MiniML models: `MiniMLRegressor` and `MiniMLClassifier`.

They follow scikit-learn's conventions (``fit`` returns ``self``; ``get_params`` /
``set_params``; ``predict``, ``predict_proba``, ``decision_function``, ``score``;
fitted attributes end in ``_``; inputs are validated with scikit-learn's
``validate_data``), so `sklearn.base.clone`, `Pipeline`, `cross_val_score` and
`GridSearchCV` work, e.g. over ``reg_lambda`` and ``optimizer``::

    GridSearchCV(MiniMLClassifier(), {"reg_lambda": [0.01, 0.1, 1.0],
                                      "optimizer": ["L-BFGS-B", "Newton-CG"]})

The ``model`` parameter is a *factory* ``model(n_features, n) -> MiniMLModel`` (a model
class works when its constructor takes those two numbers first), not a built model:
scikit-learn clones estimators from their constructor parameters, and each ``fit``
builds a new model. scikit-learn is an optional dependency of MiniML; importing this
module without it raises an ImportError that says how to install it.

Objective and ``C``
-------------------
The fit minimizes MiniML's objective ``loss(y, f(X)) + reg_lambda * penalty`` with the
model's own loss, which for the default models is a *sum* over samples (as in
``Ridge`` and ``LogisticRegression``): the default regressor is ``Ridge(alpha=
reg_lambda)``, and the default classifier is ``LogisticRegression(C=C)`` at
``reg_lambda = 1 / (2 C)`` (scikit-learn minimizes ``C * sum(loss) + ||W||^2 / 2``).
The default models start from zeros, as scikit-learn's linear models do, so their
fits do not depend on ``random_state``.

Non-convergence
---------------
When an optimizer stops before converging, MiniML's `miniml.errors.ConvergenceWarning`
reaches the caller unchanged and ``result_.success`` is False; the estimator is still
fitted, as scikit-learn's estimators do. The default optimizer is SciPy's L-BFGS-B
with SciPy's default limits (15000 iterations), which converges on the strictly
convex default models, including on every data set of scikit-learn's estimator checks
(the tests run with warnings as errors). Pass ``optimizer=ScipyOptimizer("L-BFGS-B",
options={"maxiter": ...})`` to change the limits. Tolerances near machine precision
can end in SciPy's "ABNORMAL" or "precision loss" status at the optimum, which MiniML
also reports as a ConvergenceWarning; SciPy's default tolerances avoid that.

Compiled code
-------------
MiniML compiles a model's objective and forward pass once per model and input shape.
Every ``fit`` builds a new model, so a fit of a model from your factory compiles
again (about a second on a small CPU). The default models are the exception: models
of one structure share their compiled code, so cross-validation and grid searches
over them compile once per data shape. For your own models,
`miniml.enable_compilation_cache` (or ``MINIML_COMPILATION_CACHE=1``) lets identical
programs load from disk instead of compiling.

scikit-learn's estimator checks
-------------------------------
Both estimators pass every check of `sklearn.utils.estimator_checks.check_estimator`
(scikit-learn 1.9), with no expected failures; ``tests/test_sklearn.py`` runs them
with ``parametrize_with_checks`` and an empty ``expected_failed_checks``. Checks that
do not apply and are not run (or return at once):

* ``check_array_api_input`` is skipped by scikit-learn unless the environment
  variable ``SCIPY_ARRAY_API=1`` is set (the tests run it with the variable set). The
  estimators do not declare array-API support: they compute with JAX and return
  numpy arrays, so only the numpy variant applies.
* sample-weight checks: ``fit`` takes no ``sample_weight``, because MiniML's losses
  have no per-sample weights; class-weight checks: no ``class_weight`` parameter.
* multi-label classifier checks: `MiniMLClassifier` predicts one label per sample.
* ``partial_fit`` checks: the estimators have no ``partial_fit``.

Sparse input is refused with scikit-learn's TypeError; NaN or infinite input with
scikit-learn's ValueError.
"""

from __future__ import annotations

import re

try:
    import sklearn
except ImportError as err:  # pragma: no cover - exercised with sklearn hidden
    raise ImportError(
        "miniml.sklearn needs scikit-learn (>= 1.6), which is not installed. Install it "
        "with `pip install scikit-learn` (or `pip install miniml-fit[examples]`); the "
        "rest of MiniML works without it."
    ) from err


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


if _version_tuple(sklearn.__version__) < (1, 6):
    raise ImportError(
        f"miniml.sklearn needs scikit-learn >= 1.6 (for sklearn.utils.validation."
        f"validate_data and estimator tags), but scikit-learn {sklearn.__version__} is "
        "installed. Upgrade it with `pip install -U scikit-learn`."
    )

from miniml.sklearn._base import MiniMLEstimatorBase  # noqa: E402
from miniml.sklearn._estimators import MiniMLClassifier, MiniMLRegressor  # noqa: E402
from miniml.sklearn._models import (  # noqa: E402
    linear_regression_model,
    logistic_regression_model,
)

__all__ = [
    "MiniMLClassifier",
    "MiniMLEstimatorBase",
    "MiniMLRegressor",
    "linear_regression_model",
    "logistic_regression_model",
]
