"""The timing protocol, thread pinning and machine facts of the benchmark suite.

Protocol (`measure`): every system of a problem is set up once (data conversion, jit
wrappers) and then fitted from the same starting point ``warmup`` times (compiles
happen there), then ``rounds`` times, in an order that alternates between rounds
(forward, backward, ...), with a short pause before each timed fit so that idle BLAS
threads of the previous fit do not slow the next one. Reported: the median and the
spread (min, max) of the counted fits.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Measurement", "Runner", "machine_facts", "measure", "paired_median", "pin_threads"]


@dataclass
class Runner:
    """One system on one problem.

    ``fit()`` runs a whole fit from the problem's start and returns ``(w, iterations,
    evaluations)``: the final flat parameters (numpy) and the counts it knows (or None).
    """

    system: str
    fit: Callable[[], tuple[np.ndarray, int | None, int | None]]
    note: str = ""


@dataclass
class Measurement:
    """The counted fits of one system on one problem."""

    system: str
    problem: str
    times: list[float] = field(default_factory=list)
    w: np.ndarray | None = None
    iterations: int | None = None
    evaluations: int | None = None
    objective: float | None = None
    note: str = ""
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None


def paired_median(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median over rounds of each round's ratio (both timed in the same rounds).

    Two fits of a round ran moments apart, so the machine's slow drifts (other tenants,
    frequency changes) cancel in each round's ratio; a ratio of medians does not pair them.
    """
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def _quiet_fit(runner: Runner) -> tuple[np.ndarray, int | None, int | None]:
    with warnings.catch_warnings():
        # Fixed-iteration runs stop at their limit on purpose; peers warn about it.
        warnings.simplefilter("ignore")
        return runner.fit()


def measure(
    problem: str,
    runners: Sequence[Runner],
    warmup: int,
    rounds: int,
    pause: float,
    budget_s: float,
    log: Callable[[str], None],
) -> list[Measurement]:
    """Warm up, then time ``rounds`` alternating rounds (fewer if over ``budget_s``)."""
    results = {r.system: Measurement(r.system, problem, note=r.note) for r in runners}
    active: list[Runner] = []
    warm_cost = 0.0
    for runner in runners:
        try:
            start = time.perf_counter()
            for _ in range(warmup):
                out = _quiet_fit(runner)
            warm_cost += (time.perf_counter() - start) / max(warmup, 1)
        except Exception as err:  # a peer that fails must not stop the suite
            results[runner.system].error = f"{type(err).__name__}: {err}"
            log(f"  {runner.system}: failed: {err}\n{traceback.format_exc(limit=3)}")
            continue
        m = results[runner.system]
        m.w, m.iterations, m.evaluations = out
        active.append(runner)
    affordable = int(budget_s // max(warm_cost + pause * len(active), 1e-9))
    n_rounds = max(3, min(rounds, affordable)) if rounds >= 3 else rounds
    for index in range(n_rounds):
        order = active if index % 2 == 0 else active[::-1]
        for runner in order:
            time.sleep(pause)
            start = time.perf_counter()
            out = _quiet_fit(runner)
            results[runner.system].times.append(time.perf_counter() - start)
            m = results[runner.system]
            m.w, m.iterations, m.evaluations = out
    log(f"  {problem}: {n_rounds} rounds of {len(active)} systems")
    return [results[r.system] for r in runners]


def pin_threads(threads: int) -> tuple[Any, str]:
    """Limit every BLAS and OpenMP pool (numpy, scipy, torch, sklearn) to ``threads``.

    Returns the threadpoolctl controller (keep it alive) and a description. XLA's own
    thread pool is set at start-up (see ``bench.run``), not here.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    try:
        import torch

        torch.set_num_threads(threads)
        torch_threads = f"torch {torch.get_num_threads()}"
    except ImportError:  # pragma: no cover - torch is part of the test extras
        torch_threads = "torch not installed"
    limiter = threadpool_limits(limits=threads)
    pools = ", ".join(
        f"{info['internal_api']}:{info['prefix']}({os.path.basename(os.path.dirname(info['filepath']))})"
        f"={info['num_threads']}"
        for info in threadpool_info()
    )
    return limiter, f"{pools}; {torch_threads}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def machine_facts() -> list[str]:
    """Lines describing the machine, the date and the library versions."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    libraries = [
        "numpy",
        "scipy",
        "jax",
        "jaxlib",
        "optax",
        "torch",
        "scikit-learn",
        "threadpoolctl",
        "miniml-fit",
    ]
    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine: {_cpu_model()}, {os.cpu_count()} logical cores, {platform.platform()}",
        f"python: {sys.version.split()[0]}; load average at start: "
        + ", ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in load),
        "versions: " + ", ".join(f"{name} {_version(name)}" for name in libraries),
    ]
