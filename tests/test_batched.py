"""Batched fitting (`miniml.fit_batched`) and the helpers built on it.

References are independent: numpy closed forms (ridge), loops of ordinary
``model.fit`` calls (cross-validation, Adam) and numpy forward passes (multi-start).
Compiling a vmapped loop takes seconds, so tests share models (the compiled loop is
cached on the model's objective) and shapes.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import miniml
from miniml import MiniMLError, MiniMLModel, MiniMLParam
from miniml._batched_inputs import random_starts
from miniml.loss import BinaryCrossEntropyLogLoss, LNormRegularization, squared_error_loss
from miniml.optim import LBFGS, Adam, ScipyOptimizer
from tests.models import LinearModel, TinyMLP

K, N, D = 1000, 200, 10
TIGHT = LBFGS(gtol=1e-10, ftol=0.0)


def ridge_problems(seed, n_members=K):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_members, N, D))
    y = X @ rng.normal(size=(n_members, D, 1)) + 0.1 * rng.normal(size=(n_members, N, 1))
    lambdas = 10 ** rng.uniform(-2, 2, size=n_members)
    return X, y, lambdas


def ridge_closed_form(X, y, lambdas):
    """argmin ||X w - y||^2 + lambda ||w||^2 (LinearModel: sum of squares, L2 not halved)."""
    eye = np.eye(X.shape[2])
    return np.stack([np.linalg.solve(Xk.T @ Xk + lam * eye, Xk.T @ yk).ravel()
                     for Xk, yk, lam in zip(X, y, lambdas, strict=True)])  # fmt: skip


@pytest.fixture(scope="module")
def ridge():
    model = LinearModel(D, 1, bias=False)
    model.bind()
    return model


@pytest.fixture(scope="module")
def thousand_ridge_fits(ridge):
    """The 1000 ridge problems of acceptance item 1 and their batched fit."""
    X, y, lambdas = ridge_problems(0)
    return X, y, lambdas, miniml.fit_batched(ridge, X, y, reg_lambda=lambdas, optimizer=TIGHT)


def test_thousand_ridge_fits_match_closed_forms(ridge, thousand_ridge_fits):
    X, y, lambdas, result = thousand_ridge_fits
    reference = ridge_closed_form(X, y, lambdas)
    assert result.x_opt.shape == (K, D)
    assert result.success.all(), result.messages[:3]
    scale = np.abs(reference).max()
    np.testing.assert_allclose(result.x_opt, reference, rtol=1e-8, atol=1e-8 * scale)
    errors = np.linalg.norm(result.x_opt - reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert errors.max() < 1e-8
    residual = np.einsum("knd,kd->kn", X, reference) - y[..., 0]
    objective = (residual**2).sum(axis=1) + lambdas * (reference**2).sum(axis=1)
    np.testing.assert_allclose(result.objective_value, objective, rtol=1e-10)
    assert all(len(h) == n for h, n in zip(result.loss_history, result.n_iterations, strict=True))
    member = result.member(7)
    assert isinstance(member, LinearModel) and member is not ridge
    np.testing.assert_allclose(np.asarray(member.W.value).ravel(), reference[7], rtol=1e-8)
    np.testing.assert_allclose(np.asarray(member.predict(X[7])), X[7] @ result.x_opt[7][:, None])
    history = result.history(7)
    assert len(history) == result.n_iterations[7]


def test_member_histories_count_evaluations_like_a_single_fit(ridge, thousand_ridge_fits):
    X, y, lambdas, result = thousand_ridge_fits
    for k in (0, 7):
        counts = [record["fg_evals"] for record in result.history(k)]
        assert counts == result.evaluation_history[k].tolist()
        assert counts[-1] == result.n_function_evaluations[k]
        assert np.all(np.diff(counts) >= 1) and counts[0] >= 2  # the start is evaluated too
        ridge.set_buffer(np.zeros(D))
        single = ridge.fit(X[k], y[k], reg_lambda=float(lambdas[k]), optimizer=TIGHT)
        # Round-off may end the two runs an iteration apart at gtol=1e-10; before that
        # they take the same steps with the same line-search counts.
        single_counts = [record["fg_evals"] for record in single.history]
        assert counts[:10] == single_counts[:10]


def test_second_batched_call_compiles_nothing(ridge, count_compilations):
    X, y, lambdas = ridge_problems(1)
    miniml.fit_batched(ridge, X, y, reg_lambda=lambdas, optimizer=TIGHT)
    X2, y2, lambdas2 = ridge_problems(2)
    start = np.random.default_rng(3).normal(size=(K, D))
    with count_compilations() as counted:
        again = miniml.fit_batched(ridge, X2, y2, reg_lambda=lambdas2, x0=start,
                                   optimizer=LBFGS(gtol=1e-11, ftol=0.0, maxiter=60))  # fmt: skip
    assert counted.n == 0
    reference = ridge_closed_form(X2, y2, lambdas2)
    np.testing.assert_allclose(
        again.x_opt, reference, rtol=1e-8, atol=1e-8 * np.abs(reference).max()
    )


def test_converged_members_stop_and_keep_their_own_counts(ridge):
    """Members of a fast problem give bit-identical results whether the batch around them
    stops with them or runs on for slower members, and their counts differ; the slow
    members run on exactly as they do without the fast ones (the L-BFGS memory index the
    members share is that of the members still running)."""
    X, y, _ = ridge_problems(4, 2)
    slow_X = X[1] * np.logspace(0, 2.5, D)  # ill-conditioned: many more iterations
    fast = np.broadcast_to(X[0], (K, N, D))
    mixed = np.concatenate([fast[: K // 2], np.broadcast_to(slow_X, (K // 2, N, D))])
    ys = np.broadcast_to(y[0], (K, N, 1))
    lam = np.full(K, 1e-2)
    alone = miniml.fit_batched(ridge, fast, ys, reg_lambda=lam, optimizer=TIGHT)
    together = miniml.fit_batched(ridge, mixed, ys, reg_lambda=lam, optimizer=TIGHT)
    half = K // 2
    n_fast, n_slow = together.n_iterations[0], together.n_iterations[-1]
    assert n_slow > n_fast + 5
    assert np.all(together.n_iterations[:half] == n_fast)
    assert np.all(alone.n_iterations == n_fast)
    np.testing.assert_array_equal(together.x_opt[:half], alone.x_opt[:half])
    np.testing.assert_array_equal(together.n_function_evaluations[:half],
                                  alone.n_function_evaluations[:half])  # fmt: skip
    np.testing.assert_array_equal(together.loss_history[0], alone.loss_history[0])
    assert len(together.loss_history[-1]) == n_slow
    slow_exact = ridge_closed_form(mixed[-1:], ys[-1:], lam[-1:])[0]
    np.testing.assert_allclose(together.x_opt[-1], slow_exact, rtol=1e-5)
    # A batch of the same shape (the same groups, see GROUP_BYTES) of slow members only.
    slow = miniml.fit_batched(ridge, np.broadcast_to(slow_X, (K, N, D)), ys, reg_lambda=lam,
                              optimizer=TIGHT)  # fmt: skip
    np.testing.assert_array_equal(together.x_opt[half:], slow.x_opt[half:])
    np.testing.assert_array_equal(together.loss_history[-1], slow.loss_history[-1])


def test_members_fitted_in_groups_equal_batches_of_each_group(ridge, monkeypatch):
    """On a CPU a batch whose data exceeds GROUP_BYTES is fitted in groups, one after
    the other: each group's members get exactly the run of a batch of that group alone;
    K = 10 in 3 groups of 4 pads two copies of member 0, which are dropped."""
    import miniml._batched_run as batched_run

    X, y, lambdas = ridge_problems(8, n_members=10)
    per_member = N * D * 8 + N * 8 + (2 * TIGHT.memory_size + 8) * D * 8
    assert batched_run.member_groups(10, X, 0, np.zeros((10, D)), 10) == 1
    monkeypatch.setattr(batched_run, "GROUP_BYTES", 4 * per_member)
    assert batched_run.member_groups(10, X, 0, np.zeros((10, D)), 10) == 3
    grouped = miniml.fit_batched(ridge, X, y, reg_lambda=lambdas, optimizer=TIGHT)
    assert grouped.n_members == 10 and grouped.success.all()
    np.testing.assert_allclose(grouped.x_opt, ridge_closed_form(X, y, lambdas), rtol=1e-8,
                               atol=1e-9)  # fmt: skip
    monkeypatch.setattr(batched_run, "GROUP_BYTES", 2**62)
    for group in (slice(0, 4), slice(4, 8)):
        alone = miniml.fit_batched(ridge, X[group], y[group], reg_lambda=lambdas[group],
                                   optimizer=TIGHT)  # fmt: skip
        np.testing.assert_array_equal(grouped.x_opt[group], alone.x_opt)
        np.testing.assert_array_equal(grouped.n_iterations[group], alone.n_iterations)
        np.testing.assert_array_equal(grouped.n_function_evaluations[group],
                                      alone.n_function_evaluations)  # fmt: skip
        for ours, theirs in zip(grouped.loss_history[group], alone.loss_history, strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_groups_of_members_share_the_data_they_share(ridge, monkeypatch):
    """Boolean rows of unequal counts keep one shared data set (masked sums): in groups
    it is passed to every group whole, and every member still fits its own rows."""
    import miniml._batched_run as batched_run

    X, y, _ = ridge_problems(9, n_members=1)
    rng = np.random.default_rng(9)
    rows = rng.random((6, N)) < rng.uniform(0.4, 0.9, size=(6, 1))
    lambdas = np.logspace(-2, 1, 6)
    monkeypatch.setattr(batched_run, "GROUP_BYTES", 1)  # one member per group
    result = miniml.fit_batched(ridge, X[0], y[0], reg_lambda=lambdas, rows=rows,
                                optimizer=TIGHT)  # fmt: skip
    expected = [ridge_closed_form(X[:, r], y[:, r], [lam])[0]
                for r, lam in zip(rows, lambdas, strict=True)]  # fmt: skip
    np.testing.assert_allclose(result.x_opt, expected, rtol=1e-8, atol=1e-9)


def test_batched_segments_continue_where_the_previous_one_stopped(ridge):
    """Segments of 3 iterations (history read and carry handed back every 3) give the
    members exactly the run of one long segment, histories included."""
    X, y, lambdas = ridge_problems(6, n_members=12)
    X = X * np.logspace(0, 1, D)  # members need different numbers of iterations
    long = miniml.fit_batched(ridge, X, y, reg_lambda=lambdas, optimizer=TIGHT)
    short = miniml.fit_batched(
        ridge, X, y, reg_lambda=lambdas, optimizer=LBFGS(gtol=1e-10, ftol=0.0, segment_length=3)
    )
    assert long.success.all() and len(set(long.n_iterations.tolist())) > 1
    assert long.n_iterations.max() > 3 * 3  # several segments
    np.testing.assert_array_equal(short.x_opt, long.x_opt)
    np.testing.assert_array_equal(short.n_iterations, long.n_iterations)
    np.testing.assert_array_equal(short.n_function_evaluations, long.n_function_evaluations)
    for name in ("loss_history", "grad_norm_history", "evaluation_history"):
        for ours, theirs in zip(getattr(short, name), getattr(long, name), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    assert [len(h) for h in short.loss_history] == short.n_iterations.tolist()


def test_float32_members_stay_float32_and_match_single_fits():
    """The batched loop (lockstep line search included) keeps a float32 model's dtype
    and takes the steps a float32 single fit takes."""

    class Ridge32(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((D, 1), dtype=np.float32, reg_loss=LNormRegularization(2))
            super().__init__(loss=squared_error_loss)

        def _predict_kernel(self, X, buffer):
            return X @ self.w(buffer)

    model = Ridge32()
    model.bind()
    X, y, lambdas = ridge_problems(7, n_members=6)
    optimizer = LBFGS(gtol=1e-2, ftol=0.0)
    start = np.zeros(D, np.float32)
    batch = miniml.fit_batched(model, X, y, reg_lambda=lambdas, optimizer=optimizer, x0=start)
    assert batch.x_opt.dtype == np.float32 and batch.success.all()
    reference = ridge_closed_form(X, y, lambdas)
    np.testing.assert_allclose(batch.x_opt, reference, rtol=1e-3, atol=1e-3)
    for k in range(len(X)):
        model.set_buffer(start)
        single = model.fit(X[k], y[k], reg_lambda=float(lambdas[k]), optimizer=optimizer)
        assert single.n_iterations == batch.n_iterations[k]
        np.testing.assert_allclose(np.asarray(model.get_buffer()), batch.x_opt[k], rtol=1e-4,
                                   atol=1e-5)  # fmt: skip


class CountingRidge(MiniMLModel):
    """``X @ w`` that counts its forward passes in ``calls`` (one per member under vmap)."""

    def __init__(self, calls):
        self.calls = calls
        self.w = MiniMLParam((D, 1), reg_loss=LNormRegularization(2))
        super().__init__(loss=squared_error_loss)

    def _predict_kernel(self, X, buffer):
        jax.debug.callback(self.calls.append, X[0, 0])
        return X @ self.w(buffer)


def unequally_conditioned_ridge():
    """8 ridge problems whose members need unequal line searches."""
    X, y, lambdas = ridge_problems(5, n_members=8)
    return X * np.logspace(0, 1, D), y, lambdas


def test_lockstep_evaluations_count_what_the_batch_evaluates():
    """The documented cost model of a batch (docs/scale.md, "Cost"), checked by counting
    the forward passes the compiled batch really makes."""
    calls = []
    model = CountingRidge(calls)
    model.bind()
    X, y, lambdas = unequally_conditioned_ridge()
    # x0 given: from a never-randomized model's zeros the batch would first check, with
    # one evaluation of member 0, that no parameter is stuck at the symmetric start.
    result = miniml.fit_batched(model, X, y, reg_lambda=lambdas, optimizer=TIGHT,
                                x0=np.zeros(D))  # fmt: skip
    assert result.success.all() and result.groups == 1
    assert len(calls) == 8 * result.lockstep_evaluations
    assert result.lockstep_evaluations > result.n_function_evaluations.max()


def test_lockstep_evaluations_of_a_batch_in_groups_count_each_groups_rounds(monkeypatch):
    """In groups (here 3 groups of 3 for 8 members, the last padded with member 0) each
    group runs its own lockstep: the forward passes are the sum over groups of 3 times
    the group's count, and `lockstep_evaluations` is the largest."""
    import miniml._batched_run as batched_run

    calls = []
    model = CountingRidge(calls)
    model.bind()
    X, y, lambdas = unequally_conditioned_ridge()
    monkeypatch.setattr(batched_run, "GROUP_BYTES", 3 * (N * D * 8 + N * 8 + 28 * D * 8))
    result = miniml.fit_batched(model, X, y, reg_lambda=lambdas, optimizer=TIGHT,
                                x0=np.zeros(D))  # fmt: skip
    assert result.success.all() and result.groups == 3
    counts = []
    for members in ([0, 1, 2], [3, 4, 5], [6, 7, 0]):
        steps = [np.diff(result.evaluation_history[k], prepend=1) for k in members]
        rounds = np.zeros(max(map(len, steps)), int)
        for member in steps:
            rounds[: len(member)] = np.maximum(rounds[: len(member)], member)
        counts.append(1 + rounds.sum())
    assert len(calls) == 3 * sum(counts)
    assert result.lockstep_evaluations == max(counts)


