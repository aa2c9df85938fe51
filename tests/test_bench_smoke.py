"""The benchmark suite (`bench/`, ``make bench``) still runs: toy sizes, one round.

It checks that every system produces a row and that the tables are printed; it does not
look at times (tests never time things). The ``miniml-jax`` peer, which needs its own
environment, and the mini-batch P4b script are left out.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("torch", "sklearn", "optax")),
    reason="the benchmark's peers (torch, scikit-learn, optax) are not installed",
)


def _run(*arguments: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MINIML_COMPILATION_CACHE"}
    return subprocess.run(
        [sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_suite_runs_on_a_tiny_problem(tmp_path):
    results = tmp_path / "bench.json"
    done = _run(
        "-m",
        "bench.run",
        "--tiny",
        "--problems",
        "P5-1e4",
        "--no-peer",
        "--no-cold",
        "--no-p4b",
        "--rounds",
        "1",
        "--warmup",
        "1",
        "--pause",
        "0",
        "--back-to-back",
        "P5-1e4",
        "--json",
        str(results),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for heading in ("Warm fits", "Ratios MiniML / peer", "Targets:", "versions: ", "threads"):
        assert heading in out
    assert "compiled LBFGS <= 1.1x optax loop: P5-1e4" in out and "x (paired " in out
    assert "The same ratios back to back" in out
    assert "MiniML compiled LBFGS / optax" in out.split("back to back (no pause")[1]
    payload = json.loads(results.read_text())
    timed_again = {row["system"] for row in payload["back_to_back"] if row["times"]}
    assert timed_again == {
        "MiniML ScipyOptimizer",
        "MiniML LBFGS (compiled)",
        "scipy + jax.jit",
        "optax loop (1 jit)",
    }
    warm = payload["warm"]
    systems = {(row["problem"], row["system"]) for row in warm if row["times"]}
    expected = {
        "MiniML ScipyOptimizer",
        "MiniML LBFGS (compiled)",
        "scipy + jax.jit",
        "scipy + numpy",
        "scikit-learn",
        "torch LBFGS",
        "optax loop (1 jit)",
    }
    assert {("P5-1e4", s) for s in expected} | {("P5-1e4", "bandwidth floor")} <= systems
    assert not [row for row in warm if row["error"]]
    row = {row["system"]: row for row in warm}
    # 30 iterations of the same algorithm on the same objective: the same end point.
    scipy_runs = ("MiniML ScipyOptimizer", "scipy + jax.jit", "scipy + numpy")
    for system in scipy_runs:
        assert row[system]["iterations"] == 30
        assert row[system]["objective"] == pytest.approx(
            row["scipy + numpy"]["objective"], rel=1e-9
        )
    assert row["MiniML LBFGS (compiled)"]["iterations"] == 30
    assert row["MiniML LBFGS (compiled)"]["objective"] == pytest.approx(
        row["optax loop (1 jit)"]["objective"], rel=1e-9
    )


def test_paired_ratio_is_the_median_of_same_round_ratios():
    from bench.report import paired_ratio
    from bench.timing import Measurement

    # Same-round ratios 1.5, 1.5 and 4.5 / 7.0; the ratio of medians, 4.5 / 4.0, mixes
    # rounds.
    mine = Measurement("MiniML LBFGS (compiled)", "P1", times=[1.5, 6.0, 4.5])
    optax = Measurement("optax loop (1 jit)", "P1", times=[1.0, 4.0, 7.0])
    short = Measurement("scipy + jax.jit", "P1", times=[1.0, 2.0])
    peer = Measurement("miniml-jax 0.11.0", "P1", times=[1.0, 20.0, 2.0])
    results = {"P1": [mine, optax, short, peer]}
    assert paired_ratio(results, "P1", mine.system, optax.system) == pytest.approx(1.5)
    assert paired_ratio(results, "P1", mine.system, short.system) is None  # unequal rounds
    assert paired_ratio(results, "P1", mine.system, peer.system) is None  # own process


def test_back_to_back_table_sets_both_protocols_side_by_side():
    from bench.report import back_to_back_table
    from bench.timing import Measurement

    def pair(mine_times, optax_times):
        return [
            Measurement("MiniML LBFGS (compiled)", "P2", times=mine_times),
            Measurement("optax loop (1 jit)", "P2", times=optax_times),
        ]

    paused = {"P2": pair([0.003, 0.002, 0.004], [0.002, 0.001, 0.002])}
    back = {"P2": pair([0.0011, 0.0012, 0.0013], [0.001, 0.001, 0.001])}
    lines = back_to_back_table(paused, back)
    row = next(line for line in lines if "compiled LBFGS / optax" in line)
    cells = row.split()
    # Paused: medians 3 ms / 2 ms = 1.50x; same-round ratios 1.5, 2, 2 -> 2.00x.
    # Back to back: 1.2 ms / 1.0 ms = 1.20x; same-round ratios 1.1, 1.2, 1.3 -> 1.20x.
    assert cells[cells.index("optax") + 1 :] == [
        "3.00", "ms", "/", "2.00", "ms", "1.50x", "(2.00x)",
        "1.20", "ms", "/", "1.00", "ms", "1.20x", "(1.20x)",
    ]  # fmt: skip
    assert not [line for line in lines if "scipy path" in line]  # not timed: no row


def test_xla_gemv_probe_checks_its_gradients_against_numpy():
    done = _run("-m", "bench.xla_gemv", "--tiny", "--rounds", "1", "--pause", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    # The script exits with an error when any of its three XLA gradients differs from
    # numpy's X.T @ r / n by more than 1e-12 relative.
    assert "gradients agree: max relative gap" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(rows) == 9 and all(line.endswith("x numpy v+g") for line in rows)


def test_cold_start_case_reports_figures():
    done = _run("-m", "bench.cold", "scipy + numpy", "--tiny")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert set(figures) == {"import_s", "first_fit_s", "second_fit_s"}


def test_cold_rows_report_medians_of_fresh_processes_taking_turns(monkeypatch):
    import bench.cold
    from bench.report import cold_table

    calls = []
    first_fits = iter([0.9, 0.2, 0.3] * 20)

    def scripted_run(case, tiny, env):
        calls.append((case, "MINIML_COMPILATION_CACHE" in env))
        if case == "scipy + numpy" and len(calls) < 8:
            return {"error": "RuntimeError: boom"}
        return {"import_s": len(calls), "first_fit_s": next(first_fits), "second_fit_s": 0.001}

    monkeypatch.setattr(bench.cold, "_run", scripted_run)
    rows = dict(bench.cold.cold_rows(tiny=True, pause=0.0, repeats=3))
    uncached = [case for case, cached in calls if not cached]
    assert uncached[:5] == list(bench.cold.CASES)  # one process of each case per round
    assert len(uncached) == 3 * len(bench.cold.CASES)
    scipy_path = rows["MiniML ScipyOptimizer"]
    runs = scipy_path["first_fit_runs"]
    assert len(runs) == 3 and scipy_path["first_fit_s"] == sorted(runs)[1]
    assert rows["scipy + numpy"]["failed_runs"] == 1  # the first round's process failed
    assert len(rows["scipy + numpy"]["first_fit_runs"]) == 2
    assert len(rows["MiniML LBFGS (compiled), 2nd process (disk cache)"]["first_fit_runs"]) == 3
    table = "\n".join(cold_table(list(rows.items())))
    assert "(1 failed)" in table


def test_dispatch_comparison_runs_both_settings():
    done = _run(
        *[
            "-m",
            "bench.dispatch",
            "--tiny",
            "--pairs",
            "1",
            "--rounds",
            "1",
            "--pause",
            "0",
            "--problems",
            "P2",
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("P2 ")]
    assert [row[1] for row in rows] == ["MiniML", "MiniML", "scipy"]
    assert all(row[-1].endswith("x") and float(row[-1][:-1]) > 0 for row in rows)


def test_batched_benchmark_runs_both_parts():
    args = "--members 5 --loop-subset 2 --rounds 1 --member-devices 2 --p5 P5-1e4 --devices 2"
    done = _run("-m", "bench.batched", *args.split())
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    systems = [line for line in lines if line.startswith(("MiniML", "scikit-learn"))]
    assert len(systems) == 6
    assert systems[1].startswith("MiniML fit_batched, devices=2")
    errors = [float(line.split()[-1]) for line in systems]
    assert max(errors) < 1e-5  # every system reaches the closed-form solutions
    assert any(line.startswith("Evaluation cost:") for line in lines)
    assert any(line.startswith("Lockstep cost: 1 group(s)") for line in lines)
    [versus] = [line for line in lines if line.startswith("vs fit_batched(devices=2): ")]
    assert versus.count("x (paired ") == 4
    # Part 2 (its results are checked by tests/test_distributed.py): a row for 2 devices.
    [sharded] = [line.split() for line in lines if line.split()[:1] == ["2"]]
    assert sharded[3] == "30"  # iterations: P5 stops at exactly 30
