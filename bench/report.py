"""Tables of the benchmark suite: warm fits, ratios MiniML / peer, targets, cold start."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.timing import Measurement, paired_median

__all__ = [
    "BACK_TO_BACK_SYSTEMS",
    "MINIML_ROWS",
    "PEERS",
    "back_to_back_table",
    "cold_table",
    "paired_ratio",
    "ratio_table",
    "target_lines",
    "warm_table",
]

MINIML_ROWS = ("MiniML ScipyOptimizer", "MiniML LBFGS (compiled)")
PEERS = (
    "scipy + jax.jit",
    "scipy + numpy",
    "scikit-learn",
    "torch LBFGS",
    "optax loop (1 jit)",
    "miniml-jax 0.11.0",
    "bandwidth floor",
)
SHORT = {
    "scipy + jax.jit": "scipy+jit",
    "scipy + numpy": "scipy+np",
    "scikit-learn": "sklearn",
    "torch LBFGS": "torch",
    "optax loop (1 jit)": "optax",
    "miniml-jax 0.11.0": "miniml-jax",
    "bandwidth floor": "floor",
    "MiniML ScipyOptimizer": "MiniML scipy path",
    "MiniML LBFGS (compiled)": "MiniML compiled LBFGS",
}


TARGET_PEERS = {MINIML_ROWS[0]: "scipy + jax.jit", MINIML_ROWS[1]: "optax loop (1 jit)"}
"""Each MiniML path's peer in the speed targets."""
BACK_TO_BACK_SYSTEMS = (*MINIML_ROWS, *TARGET_PEERS.values())
"""The systems `bench.run` times a second time without a pause."""


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.3f} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def warm_table(results: dict[str, list[Measurement]]) -> list[str]:
    """One row per (problem, system): median, spread, counts, objective."""
    rows = []
    for problem, measurements in results.items():
        finite = [m.objective for m in measurements if m.objective is not None]
        best = min(finite) if finite else None
        for m in measurements:
            if m.error:
                rows.append([problem, m.system, "failed", "", "", "", "", "", m.error[:70]])
                continue
            if not m.times:
                continue
            spread = f"{_fmt_time(min(m.times))}..{_fmt_time(max(m.times))}"
            gap = "-"
            if m.objective is not None and best is not None:
                gap = f"{(m.objective - best) / max(abs(best), 1e-300):.1e}"
            objective = "-" if m.objective is None else f"{m.objective:.12g}"
            rows.append(
                [
                    problem,
                    m.system,
                    _fmt_time(m.median),
                    spread,
                    "-" if m.iterations is None else str(m.iterations),
                    "-" if m.evaluations is None else str(m.evaluations),
                    objective,
                    gap,
                    m.note,
                ]
            )
    header = [
        "problem",
        "system",
        "median",
        "min..max",
        "iters",
        "f+g evals",
        "objective",
        "above best",
        "note",
    ]
    return _table(header, rows)


def _median(measurements: list[Measurement], system: str) -> float | None:
    for m in measurements:
        if m.system == system and m.times:
            return m.median
    return None


def ratio_table(results: dict[str, list[Measurement]]) -> list[str]:
    """MiniML median / peer median for each problem, MiniML path and peer."""
    rows = []
    for problem, measurements in results.items():
        for mine in MINIML_ROWS:
            ours = _median(measurements, mine)
            if ours is None:
                continue
            cells = []
            for peer in PEERS:
                theirs = _median(measurements, peer)
                cells.append("-" if theirs is None else f"{ours / theirs:.2f}x")
            rows.append([problem, SHORT[mine], *cells])
    return _table(["problem", "MiniML path", *(SHORT[p] for p in PEERS)], rows)


def _ratio(results: dict[str, list[Measurement]], problem: str, mine: str, peer: str) -> Any:
    ours, theirs = _median(results[problem], mine), _median(results[problem], peer)
    return None if ours is None or theirs is None else ours / theirs


OWN_PROCESS = ("miniml-jax 0.11.0",)
"""Peers timed in a process of their own: their rounds are not ours, so no pairing."""


def _times(measurements: list[Measurement], system: str) -> list[float]:
    return next((m.times for m in measurements if m.system == system), [])


def paired_ratio(
    results: dict[str, list[Measurement]], problem: str, mine: str, peer: str
) -> float | None:
    """`paired_median` of MiniML's and the peer's times; None where the two were not
    timed in the same rounds."""
    if peer in OWN_PROCESS:
        return None
    ours, theirs = _times(results[problem], mine), _times(results[problem], peer)
    if not ours or len(ours) != len(theirs):
        return None
    return paired_median(ours, theirs)