def test_an_unverified_optax_gets_optax_own_search_with_a_warning(monkeypatch):
    """With an optax the lockstep search was not verified for, the batch warns and runs
    optax's own line search: the same iterates, at two evaluations per round."""
    X, y, lambdas = unequally_conditioned_ridge()
    lockstep_calls, fallback_calls = [], []
    lockstep_model, fallback_model = CountingRidge(lockstep_calls), CountingRidge(fallback_calls)
    lockstep_model.bind()
    fallback_model.bind()
    lockstep = miniml.fit_batched(lockstep_model, X, y, reg_lambda=lambdas, optimizer=TIGHT)
    monkeypatch.setattr("miniml.optim._lockstep.VERIFIED_OPTAX_VERSIONS", ("0.0.1",))
    with pytest.warns(miniml.PerformanceWarning, match=r"verified for optax 0\.0\.1"):
        fallback = miniml.fit_batched(fallback_model, X, y, reg_lambda=lambdas, optimizer=TIGHT)
    assert fallback.success.all() and fallback.lockstep_evaluations is None
    np.testing.assert_array_equal(fallback.n_iterations, lockstep.n_iterations)
    np.testing.assert_array_equal(fallback.n_function_evaluations, lockstep.n_function_evaluations)
    np.testing.assert_allclose(fallback.x_opt, lockstep.x_opt, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fallback.x_opt, ridge_closed_form(X, y, lambdas), rtol=1e-8,
                               atol=1e-9)  # fmt: skip
    # Both branches of every round evaluate under vmap (and stopped members search too).
    assert len(fallback_calls) > 1.5 * len(lockstep_calls)


