"""Every SciPy method minimizes a quadratic and Rosenbrock; derivatives are exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from miniml import ConvergenceWarning, MiniMLError, MiniMLModel, MiniMLParam
from miniml.callbacks import EarlyStopping, LambdaCallback
from miniml.loss import LNormRegularization, squared_error_loss
from miniml.objective import Hyper, objective_for
from miniml.optim import METHODS, ScipyOptimizer
from tests.models import LinearModel, Rosenbrock, TinyMLP

DERIVATIVE_FREE = {"nelder-mead", "powell", "cobyla", "cobyqa"}
ALL_METHODS = sorted(METHODS)

# Options that let each method reach a tight optimum from the standard start.
OPTIONS = {
    "nelder-mead": {"maxiter": 20_000, "xatol": 1e-10, "fatol": 1e-14},
    "powell": {"maxiter": 20_000, "xtol": 1e-10, "ftol": 1e-14},
    # COBYLA's linear models crawl along Rosenbrock's valley (about 1.6 ms per step in
    # SciPy's pure-Python implementation); it gets its own, looser test below.
    "cobyla": {"maxiter": 2000, "rhobeg": 0.5, "tol": 1e-10},
    "cobyqa": {"maxfev": 20_000, "final_tr_radius": 1e-10},
    "cg": {"gtol": 1e-10},
    "bfgs": {"gtol": 1e-10},
    "l-bfgs-b": {"gtol": 1e-12, "ftol": 1e-16, "maxiter": 10_000},
    "tnc": {"gtol": 1e-10, "ftol": 1e-16, "xtol": 1e-12, "maxfun": 10_000},
    "slsqp": {"ftol": 1e-16, "maxiter": 1000},
    "newton-cg": {"xtol": 1e-12},
    "trust-ncg": {"gtol": 1e-10},
    # trlib divides by ~0 (a RuntimeWarning) when asked for gtol far below 1e-8.
    "trust-krylov": {"gtol": 1e-8},
    "trust-constr": {"gtol": 1e-10, "xtol": 1e-14, "maxiter": 5000},
    "dogleg": {"gtol": 1e-10},
    "trust-exact": {"gtol": 1e-10},
}


def _rosenbrock_fit(method):
    model = Rosenbrock(2)
    model.bind()
    model.set_buffer(jnp.array([-1.2, 1.0]))
    res = model.fit(
        np.zeros((2, 1)), np.zeros(2), optimizer=ScipyOptimizer(method, OPTIONS[method.lower()])
    )
    return model, res


@pytest.mark.parametrize("method", sorted(set(ALL_METHODS) - {"cobyla"}))
def test_every_method_solves_rosenbrock(method):
    model, res = _rosenbrock_fit(method.upper() if method == "bfgs" else method)
    tol = 1e-4 if method in DERIVATIVE_FREE else 1e-6
    np.testing.assert_allclose(np.asarray(model.x.value), [1.0, 1.0], atol=tol)
    assert res.loss < tol**2 * 100
    assert res.n_function_evaluations > 0


def test_cobyla_walks_down_rosenbrock():
    with pytest.warns(ConvergenceWarning, match="cobyla did not converge"):
        model, res = _rosenbrock_fit("cobyla")
    start = 100 * (1.0 - 1.44) ** 2 + 2.2**2
    assert res.loss < 1e-3 * start  # from 24.2 to below 0.0242 in 2000 steps
    np.testing.assert_allclose(np.asarray(model.x.value), [1.0, 1.0], atol=0.15)
    assert not res.success


# Near a quadratic's optimum the gradient is at round-off level; trust-region methods
# then cannot predict improvement, so the quadratic uses a gtol it can certify.
QUADRATIC_OPTIONS = {
    method: {**opts, "gtol": 1e-8} if "gtol" in opts else opts for method, opts in OPTIONS.items()
}
QUADRATIC_OPTIONS["cobyla"] = {**OPTIONS["cobyla"], "maxiter": 20_000}


def _quadratic_fit(method):
    rng = np.random.default_rng(5)
    A = rng.normal(size=(30, 4))
    b = rng.normal(size=(30, 1))
    model = LinearModel(4, 1, bias=False)
    model.bind()
    optimizer = ScipyOptimizer(method, QUADRATIC_OPTIONS[method])
    model.fit(A, b, reg_lambda=0.0, optimizer=optimizer)
    return model, A, b


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_solves_a_quadratic(method):
    model, A, b = _quadratic_fit(method)
    expected = np.linalg.lstsq(A, b, rcond=None)[0]
    tol = 1e-4 if method in DERIVATIVE_FREE else 1e-6
    np.testing.assert_allclose(np.asarray(model.W.value), expected, atol=tol)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_each_method_gets_exactly_the_derivatives_it_uses(method, monkeypatch):
    import scipy.optimize

    seen = {}
    real = scipy.optimize.minimize

    def spy(fun, x0, **kwargs):
        seen.update(kwargs)
        return real(fun, x0, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    _quadratic_fit(method)
    needs = METHODS[method]
    assert ("jac" in seen) == needs.gradient
    assert ("hessp" in seen) == needs.hessp
    assert ("hess" in seen) == needs.hess


def test_unknown_method_is_rejected():
    with pytest.raises(MiniMLError, match="unknown method 'LBFGS'"):
        ScipyOptimizer("LBFGS")


def test_bounds_by_parameter_name():
    model = Rosenbrock(2)
    model.bind()
    opt = ScipyOptimizer("L-BFGS-B", bounds={"x": ([-2.0, -2.0], [0.5, 2.0])})
    model.fit(np.zeros((2, 1)), np.zeros(2), optimizer=opt)
    x = np.asarray(model.x.value)
    assert x[0] == pytest.approx(0.5, abs=1e-8)  # active bound
    assert x[1] == pytest.approx(0.25, abs=1e-5)  # argmin of 100 (x1 - 0.25)^2


def test_bounds_rejected_for_methods_without_them():
    with pytest.raises(MiniMLError, match="does not accept bounds"):
        ScipyOptimizer("BFGS", bounds=[(0, 1)])


def _objective_and_args():
    rng = np.random.default_rng(2)
    model = TinyMLP(3, 4, 2)
    model.randomize(seed=3)
    X = jnp.asarray(rng.normal(size=(10, 3)))
    y = jnp.asarray(rng.normal(size=(10, 2)))
    objective = objective_for(model, frozenset(), ())
    hyper = Hyper(
        reg_lambda=jnp.asarray(0.3),
        active_reg_lambda=jnp.asarray(1.0),
        reg_scales=jnp.asarray(model._reg_scales()),
        rng_key=jax.random.key(0),
        data_scale=jnp.asarray(1.0),
    )
    return objective, model.get_buffer(), (None, (X, y), hyper)


def test_gradient_matches_finite_differences():
    objective, theta, args = _objective_and_args()
    value, grad = objective.value_and_grad(theta, *args)
    eps = 1e-6

    def f(t):
        return float(objective.value(t, *args))

    numeric = np.array(
        [
            (f(theta.at[i].add(eps)) - f(theta.at[i].add(-eps))) / (2 * eps)
            for i in range(theta.size)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert float(value) == pytest.approx(float(objective.value(theta, *args)), rel=1e-15)


def test_hessian_vector_product_and_hessian_match_finite_differences():
    objective, theta, args = _objective_and_args()
    vector = jnp.asarray(np.random.default_rng(9).normal(size=theta.size))
    eps = 1e-5

    def grad(t):
        return objective.value_and_grad(t, *args)[1]

    numeric = (grad(theta + eps * vector) - grad(theta - eps * vector)) / (2 * eps)
    np.testing.assert_allclose(objective.hvp(theta, vector, *args), numeric, rtol=1e-6, atol=1e-8)
    hessian = objective.hessian(theta, *args)
    np.testing.assert_allclose(hessian @ vector, objective.hvp(theta, vector, *args), rtol=1e-10)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)


class _Linear32(LinearModel):
    """LinearModel in float32, to check the packed evaluation keeps a model's precision."""

    def __init__(self):
        self.W = MiniMLParam((3, 2), dtype=np.float32, reg_loss=LNormRegularization(2))
        self.b = MiniMLParam((2,), dtype=np.float32)
        self.has_bias = True
        MiniMLModel.__init__(self, loss=squared_error_loss)


