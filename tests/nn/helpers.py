"""Shared helpers of the `miniml.nn` tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
TOL = 1e-10


def load_cases(family: str) -> dict[str, dict[str, Any]]:
    """The cases of ``fixtures/<family>.npz``: ``{case: {"config": dict, name: array}}``."""
    cases: dict[str, dict[str, Any]] = {}
    with np.load(FIXTURES / f"{family}.npz", allow_pickle=False) as archive:
        for key in archive.files:
            case, _, name = key.partition(".")
            value = archive[key]
            cases.setdefault(case, {})[name] = json.loads(str(value)) if name == "config" else value
    return cases


def with_params(layer: Any, **params: Any) -> Any:
    """Bind ``layer`` (zeros) and set the given parameters by name."""
    layer.bind()
    layer.set_params({name: np.asarray(value) for name, value in params.items()})
    return layer


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``."""
    return np.moveaxis(x, 1, -1)


def torch_conv_weight(weight: np.ndarray) -> np.ndarray:
    """PyTorch ``(out, in // groups, *kernel)`` -> MiniML ``(*kernel, in // groups, out)``."""
    return np.moveaxis(weight, (0, 1), (-1, -2))


def random_params(model: Any, seed: int = 0, scale: float = 0.5) -> Any:
    """Bind ``model`` and fill its buffer with normal values times ``scale``.

    Cheaper than ``randomize`` (one host-to-device copy), for tests that need some
    parameter values but not the layers' initialization rules.
    """
    model.bind()
    model.set_buffer(scale * np.random.default_rng(seed).normal(size=model.size))
    return model
