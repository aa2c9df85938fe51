"""The command line every example shares: ``--quick`` and ``--out DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args(argv: list[str] | None, doc: str | None, quick_help: str) -> argparse.Namespace:
    """Parse ``argv`` for an example whose module docstring is ``doc``; make ``--out``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "output",
        help="directory for the PNG files (default: examples/output)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
