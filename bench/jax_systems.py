"""Hand-written JAX peers: SciPy + ``jax.jit(value_and_grad)``, and the optax loop.

Both take the data as arguments of the compiled function (converted to device arrays
once, at set-up) so that a second fit compiles nothing, as a careful user would write
them. The optax loop runs the whole L-BFGS (``optax.lbfgs``: zoom line search, memory
10) inside one ``jax.jit`` with a `jax.lax.while_loop` and SciPy's stopping rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize

from bench.problems import Spec, mlp_unflatten
from bench.timing import Runner

__all__ = ["jax_objective", "optax_loop", "scipy_jit"]


def jax_objective(spec: Spec) -> Callable[[Any, Any, Any], Any]:
    """``f(w, X, y)`` in jax.numpy, the same formula as `bench.problems`."""
    reg, kind = spec.reg, spec.kind
    n_in = spec.X.shape[1]

    def f(w: Any, X: Any, y: Any) -> Any:
        if kind == "mlp":
            W1, b1, W2, b2 = mlp_unflatten(w, n_in)
            logits = jnp.tanh(X @ W1 + b1) @ W2 + b2
            log_p = jax.nn.log_softmax(logits)
            data = -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))
            return data + 0.5 * reg * (jnp.sum(W1 * W1) + jnp.sum(W2 * W2))
        z = X @ w
        if kind == "logistic":
            return jnp.mean(jax.nn.softplus(z) - y * z) + 0.5 * reg * (w @ w)
        r = z - y
        if kind == "ls_sum":
            return r @ r
        if kind == "mse_l2":
            return jnp.mean(r * r) + reg * (w @ w)
        return 0.5 * jnp.mean(r * r)

    return f


def _scipy_options(spec: Spec) -> dict[str, Any]:
    return {"maxiter": spec.maxiter, "gtol": spec.gtol, "ftol": spec.ftol}


def scipy_jit(spec: Spec) -> Runner:
    """SciPy L-BFGS-B fed by ``jax.jit(jax.value_and_grad(f))``."""
    value_and_grad = jax.jit(jax.value_and_grad(jax_objective(spec)))
    X, y = jnp.asarray(spec.X), jnp.asarray(spec.y)

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(w, X, y)
        return float(value), np.asarray(grad)

    def fit() -> tuple[np.ndarray, int | None, int | None]:
        res = scipy.optimize.minimize(
            fun, spec.w0, jac=True, method="L-BFGS-B", options=_scipy_options(spec)
        )
        return res.x, int(res.nit), int(res.nfev)

    return Runner("scipy + jax.jit", fit)


def optax_loop(spec: Spec) -> Runner:
    """The whole L-BFGS loop of optax in one ``jax.jit``."""
    objective = jax_objective(spec)
    solver = optax.lbfgs(memory_size=10)

    def run(w0: Any, X: Any, y: Any, maxiter: Any, gtol: Any, ftol: Any) -> Any:
        def fun(w: Any) -> Any:
            return objective(w, X, y)

        def body(carry: Any) -> Any:
            w, state, value, grad, k, evals, _ = carry
            updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=fun)
            w = optax.apply_updates(w, updates)
            new_value = optax.tree.get(state, "value")
            new_grad = optax.tree.get(state, "grad")
            evals = evals + optax.tree.get(state, "num_linesearch_steps")
            scale = jnp.maximum(jnp.maximum(jnp.abs(value), jnp.abs(new_value)), 1.0)
            done = (jnp.max(jnp.abs(new_grad)) <= gtol) | (value - new_value <= ftol * scale)
            return w, state, new_value, new_grad, k + 1, evals, done

        def running(carry: Any) -> Any:
            return (~carry[6]) & (carry[4] < maxiter)

        value, grad = jax.value_and_grad(fun)(w0)
        start = (w0, solver.init(w0), value, grad, 0, 1, jnp.max(jnp.abs(grad)) <= gtol)
        w, _, _, _, k, evals, _ = jax.lax.while_loop(running, body, start)
        return w, k, evals

    compiled = jax.jit(run)
    X, y, w0 = jnp.asarray(spec.X), jnp.asarray(spec.y), jnp.asarray(spec.w0)
    settings = (np.int32(spec.maxiter), np.float64(spec.gtol), np.float64(spec.ftol))

    def fit() -> tuple[np.ndarray, int | None, int | None]:
        w, k, evals = jax.device_get(compiled(w0, X, y, *settings))
        return np.asarray(w), int(k), int(evals)

    return Runner("optax loop (1 jit)", fit)
