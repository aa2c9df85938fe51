r"""The compiled mini-batch epochs: one `jax.lax.scan` over the batches of an epoch.

How an epoch walks the data
---------------------------
With ``N`` samples and batch size ``B`` an epoch takes :math:`\lfloor N/B \rfloor`
steps of exactly ``B`` samples each; the last partial batch is **dropped**, so every
step has the same shape and nothing recompiles. With ``shuffle=True`` every epoch
draws a new permutation (inside the compiled epoch, from the fit's ``seed`` and the
epoch number), so over epochs every sample is used. With ``shuffle=False`` the batches
are consecutive samples in order, and each epoch starts where the previous one stopped
(cyclically), so no sample is left out either; when ``B`` divides ``N`` every epoch
sees the same batches. ``batch_size=None`` is the full batch: one step per epoch on all
the data, without any gather.

Loss convention
---------------
A step minimizes the fit's objective estimated on its batch:
``data_scale * (loss + active_reg_lambda * activity) + reg_lambda * penalty`` with
``data_scale = N/B`` for a loss that sums over samples and ``1`` for one that averages
(`miniml.loss`). A mini-batch gradient is thus an unbiased estimate of the full-batch
objective's gradient, the penalty counts once per step, and ``reg_lambda`` means the
same in stochastic and full-batch fits.

Randomness and rejected steps
-----------------------------
Step ``i`` of epoch ``e`` passes the forward pass the key
``fold_in(fold_in(fold_in(key(seed), e), 1), i)`` (the permutation uses ``... , 0)``),
so dropout-like layers see a fresh key every step. A step whose batch loss or gradient
is not finite (or whose squared gradient norm overflows) is rejected inside the scan:
the parameters and the optimizer state stay as they were and the step does not count
(the next batch may be fine). Parameters or state that become non-finite from a finite
gradient (``eps=0`` with a zero gradient, overflow) are caught at the end of the epoch,
which is then undone as a whole. An epoch without an accepted step ends the run. The
optimizer reports rejections (`miniml.errors.NonFiniteWarning`, ``success=False``); if
the objective at the final point is not finite, the point at the end of the previous
epoch is returned instead.

Chunks of epochs
----------------
One compiled call runs a *chunk* of up to `chunk_length` epochs (a `jax.lax.scan` over
epochs, each the scan over batches above) and returns every epoch's parameters,
optimizer state and numbers, so the host still handles each epoch (history, callbacks)
while paying one dispatch per chunk. The chunk length depends only on the size of the
parameters and the state (a memory budget for the per-epoch copies), never on the
number of epochs, and epochs past the requested count, after convergence or after
``max_steps`` are skipped with `jax.lax.cond`: a new epoch count compiles nothing. The
host loop lives in `miniml.optim.driver`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from miniml.errors import MiniMLError
from miniml.optim.base import Problem

__all__ = [
    "BatchPlan",
    "EpochCarry",
    "EpochStats",
    "UpdateProgram",
    "chunk_length",
    "compiled_chunk",
    "data_scale",
    "find_learning_rate",
    "first_moment_norm",
    "plan_batches",
    "schedule_count",
]

MAX_STEPS = np.iinfo(np.int32).max
MAX_CHUNK = 16
"""At most this many epochs per compiled call (bounds the work done past a stop)."""
CHUNK_BYTES = 32 * 2**20
"""Budget for the per-epoch copies of parameters and optimizer state in one chunk."""


@dataclass(frozen=True)
class BatchPlan:
    """How one epoch cuts ``n_samples`` into ``n_batches`` batches of ``batch_size``."""

    n_samples: int
    batch_size: int
    n_batches: int
    shuffle: bool

    @property
    def full(self) -> bool:
        """One step on all the data (no gather)."""
        return self.batch_size == self.n_samples


def plan_batches(n_samples: int, batch_size: int | None, shuffle: bool) -> BatchPlan:
    """The batches of an epoch; ``batch_size=None`` is the full batch."""
    size = n_samples if batch_size is None else int(batch_size)
    return BatchPlan(n_samples, size, n_samples // size, bool(shuffle))


def data_scale(problem: Problem, plan: BatchPlan, where: str) -> float:
    """``N / B`` for a sum-reduced loss, 1 for a mean-reduced loss or the full batch."""
    if plan.full:
        return 1.0
    reduction = problem.loss_reduction
    if reduction not in ("sum", "mean"):
        raise MiniMLError(
            f"{where}: mini-batches (batch_size={plan.batch_size} < {plan.n_samples} samples) "
            "need to know whether the model's loss sums or averages over samples, to scale "
            "a batch loss into an unbiased estimate of the full objective, but the loss has "
            'no `reduction` attribute. Set `my_loss.reduction = "sum"` or `"mean"` (or '
            "subclass miniml.loss.LossFunctionBase), or fit with batch_size=None."
        )
    return plan.n_samples / plan.batch_size if reduction == "sum" else 1.0


class UpdateProgram(NamedTuple):
    """What compiled code needs from an optimizer, with its numbers left out.

    Attributes:
        structure: a hashable key of everything that shapes the program (the rule,
            static options, schedules), never the numeric hyper-parameter values.
        make: ``make(values) -> GradientTransformation`` builds the rule inside the
            trace from the traced values (a dict of scalars).
        learning_rate: ``learning_rate(values, state)`` -> the learning rate of the
            last step (traced), or None when the rule has none to report.
    """

    structure: Hashable
    make: Callable[[dict[str, Any]], optax.GradientTransformation]
    learning_rate: Callable[[dict[str, Any], Any], Any]


class EpochCarry(NamedTuple):
    """What one epoch hands the next: the iterate, its optimizer state and counters."""

    theta: Any
    opt_state: Any
    step: Any  # accepted steps so far in this fit (int32)
    done: Any  # the tolerance was reached (bool)


class EpochStats(NamedTuple):
    """Per-epoch numbers for the host, packed on the device into one vector.

    The compiled epoch returns ``[records, mean_loss, learning_rate, step, done,
    undone, grad_norm]``, where a step's record is its batch loss if it was accepted,
    ``+inf`` if it was rejected and NaN if it did not run (after convergence or
    ``max_steps``).
    """

    losses: np.ndarray  # (n_batches,) batch objective before each step (records)
    accepted: np.ndarray  # (n_batches,) bool
    n_rejected: int
    mean_loss: float
    learning_rate: float | None  # None when the optimizer has none to report
    step: int  # accepted steps so far in this fit
    done: bool  # the tolerance was reached
    undone: bool  # the epoch ended with non-finite values and was rolled back
    grad_norm: float | None = None  # ‖mean accepted batch gradient‖₂; None without one

    @classmethod
    def unpack(cls, summary: np.ndarray, n_batches: int) -> EpochStats:
        records = summary[:n_batches]
        mean_loss, lr, step, done, undone, grad_norm = summary[n_batches:].tolist()
        return cls(records, np.isfinite(records), int(np.sum(records == np.inf)), mean_loss,
                   None if math.isnan(lr) else lr, int(step), bool(done), bool(undone),
                   None if math.isnan(grad_norm) else grad_norm)  # fmt: skip


def find_learning_rate(state: Any) -> Any:
    """The ``learning_rate`` of the first `optax.inject_hyperparams` state, or None.

    How MiniML reports the learning rate of a user's optax transformation.
    """
    nodes = jax.tree_util.tree_leaves(
        state, is_leaf=lambda n: isinstance(getattr(n, "hyperparams", None), dict)
    )
    for node in nodes:
        hyperparams = getattr(node, "hyperparams", None)
        if isinstance(hyperparams, dict) and "learning_rate" in hyperparams:
            return hyperparams["learning_rate"]
    return None


def schedule_count(state: Any) -> Any:
    """The step count of the first `optax.scale_by_schedule` state in ``state``."""
    nodes = jax.tree_util.tree_leaves(
        state, is_leaf=lambda n: isinstance(n, optax.ScaleByScheduleState)
    )
    for node in nodes:
        if isinstance(node, optax.ScaleByScheduleState):
            return node.count
    raise MiniMLError("schedule_count: the optimizer state has no schedule step count.")


def first_moment_norm(state: Any) -> Any:
    r""":math:`\lVert m_t \rVert_2` of the first `optax.ScaleByAdamState` in ``state``."""
    nodes = jax.tree_util.tree_leaves(
        state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState)
    )
    for node in nodes:
        if isinstance(node, optax.ScaleByAdamState):
            return optax.tree_utils.tree_norm(node.mu)
    raise MiniMLError("first_moment_norm: the optimizer state has no Adam first moment.")


def _select(flag: Any, if_true: Any, if_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), if_true, if_false)


def _all_finite(tree: Any) -> Any:
    """Whether every float in ``tree`` is finite, as one dot product per leaf.

    ``sum(x * x)`` is finite exactly when every element is finite and the squared norm
    does not overflow (``|x| < 1e154`` in float64): one kernel on CPU, where an
    element-wise test plus a reduction takes four.
    """
    squares = [
        jnp.vdot(leaf, leaf)
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.isfinite(sum(squares)) if squares else jnp.bool_(True)


def _update_with_loss(tx: Any, grad: Any, state: Any, theta: Any, loss: Any) -> Any:
    """``tx.update``; transformations that take extra arguments (optax's
    ``GradientTransformationExtraArgs``: `optax.contrib.reduce_on_plateau`,
    `optax.polyak_sgd`, ...) also get ``value=``, the step's batch objective."""
    if not isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx.update(grad, state, theta)
    try:
        return tx.update(grad, state, theta, value=loss)
    except TypeError as err:
        if "required keyword-only argument" not in str(err):
            raise
        raise MiniMLError(
            f"fit: the optax transformation needs more than the step's gradient and "
            f"objective value (optax said: {err}). Mini-batch steps pass value= only; "
            "transformations with a line search (optax.lbfgs, scale_by_zoom_linesearch) "
            "need the full objective: use optimizer=LBFGS() or a SciPy method instead."
        ) from err