def logistic_data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(203, 5))
    logits = X @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) + 0.3 * rng.normal(size=203)
    y = (logits > 0).astype(float)[:, None]
    return X, y


def numpy_log_loss(X, y, w, b):
    z = X @ w + b
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _loop_of_fits(X, y, lambdas, folds):
    """The same search as a loop of ordinary fits, scored with numpy."""
    loop = np.empty((len(lambdas), len(folds)))
    single = LinearModel(5, 1, loss=BinaryCrossEntropyLogLoss())  # one model: compiled once
    single.bind()
    for i, lam in enumerate(lambdas):
        for f, held_out in enumerate(folds):
            train = np.setdiff1d(np.arange(len(y)), held_out)
            single.set_buffer(np.zeros(single.size))
            single.fit(X[train], y[train], reg_lambda=lam,
                       optimizer=ScipyOptimizer(options={"gtol": 1e-10, "ftol": 0.0}))  # fmt: skip
            w, b = np.asarray(single.W.value), np.asarray(single.b.value)
            loop[i, f] = numpy_log_loss(X[held_out], y[held_out], w, b)
    return loop


def test_cross_validated_path_picks_the_same_value_as_a_loop_of_fits():
    X, y = logistic_data()  # 203 rows: folds of 41 and 40, so unequal training sets
    lambdas = np.logspace(-2, 2.5, 20)
    model = LinearModel(5, 1, loss=BinaryCrossEntropyLogLoss())
    model.bind()
    cv = miniml.cross_validate_path(model, X, y, lambdas, n_folds=5, optimizer=TIGHT, seed=1)
    assert cv.scores.shape == (20, 5) and cv.fits.n_members == 100
    assert cv.fits.success.all()
    with warnings.catch_warnings():
        # SciPy may end these tight fits "ABNORMAL" at round-off level; the scores are
        # what is compared.
        warnings.simplefilter("ignore", miniml.ConvergenceWarning)
        loop = _loop_of_fits(X, y, lambdas, cv.folds)
    np.testing.assert_allclose(cv.scores, loop, rtol=1e-6)
    assert cv.best_index == int(np.argmin(loop.mean(axis=1)))
    assert cv.best_reg_lambda == lambdas[cv.best_index]
    assert 0 < cv.best_index < 19  # an interior optimum: the test can tell values apart


