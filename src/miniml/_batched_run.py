"""The vmapped compiled loops behind `miniml.batched`: L-BFGS and mini-batch epochs.

Both run K independent problems in one compiled program by `jax.vmap` over the
single-problem loops of `miniml.optim.lbfgs` and `miniml.optim.minibatch`. A batched
`jax.lax.while_loop` runs until every member's condition is false and keeps each
finished member's carry unchanged (JAX selects the old carry for it), so each member's
iterate, counters and status are exactly those of its own run; a batched
`jax.lax.cond` evaluates both branches and selects, which is why the L-BFGS loop runs
with ``batched=True`` (a line search whose rounds make one evaluation, see
`miniml.optim._lockstep`). The cost is that of the slowest member: every iteration of
the batch evaluates all K objectives.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml._batched_result import MemberRuns
from miniml.objective import Hyper, Objective
from miniml.optim._lbfgs_loop import _RUNNING, MEMBER_AXIS, _strong, loop_functions
from miniml.optim.lbfgs import LBFGS
from miniml.optim.minibatch import (
    CHUNK_BYTES,
    MAX_CHUNK,
    MAX_STEPS,
    BatchPlan,
    EpochCarry,
    EpochStats,
    UpdateProgram,
    _chunk_function,
)

__all__ = [
    "GROUP_BYTES",
    "HYPER_AXES",
    "exact_values",
    "member_groups",
    "run_lbfgs",
    "run_stochastic",
]

HYPER_AXES: Any = Hyper(*(0 if name in ("reg_lambda", "rng_key") else None
                         for name in Hyper._fields))  # type: ignore[arg-type]  # fmt: skip
"""Per-member hyper-parameters: ``reg_lambda`` and the random key."""


SEGMENT_LENGTH = 32
"""Iterations per batched L-BFGS segment unless ``LBFGS(segment_length=...)`` says.

Under `jax.vmap` a while loop whose predicate differs per member selects every carry
array, per member, in every iteration: the (K, length) history buffers are copied
each time. 32 keeps that copy small (1 000 ridge fits of `bench.batched`: about 80 ms
instead of 83-88 ms with 128) and costs long fits one host round trip per 32
iterations (100 MLP fits of 400 iterations: no measurable change).
"""


GROUP_BYTES = 4 * 2**20
"""On a CPU, the batched L-BFGS fits its members in groups, one after the other, whose
per-member data and solver state total about this much.

