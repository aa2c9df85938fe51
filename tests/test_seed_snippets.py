"""The code snippets of MiniML's documentation (seeds 000 and 001) run as written."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from miniml import MiniMLModel, MiniMLParam
from miniml.loss import LNormRegularization, cross_entropy_loss


class LinearModel(MiniMLModel):
    def __init__(self, n_in: int, n_out: int):
        self._W = MiniMLParam((n_in, n_out), reg_loss=LNormRegularization(2))
        self._b = MiniMLParam((n_out,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self._W(buffer) + self._b(buffer)


class MyClassifier(MiniMLModel):
    def __init__(self, n_in: int, n_classes: int):
        self._W = MiniMLParam((n_in, n_classes), reg_loss=LNormRegularization(2), reg_scale=0.1)
        super().__init__(loss=cross_entropy_loss)

    def _predict_kernel(self, X, buffer):
        return jnp.exp(X @ self._W(buffer)) / jnp.sum(
            jnp.exp(X @ self._W(buffer)), axis=1, keepdims=True
        )


def _data(seed=0, n=80):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.25
    return X, y


def test_fitting_success_snippet(capsys):
    X, y = _data()
    lin_model = LinearModel(3, 1)
    lin_model.randomize()
    res = lin_model.fit(X, y)

    print(f"Fit converged: {res.success}")
    print(f"Final loss: {res.loss}")

    out = capsys.readouterr().out
    assert "Fit converged: True" in out
    assert res.loss == pytest.approx(float(lin_model.total_loss(y, lin_model.predict(X))))


def test_custom_optimizer_snippet():
    from miniml.optim import ScipyOptimizer

    X, y = _data(1)
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    optimizer = ScipyOptimizer(method="BFGS", options={"maxiter": 100})
    res = model.fit(X, y, optimizer=optimizer)
    assert res.success
    assert res.n_iterations <= 100


def test_loss_snippets_classifier_and_loss_order():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 2))
    labels = (X[:, 0] + X[:, 1] > 0).astype(int)
    y = np.eye(2)[labels]
    model = MyClassifier(2, 2)
    model.randomize(seed=0)
    model.fit(X, y, reg_lambda=0.01)
    y_hat = model.predict(X)
    print(f"Final loss = {model.loss(y, y_hat)}")
    expected = -np.sum(y * np.log(np.asarray(y_hat)))
    assert float(model.loss(y, y_hat)) == pytest.approx(expected, rel=1e-12)
    assert np.mean(np.argmax(np.asarray(y_hat), axis=1) == labels) > 0.95


def test_reg_scale_snippet_multiplies_the_penalty():
    M = MiniMLParam((3, 2), reg_loss=LNormRegularization(2), reg_scale=0.1)
    assert M.reg_scale == 0.1
    model = MyClassifier(3, 2)
    model.bind()
    model.set_buffer(jnp.ones(6))
    y = np.eye(2)[[0, 1]]
    y_hat = np.full((2, 2), 0.5)
    total = model.total_loss(y, y_hat, reg_lambda=2.0)
    assert float(total) == pytest.approx(2 * np.log(2) + 2.0 * 0.1 * 6.0, rel=1e-14)


def test_pre_fit_parameters_stay_fixed():
    class Centered(MiniMLModel):
        def __init__(self):
            self.offset = MiniMLParam((1,))
            self.slope = MiniMLParam((1, 1))
            super().__init__()

        def _pre_fit(self, X, y):
            self.fixed_offset = jnp.mean(y, axis=0)
            self.set_params({"offset": self.fixed_offset})
            return {"offset"}

        def _predict_kernel(self, X, buffer):
            return X @ self.slope(buffer) + self.offset(buffer)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 1))
    y = 3.0 * X + 10.0
    model = Centered()
    model.randomize(seed=0)
    model.fit(X, y, reg_lambda=0.0)
    # set by _pre_fit and bit-identical after the fit
    np.testing.assert_array_equal(model.offset.value, model.fixed_offset)
    assert float(model.offset.value[0]) == pytest.approx(np.mean(y), rel=1e-14)
    # slope that minimizes sum (y - mean(y) - s x)^2 with the offset held fixed
    least_squares = np.sum(X * (y - y.mean())) / np.sum(X * X)
    assert float(model.slope.value[0, 0]) == pytest.approx(least_squares, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["L-BFGS-B", "LBFGS", "Adam"])
def test_pre_fit_may_fix_every_parameter(optimizer):
    """A closed form computed in _pre_fit leaves nothing to optimize: the fit succeeds
    with zero iterations (as miniml-jax reports it) and the model keeps the closed form."""
    from miniml.optim import LBFGS, Adam

    class ClosedForm(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((2, 1))
            super().__init__()

        def _pre_fit(self, X, y):
            self.set_params({"w": np.linalg.lstsq(np.asarray(X), np.asarray(y), rcond=None)[0]})
            return {"w"}

        def _predict_kernel(self, X, buffer):
            return X @ self.w(buffer)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = X @ np.array([[1.0], [-2.0]]) + 0.1 * rng.normal(size=(30, 1))
    model = ClosedForm()
    model.randomize(seed=0)
    chosen = {"L-BFGS-B": "L-BFGS-B", "LBFGS": LBFGS(), "Adam": Adam()}[optimizer]
    res = model.fit(X, y, reg_lambda=0.0, optimizer=chosen)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    assert res.success and res.n_iterations == 0 and len(res.history) == 0
    assert "No parameters left to fit after pre-fitting" in res.message
    np.testing.assert_array_equal(np.asarray(model.w.value), w)
    assert res.loss == pytest.approx(float(np.sum((X @ w - y) ** 2)), rel=1e-12)


def test_batch_fitting_recipe(count_compilations):
    from miniml.optim.scipy import ScipyOptimizer

    rng = np.random.default_rng(4)
    true_w = np.array([[2.0], [-1.0], [0.5]])
    training_batches = []
    for _ in range(6):
        X = rng.normal(size=(100, 3))
        training_batches.append((X, X @ true_w + 0.1 * rng.normal(size=(100, 1))))

    def reg_strength(i):
        return 1.0 / (i + 1)

    model = LinearModel(3, 1)
    model.randomize(seed=0)
    optimizer = ScipyOptimizer(method="L-BFGS-B", options={"maxiter": 5})

    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 iterations per batch: not converged on purpose
        for i, (X, y) in enumerate(training_batches):
            reg_lambda = reg_strength(i)  # This could be changing based on iteration
            with count_compilations() as counted:
                res = model.fit(X, y, reg_lambda=reg_lambda, optimizer=optimizer)
            print(f"Batch {i + 1} | Loss = {res.loss}")
            losses.append(res.loss)
            if i > 0:
                assert counted.n == 0
    np.testing.assert_allclose(np.asarray(model._W.value), true_w, atol=0.05)
    assert losses[-1] < losses[0]


# --------------------------------------------------------------------------------------
# Seed 000 (fitting) and 001 (losses): documented behaviour without a snippet of its own.


class _Linear(MiniMLModel):
    """``X @ W`` with an optional regularizer on ``W`` and a chosen data loss."""

    def __init__(self, loss=None, reg_loss=None, reg_scale=1.0):
        from miniml.loss import squared_error_loss

        self.W = MiniMLParam((3, 1), reg_loss=reg_loss, reg_scale=reg_scale)
        super().__init__(loss=squared_error_loss if loss is None else loss)

    def _predict_kernel(self, X, buffer):
        return X @ self.W(buffer)


def test_default_fit_is_scipy_lbfgsb_on_the_sum_of_squared_errors():
    """'By default, MiniML uses the ScipyOptimizer wrapper ... the default optimization
    method is L-BFGS-B'; 'The default loss function for MiniMLModel is the squared error
    loss: sum_i (y_i - yhat_i)^2'."""
    from miniml.loss import squared_error_loss
    from miniml.optim import ScipyOptimizer

    X, y = _data(5, n=40)
    y = y - 0.25  # no intercept in _Linear
    default, explicit = _Linear(), _Linear()
    assert default.loss_function is squared_error_loss
    assert ScipyOptimizer().method == "L-BFGS-B"
    default.randomize(seed=0)
    explicit.randomize(seed=0)
    res = default.fit(X, y, reg_lambda=0.0)
    explicit.fit(X, y, reg_lambda=0.0, optimizer=ScipyOptimizer(method="L-BFGS-B"))
    assert res.optimizer == "L-BFGS-B"
    np.testing.assert_array_equal(np.asarray(default.W.value), np.asarray(explicit.W.value))
    y_hat = np.asarray(default.predict(X))
    loss = default.loss(y, y_hat)
    assert loss.shape == ()  # 'a zero-dimensional Jax array'
    assert float(loss) == pytest.approx(float(np.sum((y - y_hat) ** 2)), rel=1e-14)