def test_multi_start_returns_the_best_member_and_every_final_loss():
    rng = np.random.default_rng(6)
    X = rng.uniform(-2, 2, size=(64, 1))
    y = np.sin(2 * X) + 0.05 * rng.normal(size=(64, 1))
    model = TinyMLP(1, 4, 1)
    model.bind()
    lam = 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", miniml.ConvergenceWarning)  # capped on purpose
        out = miniml.multi_start(model, X, y, seeds=12, reg_lambda=lam,
                                 optimizer=LBFGS(maxiter=150))  # fmt: skip
    losses = out.losses
    assert losses.shape == (12,) and np.all(np.isfinite(losses))
    assert out.best_index == int(np.argmin(losses)) and out.best_seed == out.best_index
    assert np.ptp(losses) > 1e-3 * losses.min()  # non-convex: the starts end apart
    stacked = np.asarray(out.fits.predict(X))
    for i in range(12):
        member = out.fits.member(i)
        W1, b1 = np.asarray(member.W1.value), np.asarray(member.b1.value)
        W2, b2 = np.asarray(member.W2.value), np.asarray(member.b2.value)
        numpy_pred = np.tanh(X @ W1 + b1) @ W2 + b2
        np.testing.assert_allclose(np.asarray(member.predict(X)), numpy_pred, rtol=1e-12)
        np.testing.assert_allclose(stacked[i], numpy_pred, rtol=1e-12)
        objective = ((numpy_pred - y) ** 2).sum() + lam * ((W1**2).sum() + (W2**2).sum())
        assert losses[i] == pytest.approx(objective, rel=1e-10)
    np.testing.assert_array_equal(model.get_buffer(), out.fits.x_opt[out.best_index])
    for fitted in (out.fits, model):  # both remember what they were fitted on
        with pytest.raises(MiniMLError, match=r"fitted on X like float64\[n, 1\]"):
            fitted.predict(np.ones((3, 2)))
    starts = random_starts(model, [3, 8])
    for row, seed in zip(starts, [3, 8], strict=True):
        fresh = TinyMLP(1, 4, 1)
        fresh.randomize(seed=seed)
        np.testing.assert_array_equal(row, fresh.get_buffer())


