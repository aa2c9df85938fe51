"""The README's quickstart runs exactly as printed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_quickstart_runs_as_printed(tmp_path, monkeypatch, capsys):
    blocks = _python_blocks(README.read_text())
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "converged: True" in out
    assert (tmp_path / "linear.npz").exists()
