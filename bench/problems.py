"""The benchmark problems P1–P5 of ``BENCHMARKS.md``: data, starting point, objective.

Everything is generated in-process from fixed seeds (no downloads); this module needs
only numpy and scikit-learn, so the ``miniml-jax`` peer process can import it too.

Each `Spec` says what every system minimizes:

* ``P1``: :math:`\\sum_i (y_i - x_i^\\top w)^2` (a column of ones prepended), from 0;
* ``P2``: :math:`\\mathrm{mean}_i (y_i - x_i^\\top w)^2 + 10^{-3} \\|w\\|^2`, from ones;
* ``P3``: :math:`\\mathrm{mean}_i [\\log(1 + e^{z_i}) - y_i z_i] + \\tfrac{10^{-4}}{2}
  \\|w\\|^2` with :math:`z = X w`, from 0;
* ``P4a``: a 64-100-10 tanh MLP on the digits (inputs / 16), mean softmax
  cross-entropy :math:`+ \\tfrac{10^{-4}}{2} (\\|W_1\\|^2 + \\|W_2\\|^2)`, from a seeded
  start, exactly 500 L-BFGS iterations;
* ``P5``: :math:`\\tfrac12 \\mathrm{mean}_i (x_i^\\top w - y_i)^2`, d = 100, columns scaled
  so that :math:`X^\\top X` has condition number about 1e4 (30 iterations do not reach
  machine precision), from 0, exactly 30 L-BFGS iterations.

The flat parameter vector of P4a is ``[W1 (64×100, row-major), b1, W2 (100×10), b2]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PROBLEMS", "Spec", "build", "mlp_unflatten", "numpy_value_and_grad", "problem_ids"]

GTOL, FTOL, MAXITER = 1e-5, 2.2e-9, 15000
"""SciPy L-BFGS-B defaults, used by every L-BFGS run that iterates to convergence."""


@dataclass
class Spec:
    """One benchmark problem.

    Attributes:
        id: ``"P1"`` ... ``"P5-1e6"``.
        kind: ``"ls_sum"``, ``"mse_l2"``, ``"logistic"``, ``"mlp"`` or ``"ls_half_mean"``.
        X: inputs (float64).
        y: targets (float64; integer labels for ``mlp``).
        w0: starting point (flat, float64).
        reg: the penalty's factor as written in the objective above (0 if none).
        maxiter: iteration limit.
        fixed_iterations: True when the run must do exactly ``maxiter`` iterations
            (tolerances 0); False to iterate to SciPy's default tolerances.
        reference: the known optimum, if any.
        note: a remark printed under the table.
    """

    id: str
    kind: str
    X: np.ndarray
    y: np.ndarray
    w0: np.ndarray
    reg: float = 0.0
    maxiter: int = MAXITER
    fixed_iterations: bool = False
    reference: float | None = None
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def gtol(self) -> float:
        return 0.0 if self.fixed_iterations else GTOL

    @property
    def ftol(self) -> float:
        return 0.0 if self.fixed_iterations else FTOL

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


HIDDEN, CLASSES = 100, 10


def mlp_unflatten(w: np.ndarray, n_in: int) -> tuple[np.ndarray, ...]:
    """``(W1, b1, W2, b2)`` views of P4a's flat vector (numpy, torch or jax arrays)."""
    sizes = [n_in * HIDDEN, HIDDEN, HIDDEN * CLASSES, CLASSES]
    ends = np.cumsum(sizes)
    W1 = w[: ends[0]].reshape(n_in, HIDDEN)
    b1 = w[ends[0] : ends[1]]
    W2 = w[ends[1] : ends[2]].reshape(HIDDEN, CLASSES)
    b2 = w[ends[2] : ends[3]]
    return W1, b1, W2, b2


def _p1(tiny: bool) -> Spec:
    from sklearn.datasets import make_regression

    n = 200 if tiny else 10000
    X, y = make_regression(
        n_samples=n, n_features=20, n_informative=4, bias=3, noise=1, random_state=1234
    )
    X = np.c_[np.ones(len(y)), X]
    return Spec("P1", "ls_sum", X, y, np.zeros(21), reference=None if tiny else 10105.859508383426)


def _p2(tiny: bool) -> Spec:
    rank, n = 50, 1000
    np.random.seed(1)
    w = np.random.normal(size=rank)
    X = np.random.normal(size=(n, rank))
    y = X.dot(w)
    if tiny:
        X, y = X[:100, :10], y[:100]
    return Spec(
        "P2",
        "mse_l2",
        X,
        y,
        np.ones(X.shape[1]),
        reg=1e-3,
        reference=None if tiny else 0.0469896579,
    )