ADAM_RATES, ADAM_SEEDS = np.array([0.01, 0.05, 0.1]), [4, 5, 6]
ADAM_OPTIONS = {"epochs": 7, "batch_size": 16}


@pytest.fixture(scope="module")
def linear_4():
    """Two LinearModel(4, 1): one for batches, one for loops of single fits. Tests that
    fit 3 members of 60 rows with Adam, 7 epochs of batches of 16, share their compiled
    programs."""
    batched, single = LinearModel(4, 1), LinearModel(4, 1)
    batched.bind()
    single.bind()
    return batched, single


@pytest.fixture(scope="module")
def adam_members(linear_4):
    """3 Adam members with their own data, strengths, learning rates and seeds, and the
    same fits one at a time: ``(batch, [(result, buffer), ...])``."""
    model, single = linear_4
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3, 60, 4))
    y = X @ rng.normal(size=(3, 4, 1))
    lambdas = np.array([0.0, 0.1, 1.0])
    batch = miniml.fit_batched(model, X, y, reg_lambda=lambdas, optimizer=Adam(lr=0.01),
                               learning_rate=ADAM_RATES, seeds=ADAM_SEEDS, x0=np.zeros(5),
                               **ADAM_OPTIONS)  # fmt: skip
    singles = []
    for k in range(3):
        single.set_buffer(np.zeros(5))
        res = single.fit(X[k], y[k], reg_lambda=lambdas[k],
                         optimizer=Adam(lr=float(ADAM_RATES[k])), seed=ADAM_SEEDS[k],
                         **ADAM_OPTIONS)  # fmt: skip
        singles.append((res, np.asarray(single.get_buffer())))
    return batch, singles


