"""Batched fitting and sharded fits, timed in one run: ``python -m bench.batched``.

Part 1, K (``--members``, default 1 000) independent ridge fits (n = 200, d = 10,
different data and ``reg_lambda``; objective ``||X w - y||^2 + lambda ||w||^2``):

* ``miniml.fit_batched`` with the compiled L-BFGS, all K in one call, on one device and
  with the members laid out over ``--member-devices`` host devices (default: one per
  core; ``jax_num_cpu_devices`` is set for this process, every other system runs on
  the first device as it would without it);
* a Python loop of ``model.fit`` (one model reused, so it compiles once), with the same
  compiled `LBFGS` settings, with the default optimizer (SciPy L-BFGS-B at its
  default tolerances, hence the larger error) and with SciPy L-BFGS-B at the batch's
  tolerances (``gtol=1e-10, ftol=0``: the same accuracy). Only ``--loop-subset`` fits
  (default 50) are timed and the time is **extrapolated** linearly to K;
* a Python loop of scikit-learn ``Ridge(alpha=lambda, fit_intercept=False)``, all K.

It also times one vmapped value and gradient of all K objectives in plain jax: times
the batch's lockstep evaluations with the data read from memory (groups of members
keep theirs in the caches, see `miniml._batched_run.GROUP_BYTES`).

Every system's solutions are checked against the numpy closed form.

Part 2, scaling of ``fit(..., devices=N)`` on P5 with n = 1e6 (``0.5 mean((Xw - y)^2)``,
d = 100, exactly 30 compiled L-BFGS iterations, see `bench.problems`) with N = 1, 2, 4
forced host devices; each N runs in its own process (``XLA_FLAGS=
--xla_force_host_platform_device_count=N``), since the device count is fixed when JAX
starts. The forced devices share this machine's cores, so this measures the overhead
and the parallelism XLA gets from partitioning, not extra hardware.

Protocol: BLAS/OpenMP threads pinned with threadpoolctl (`bench.timing.pin_threads`),
one warm-up call (compiles), then ``--rounds`` timed calls, medians reported; the systems
of part 1 alternate within each round, and their ratios to the batch are also reported
paired by round (the median of each round's ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N, D = 200, 10


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.batched", description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--members", type=int, default=1000, help="K, fits in part 1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop-subset", type=int, default=50)
    parser.add_argument("--member-devices", type=int, default=os.cpu_count() or 1,
                        help="host devices for fit_batched(devices=...) in part 1")  # fmt: skip
    parser.add_argument("--devices", default="1,2,4", help="device counts for part 2")
    parser.add_argument("--p5", default="P5-1e6", help="problem of part 2 (P5-1e4 to smoke)")
    parser.add_argument("--skip-sharded", action="store_true")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _median_time(fn: Any, rounds: int) -> tuple[float, Any]:
    out = fn()  # warm-up: compiles
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _interleaved_times(fns: list[Any], rounds: int) -> tuple[list[list[float]], list[Any]]:
    """Each round's time of each of ``fns``, measured in alternation (one call of each
    per round, after one warm-up call of each), so that the machine's slow and fast
    minutes fall on every system alike; and each function's last output."""
    outputs = [fn() for fn in fns]  # warm-up: compiles
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outputs[i] = fn()
            times[i].append(time.perf_counter() - start)
    return times, outputs


def ridge_data(K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(K, N, D))
    y = X @ rng.normal(size=(K, D, 1)) + 0.1 * rng.normal(size=(K, N, 1))
    return X, y, 10 ** rng.uniform(-2, 2, size=K)


