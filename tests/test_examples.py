"""Every script in ``examples/`` runs in ``--quick`` mode, saves its plots, and prints
figures that agree with independent references.

The scripts are discovered with a glob, so a new example is tested as soon as it is
added; `test_every_example_has_a_check` then asks for a check of its figures in
``CHECKS``. Each script is run in this process (its ``main(argv)`` returns the figures it
prints), which shares JAX's start-up and compiled programs with the other tests.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("pandas")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # headless: the examples only save PNG files

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CHECKS: dict[str, Callable[[dict], None]] = {}


def check(name: str):
    def register(function: Callable[[dict], None]) -> Callable[[dict], None]:
        CHECKS[name] = function
        return function

    return register


def run_quick(script: Path, out: Path) -> dict:
    spec = importlib.util.spec_from_file_location(f"miniml_example_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # As `python examples/<script>.py` does, put examples/ first on the path, so that
    # the scripts find their shared `_example_cli`.
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(module)  # scripts run only under `if __name__ == "__main__"`
    finally:
        sys.path.remove(str(EXAMPLES))
    assert callable(getattr(module, "main", None)), f"{script.name} has no main(argv)"
    return module.main(["--quick", "--out", str(out)])


def test_examples_are_discovered():
    names = {p.stem for p in SCRIPTS}
    assert {
        "lecture_optimizers",
        "kormos_regression",
        "matrix_factorization",
        "digits_convnet",
    } <= names


def test_every_example_has_a_check():
    missing = sorted({p.stem for p in SCRIPTS} - set(CHECKS))
    assert not missing, f"add a check of the printed figures to CHECKS for: {missing}"


def test_examples_output_directory_is_git_ignored():
    ignored = (EXAMPLES.parent / ".gitignore").read_text().split()
    assert "examples/output/" in ignored


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_quick_and_saves_its_plots(script, tmp_path, capsys):
    figures = run_quick(script, tmp_path)
    printed = capsys.readouterr().out
    assert "saved" in printed, printed  # it prints its figures and where the plots went
    plots = [Path(p) for p in figures["plots"]]
    assert plots
    for plot in plots:
        assert plot.parent == tmp_path, f"{plot} was not written to --out"
        data = plot.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, plot
    CHECKS[script.stem](figures)


# --------------------------------------------------------------------------- checks
@check("lecture_optimizers")
def _lecture(figures: dict) -> None:
    from sklearn.datasets import make_regression

    X, y = make_regression(
        n_samples=10000, n_features=20, n_informative=4, bias=3, noise=1, random_state=1234
    )
    X = np.c_[np.ones(len(y)), X]
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    lm_loss = np.sum((y - X @ beta) ** 2)
    # The optimum: numpy here, and the figure the lecture printed.
    np.testing.assert_allclose(figures["lm_loss"], lm_loss, rtol=1e-12)
    np.testing.assert_allclose(lm_loss, 10105.859508383426, rtol=1e-10)
    # Full-batch GD, transcribed: beta <- beta - lr * d/dbeta sum((y - X beta)^2).
    beta, losses = np.zeros(X.shape[1]), []
    for _ in range(30):
        residual = y - X @ beta
        losses.append(np.sum(residual**2))
        beta = beta + 1e-5 * 2 * X.T @ residual
    np.testing.assert_allclose(figures["gd_loss_before_last_step"], losses[-1], rtol=1e-10)
    np.testing.assert_allclose(figures["gd_loss"], np.sum((y - X @ beta) ** 2), rtol=1e-10)
    assert abs(figures["gd_loss_before_last_step"] - 10244.7649) < 1e-3  # the lecture's
    assert abs(figures["gd_loss"] - 10195.1335) < 1e-3  # the lecture's torch loop
    # SGD with one batch of all samples is gradient descent.
    np.testing.assert_allclose(figures["sgd_adjusted_mb10000"], figures["gd_loss"], rtol=1e-12)
    # L-BFGS-B reaches the optimum; the stochastic runs approach it from above.
    np.testing.assert_allclose(figures["lbfgs_loss"], lm_loss, rtol=1e-9)
    stochastic = {k: v for k, v in figures.items() if k.startswith(("sgd_", "adam_"))}
    assert len(stochastic) >= 5, stochastic
    assert all(v >= lm_loss * (1 - 1e-12) for v in stochastic.values()), stochastic
    assert figures["adam_lr0.1_mb50"] < 1.05 * lm_loss  # lecture: 10181.5
    assert figures["adam_decay_mb50"] < 1.15 * lm_loss  # lecture: 10755.0


@check("kormos_regression")
def _kormos(figures: dict) -> None:
    np.random.seed(1)
    w = np.random.normal(size=50)
    X = np.random.normal(size=(1000, 50))
    y = X @ w
    # Ridge in closed form: (X'X/n + lambda I) w = X'y/n for mean((Xw - y)^2) + lambda |w|^2.
    w_opt = np.linalg.solve(X.T @ X / 1000 + 1e-3 * np.eye(50), X.T @ y / 1000)
    optimum = np.mean((X @ w_opt - y) ** 2) + 1e-3 * np.sum(w_opt**2)
    np.testing.assert_allclose(figures["optimum"], optimum, rtol=1e-12)
    assert abs(optimum - 0.0469896579) < 1e-10
    assert abs(optimum - 0.046990) < 1e-6  # the last loss of Kormos' history table
    for key in ("lbfgs_loss", "newton_loss", "staged_loss"):
        np.testing.assert_allclose(figures[key], optimum, rtol=1e-7, err_msg=key)
    assert figures["lbfgs_weight_error"] < 1e-2  # Kormos' assertion
    assert figures["newton_grad"] < 0.1 * figures["lbfgs_grad"]  # second order converges
    assert figures["newton_hessp_evals"] > 0
    assert figures["staged_stages"] == ["Adam", "L-BFGS-B"]
    assert optimum < figures["adam_loss"] < 0.1 * np.mean(y**2)  # Adam made progress


@check("matrix_factorization")
def _matrix_factorization(figures: dict) -> None:
    # Far better than predicting the mean, and not better than the planted model itself.
    assert figures["val_mse"] < 0.6 * figures["mean_mse"], figures
    assert figures["val_mse"] > 0.9 * figures["oracle_mse"], figures
    assert figures["n_iterations"] > 10


@check("digits_convnet")
def _digits_convnet(figures: dict) -> None:
    assert figures["accuracy_after_adam"] > 0.5  # chance is 0.1
    assert figures["accuracy"] >= 0.9
    assert figures["loss"] < figures["adam_loss"]  # L-BFGS-B continued from Adam


@check("linear_model")
def _linear_model(figures: dict) -> None:
    assert figures["success"]
    assert figures["ridge_error"] < 1e-4  # sklearn Ridge(alpha) at reg_lambda = alpha
    assert figures["recipe_mse"] < 5 * figures["noise_variance"]
    assert figures["roundtrip_error"] == 0.0


@check("logistic_features")
def _logistic_features(figures: dict) -> None:
    assert figures["sklearn_difference"] < 1e-3  # LogisticRegression(C), reg_lambda = 1/(2C)
    assert figures["quadratic_accuracy"] > 0.85
    assert figures["quadratic_accuracy"] > figures["linear_accuracy"] + 0.15


@check("rbf_two_moons")
def _rbf_two_moons(figures: dict) -> None:
    assert figures["stopped_early"]
    assert figures["accuracy"] > 0.93
    assert figures["accuracy"] > figures["linear_accuracy"] + 0.05


@check("residual_mlp_digits")
def _residual_mlp_digits(figures: dict) -> None:
    names = figures["param_names"]
    assert "layers.2.branches.0.layers.0.W" in names  # inside the first residual branch
    assert len(names) == 12  # 6 Linear layers; Identity and activations have none
    assert figures["accuracy"] > 0.9
