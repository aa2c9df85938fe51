"""`MiniMLRegressor`, `MiniMLClassifier` and their default linear models."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.special
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from miniml.data import check_no_masked_entries
from miniml.errors import MiniMLError
from miniml.loss import BinaryCrossEntropyLogLoss, CrossEntropyLogLoss, cross_entropy_loss
from miniml.model import MiniMLModel
from miniml.sklearn._base import MiniMLEstimatorBase, output_shape
from miniml.sklearn._models import linear_regression_model, logistic_regression_model

__all__ = ["MiniMLClassifier", "MiniMLRegressor"]


class MiniMLRegressor(RegressorMixin, MiniMLEstimatorBase):
    """A scikit-learn regressor that fits a MiniML model.

    ``fit`` builds ``model(n_features, n_outputs)`` (``n_outputs`` is 1 for a 1-d
    ``y``), initializes it (see `MiniMLEstimatorBase`) and minimizes its loss plus
    ``reg_lambda`` times its penalties. The model's predictions may have shape ``(n_samples,)`` or
    ``(n_samples, n_outputs)``; ``y`` is reshaped to match, and `predict` returns the
    shape of the ``y`` given to ``fit``. The default model is `linear_regression_model`
    (``Ridge(alpha=reg_lambda)``). `score` is the R² of `sklearn.base.RegressorMixin`.

    Args: see `MiniMLEstimatorBase`.

    Attributes:
        model_: the fitted `MiniMLModel`.
        result_: the `FitResult` of the fit (``success``, ``loss``, ...).
        history_: the fit's `History` (one record per iteration or epoch).
        n_iter_: the fit's ``FitResult.n_iterations``.
        n_features_in_: number of features seen in ``fit``.
        feature_names_in_: column names, when ``X`` was a DataFrame with string names.

    Example:
        >>> import numpy as np
        >>> from miniml.sklearn import MiniMLRegressor
        >>> X = np.arange(10.0).reshape(-1, 1)
        >>> reg = MiniMLRegressor(reg_lambda=0.0).fit(X, 2 * X.ravel() + 1)
        >>> np.round(reg.predict([[20.0]]), 6)
        array([41.])
    """

    _default_factory = staticmethod(linear_regression_model)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> MiniMLRegressor:
        """Build and fit the model on ``X`` of shape ``(n_samples, n_features)``.

        Args:
            X: training inputs (array-like or DataFrame; sparse input is refused).
            y: targets, shape ``(n_samples,)`` or ``(n_samples, n_outputs)``.

        Returns:
            self, fitted.
        """
        where = self._where("fit")
        check_no_masked_entries(X, "X", where)
        check_no_masked_entries(y, "y", where)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        model, options = self._prepare(X, n_outputs, where)
        shape = output_shape(model, X, options, where)
        if shape == y.shape:
            y_fit = y
        elif shape == (len(y), n_outputs) or (shape == (len(y),) and n_outputs == 1):
            y_fit = y.reshape(shape)
        else:
            raise MiniMLError(
                f"{where}: the {type(model).__name__} built by model({X.shape[1]}, "
                f"{n_outputs}) predicts shape {shape} for X of shape {X.shape}, but y has "
                f"shape {y.shape}; the factory's model must predict (n_samples, n_outputs) "
                "or, for one output, (n_samples,)."
            )
        self._y_shape_tail = y.shape[1:]
        self._run_fit(model, X, y_fit, options)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for ``X``, shaped like the ``y`` given to ``fit``."""
        out = self._forward(X)
        return out.reshape((out.shape[0], *self._y_shape_tail))


OutputKind = Literal["sigmoid", "softmax", "softmax_zero_ref", "probabilities"]
"""How a classifier's outputs become probabilities."""


