"""optax's zoom line search with one objective evaluation per round under `jax.vmap`.

Each round of `optax.scale_by_zoom_linesearch` is ``lax.cond(interval_found, zoom,
search)``, and each branch evaluates the objective at its own trial step. A single fit
runs one branch; under `jax.vmap` (a batch of fits, `miniml.batched`) the predicate is
batched and both branches run for every member, so every round cost two batched
evaluations. Here a round first computes both branches' trial steps (a few scalar
operations, transcribed from optax's `zoom_linesearch`), evaluates the objective once at
the point of the branch the member is in, and then runs optax's own round with a
function that returns that evaluation. The rounds, steps and states are optax's: only
where the evaluation happens changes (checked round for round against optax by
``tests/optim/test_lockstep.py``).

A member whose fit has stopped (``active`` False) makes no rounds, so it cannot lengthen
the batch's line search; its result is discarded by the batched loop anyway.

The transcription relies on optax internals (``optax._src.linesearch``), verified for
the versions in `VERIFIED_OPTAX_VERSIONS`. With any other optax, or if those internals
are gone, `scale_by_lockstep_zoom_linesearch` warns (`PerformanceWarning`) and returns
optax's own search: the same steps, at two evaluations per round under `jax.vmap`.
Importing MiniML never depends on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from miniml.errors import PerformanceWarning

__all__ = [
    "VERIFIED_OPTAX_VERSIONS",
    "lockstep_unavailable",
    "optax_zoom_linesearch",
    "scale_by_lockstep_zoom_linesearch",
]

VERIFIED_OPTAX_VERSIONS = ("0.2.8",)
"""optax versions whose zoom line search the trial steps below transcribe
(tests/optim/test_lockstep.py compares every round with optax's own search)."""

# The round and the interpolations themselves stay optax's; only the trial step is
# transcribed below, so its formulas must stay those of a verified optax version.
try:
    from optax._src.linesearch import _cubicmin, _quadmin, zoom_linesearch
except ImportError as error:  # a newer optax reorganized its internals
    _IMPORT_ERROR: str | None = f"{type(error).__name__}: {error}"
else:
    _IMPORT_ERROR = None


def lockstep_unavailable() -> str | None:
    """Why the one-evaluation-per-round search cannot be used here, or None if it can."""
    if optax.__version__ not in VERIFIED_OPTAX_VERSIONS:
        return (
            f"it was verified for optax {', '.join(VERIFIED_OPTAX_VERSIONS)} and optax "
            f"{optax.__version__} is installed"
        )
    if _IMPORT_ERROR is not None:
        return f"optax {optax.__version__} lacks the internals it builds on ({_IMPORT_ERROR})"
    return None


def optax_zoom_linesearch(max_linesearch_steps: Any) -> optax.GradientTransformationExtraArgs:
    """optax's zoom line search as single `LBFGS` fits run it: the search the lockstep
    one reproduces, and its fallback."""
    return optax.scale_by_zoom_linesearch(
        max_linesearch_steps=max_linesearch_steps, initial_guess_strategy="one"
    )


_INCREASE_FACTOR = 2.0
"""optax's ``increase_factor``: the interval search doubles the step."""


def scale_by_lockstep_zoom_linesearch(
    max_linesearch_steps: Any,
) -> optax.GradientTransformationExtraArgs:
    """`optax_zoom_linesearch` whose rounds make one evaluation each, also under
    `jax.vmap`.

    ``update`` takes the keyword arguments ``value``, ``grad`` and ``value_fn`` (a
    function of the parameters only) as optax's does, and ``active``: False skips the
    search (the update is then meaningless and must be discarded by the caller).

    Where `lockstep_unavailable` gives a reason, it warns and returns optax's own search,
    whose ``update`` accepts ``active`` and ignores it.
    """
    reference = optax_zoom_linesearch(max_linesearch_steps)
    reason = lockstep_unavailable()
    if reason is not None:
        warnings.warn(
            "miniml.fit_batched: the L-BFGS batch uses optax's own zoom line search, which "
            "under jax.vmap evaluates the objective twice per round, because MiniML's "
            f"one-evaluation-per-round search is unavailable: {reason}. The results are the "
            "same; for the faster search install a verified optax (pip install "
            f"'optax=={VERIFIED_OPTAX_VERSIONS[-1]}').",
            PerformanceWarning,
            stacklevel=2,
        )
        return _ignoring_active(reference)
    start_search, optax_round, searching = zoom_linesearch(
        max_linesearch_steps=max_linesearch_steps, increase_factor=_INCREASE_FACTOR
    )

    def update(
        updates: Any,
        state: optax.ScaleByZoomLinesearchState,
        params: Any,
        *,
        value: Any,
        grad: Any,
        value_fn: Callable[[Any], Any],
        active: Any = True,
    ) -> tuple[Any, optax.ScaleByZoomLinesearchState]:
        value_and_grad = jax.value_and_grad(value_fn)
        start = start_search(
            updates, params, value=value, grad=grad, prev_stepsize=state.learning_rate
        )

        def one_round(search: Any) -> Any:
            point = optax.tree.where(
                search.interval_found,
                optax.tree.add_scale(params, _zoom_trial(search), updates),
                optax.tree.add_scale(params, _interval_trial(search), updates),
            )
            evaluation = value_and_grad(point)
            return optax_round(search, value_and_grad_fn=lambda _: evaluation, fn_kwargs={})

        final = jax.lax.while_loop(lambda search: active & searching(search), one_round, start)
        new_state = optax.ScaleByZoomLinesearchState(
            learning_rate=final.stepsize,
            value=final.value,
            grad=final.grad,
            info=optax.ZoomLinesearchInfo(
                num_linesearch_steps=final.count,
                decrease_error=final.decrease_error,
                curvature_error=final.curvature_error,
            ),
        )
        scaled = optax.tree.scale(final.stepsize, updates)
        return scaled, optax.tree.cast_like(new_state, other_tree=state)

    return optax.GradientTransformationExtraArgs(reference.init, update)


def _interval_trial(search: Any) -> Any:
    """The step optax's interval search (its ``_search_interval``) evaluates next."""
    return jnp.where(search.count == 0, search.stepsize_guess, _INCREASE_FACTOR * search.stepsize)


def _zoom_trial(search: Any) -> Any:
    """The step optax's zoom (its ``_zoom_into_interval``) evaluates next: the cubic
    interpolant's minimizer, else the quadratic's, else the bisection, whichever lies
    far enough inside the interval."""
    low, high = search.low, search.high
    delta = jnp.abs(high - low)
    left, right = jnp.minimum(high, low), jnp.maximum(high, low)
    cubic = _cubicmin(low, search.value_low, search.slope_low, high, search.value_high,
                      search.cubic_ref, search.value_cubic_ref)  # fmt: skip
    use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
    quadratic = _quadmin(low, search.value_low, search.slope_low, high, search.value_high)
    inside = (quadratic > left + 0.1 * delta) & (quadratic < right - 0.1 * delta)
    use_quadratic = ~use_cubic & inside
    # The same chain of selects as optax (and so the same dtype promotions).
    middle = jnp.where(use_cubic, cubic, search.cubic_ref)
    middle = jnp.where(use_quadratic, quadratic, middle)
    return jnp.where(~use_cubic & ~use_quadratic, (low + high) / 2.0, middle)


def _ignoring_active(search: optax.GradientTransformationExtraArgs) -> Any:
    """``search`` with an ``update`` that accepts ``active`` (and searches regardless)."""

    def update(updates: Any, state: Any, params: Any, *, active: Any = True, **extra: Any) -> Any:
        del active
        return search.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(search.init, update)
