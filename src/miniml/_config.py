"""Process-wide JAX configuration applied when `miniml` is imported.

SciPy's solvers work in float64 and MiniML's fits are meant to reproduce reference
results to ~1e-10, so importing `miniml` turns on JAX's 64-bit mode. Set the
environment variable ``MINIML_DISABLE_X64=1`` before importing to keep JAX's
default 32-bit mode; float64 models then raise a clear error instead of being
silently downcast.
"""

from __future__ import annotations

import os

import jax

X64_ENV_VAR = "MINIML_DISABLE_X64"


def _x64_requested() -> bool:
    return os.environ.get(X64_ENV_VAR, "0").strip().lower() not in {"1", "true", "yes"}


def configure_jax() -> None:
    if _x64_requested():
        jax.config.update("jax_enable_x64", True)


def x64_enabled() -> bool:
    """Whether JAX currently honours 64-bit dtypes."""
    return bool(jax.config.read("jax_enable_x64"))