class MiniMLClassifier(ClassifierMixin, MiniMLEstimatorBase):
    """A scikit-learn classifier that fits a MiniML model of class scores.

    ``fit`` maps the labels to ``0 .. K-1`` through ``classes_`` (sorted, as
    scikit-learn does), builds ``model(n_features, K)`` and fits it. How outputs become
    probabilities follows from the model's loss:

    * `BinaryCrossEntropyLogLoss` (two classes only): one logit per sample, shape
      ``(n,)`` or ``(n, 1)``; :math:`P(\\text{classes\\_}[1]) = \\sigma(z)`.
    * `CrossEntropyLogLoss`: ``K`` logits (``K - 1`` with ``zero_ref=True``);
      probabilities are their softmax. With ``expect_labels=True`` the model is fitted
      on integer codes, otherwise on one-hot targets.
    * `miniml.loss.cross_entropy_loss`: the model outputs the ``K`` probabilities
      itself (e.g. ends in a softmax); it is fitted on one-hot targets.

    The default model is `logistic_regression_model`, which reproduces scikit-learn's
    ``LogisticRegression(C=C)`` at ``reg_lambda = 1 / (2 C)``: MiniML minimizes
    ``sum(loss) + reg_lambda * ||W||^2``, scikit-learn ``C * sum(loss) + ||W||^2 / 2``,
    and dividing the latter by ``C`` gives the former. `score` is the accuracy of
    `sklearn.base.ClassifierMixin`. Sample weights and class weights are not supported
    (MiniML's fit has no per-sample weights).

    Args: see `MiniMLEstimatorBase`; the factory receives ``(n_features, n_classes)``.

    Attributes:
        classes_: the sorted class labels.
        model_: the fitted `MiniMLModel`.
        result_: the `FitResult` of the fit.
        history_: the fit's `History`.
        n_iter_: the fit's ``FitResult.n_iterations``.
        n_features_in_: number of features seen in ``fit``.
        feature_names_in_: column names, when ``X`` was a DataFrame with string names.

    Example:
        >>> import numpy as np
        >>> from miniml.sklearn import MiniMLClassifier
        >>> X = np.array([[0.0], [1.0], [4.0], [5.0]])
        >>> clf = MiniMLClassifier().fit(X, ["no", "no", "yes", "yes"])
        >>> clf.predict([[0.5], [4.5]]).tolist()
        ['no', 'yes']
    """

    _default_factory = staticmethod(logistic_regression_model)
    _size_name = "n_classes"

    def fit(self, X: Any, y: Any) -> MiniMLClassifier:
        """Build and fit the model on ``X`` of shape ``(n_samples, n_features)``.

        Args:
            X: training inputs (array-like or DataFrame; sparse input is refused).
            y: class labels, shape ``(n_samples,)``, of any type `numpy.unique` sorts.

        Returns:
            self, fitted.

        Raises:
            ValueError: for continuous or multi-output ``y``, or a single class.
        """
        where = self._where("fit")
        check_no_masked_entries(X, "X", where)
        check_no_masked_entries(y, "y", where)
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise MiniMLError(
                f"{where}: y holds only one class ({classes[0]!r}); a classifier needs "
                "samples of at least 2 classes."
            )
        n_classes = len(classes)
        model, options = self._prepare(X, n_classes, where)
        kind, y_fit = _targets_for(
            model, codes, n_classes, output_shape(model, X, options, where), where
        )
        self.classes_ = classes
        self._output_kind = kind
        self._run_fit(model, X, y_fit, options)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores: shape ``(n,)`` for two classes (positive favours
        ``classes_[1]``), else ``(n, K)``.

        Scores are the logits (``K`` of them, the zero reference logit included); for
        a model that outputs probabilities they are the log-probabilities.
        """
        scores = self._log_scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log-probabilities of the classes, shape ``(n, K)``, columns as ``classes_``."""
        return np.asarray(scipy.special.log_softmax(self._log_scores(X), axis=1))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of the classes, shape ``(n, K)``, columns as ``classes_``."""
        return np.asarray(scipy.special.softmax(self._log_scores(X), axis=1))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, from ``classes_``."""
        scores = self._log_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def _log_scores(self, X: Any) -> np.ndarray:
        """Per-class scores ``(n, K)`` whose softmax is the predicted distribution."""
        out = self._forward(X)
        if self._output_kind == "sigmoid":
            z = out.reshape(-1)
            return np.stack([np.zeros_like(z), z], axis=1)
        if self._output_kind == "probabilities":
            with np.errstate(divide="ignore"):
                return np.log(np.clip(out, 0.0, None))
        if self._output_kind == "softmax_zero_ref":  # append the reference logit, as the loss does
            return np.concatenate([out, np.zeros((out.shape[0], 1), out.dtype)], axis=1)
        return out


def _targets_for(
    model: MiniMLModel, codes: np.ndarray, n_classes: int, shape: tuple, where: str
) -> tuple[OutputKind, np.ndarray]:
    """The output kind of ``model`` (from its loss) and ``y`` encoded for that loss."""
    loss = model.loss_function
    n = len(codes)
    built = f"the {type(model).__name__} built by model(n_features, {n_classes})"
    if isinstance(loss, BinaryCrossEntropyLogLoss):
        if n_classes != 2:
            raise MiniMLError(
                f"{where}: {built} uses BinaryCrossEntropyLogLoss, which fits two classes, "
                f"but y has {n_classes}; use CrossEntropyLogLoss for more classes."
            )
        if shape not in ((n,), (n, 1)):
            raise MiniMLError(
                f"{where}: {built} uses BinaryCrossEntropyLogLoss and must output one logit "
                f"per sample, shape ({n},) or ({n}, 1), but outputs shape {shape}."
            )
        return "sigmoid", codes.astype(np.float64).reshape(shape)
    if isinstance(loss, CrossEntropyLogLoss) or loss is cross_entropy_loss:
        zero_ref = isinstance(loss, CrossEntropyLogLoss) and loss.zero_ref
        width = n_classes - 1 if zero_ref else n_classes
        if shape != (n, width):
            raise MiniMLError(
                f"{where}: {built} must output shape ({n}, {width}) for {n_classes} classes"
                f"{' with zero_ref=True' if zero_ref else ''}, but outputs shape {shape}."
            )
        kind: OutputKind = "softmax_zero_ref" if zero_ref else "softmax"
        if loss is cross_entropy_loss:
            kind = "probabilities"
        if isinstance(loss, CrossEntropyLogLoss) and loss.expect_labels:
            return kind, codes.astype(np.int64)
        return kind, np.eye(n_classes)[codes]
    raise MiniMLError(
        f"{where}: {built} has the loss {loss!r}; MiniMLClassifier turns outputs into "
        "probabilities only for CrossEntropyLogLoss (logits), BinaryCrossEntropyLogLoss "
        "(one logit, two classes) or cross_entropy_loss (probabilities). Use one of them, "
        "or MiniMLRegressor for other losses."
    )
