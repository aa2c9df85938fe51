"""MiniML's benchmark suite: MiniML and its peers side by side, in one run.

``make bench`` (or ``.venv/bin/python -m bench.run``) fits problems P1–P5 of
``BENCHMARKS.md`` with MiniML (`ScipyOptimizer` and the compiled `LBFGS`) and with
hand-written SciPy + ``jax.jit``, SciPy + numpy gradients, scikit-learn, torch, the
hand-written optax loop and the public ``miniml-jax`` package (own environment and
process), and prints times, iterations, final objectives (all recomputed with numpy)
and the ratios MiniML / peer. See `bench.timing` for the protocol.

Options: ``--quick`` (fewer rounds, no n = 1e6), ``--tiny`` (toy sizes, for the smoke
test), ``--problems P1,P3``, ``--threads N`` (BLAS/OpenMP/torch threads, and XLA's when
N = 1; default: all cores), ``--no-peer``, ``--no-cold``, ``--no-p4b``, ``--no-gemv``
(`bench.xla_gemv`, XLA's least-squares gradient at the P5 sizes run), ``--json PATH``,
``--back-to-back P1,P2`` (problems timed a second time without the pause, see below).

The verdicts use the protocol of `bench.timing`, with a pause before every fit. On the
millisecond problems (P1, P2) a MiniML fit's fixed host-side work (input checks,
history, result) is a large share of the time, and after a pause it runs with cold CPU
caches; so those problems are also timed back to back (the four systems of the two
targets, still alternating), to show how much of each ratio depends on the pause.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, skip P5 n=1e6")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (smoke test)")
    parser.add_argument("--problems", default=None, help="comma-separated, e.g. P1,P5-1e5")
    parser.add_argument("--rounds", type=int, default=None, help="counted rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up fits (default 2)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per problem")
    # 0.25 s: after 0.05 s the spinning BLAS/XLA threads of the previous fit still slowed
    # the next one (P3: MiniML's compiled LBFGS, which follows SciPy fits in the
    # alternating order, measured 1.6x the optax loop with 0.05 s and 0.98x with 0.25 s).
    parser.add_argument("--pause", type=float, default=0.25, help="seconds before each fit")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-peer", action="store_true", help="skip miniml-jax")
    parser.add_argument("--no-cold", action="store_true", help="skip fresh-process runs")
    parser.add_argument("--no-p4b", action="store_true", help="skip bench/p4b_adam.py")
    parser.add_argument("--no-gemv", action="store_true", help="skip bench/xla_gemv.py")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--back-to-back",
        default="P1,P2",
        help="problems also timed without a pause (comma-separated; '' for none)",
    )
    args = parser.parse_args(argv)
    quick = args.quick or args.tiny
    args.rounds = args.rounds or (3 if quick else 15)
    args.warmup = args.warmup or (1 if quick else 2)
    args.budget = args.budget or (20.0 if quick else 120.0)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    if args.threads == 1:  # XLA's pool is fixed at start-up: make it single-threaded too
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    import numpy as np

    import miniml  # noqa: F401  (64-bit JAX before the peers build arrays)
    from bench import report
    from bench.cold import cold_rows
    from bench.jax_systems import optax_loop, scipy_jit
    from bench.miniml_systems import miniml_runners
    from bench.other_systems import bandwidth_floor, scipy_numpy, sklearn_runner, torch_runner
    from bench.peer import ensure_peer_python, run_peer
    from bench.problems import build, numpy_value_and_grad, problem_ids
    from bench.timing import Measurement, machine_facts, measure, pin_threads

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    began = time.perf_counter()
    facts = machine_facts()
    _limiter, pools = pin_threads(args.threads)
    xla = "XLA: 1 thread" if args.threads == 1 else f"XLA: default pool ({os.cpu_count()} cores)"
    facts.append(f"threads pinned: {pools}; {xla}")
    facts.append(
        f"protocol: {args.warmup} warm-up fits, up to {args.rounds} counted rounds "
        f"(alternating order, {args.pause:.2f} s pause before each fit, "
        f"{args.budget:.0f} s per problem), medians"
    )
    peer_python, peer_status = None, "skipped (--no-peer)"
    if not args.no_peer:
        peer_python, peer_status = ensure_peer_python(log)
    facts.append(f"miniml-jax peer: {peer_status}")
    for line in facts:
        log(line)

    results: dict[str, list[Measurement]] = {}
    references: dict[str, float] = {}
    back_to_back: dict[str, list[Measurement]] = {}
    back_to_back_ids = {p for p in args.back_to_back.split(",") if p}
    notes: list[str] = []
    for problem in problem_ids(args.problems, args.quick):
        log(f"{problem}: building data")
        spec = build(problem, tiny=args.tiny)
        runners = miniml_runners(spec)
        runners += [
            scipy_jit(spec),
            scipy_numpy(spec),
            sklearn_runner(spec),
            torch_runner(spec),
            optax_loop(spec),
        ]
        if spec.kind == "ls_half_mean":
            with warnings.catch_warnings():  # stops at its iteration limit on purpose
                warnings.simplefilter("ignore")
                _, _, evaluations = runners[1].fit()  # compiled LBFGS: counts evaluations
            runners.append(bandwidth_floor(spec, int(evaluations or spec.maxiter)))
        measured = measure(problem, runners, args.warmup, args.rounds, args.pause, args.budget, log)
        if problem in back_to_back_ids:
            paired = [r for r in runners if r.system in report.BACK_TO_BACK_SYSTEMS]
            back_to_back[problem] = measure(problem, paired, 1, args.rounds, 0.0, args.budget, log)
        if peer_python is not None:
            peer = Measurement("miniml-jax 0.11.0", problem, note="recompiles every fit")
            data, error = run_peer(
                peer_python,
                [
                    "--problems",
                    problem,
                    "--rounds",
                    str(args.rounds),
                    "--warmup",
                    "1",
                    "--pause",
                    str(args.pause),
                    "--budget",
                    str(args.budget),
                    "--threads",
                    str(args.threads),
                    *(["--tiny"] if args.tiny else []),
                ],
                timeout=max(600.0, 6 * args.budget),
            )
            if data:
                entry = data[0]
                peer.times, peer.iterations = entry["times"], entry["iterations"]
                peer.evaluations, peer.error = entry["evaluations"], entry["error"]
                peer.w = None if entry["w"] is None else np.asarray(entry["w"])
            else:
                peer.error = error
            measured.append(peer)
        for m in measured:
            if m.w is not None and m.system != "bandwidth floor":
                m.objective = numpy_value_and_grad(spec, np.asarray(m.w, np.float64))[0]
        found = [m.objective for m in measured if m.objective is not None]
        if spec.reference is not None:
            references[problem] = spec.reference
        elif problem == "P3" and found:
            references[problem] = min(found)
            notes.append(
                "P3 has no published optimum: its reference is the best objective "
                "found by any system in this run."
            )
        results[problem] = measured
        del spec, runners

    cold: list[tuple[str, dict[str, Any]]] = []
    if not args.no_cold:
        log("cold start: fresh processes")
        cold = cold_rows(args.tiny, pause=0.5)
        if peer_python is not None:
            data, error = run_peer(
                peer_python,
                ["--cold", "--threads", str(args.threads), *(["--tiny"] if args.tiny else [])],
                600,
            )
            cold.append(("miniml-jax 0.11.0", data if data else {"error": error}))
    p4b_lines = _p4b(args, log)
    gemv_lines = _xla_gemv(args, log, list(results))

    out = [f"MiniML benchmark suite ({'quick' if args.quick else 'full'} run)", *facts, ""]
    out += ["Warm fits (median of the counted fits):", *report.warm_table(results), ""]
    out += [
        "Ratios MiniML / peer (warm medians; below 1 means MiniML is faster):",
        *report.ratio_table(results),
        "",
    ]
    if cold:
        out += [
            "Cold start (P1, medians of fresh processes; compile included in the first fit):",
            *report.cold_table(cold),
            "",
        ]
    out += ["Targets:", *report.target_lines(results, cold, references), ""]
    if back_to_back:
        out += [
            "The same ratios back to back (no pause; not the targets' protocol):",
            *report.back_to_back_table(results, back_to_back),
            "",
        ]
    if p4b_lines:
        out += ["P4b (bench/p4b_adam.py, mini-batch Adam):", *p4b_lines, ""]
    if gemv_lines:
        out += [
            "Least-squares value and gradient, numpy and XLA (bench/xla_gemv.py; the floor "
            "is numpy's):",
            *gemv_lines,
            "",
        ]
    out += [
        "Notes:",
        *notes,
        "sklearn solves P1/P5 by a direct least-squares solve and P2 by Ridge; its times "
        "are not 30-iteration L-BFGS runs.",
        "torch LBFGS stops on an absolute change of 1e-9 (its tolerance_change) where "
        "SciPy-style solvers use ftol relative.",
        f"total wall time {time.perf_counter() - began:.0f} s; load average at end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]
    print("\n".join(out), flush=True)
    if args.json:
        _write_json(Path(args.json), facts, results, cold, references, back_to_back)


def _p4b(args: argparse.Namespace, log: Any) -> list[str]:
    script = Path(__file__).resolve().parent / "p4b_adam.py"
    if args.no_p4b or args.tiny or not script.exists():
        return []
    log("P4b: bench/p4b_adam.py")
    repeats = "5" if args.quick else "15"
    return _output_lines([sys.executable, str(script), "--repeats", repeats], timeout=900)


def _xla_gemv(args: argparse.Namespace, log: Any, problems: list[str]) -> list[str]:
    sizes = [p.removeprefix("P5-") for p in problems if p in ("P5-1e5", "P5-1e6")]
    if args.no_gemv or args.tiny or not sizes:
        return []
    log("XLA's gradient kernel: bench/xla_gemv.py")
    command = [sys.executable, "-m", "bench.xla_gemv", "--sizes", ",".join(sizes)]
    return _output_lines([*command, "--threads", str(args.threads)], timeout=600)


def _output_lines(command: list[str], timeout: float) -> list[str]:
    """A helper script's output, indented, or why it gave none."""
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=root)
    except subprocess.TimeoutExpired:
        return [f"  timed out after {timeout:.0f} s"]
    if done.returncode != 0:
        return ["  failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]]
    return ["  " + line for line in done.stdout.strip().splitlines()]


def _write_json(
    path: Path,
    facts: list[str],
    results: dict[str, list[Any]],
    cold: list[tuple[str, dict[str, Any]]],
    references: dict[str, float],
    back_to_back: dict[str, list[Any]],
) -> None:
    import json

    def rows(measured_by_problem: dict[str, list[Any]]) -> list[dict[str, Any]]:
        return [
            {
                "problem": m.problem,
                "system": m.system,
                "times": m.times,
                "median": m.median,
                "iterations": m.iterations,
                "evaluations": m.evaluations,
                "objective": m.objective,
                "note": m.note,
                "error": m.error,
            }
            for measured in measured_by_problem.values()
            for m in measured
        ]

    payload = {
        "facts": facts,
        "references": references,
        "cold": [{"case": name, **figures} for name, figures in cold],
        "warm": rows(results),
        "back_to_back": rows(back_to_back),
    }
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
