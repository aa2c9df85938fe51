"""The host side of mini-batch training: dispatch chunks of epochs, report every epoch.

`run_epochs` calls the compiled chunk of `miniml.optim.minibatch` until the requested
epochs ran or the run must end, and hands every epoch to `Problem.report_iteration`
(history, validation, callbacks) with that epoch's parameters: the epoch's mean
accepted step loss (Keras' convention; the exact objective at the final point is
computed once, at the end, by the optimizer), the 2-norm of the mean of its accepted
batch gradients (with full batches: the exact gradient norm at the point the epoch
started from, where its loss was taken too), the learning rate of its last step and
its step losses. The next chunk is dispatched before the host handles the previous
one, so on an asynchronous device the host work overlaps the device work; when a
callback stops the fit at an epoch, the parameters and state of that epoch are
returned and the work done past it is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.optim.base import Problem
from miniml.optim.minibatch import (
    MAX_STEPS,
    BatchPlan,
    EpochCarry,
    EpochStats,
    UpdateProgram,
    chunk_length,
    compiled_chunk,
    data_scale,
    plan_batches,
)

__all__ = ["RunOutcome", "run_epochs"]


@dataclass
class RunOutcome:
    """What `run_epochs` hands back to the optimizer."""

    theta: np.ndarray  # the parameters after the last reported epoch
    prev_theta: np.ndarray  # ... after the epoch before it (the start before epoch 2)
    opt_state: Any  # the optimizer state that goes with ``theta`` (see `keep_states`)
    epochs: int = 0  # epochs reported
    steps: int = 0  # accepted steps
    n_rejected: int = 0  # steps rejected for non-finite values
    converged: bool = False  # the tolerance was reached
    stopped: bool = False  # a callback asked to stop
    all_rejected: bool = False  # the run ended on an epoch without an accepted step
    rejected_at_end: int = 0  # rejected steps of that epoch
    undone: bool = False  # an epoch ended with non-finite values and was rolled back
    learning_rate: float | None = None  # of the last accepted step
    first_rejection: tuple[int, int] | None = None  # (epoch, step) of the first, from 1


def run_epochs(
    problem: Problem,
    program: UpdateProgram,
    values: dict[str, Any],
    opt_state: Any,
    *,
    epochs: int,
    first_epoch: int = 0,
    max_steps: int | None = None,
    tol: float = 0.0,
    tol_measure: Callable[[Any], Any] | None = None,
    keep_states: bool = False,
    where: str,
) -> RunOutcome:
    """Run up to ``epochs`` compiled epochs from ``problem.x0`` and ``opt_state``.

    ``values`` are the optimizer's numeric hyper-parameters, traced arguments of
    ``program``.

    Stops early when a callback asks (``stopped``), when the tolerance is reached
    (``converged``), after ``max_steps`` accepted steps, or after an epoch in which every
    step was rejected (``all_rejected``). ``first_epoch`` numbers the epochs (it seeds
    their permutations), so a warm restart continues the sequence. Only with
    ``keep_states`` is ``outcome.opt_state`` the state of the epoch the run ended at when
    a callback stops it in the middle of a chunk (otherwise it is the chunk's last).
    """
    options = problem.options
    plan = plan_batches(problem.n_samples, options.batch_size, options.shuffle)
    base, data, hyper = problem.args
    scale: Any = np.asarray(data_scale(problem, plan, where), problem.dtype)
    hyper = hyper._replace(data_scale=scale)
    theta0 = jnp.asarray(problem.x0)
    length = chunk_length(theta0, opt_state)
    chunk_fn = compiled_chunk(problem, program, plan, tol_measure, length, keep_states)
    carry = EpochCarry(theta0, opt_state, np.int32(0), np.bool_(False))
    limit = np.int32(MAX_STEPS if max_steps is None else min(max_steps, MAX_STEPS))
    tol_value = np.asarray(tol, problem.dtype)
    outcome = RunOutcome(np.asarray(problem.x0), np.asarray(problem.x0), opt_state)
    pending: tuple[Any, ...] | None = None
    for start in range(0, epochs, length):
        index = first_epoch + start
        offset = np.int32(index * plan.n_batches * plan.batch_size % plan.n_samples)
        n_epochs = np.int32(min(length, epochs - start))
        dispatched = chunk_fn(carry, base, data, hyper, values, np.int32(index), offset,
                              n_epochs, limit, tol_value)  # fmt: skip
        if pending is not None and _finish_chunk(problem, plan, pending, outcome, limit):
            pending = None
            break
        pending = (*dispatched, int(n_epochs))
        carry = dispatched[0]
    if pending is not None:
        _finish_chunk(problem, plan, pending, outcome, limit)
    if isinstance(outcome.opt_state, _StateAt):
        outcome.opt_state = outcome.opt_state.get()
    return outcome


@dataclass
class _StateAt:
    """The optimizer state of epoch ``index`` of a chunk, sliced only when asked for."""

    carry: EpochCarry
    states: Any
    index: int

    def get(self) -> Any:
        if self.states is None:
            return self.carry.opt_state
        return jax.tree.map(lambda leaf: leaf[self.index], self.states)


def _finish_chunk(
    problem: Problem, plan: BatchPlan, result: tuple[Any, ...], outcome: RunOutcome, limit: Any
) -> bool:
    """Report the epochs of one chunk; True when the run must end (at that epoch)."""
    carry, summaries, thetas, states, n_epochs = result
    packed, thetas = jax.device_get((summaries, thetas))  # one transfer per chunk
    for k in range(n_epochs):
        stats = EpochStats.unpack(packed[k], plan.n_batches)
        reported = outcome.epochs
        stop = _finish_epoch(problem, plan, stats, thetas[k], outcome, limit)
        if outcome.epochs > reported:
            outcome.opt_state = _StateAt(carry, states, k)
        if stop:
            return True
    return False


def _finish_epoch(
    problem: Problem,
    plan: BatchPlan,
    stats: EpochStats,
    theta: np.ndarray,
    outcome: RunOutcome,
    limit: Any,
) -> bool:
    """Report one epoch; True when the run must end after it."""
    n_accepted = int(stats.accepted.sum())
    if stats.n_rejected and outcome.first_rejection is None:
        first_step = int(np.argmax(stats.losses == np.inf)) + 1
        outcome.first_rejection = (outcome.epochs + 1, first_step)
    outcome.n_rejected += stats.n_rejected
    outcome.undone = outcome.undone or stats.undone
    problem.n_fun += n_accepted + stats.n_rejected
    problem.n_grad += n_accepted + stats.n_rejected
    if n_accepted == 0:
        outcome.all_rejected = stats.n_rejected > 0
        outcome.rejected_at_end = stats.n_rejected
        return True
    outcome.theta, outcome.prev_theta = theta, outcome.theta
    outcome.epochs += 1
    outcome.steps = stats.step
    outcome.learning_rate = stats.learning_rate
    stop = problem.report_iteration(
        x=theta,
        fun=stats.mean_loss,
        grad_norm=stats.grad_norm,
        learning_rate=stats.learning_rate,
        n_iterations=stats.step,
        step_losses=stats.losses[stats.accepted] if plan.n_batches > 1 else None,
    )
    outcome.converged = stats.done
    outcome.stopped = bool(stop)
    return outcome.stopped or outcome.converged or stats.step >= int(limit)