def _epoch_function(
    raw_value: Callable[..., Any],
    program: UpdateProgram,
    plan: BatchPlan,
    tol_measure: Callable[[Any], Any] | None,
) -> Callable[..., tuple[EpochCarry, Any]]:
    value_and_grad = jax.value_and_grad(raw_value)
    n_used = plan.n_batches * plan.batch_size

    def epoch(
        carry: EpochCarry, base: Any, data: Any, hyper: Any, values: Any, epoch_index: Any,
        offset: Any, max_steps: Any, tol: Any,
    ) -> tuple[EpochCarry, Any]:  # fmt: skip
        tx = program.make(values)

        def update(args: tuple[Any, Any, Any, Any]) -> tuple[Any, Any]:
            grad, state, theta, loss = args
            updates, new_state = _update_with_loss(tx, grad, state, theta, loss)
            return optax.apply_updates(theta, updates), new_state

        def keep(args: tuple[Any, Any, Any, Any]) -> tuple[Any, Any]:
            return args[2], args[1]

        epoch_key = jax.random.fold_in(hyper.rng_key, epoch_index)
        steps_key = jax.random.fold_in(epoch_key, 1)
        if plan.full:
            rows = jnp.zeros((1, 0), jnp.int32)  # unused: the step takes all the data
        elif plan.shuffle:
            order = jax.random.permutation(jax.random.fold_in(epoch_key, 0), plan.n_samples)
            rows = order[:n_used].reshape(plan.n_batches, plan.batch_size)
        else:
            rows = (offset + jnp.arange(n_used, dtype=jnp.int32)) % plan.n_samples
            rows = rows.reshape(plan.n_batches, plan.batch_size)

        def step(
            inner: tuple[EpochCarry, Any], xs: tuple[Any, Any]
        ) -> tuple[tuple[EpochCarry, Any], Any]:
            c, grad_sum = inner
            batch_rows, index = xs
            if plan.full:
                batch = data
            else:
                batch = jax.tree.map(
                    lambda a: a.at[batch_rows].get(mode="promise_in_bounds", unique_indices=True),
                    data,
                )
            step_hyper = hyper._replace(rng_key=jax.random.fold_in(steps_key, index))
            loss, grad = value_and_grad(c.theta, base, batch, step_hyper)
            active = jnp.logical_not(c.done) & (c.step < max_steps)
            accept = active & jnp.isfinite(loss) & _all_finite(grad)
            # lax.cond, not a select: a skipped update costs nothing (cheap on CPU).
            theta, state = jax.lax.cond(accept, update, keep, (grad, c.opt_state, c.theta, loss))
            done = c.done
            if tol_measure is not None:
                done = done | (accept & (tol_measure(state) < tol))
            record = jnp.where(accept, loss, jnp.where(active, jnp.inf, jnp.nan))
            out = EpochCarry(theta, state, c.step + accept.astype(c.step.dtype), done)
            grad_sum = grad_sum + jnp.where(accept, grad, jnp.zeros_like(grad))
            return (out, grad_sum), record.astype(c.theta.dtype)

        indices = jnp.arange(plan.n_batches, dtype=jnp.int32)
        start = (carry, jnp.zeros_like(carry.theta))
        (end, grad_sum), records = jax.lax.scan(step, start, (rows, indices))
        # A finite gradient can still give non-finite parameters or state (eps = 0,
        # overflow): checked once per epoch, such an epoch is rolled back entirely.
        undone = jnp.logical_not(_all_finite((end.theta, end.opt_state)))
        end = _select(undone, carry, end)
        records = jnp.where(undone & jnp.isfinite(records), jnp.inf, records)
        accepted = jnp.isfinite(records)
        n_accepted = jnp.maximum(accepted.sum(), 1)
        mean_loss = jnp.where(accepted, records, 0.0).sum() / n_accepted
        grad_norm = jnp.where(
            accepted.any(), jnp.linalg.norm(grad_sum / n_accepted.astype(grad_sum.dtype)), jnp.nan
        )
        lr = program.learning_rate(values, end.opt_state)
        scalars = [mean_loss, jnp.nan if lr is None else lr, end.step, end.done, undone, grad_norm]
        dtype = records.dtype
        summary = jnp.concatenate([records, jnp.stack([jnp.asarray(v, dtype) for v in scalars])])
        return end, summary

    return epoch


