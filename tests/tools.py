"""Finding the tools the tests need, and skipping (or, in CI, failing) when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# In CI every tool must be present: a missing one fails instead of skipping.
STRICT = os.environ.get("LAUNCHPAD_STRICT") == "1"


def require_tool(name: str, beside: Path | None = None, reason: str | None = None) -> str:
    """Path of tool `name` (looked up beside the test interpreter first, then on PATH)."""
    if reason is None:
        candidate = beside / name if beside else None
        if candidate and candidate.exists():
            return str(candidate)
        found = shutil.which(name)
        if found:
            return found
        reason = f"{name} is not installed (bash .ci/run installs it)"
    elif shutil.which(name):
        return shutil.which(name)
    if STRICT:
        pytest.fail(f"LAUNCHPAD_STRICT=1 and {reason}")
    pytest.skip(reason)
