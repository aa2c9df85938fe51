"""Model selection as batched fits: a cross-validated ``reg_lambda`` path, multi-start.

Both helpers build one `miniml.batched.fit_batched` call: every (``reg_lambda``, fold)
pair, or every starting seed, is a member of the batch, so the whole search is one
compiled run (which lasts as long as its slowest member; see `miniml.batched`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from miniml.batched import BatchedFitResult, fit_batched
from miniml.data import as_data, describe
from miniml.errors import MiniMLError
from miniml.loss import reduction_of
from miniml.optim.stochastic import StochasticOptimizer

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["CrossValidationResult", "MultiStartResult", "cross_validate_path", "multi_start"]

# Metric names of `miniml.metrics` and whether larger values are better.
_DIRECTIONS = {"loss": False, "mse": False, "mean_squared_error": False, "mae": False,
               "mean_absolute_error": False, "log_loss": False, "r2": True,
               "accuracy": True}  # fmt: skip


@dataclass
class CrossValidationResult:
    """Scores of a cross-validated ``reg_lambda`` path.

    Attributes:
        reg_lambdas: ``(L,)`` the strengths tried, in the order given.
        scores: ``(L, n_folds)`` held-out score of every strength on every fold.
        mean_scores: ``(L,)`` the mean over folds.
        best_index: index of the best finite mean score (first one on ties).
        best_reg_lambda: ``reg_lambdas[best_index]``.
        greater_is_better: the direction used to pick the best.
        fits: the `BatchedFitResult` of all ``L * n_folds`` members; member
            ``i * n_folds + f`` is strength ``i`` trained without fold ``f``.
        folds: the held-out row indices of each fold.
    """

    reg_lambdas: np.ndarray
    scores: np.ndarray
    mean_scores: np.ndarray
    best_index: int
    best_reg_lambda: float
    greater_is_better: bool
    fits: BatchedFitResult
    folds: list[np.ndarray]


def kfold_indices(n_samples: int, n_folds: int, shuffle: bool, seed: int) -> list[np.ndarray]:
    """Held-out rows of each fold: ``np.array_split`` of the (permuted) row order.

    Folds differ by at most one row, as in scikit-learn's ``KFold``.
    """
    order = np.random.default_rng(seed).permutation(n_samples) if shuffle else np.arange(n_samples)
    return [np.sort(part) for part in np.array_split(order, n_folds)]


def _scorer(model: Any, scoring: Any, greater_is_better: Any, where: str) -> tuple[Any, bool]:
    if scoring == "loss":
        loss = model.loss_function
        reduction_of(loss, where)

        def mean_loss(y_true: Any, y_pred: Any) -> Any:
            rows = jax.vmap(lambda t, p: loss(t[None], p[None]))(y_true, y_pred)
            return jnp.mean(rows)

        return mean_loss, False
    if isinstance(scoring, str):
        from miniml.metrics import resolve_metrics

        function = next(iter(resolve_metrics([scoring], where).values()))
        direction = _DIRECTIONS.get(scoring) if greater_is_better is None else greater_is_better
        if direction is None:
            raise MiniMLError(
                f"{where}: pass greater_is_better=True or False for scoring={scoring!r}."
            )
        return function, bool(direction)
    if callable(scoring):
        if greater_is_better is None:
            raise MiniMLError(
                f"{where}: a scoring function needs greater_is_better=True (scores such as "
                "accuracy) or False (errors, losses); got greater_is_better=None."
            )
        return scoring, bool(greater_is_better)
    raise MiniMLError(
        f"{where}: scoring must be 'loss', a metric name of miniml.metrics (e.g. 'accuracy') "
        f"or a function (y_true, y_pred) -> scalar; got {scoring!r}."
    )


def cross_validate_path(
    model: MiniMLModel,
    X: Any,
    y: Any,
    reg_lambdas: Any,
    n_folds: int = 5,
    *,
    scoring: str | Callable[[Any, Any], Any] = "loss",
    greater_is_better: bool | None = None,
    optimizer: Any = None,
    shuffle: bool = True,
    seed: int = 0,
    x0: Any = None,
    seeds: Any = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    predict_kwargs: dict[str, Any] | None = None,
    devices: Any = None,
) -> CrossValidationResult:
    """K-fold cross-validation of a ``reg_lambda`` path as one batched fit.

    Every strength is fitted on every training split (``len(reg_lambdas) * n_folds``
    members, all starting from ``x0`` or the model's current parameters) and scored on
    its held-out fold. ``scoring="loss"`` is the model's loss averaged over held-out
    samples (lower is better); a metric name of `miniml.metrics` or a function
    ``(y_true, y_pred) -> scalar`` may be given instead.

    Args:
        reg_lambdas: the ``L`` strengths to try.
        n_folds: number of folds; the held-out rows are `kfold_indices`.
        shuffle: permute the rows (with ``seed``) before splitting them into folds.
        seed: the seed of that permutation.
        optimizer: as in `miniml.batched.fit_batched` (default ``LBFGS()``). A
            stochastic optimizer needs training sets of equal size: ``n_folds`` must
            divide the number of samples.
        x0: the starting parameters of every member, as in `miniml.batched.fit_batched`.
        seeds: ``L * n_folds`` ints, as ``seeds`` of `miniml.batched.fit_batched`:
            member ``i * n_folds + f``'s random key (forward pass, shuffling of
            mini-batches) and, without ``x0``, its random start.
        epochs: passes over the data (stochastic optimizers), as in
            `miniml.batched.fit_batched`; mini-batches are reshuffled every epoch.
        batch_size: mini-batch size (stochastic optimizers), as in
            `miniml.batched.fit_batched`.
        predict_kwargs: as in `miniml.batched.fit_batched`.
        devices: as in `miniml.batched.fit_batched`.

    Returns:
        A `CrossValidationResult` with the ``(L, n_folds)`` score table and the best
        strength. ``model`` is not changed.
    """
    where = "miniml.cross_validate_path"
    lambdas = np.asarray(reg_lambdas, np.float64)
    if lambdas.ndim != 1 or lambdas.size == 0:
        raise MiniMLError(
            f"{where}: reg_lambdas must be a non-empty 1-D sequence of numbers, got shape "
            f"{lambdas.shape}; e.g. np.logspace(-3, 2, 20)."
        )
    X_data, n = as_data(X, "X", where, model.dtype)
    y_data, n_y = as_data(y, "y", where, model.dtype)
    if n_y != n:
        raise MiniMLError(f"{where}: X has {n} samples but y has {n_y}; they must match.")
    if (
        isinstance(n_folds, bool)
        or not isinstance(n_folds, int | np.integer)
        or not 2 <= n_folds <= n
    ):
        raise MiniMLError(
            f"{where}: n_folds must be an int between 2 and the {n} samples, got {n_folds!r}."
        )
    score, greater = _scorer(model, scoring, greater_is_better, where)
    if n % n_folds and _is_stochastic(optimizer):
        raise MiniMLError(
            f"{where}: a stochastic optimizer needs training sets of equal size, but the "
            f"{n} samples do not split into {n_folds} folds of equal size, got "
            f"n_folds={n_folds!r}; choose n_folds that divides {n}, or use optimizer=LBFGS()."
        )
    folds = kfold_indices(n, int(n_folds), shuffle, seed)
    train = np.ones((n_folds, n), bool)
    for f, held_out in enumerate(folds):
        train[f, held_out] = False
    members = f"its {lambdas.size} strengths x {n_folds} folds = {lambdas.size * n_folds} members"
    with _refused_by_fit_batched(where, members):
        fits = fit_batched(
            model, X_data, y_data, reg_lambda=np.repeat(lambdas, n_folds), optimizer=optimizer,
            rows=np.tile(train, (lambdas.size, 1)), x0=x0, seeds=seeds, epochs=epochs,
            batch_size=batch_size, predict_kwargs=predict_kwargs, devices=devices,
        )  # fmt: skip
    predictions = fits.predict(X_data)
    scores = np.empty((lambdas.size, n_folds))
    for i in range(lambdas.size):
        for f, held_out in enumerate(folds):
            k = i * n_folds + f
            y_true = jax.tree.map(lambda a, rows=held_out: a[rows], y_data)
            y_pred = jax.tree.map(lambda a, m=k, rows=held_out: a[m][rows], predictions)
            scores[i, f] = float(score(y_true, y_pred))
    means = scores.mean(axis=1)
    finite = np.isfinite(means)
    if not finite.any():
        raise MiniMLError(
            f"{where}: no strength has a finite mean score (scores {scores.tolist()}); "
            "check the scoring function and the fits (result.fits.success)."
        )
    # A NaN mean (a fold the scorer could not score) never wins.
    best = int(np.nanargmax(np.where(finite, means, np.nan)) if greater
               else np.nanargmin(np.where(finite, means, np.nan)))  # fmt: skip
    return CrossValidationResult(lambdas, scores, means, best, float(lambdas[best]), greater,
                                 fits, folds)  # fmt: skip


@dataclass
class MultiStartResult:
    """The outcome of `multi_start`.

    Attributes:
        best_index: the member with the lowest final objective.
        best_seed: its seed.
        losses: ``(K,)`` every member's final objective (NaN stays NaN).
        seeds: the seeds, one per member.
        fits: the `BatchedFitResult` of all members.
    """

    best_index: int
    best_seed: int
    losses: np.ndarray
    seeds: list[int]
    fits: BatchedFitResult


@contextmanager
def _refused_by_fit_batched(where: str, members: str) -> Iterator[None]:
    """Say which helper called `fit_batched` when it refuses the call: its messages speak
    of members and K, which the helper's caller never chose directly."""
    try:
        yield
    except MiniMLError as error:
        raise MiniMLError(
            f"{where}: {members} are fitted by one miniml.fit_batched call, which refused "
            f"them: {error}"
        ) from error


