"""The compiled L-BFGS (`miniml.optim.LBFGS`) against SciPy's L-BFGS-B and closed forms."""

import itertools
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam, NonFiniteWarning
from miniml.callbacks import LambdaCallback
from miniml.errors import ConvergenceWarning
from miniml.loss import (
    BinaryCrossEntropyLogLoss,
    LNormRegularization,
    mean_squared_error_loss,
    squared_error_loss,
)
from miniml.optim import LBFGS, ScipyOptimizer
from tests.models import LinearModel, TinyMLP

TIGHT_SCIPY = ScipyOptimizer("L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15})
TIGHT = LBFGS(gtol=1e-10, ftol=1e-15)


class Regression(MiniMLModel):
    """``X @ w`` without intercept (the intercept is a column of X)."""

    def __init__(self, n_features, loss=squared_error_loss, reg=None):
        self.w = MiniMLParam((n_features, 1), reg_loss=reg)
        super().__init__(loss=loss)

    def _predict_kernel(self, X, buffer):
        return X @ self.w(buffer)


class Walled(MiniMLModel):
    """Residuals ``w - 1`` while every ``w < wall`` (``wall = X[0, 0]``), NaN beyond."""

    def __init__(self, n):
        self.w = MiniMLParam((n,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        w = self.w(buffer)
        return jnp.where(jnp.all(w < X[0, 0]), w - 1.0, jnp.nan)


# Compiling the loop takes seconds, so tests share models (the compiled loop is cached
# on a model's objective); every test sets the parameters it starts from.
@pytest.fixture(scope="module")
def linear():
    model = LinearModel(5, 1)
    model.bind()
    return model


@pytest.fixture(scope="module")
def mlp():
    return TinyMLP(3, 4, 2)


@pytest.fixture(scope="module")
def walled():
    return Walled(3)


def _mlp_data(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(50, 3)), rng.normal(size=(50, 2))


def _small_data(seed=0, n=200, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=(d, 1))
    y = X @ w + 0.1 * rng.normal(size=(n, 1)) + 0.5
    labels = (rng.uniform(size=(n, 1)) < 1 / (1 + np.exp(-X @ w))).astype(float)
    return X, y, labels


def _fit_both(model, X, y, reg_lambda):
    optima = []
    for optimizer in (TIGHT_SCIPY, TIGHT):
        model.set_buffer(np.zeros(model.size))
        result = model.fit(X, y, reg_lambda=reg_lambda, optimizer=optimizer)
        assert result.success, result.message
        optima.append((np.asarray(model.get_buffer()), result.loss, result))
    return optima


def _closed_form(X, y, reg_lambda):
    """argmin ‖y - X W - b‖² + λ‖W‖² (the bias is not penalized)."""
    A = np.c_[X, np.ones(len(X))]
    penalty = reg_lambda * np.diag([1.0] * X.shape[1] + [0.0])
    return np.linalg.solve(A.T @ A + penalty, A.T @ y).ravel()


@pytest.mark.parametrize("reg_lambda", [0.0, 3.0], ids=["least-squares", "ridge"])
def test_linear_least_squares_and_ridge_match_scipy_and_closed_form(linear, reg_lambda):
    X, y, _ = _small_data()
    (x_scipy, f_scipy, _), (x_ours, f_ours, res) = _fit_both(linear, X, y, reg_lambda)
    exact = _closed_form(X, y, reg_lambda)
    assert np.linalg.norm(x_ours - exact) <= 1e-8 * np.linalg.norm(exact)
    assert np.linalg.norm(x_scipy - exact) <= 1e-8 * np.linalg.norm(exact)
    assert f_ours == pytest.approx(f_scipy, rel=1e-12)
    assert res.status == 0 and res.n_function_evaluations == res.n_jacobian_evaluations


def test_logistic_regression_matches_scipy():
    X, _, labels = _small_data(seed=1)
    model = LinearModel(5, 1, loss=BinaryCrossEntropyLogLoss())
    model.bind()
    (x_scipy, f_scipy, _), (x_ours, f_ours, _) = _fit_both(model, X, labels, 0.1)
    assert f_ours == pytest.approx(f_scipy, rel=1e-12)
    assert np.linalg.norm(x_ours - x_scipy) <= 1e-8 * np.linalg.norm(x_scipy)


def test_default_settings_follow_scipy_iterates(linear):
    """Same two-loop recursion, unit first trial step and stopping rules as L-BFGS-B."""
    X, y, _ = _small_data(seed=2)
    results = []
    for optimizer in (ScipyOptimizer(), LBFGS()):
        linear.set_buffer(np.zeros(linear.size))
        results.append(linear.fit(X, y, reg_lambda=0.5, optimizer=optimizer))
    scipy_res, ours = results
    assert ours.message.endswith(scipy_res.message.split(": ", 1)[1])
    assert ours.n_iterations == scipy_res.n_iterations
    np.testing.assert_allclose(
        ours.history.column("loss"), scipy_res.history.column("loss"), rtol=1e-10
    )


def test_p1_lecture_regression_reaches_least_squares_optimum():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X, y = sklearn_datasets.make_regression(
        n_samples=10000, n_features=20, n_informative=4, bias=3, noise=1, random_state=1234
    )
    X = np.c_[np.ones(len(y)), X]
    model = Regression(21)
    model.bind()
    result = model.fit(X, y[:, None], reg_lambda=0.0, optimizer=LBFGS())
    assert result.success
    assert result.loss == pytest.approx(10105.859508383426, rel=1e-8)


def test_p2_kormos_regression_reaches_exact_minimum():
    np.random.seed(1)
    w = np.random.normal(size=50)
    X = np.random.normal(size=(1000, 50))
    y = X.dot(w)[:, None]
    model = Regression(50, loss=mean_squared_error_loss, reg=LNormRegularization(2))
    model.bind()
    model.set_buffer(np.ones(50))
    result = model.fit(X, y, reg_lambda=1e-3, optimizer=LBFGS(gtol=1e-9))
    assert result.success, result.message
    assert result.loss == pytest.approx(0.0469896579, rel=1e-8)


def test_second_fit_compiles_nothing(mlp, count_compilations):
    (X1, y1), (X2, y2) = _mlp_data(3), _mlp_data(4)
    model = mlp
    model.randomize(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # small maxiter on purpose
        model.fit(X1, y1, reg_lambda=0.1, optimizer=LBFGS(maxiter=5, segment_length=3))
        with count_compilations() as counted:
            model.randomize(seed=1)
            new_values = LBFGS(
                maxiter=8, gtol=1e-7, ftol=0.0, max_linesearch_steps=10, segment_length=3
            )
            model.fit(X2, y2, reg_lambda=0.7, optimizer=new_values)
            model.fit(X1, y1, reg_lambda=0.0, optimizer=LBFGS(maxfun=9, segment_length=3))
    assert counted.n == 0


def test_history_replay_across_segments(mlp):
    """Three iterations per segment: the replayed records are the run's iterates."""
    X, y = _mlp_data(5)
    mlp.randomize(seed=2)
    buffers = []
    result = mlp.fit(
        X,
        y,
        reg_lambda=0.1,
        optimizer=LBFGS(gtol=1e-6, ftol=0.0, segment_length=3),
        callbacks=[
            LambdaCallback(
                on_iteration_end=lambda state, record: buffers.append(np.asarray(state.buffer))
            )
        ],
    )
    assert result.success, result.message
    history = result.history
    assert len(buffers) == len(history) == result.n_iterations > 6
    assert history.column("iteration") == list(range(1, result.n_iterations + 1))
    fg = history.column("fg_evals")
    assert all(b > a for a, b in itertools.pairwise(fg))
    assert fg[-1] == result.n_function_evaluations
    assert history.column("loss")[-1] == result.loss
    np.testing.assert_array_equal(buffers[-1], np.asarray(mlp.get_buffer()))
    for buffer, loss, grad in zip(
        buffers, history.column("loss"), history.column("grad"), strict=True
    ):
        mlp.set_buffer(buffer)
        prediction = np.asarray(mlp.predict(X))
        penalty = 0.1 * float(mlp.regularization_loss())
        assert loss == pytest.approx(np.sum((y - prediction) ** 2) + penalty, rel=1e-10)
        assert grad is not None and grad > 0


def test_segments_continue_exactly_where_the_previous_one_stopped(mlp):
    # Between segments the solver state (iterate, memory, counters) leaves the compiled
    # loop packed into one vector per dtype and comes back; the run must not notice.
    X, y = _mlp_data(6)
    runs = []
    for segment_length in (None, 2, 7):
        mlp.randomize(seed=4)
        optimizer = LBFGS(gtol=1e-8, ftol=0.0, segment_length=segment_length)
        result = mlp.fit(X, y, reg_lambda=0.05, optimizer=optimizer)
        runs.append((np.asarray(mlp.get_buffer()), result))
    (reference, first), *others = runs
    assert first.success and first.n_iterations > 14
    for buffer, result in others:
        np.testing.assert_array_equal(buffer, reference)
        assert result.n_iterations == first.n_iterations
        assert result.n_function_evaluations == first.n_function_evaluations
        assert result.history.column("loss") == first.history.column("loss")


def test_callback_stops_at_the_iteration_it_saw(mlp):
    X, y = _mlp_data(6)
    model = mlp
    model.randomize(seed=3)
    seen = {}

    def stop_at_seven(state, record):
        seen[record["iteration"]] = np.asarray(state.buffer).copy()
        return record["iteration"] == 7

    result = model.fit(
        X,
        y,
        optimizer=LBFGS(maxiter=100, segment_length=3),
        callbacks=[LambdaCallback(on_iteration_end=stop_at_seven)],
    )
    assert not result.success and "callback" in result.message.lower()
    assert result.n_iterations == 7 and len(result.history) == 7
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), seen[7])
    assert result.loss == result.history.column("loss")[-1]


def test_iterates_are_kept_only_for_callbacks_and_validation(mlp, monkeypatch):
    # Writing every iterate into the history buffer cost about 20 % of P4a's fit, so a fit
    # that reads none (no callback, no validation) runs the loop without that buffer.
    # Its records and result must be those of the loop that keeps them, and an interrupt
    # must still leave the last recorded iterate (the last one of a segment) in the model.
    import miniml.optim.lbfgs as lbfgs_module
    from miniml.optim.base import Problem

    kept = []
    compiled_loop = lbfgs_module._compiled_loop

    def spy(problem, memory_size, length, keep_iterates):
        kept.append(keep_iterates)
        return compiled_loop(problem, memory_size, length, keep_iterates)

    monkeypatch.setattr(lbfgs_module, "_compiled_loop", spy)
    X, y = _mlp_data(7)
    optimizer = LBFGS(gtol=1e-8, ftol=0.0, segment_length=3)
    seen = {}

    def remember(state, record):
        seen[record["iteration"]] = np.asarray(state.buffer).copy()

    runs = []
    for callbacks in (None, [LambdaCallback(on_iteration_end=remember)]):
        mlp.randomize(seed=5)
        result = mlp.fit(X, y, reg_lambda=0.05, optimizer=optimizer, callbacks=callbacks)
        runs.append((np.asarray(mlp.get_buffer()), result))
    assert kept == [False, True]
    (plain, bare), (observed, watched) = runs
    assert bare.success and bare.n_iterations > 6
    np.testing.assert_array_equal(plain, observed)
    for column in ("loss", "grad", "fg_evals"):
        assert bare.history.column(column) == watched.history.column(column)

    report_iteration = Problem.report_iteration

    def interrupt_at_five(self, **record):
        if record["n_iterations"] == 5:
            raise KeyboardInterrupt
        return report_iteration(self, **record)

    monkeypatch.setattr(Problem, "report_iteration", interrupt_at_five)
    mlp.randomize(seed=5)
    with pytest.warns(UserWarning, match="interrupted by KeyboardInterrupt"):
        interrupted = mlp.fit(X, y, reg_lambda=0.05, optimizer=optimizer)
    assert kept[-1] is False and interrupted.interrupted and len(interrupted.history) == 4
    # Segments of 3: iteration 4 is the second segment's first row, reported without
    # its iterate, so the interrupt at 5 leaves the last iterate known (iteration 3).
    np.testing.assert_array_equal(np.asarray(mlp.get_buffer()), seen[3])


def test_objective_non_finite_along_the_search_keeps_last_finite_iterate(walled):
    model = walled
    model.bind()
    model.set_buffer(np.zeros(3))
    with pytest.warns(NonFiniteWarning):
        result = model.fit(np.full((3, 1), 0.9), np.zeros(3), optimizer=LBFGS())
    assert not result.success and result.status == 3
    x = np.asarray(model.get_buffer())
    assert np.all(np.isfinite(x)) and np.all(x < 0.9)
    assert result.loss == pytest.approx(np.sum((x - 1.0) ** 2), rel=1e-12)
    assert result.history.column("loss")[-1] == result.loss


def test_a_step_that_raises_the_objective_is_a_failed_search():
    """With log(b) in the model an L-BFGS pair can have negative curvature and point
    uphill, where the sufficient-decrease test itself allows an increase: that step
    must end the fit as a failed line search at the last lower iterate, not be taken
    and reported as FTOL convergence."""

    class LogOffset(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((2, 1))
            self.b = MiniMLParam((1,))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X @ self.w(buffer) + jnp.log(self.b(buffer))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = X @ np.array([[1.0], [2.0]]) - 30.0
    model = LogOffset()
    model.bind()
    model.set_buffer(np.array([0.0, 0.0, 1.0]))
    start = float(np.sum((X @ np.zeros((2, 1)) + np.log(1.0) - y) ** 2))
    with pytest.warns(ConvergenceWarning, match="line search found no step that decreases"):
        res = model.fit(X, y, reg_lambda=0.0, optimizer=LBFGS(maxiter=50))
    assert not res.success and res.status == 2
    losses = res.history.column("loss")
    assert all(b < a for a, b in zip([start, *losses], losses, strict=False))  # only decreases
    w, b = np.asarray(model.w.value), float(model.b.value[0])
    assert res.loss == pytest.approx(float(np.sum((X @ w + np.log(b) - y) ** 2)), rel=1e-12)
    assert res.loss == losses[-1] < start


def test_non_finite_start_stops_at_once(walled):
    model = walled
    model.bind()
    model.set_buffer(np.zeros(3))
    with pytest.warns(NonFiniteWarning):
        result = model.fit(np.full((3, 1), -1.0), np.zeros(3), optimizer=LBFGS())
    assert not result.success and result.n_iterations == 0 and len(result.history) == 0
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), np.zeros(3))


def test_maxiter_reached_warns_and_reports_limit(linear):
    X, y, _ = _small_data(seed=6)
    linear.set_buffer(np.zeros(linear.size))
    with pytest.warns(ConvergenceWarning, match="ITERATIONS REACHED LIMIT"):
        result = linear.fit(X, y, optimizer=LBFGS(maxiter=2))
    assert not result.success and result.status == 1 and result.n_iterations == 2


def test_chunked_objective_gives_the_same_fit(linear):
    X, y, _ = _small_data(seed=7)
    optima = []
    for options in ({}, {"batch_size": 30}):  # 200 = 6 chunks of 30 + a masked one
        linear.set_buffer(np.zeros(linear.size))
        result = linear.fit(X, y, reg_lambda=0.2, optimizer=TIGHT, **options)
        optima.append((result.loss, np.asarray(linear.get_buffer())))
    assert optima[1][0] == pytest.approx(optima[0][0], rel=1e-12)
    np.testing.assert_allclose(optima[1][1], optima[0][1], rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"maxiter": 0}, "maxiter must be a positive int"),
        ({"memory_size": 2.5}, "memory_size must be a positive int"),
        ({"gtol": -1.0}, "gtol must be finite and >= 0"),
        ({"ftol": "tight"}, "ftol must be a number"),
        ({"segment_length": True}, "segment_length must be a positive int"),
    ],
)
def test_invalid_settings_are_rejected(kwargs, match):
    with pytest.raises(MiniMLError, match=match):
        LBFGS(**kwargs)


def test_epochs_is_rejected(linear):
    X, y, _ = _small_data()
    with pytest.raises(MiniMLError, match=r"epochs=.*applies to stochastic"):
        linear.fit(X, y, optimizer=LBFGS(), epochs=3)
