"""The device side of `miniml.optim.LBFGS`: the compiled loop and its packing.

`loop_functions` builds one *segment* (up to ``length`` iterations of optax's L-BFGS
with the zoom line search, in one `jax.lax.while_loop`) and the initial carry;
`_compiled_loop` jits and caches it for single fits, and `miniml.fit_batched` vmaps it.
The carry crosses the jit boundary as one vector per dtype and the report as two
vectors (`_flatten_by_dtype`, `_pack_report`), because each array a compiled call takes
or returns costs a few µs, as much as an iteration of a small fit. The host side (the
optimizer, the history replay, the result) is `miniml.optim.lbfgs`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array as JXArray

from miniml.objective import Objective
from miniml.optim._lockstep import optax_zoom_linesearch, scale_by_lockstep_zoom_linesearch
from miniml.optim.base import Problem

__all__ = ["MEMBER_AXIS", "loop_functions"]

# Why the loop stopped (device-side codes); `miniml.optim.lbfgs` says what each means.
_RUNNING, _GTOL, _FTOL, _MAXITER, _MAXFUN, _LINESEARCH, _NONFINITE = range(7)


class _Settings(NamedTuple):
    """Stopping rules, passed to the compiled loop as traced values (numpy on the host)."""

    maxiter: Any
    maxfun: Any
    gtol: Any
    ftol: Any
    max_linesearch_steps: Any


class _Carry(NamedTuple):
    """The solver's state between iterations (and between segments)."""

    x: JXArray
    value: JXArray
    grad: JXArray
    opt_state: Any
    n_iterations: JXArray
    n_evaluations: JXArray
    status: JXArray


class _History(NamedTuple):
    """One segment's per-iteration records; the first ``n_rows`` rows are valid.

    Fields are jax arrays in compiled code and numpy arrays on the host.
    """

    n_rows: Any
    value: Any
    grad_norm: Any
    n_evaluations: Any
    x: Any


class _Report(NamedTuple):
    """What the host reads after a segment (the carry stays on the device)."""

    status: Any
    n_iterations: Any
    n_evaluations: Any
    value: Any
    x: Any
    history: _History


def _compiled_loop(
    problem: Problem, memory_size: int, length: int, keep_iterates: bool
) -> tuple[Any, Any]:
    """The jitted segment function, cached on the objective, and a carry template.

    The template is the flattened carry (`_flatten_by_dtype`) of zeros; the first segment
    call replaces it by the initial state, so the first call needs no program of its own.
    ``keep_iterates`` chooses the program that writes every iterate into the history.
    """
    objective = problem.objective
    key = ("miniml.optim.LBFGS", memory_size, length, keep_iterates)
    cached = objective.cache.get(key)
    if cached is None:
        cached = objective.cache[key] = _build_loop(objective, memory_size, length, keep_iterates)
    segment, initial, templates = cached
    shape_key = (problem.x0.shape, problem.dtype.str)
    template = templates.get(shape_key)
    if template is None:
        settings = _Settings(
            *(
                jax.ShapeDtypeStruct((), t)
                for t in (np.int32, np.int32, problem.dtype, problem.dtype, np.int32)
            )
        )
        shapes = jax.eval_shape(
            initial, jax.ShapeDtypeStruct(problem.x0.shape, problem.dtype), problem.args, settings
        )
        flat = jax.eval_shape(_flatten_by_dtype, shapes)  # the one packing definition
        template = templates[shape_key] = tuple(np.zeros(v.shape, v.dtype) for v in flat)
    return segment, template


MEMBER_AXIS = "miniml_members"
"""The `jax.vmap` axis name of the batched loop (`miniml.fit_batched`)."""


