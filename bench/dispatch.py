"""Synchronous CPU dispatch against JAX's default: ``python -m bench.dispatch``.

``MINIML_CPU_SYNC_DISPATCH=1`` makes `miniml` turn off JAX's asynchronous CPU dispatch
(see `miniml._config`). The setting is process-wide and fixed when JAX starts its CPU
backend, so the two settings cannot share a process: each runs in its own fresh
processes, alternating (default, synchronous, default, ...), ``--pairs`` times. Every
process times MiniML's two paths and hand-written SciPy + ``jax.jit`` on P1 and P2
with the suite's protocol (`bench.timing.measure`: warm-up, alternating rounds,
medians). Reported per problem and system: the median over processes of each
process's median time, and the ratio synchronous / default (below 1: synchronous
dispatch is faster). BLAS/OpenMP threads are pinned with threadpoolctl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"default (async)": "0", "synchronous": "1"}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__)
    parser.add_argument("--pairs", type=int, default=3, help="processes per setting")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pause", type=float, default=0.1)
    parser.add_argument("--problems", default="P1,P2")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tiny", action="store_true", help="toy sizes (smoke test)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _worker(args: argparse.Namespace) -> None:
    from bench.jax_systems import scipy_jit
    from bench.miniml_systems import miniml_runners
    from bench.problems import build
    from bench.timing import measure, pin_threads

    _limiter, _ = pin_threads(args.threads)
    medians: dict[str, dict[str, float | None]] = {}
    for problem in args.problems.split(","):
        spec = build(problem, tiny=args.tiny)
        runners = [*miniml_runners(spec), scipy_jit(spec)]
        rows = measure(problem, runners, 2, args.rounds, args.pause, 60.0, lambda _: None)
        medians[problem] = {m.system: m.median for m in rows}
    json.dump(medians, sys.stdout)


def _run_worker(args: argparse.Namespace, sync: str) -> dict[str, Any]:
    env = dict(os.environ, MINIML_CPU_SYNC_DISPATCH=sync)
    command = [sys.executable, "-m", "bench.dispatch", "--worker", "--rounds", str(args.rounds),
               "--pause", str(args.pause), "--problems", args.problems,
               "--threads", str(args.threads)] + (["--tiny"] if args.tiny else [])  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True, timeout=900)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """Print the table; returns ``{problem: {system: (default s, synchronous s)}}``."""
    args = _arguments(argv)
    if args.worker:
        _worker(args)
        return {}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in SETTINGS}
    for _ in range(args.pairs):
        for label, flag in SETTINGS.items():
            runs[label].append(_run_worker(args, flag))
    table: dict[str, dict[str, tuple[float, float]]] = {}
    print(f"CPU dispatch, {args.pairs} fresh processes per setting, alternating; "
          f"threads pinned to {args.threads}; medians of per-process medians")  # fmt: skip
    print(f"{'problem':8s} {'system':26s} {'default':>10s} {'sync':>10s} {'sync/default':>13s}")
    for problem in args.problems.split(","):
        table[problem] = {}
        for system in runs["default (async)"][0][problem]:
            default, sync = (
                statistics.median(run[problem][system] for run in runs[label]) for label in SETTINGS
            )
            table[problem][system] = (default, sync)
            print(f"{problem:8s} {system:26s} {default * 1e3:8.3f}ms {sync * 1e3:8.3f}ms "
                  f"{sync / default:12.2f}x")  # fmt: skip
    return table


if __name__ == "__main__":
    main()