def multi_start(
    model: MiniMLModel,
    X: Any,
    y: Any,
    seeds: Any,
    reg_lambda: Any = 1.0,
    optimizer: Any = None,
    **options: Any,
) -> MultiStartResult:
    """Fit ``model`` from several random starts at once and keep the best.

    Member k starts from the parameters ``model.randomize(seed=seeds[k])`` would draw
    and fits all of ``(X, y)``. Afterwards ``model`` holds the parameters of the member
    with the lowest final objective (members with a non-finite objective never win).

    Args:
        seeds: an int K (seeds ``0..K-1``) or a sequence of ints.
        reg_lambda: as in `miniml.batched.fit_batched`.
        optimizer: as in `miniml.batched.fit_batched` (default ``LBFGS()``).
        **options: further keyword arguments of `miniml.batched.fit_batched`:
            ``learning_rate``, ``epochs``, ``batch_size``, ``shuffle``,
            ``active_reg_lambda``, ``predict_kwargs``, ``devices``. ``rows``, ``x0``
            and ``shared`` contradict multi-start and are refused: use
            `miniml.batched.fit_batched` for per-member rows or starting points.
    """
    where = "miniml.multi_start"
    _check_multi_start_options(options, where)
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        if seeds < 1:
            raise MiniMLError(f"{where}: seeds must be >= 1, got {seeds}.")
        seeds = list(range(int(seeds)))
    with _refused_by_fit_batched(where, "its starts (one member per seed)"):
        fits = fit_batched(model, X, y, reg_lambda=reg_lambda, optimizer=optimizer,
                           shared=True, seeds=seeds, **options)  # fmt: skip
    losses = np.asarray(fits.objective_value, np.float64)
    if not np.any(np.isfinite(losses)):
        raise MiniMLError(
            f"{where}: no member reached a finite objective; check the model and the data "
            "or lower the learning rate."
        )
    best = int(np.nanargmin(np.where(np.isfinite(losses), losses, np.nan)))
    model.bind()
    model.set_buffer(jnp.asarray(fits.x_opt[best], model.dtype))
    model._miniml_input_signature = fits._signature
    seed_list = [int(s) for s in seeds]
    return MultiStartResult(best, seed_list[best], losses, seed_list, fits)


