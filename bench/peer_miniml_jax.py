"""The public MiniML package (``miniml-jax``) on the benchmark problems.

It has the same import name as this project, so `bench.peer` runs this module in its
own virtual environment and process::

    bench/.venv-peer/bin/python -m bench.peer_miniml_jax --problems P1,P2 --rounds 5

and reads one JSON document from stdout. With ``--cold`` it reports the import time
and the first fit of P1 instead. Its fit builds a new closure over the data and
recompiles on every call; that is what is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

T_START = time.perf_counter()
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from miniml import MiniMLModel, MiniMLParam  # noqa: E402
from miniml.loss import LNormRegularization  # noqa: E402
from miniml.optim.scipy import ScipyOptimizer  # noqa: E402

T_IMPORTED = time.perf_counter()

from bench.problems import CLASSES, HIDDEN, Spec, build  # noqa: E402
from bench.timing import Runner, measure, pin_threads  # noqa: E402


def _loss(spec: Spec) -> Any:
    def loss(y_true: Any, out: Any) -> Any:
        if spec.kind == "mlp":
            log_p = jax.nn.log_softmax(out)
            return -jnp.mean(jnp.take_along_axis(log_p, y_true[:, None], axis=1))
        if spec.kind == "logistic":
            return jnp.mean(jax.nn.softplus(out) - y_true * out)
        r = out - y_true
        if spec.kind == "ls_sum":
            return jnp.sum(r * r)
        if spec.kind == "mse_l2":
            return jnp.mean(r * r)
        return 0.5 * jnp.mean(r * r)

    return loss


class LinearW(MiniMLModel):
    def __init__(self, d: int, loss: Any, penalized: bool) -> None:
        reg = LNormRegularization(2) if penalized else None
        self.w = MiniMLParam((d,), dtype=np.float64, reg_loss=reg)
        super().__init__(loss=loss)

    def _predict_kernel(
        self, X: Any, buffer: Any, rng_key: Any = None, mode: Any = None, **kwargs: Any
    ) -> Any:
        return X @ self.w(buffer)


class TanhMLP(MiniMLModel):
    def __init__(self, n_in: int, loss: Any) -> None:
        l2 = LNormRegularization(2)
        self.W1 = MiniMLParam((n_in, HIDDEN), dtype=np.float64, reg_loss=l2)
        self.b1 = MiniMLParam((HIDDEN,), dtype=np.float64)
        self.W2 = MiniMLParam((HIDDEN, CLASSES), dtype=np.float64, reg_loss=l2)
        self.b2 = MiniMLParam((CLASSES,), dtype=np.float64)
        super().__init__(loss=loss)

    def _predict_kernel(
        self, X: Any, buffer: Any, rng_key: Any = None, mode: Any = None, **kwargs: Any
    ) -> Any:
        hidden = jnp.tanh(X @ self.W1(buffer) + self.b1(buffer))
        return hidden @ self.W2(buffer) + self.b2(buffer)


def runner(spec: Spec) -> Runner:
    """``model.fit`` of miniml-jax with SciPy's L-BFGS-B."""
    d = spec.X.shape[1]
    loss = _loss(spec)
    reg_lambda = {"mse_l2": spec.reg, "logistic": spec.reg / 2, "mlp": spec.reg / 2}.get(
        spec.kind, 0.0
    )
    model: MiniMLModel = (
        TanhMLP(d, loss) if spec.kind == "mlp" else LinearW(d, loss, penalized=reg_lambda > 0)
    )
    model.bind()
    options = {"maxiter": spec.maxiter, "gtol": spec.gtol, "ftol": spec.ftol}
    X, y = jnp.asarray(spec.X), jnp.asarray(spec.y)

    def fit() -> tuple[np.ndarray, int | None, int | None]:
        model.set_buffer(jnp.asarray(spec.w0))
        result = model.fit(
            X, y, reg_lambda=reg_lambda, optimizer=ScipyOptimizer("L-BFGS-B", options=options)
        )
        return (
            np.asarray(model._buffer),
            int(result.n_iterations),
            int(result.n_function_evaluations),
        )

    return Runner("miniml-jax 0.11.0", fit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", default="P1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    _limiter, _ = pin_threads(args.threads)
    if args.cold:
        spec = build("P1", tiny=args.tiny)
        fit = runner(spec).fit
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit()
        first = time.perf_counter() - start
        json.dump({"import_s": T_IMPORTED - T_START, "first_fit_s": first}, sys.stdout)
        return
    out = []
    for problem in args.problems.split(","):
        spec = build(problem, tiny=args.tiny)
        [m] = measure(
            problem,
            [runner(spec)],
            args.warmup,
            args.rounds,
            args.pause,
            args.budget,
            log=lambda text: print(text, file=sys.stderr),
        )
        out.append(
            {
                "problem": problem,
                "times": m.times,
                "iterations": m.iterations,
                "evaluations": m.evaluations,
                "error": m.error,
                "w": None if m.w is None else np.asarray(m.w).tolist(),
            }
        )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
