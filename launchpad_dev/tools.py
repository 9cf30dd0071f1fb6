"""Finding the tools the tests need, and skipping (or, in CI, failing) when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# In CI every tool must be present: a missing one fails instead of skipping.
STRICT = os.environ.get("LAUNCHPAD_STRICT") == "1"


def missing(reason: str):
    """Skip, or in CI (LAUNCHPAD_STRICT=1) fail: something that must be here is not."""
    if STRICT:
        pytest.fail(f"LAUNCHPAD_STRICT=1 and {reason}")
    pytest.skip(reason)


def require_tool(name: str, beside: Path | None = None) -> str:
    """Path of tool `name` (looked up beside the test interpreter first, then on PATH)."""
    candidate = beside / name if beside else None
    if candidate and candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    missing(f"{name} is not installed (bash .ci/run installs it)")