def test_batched_adam_matches_a_loop_of_single_fits(adam_members):
    batch, singles = adam_members
    for k, (res, buffer) in enumerate(singles):
        np.testing.assert_allclose(batch.x_opt[k], buffer, rtol=1e-10, atol=1e-12)
        assert batch.n_iterations[k] == res.n_iterations == 7 * 3
        assert batch.objective_value[k] == pytest.approx(res.loss, rel=1e-10)
        losses = [record["loss"] for record in res.history]
        np.testing.assert_allclose(batch.loss_history[k], losses, rtol=1e-10)
        member_history = batch.history(k)
        for column in ("fg_evals", "learning_rate", "grad"):
            expected = res.history.column(column)
            assert None not in expected
            np.testing.assert_allclose(member_history.column(column), expected, rtol=1e-10)
        assert member_history.column("fg_evals")[-1] == 21  # one per step
    assert batch.lockstep_evaluations is None  # no line search in lockstep


def test_batched_stochastic_members_count_evaluations_like_single_fits(adam_members):
    """A single stochastic fit counts its steps' evaluations plus the one of the exact
    objective at the end (its history counts the steps only); each member counts the
    same."""
    batch, singles = adam_members
    for k, (res, _) in enumerate(singles):
        assert res.n_function_evaluations == 21 + 1  # the independent reference
        assert batch.n_function_evaluations[k] == res.n_function_evaluations
        assert batch.history(k).column("fg_evals") == res.history.column("fg_evals")


class WithPreFit(MiniMLModel):
    def __init__(self):
        self.w = MiniMLParam((2, 1))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self.w(buffer)

    def _pre_fit(self, X, y):
        return set()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 5, 1)),
                                      reg_lambda=np.ones(3)),
         r"disagree on the number of members K \(stacked X: 4, reg_lambda: 3\)"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1))),
         r"stacked X and y must agree.*got 5 and 5 members.*shared=True"),
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 6, 1))),
         "must agree on members and samples"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)),
                                      rows=np.array([[0, 7]])),
         r"rows must index the 5 samples \(0 to 4\)"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)), shared=True),
         "cannot tell how many members"),
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 5, 1)),
                                      optimizer=ScipyOptimizer()),
         "use optimizer=LBFGS"),
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 5, 1)),
                                      learning_rate=0.1),
         "learning_rate applies to stochastic optimizers"),
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 5, 1)),
                                      x0=np.ones((4, 5))),
         r"x0 must have shape \(3,\) or \(K, 3\)"),
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 5, 1)),
                                      reg_lambda=[1.0, -1.0, 1.0, 1.0]),
         "every reg_lambda must be finite and >= 0"),
        (lambda m: miniml.fit_batched(WithPreFit(), np.ones((4, 5, 2)), np.ones((4, 5, 1))),
         "overrides _pre_fit"),
        (lambda m: miniml.cross_validate_path(m, np.ones((5, 2)), np.ones((5, 1)), [1.0],
                                              scoring=lambda t, p: 0.0),
         "greater_is_better"),
        (lambda m: miniml.fit_batched(m, np.zeros((2, 0, 2)), np.zeros((2, 0, 1))),
         r"stacked X and y hold no samples \(shapes float64\[2, 0, 2\]"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)),
                                      rows=np.zeros((3, 0), int)),
         r"rows selects no sample \(shape \(3, 0\)\)"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)),
                                      rows=np.zeros((0, 5), bool)),
         "rows gives zero members"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)), shared=True,
                                      reg_lambda=[]),
         "reg_lambda gives zero members"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)), shared=True,
                                      x0=np.zeros((0, 3))),
         "x0 gives zero members"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)), shared=True,
                                      reg_lambda=["1.0", "2.0"]),
         r"reg_lambda must be a number or a \(K,\) array of numbers.*dtype <U3"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)), shared=True,
                                      reg_lambda=[True, False]),
         r"array of numbers, got \[True, False\] \(dtype bool\)"),
        (lambda m: miniml.fit_batched(m, np.ones((5, 2)), np.ones((5, 1)), shared=True,
                                      seeds=[-1, 2]),
         r"seeds must lie in \[0, 2\*\*63\), as fit's seed; got \[-1\]"),
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 5, 1)), epochs=3),
         "epochs applies to stochastic optimizers; LBFGS always uses each member's full data"),
        (lambda m: miniml.fit_batched(m, np.ones((4, 5, 2)), np.ones((4, 5, 1)),
                                      batch_size=2),
         "batch_size applies to stochastic optimizers"),
        (lambda m: miniml.cross_validate_path(m, np.ones((6, 2)), np.ones((6, 1)), [1.0, 2.0],
                                              n_folds=2, scoring=lambda t, p: jnp.nan,
                                              greater_is_better=False),
         "no strength has a finite mean score"),
    ],
)  # fmt: skip
def test_clear_errors(call, message):
    model = LinearModel(2, 1)
    model.bind()
    with pytest.raises(MiniMLError, match=message) as info:
        call(model)
    assert "fit_batched" in str(info.value) or "cross_validate_path" in str(info.value)