def batched_part(args: argparse.Namespace) -> list[str]:
    import miniml
    from bench.timing import paired_median
    from miniml.optim import LBFGS, ScipyOptimizer

    class Ridge(miniml.MiniMLModel):
        def __init__(self) -> None:
            from miniml.loss import LNormRegularization

            self.w = miniml.MiniMLParam((D, 1), reg_loss=LNormRegularization(2))
            super().__init__()

        def _predict_kernel(self, X: Any, buffer: Any) -> Any:
            return X @ self.w(buffer)

    K = args.members
    X, y, lambdas = ridge_data(K)
    eye = np.eye(D)
    exact = np.stack([np.linalg.solve(X[k].T @ X[k] + lambdas[k] * eye, X[k].T @ y[k]).ravel()
                      for k in range(K)])  # fmt: skip
    model = Ridge()
    model.bind()
    tight = LBFGS(gtol=1e-10, ftol=0.0)

    def batched(devices: int | None = None) -> Any:
        # From zeros, as every loop fit (the loops leave the model at their last fit).
        return miniml.fit_batched(model, X, y, reg_lambda=lambdas, optimizer=tight,
                                  x0=np.zeros(D), devices=devices)  # fmt: skip

    member_devices = args.member_devices if args.member_devices > 1 else None

    subset = min(args.loop_subset, K)

    def loop(optimizer: Any) -> Any:
        def run() -> np.ndarray:
            out = []
            for k in range(subset):
                model.set_buffer(np.zeros(D))
                model.fit(X[k], y[k], reg_lambda=float(lambdas[k]), optimizer=optimizer)
                out.append(np.asarray(model.get_buffer()))
            return np.stack(out)

        return run

    def sklearn_loop() -> np.ndarray:
        from sklearn.linear_model import Ridge as SkRidge

        return np.stack([SkRidge(alpha=float(lambdas[k]), fit_intercept=False)
                         .fit(X[k], y[k].ravel()).coef_ for k in range(K)])  # fmt: skip

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy may stop "ABNORMAL" at round-off level
        tight_scipy = ScipyOptimizer(options={"gtol": 1e-10, "ftol": 0.0})
        systems = [batched, loop(LBFGS(gtol=1e-10, ftol=0.0)), loop(ScipyOptimizer()),
                   loop(tight_scipy), sklearn_loop]  # fmt: skip
        if member_devices:
            systems.insert(1, lambda: batched(member_devices))
        per_round, outputs = _interleaved_times(systems, args.rounds)
    scale = K / subset
    scales = [1.0, scale, scale, scale, 1.0]  # the loops of model.fit time `subset` fits
    if member_devices:
        scales.insert(1, 1.0)
    times = [statistics.median(t) * s for t, s in zip(per_round, scales, strict=True)]
    t_batch, t_lbfgs, t_scipy, t_tight, t_sk = times[0], *times[-4:]
    paired = [paired_median([t * s for t in times], per_round[0])
              for times, s in zip(per_round, scales, strict=True)]  # fmt: skip
    result, w_lbfgs, w_scipy, w_tight, w_sk = outputs[0], *outputs[-4:]

    def error(w: np.ndarray) -> float:
        ref = exact[: len(w)]
        return float(np.max(np.linalg.norm(w - ref, axis=1) / np.linalg.norm(ref, axis=1)))

    table = [
        ("MiniML fit_batched (LBFGS, one call)", t_batch, "measured", error(result.x_opt)),
        *([(f"MiniML fit_batched, devices={member_devices} (host devices)", times[1],
            "measured", error(outputs[1].x_opt))] if member_devices else []),
        (f"MiniML loop of model.fit, LBFGS ({subset} timed)", t_lbfgs,
         f"extrapolated x{scale:g}", error(w_lbfgs)),
        (f"MiniML loop of model.fit, default SciPy ({subset} timed)", t_scipy,
         f"extrapolated x{scale:g}", error(w_scipy)),
        (f"MiniML loop of model.fit, SciPy gtol=1e-10 ({subset} timed)", t_tight,
         f"extrapolated x{scale:g}", error(w_tight)),
        (f"scikit-learn Ridge loop ({K} fits)", t_sk, "measured", error(w_sk)),
    ]  # fmt: skip
    rows.append(f"Part 1: {K} ridge fits, n={N}, d={D}; medians of {args.rounds} rounds")
    rows.append(f"{'system':58s} {f'time for {K} (s)':>18s} {'vs batched':>11s} "
                f"{'paired':>7s}  {'how':18s} {'max rel. error':>14s}")  # fmt: skip
    for (label, seconds, how, err), ratio in zip(table, paired, strict=True):
        rows.append(f"{label:58s} {seconds:18.3f} {seconds / t_batch:10.1f}x {ratio:6.1f}x  "
                    f"{how:18s} {err:14.2e}")  # fmt: skip
    rows.append(
        "vs batched: ratio of the medians; paired: median over rounds of each round's "
        "ratio to that round's batch"
    )
    if member_devices:
        loops = zip(("LBFGS loop", "default SciPy loop", "tight SciPy loop",
                     "scikit-learn loop"), times[-4:], per_round[-4:], scales[-4:],
                    strict=True)  # fmt: skip
        rows.append(f"vs fit_batched(devices={member_devices}): " + ", ".join(
            f"{label} {seconds / times[1]:.1f}x (paired "
            f"{paired_median([t * s for t in round_times], per_round[1]):.1f}x)"
            for label, seconds, round_times, s in loops))  # fmt: skip
    rows.append(f"Lockstep cost: {result.groups} group(s) of members, one after the other; "
                f"at most {result.lockstep_evaluations} batched evaluations of a group in "
                f"{int(result.n_iterations.max())} iterations; per member at most "
                f"{int(result.n_function_evaluations.max())} evaluations "
                f"(mean {result.n_function_evaluations.mean():.1f})")  # fmt: skip
    t_eval = _batched_evaluation_time(X, y, lambdas, args.rounds)
    needed = int(result.n_function_evaluations.max())
    rows.append(f"Evaluation cost: one value-and-gradient of all {K} objectives (plain jax, "
                f"vmapped, data read from memory) takes {t_eval * 1e3:.2f} ms; "
                f"{result.lockstep_evaluations} take {result.lockstep_evaluations * t_eval:.3f} s, "
                f"and the {needed} the neediest member makes alone "
                f"{needed * t_eval:.3f} s (a group's data stays in the caches: less)")  # fmt: skip
    return rows