@pytest.mark.parametrize("make_model", [lambda: TinyMLP(3, 4, 2), _Linear32], ids=["f64", "f32"])
def test_scipy_gets_exactly_the_fused_value_and_gradient(make_model, monkeypatch):
    # SciPy's value and gradient arrive in one device-to-host copy; they must be bit for
    # bit the objective's own value_and_grad at the point SciPy asked for. The final
    # point goes into the model as the device array its last evaluation made, with no
    # host-to-device copy of its own, and is SciPy's x in the model's dtype.
    import scipy.optimize

    import miniml._stage_runner
    import miniml.fitting

    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    X, y = jnp.asarray(X), jnp.asarray(y)  # on the device already: no transfer of data
    model = make_model()
    model.randomize(seed=1)
    seen, results, transfers = [], [], []
    real = scipy.optimize.minimize

    def spy(fun, x0, **kwargs):
        def recording(x):
            value, grad = fun(x)
            seen.append((np.array(x), value, np.array(grad)))
            return value, grad

        results.append(real(recording, x0, **kwargs))
        return results[-1]

    def counted_to_device(array):
        transfers.append(np.shape(array))
        return real_to_device(array)

    real_to_device = miniml.fitting.to_device
    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    for module in (miniml.fitting, miniml._stage_runner):  # fit's set-up and write-back
        monkeypatch.setattr(module, "to_device", counted_to_device)
    with pytest.warns(ConvergenceWarning):  # stopped after a few iterations on purpose
        model.fit(X, y, reg_lambda=0.3, optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 4}))
    assert (model.size,) not in transfers  # (the first fit transfers its random key)
    np.testing.assert_array_equal(seen[-1][0], results[0].x)  # it ended where it evaluated
    buffer = model.get_buffer(copy=False)
    assert buffer.dtype == model.dtype
    np.testing.assert_array_equal(np.asarray(buffer), np.asarray(results[0].x, model.dtype))
    objective = objective_for(model, frozenset(), ())
    dtype = model.dtype
    hyper = Hyper(
        reg_lambda=jnp.asarray(0.3, dtype),
        active_reg_lambda=jnp.asarray(1.0, dtype),
        reg_scales=jnp.asarray(model._reg_scales()),
        rng_key=jax.random.key(0),
        data_scale=jnp.asarray(1.0, dtype),
    )
    data = (jnp.asarray(X, dtype), jnp.asarray(y, dtype))
    assert len(seen) >= 4
    for x, value, grad in seen:
        expected_value, expected_grad = objective.value_and_grad(
            jnp.asarray(x, dtype), None, data, hyper
        )
        assert isinstance(value, float) and value == float(expected_value)
        assert grad.dtype == np.float64
        np.testing.assert_array_equal(grad, np.asarray(expected_grad, np.float64))