def test_seeds_beyond_32_bits_give_the_keys_of_fit():
    """Member k with seeds[k] = s shuffles and draws like fit(seed=s), for s >= 2**32."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    model = LinearModel(3, 1)
    model.bind()
    seeds = [2**40 + 3, 5]
    batch = miniml.fit_batched(model, X, y, shared=True, seeds=seeds, x0=np.zeros(4),
                               optimizer=Adam(lr=0.1), epochs=2, batch_size=8)  # fmt: skip
    for k, seed in enumerate(seeds):
        single = LinearModel(3, 1)
        single.bind()
        single.fit(X, y, optimizer=Adam(lr=0.1), epochs=2, batch_size=8, seed=seed)
        np.testing.assert_allclose(batch.x_opt[k], single.get_buffer(), rtol=1e-13)
    assert not np.allclose(batch.x_opt[0], batch.x_opt[1])


def test_a_never_randomized_network_warns_as_fit_does():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3))
    model = TinyMLP(3, 4, 1)
    model.bind()
    with pytest.warns(UserWarning, match="fit_batched: the model was never randomized"):
        miniml.fit_batched(model, X, X[:, :1], shared=True, reg_lambda=[0.1, 1.0])


def test_cross_validation_never_picks_a_strength_whose_mean_score_is_nan():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(40, 1))
    model = LinearModel(3, 1)
    model.bind()

    def picky(y_true, y_pred):  # cannot score the nearly unregularized fits
        return jnp.where(jnp.abs(y_pred).max() > 4, jnp.nan, jnp.mean((y_true - y_pred) ** 2))

    cv = miniml.cross_validate_path(model, X, y, [1e-3, 10.0, 100.0], n_folds=4, scoring=picky,
                                    greater_is_better=False)  # fmt: skip
    assert np.isnan(cv.mean_scores[0]) and np.all(np.isfinite(cv.mean_scores[1:]))
    assert cv.best_reg_lambda == 10.0 and cv.mean_scores[1] < cv.mean_scores[2]


def test_member_index_out_of_range_is_a_clear_error(ridge):
    lambdas = np.ones(3)
    result = miniml.BatchedFitResult(
        x_opt=np.zeros((3, D)), objective_value=np.zeros(3), n_iterations=np.zeros(3, int),
        n_function_evaluations=np.zeros(3, int), success=np.ones(3, bool),
        status=np.zeros(3, int), messages=[""] * 3, loss_history=[np.zeros(0)] * 3,
        grad_norm_history=None, evaluation_history=None, reg_lambda=lambdas,
        optimizer="LBFGS", _model=ridge,
    )  # fmt: skip
    with pytest.raises(MiniMLError, match=r"member 3 does not exist.*0 to 2"):
        result.member(3)
    assert jnp.allclose(result.member(-1).get_buffer(), 0.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rows": np.array([[0, 1], [2, 3]])},
         r"miniml\.multi_start: .*rows.*got rows=.*fit_batched\(\.\.\., rows=\.\.\."),
        ({"x0": np.zeros(2)}, r"miniml\.multi_start: .*x0.*got x0=.*fit_batched\(\.\.\., x0="),
        ({"shared": False}, r"miniml\.multi_start: .*shared.*got shared=False"),
        ({"epoch": 3}, r"miniml\.multi_start: .*\bepochs\b.*got epoch=3; check the name"),
    ],
    ids=["rows", "x0", "shared", "misspelled"],
)  # fmt: skip
def test_multi_start_refuses_options_that_contradict_it(options, message):
    model = LinearModel(1, 1)
    model.bind()
    with pytest.raises(MiniMLError, match=message):
        miniml.multi_start(model, np.ones((4, 1)), np.ones((4, 1)), seeds=2, **options)


def test_cross_validated_path_with_a_stochastic_optimizer_equals_single_fits(linear_4):
    """epochs, batch_size and seeds reach every member: each equals its single fit.
    (3 folds of 90 rows: members of 60 rows, which share `adam_members`' programs.)"""
    model, single = linear_4
    rng = np.random.default_rng(9)
    X = rng.normal(size=(90, 4))
    y = X @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * rng.normal(size=(90, 1))
    seeds = [21, 22, 23]
    cv = miniml.cross_validate_path(model, X, y, [0.3], n_folds=3, optimizer=Adam(lr=0.05),
                                    x0=np.zeros(5), seeds=seeds, **ADAM_OPTIONS)  # fmt: skip
    for f, held_out in enumerate(cv.folds):
        train = np.setdiff1d(np.arange(90), held_out)
        single.set_buffer(np.zeros(5))
        res = single.fit(X[train], y[train], reg_lambda=0.3, optimizer=Adam(lr=0.05),
                         seed=seeds[f], **ADAM_OPTIONS)  # fmt: skip
        w = np.asarray(single.get_buffer())
        np.testing.assert_allclose(cv.fits.x_opt[f], w, rtol=1e-10, atol=1e-12)
        assert cv.fits.n_iterations[f] == res.n_iterations == 7 * 3  # 60 // 16 steps
        residual = X[held_out] @ w[:4, None] + w[4] - y[held_out]
        assert cv.scores[0, f] == pytest.approx(np.mean(residual**2), rel=1e-10)
    assert len({tuple(row) for row in cv.fits.x_opt}) == 3


CV_REFUSAL = (
    r"^miniml\.cross_validate_path: its 2 strengths x 2 folds = 4 members are "
    r"fitted by one miniml\.fit_batched call, which refused them: miniml\."
)


@pytest.mark.parametrize(
    ("n_samples", "options", "message"),
    [
        (8, {"epochs": 2}, CV_REFUSAL + "fit_batched: epochs applies to stochastic optimizers"),
        (8, {"optimizer": Adam(lr=0.1), "batch_size": 0},
         CV_REFUSAL + r"fit_batched: batch_size must be .*got 0"),
        (8, {"optimizer": Adam(lr=0.1), "seeds": [1, 2]},
         CV_REFUSAL + r"fit_batched: .*disagree on the number of members K.*seeds: 2"),
        (7, {"optimizer": Adam(lr=0.1)},
         r"cross_validate_path: .*7 samples do not split into 2 folds of equal size"),
    ],
    ids=["epochs-without-stochastic", "batch-size-0", "seeds-count", "unequal-folds"],
)  # fmt: skip
def test_cross_validated_path_checks_stochastic_options(n_samples, options, message):
    model = LinearModel(1, 1)
    model.bind()
    X = np.arange(n_samples, dtype=float)[:, None]
    with pytest.raises(MiniMLError, match=message):
        miniml.cross_validate_path(model, X, X, [1.0, 2.0], n_folds=2, **options)


def test_batched_result_keeps_its_public_names_and_old_pickles_load():
    """`BatchedFitResult` lives in a private module; `miniml.batched` and `miniml` still
    export it, and a result pickled under the name ``miniml.batched.BatchedFitResult``
    (before the move) loads."""
    import pickle

    from miniml.batched import BatchedFitResult

    assert miniml.BatchedFitResult is BatchedFitResult
    assert "BatchedFitResult" in miniml.batched.__all__ and "fit_batched" in miniml.__all__
    result = BatchedFitResult(
        x_opt=np.arange(6.0).reshape(2, 3), objective_value=np.ones(2),
        n_iterations=np.ones(2, int), n_function_evaluations=np.ones(2, int),
        success=np.ones(2, bool), status=np.zeros(2, int), messages=["a", "b"],
        loss_history=[np.ones(1)] * 2, grad_norm_history=None, evaluation_history=None,
        reg_lambda=np.ones(2), optimizer="LBFGS",
    )  # fmt: skip
    module = BatchedFitResult.__module__.encode()
    old = pickle.dumps(result, protocol=0).replace(module + b"\n", b"miniml.batched\n")
    assert b"miniml.batched\nBatchedFitResult" in old
    loaded = pickle.loads(old)
    assert type(loaded) is BatchedFitResult and loaded.messages == ["a", "b"]
    np.testing.assert_array_equal(loaded.x_opt, result.x_opt)


def test_multi_start_says_when_fit_batched_refuses_its_starts():
    model = LinearModel(1, 1)
    model.bind()
    X = np.arange(8, dtype=float)[:, None]
    with pytest.raises(MiniMLError, match=r"^miniml\.multi_start: its starts \(one member per "
                       r"seed\) are fitted by one miniml\.fit_batched call, which refused "
                       r"them: miniml\.fit_batched: epochs applies"):  # fmt: skip
        miniml.multi_start(model, X, X, seeds=3, epochs=2)
