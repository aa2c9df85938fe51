"""Why the compiled loops sit above the bandwidth floor: ``python -m bench.xla_gemv``.

The floor of P5 is numpy's least-squares value and gradient, ``X @ w`` and ``X.T @ r``.
A compiled loop (MiniML's `LBFGS`, the optax loop) evaluates ``jax.value_and_grad`` of
``0.5 mean((X w - y)^2)``, where reverse-mode differentiation turns ``X @ w`` into a
``dot_general`` that contracts the sample axis of ``X`` (``r @ X``). This script times,
in one process, alternating, with a pause before each call and BLAS threads pinned:

* the whole value and gradient: numpy; XLA with JAX's own gradient; XLA with the
  gradient of ``X @ w`` written as ``sum(X * r[:, None], axis=0)`` (a `jax.custom_vjp`);
  XLA with the model's product written as ``sum(X * w, axis=1)``, whose gradient JAX
  itself derives as that multiply-and-sum (no custom rule, so forward mode and
  Hessian-vector products still work);
* the pieces: ``X @ w`` and the gradient product in numpy (``X.T @ r``) and XLA (JAX's
  ``r @ X``, and the multiply-and-sum).

It checks that the four gradients agree (1e-12 relative) and prints medians and
ratios to numpy's value and gradient. ``--tiny`` runs toy sizes (smoke test).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

FEATURES = 100


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.xla_gemv", description=__doc__)
    parser.add_argument("--sizes", default="1e5,1e6", help="numbers of samples, e.g. 1e5,1e6")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds before each call")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tiny", action="store_true", help="toy sizes (smoke test)")
    return parser.parse_args(argv)


def _cases(n: int) -> tuple[dict[str, Callable[[], Any]], list[np.ndarray]]:
    """The timed calls on seeded data with ``n`` samples, and the four gradients."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, FEATURES))
    y = rng.standard_normal(n)
    w = rng.standard_normal(FEATURES)
    r = X @ w - y
    Xd, yd, wd, rd = (jax.device_put(a) for a in (X, y, w, r))

    @jax.custom_vjp
    def matvec(X: Any, w: Any) -> Any:
        return X @ w

    def matvec_forward(X: Any, w: Any) -> tuple[Any, Any]:
        return X @ w, (X, w)

    def matvec_backward(saved: Any, cotangent: Any) -> tuple[Any, Any]:
        X, w = saved
        return cotangent[:, None] * w[None, :], jnp.sum(X * cotangent[:, None], axis=0)

    matvec.defvjp(matvec_forward, matvec_backward)

    def objective(product: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
        def f(w: Any, X: Any, y: Any) -> Any:
            residual = product(X, w) - y
            return 0.5 * jnp.mean(residual * residual)

        return f

    jax_grad = jax.jit(jax.value_and_grad(objective(lambda X, w: X @ w)))
    sum_grad = jax.jit(jax.value_and_grad(objective(matvec)))
    rowsum_grad = jax.jit(jax.value_and_grad(objective(lambda X, w: jnp.sum(X * w, axis=1))))
    xla_matvec = jax.jit(lambda X, w: X @ w)
    xla_rX = jax.jit(lambda X, r: r @ X)
    xla_sum = jax.jit(lambda X, r: jnp.sum(X * r[:, None], axis=0))

    def numpy_value_and_grad() -> tuple[float, np.ndarray]:
        residual = X @ w - y
        return 0.5 * float(residual @ residual) / n, X.T @ residual / n

    def ready(result: Any) -> Any:
        return jax.block_until_ready(result)

    cases = {
        "value+grad  numpy X@w, X.T@r": numpy_value_and_grad,
        "value+grad  XLA, JAX's gradient": lambda: ready(jax_grad(wd, Xd, yd)),
        "value+grad  XLA, multiply-and-sum gradient": lambda: ready(sum_grad(wd, Xd, yd)),
        "value+grad  XLA, product as sum(X * w, 1)": lambda: ready(rowsum_grad(wd, Xd, yd)),
        "piece  numpy X @ w": lambda: X @ w,
        "piece  XLA   X @ w": lambda: ready(xla_matvec(Xd, wd)),
        "piece  numpy X.T @ r": lambda: X.T @ r,
        "piece  XLA   r @ X (JAX's gradient)": lambda: ready(xla_rX(Xd, rd)),
        "piece  XLA   sum(X * r[:, None], 0)": lambda: ready(xla_sum(Xd, rd)),
    }
    gradients = [
        numpy_value_and_grad()[1],
        np.asarray(jax_grad(wd, Xd, yd)[1]),
        np.asarray(sum_grad(wd, Xd, yd)[1]),
        np.asarray(rowsum_grad(wd, Xd, yd)[1]),
    ]
    return cases, gradients


def _time(cases: dict[str, Callable[[], Any]], rounds: int, pause: float) -> dict[str, float]:
    for call in cases.values():  # compile and warm up
        call()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for index in range(rounds):
        order = list(cases) if index % 2 == 0 else list(cases)[::-1]
        for name in order:
            time.sleep(pause)
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    import miniml  # noqa: F401  (64-bit JAX, as in the suite)
    from bench.timing import pin_threads

    _limiter, pools = pin_threads(args.threads)
    sizes = [2000] if args.tiny else [int(float(s)) for s in args.sizes.split(",") if s]
    print(f"X: n x {FEATURES} float64; {args.rounds} alternating rounds, "
          f"{args.pause:.2f} s pause; threads pinned: {pools}")  # fmt: skip
    for n in sizes:
        cases, gradients = _cases(n)
        scale = np.max(np.abs(gradients[0]))
        gaps = [float(np.max(np.abs(g - gradients[0])) / scale) for g in gradients[1:]]
        if max(gaps) > 1e-12:
            raise SystemExit(f"bench.xla_gemv: the gradients disagree at n = {n}: {gaps}")
        medians = _time(cases, args.rounds, args.pause)
        floor = medians["value+grad  numpy X@w, X.T@r"]
        print(f"n = {n:.0e} (gradients agree: max relative gap {max(gaps):.1e})")
        for name, seconds in medians.items():
            print(f"  {name:<44} {seconds * 1e3:9.2f} ms  {seconds / floor:5.2f}x numpy v+g")


if __name__ == "__main__":
    main()