def _chunk_function(
    raw_value: Callable[..., Any],
    program: UpdateProgram,
    plan: BatchPlan,
    tol_measure: Callable[[Any], Any] | None,
    length: int,
    keep_states: bool,
) -> Callable[..., Any]:
    epoch = _epoch_function(raw_value, program, plan, tol_measure)
    n_used = plan.n_batches * plan.batch_size

    def chunk(
        carry: EpochCarry, base: Any, data: Any, hyper: Any, values: Any, first_epoch: Any,
        first_offset: Any, n_epochs: Any, max_steps: Any, tol: Any,
    ) -> tuple[EpochCarry, Any, Any, Any]:  # fmt: skip
        dtype = carry.theta.dtype

        def one(
            inner: tuple[EpochCarry, Any], k: Any
        ) -> tuple[tuple[EpochCarry, Any], tuple[Any, Any, Any]]:
            c, offset = inner
            runs = (k < n_epochs) & jnp.logical_not(c.done) & (c.step < max_steps)
            c, summary = jax.lax.cond(
                runs,
                lambda c: epoch(
                    c, base, data, hyper, values, first_epoch + k, offset, max_steps, tol
                ),
                lambda c: (c, _skipped_summary(c, plan.n_batches, dtype)),
                c,
            )
            next_offset = (offset + n_used % plan.n_samples) % plan.n_samples
            return (c, next_offset), (summary, c.theta, c.opt_state if keep_states else None)

        indices = jnp.arange(length, dtype=jnp.int32)
        (carry, _), (summaries, thetas, states) = jax.lax.scan(one, (carry, first_offset), indices)
        return carry, summaries, thetas, states

    return chunk


