"""`make demo`: one model, five ways to fit it, in one screen.

Run with ``python -m miniml.demo [--out PATH]``. A small tanh network
(`miniml.nn.MLP`, 2-32-1, mean squared error) is fitted to a synthetic smooth surface
from the same starting point with

* SciPy's L-BFGS-B (value and gradient from one fused, compiled evaluation),
* SciPy's Newton-CG (plus Hessian-vector products, forward-over-reverse),
* mini-batch Adam (each epoch one compiled `jax.lax.scan` over the batches),
* a staged fit, Adam then L-BFGS-B (one history, labelled by stage),
* MiniML's compiled L-BFGS (the whole loop, line search included, in XLA).

Each fit runs twice from the same start: the first time includes compiling, the second
("refit") reuses the compiled code, as any later fit of the model does. The table shows
the exact objective at the end, the iterations (or epochs), the time of both runs and
whether the optimizer reported convergence; a PNG shows the loss curves per iteration
and against wall-clock time. Data are generated in-process; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miniml import FitResult, MiniMLModel
from miniml.errors import ConvergenceWarning
from miniml.loss import mean_squared_error_loss
from miniml.nn import MLP, tanh
from miniml.optim import LBFGS, Adam, ScipyOptimizer

__all__ = ["DemoRow", "main", "make_data", "make_model", "run_demo"]

N_SAMPLES = 1000
REG_LAMBDA = 1e-6
EPOCHS = 50
BATCH_SIZE = 50
MAXITER = 200


@dataclass
class DemoRow:
    """One line of the demo's table."""

    name: str
    loss: float
    iterations: str
    evaluations: int
    first_s: float
    refit_s: float
    success: bool
    result: FitResult  # the refit's result (same numbers as the first fit's)


def make_data(n: int = N_SAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(2 x0) cos(x1) + noise`` on ``[-2, 2]^2``."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = (np.sin(2 * X[:, 0]) * np.cos(X[:, 1]))[:, None] + 0.05 * rng.normal(size=(n, 1))
    return X, y


def make_model() -> MiniMLModel:
    """The demo's model: ``MLP([2, 32, 1])`` with tanh and the mean squared error."""
    model = MLP([2, 32, 1], activation=tanh, loss=mean_squared_error_loss)
    model.randomize(seed=0)
    return model


def _fits() -> list[tuple[str, Any, dict[str, Any]]]:
    """``(label, optimizer, fit options)``: fresh optimizer objects for every call."""
    minibatch = {"epochs": EPOCHS, "batch_size": BATCH_SIZE}
    return [
        ("L-BFGS-B", ScipyOptimizer("L-BFGS-B", {"maxiter": MAXITER}), {}),
        ("Newton-CG", ScipyOptimizer("Newton-CG", {"maxiter": MAXITER // 2}), {}),
        ("Adam (mini-batch)", Adam(lr=1e-2), minibatch),
        (
            "Adam -> L-BFGS-B",
            [Adam(lr=1e-2), ScipyOptimizer("L-BFGS-B", {"maxiter": MAXITER})],
            minibatch,
        ),
        ("LBFGS (compiled)", LBFGS(maxiter=MAXITER), {}),
    ]


def _iterations(result: FitResult) -> str:
    counts = []
    for stage in result.history.stages():
        records = [r for r in result.history if r["stage"] == stage]
        unit = " epochs" if records and records[-1].get("learning_rate") is not None else ""
        counts.append(f"{len(records)}{unit}")
    return " + ".join(counts)


def run_demo(X: np.ndarray, y: np.ndarray) -> list[DemoRow]:
    """Fit the demo model with every optimizer, twice each, from the same start."""
    model = make_model()
    start = model.get_buffer()
    rows = []
    for index, (label, _, _) in enumerate(_fits()):
        times, results = [], []
        for _attempt in ("first fit", "refit"):
            _, optimizer, options = _fits()[index]
            model.set_buffer(start)
            began = time.perf_counter()
            with warnings.catch_warnings():
                # Fixed budgets (maxiter, epochs) on purpose: a stop at the limit is
                # reported in the table, not as a warning.
                warnings.simplefilter("ignore", ConvergenceWarning)
                res = model.fit(X, y, reg_lambda=REG_LAMBDA, optimizer=optimizer, **options)
            times.append(time.perf_counter() - began)
            results.append(res)
        res = results[-1]
        rows.append(DemoRow(label, res.loss, _iterations(res), res.n_function_evaluations,
                            times[0], times[1], res.success, res))  # fmt: skip
    return rows


def print_table(rows: list[DemoRow]) -> None:
    header = (f"{'optimizer':<19}{'final loss':>13}{'iterations':>18}{'f+g evals':>11}"
              f"{'first fit':>11}{'refit':>9}  converged")  # fmt: skip
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.name:<19}{row.loss:>13.6e}{row.iterations:>18}{row.evaluations:>11}"
              f"{row.first_s:>10.2f}s{row.refit_s:>8.2f}s  {row.success}")  # fmt: skip


def plot(rows: list[DemoRow], path: Path) -> None:
    """Loss per iteration/epoch and loss against time, one line per optimizer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    by_step, by_time = figure.subplots(1, 2)
    for row in rows:
        history = row.result.history
        losses = history.column("loss")
        steps = np.arange(1, len(losses) + 1)
        stages = history.stages()
        style = "--" if len(stages) > 1 else "-"  # the staged fit starts on Adam's curve
        (line,) = by_step.plot(steps, losses, style, label=row.name)
        by_time.plot(history.column("time"), losses, style, color=line.get_color())
        if len(stages) > 1:  # mark where the staged fit switches optimizer
            switch = sum(1 for r in history if r["stage"] == stages[0])
            by_step.axvline(switch + 0.5, color=line.get_color(), linestyle=":")
    for ax in (by_step, by_time):
        ax.set_yscale("log")
        ax.set_ylabel("objective")
        ax.grid(True, which="both", alpha=0.3)
    by_step.set_xlabel("iteration (Adam: epoch)")
    by_time.set_xlabel("seconds (refit, compiled code reused)")
    by_step.legend()
    figure.suptitle(f"MLP 2-32-1 (tanh), n = {N_SAMPLES}, mean squared error "
                    "(Adam epochs: mean batch loss)")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> list[DemoRow]:
    parser = argparse.ArgumentParser(
        prog="python -m miniml.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="miniml_demo.png", help="where to save the plot")
    args = parser.parse_args(argv)
    X, y = make_data()
    print(f"MiniML demo: one tanh MLP (2-32-1, n={N_SAMPLES}, mean squared error, "
          f"reg_lambda={REG_LAMBDA:g}), fitted five ways from the same start.")  # fmt: skip
    print(f"Adam: lr=1e-2, {EPOCHS} epochs of batch {BATCH_SIZE}; L-BFGS: maxiter={MAXITER}; "
          f"Newton-CG: maxiter={MAXITER // 2}. 'first fit' includes compiling.\n")  # fmt: skip
    rows = run_demo(X, y)
    print_table(rows)
    out = Path(args.out)
    plot(rows, out)
    print(f"\nfinal loss: the exact objective at the end. converged=False: the iteration "
          f"budget ran out first.\nLoss curves saved to {out.resolve()}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