def test_success_is_false_when_maxiter_ends_the_fit_and_the_last_values_are_kept():
    """'.fit returns a result ... whether the optimizer succeeded (achieved convergence
    within the maximum number of iterations)'; a fit cut short 'will still store the
    latest value of the parameters obtained'."""
    from miniml import ConvergenceWarning
    from miniml.optim import ScipyOptimizer

    X, y = _data(6, n=40)
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    start = np.asarray(model.get_buffer())
    with pytest.warns(ConvergenceWarning):
        res = model.fit(X, y, optimizer=ScipyOptimizer(method="L-BFGS-B", options={"maxiter": 2}))
    assert not res.success and res.n_iterations == 2
    kept = np.asarray(model.get_buffer())
    assert not np.allclose(kept, start)
    np.testing.assert_array_equal(np.asarray(res.x_opt), kept)
    assert res.loss == pytest.approx(float(model.total_loss(y, model.predict(X))), rel=1e-12)


def test_the_loss_types_are_the_documented_type_hints():
    """'Callable[[JXArray, JXArray], JXArray]' and 'RegLossFunction = Callable[[JXArray],
    JXArray]', plus the two inheritable bases."""
    import abc
    import collections.abc
    import typing

    from jax import Array

    from miniml import loss

    assert typing.get_origin(loss.LossFunction) is collections.abc.Callable
    assert typing.get_args(loss.LossFunction) == ([Array, Array], Array)
    assert typing.get_args(loss.RegLossFunction) == ([Array], Array)
    assert issubclass(loss.LossFunctionBase, abc.ABC)
    assert issubclass(loss.RegLossFunctionBase, abc.ABC)
    with pytest.raises(TypeError):
        loss.RegLossFunctionBase()  # abstract: subclasses implement __call__


