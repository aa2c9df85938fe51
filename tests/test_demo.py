"""`make demo` (``python -m miniml.demo``): the table's numbers and the saved plot."""

import math

from miniml import demo


def test_demo_writes_the_plot_and_the_staged_fit_beats_its_stages(tmp_path, capsys):
    out = tmp_path / "curves.png"
    rows = demo.main(["--out", str(out)])
    printed = capsys.readouterr().out
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out.resolve()) in printed
    by_name = {row.name: row for row in rows}
    assert list(by_name) == [
        "L-BFGS-B",
        "Newton-CG",
        "Adam (mini-batch)",
        "Adam -> L-BFGS-B",
        "LBFGS (compiled)",
    ]
    for row in rows:
        assert math.isfinite(row.loss), row.name
        assert row.name in printed and f"{row.loss:.6e}" in printed
        assert row.result.history.column("loss")  # a curve to plot
    staged = by_name["Adam -> L-BFGS-B"]
    assert staged.result.history.stages() == ["Adam", "L-BFGS-B"]
    # Adam then L-BFGS-B ends lower than either optimizer alone with the same budget.
    assert staged.loss <= by_name["Adam (mini-batch)"].loss
    assert staged.loss <= by_name["L-BFGS-B"].loss
    # The single L-BFGS-B fit used its whole budget: the staged fit wins by its start.
    assert by_name["L-BFGS-B"].result.n_iterations == demo.MAXITER