BOUNDED_METHODS = sorted(m for m, needs in METHODS.items() if needs.bounds)


@pytest.mark.parametrize("method", BOUNDED_METHODS)
def test_bounds_that_fix_an_entry_work_for_every_bounded_method(method):
    # low == high fixes an entry; SciPy drops such entries from TNC's problem and wraps
    # its callback, which used to crash the fit with an AttributeError.
    rng = np.random.default_rng(4)
    A, b = rng.normal(size=(30, 3)), rng.normal(size=(30, 1))
    model = LinearModel(3, 1)
    model.set_buffer(np.array([0.0, 0.0, 0.0, 0.25]))  # a feasible start
    optimizer = ScipyOptimizer(method, QUADRATIC_OPTIONS[method], bounds={"b": (0.25, 0.25)})
    model.fit(A, b, reg_lambda=0.0, optimizer=optimizer)
    # trust-constr's interior point meets the fixed value to its tolerance; the others exactly.
    assert float(model.b.value[0]) == pytest.approx(
        0.25, abs=1e-7 if method == "trust-constr" else 0
    )
    expected = np.linalg.lstsq(A, b - 0.25, rcond=None)[0]
    tol = 1e-4 if method in DERIVATIVE_FREE else 1e-6
    np.testing.assert_allclose(np.asarray(model.W.value), expected, atol=tol)