def _solver(max_linesearch_steps: JXArray, memory_size: int, lockstep: bool) -> Any:
    """``optax.lbfgs`` with the zoom line search; with ``lockstep`` (the batched loop,
    vmapped over `MEMBER_AXIS`) its lockstep search and shared memory index."""
    if not lockstep:
        linesearch = optax_zoom_linesearch(max_linesearch_steps)
        return optax.lbfgs(memory_size=memory_size, linesearch=linesearch)
    # optax.lbfgs's own chain, with the direction's memory index shared by the members.
    return optax.chain(
        _shared_memory_index(optax.scale_by_lbfgs(memory_size=memory_size)),
        optax.scale(-1.0),
        scale_by_lockstep_zoom_linesearch(max_linesearch_steps),
    )


def _shared_memory_index(direction: optax.GradientTransformation) -> Any:
    """``optax.scale_by_lbfgs`` that reads its iteration count as the largest over the
    members of the batch.

    optax indexes its circular memory of (s, y) pairs with its iteration count. Under
    `jax.vmap` a per-member count turns every read of the two-loop recursion into a
    gather and every write into a scatter plus a copy (~6 % of a 1 000-member batch of
    `bench.batched`). Every member still running has made every iteration of the batch,
    so its count *is* the largest; members that have stopped have smaller counts, but
    the batched loop discards their updates. So the running members' directions are
    optax's to the bit (``tests/test_batched.py`` compares batches with members alone).
    """

    def update(updates: Any, state: Any, params: Any = None) -> Any:
        shared = state._replace(count=jax.lax.pmax(state.count, MEMBER_AXIS))
        return direction.update(updates, shared, params)

    return optax.GradientTransformation(direction.init, update)


def _fused_value(objective: Objective, args: Any) -> Any:
    """``theta -> value`` whose gradient comes from the objective's fused evaluation.

    The line search differentiates it; a custom VJP makes that one call of
    ``objective.value_and_grad`` (which is chunked when the fit asked for chunks).
    """

    @jax.custom_vjp
    def value(theta: JXArray) -> JXArray:
        return objective.value(theta, *args)

    def forward(theta: JXArray) -> tuple[JXArray, JXArray]:
        return objective.value_and_grad(theta, *args)

    def backward(grad: JXArray, cotangent: JXArray) -> tuple[JXArray]:
        return (cotangent * grad,)

    value.defvjp(forward, backward)
    return value


def _build_loop(
    objective: Objective, memory_size: int, length: int, keep_iterates: bool
) -> tuple[Any, Any, dict]:
    segment, initial = loop_functions(objective, memory_size, length, keep_iterates=keep_iterates)

    def packed_segment(
        flat_carry: tuple[JXArray, ...], x0: JXArray, fresh: JXArray, args: Any, settings: Any
    ) -> tuple[tuple[JXArray, ...], tuple[JXArray, JXArray], JXArray]:
        # The carry (x, value, gradient, optax's state: ~18 arrays) travels as one
        # vector per dtype: every array a compiled call takes or returns costs a few
        # µs, which made the segment of a small fit ~1.25x the hand-written loop.
        shapes = jax.eval_shape(initial, x0, args, settings)
        carry, report = segment(_unflatten_by_dtype(flat_carry, shapes), x0, fresh, args, settings)
        return _flatten_by_dtype(carry), _pack_report(report), carry.x

    return jax.jit(packed_segment, donate_argnums=0), initial, {}


def _dtype_groups(leaves: list[Any]) -> list[str]:
    return sorted({np.dtype(leaf.dtype).name for leaf in leaves})


def _flatten_by_dtype(tree: Any) -> tuple[JXArray, ...]:
    """The leaves of ``tree`` raveled into one vector per dtype (dtype names sorted)."""
    leaves = jax.tree.leaves(tree)
    return tuple(
        jnp.concatenate([jnp.ravel(x) for x in leaves if np.dtype(x.dtype).name == name])
        for name in _dtype_groups(leaves)
    )