def target_lines(
    results: dict[str, list[Measurement]],
    cold: list[tuple[str, dict[str, Any]]],
    references: dict[str, float],
) -> list[str]:
    """Each target of BENCHMARKS.md with the measured ratios and whether it is met.

    The verdict is on the ratio of medians; the median of paired (same-round) ratios is
    shown next to it.
    """
    lines = []
    checks = [
        (
            "scipy path warm <= 1.0x scipy+jax.jit",
            MINIML_ROWS[0],
            TARGET_PEERS[MINIML_ROWS[0]],
            1.0,
            list(results),
        ),
        (
            "compiled LBFGS <= 1.1x optax loop",
            MINIML_ROWS[1],
            TARGET_PEERS[MINIML_ROWS[1]],
            1.1,
            list(results),
        ),
        (
            "compiled LBFGS <= 1.2x bandwidth floor (n >= 1e5)",
            MINIML_ROWS[1],
            "bandwidth floor",
            1.2,
            [p for p in results if p in ("P5-1e5", "P5-1e6")],
        ),
        (
            ">= 20x faster than miniml-jax (warm P1/P2)",
            MINIML_ROWS[0],
            "miniml-jax 0.11.0",
            1 / 20,
            [p for p in results if p in ("P1", "P2")],
        ),
        (
            ">= 20x faster than miniml-jax (warm P1/P2), compiled",
            MINIML_ROWS[1],
            "miniml-jax 0.11.0",
            1 / 20,
            [p for p in results if p in ("P1", "P2")],
        ),
    ]
    for label, mine, peer, limit, problems in checks:
        parts = []
        for problem in problems:
            ratio = _ratio(results, problem, mine, peer)
            if ratio is not None:
                paired = paired_ratio(results, problem, mine, peer)
                also = "" if paired is None else f" (paired {paired:.2f}x)"
                parts.append(f"{problem} {ratio:.2f}x{also} {'ok' if ratio <= limit else 'MISS'}")
        lines.append(f"{label}: " + (", ".join(parts) if parts else "not measured"))
    for name, figures in cold:
        if name == MINIML_ROWS[0] and "first_fit_s" in figures:
            first = figures["first_fit_s"]
            lines.append(
                f"cold first fit of P1 <= 0.5 s (scipy path, median of "
                f"{len(figures.get('first_fit_runs', [])) or 1} fresh processes): "
                f"{first:.3f} s {'ok' if first <= 0.5 else 'MISS'}"
            )
    for problem, measurements in results.items():
        reference = references.get(problem)
        if reference is None:
            continue
        for m in measurements:
            if m.system in MINIML_ROWS and m.objective is not None:
                gap = abs(m.objective - reference) / abs(reference)
                lines.append(
                    f"{problem} {SHORT[m.system]} reaches the anchor optimum "
                    f"{reference}: rel. {gap:.1e} {'ok' if gap <= 1e-8 else 'MISS'}"
                )
    return lines


def cold_table(cold: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for name, figures in cold:
        if "error" in figures:
            rows.append([name, "failed", figures["error"][:70], "", ""])
            continue
        times = [
            "-"
            if figures.get(key) is None or not math.isfinite(figures[key])
            else _fmt_time(figures[key])
            for key in ("import_s", "first_fit_s", "second_fit_s")
        ]
        runs = figures.get("first_fit_runs", [])
        each = ", ".join(_fmt_time(t) for t in runs)
        if figures.get("failed_runs"):
            each += f" ({figures['failed_runs']} failed)"
        rows.append([name, *times, each])
    return _table(
        ["P1 in a fresh process", "import", "first fit", "second fit", "first fit, each process"],
        rows,
    )


def back_to_back_table(
    paused: dict[str, list[Measurement]], back_to_back: dict[str, list[Measurement]]
) -> list[str]:
    """Each MiniML path against its target peer, timed with the pause and back to back:
    medians and ratios (paired ratios in parentheses); pairs not timed are left out."""
    rows = []
    for problem, again in back_to_back.items():
        for mine, peer in TARGET_PEERS.items():
            cells, ratios = [], []
            for measured in (paused.get(problem, []), again):
                results = {problem: measured}
                ratio = _ratio(results, problem, mine, peer)
                paired = paired_ratio(results, problem, mine, peer)
                also = "" if paired is None else f" ({paired:.2f}x)"
                cells += [
                    f"{_fmt_time(_median(measured, mine))} / {_fmt_time(_median(measured, peer))}",
                    "-" if ratio is None else f"{ratio:.2f}x{also}",
                ]
                ratios.append(ratio)
            if any(ratio is not None for ratio in ratios):
                rows.append([problem, f"{SHORT[mine]} / {SHORT[peer]}", *cells])
    return _table(
        ["problem", "MiniML / peer", "with pause", "ratio", "back to back", "ratio"], rows
    )
