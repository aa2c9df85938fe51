"""MiniML: define models as Python classes, fit them with JAX, SciPy and optax.

Importing `miniml` turns on JAX's 64-bit mode (float64 is MiniML's default parameter
dtype); set ``MINIML_DISABLE_X64=1`` before the import to keep JAX's 32-bit default.
Set ``MINIML_COMPILATION_CACHE=1`` (or a directory) to keep compiled programs on disk
between processes; see `enable_compilation_cache`.
"""

from miniml._config import (
    configure_cache_from_environment,
    configure_jax,
    enable_compilation_cache,
)

configure_jax()
configure_cache_from_environment()

from miniml.batched import BatchedFitResult, fit_batched  # noqa: E402
from miniml.errors import (  # noqa: E402
    ConvergenceWarning,
    MiniMLError,
    NonFiniteWarning,
    PerformanceWarning,
)
from miniml.model import (  # noqa: E402
    MiniMLModel,
    MiniMLModelList,
    PredictKernelOutput,
    PredictMode,
)
from miniml.model_selection import (  # noqa: E402
    CrossValidationResult,
    MultiStartResult,
    cross_validate_path,
    multi_start,
)
from miniml.optim.base import FitResult  # noqa: E402
from miniml.param import MiniMLParam, MiniMLParamList  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BatchedFitResult",
    "ConvergenceWarning",
    "CrossValidationResult",
    "FitResult",
    "MiniMLError",
    "MiniMLModel",
    "MiniMLModelList",
    "MiniMLParam",
    "MiniMLParamList",
    "MultiStartResult",
    "NonFiniteWarning",
    "PerformanceWarning",
    "PredictKernelOutput",
    "PredictMode",
    "__version__",
    "cross_validate_path",
    "enable_compilation_cache",
    "fit_batched",
    "multi_start",
]