def _unflatten_by_dtype(vectors: tuple[JXArray, ...], shapes: Any) -> Any:
    """Inverse of `_flatten_by_dtype` for a tree with the structure of ``shapes``."""
    leaves, treedef = jax.tree.flatten(shapes)
    sources = dict(zip(_dtype_groups(leaves), vectors, strict=True))
    offsets = dict.fromkeys(sources, 0)
    pieces = []
    for leaf in leaves:
        name, size = np.dtype(leaf.dtype).name, math.prod(leaf.shape)
        start = offsets[name]
        pieces.append(sources[name][start : start + size].reshape(leaf.shape))
        offsets[name] = start + size
    return jax.tree.unflatten(treedef, pieces)


def _pack_report(report: _Report) -> tuple[JXArray, JXArray]:
    """The report as one integer and one float vector: two transfers instead of ten
    (each device-to-host copy costs ~15-25 µs, as much as an iteration of a small fit)."""
    history = report.history
    counts = [report.status, report.n_iterations, report.n_evaluations, history.n_rows]
    integers = jnp.concatenate([jnp.stack(counts).astype(jnp.int32), history.n_evaluations])
    values = [report.value[None], report.x.ravel(), history.value, history.grad_norm]
    if history.x is not None:
        values.append(history.x.ravel())
    return integers, jnp.concatenate(values)


def _unpack_report(
    integers: np.ndarray,
    values: np.ndarray,
    x_shape: tuple[int, ...],
    length: int,
    keep_iterates: bool,
) -> _Report:
    """Inverse of `_pack_report`, as numpy views of the two transferred vectors."""
    size = math.prod(x_shape)
    x_end = 1 + size
    history = _History(
        n_rows=integers[3],
        value=values[x_end : x_end + length],
        grad_norm=values[x_end + length : x_end + 2 * length],
        n_evaluations=integers[4:],
        x=values[x_end + 2 * length :].reshape(length, *x_shape) if keep_iterates else None,
    )
    x = values[1:x_end].reshape(x_shape)
    return _Report(integers[0], integers[1], integers[2], values[0], x, history)


