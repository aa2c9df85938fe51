"""The lockstep zoom line search (`miniml.optim._lockstep`) against optax's own.

It must take optax's rounds exactly (same trial steps, same accepted step, value and
gradient, same round count) while evaluating the objective once per round under
`jax.vmap`, where optax's search evaluates twice (both branches of its round run).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from miniml import PerformanceWarning
from miniml.optim import _lockstep
from miniml.optim._lockstep import scale_by_lockstep_zoom_linesearch


def quadratic(x):
    return 0.5 * jnp.sum(jnp.arange(1.0, x.size + 1) * x**2)


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def walled(x):
    """A quadratic that is NaN beyond x[0] > 0.3: long steps leave the domain."""
    return jnp.where(x[0] > 0.3, jnp.nan, jnp.sum((x - 1.0) ** 2))


# (function, start, direction as a multiple of -grad, what optax's search does with it):
# each case takes a different path through the search — accept at once, grow the
# interval, zoom with cubic/quadratic interpolation or bisection, step back from a
# non-finite region. ``reaches(rounds, step)`` checks that the case really does.
CASES = {
    "accepts the first step": (
        quadratic, np.ones(4), 0.5, lambda rounds, step: rounds == 1 and step == 1.0
    ),
    "grows the interval": (
        quadratic, np.ones(4), 1e-3, lambda rounds, step: rounds >= 4 and step >= 8.0
    ),
    "zooms (rosenbrock)": (
        rosenbrock, np.array([-1.2, 1.0, -0.5, 0.8]), 1.0,
        lambda rounds, step: rounds >= 3 and 0 < step < 1,
    ),
    "zooms back from a long step": (quadratic, np.ones(4), 3.0, lambda rounds, step: rounds >= 2),
    "leaves the domain": (walled, np.full(3, -1.0), 1.0, lambda rounds, step: 0 < step < 1),
}  # fmt: skip


def run_search(linesearch, fn, x, scale, **extra):
    value, grad = jax.value_and_grad(fn)(x)
    updates = -scale * grad
    state = linesearch.init(x)
    return linesearch.update(updates, state, x, value=value, grad=grad, value_fn=fn, **extra)


def searches(max_steps):
    reference = optax.scale_by_zoom_linesearch(
        max_linesearch_steps=max_steps, initial_guess_strategy="one"
    )
    return reference, scale_by_lockstep_zoom_linesearch(max_steps)


def assert_same_search(ours, theirs):
    """Same round count and step; values equal up to the evaluation's round-off (the
    same objective compiled into two programs may sum in a different order)."""
    (ours_updates, ours_state), (their_updates, their_state) = ours, theirs
    assert ours_state.info.num_linesearch_steps.tolist() == (
        their_state.info.num_linesearch_steps.tolist()
    )
    np.testing.assert_allclose(ours_state.learning_rate, their_state.learning_rate, rtol=1e-15)
    np.testing.assert_allclose(ours_updates, their_updates, rtol=1e-15)
    for a, b in zip(jax.tree.leaves(ours_state), jax.tree.leaves(their_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("case", CASES)
def test_lockstep_search_takes_optax_rounds_exactly(case):
    fn, x0, scale, reaches = CASES[case]

    def both(x):  # one program per case: optax's and ours, with 20 and with 3 rounds
        return {max_steps: tuple(run_search(search, fn, x, scale) for search in searches(max_steps))
                for max_steps in (20, 3)}  # fmt: skip

    results = jax.jit(both)(jnp.asarray(x0))
    for theirs, ours in results.values():
        assert_same_search(ours, theirs)
    _, state = results[20][0]
    rounds = int(state.info.num_linesearch_steps)
    assert reaches(rounds, float(state.learning_rate))
    _, short = results[3][0]  # searches that need more than 3 rounds run out of them
    assert int(short.info.num_linesearch_steps) == min(rounds, 3)


def count_calls(fn, calls):
    """``fn`` that appends to ``calls`` once per (batched) evaluation."""

    def counted(x):
        jax.debug.callback(lambda: calls.append(1))
        return fn(x)

    return counted


def test_under_vmap_each_round_evaluates_once_and_members_match_single_searches():
    starts = np.stack([CASES[c][1] for c in ("accepts the first step", "grows the interval")])
    scales = np.array([0.5, 1e-3])
    reference, lockstep = searches(20)
    results = {}
    for name, linesearch in (("optax", reference), ("lockstep", lockstep)):
        calls = []
        fn = count_calls(quadratic, calls)
        batched = jax.jit(jax.vmap(lambda x, s, ls=linesearch, fn=fn: run_search(ls, fn, x, s)))
        results[name] = jax.block_until_ready(batched(jnp.asarray(starts), jnp.asarray(scales)))
        calls.clear()  # tracing and compiling made no calls, but be sure
        jax.block_until_ready(batched(jnp.asarray(starts), jnp.asarray(scales)))
        results[name + " calls"] = len(calls)
    rounds = np.asarray(results["lockstep"][1].info.num_linesearch_steps)
    assert rounds.tolist()[0] == 1 and rounds[1] >= 4
    # The callback takes no batched argument, so it runs once per batched evaluation:
    # one in run_search's start, then per round one (ours) or one per branch (optax's).
    assert results["lockstep calls"] == 1 + rounds.max()
    assert results["optax calls"] == 1 + 2 * rounds.max()
    assert_same_search(results["lockstep"], results["optax"])
    for k in range(2):
        alone = jax.jit(lambda x, s: run_search(lockstep, quadratic, x, s))(starts[k], scales[k])
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(results["lockstep"]), strict=True):
            np.testing.assert_allclose(a, b[k], rtol=1e-15)


def test_an_inactive_member_makes_no_round():
    _, lockstep = searches(20)
    calls = []
    fn = count_calls(quadratic, calls)
    x0, scale = CASES["grows the interval"][1:3]
    search = jax.jit(lambda x, active: run_search(lockstep, fn, x, scale, active=active))
    _, state = jax.block_until_ready(search(jnp.asarray(x0), False))
    assert int(state.info.num_linesearch_steps) == 0
    assert len(calls) == 1  # run_search's own evaluation at the start
    _, state = jax.block_until_ready(search(jnp.asarray(x0), True))
    assert int(state.info.num_linesearch_steps) >= 4
    assert len(calls) == 2 + int(state.info.num_linesearch_steps)


def test_the_verified_optax_is_installed_here():
    """The project's environment runs the lockstep search (and so the tests above)."""
    assert _lockstep.lockstep_unavailable() is None
    assert optax.__version__ in _lockstep.VERIFIED_OPTAX_VERSIONS


def test_missing_optax_internals_give_optax_own_search_with_the_reason(monkeypatch):
    monkeypatch.setattr(_lockstep, "_IMPORT_ERROR", "ImportError: cannot import name '_cubicmin'")
    with pytest.warns(PerformanceWarning, match="lacks the internals.*_cubicmin.*optax=="):
        search = scale_by_lockstep_zoom_linesearch(20)
    x = jnp.array([-1.2, 1.0])
    ours = run_search(search, rosenbrock, x, 1.0, active=False)
    theirs = run_search(optax.scale_by_zoom_linesearch(20), rosenbrock, x, 1.0)
    assert_same_search(ours, theirs)  # ``active`` accepted and ignored