# Keyword arguments of `fit_batched` that `multi_start` passes through unchanged.
_MULTI_START_OPTIONS = ("learning_rate", "epochs", "batch_size", "shuffle", "active_reg_lambda",
                        "predict_kwargs", "devices")  # fmt: skip

# Those that contradict multi-start: what each member does instead, and the way out.
_CONTRADICTIONS = {
    "rows": ("every member fits all of (X, y)",
             "use fit_batched(..., rows=..., seeds=...) for per-member rows"),
    "x0": ("member k starts from the parameters model.randomize(seed=seeds[k]) draws",
           "use fit_batched(..., x0=...) to start members from given parameters"),
    "shared": ("every member always fits the shared (X, y)", "drop shared"),
}  # fmt: skip


def _check_multi_start_options(options: dict[str, Any], where: str) -> None:
    """Refuse `fit_batched` options that `multi_start` would contradict, and unknown ones."""
    for name, value in options.items():
        if name in _CONTRADICTIONS:
            does, fix = _CONTRADICTIONS[name]
            raise MiniMLError(
                f"{where}: {does}, so {name}= does not apply, got {name}={_brief(value)}; {fix}."
            )
        if name not in _MULTI_START_OPTIONS:
            raise MiniMLError(
                f"{where}: options must be keyword arguments of fit_batched that multi-start "
                f"allows ({', '.join(_MULTI_START_OPTIONS)}), got {name}={_brief(value)}; "
                "check the name."
            )


def _brief(value: Any) -> str:
    """``repr(value)``, or only the dtype and shape of an array."""
    return describe(value) if isinstance(value, np.ndarray | jax.Array) else repr(value)


def _is_stochastic(optimizer: Any) -> bool:
    return isinstance(optimizer, StochasticOptimizer | optax.GradientTransformation)