def _batched_evaluation_time(X: Any, y: Any, lambdas: Any, rounds: int) -> float:
    """Median time of one vmapped value and gradient of the K ridge objectives."""
    import jax
    import jax.numpy as jnp

    def ridge(w: Any, X: Any, y: Any, lam: Any) -> Any:
        residual = X @ w - y[:, 0]
        return residual @ residual + lam * (w @ w)

    evaluate = jax.jit(jax.vmap(jax.value_and_grad(ridge)))
    w = jnp.zeros((len(X), X.shape[2]))  # one start per member
    args = jax.device_put((w, X, y, lambdas))
    seconds, _ = _median_time(lambda: jax.block_until_ready(evaluate(*args)), 10 * rounds)
    return seconds


def sharded_worker(n_devices: int, problem: str, rounds: int) -> None:
    """One device count (this process was started with the forced device count)."""
    import jax

    from bench.miniml_systems import model_for
    from bench.problems import build, numpy_value_and_grad
    from miniml.optim import LBFGS

    assert len(jax.devices()) == n_devices, jax.devices()
    spec = build(problem)
    model, reg_lambda = model_for(spec)
    model.bind()
    optimizer = LBFGS(maxiter=spec.maxiter, gtol=spec.gtol, ftol=spec.ftol)

    def fit() -> Any:
        model.set_buffer(spec.w0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stops at maxiter on purpose
            return model.fit(spec.X, spec.y, reg_lambda=reg_lambda, optimizer=optimizer,
                             devices=n_devices)  # fmt: skip

    seconds, result = _median_time(fit, rounds)
    value, _ = numpy_value_and_grad(spec, np.asarray(model.get_buffer()))
    print(json.dumps({"devices": n_devices, "seconds": seconds,
                      "iterations": result.n_iterations, "objective": value}))  # fmt: skip


def sharded_part(args: argparse.Namespace) -> list[str]:
    rows = [f"Part 2: fit(..., devices=N) on {args.p5} (d=100, exactly 30 LBFGS iterations), "
            f"each N in its own process; medians of {args.rounds} rounds"]  # fmt: skip
    rows.append(f"{'devices':>7s} {'time (s)':>9s} {'speed-up':>9s} {'iterations':>10s} "
                f"{'objective (numpy)':>20s}")  # fmt: skip
    base = None
    for n_devices in [int(n) for n in args.devices.split(",")]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIML_")}
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n_devices}".strip()
        command = [sys.executable, "-m", "bench.batched", "--worker", str(n_devices),
                   "--p5", args.p5, "--rounds", str(args.rounds),
                   "--threads", str(args.threads)]  # fmt: skip
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            rows.append(f"{n_devices:7d} failed: {done.stderr.strip()[-500:]}")
            continue
        out = json.loads(done.stdout.strip().splitlines()[-1])
        base = base or out["seconds"]
        rows.append(f"{n_devices:7d} {out['seconds']:9.3f} {base / out['seconds']:8.2f}x "
                    f"{out['iterations']:10d} {out['objective']:20.12e}")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    if args.worker is None and args.member_devices > 1:
        import jax

        jax.config.update("jax_num_cpu_devices", args.member_devices)  # before jax starts
    from bench.timing import machine_facts, pin_threads

    _limiter, pools = pin_threads(args.threads)
    if args.worker is not None:
        sharded_worker(args.worker, args.p5, args.rounds)
        return
    lines = [*machine_facts(), f"threads pinned: {pools}", ""]
    lines += batched_part(args)
    if not args.skip_sharded:
        lines += ["", *sharded_part(args)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