def test_functools_partial_embeds_the_arguments_of_a_loss():
    """'... or use functools.partial to embed some arguments': a weighted sum of
    squares fits to the weighted least-squares closed form."""
    import functools

    def weighted_squared_error(y_true, y_pred, weights):
        return jnp.sum(weights * (y_true - y_pred) ** 2)

    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 * rng.normal(size=(40, 1))
    weights = rng.uniform(0.2, 3.0, size=(40, 1))
    model = _Linear(loss=functools.partial(weighted_squared_error, weights=weights))
    model.randomize(seed=0)
    res = model.fit(X, y, reg_lambda=0.0)
    expected = np.linalg.solve(X.T @ (weights * X), X.T @ (weights * y))
    assert res.success
    np.testing.assert_allclose(np.asarray(model.W.value), expected, rtol=1e-7)
    assert res.loss == pytest.approx(float(np.sum(weights * (X @ expected - y) ** 2)), rel=1e-10)


def test_a_parametrized_loss_from_loss_function_base():
    """'If your loss function requires parameters, you can make it a class (there's also
    miniml.loss.LossFunctionBase as an inheritable interface for this)': c * SSE with an
    L2 penalty has the ridge optimum (X'X + lambda / c I)^-1 X'y."""
    from miniml.loss import LossFunctionBase
    from miniml.optim import ScipyOptimizer

    class ScaledSquaredError(LossFunctionBase):
        def __init__(self, c):
            self.c = c

        def __call__(self, y_true, y_pred):
            return self.c * jnp.sum((y_true - y_pred) ** 2)

    X, y = _data(8, n=30)
    model = _Linear(loss=ScaledSquaredError(4.0), reg_loss=LNormRegularization(2))
    model.randomize(seed=0)
    tight = ScipyOptimizer("L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-10})
    assert model.fit(X, y, reg_lambda=2.0, optimizer=tight).success
    expected = np.linalg.solve(X.T @ X + 0.5 * np.eye(3), X.T @ y)
    np.testing.assert_allclose(np.asarray(model.W.value), expected, rtol=1e-7)
    y_hat = np.zeros_like(y)
    assert float(model.loss(y, y_hat)) == pytest.approx(4.0 * np.sum(y**2), rel=1e-14)


@pytest.mark.parametrize("kind", ["base-class", "plain-callable"])
def test_custom_regularizers_enter_the_total_loss(kind):
    """'any callable with the right interface can be passed ... There is also a
    RegLossFunctionBase abstract class'; TotalLoss = BaseLoss + reg_lambda * reg_scale * R."""
    from miniml.loss import RegLossFunctionBase

    class WeightedL1(RegLossFunctionBase):
        def __init__(self, c):
            self.c = c

        def __call__(self, w):
            return self.c * jnp.sum(jnp.abs(w))

    w = np.array([1.0, -2.0, 3.0])
    if kind == "base-class":
        reg, penalty = WeightedL1(3.0), 3.0 * np.sum(np.abs(w))
    else:
        reg, penalty = (lambda v: jnp.sum(v**4)), np.sum(w**4)
    model = _Linear(reg_loss=reg, reg_scale=0.5)
    model.bind()
    model.set_buffer(w)
    X, y = _data(9, n=10)
    y_hat = np.asarray(model.predict(X))
    np.testing.assert_allclose(y_hat, X @ w[:, None], rtol=1e-14)
    assert float(model.regularization_loss()) == pytest.approx(0.5 * penalty, rel=1e-14)
    total = float(model.total_loss(y, y_hat, reg_lambda=0.1))
    assert total == pytest.approx(np.sum((y - y_hat) ** 2) + 0.1 * 0.5 * penalty, rel=1e-14)


def test_scipy_and_adam_optimizers_are_available_for_fit():
    """'Currently ScipyOptimizer and AdamOptimizer are available.'"""
    from miniml.optim import AdamOptimizer, ScipyOptimizer

    X, y = _data(10, n=40)
    y = y - 0.25
    expected = np.linalg.lstsq(X, y, rcond=None)[0]
    for optimizer in (ScipyOptimizer(), AdamOptimizer(alpha=0.05, maxiter=2000)):
        model = _Linear()
        model.randomize(seed=0)
        assert model.fit(X, y, reg_lambda=0.0, optimizer=optimizer).success
        np.testing.assert_allclose(np.asarray(model.W.value), expected, rtol=1e-6)


# --------------------------------------------------------------------------------------
# Seed 002: the PyTorch-style optimizer module.

SEED_SIGNATURES = {
    "SGD": [("params", None), ("lr", 0.01), ("momentum", 0.0), ("wd", 0.0)],
    "AdaGrad": [("params", None), ("lr", 0.001), ("wd", 0.0), ("eps", 1e-07)],
    "RMSProp": [("params", None), ("lr", 0.001), ("wd", 0.0), ("eps", 1e-07), ("rho", 0.9)],
    "Adam": [
        ("params", None),
        ("lr", 1e-05),
        ("beta1", 0.9),
        ("beta2", 0.999),
        ("eps", 1e-08),
        ("weight_decay", 0.0),
    ],
}


@pytest.mark.parametrize("name", list(SEED_SIGNATURES))
def test_optimizer_arguments_have_the_seeds_order_and_defaults(name):
    """'SGD (params, lr=0.01, momentum=0.0, wd=0.0)', 'AdaGrad (params, lr=0.001,
    wd=0.0, eps=1e-07)', 'RMSProp (params, lr=0.001, wd=0.0, eps=1e-07, rho=0.9)',
    'Adam (params, lr=1e-05, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0)':
    the same names in the same positions (MiniML's params may be None for fit)."""
    import inspect

    from miniml import optim

    cls = getattr(optim, name)
    seed = SEED_SIGNATURES[name]
    parameters = list(inspect.signature(cls).parameters.values())[: len(seed)]
    assert [(p.name, p.default) for p in parameters] == seed
    positional = [0.5 + i / 100 for i in range(len(seed) - 1)]  # valid for every argument
    built = cls(None, *positional)
    assert [getattr(built, n) for n, _ in seed[1:]] == positional


class _Quadratic(MiniMLModel):
    def __init__(self):
        self.w = MiniMLParam((4,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self.w(buffer)


def _manual_run(optimizer_factory, n_steps=8):
    """Drive the step()/zero_grad() loop; return (parameters after each step, gradients)."""
    rng = np.random.default_rng(11)
    X, y = rng.normal(size=(12, 4)), rng.normal(size=12)
    model = _Quadratic()
    model.randomize(seed=0)
    theta0 = np.asarray(model.w.value)
    opt = optimizer_factory(model.parameters())
    thetas = []
    for _ in range(n_steps):
        model.backward(X, y, reg_lambda=0.0)
        opt.step()
        opt.zero_grad()
        thetas.append(np.asarray(model.w.value))
    return theta0, thetas, X, y


def _seed_reference(rule, theta0, X, y, n_steps=8):
    """Numpy transcription of the seed's update rules; g_t = grad of ||X theta - y||^2."""
    theta, state, out = theta0.copy(), {}, []
    for _ in range(n_steps):
        g = 2 * X.T @ (X @ theta - y)
        theta = rule(theta, g, state)
        out.append(theta.copy())
    return out


def _sgd_momentum(lr, mu):
    def rule(theta, g, state):
        state["v"] = mu * state.get("v", 0.0) + (1 - mu) * g  # v_t = mu v_{t-1} + (1-mu) g_t
        return theta - lr * state["v"]

    return rule


def _sgd_weight_decay(lr, lam):
    def rule(theta, g, state):
        return (1 - lr * lam) * theta - lr * g  # theta_t = (1 - alpha lambda) theta - alpha g

    return rule


def _adagrad(lr, eps):
    def rule(theta, g, state):
        state["G"] = state.get("G", 0.0) + g**2
        return theta - lr / np.sqrt(state["G"] + eps) * g

    return rule


def _rmsprop(lr, eps, rho):
    def rule(theta, g, state):
        state["c"] = rho * state.get("c", 0.0) + (1 - rho) * g**2
        return theta - lr / np.sqrt(state["c"] + eps) * g

    return rule


def _seed_optimizer(name, **hyper):
    def make(params):
        from miniml import optim

        return getattr(optim, name)(params, **hyper)

    return make


SEED_RULES = {
    "sgd-momentum": (_seed_optimizer("SGD", lr=0.01, momentum=0.7), _sgd_momentum(0.01, 0.7)),
    "sgd-wd": (_seed_optimizer("SGD", lr=0.01, wd=0.5), _sgd_weight_decay(0.01, 0.5)),
    "adagrad": (_seed_optimizer("AdaGrad", lr=0.1, eps=1e-3), _adagrad(0.1, 1e-3)),
    "rmsprop": (
        _seed_optimizer("RMSProp", lr=0.01, eps=1e-4, rho=0.8),
        _rmsprop(0.01, 1e-4, 0.8),
    ),
}


@pytest.mark.parametrize("case", list(SEED_RULES))
def test_step_loop_follows_the_seeds_update_rules(case):
    """The seed's SGD (momentum; weight decay '(1 - alpha lambda) theta - alpha g'),
    AdaGrad ('alpha / sqrt(G_t + eps) g_t') and RMSProp rules, driven through
    backward() / step() / zero_grad() with the optimizer's params."""
    factory, rule = SEED_RULES[case]
    theta0, thetas, X, y = _manual_run(factory)
    expected = _seed_reference(rule, theta0, X, y)
    np.testing.assert_allclose(np.array(thetas), np.array(expected), rtol=1e-10, atol=1e-14)
    assert not np.allclose(thetas[-1], theta0)


def test_params_may_be_any_iterable_of_parameters():
    """'params Iterable: The parameters of the model to be optimized.'"""
    from miniml.optim import SGD

    as_list = _manual_run(lambda p: SGD(p, lr=0.01), n_steps=3)[1]
    as_generator = _manual_run(lambda p: SGD(iter(p), lr=0.01), n_steps=3)[1]
    as_tuple = _manual_run(lambda p: SGD(tuple(p), lr=0.01), n_steps=3)[1]
    np.testing.assert_array_equal(np.array(as_list), np.array(as_generator))
    np.testing.assert_array_equal(np.array(as_list), np.array(as_tuple))


def test_adam_effective_step_is_lr_for_a_first_or_constant_gradient():
    """'Effective step taken assuming eps = 0 is alpha m_hat / sqrt(v_hat) ... in most
    common scenarios |Delta t| ~ alpha': exactly alpha at the first step and for a
    constant gradient, whatever the gradient's scale."""
    import optax

    from miniml.optim import Adam

    tx = Adam(lr=0.03, beta1=0.8, beta2=0.95, eps=0.0).transformation()
    g = np.array([1e-6, -3.0, 250.0, -0.5])
    theta = np.zeros(4)
    state = tx.init(theta)
    for _ in range(6):
        updates, state = tx.update(g, state, theta)
        np.testing.assert_allclose(np.asarray(updates), -0.03 * np.sign(g), rtol=1e-12)
        theta = np.asarray(optax.apply_updates(theta, updates))
    # and through the step() loop: the first step moves every weight by exactly lr
    theta0, thetas, _, _ = _manual_run(lambda p: Adam(p, lr=0.01, eps=0.0), n_steps=1)
    np.testing.assert_allclose(np.abs(thetas[0] - theta0), 0.01, rtol=1e-12)


def test_adam_step_bound_for_a_sparse_gradient():
    """'|Delta t| <= alpha (1 - beta1) / sqrt(1 - beta2) when 1 - beta1 > sqrt(1 - beta2)':
    with beta1 = 0, zero gradients for T - 1 steps and then g, the step is
    alpha sqrt((1 - beta2^T) / (1 - beta2)) (closed form), below the bound and close
    to it for large T."""
    from miniml.optim import Adam

    lr, beta2, T = 0.1, 0.9, 60
    tx = Adam(lr=lr, beta1=0.0, beta2=beta2, eps=1e-300).transformation()
    theta = np.zeros(2)
    state = tx.init(theta)
    for _ in range(T - 1):
        updates, state = tx.update(np.zeros(2), state, theta)
        np.testing.assert_array_equal(np.asarray(updates), 0.0)
    updates, state = tx.update(np.array([0.7, -4.0]), state, theta)
    step = lr * np.sqrt((1 - beta2**T) / (1 - beta2))
    np.testing.assert_allclose(np.asarray(updates), [-step, step], rtol=1e-12)
    bound = lr * (1 - 0.0) / np.sqrt(1 - beta2)
    assert step <= bound and step == pytest.approx(bound, rel=1e-2)


def test_seed_optimizer_base_class_is_there_and_abstract():
    # Seed 002: "Optimizer (params) -- Base class for all optimizers. Not meant to be
    # instantiated directly."
    from miniml.optim import SGD, AdaGrad, Adam, Optimizer, RMSProp

    for cls in (SGD, AdaGrad, RMSProp, Adam):
        optimizer = cls()
        assert isinstance(optimizer, Optimizer)
        assert callable(optimizer.step) and callable(optimizer.zero_grad)
    with pytest.raises(TypeError, match="abstract"):
        Optimizer()