X_SMALL = np.random.default_rng(6).normal(size=(20, 3))
Y_SMALL = X_SMALL @ np.array([[3.0], [-2.0], [0.5]]) + 1.0


# LinearModel(3, 1) trains W (3, 1) then b (1,): entry 3 of the vector is b[0].
BAD_BOUNDS = {
    "pairs-count": ([(0, 1)] * 3, r"bounds got 3 \(low, high\) pairs for 4 trained scalars"),
    "pair-not-a-pair": ([(0, 1)] * 3 + [5.0], r"bounds\[3\] \(for b\[0\]\) is 5.0"),
    "dict-shape": (
        {"W": (np.zeros(2), None)},
        r"bounds\['W'\] low has shape \(2,\) but parameter 'W' has shape \(3, 1\); give",
    ),
    "dict-not-a-pair": ({"b": 1.0}, r"bounds\['b'\] is 1.0; give a \(low, high\) pair"),
    "dict-not-numbers": ({"b": ("zero", None)}, r"bounds\['b'\] low is 'zero'"),
    "Bounds-size": (
        scipy.optimize.Bounds(np.zeros(5), np.ones(5)),
        r"bounds.lb has 5 values but this fit trains 4 scalars \(W \(3, 1\), b \(1,\)\)",
    ),
    "low-above-high-dict": (
        {"W": (np.array([[0.0], [2.0], [0.0]]), 1.0)},
        r"the bounds of W\[1, 0\] are \(low=2.0, high=1.0\); no finite value",
    ),
    "low-above-high-pairs": (
        [(None, None)] * 3 + [(1.0, 0.0)],
        r"the bounds of b\[0\] are \(low=1.0, high=0.0\)",
    ),
    "low-above-high-Bounds": (
        scipy.optimize.Bounds([0, 0, 0, 3], [1, 1, 1, 2]),
        r"the bounds of b\[0\] are \(low=3.0, high=2.0\)",
    ),
    "low-infinite": ({"b": (np.inf, None)}, r"b\[0\] are \(low=inf, high=inf\)"),
    "nan-dict": (
        {"W": (np.nan, None)},
        r"the bounds of W\[0, 0\] are \(low=nan, high=inf\) \(and 2 more entries\); NaN",
    ),
    "nan-pairs": ([(None, None)] * 3 + [(0.0, float("nan"))], r"b\[0\] .* NaN is not a bound"),
    "nan-Bounds": (
        scipy.optimize.Bounds(np.full(4, np.nan), np.ones(4)),
        r"W\[0, 0\] .* NaN is not a bound",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BOUNDS))
def test_bad_bounds_are_rejected_with_the_parameter_they_concern(case):
    bounds, match = BAD_BOUNDS[case]
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    before = np.asarray(model.get_buffer()).copy()
    with pytest.raises(MiniMLError, match=match) as info:
        model.fit(X_SMALL, Y_SMALL, optimizer=ScipyOptimizer("L-BFGS-B", bounds=bounds))
    assert str(info.value).startswith("ScipyOptimizer: ")
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), before)


