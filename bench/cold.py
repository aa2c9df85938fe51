"""Cold start: import time and first fit of P1 in a fresh process.

``python -m bench.cold CASE`` imports the case's libraries, builds P1's data, fits
once (compiling everything) and once more, and prints JSON: ``import_s`` (the
libraries), ``first_fit_s`` (the cold fit, compilation included) and
``second_fit_s``. `cold_rows` runs each case in fresh processes (three by default) and
reports the medians; for MiniML it also runs pairs of processes that share a fresh
persistent compilation cache (``MINIML_COMPILATION_CACHE``) and reports the second of
each pair, when MiniML has that cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["CASES", "cold_rows"]

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    "MiniML ScipyOptimizer",
    "MiniML LBFGS (compiled)",
    "scipy + jax.jit",
    "scipy + numpy",
    "optax loop (1 jit)",
)


def _import(case: str) -> Any:
    """Import what ``case`` needs; returns the function that builds its runners."""
    if case.startswith("MiniML"):
        import miniml  # noqa: F401
        from bench.miniml_systems import miniml_runners
        from miniml.optim import LBFGS, ScipyOptimizer  # noqa: F401

        return lambda spec: {r.system: r for r in miniml_runners(spec)}[case]
    if case == "scipy + numpy":
        import scipy.optimize  # noqa: F401

        from bench.other_systems import scipy_numpy

        return scipy_numpy
    import jax

    jax.config.update("jax_enable_x64", True)
    from bench.jax_systems import optax_loop, scipy_jit

    return scipy_jit if case == "scipy + jax.jit" else optax_loop


def _main(case: str, tiny: bool) -> None:
    start = time.perf_counter()
    make = _import(case)
    imported = time.perf_counter()
    from bench.problems import build

    fit = make(build("P1", tiny=tiny)).fit
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            begin = time.perf_counter()
            fit()
            times.append(time.perf_counter() - begin)
    json.dump(
        {"import_s": imported - start, "first_fit_s": times[0], "second_fit_s": times[1]},
        sys.stdout,
    )


def _run(case: str, tiny: bool, env: dict[str, str]) -> dict[str, Any]:
    arguments = [sys.executable, "-m", "bench.cold", case] + (["--tiny"] if tiny else [])
    done = subprocess.run(arguments, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout)


def cold_rows(tiny: bool, pause: float, repeats: int = 3) -> list[tuple[str, dict[str, Any]]]:
    """``(label, figures)`` for every case: the medians over ``repeats`` fresh processes.

    The cases take turns (one process of each per round), so that a slow moment of the
    shared machine touches one process of several cases rather than every process of
    one; ``first_fit_runs`` keeps each process's first fit.
    """
    env = {k: v for k, v in os.environ.items() if k != "MINIML_COMPILATION_CACHE"}
    import miniml

    cached_cases = CASES[:2] if hasattr(miniml, "enable_compilation_cache") else ()
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeats):
        for case in CASES:
            time.sleep(pause)
            runs.setdefault(case, []).append(_run(case, tiny, env))
        for case in cached_cases:
            with tempfile.TemporaryDirectory(prefix="miniml-bench-xla-") as cache:
                cached = dict(env, MINIML_COMPILATION_CACHE=cache)
                _run(case, tiny, cached)  # fills the cache
                time.sleep(pause)
                label = f"{case}, 2nd process (disk cache)"
                runs.setdefault(label, []).append(_run(case, tiny, cached))
    return [(label, _medians(figures)) for label, figures in runs.items()]


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the processes that ran; the first error if none did."""
    ok = [run for run in runs if "error" not in run]
    if not ok:
        return runs[0]
    figures: dict[str, Any] = {
        key: statistics.median(run[key] for run in ok)
        for key in ("import_s", "first_fit_s", "second_fit_s")
    }
    figures["first_fit_runs"] = [run["first_fit_s"] for run in ok]
    figures["failed_runs"] = len(runs) - len(ok)
    return figures


if __name__ == "__main__":
    _main(sys.argv[1], "--tiny" in sys.argv[2:])
