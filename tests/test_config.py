"""Process-wide settings: 64-bit mode, the opt-in persistent compilation cache and
synchronous CPU dispatch."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from miniml import MiniMLModel, MiniMLParam

    class Lin(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((3, 1))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X @ self.w(buffer)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    m = Lin()
    m.fit(X, X @ np.ones((3, 1)), reg_lambda=0.0)
    print(repr(float(m.w.value[0, 0])), m.dtype)
    """
)


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIML_")}
    env.update(env_extra)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True,
        cwd=ROOT, timeout=120,
    )  # fmt: skip
    return done.stdout.strip()


def test_compilation_cache_is_written_and_reused(tmp_path):
    cache = tmp_path / "xla"
    first = _run({"MINIML_COMPILATION_CACHE": str(cache)})
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "the persistent cache stayed empty"
    second = _run({"MINIML_COMPILATION_CACHE": str(cache)})
    assert second == first
    assert sorted(p.name for p in cache.iterdir()) == entries  # hits, nothing new compiled


def test_cache_is_off_by_default(tmp_path):
    out = _run({"XDG_CACHE_HOME": str(tmp_path)})
    assert out.endswith("float64")
    assert not (tmp_path / "miniml").exists()


def test_x64_can_be_disabled():
    out = _run({"MINIML_DISABLE_X64": "1"})
    assert out.endswith("float32")


def _async_dispatch(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIML_")}
    env.update(env_extra)
    script = (
        "import jax, miniml, numpy as np\n"
        "assert float(jax.numpy.sum(jax.numpy.ones(3))) == 3.0\n"
        "print(jax.config.read('jax_cpu_enable_async_dispatch'))"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True, cwd=ROOT, timeout=120)  # fmt: skip
    return done.stdout.strip()


def test_synchronous_cpu_dispatch_is_opt_in():
    assert _async_dispatch({}) == "True"  # JAX's default is left alone
    assert _async_dispatch({"MINIML_CPU_SYNC_DISPATCH": "1"}) == "False"
    assert _async_dispatch({"MINIML_CPU_SYNC_DISPATCH": "0"}) == "True"
