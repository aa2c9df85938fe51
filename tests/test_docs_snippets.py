"""Every python code block of the documentation runs (each page in one namespace)."""

import re
import warnings
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_code_blocks_run(page, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    with warnings.catch_warnings():
        # Pages show the library's own warnings where they teach them; only those are
        # tolerated here, everything else still fails the test.
        warnings.filterwarnings("error")
        for index, block in enumerate(blocks):
            try:
                exec(compile(block, f"{page.name}[{index}]", "exec"), namespace)
            except Exception as err:  # pragma: no cover - reported with the block
                raise AssertionError(f"{page.name} block {index} failed:\n{block}") from err


def test_site_builds_with_warnings_as_errors(tmp_path):
    import os
    import subprocess
    import sys

    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "MiniMLModel" in api and "ScipyOptimizer" in api
