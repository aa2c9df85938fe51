"""Peak memory of a full-batch L-BFGS fit with and without chunked evaluation.

``python -m bench.memory`` fits an MLP (20-64-64-1, tanh, sum of squares) to
n = 1e6 samples with SciPy's L-BFGS-B for a few iterations, once unchunked and once
per ``chunk_size``, each in a fresh process, and prints the process's peak resident
memory (``ru_maxrss``), the part of it above the data and the model (measured just
before the fit), the fit time and the final objective (equal in every row: chunking is
exact). Options: ``--n``, ``--iterations``, ``--chunks 100000,10000``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

_CHILD = "--child"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(n: int, iterations: int, chunk_size: int | None) -> dict[str, float | None]:
    import warnings

    import numpy as np

    import miniml
    from miniml.nn import MLP, tanh
    from miniml.optim import ScipyOptimizer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 20))
    y = np.sin(X[:, :1]) + 0.1 * rng.standard_normal((n, 1))
    model = MLP([20, 64, 64, 1], activation=tanh)
    model.randomize(seed=0)
    before = _peak_mib()
    began = time.perf_counter()
    with warnings.catch_warnings():  # a few iterations on purpose: not converged
        warnings.simplefilter("ignore", miniml.errors.ConvergenceWarning)
        result = model.fit(
            X, y, optimizer=ScipyOptimizer("L-BFGS-B", options={"maxiter": iterations}),
            chunk_size=chunk_size,
        )  # fmt: skip
    seconds = time.perf_counter() - began
    return {
        "chunk_size": chunk_size,
        "peak_mib": _peak_mib(),
        "before_fit_mib": before,
        "seconds": seconds,
        "loss": float(result.loss),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--chunks", default="100000,10000")
    parser.add_argument(_CHILD, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        chunk = None if args.child == "none" else int(args.child)
        print(json.dumps(_child(args.n, args.iterations, chunk)))
        return
    settings = ["none", *args.chunks.split(",")]
    print(f"MLP 20-64-64-1 (tanh), n = {args.n:.0e}, float64, L-BFGS-B {args.iterations} "
          "iterations; each row a fresh process")  # fmt: skip
    print(f"{'chunk_size':>10} {'peak MiB':>9} {'fit MiB':>8} {'seconds':>8} {'loss':>22}")
    for setting in settings:
        command = [sys.executable, "-m", "bench.memory", "--n", str(args.n),
                   "--iterations", str(args.iterations), _CHILD, setting]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
        if done.returncode != 0:
            print(f"{setting:>10} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        label = "none" if row["chunk_size"] is None else str(row["chunk_size"])
        extra = row["peak_mib"] - row["before_fit_mib"]
        print(f"{label:>10} {row['peak_mib']:9.0f} {extra:8.0f} {row['seconds']:8.2f} "
              f"{row['loss']:22.15g}")  # fmt: skip


if __name__ == "__main__":
    main()