def _p3(tiny: bool) -> Spec:
    n, d = (500, 10) if tiny else (100_000, 100)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) / np.sqrt(d) * 3.0
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-X @ w))).astype(np.float64)
    return Spec("P3", "logistic", X, y, np.zeros(d), reg=1e-4)


def _p4a(tiny: bool) -> Spec:
    from sklearn.datasets import load_digits

    X, labels = load_digits(return_X_y=True)
    X = X / 16.0
    maxiter = 500
    if tiny:
        X, labels, maxiter = X[:200], labels[:200], 10
    rng = np.random.default_rng(4)
    n_in = X.shape[1]
    w0 = np.concatenate(
        [
            rng.normal(size=n_in * HIDDEN) / np.sqrt(n_in),
            np.zeros(HIDDEN),
            rng.normal(size=HIDDEN * CLASSES) / np.sqrt(HIDDEN),
            np.zeros(CLASSES),
        ]
    )
    return Spec(
        "P4a",
        "mlp",
        X,
        labels.astype(np.int64),
        w0,
        reg=1e-4,
        maxiter=maxiter,
        fixed_iterations=True,
    )


def _p5(label: str, n: int, tiny: bool) -> Spec:
    d = 10 if tiny else 100
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, d))
    X *= np.logspace(0, -2, d)  # condition number of XᵀX ≈ 1e4
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    return Spec(label, "ls_half_mean", X, y, np.zeros(d), maxiter=30, fixed_iterations=True)


PROBLEMS = ("P1", "P2", "P3", "P4a", "P5-1e4", "P5-1e5", "P5-1e6")


def problem_ids(selection: str | None, quick: bool) -> list[str]:
    """The problems to run: a comma-separated ``selection``, or all (quick: no P5-1e6)."""
    if selection:
        ids = [s.strip() for s in selection.split(",") if s.strip()]
        unknown = [s for s in ids if s not in PROBLEMS]
        if unknown:
            raise SystemExit(f"bench: unknown problems {unknown}; choose from {list(PROBLEMS)}.")
        return ids
    return [p for p in PROBLEMS if not (quick and p == "P5-1e6")]


def build(problem_id: str, tiny: bool = False) -> Spec:
    """The `Spec` of ``problem_id``; ``tiny`` shrinks every size for smoke tests."""
    if problem_id.startswith("P5-"):
        n = 1000 if tiny else int(float(problem_id.split("-", 1)[1]))
        return _p5(problem_id, n, tiny)
    return {"P1": _p1, "P2": _p2, "P3": _p3, "P4a": _p4a}[problem_id](tiny)


def numpy_value_and_grad(spec: Spec, w: np.ndarray) -> tuple[float, np.ndarray]:
    """The objective of ``spec`` and its gradient by hand, in numpy (float64).

    This is the "scipy + numpy" peer's function and the common yardstick: every
    system's final objective is recomputed with it.
    """
    X, y, n = spec.X, spec.y, spec.n
    if spec.kind == "mlp":
        return _mlp_value_and_grad(spec, w)
    z = X @ w
    if spec.kind == "logistic":
        value = float(np.mean(np.logaddexp(0.0, z) - y * z)) + 0.5 * spec.reg * float(w @ w)
        prob = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, overflow-free
        return value, X.T @ (prob - y) / n + spec.reg * w
    r = z - y
    if spec.kind == "ls_sum":
        return float(r @ r), 2.0 * (X.T @ r)
    if spec.kind == "mse_l2":
        return float(r @ r) / n + spec.reg * float(w @ w), 2.0 * (X.T @ r) / n + 2 * spec.reg * w
    if spec.kind == "ls_half_mean":
        return 0.5 * float(r @ r) / n, (X.T @ r) / n
    raise ValueError(f"numpy_value_and_grad: unknown problem kind {spec.kind!r}")


def _mlp_value_and_grad(spec: Spec, w: np.ndarray) -> tuple[float, np.ndarray]:
    X, labels, n = spec.X, spec.y, spec.n
    W1, b1, W2, b2 = mlp_unflatten(w, X.shape[1])
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    logits = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    rows = np.arange(n)
    value = float(np.mean(log_norm - logits[rows, labels]))
    value += 0.5 * spec.reg * (float(np.sum(W1 * W1)) + float(np.sum(W2 * W2)))
    d_logits = np.exp(logits - log_norm[:, None])
    d_logits[rows, labels] -= 1.0
    d_logits /= n
    d_hidden = (d_logits @ W2.T) * (1.0 - hidden * hidden)
    grad = np.concatenate(
        [
            (X.T @ d_hidden + spec.reg * W1).ravel(),
            d_hidden.sum(axis=0),
            (hidden.T @ d_logits + spec.reg * W2).ravel(),
            d_logits.sum(axis=0),
        ]
    )
    return value, grad
