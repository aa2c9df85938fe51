"""Process-wide JAX configuration applied when `miniml` is imported.

SciPy's solvers work in float64 and MiniML's fits are meant to reproduce reference
results to ~1e-10, so importing `miniml` turns on JAX's 64-bit mode. Set the
environment variable ``MINIML_DISABLE_X64=1`` before importing to keep JAX's
default 32-bit mode; float64 models then raise a clear error instead of being
silently downcast.

JAX dispatches CPU computations asynchronously, to a worker thread; SciPy's solvers
call the objective from Python and wait for every value, so each evaluation pays the
hand-off. With ``MINIML_CPU_SYNC_DISPATCH=1`` set before the first JAX computation,
`miniml` turns asynchronous CPU dispatch off (JAX's ``jax_cpu_enable_async_dispatch``):
small SciPy-path fits took 3-16 % less time here, compiled loops 1-10 % more
(``python -m bench.dispatch``, docs/performance.md), so it is opt-in. Results are
identical either way.
"""

from __future__ import annotations

import os

import jax

X64_ENV_VAR = "MINIML_DISABLE_X64"
SYNC_DISPATCH_ENV_VAR = "MINIML_CPU_SYNC_DISPATCH"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in {"1", "true", "yes"}


def configure_jax() -> None:
    if not _env_flag(X64_ENV_VAR):
        jax.config.update("jax_enable_x64", True)
    if _env_flag(SYNC_DISPATCH_ENV_VAR):
        jax.config.update("jax_cpu_enable_async_dispatch", False)


def x64_enabled() -> bool:
    """Whether JAX currently honours 64-bit dtypes."""
    return bool(jax.config.read("jax_enable_x64"))


CACHE_ENV_VAR = "MINIML_COMPILATION_CACHE"


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/miniml/xla`` (``~/.cache/miniml/xla`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "miniml", "xla")


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> str:
    """Keep compiled XLA programs on disk so that a new process skips recompiling.

    JAX's persistent compilation cache is process-wide. MiniML's compiled objectives
    are small and compile in well under a second, below JAX's default threshold for
    caching, so this also lowers that threshold to zero. It is opt-in: call this
    function, or set the environment variable ``MINIML_COMPILATION_CACHE`` to a
    directory (or to ``1`` for the default directory) before importing `miniml`.

    Args:
        path: the cache directory; defaults to `default_cache_dir`.

    Returns:
        The directory in use.
    """
    directory = os.fspath(path) if path is not None else default_cache_dir()
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def configure_cache_from_environment() -> None:
    value = os.environ.get(CACHE_ENV_VAR, "").strip()
    if not value or value.lower() in {"0", "false", "no"}:
        return
    enable_compilation_cache(None if value.lower() in {"1", "true", "yes"} else value)