def test_bounds_sized_to_the_whole_model_say_pre_fit_left_parameters_out():
    class FixedBias(LinearModel):
        def _pre_fit(self, X, y):
            return {"b"}

    model = FixedBias(3, 1)
    model.bind()
    whole_model = scipy.optimize.Bounds(np.full(4, -1.0), np.full(4, 1.0))
    with pytest.raises(
        MiniMLError,
        match=r"bounds.lb has 4 values but this fit trains 3 scalars \(W \(3, 1\)\); "
        r"parameters fixed by _pre_fit or a stage hook are not part of the trained vector",
    ):
        model.fit(X_SMALL, Y_SMALL, optimizer=ScipyOptimizer("L-BFGS-B", bounds=whole_model))
    trained_only = scipy.optimize.Bounds(np.full(3, -1.0), np.full(3, 1.0))
    users_lower = trained_only.lb
    model.fit(X_SMALL, Y_SMALL, optimizer=ScipyOptimizer("L-BFGS-B", bounds=trained_only))
    assert np.all(np.abs(np.asarray(model.W.value)) <= 1.0)
    assert trained_only.lb is users_lower  # SciPy replaces lb on the Bounds it is given


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_stops_cleanly_when_a_callback_asks(method):
    # TNC's compiled wrapper re-raises a callback's StopIteration instead of ending the
    # run (SciPy 1.17), which used to crash the fit; every method must stop the same way.
    model = Rosenbrock(2)
    model.bind()
    buffers = []

    def remember(state, record):
        buffers.append(np.asarray(state.buffer).copy())

    def fit(stopper):
        buffers.clear()
        model.set_buffer(jnp.array([-1.2, 1.0]))
        callbacks = [LambdaCallback(on_iteration_end=remember), stopper]
        optimizer = ScipyOptimizer(method)
        return model.fit(np.zeros((2, 1)), np.zeros(2), optimizer=optimizer, callbacks=callbacks)

    res = fit(LambdaCallback(on_iteration_end=lambda state, record: record["iteration"] == 2))
    assert not res.success and res.message.endswith("Stopped by a callback.")
    assert res.history.column("iteration") == [1, 2] and len(buffers) == 2
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), buffers[-1])
    assert res.loss == res.history.column("loss")[-1]

    # No method improves by 1e12 at iteration 2 (SLSQP's first step lands near 2e11):
    # EarlyStopping stops there and restores iteration 1.
    res = fit(EarlyStopping(monitor="loss", patience=1, min_delta=1e12))
    assert not res.success and "EarlyStopping: loss did not improve" in res.stop_reason
    assert res.history.column("iteration") == [1, 2] and len(buffers) == 2
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), buffers[0])
    assert res.loss == res.history.column("loss")[0]


# COBYQA reported n_iterations=0 after a callback stop, Nelder-Mead one more than it
# had reported; a sample of the other methods guards the same count.
@pytest.mark.parametrize(
    "method", ["cobyqa", "nelder-mead", "cobyla", "l-bfgs-b", "tnc", "slsqp", "trust-constr"]
)
def test_n_iterations_after_a_callback_stop_counts_the_reported_iterations(method):
    model = Rosenbrock(2)
    model.bind()

    def fit(stopper):
        model.set_buffer(jnp.array([-1.2, 1.0]))
        optimizer = ScipyOptimizer(method)
        return model.fit(np.zeros((2, 1)), np.zeros(2), optimizer=optimizer, callbacks=[stopper])

    res = fit(LambdaCallback(on_iteration_end=lambda state, record: record["iteration"] == 3))
    assert not res.success and res.message.endswith("Stopped by a callback.")
    assert res.history.column("iteration") == [1, 2, 3]
    assert res.n_iterations == 3
    # EarlyStopping stops at iteration 2 (no method improves by 1e12 there).
    res = fit(EarlyStopping(monitor="loss", patience=1, min_delta=1e12))
    assert res.history.stages() == [method]
    assert res.n_iterations == len(res.history) == 2
