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

from miniml.optim._lockstep import scale_by_lockstep_zoom_linesearch


def quadratic(x):
    return 0.5 * jnp.sum(jnp.arange(1.0, x.size + 1) * x**2)


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def walled(x):
    """A quadratic that is NaN beyond x[0] > 0.3: long steps leave the domain."""
    return jnp.where(x[0] > 0.3, jnp.nan, jnp.sum((x - 1.0) ** 2))


# (function, start, direction as a multiple of -grad): each case takes a different path
# through optax's search — accept at once, grow the interval, zoom with cubic/quadratic
# interpolation or bisection, step back from a non-finite region.
CASES = {
    "accepts the first step": (quadratic, np.ones(4), 0.5),
    "grows the interval": (quadratic, np.ones(4), 1e-3),
    "zooms (rosenbrock)": (rosenbrock, np.array([-1.2, 1.0, -0.5, 0.8]), 1.0),
    "zooms back from a long step": (quadratic, np.ones(4), 3.0),
    "leaves the domain": (walled, np.full(3, -1.0), 1.0),
}


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
@pytest.mark.parametrize("max_steps", [20, 3])  # 3: some searches run out of rounds
def test_lockstep_search_takes_optax_rounds_exactly(case, max_steps):
    fn, x0, scale = CASES[case]
    reference, lockstep = searches(max_steps)
    theirs = jax.jit(lambda x: run_search(reference, fn, x, scale))(jnp.asarray(x0))
    ours = jax.jit(lambda x: run_search(lockstep, fn, x, scale))(jnp.asarray(x0))
    assert_same_search(ours, theirs)


def test_the_cases_cover_every_path_of_the_search():
    """The cases above are only worth something if they reach the different paths."""
    reference, _ = searches(20)
    rounds, steps = {}, {}
    for case, (fn, x0, scale) in CASES.items():
        _, state = jax.jit(lambda x, fn=fn, scale=scale: run_search(reference, fn, x, scale))(
            jnp.asarray(x0)
        )
        rounds[case] = int(state.info.num_linesearch_steps)
        steps[case] = float(state.learning_rate)
    assert rounds["accepts the first step"] == 1 and steps["accepts the first step"] == 1.0
    assert rounds["grows the interval"] >= 4 and steps["grows the interval"] >= 8.0
    assert rounds["zooms (rosenbrock)"] >= 3 and 0 < steps["zooms (rosenbrock)"] < 1
    assert rounds["zooms back from a long step"] >= 2
    assert 0 < steps["leaves the domain"] < 1


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
    x0, scale = CASES["grows the interval"][1:]
    search = jax.jit(lambda x, active: run_search(lockstep, fn, x, scale, active=active))
    _, state = jax.block_until_ready(search(jnp.asarray(x0), False))
    assert int(state.info.num_linesearch_steps) == 0
    assert len(calls) == 1  # run_search's own evaluation at the start
    _, state = jax.block_until_ready(search(jnp.asarray(x0), True))
    assert int(state.info.num_linesearch_steps) >= 4
    assert len(calls) == 2 + int(state.info.num_linesearch_steps)
