"""The ``miniml-jax`` peer: its own virtual environment and process.

`ensure_peer_python` creates ``bench/.venv-peer`` on first use (``python -m venv`` +
``pip install miniml-jax==0.11.0`` with the same jax, numpy, scipy and scikit-learn
as this project, so the problems' data are identical). If that fails (no network, no
wheel), the suite goes on without the peer and says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["PEER_DIR", "ensure_peer_python", "run_peer"]

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT / "bench" / ".venv-peer"
PEER_PACKAGES = ["miniml-jax==0.11.0", "jax==0.10.2", "jaxlib==0.10.2", "threadpoolctl"]
MIRRORED = ["numpy", "scipy", "scikit-learn"]  # same versions as here: same data


def _pins() -> list[str]:
    from importlib.metadata import version

    return PEER_PACKAGES + [f"{name}=={version(name)}" for name in MIRRORED]


def _peer_ready(python: Path) -> bool:
    check = "import miniml, jax, sklearn, threadpoolctl; assert jax.__version__ == '0.10.2'"
    try:
        done = subprocess.run(
            [str(python), "-c", check], cwd=ROOT / "bench", capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_peer_python(log: Any) -> tuple[Path | None, str]:
    """The peer environment's python, creating it if needed; ``(None, why)`` on failure."""
    python = PEER_DIR / "bin" / "python"
    if python.exists() and _peer_ready(python):
        return python, "ready"
    log(f"creating {PEER_DIR.relative_to(ROOT)} and installing {' '.join(_pins())} ...")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(PEER_DIR)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        # Keep the environment out of git without touching the project's .gitignore.
        (PEER_DIR / ".gitignore").write_text("*\n", encoding="utf-8")
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *_pins()],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"could not create the environment: {err}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return None, "pip install failed: " + " | ".join(tail)
    if not _peer_ready(python):
        return None, "installed, but `import miniml, jax` fails in the peer environment"
    return python, "installed"


def run_peer(python: Path, arguments: list[str], timeout: float) -> tuple[Any, str]:
    """Run `bench.peer_miniml_jax` in the peer environment; ``(parsed JSON, error)``."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("MINIML_COMPILATION_CACHE", None)
    try:
        done = subprocess.run(
            [str(python), "-m", "bench.peer_miniml_jax", *arguments],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["failed"])[-1]
    try:
        return json.loads(done.stdout), ""
    except json.JSONDecodeError as err:
        return None, f"unreadable output: {err}"
