"""Shared test helpers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax
import pytest
from hypothesis import settings

import miniml  # noqa: F401  (turns on 64-bit mode before any test builds arrays)

# The suite's property tests draw the same examples on every run, so that CI is
# reproducible; `HYPOTHESIS_PROFILE=explore make test` searches new ones (and more).
settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compile_counter = {"n": 0, "active": False}


def _on_duration(event: str, duration: float, **kwargs: object) -> None:
    if event == _COMPILE_EVENT and _compile_counter["active"]:
        _compile_counter["n"] += 1


jax.monitoring.register_event_duration_secs_listener(_on_duration)


class CompileCount:
    """Number of XLA compilations seen inside a `count_compilations` block."""

    n = 0


@contextlib.contextmanager
def _count() -> Iterator[CompileCount]:
    result = CompileCount()
    _compile_counter["n"] = 0
    _compile_counter["active"] = True
    try:
        yield result
    finally:
        _compile_counter["active"] = False
        result.n = _compile_counter["n"]


@pytest.fixture
def count_compilations():
    """Context manager factory: ``with count_compilations() as c: ...; c.n``."""
    return _count