Each line-search round reads every member's data; when the whole batch's data exceeds
what the caches keep, every round streams it from memory again, while a group's
data stays cached for the rounds of its whole fit. 1 000 ridge fits of
`bench.batched` (17 MiB of data): 76.6 -> 49.2 ms in groups of 4 MiB (5 groups),
58.6 ms in groups of 1 MiB, no gain in groups of 8 MiB (a 2-core EPYC VM with 1 MiB of
L2 per core and a shared L3). On
accelerators, and when the members are laid out over several devices, the batch
stays one group.
"""


def member_groups(n_members: int, data: Any, data_axes: Any, x0: np.ndarray,
                  memory_size: int) -> int:  # fmt: skip
    """How many groups of members `run_lbfgs` should fit one after the other (see
    `GROUP_BYTES`); 1 unless the batch's data and state exceed it on a CPU."""
    if jax.devices()[0].platform != "cpu":
        return 1
    per_member = sum(
        leaf.nbytes // max(leaf.shape[0], 1)
        for axis, subtree in _pairs(data_axes, data)
        if axis is not None
        for leaf in jax.tree.leaves(subtree)
    )
    # x, gradient, direction, the L-BFGS memory of (s, y) pairs, optax's copies.
    per_member += (2 * memory_size + 8) * x0[0].nbytes
    return max(1, min(n_members, -(-(n_members * per_member) // GROUP_BYTES)))


def _pairs(axes: Any, tree: Any) -> list[tuple[Any, Any]]:
    """``(axis, subtree)`` for each leaf of the `jax.vmap`-style prefix ``axes``."""
    pairs: list[tuple[Any, Any]] = []
    jax.tree.map(lambda axis, sub: pairs.append((axis, sub)), axes, tree, is_leaf=_is_none)
    return pairs


def _is_none(node: Any) -> bool:
    return node is None


def _in_groups(batched: Any, groups: int, args_axes: Any) -> Any:
    """``batched(carry, x0, fresh, args, settings)`` (vmapped over members) run on
    ``groups`` equal groups of the members, one after the other (`jax.lax.map`)."""

    def split(tree: Any) -> Any:
        return jax.tree.map(lambda a: a.reshape(groups, a.shape[0] // groups, *a.shape[1:]), tree)

    def grouped(carry: Any, x0: Any, fresh: Any, args: Any, settings: Any) -> Any:
        keep = jax.tree.map(lambda axis, sub: sub if axis is None else None, args_axes, args,
                            is_leaf=_is_none)  # fmt: skip
        per_member = jax.tree.map(lambda axis, sub: None if axis is None else sub, args_axes,
                                  args, is_leaf=_is_none)  # fmt: skip

        def one_group(members: Any) -> Any:
            group_carry, group_x0, group_args = members
            group_args = jax.tree.map(lambda axis, shared, own: shared if axis is None else own,
                                      args_axes, keep, group_args, is_leaf=_is_none)  # fmt: skip
            return batched(group_carry, group_x0, fresh, group_args, settings)

        out = jax.lax.map(one_group, split((carry, x0, per_member)))
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)

    return grouped


def _cached(objective: Objective, key: Any, build: Any) -> Any:
    compiled = objective.cache.get(key)
    if compiled is None:
        compiled = objective.cache[key] = build()
    return compiled


def run_lbfgs(
    optimizer: LBFGS, objective: Objective, x0: np.ndarray, data: Any, data_axes: Any,
    mode: str, hyper: Hyper, groups: int = 1,
) -> MemberRuns:  # fmt: skip
    """Run ``jax.vmap`` of the compiled L-BFGS loop over the K rows of ``x0``, in
    ``groups`` groups of members one after the other (K must be a multiple)."""
    dtype = x0.dtype
    length = optimizer.segment_length or SEGMENT_LENGTH
    args_axes = (None, data_axes, HYPER_AXES)

    def build() -> tuple[Any, Any]:
        segment, initial = loop_functions(objective, optimizer.memory_size, length, batched=True)
        batched = jax.vmap(segment, (0, 0, None, args_axes, None), axis_name=MEMBER_AXIS)
        if groups > 1:
            batched = _in_groups(batched, groups, args_axes)
        return jax.jit(batched, donate_argnums=0), jax.vmap(initial, (0, args_axes, None))

    key = ("miniml.batched.LBFGS", optimizer.memory_size, length, mode, groups)
    segment, initial = _cached(objective, key, build)
    settings = optimizer.settings(dtype)
    args = (None, data, hyper)

    def carry_shapes() -> Any:
        return jax.eval_shape(lambda *a: _strong(initial(*a)), x0, args, settings)

    # Tracing for the carry's shapes costs ~15 ms: once per argument shapes.
    leaves, treedef = jax.tree.flatten((x0, args, settings))
    signature = tuple((np.shape(a), str(a.dtype)) for a in leaves)
    shapes = _cached(objective, ("miniml.batched.carry", key, treedef, signature), carry_shapes)
    carry = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    histories = []
    fresh = True
    while True:
        carry, report = segment(carry, x0, np.bool_(fresh), args, settings)
        fresh = False
        report = jax.device_get(report)
        histories.append(report.history)
        if not np.any(report.status == _RUNNING):
            break
    loss, grad_norm, evaluations = _member_rows(histories)
    return MemberRuns(
        x=np.asarray(report.x),
        value=np.asarray(report.value),
        n_iterations=np.asarray(report.n_iterations, int),
        n_evaluations=np.asarray(report.n_evaluations, int),
        status=np.asarray(report.status, int),
        loss=loss,
        grad_norm=grad_norm,
        evaluations=evaluations,
    )


def _member_rows(histories: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """Each member's loss, gradient norm and evaluation count per iteration (arrays),
    from the segments' (K, length) buffers, whose first ``n_rows`` rows are valid."""
    counts = np.stack([h.n_rows for h in histories], axis=1).tolist()  # (K, segments)

    def rows(field: str) -> list[Any]:
        parts = [np.asarray(getattr(h, field)) for h in histories]
        if parts[0].dtype.kind == "i":
            parts = [part.astype(int) for part in parts]
        if len(parts) == 1:  # the usual case: a view per member
            return [row[:n] for row, (n,) in zip(parts[0], counts, strict=True)]
        return [np.concatenate([part[k, :n] for part, n in zip(parts, member, strict=True)])
                for k, member in enumerate(counts)]  # fmt: skip

    return rows("value"), rows("grad_norm"), rows("n_evaluations")


def run_stochastic(
    objective: Objective, program: UpdateProgram, values: dict[str, Any], plan: BatchPlan,
    tol: float, tol_measure: Any, epochs: int, max_steps: int | None, x0: np.ndarray,
    data: Any, data_axes: Any, mode: str, hyper: Hyper,
) -> MemberRuns:  # fmt: skip
    """Run ``jax.vmap`` of the compiled mini-batch epochs over the K rows of ``x0``.

    ``values`` holds the optimizer's traced hyper-parameters, each of shape (K,).
    """
    n_members = x0.shape[0]
    dtype = x0.dtype

    def init_build() -> Any:
        return jax.jit(jax.vmap(lambda theta, v: program.make(v).init(theta)))

    init = _cached(objective, ("miniml.batched.init", program.structure), init_build)
    opt_state = init(x0, values)
    per_member = sum(
        int(np.prod(leaf.shape[1:])) * np.dtype(leaf.dtype).itemsize
        for leaf in jax.tree.leaves((x0, opt_state))
    )
    length = int(max(1, min(MAX_CHUNK, CHUNK_BYTES // max(n_members * per_member, 1))))
    axes = (0, None, data_axes, HYPER_AXES, 0, None, None, None, None, None)

    def build() -> Any:
        chunk = _chunk_function(objective.raw_value, program, plan, tol_measure, length, False)
        return jax.jit(jax.vmap(chunk, in_axes=axes))

    key = ("miniml.batched.chunk", program.structure, plan, tol_measure, length, mode)
    chunk_fn = _cached(objective, key, build)
    zeros = np.zeros(n_members, np.int32)
    carry = EpochCarry(jnp.asarray(x0), opt_state, zeros, np.zeros(n_members, bool))
    limit = np.int32(MAX_STEPS if max_steps is None else min(max_steps, MAX_STEPS))
    runs = MemberRuns(x0, np.zeros(n_members), zeros.astype(int), zeros.astype(int),
                      zeros.astype(int))  # fmt: skip
    runs.loss = [[] for _ in range(n_members)]
    runs.learning_rate = [[] for _ in range(n_members)]
    runs.grad_norm = [[] for _ in range(n_members)]
    runs.evaluations = [[] for _ in range(n_members)]
    n_used = plan.n_batches * plan.batch_size
    for start in range(0, epochs, length):
        offset = np.int32(start * n_used % plan.n_samples)
        n_epochs = np.int32(min(length, epochs - start))
        carry, summaries, _, _ = chunk_fn(
            carry,
            None,
            data,
            hyper,
            values,
            np.int32(start),
            offset,
            n_epochs,
            limit,
            np.asarray(tol, dtype),
        )
        packed = np.asarray(jax.device_get(summaries))  # (K, length, n_batches + 5)
        for k in range(n_members):
            for e in range(int(n_epochs)):
                stats = EpochStats.unpack(packed[k, e], plan.n_batches)
                n_accepted = int(stats.accepted.sum())
                runs.n_evaluations[k] += n_accepted + stats.n_rejected
                runs.status[k] |= int(stats.n_rejected > 0 or stats.undone)
                if n_accepted:  # an epoch's record, as a single fit's history has it
                    runs.loss[k].append(stats.mean_loss)
                    runs.learning_rate[k].append(np.nan if stats.learning_rate is None
                                                 else stats.learning_rate)  # fmt: skip
                    runs.grad_norm[k].append(np.nan if stats.grad_norm is None
                                             else stats.grad_norm)  # fmt: skip
                    runs.evaluations[k].append(int(runs.n_evaluations[k]))
        step, done = jax.device_get((carry.step, carry.done))
        if np.all(done | (step >= limit)):
            break
    runs.x = np.asarray(carry.theta)
    runs.n_iterations = np.asarray(jax.device_get(carry.step), int)
    runs.converged = np.asarray(jax.device_get(carry.done), bool)
    runs.value = np.array([losses[-1] if losses else np.nan for losses in runs.loss])
    return runs


def exact_values(
    objective: Objective, x: np.ndarray, data: Any, data_axes: Any, mode: str, hyper: Hyper
) -> np.ndarray:
    """Every member's full-data objective at its row of ``x``: one vmapped evaluation."""
    key = ("miniml.batched.value", mode)

    def build() -> Any:
        axes = (0, None, data_axes, HYPER_AXES)
        return jax.jit(jax.vmap(objective.raw_value, in_axes=axes))

    value = _cached(objective, key, build)
    return np.asarray(value(jnp.asarray(x), None, data, hyper))
