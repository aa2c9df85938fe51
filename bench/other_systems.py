"""Peers without JAX: SciPy + numpy gradients, scikit-learn, torch, and the P5 floor.

scikit-learn solves each problem with its own estimator for that model (so iteration
counts are its own): ``LinearRegression`` for P1 and P5 (a direct least-squares solve,
not 30 L-BFGS iterations), ``Ridge`` for P2 (``alpha = 1e-3 n``), ``LogisticRegression``
(lbfgs, ``C = 1 / (1e-4 n)``, tol 1e-8) for P3 and ``MLPClassifier`` (lbfgs, 500
iterations, ``alpha = 1e-4 n``, its own initialization) for P4a. Each maps to the
objective of `bench.problems` exactly; final objectives are recomputed with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

from bench.problems import Spec, mlp_unflatten, numpy_value_and_grad
from bench.timing import Runner

__all__ = ["bandwidth_floor", "scipy_numpy", "sklearn_runner", "torch_runner"]


def scipy_numpy(spec: Spec) -> Runner:
    """SciPy L-BFGS-B with the hand-written numpy gradient."""
    options = {"maxiter": spec.maxiter, "gtol": spec.gtol, "ftol": spec.ftol}

    def fit() -> tuple[np.ndarray, int | None, int | None]:
        res = scipy.optimize.minimize(
            lambda w: numpy_value_and_grad(spec, w),
            spec.w0,
            jac=True,
            method="L-BFGS-B",
            options=options,
        )
        return res.x, int(res.nit), int(res.nfev)

    return Runner("scipy + numpy", fit)


def sklearn_runner(spec: Spec) -> Runner:
    """The scikit-learn estimator that minimizes the same objective."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier

    X, y, n = spec.X, spec.y, spec.n
    note = ""
    if spec.kind == "mlp":
        note = "MLPClassifier: own initialization"

    def fit() -> tuple[np.ndarray, int | None, int | None]:
        estimator: Any
        if spec.kind in ("ls_sum", "ls_half_mean"):
            estimator = LinearRegression(fit_intercept=False).fit(X, y)
            return estimator.coef_.ravel(), None, None
        if spec.kind == "mse_l2":
            estimator = Ridge(alpha=spec.reg * n, fit_intercept=False).fit(X, y)
            return estimator.coef_.ravel(), None, None
        if spec.kind == "logistic":
            estimator = LogisticRegression(
                C=1.0 / (spec.reg * n), fit_intercept=False, tol=1e-8, max_iter=spec.maxiter
            ).fit(X, y)
            return estimator.coef_.ravel(), int(estimator.n_iter_[0]), None
        estimator = MLPClassifier(
            hidden_layer_sizes=(100,),
            activation="tanh",
            solver="lbfgs",
            alpha=spec.reg * n,
            max_iter=spec.maxiter,
            tol=0.0,
            max_fun=15000,
            random_state=0,
        ).fit(X, y)
        w = np.concatenate(
            [
                estimator.coefs_[0].ravel(),
                estimator.intercepts_[0],
                estimator.coefs_[1].ravel(),
                estimator.intercepts_[1],
            ]
        )
        return w, int(estimator.n_iter_), None

    label = "LinearRegression (direct)" if spec.kind in ("ls_sum", "ls_half_mean") else ""
    if spec.kind == "mse_l2":
        label = "Ridge (direct)"
    return Runner("scikit-learn", fit, note=note or label)


def _torch_objective(spec: Spec, torch: Any) -> Any:
    X = torch.from_numpy(spec.X)
    y = torch.from_numpy(spec.y)
    reg, kind, n_in = spec.reg, spec.kind, spec.X.shape[1]

    def f(w: Any) -> Any:
        if kind == "mlp":
            W1, b1, W2, b2 = mlp_unflatten(w, n_in)
            logits = torch.tanh(X @ W1 + b1) @ W2 + b2
            data = torch.nn.functional.cross_entropy(logits, y)
            return data + 0.5 * reg * ((W1 * W1).sum() + (W2 * W2).sum())
        z = X @ w
        if kind == "logistic":
            return (torch.nn.functional.softplus(z) - y * z).mean() + 0.5 * reg * (w @ w)
        r = z - y
        if kind == "ls_sum":
            return r @ r
        if kind == "mse_l2":
            return (r * r).mean() + reg * (w @ w)
        return 0.5 * (r * r).mean()

    return f


def torch_runner(spec: Spec) -> Runner:
    """``torch.optim.LBFGS`` (strong Wolfe line search, memory 10) in float64."""
    import torch

    objective = _torch_objective(spec, torch)
    tolerance_change = 0.0 if spec.fixed_iterations else 1e-9

    def fit() -> tuple[np.ndarray, int | None, int | None]:
        w = torch.tensor(spec.w0, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [w],
            lr=1.0,
            max_iter=spec.maxiter,
            max_eval=15000,
            history_size=10,
            tolerance_grad=spec.gtol,
            tolerance_change=tolerance_change,
            line_search_fn="strong_wolfe",
        )
        evaluations = [0]

        def closure() -> Any:
            optimizer.zero_grad()
            loss = objective(w)
            loss.backward()
            evaluations[0] += 1
            return loss

        optimizer.step(closure)
        iterations = optimizer.state[optimizer.param_groups[0]["params"][0]]["n_iter"]
        return w.detach().numpy().copy(), int(iterations), evaluations[0]

    note = "" if spec.fixed_iterations else "tolerance_change 1e-9 (absolute)"
    return Runner("torch LBFGS", fit, note=note)


def bandwidth_floor(spec: Spec, evaluations: int) -> Runner:
    """``evaluations`` least-squares value+gradient passes in numpy: ``X@w``, ``X.T@r``."""
    X, y = spec.X, spec.y
    w = np.full(X.shape[1], 0.5)

    def fit() -> tuple[np.ndarray, int | None, int | None]:
        for _ in range(evaluations):
            r = X @ w - y
            X.T @ r
        return w, None, evaluations

    return Runner("bandwidth floor", fit, note=f"numpy X@w + X.T@r, x{evaluations}")
