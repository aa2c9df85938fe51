"""What `MiniMLRegressor` and `MiniMLClassifier` share: parameters, validation, the fit.

The estimators hold only constructor parameters until ``fit``; ``fit`` builds a fresh
MiniML model from the ``model`` factory, initializes it (see `MiniMLEstimatorBase`)
and fits it, so `sklearn.base.clone`, `GridSearchCV` and pickling never share a model
between estimators.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from miniml.data import check_no_masked_entries
from miniml.errors import MiniMLError
from miniml.fitting import fit_model
from miniml.kernel import PredictMode, split_kernel_output
from miniml.model import MiniMLModel

__all__ = ["MiniMLEstimatorBase"]

ModelFactory = Callable[[int, int], MiniMLModel]
"""``factory(n_features, n) -> MiniMLModel`` (``n``: outputs or classes)."""

_OWN_PARAMETERS = {
    "reg_lambda": "the estimator's reg_lambda parameter",
    "optimizer": "the estimator's optimizer parameter",
    "seed": "the estimator's random_state parameter",
}
"""`fit_model` arguments that the estimators set from their own parameters."""

_FIT_OPTION_NAMES = tuple(
    name
    for name, p in inspect.signature(fit_model).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _OWN_PARAMETERS
)
"""The keys ``fit_options`` accepts: the keyword-only arguments of `fit_model`."""


class MiniMLEstimatorBase(BaseEstimator):
    """Constructor parameters and the fit shared by the MiniML estimators.

    Args:
        model: a factory ``model(n_features, n) -> MiniMLModel`` (a model class, a
            function or a `functools.partial`), called by every ``fit`` to build a
            fresh model; ``n`` is the number of outputs (regressor) or of classes
            (classifier). The model receives ``X`` as one float array of shape
            ``(n_samples, n_features)``. The fit starts from the parameter values the
            new model holds if it holds any (`MiniMLModel.bound`: the factory chose
            them, e.g. zeros or pretrained values; call ``model.bind()`` in the
            factory to keep the values of children bound before they were added),
            and from ``model.randomize(seed)`` otherwise.
            None uses the estimator's default linear model, which starts from zeros
            like scikit-learn's linear models. A built model instance is rejected,
            because `sklearn.base.clone` copies constructor parameters and would
            share it between estimators. Use module-level functions or classes as
            factories if the estimator must be pickled (lambdas cannot be).
        reg_lambda: MiniML's global regularization strength :math:`\\lambda`: the
            objective is ``loss(y, f(X)) + reg_lambda * sum_i reg_scale_i * R_i(w_i)``.
        optimizer: what `MiniMLModel.fit` accepts: a SciPy method name
            (``"L-BFGS-B"``, ``"Newton-CG"``, ...), a `MiniMLOptimizer` instance
            (``ScipyOptimizer(...)``, a stochastic optimizer) or a list of them (a
            staged fit).
        fit_options: further keyword arguments of `miniml.fitting.fit_model`
            (``epochs``, ``batch_size``, ``callbacks``, ``predict_kwargs``,
            ``verbose``, ...). ``verbose`` defaults to 0 here (no progress bar per fit
            inside a grid search). ``reg_lambda``, ``optimizer`` and ``seed`` are this
            estimator's own parameters and are rejected here.
        random_state: an int is the seed of `MiniMLModel.randomize` (for models the
            factory leaves unbound) and of the fit's random keys (shuffling, dropout);
            None or a `numpy.random.RandomState` draws that seed (scikit-learn's
            convention), so each fit differs.
    """

    _default_factory: ModelFactory
    _size_name = "n_outputs"  # what the factory's second argument counts, for messages

    def __init__(
        self,
        model: ModelFactory | None = None,
        *,
        reg_lambda: float = 1.0,
        optimizer: Any = "L-BFGS-B",
        fit_options: dict[str, Any] | None = None,
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.model = model
        self.reg_lambda = reg_lambda
        self.optimizer = optimizer
        self.fit_options = fit_options
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _where(self, method: str) -> str:
        return f"{type(self).__name__}.{method}"

    def _checked_reg_lambda(self, where: str) -> float:
        value = self.reg_lambda
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise MiniMLError(
                f"{where}: reg_lambda must be a real number >= 0, got {value!r} "
                f"({type(value).__name__}); e.g. reg_lambda=0.1."
            )
        if not math.isfinite(float(value)) or value < 0:
            raise MiniMLError(
                f"{where}: reg_lambda must be finite and >= 0, got {value!r}; use 0 for no "
                "regularization."
            )
        return float(value)

    def _checked_fit_options(self, where: str) -> dict[str, Any]:
        options = self.fit_options
        if options is None:
            return {"verbose": 0}
        if not isinstance(options, Mapping):
            raise MiniMLError(
                f"{where}: fit_options must be a dict of fit keyword arguments or None, got "
                f"{type(options).__name__} {options!r}."
            )
        for key in options:
            if key in _OWN_PARAMETERS:
                raise MiniMLError(
                    f"{where}: fit_options sets {key!r}, which is {_OWN_PARAMETERS[key]}; "
                    f"remove it from fit_options and use set_params({_param_of(key)}=...)."
                )
            if key not in _FIT_OPTION_NAMES:
                raise MiniMLError(
                    f"{where}: fit_options has an unknown key {key!r}; the keys "
                    f"miniml.fitting.fit_model accepts are {list(_FIT_OPTION_NAMES)}."
                )
        return {"verbose": 0, **options}

    def _seed(self, where: str) -> int:
        state = self.random_state
        if isinstance(state, numbers.Integral) and not isinstance(state, bool):
            if not 0 <= int(state) < 2**32:
                raise MiniMLError(
                    f"{where}: an int random_state must lie in [0, 2**32), got {state!r}."
                )
            return int(state)
        if state is None or isinstance(state, np.random.RandomState):
            return int(check_random_state(state).randint(np.iinfo(np.int32).max))
        raise MiniMLError(
            f"{where}: random_state must be an int, None or a numpy.random.RandomState, "
            f"got {state!r}."
        )

    def _build_model(self, n_features: int, n: int, where: str) -> MiniMLModel:
        factory = self.model
        if isinstance(factory, MiniMLModel):
            raise MiniMLError(
                f"{where}: model must be a factory model(n_features, {self._size_name}) -> "
                f"MiniMLModel, got a built {type(factory).__name__}. scikit-learn clones "
                "estimators from their parameters, so pass the class or a function, e.g. "
                f"model=lambda n_features, {self._size_name}: "
                f"{type(factory).__name__}(n_features, {self._size_name})."
            )
        if factory is None:
            factory = type(self)._default_factory
        elif not callable(factory):
            raise MiniMLError(
                f"{where}: model must be None or a callable model(n_features, "
                f"{self._size_name}) -> MiniMLModel, got {factory!r}."
            )
        built = factory(n_features, n)
        if not isinstance(built, MiniMLModel):
            raise MiniMLError(
                f"{where}: model({n_features}, {n}) returned {type(built).__name__}, "
                "expected a MiniMLModel; the factory must build and return a new model."
            )
        if built.loss_function is None:
            raise MiniMLError(
                f"{where}: the model built by the factory, a {type(built).__name__}, has no "
                "loss (loss=None); give it one, e.g. super().__init__(loss=...)."
            )
        return built

    # --------------------------------------------------------------------- fit
    def _prepare(self, X: np.ndarray, n: int, where: str) -> tuple[MiniMLModel, dict[str, Any]]:
        """Check parameters and build the model; return it and the fit keyword args."""
        options = self._checked_fit_options(where)
        options["seed"] = self._seed(where)
        options["reg_lambda"] = self._checked_reg_lambda(where)
        options["optimizer"] = self.optimizer
        return self._build_model(X.shape[1], n, where), options

    def _run_fit(
        self, model: MiniMLModel, X: np.ndarray, y: np.ndarray, options: dict[str, Any]
    ) -> None:
        """Initialize and fit ``model`` and set the fitted attributes."""
        if not model.bound:
            model.randomize(options["seed"])
        result = model.fit(X, y, **options)
        self._predict_kwargs = dict(options.get("predict_kwargs") or {})
        self.model_ = model
        self.result_ = result
        self.history_ = result.history
        self.n_iter_ = result.n_iterations

    def _forward(self, X: Any) -> np.ndarray:
        """Validate ``X`` against the fit and return the model's outputs as numpy."""
        check_is_fitted(self, "model_")
        check_no_masked_entries(X, "X", self._where("predict"))
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.asarray(self.model_.predict(X, **self._predict_kwargs))

    # ----------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        """Pickle a fitted estimator with a fresh copy of its model.

        A fitted model caches jitted closures, which cannot be pickled; the copy
        (`MiniMLModel.clone` with its parameters) has the same class, constructor
        arguments and parameter values and compiles again when first used.
        """
        state = dict(super().__getstate__())
        model = state.get("model_")
        if isinstance(model, MiniMLModel):
            state["model_"] = model.clone(with_params=True)
        return state


def _param_of(key: str) -> str:
    return "random_state" if key == "seed" else key


def output_shape(model: MiniMLModel, X: np.ndarray, options: dict[str, Any], where: str) -> tuple:
    """The shape of ``model``'s predictions for ``X``, by abstract evaluation (no compile)."""
    static = dict(options.get("predict_kwargs") or {})

    def forward(buffer: Any, inputs: Any) -> Any:
        out = model._predict_kernel(
            inputs, buffer, rng_key=None, mode=PredictMode.INFERENCE, **static
        )
        return split_kernel_output(out)[0]

    try:
        spec = jax.eval_shape(
            forward,
            jax.ShapeDtypeStruct((model.size,), model.dtype),
            jax.ShapeDtypeStruct(X.shape, model.dtype),
        )
    except MiniMLError:
        raise
    except Exception as err:
        raise MiniMLError(
            f"{where}: the forward pass of the {type(model).__name__} built by the model "
            f"factory failed for X of shape {X.shape}: {type(err).__name__}: {err}"
        ) from err
    if not hasattr(spec, "shape"):
        raise MiniMLError(
            f"{where}: the {type(model).__name__} built by the model factory returns "
            f"{type(spec).__name__} predictions; the scikit-learn estimators need one array."
        )
    return tuple(spec.shape)