def loop_functions(
    objective: Objective,
    memory_size: int,
    length: int,
    batched: bool = False,
    keep_iterates: bool = True,
) -> tuple[Any, Any]:
    """The un-jitted ``(segment, initial)`` of the compiled loop.

    ``segment(carry, x0, fresh, args, settings) -> (carry, report)`` runs up to
    ``length`` iterations; ``initial(x0, args, settings)`` is the starting carry. The
    fit jits ``segment``; `miniml.batched` jits ``jax.vmap(segment)`` to run many
    independent problems in one loop, with ``batched=True`` and ``axis_name=MEMBER_AXIS``
    (the members share optax's memory index, see `_shared_memory_index`): the line search then
    makes one evaluation per round under `jax.vmap` (see `miniml.optim._lockstep`),
    members that have stopped make none, and the history keeps no iterates (the report's
    ``history.x`` is None; under `jax.vmap` a per-member row index turns every write into
    a scatter into, and every loop step into a copy of, a (K, length, size) buffer).

    With ``keep_iterates=False`` the history keeps no iterates either: a single fit
    asks for them only when a callback or validation reads them, since the (length,
    size) buffer cost about 20 % of a 500-iteration fit of P4a's network.
    """
    iterates = keep_iterates and not batched

    def initial(x0: JXArray, args: Any, settings: _Settings) -> _Carry:
        value, grad = objective.value_and_grad(x0, *args)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        status = jnp.where(
            ~finite,
            _NONFINITE,
            jnp.where(jnp.max(jnp.abs(grad), initial=0.0) <= settings.gtol, _GTOL, _RUNNING),
        )
        opt_state = _solver(settings.max_linesearch_steps, memory_size, batched).init(x0)
        zero = jnp.zeros((), jnp.int32)
        carry = _Carry(x0, value, grad, opt_state, zero, zero + 1, status.astype(jnp.int32))
        return _strong(carry)

    def segment(
        carry: _Carry, x0: JXArray, fresh: JXArray, args: Any, settings: _Settings
    ) -> tuple[_Carry, _Report]:
        carry = jax.lax.cond(fresh, lambda: initial(x0, args, settings), lambda: _strong(carry))
        solver = _solver(settings.max_linesearch_steps, memory_size, batched)
        value_fn = _fused_value(objective, args)
        x = carry.x
        history = _History(
            n_rows=jnp.zeros((), jnp.int32),
            value=jnp.zeros(length, x.dtype),
            grad_norm=jnp.zeros(length, x.dtype),
            n_evaluations=jnp.zeros(length, jnp.int32),
            x=jnp.zeros((length, *x.shape), x.dtype) if iterates else None,
        )

        def running(state: tuple[_Carry, _History]) -> JXArray:
            return (state[0].status == _RUNNING) & (state[1].n_rows < length)

        def iterate(state: tuple[_Carry, _History]) -> tuple[_Carry, _History]:
            old, records = state
            # Under vmap the loop body also runs for members that have stopped.
            extra = {"active": running(state)} if batched else {}
            updates, opt_state = solver.update(
                old.grad, old.opt_state, old.x, value=old.value, grad=old.grad,
                value_fn=value_fn, **extra,
            )  # fmt: skip
            search = optax.tree.get(opt_state, "info")
            line = optax.tree.get(opt_state, "learning_rate")
            x_new = optax.apply_updates(old.x, updates)
            value = optax.tree.get(opt_state, "value")
            grad = optax.tree.get(opt_state, "grad")
            n_evaluations = old.n_evaluations + search.num_linesearch_steps.astype(jnp.int32)
            finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
            finite &= jnp.all(jnp.isfinite(x_new))
            # A zero step means the search saw only non-finite values (optax keeps x).
            no_step = line <= 0
            # A step that raises the objective is a failed search: the decrease condition
            # was missed, or the direction was not a descent one (an L-BFGS pair with
            # negative curvature), where that condition itself allows an increase.
            uphill = jnp.vdot(x_new - old.x, old.grad) >= 0
            ls_failed = (value > old.value) & ((search.decrease_error > 0) | uphill)
            accepted = finite & ~no_step & ~ls_failed
            n_iterations = old.n_iterations + accepted.astype(jnp.int32)
            scale = jnp.maximum(jnp.maximum(jnp.abs(old.value), jnp.abs(value)), 1.0)
            status = jnp.select(
                [
                    ~finite | (no_step & jnp.isinf(search.decrease_error)),
                    no_step | ls_failed,
                    jnp.max(jnp.abs(grad), initial=0.0) <= settings.gtol,
                    (old.value - value) <= settings.ftol * scale,
                    n_iterations >= settings.maxiter,
                    n_evaluations >= settings.maxfun,
                ],
                [_NONFINITE, _LINESEARCH, _GTOL, _FTOL, _MAXITER, _MAXFUN],
                _RUNNING,
            ).astype(jnp.int32)
            # A rejected step ends the loop, so only the iterate needs restoring; the
            # optimizer state (O(memory_size * n)) is left as the line search made it.
            carry = _Carry(
                jnp.where(accepted, x_new, old.x),
                jnp.where(accepted, value, old.value),
                jnp.where(accepted, grad, old.grad),
                opt_state,
                n_iterations,
                n_evaluations,
                status,
            )
            row = records.n_rows
            records = _History(
                n_rows=row + accepted.astype(jnp.int32),
                value=records.value.at[row].set(value),
                grad_norm=records.grad_norm.at[row].set(jnp.linalg.norm(grad)),
                n_evaluations=records.n_evaluations.at[row].set(n_evaluations),
                x=records.x.at[row].set(x_new) if iterates else None,
            )
            return carry, records

        carry, history = jax.lax.while_loop(running, iterate, (carry, history))
        carry = _strong(carry)
        report = _Report(
            carry.status, carry.n_iterations, carry.n_evaluations, carry.value, carry.x, history
        )
        return carry, report

    return segment, initial


def _strong(tree: Any) -> Any:
    """The same arrays without weak types, so every segment call has the same signature."""
    return jax.tree.map(lambda a: jnp.asarray(a).astype(jnp.asarray(a).dtype), tree)