def _skipped_summary(carry: EpochCarry, n_batches: int, dtype: Any) -> Any:
    """The summary of an epoch that did not run: no step records, counters unchanged."""
    scalars = jnp.stack([jnp.asarray(v, dtype) for v in (0.0, jnp.nan, carry.step,
                                                         carry.done, False, jnp.nan)])  # fmt: skip
    return jnp.concatenate([jnp.full(n_batches, jnp.nan, dtype), scalars])


def chunk_length(theta: Any, opt_state: Any) -> int:
    """Epochs per compiled call: `MAX_CHUNK`, fewer for large parameters and state."""
    leaves = jax.tree.leaves((theta, opt_state))
    per_epoch = sum(int(np.size(leaf)) * np.dtype(leaf.dtype).itemsize for leaf in leaves)
    return int(max(1, min(MAX_CHUNK, CHUNK_BYTES // max(per_epoch, 1))))


def compiled_chunk(
    problem: Problem,
    program: UpdateProgram,
    plan: BatchPlan,
    tol_measure: Callable[[Any], Any] | None,
    length: int,
    keep_states: bool,
) -> Callable[..., Any]:
    """The jitted chunk of epochs, cached on the objective by what shapes the program.

    The program's ``structure`` is the key, never the numeric hyper-parameter values,
    which are an argument. Call it as ``chunk(carry, base, data, hyper, values,
    first_epoch, first_offset, n_epochs, max_steps, tol) -> (carry, summaries, thetas,
    states)``, the last three stacked
    over the chunk's epochs (``states`` is None unless ``keep_states``: only a warm
    restart needs the state of an epoch in the middle of a chunk).
    """
    key = ("minibatch_chunk", program.structure, plan, tol_measure, length, keep_states)
    cache = problem.objective.cache
    compiled = cache.get(key)
    if compiled is None:
        raw_value = problem.objective.raw_value
        chunk = _chunk_function(raw_value, program, plan, tol_measure, length, keep_states)
        compiled = jax.jit(chunk)
        cache[key] = compiled
    return compiled
